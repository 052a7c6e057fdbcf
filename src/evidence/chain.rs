//! The hash-chained `evidence.jsonl` writer and a structural reader.
//!
//! Each stage locks the evidence directory, writes its artifact atomically,
//! then appends one signed line whose predicate links to the previous line's
//! exact bytes. `validate` starts a new chain; the files of an earlier chain
//! are moved under `runs/<runId>/`, never deleted.

use anyhow::{Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::artifacts::Artifact;
use super::dsse::Envelope;
use super::keys::Signer;
use super::statement::{Predicate, STATEMENT_TYPE, Statement, Subject, predicate_type};
use super::tlog;
use super::{CHAIN_FILE, GENESIS, LOCK_FILE, RUNS_DIR};
use crate::error::Problem;
use crate::fsx;
use crate::types::ArtifactKind;
use sha2::{Digest, Sha256};

/// How long [`DirLock::acquire`] waits for a lock that is held.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// An exclusive lock on an evidence directory, released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create evidence directory `{}`", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock `{}`", path.display()))?;
        // A lock can look held for a moment after its holder let go: a
        // process forked by another thread (between fork and exec) shares
        // the open file and so the lock. Try again briefly before calling it
        // another agentplane's.
        let give_up = std::time::Instant::now() + LOCK_PATIENCE;
        let mut attempt = file.try_lock();
        while matches!(attempt, Err(fs::TryLockError::WouldBlock)) && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(10));
            attempt = file.try_lock();
        }
        match attempt {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Problem::error(format!(
                "evidence directory `{}` is being written by another agentplane process",
                dir.display()
            ))
            .hint("wait for the other command to finish, then run this one again")
            .into()),
            Err(fs::TryLockError::Error(e)) => {
                Err(anyhow::Error::new(e).context(format!("cannot lock `{}`", path.display())))
            }
        }
    }
}

/// One entry as read back from a chain (structure only; `verify` checks signatures).
#[derive(Debug, Clone)]
pub struct Entry {
    pub statement: Statement,
    /// `sha256:<hex>` of the line's exact bytes.
    pub digest: String,
}

impl Entry {
    pub fn kind(&self) -> ArtifactKind {
        self.statement.predicate.kind
    }

    /// The artifact file an entry names first (none for a seal).
    pub fn artifact_file(&self) -> Option<&str> {
        if self.kind().is_seal() { None } else { self.statement.subject.first().map(|s| s.name.as_str()) }
    }
}

/// A chain read from disk.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub entries: Vec<Entry>,
    /// RFC 6962 leaf hash of each line's exact bytes (without its newline).
    pub leaves: Vec<tlog::merkle::Hash>,
    /// sha256 of every byte of the file as read.
    pub file_sha: Sha256,
    /// The file's bytes, and where each entry's line lies in them.
    raw: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
}

