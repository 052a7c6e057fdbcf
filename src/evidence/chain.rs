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
use super::{CHAIN_FILE, GENESIS, LOCK_FILE, RUNS_DIR};
use crate::error::Problem;
use crate::fsx;
use crate::types::ArtifactKind;

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
        match file.try_lock() {
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
}

impl Chain {
    /// Read `dir/evidence.jsonl`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Chain>> {
        let path = dir.join(CHAIN_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read `{}`", path.display())));
            }
        };
        let mut entries = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let env: Envelope = serde_json::from_slice(line)
                .with_context(|| format!("`{}` line {}: not a DSSE envelope", path.display(), i + 1))?;
            let body =
                env.body().with_context(|| format!("`{}` line {}: payload is not base64", path.display(), i + 1))?;
            let statement: Statement = serde_json::from_slice(&body).with_context(|| {
                format!("`{}` line {}: payload is not an agentplane statement", path.display(), i + 1)
            })?;
            entries.push(Entry { statement, digest: format!("sha256:{}", fsx::sha256_hex(line)) });
        }
        Ok(Some(Chain { entries }))
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
        let bytes = fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let v =
            serde_json::from_slice(&bytes).with_context(|| format!("`{}` is not a valid {kind}", path.display()))?;
        Ok(Some(v))
    }
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
    named: Vec<String>,
}

impl<'k> ChainWriter<'k> {
    /// Start a new chain in `dir`, moving an earlier chain's files under `runs/`.
    pub fn start(dir: &Path, signer: &'k Signer, bundle: &str, bundle_digest: &str) -> Result<ChainWriter<'k>> {
        let lock = DirLock::acquire(dir)?;
        archive(dir)?;
        Ok(ChainWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            signer,
            run_id: fsx::new_id(),
            bundle: bundle.to_string(),
            bundle_digest: bundle_digest.to_string(),
            seq: 0,
            head: GENESIS.to_string(),
            named: Vec::new(),
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
        let writer = ChainWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            signer,
            run_id: first.run_id.clone(),
            bundle: first.bundle.clone(),
            bundle_digest: first.bundle_digest.clone(),
            seq: chain.entries.len() as u64,
            head: last.digest.clone(),
            named: chain.entries.iter().flat_map(|e| e.statement.subject.iter().map(|s| s.name.clone())).collect(),
        };
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
        if !self.named.iter().any(|n| n == file) {
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

    /// Append a seal naming the chain length and head.
    pub fn seal(&mut self) -> Result<()> {
        let head = self.head.clone();
        let hex = head.trim_start_matches("sha256:").to_string();
        self.append(ArtifactKind::Seal, vec![Subject::sha256(super::CHAIN_FILE, hex)], Some((self.seq, head)), None)
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
        fsx::append_line(&self.dir.join(CHAIN_FILE), &line)?;
        self.named.extend(statement.subject.iter().map(|s| s.name.clone()));
        self.head = format!("sha256:{}", fsx::sha256_hex(&line));
        self.seq += 1;
        Ok(())
    }
}

/// Move everything an earlier chain left in `dir` under `runs/<runId>/`.
fn archive(dir: &Path) -> Result<()> {
    let leftovers: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n != RUNS_DIR && n != LOCK_FILE && !n.starts_with(".agentplane-tmp-")
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
    for p in leftovers {
        let target = dest.join(p.file_name().expect("read_dir entries have names"));
        fs::rename(&p, &target).with_context(|| format!("cannot move `{}` to `{}`", p.display(), target.display()))?;
    }
    fsx::sync_dir(dir);
    Ok(())
}

/// A run id safe to use as a directory name.
fn sanitize(id: &str) -> String {
    let s: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(80).collect();
    if s.is_empty() { format!("unchained-{}", fsx::new_id()) } else { s }
}