impl Chain {
    /// Read `dir/evidence.jsonl`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Chain>> {
        let path = dir.join(CHAIN_FILE);
        let bytes = match fsx::read_regular(&path, fsx::caps::CHAIN) {
            Ok(b) => b,
            Err(e) if e.kind == Some(fsx::NotRegular::Missing) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if bytes.last().is_some_and(|b| *b != b'\n') {
            // agentplane appends whole lines and cuts a failed append back
            // (fsx::append_line), so a torn tail is an interrupted write
            // (a crash, or a chain from before that guarantee), not tampering
            // to be parsed as a bad envelope.
            return Err(Problem::error(format!(
                "`{}` ends in a partial line (a write was interrupted): start a new chain with `agentplane validate BUNDLE`",
                path.display()
            ))
            .hint("validate keeps this chain under runs/ and starts a new one")
            .into());
        }
        let mut entries = Vec::new();
        let mut leaves = Vec::new();
        let mut file_sha = Sha256::new();
        file_sha.update(&bytes);
        let mut spans = Vec::new();
        let mut at = 0usize;
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let start = at;
            at += line.len() + 1;
            if line.is_empty() {
                continue;
            }
            spans.push(start..start + line.len());
            let env: Envelope = serde_json::from_slice(line)
                .with_context(|| format!("`{}` line {}: not a DSSE envelope", path.display(), i + 1))?;
            let body =
                env.body().with_context(|| format!("`{}` line {}: payload is not base64", path.display(), i + 1))?;
            let statement: Statement = serde_json::from_slice(&body).with_context(|| {
                format!("`{}` line {}: payload is not an agentplane statement", path.display(), i + 1)
            })?;
            entries.push(Entry { statement, digest: format!("sha256:{}", fsx::sha256_hex(line)) });
            leaves.push(tlog::merkle::leaf_hash(line));
        }
        Ok(Some(Chain { entries, leaves, file_sha, raw: bytes, spans }))
    }

    /// The exact bytes of entry `i`'s line (without its newline).
    pub fn line(&self, i: usize) -> &[u8] {
        &self.raw[self.spans[i].clone()]
    }

    pub fn run_id(&self) -> Option<&str> {
        self.entries.first().map(|e| e.statement.predicate.run_id.as_str())
    }

    pub fn bundle_digest(&self) -> Option<&str> {
        self.entries.first().map(|e| e.statement.predicate.bundle_digest.as_str())
    }

    /// The last entry of a kind.
    pub fn last_of(&self, kind: ArtifactKind) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.kind() == kind)
    }

    pub fn is_sealed(&self) -> bool {
        self.entries.last().is_some_and(|e| e.kind().is_seal())
    }

    /// The `predicate.details` of the chain's last entry of kind `A` (the
    /// default when it has none or there is no such entry).
    pub fn load_details<A: Artifact>(&self) -> Result<A::Details> {
        match self.last_of(A::KIND).and_then(|e| e.statement.predicate.details.clone()) {
            None => Ok(A::Details::default()),
            Some(v) => serde_json::from_value(v)
                .with_context(|| format!("the {} entry's details are not agentplane's", A::KIND)),
        }
    }

    /// Read the artifact the chain's last entry of kind `A` names.
    pub fn load<A: Artifact>(&self, dir: &Path) -> Result<Option<A>> {
        let kind = A::KIND;
        let Some(file) = self.last_of(kind).and_then(Entry::artifact_file) else {
            return Ok(None);
        };
        let path = dir.join(file);
        let bytes = fsx::read_regular(&path, fsx::caps::DOCUMENT)?;
        let v =
            serde_json::from_slice(&bytes).with_context(|| format!("`{}` is not a valid {kind}", path.display()))?;
        Ok(Some(v))
    }
}

/// The checkpoint origin of a chain: unique per chain (its run id), so a
/// checkpoint of one chain can never be taken for another's.
pub fn checkpoint_origin(run_id: &str) -> String {
    format!("agentplane.socioprophet.org/evidence/{run_id}")
}

/// Appends signed entries to one evidence directory's chain, holding its lock.
#[derive(Debug)]
pub struct ChainWriter<'k> {
    dir: PathBuf,
    _lock: DirLock,
    signer: &'k Signer,
    run_id: String,
    bundle: String,
    bundle_digest: String,
    seq: u64,
    head: String,
    /// Every subject name so far, with the first entry naming it.
    named: std::collections::HashMap<String, u64>,
    /// The log so far: one leaf per line, where each line starts (and the
    /// file's length last), and the hash of every byte written.
    leaves: Vec<tlog::merkle::Hash>,
    offsets: Vec<u64>,
    file_sha: Sha256,
}

impl<'k> ChainWriter<'k> {
    /// Start a new chain in `dir`, moving an earlier chain's files under `runs/`.
    /// Refuses, before creating anything in it, a `dir` holding files
    /// agentplane did not write ([`first_foreign`]); [`archive`] checks again
    /// under the lock.
    pub fn start(dir: &Path, signer: &'k Signer, bundle: &str, bundle_digest: &str) -> Result<ChainWriter<'k>> {
        if let Some(f) = first_foreign(dir)? {
            return Err(refuse_foreign(dir, &f).into());
        }
        let lock = DirLock::acquire(dir)?;
        archive(dir)?;
        // The marker exists before any artifact does: a crash between an
        // artifact and its entry leaves a directory still recognised as evidence.
        let chain = dir.join(CHAIN_FILE);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&chain)
            .with_context(|| format!("cannot create `{}`", chain.display()))?;
        Ok(ChainWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            signer,
            run_id: fsx::new_id(),
            bundle: bundle.to_string(),
            bundle_digest: bundle_digest.to_string(),
            seq: 0,
            head: GENESIS.to_string(),
            named: Default::default(),
            leaves: Vec::new(),
            offsets: vec![0],
            file_sha: Sha256::new(),
        })
    }

    /// Continue the chain in `dir` (read again under the lock).
    pub fn open(dir: &Path, signer: &'k Signer) -> Result<(ChainWriter<'k>, Chain)> {
        let lock = DirLock::acquire(dir)?;
        let chain = Chain::read(dir)?.filter(|c| !c.entries.is_empty()).ok_or_else(|| {
            Problem::error(format!("`{}` holds no evidence chain", dir.display()))
                .hint("run `agentplane validate` on the bundle first: it starts the chain")
        })?;
        let first = &chain.entries[0].statement.predicate;
        let last = chain.entries.last().expect("non-empty");
        let mut writer = ChainWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            signer,
            run_id: first.run_id.clone(),
            bundle: first.bundle.clone(),
            bundle_digest: first.bundle_digest.clone(),
            seq: chain.entries.len() as u64,
            head: last.digest.clone(),
            named: Default::default(),
            leaves: chain.leaves.clone(),
            offsets: chain.spans.iter().map(|s| s.start as u64).chain([chain.raw.len() as u64]).collect(),
            file_sha: chain.file_sha.clone(),
        };
        for (i, e) in chain.entries.iter().enumerate() {
            writer.name(&e.statement.subject, i as u64);
        }
        Ok((writer, chain))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn bundle_digest(&self) -> &str {
        &self.bundle_digest
    }

    /// A file name for an artifact that no earlier entry of this chain names:
    /// the upstream name, or `<stem>-<seq>.json` for a repeat (e.g. a second promotion).
    fn fresh_name(&self, file: &str) -> String {
        if !self.named.contains_key(file) {
            return file.to_string();
        }
        let stem = file.trim_end_matches(".json");
        format!("{stem}-{}.json", self.seq)
    }

    /// Write `artifact` as a JSON file, then append its signed entry. `extra`
    /// names further subjects (logs, products) already written in the directory.
    /// Returns the artifact's file name.
    pub fn write_artifact<A: Artifact>(&mut self, artifact: &A, extra: &[String]) -> Result<String> {
        self.write_entry(artifact, &A::Details::default(), extra)
    }

    /// [`ChainWriter::write_artifact`] with the entry's `predicate.details`.
    pub fn write_entry<A: Artifact>(&mut self, artifact: &A, details: &A::Details, extra: &[String]) -> Result<String> {
        let details = serde_json::to_value(details)?;
        let details = match &details {
            serde_json::Value::Object(m) if m.is_empty() => None,
            _ => Some(details),
        };
        let name = self.fresh_name(A::KIND.file().expect("an artifact kind has a file"));
        let mut bytes = serde_json::to_vec_pretty(artifact)?;
        bytes.push(b'\n');
        fsx::write_atomic(&self.dir.join(&name), &bytes)?;
        let mut subjects = vec![Subject::sha256(name.clone(), fsx::sha256_hex(&bytes))];
        for rel in extra {
            subjects.push(Subject::sha256(rel.clone(), fsx::sha256_file(&self.dir.join(rel))?));
        }
        self.append(A::KIND, subjects, None, details)?;
        Ok(name)
    }

    /// Append a seal naming the chain length and head, and publish a signed
    /// C2SP checkpoint of the log it closes (DESIGN §7): the seal's subject is
    /// `evidence.jsonl` with the sha256 of every byte before the seal's own
    /// line (the file as it is when the seal is signed), and its predicate
    /// carries the checkpoint text, which is also written to `checkpoint`.
    /// The log's [`tlog_index`](super::tlog_index) is written first, so that
    /// `checkpoint` and `tlog-index` always name the same seal once both exist.
    pub fn seal(&mut self) -> Result<()> {
        let head = self.head.clone();
        let file_hex = crate::fsx::hex_lower(&self.file_sha.clone().finalize());
        let origin = checkpoint_origin(&self.run_id);
        let root = tlog::merkle::root(&self.leaves);
        let note = tlog::Checkpoint::sign(&origin, self.leaves.len() as u64, &root, &origin, self.signer)
            .context("cannot sign the checkpoint")?;
        self.append(
            ArtifactKind::Seal,
            vec![Subject::sha256(super::CHAIN_FILE, file_hex)],
            Some((self.seq, head)),
            Some(serde_json::json!({ "checkpoint": note })),
        )?;
        let n = self.leaves.len() - 1; // the seal's own line is not in the log it closes
        let names = self.named.iter().filter(|(_, i)| **i < n as u64).map(|(s, i)| (s.as_str(), *i));
        let index = super::tlog_index::encode(&self.leaves[..n], &self.offsets[..=n], names);
        fsx::write_atomic(&self.dir.join(super::TLOG_INDEX_FILE), &index)?;
        fsx::write_atomic(&self.dir.join(super::CHECKPOINT_FILE), note.as_bytes())
    }

    fn name(&mut self, subjects: &[Subject], entry: u64) {
        for s in subjects {
            self.named.entry(s.name.clone()).or_insert(entry);
        }
    }

    fn append(
        &mut self,
        kind: ArtifactKind,
        subject: Vec<Subject>,
        seal: Option<(u64, String)>,
        details: Option<serde_json::Value>,
    ) -> Result<()> {
        let (length, head) = match seal {
            Some((l, h)) => (Some(l), Some(h)),
            None => (None, None),
        };
        let statement = Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            predicate_type: predicate_type(kind),
            predicate: Predicate {
                kind,
                seq: self.seq,
                run_id: self.run_id.clone(),
                bundle: self.bundle.clone(),
                bundle_digest: self.bundle_digest.clone(),
                previous: self.head.clone(),
                length,
                head,
                details,
            },
            subject,
        };
        let body = serde_json::to_vec(&statement)?;
        let line = serde_json::to_vec(&Envelope::sign(&body, self.signer))?;
        fsx::append_line(&self.dir.join(CHAIN_FILE), &line).map_err(|e| {
            Problem::error(format!(
                "cannot add entry {} to the evidence chain in `{}` (the disk may be full): {e:#}",
                self.seq,
                self.dir.display()
            ))
            .hint("the chain was cut back to its last whole entry; free some space, then run the command again")
        })?;
        self.name(&statement.subject, self.seq);
        self.leaves.push(tlog::merkle::leaf_hash(&line));
        self.offsets.push(self.offsets.last().expect("starts with 0") + line.len() as u64 + 1);
        self.file_sha.update(&line);
        self.file_sha.update(b"\n");
        self.head = format!("sha256:{}", fsx::sha256_hex(&line));
        self.seq += 1;
        Ok(())
    }
}

/// Names of the top-level files agentplane writes in an evidence directory
/// besides the artifacts: the run's logs (`stages::run::{STDOUT_LOG, STDERR_LOG}`)
/// and the checkpoint and tlog index a seal publishes (DESIGN §7).
pub const OWN_FILES: [&str; 4] = ["run.stdout.log", "run.stderr.log", "checkpoint", "tlog-index"];
/// The run's products directory (`stages::run::PRODUCTS_DIR`).
pub const PRODUCTS: &str = "products";
/// Prefix of `fsx::write_atomic`'s temporary files.
const TMP_PREFIX: &str = ".agentplane-tmp-";

/// Something in an evidence directory that agentplane did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The offending entry (the evidence directory itself when it is not a directory).
    pub path: PathBuf,
    /// What it is, for the message: "a regular file", "a symbolic link", …
    pub what: &'static str,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::unix::ffi::OsStrExt;
        let path = fsx::escape_bytes(self.path.as_os_str().as_bytes());
        write!(f, "`{path}` ({}) was not written by agentplane", self.what)
    }
}

/// The first entry of `dir` that is not agentplane's own evidence, if any.
/// This decides what `validate` may archive (the `out-dir-safe` gate) and
/// what [`archive`] will move: agentplane only ever moves its own evidence.
///
/// A directory that does not exist is agentplane's (there is nothing in it).
/// An existing one is agentplane's when it is a real directory (not a symlink)
/// and every entry in it is, judged by `lstat` (a symlink is never agentplane's):
///
/// - `.agentplane.lock` and `.agentplane-tmp-*`: regular files (the stage lock,
///   an interrupted atomic write);
/// - `runs/`: a directory of archived chains, each a directory that is itself
///   agentplane's by these rules (without a further `runs/`);
/// - and only when `evidence.jsonl` is a regular file (the marker of a chain):
///   `evidence.jsonl`; the artifact files (`validation-artifact.json` …, and a
///   repeat's `<stem>-<seq>.json`); the run logs `run.stdout.log` and
///   `run.stderr.log`; `checkpoint` and `tlog-index`; and the `products/` directory, whose
///   contents are the smoke script's and are not inspected (they are moved as
///   one directory, and a rename never follows a link).
///
/// The names a chain's subjects list are not used to widen this set: an
/// `evidence.jsonl` is as easy to forge as any other file, and agentplane's
/// own chains only ever name the files above.
pub fn first_foreign(dir: &Path) -> Result<Option<Foreign>> {
    first_foreign_in(dir, true)
}

fn first_foreign_in(dir: &Path, allow_runs: bool) -> Result<Option<Foreign>> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot inspect `{}`", dir.display()))),
    };
    if !meta.is_dir() {
        return Ok(Some(Foreign { path: dir.to_path_buf(), what: what_is(&meta.file_type()) }));
    }
    let mut entries: Vec<(std::ffi::OsString, fs::FileType)> = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))? {
        let e = e.with_context(|| format!("cannot read `{}`", dir.display()))?;
        let ft = e.file_type().with_context(|| format!("cannot inspect `{}`", e.path().display()))?;
        entries.push((e.file_name(), ft));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let chained = entries.iter().any(|(n, ft)| n == CHAIN_FILE && ft.is_file());
    for (name, ft) in &entries {
        let path = dir.join(name);
        let foreign = || Ok(Some(Foreign { path: path.clone(), what: what_is(ft) }));
        // Names agentplane writes are ASCII; anything else is someone else's.
        let Some(n) = name.to_str() else { return foreign() };
        if ft.is_file() && (n == LOCK_FILE || n.starts_with(TMP_PREFIX)) {
            continue;
        }
        if ft.is_dir() && n == RUNS_DIR && allow_runs {
            for run in fs::read_dir(&path).with_context(|| format!("cannot read `{}`", path.display()))? {
                let run = run.with_context(|| format!("cannot read `{}`", path.display()))?;
                if let Some(f) = first_foreign_in(&run.path(), false)? {
                    return Ok(Some(f));
                }
            }
            continue;
        }
        if chained && ft.is_dir() && n == PRODUCTS {
            continue;
        }
        if chained && ft.is_file() && (n == CHAIN_FILE || OWN_FILES.contains(&n) || is_artifact_name(n)) {
            continue;
        }
        return foreign();
    }
    Ok(None)
}

/// An artifact file name [`ChainWriter`] gives: the upstream name, or `<stem>-<seq>.json`.
fn is_artifact_name(n: &str) -> bool {
    ArtifactKind::FILES.iter().filter_map(|k| k.file()).any(|f| {
        n == f
            || n.strip_prefix(f.trim_end_matches(".json"))
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.strip_suffix(".json"))
                .is_some_and(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn what_is(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a device"
    }
}

/// Move everything an earlier chain left in `dir` under `runs/<runId>/`.
/// Refuses (exit 2, naming the file) when `dir` holds anything agentplane did
/// not write ([`first_foreign`]): whatever a caller checked before, no foreign
/// file is ever moved.
fn archive(dir: &Path) -> Result<()> {
    if let Some(f) = first_foreign(dir)? {
        return Err(refuse_foreign(dir, &f).into());
    }
    let leftovers: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n != RUNS_DIR && n != LOCK_FILE && !n.starts_with(TMP_PREFIX)
        })
        .collect();
    if leftovers.is_empty() {
        return Ok(());
    }
    let id = match Chain::read(dir) {
        Ok(Some(c)) => c.run_id().map(sanitize).unwrap_or_else(|| format!("unchained-{}", fsx::new_id())),
        _ => format!("unchained-{}", fsx::new_id()),
    };
    let mut dest = dir.join(RUNS_DIR).join(&id);
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(RUNS_DIR).join(format!("{id}.{n}"));
        n += 1;
    }
    fs::create_dir_all(&dest).with_context(|| format!("cannot create `{}`", dest.display()))?;
    // The chain file is the marker of evidence (first_foreign): hard-link it
    // into the archive first and remove it last, so that neither directory is
    // ever seen holding artifacts without it (by a concurrent `validate`, or
    // after a crash mid-move). Where links are not supported it is moved in turn.
    let chain = dir.join(CHAIN_FILE);
    let linked =
        fs::symlink_metadata(&chain).is_ok_and(|m| m.is_file()) && fs::hard_link(&chain, dest.join(CHAIN_FILE)).is_ok();
    for p in leftovers {
        if linked && p == chain {
            continue;
        }
        let target = dest.join(p.file_name().expect("read_dir entries have names"));
        fs::rename(&p, &target).with_context(|| format!("cannot move `{}` to `{}`", p.display(), target.display()))?;
    }
    if linked {
        fs::remove_file(&chain).with_context(|| format!("cannot remove `{}`", chain.display()))?;
    }
    fsx::sync_dir(dir);
    Ok(())
}

fn refuse_foreign(dir: &Path, f: &Foreign) -> Problem {
    Problem::error(format!(
        "refusing to start an evidence chain in `{}`: {f}; agentplane only ever moves its own evidence",
        dir.display()
    ))
    .hint("set spec.artifacts.outDir to a folder of its own, e.g. `artifacts/<bundle name>`")
}

/// A run id safe to use as a directory name.
fn sanitize(id: &str) -> String {
    let s: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(80).collect();
    if s.is_empty() { format!("unchained-{}", fsx::new_id()) } else { s }
}

#[cfg(test)]
mod tests;
