//! Offline verification of an evidence directory (DESIGN §7).
//!
//! [`verify_dir`] trusts only the keys it is given: an envelope's `keyid` is
//! a hint for which trusted key to try, and a key the evidence itself carries
//! is never trusted. Evidence is read as regular files only, with size caps
//! ([`files::FsEvidence`]). Verification is these steps, in this order, each
//! owning one check of the report ([`VerifyCheck`]):
//!
//! 1. **Read the chain** (`chain-present`): `evidence.jsonl` is a regular
//!    file, not empty, of whole lines; a partial last line is torn.
//! 2. **Parse the envelopes** (`envelopes`): each line is a DSSE envelope with
//!    payloadType `application/vnd.in-toto+json`, exactly one signature of 64
//!    bytes, and a base64 payload.
//! 3. **Verify the signatures** (`signatures`): strict ed25519 over
//!    PAE(payloadType, exact payload bytes), against the trusted keys, before
//!    the payload is parsed ([`signature`] says why strict and not batched).
//! 4. **Parse the statements** (`statements`): in-toto Statement v1, naming
//!    at least one subject, whose predicateType matches its kind.
//! 5. **Check the links** (`links`): `seq` counts from 0, `previous` is the
//!    digest of the previous line's exact bytes (genesis for the first), one
//!    runId, bundle and bundle digest throughout.
//! 6. **Check the subjects** (`subject-digests`): each file an entry names is
//!    a regular file with its signed sha256, named once, by a plain relative path.
//!    A log or product is first compared with the size its artifact records
//!    (a file of another size is changed, and is not read), and is not read
//!    at all when the artifact itself did not check out.
//! 7. **Check the artifacts** (`schemas`): each matches its kind's schema,
//!    says that kind, and records the chain's bundle and bundle digest.
//! 8. **No unnamed files** (`no-unnamed-files`): every file in the directory
//!    (not following symlinks; `runs/` holds archived chains and is skipped)
//!    is named by an entry, except the chain and an empty `.agentplane.lock`;
//!    a `.agentplane-tmp-*` file anywhere is a finding.
//! 9. **The seal** (`seal`): each seal closes exactly the entries before it,
//!    names `evidence.jsonl` with the digest of every byte before it, and the
//!    chain ends in one.
//! 10. **The checkpoints** (`checkpoint`): each seal's C2SP checkpoint is
//!     signed by a trusted key under this chain's origin and is the RFC 6962
//!     root of the lines before it; `checkpoint` is the last seal's; each
//!     `--since` checkpoint is a prefix of this log (it only grew since);
//!     `tlog-index` (when present) is exactly the index of the last seal's log.
//!
//! The chain is read as a stream, in windows of [`reader::WINDOW`] lines:
//! steps 2–4 and the file work of 6–7 run for a window's entries on all
//! cores ([`pool`], [`steps::entry_work`]) while the steps record the previous window's
//! findings in order, carrying what they need from the windows before (the
//! previous line's digest, the run, the names seen, the seal's running
//! digest, the log's tree head). What must be kept for the whole chain is
//! kept in memory up to a budget ([`BUDGET`] bytes each) and in an unlinked
//! temporary file in the system temp dir (`TMPDIR`) beyond it
//! ([`crate::spill`]): the report's line per entry ([`entries`]), the names
//! the chain gives for steps 6 and 8 ([`named`]) and those `tlog-index`
//! must list ([`index_check`]), the last two as sorted runs merged at the
//! end ([`extsort`]). So for an intact chain memory does not grow with the
//! chain; a small one never touches the disk. A temporary file that cannot
//! be written is an error (verification could not be made), never a pass.
//! A tampered chain's findings are all kept in memory (they are the report).
//! Names claimed twice (step 6, only in tampered evidence) are found at the
//! end: verification then runs once more, knowing them ([`named`] says why).
//! Each entry's first finding is deterministic. An entry that failed a step
//! is not checked by steps 6 and 7, so one tampering shows up once, where it
//! was first seen. A check fails exactly when its own step recorded a [`Finding`].

mod checkpoints;
mod entries;
mod extsort;
mod files;
mod findings;
mod index_check;
mod named;
mod pool;
mod reader;
mod schemas;
mod signature;
mod steps;
#[cfg(test)]
mod tests;

use anyhow::Result;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

pub use entries::Entries;
pub use files::{EvidenceFiles, FsEvidence, Listed};
pub use findings::{Finding, Findings, VerifyCheck};

use super::keys::TrustedKey;
use crate::error::Problem;
use crate::evidence::CHAIN_FILE;
use crate::evidence::statement::Predicate;
use crate::types::ArtifactKind;
use reader::{ChainReader, WINDOW, Window};
use steps::Work;

/// Windows queued for the workers at once: the one they check and the next.
const IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub trusted: Vec<TrustedKey>,
    pub allow_unsealed: bool,
    /// Checkpoints (signed-note texts) the auditor saw earlier: `--since`.
    pub since: Vec<String>,
    /// Whether the report keeps its line per entry.
    pub lines: ReportLines,
}

/// Whether [`Report::entries`] holds a line per entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportLines {
    #[default]
    Kept,
    /// Nothing will show them (`-q` with human output): the report keeps
    /// only what its verdict and first failure need, a byte an entry instead
    /// of ~35, and `entries` lists no line (its `len` is still the count).
    Dropped,
}

/// One chain entry's line in the report (stored compactly, [`Entries`]).
#[derive(Debug, Clone, Serialize)]
pub struct EntryResult {
    pub seq: usize,
    pub kind: Option<ArtifactKind>,
    pub file: Option<String>,
    /// Key id of the trusted key whose signature verified (one copy per key).
    #[serde(serialize_with = "shared_str")]
    pub signer: Option<Arc<str>>,
    /// `ok`, or the first thing wrong with this entry.
    pub result: Cow<'static, str>,
}

fn shared_str<S: serde::Serializer>(s: &Option<Arc<str>>, out: S) -> Result<S::Ok, S::Error> {
    s.as_deref().serialize(out)
}

/// One named check over the whole directory.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: VerifyCheck,
    /// False exactly when this check's step recorded a finding.
    pub ok: bool,
    /// The step's first finding, or why (part of) it could not be checked.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dir: String,
    pub verified: bool,
    pub run_id: Option<String>,
    pub bundle: Option<String>,
    pub bundle_digest: Option<String>,
    pub sealed: bool,
    pub entries: Entries,
    pub checks: Vec<CheckResult>,
    /// The first failure, as `entry N (Kind): why` or a directory-level reason.
    pub first_failure: Option<String>,
    pub warnings: Vec<String>,
    /// Everything found, in step order.
    pub findings: Vec<Finding>,
}

/// Verify `dir`. Returns `Err` only when verification could not be attempted
/// (no trusted key, no such directory); a failed verification is `Ok` with
/// `verified: false`.
pub fn verify_dir(dir: &Path, opts: &Options) -> Result<Report> {
    if opts.trusted.is_empty() {
        return Err(Problem::error("no trusted key given: verify trusts only the keys you name")
            .hint("pass --trusted-key PATH.pub (the public key of whoever signed the evidence)")
            .into());
    }
    if !dir.is_dir() {
        return Err(Problem::error(format!("`{}` is not a directory", dir.display()))
            .hint("pass the evidence directory (the bundle's outDir, holding evidence.jsonl)")
            .into());
    }
    verify_files(&FsEvidence::new(dir), &dir.display().to_string(), opts)
}

/// What verification carries from one window to the next.
struct Stream<'a> {
    files: &'a dyn EvidenceFiles,
    opts: &'a Options,
    links: steps::Links,
    named: named::NameSet,
    budget: usize,
    seals: steps::Seals,
    checkpoints: checkpoints::Checkpoints<'a>,
    /// The first entry that could not be read.
    unreadable: Option<usize>,
    rows: entries::EntriesWriter,
}

impl<'a> Stream<'a> {
    /// Record a window's findings, step by step, and its report lines.
    fn apply(&mut self, w: &Window, work: &[Work], f: &mut Findings) {
        f.start_window(w.first, w.len());
        if w.first == 0 {
            let first = work.first().and_then(Work::statement);
            self.checkpoints.begin(first, self.files, &self.opts.trusted, &self.opts.since, self.budget);
        }
        steps::torn(w, f);
        steps::envelopes(w, work, f);
        steps::signatures(w, work, f);
        steps::statements(w, work, f);
        steps::links(w, work, &mut self.links, f);
        steps::subjects(w, work, &mut self.named, f);
        steps::schemas(w, work, f);
        steps::seals(w, work, &mut self.seals);
        self.checkpoints.window(w, work);
        for (k, x) in work.iter().enumerate() {
            let i = w.first + k;
            let st = x.statement();
            if st.is_none() {
                self.unreadable.get_or_insert(i);
            }
            let result = f.first_in_window(i);
            self.rows.push(
                st.map(|s| s.predicate.kind),
                st.filter(|s| !s.predicate.kind.is_seal()).and_then(|s| s.subject.first()).map(|x| x.name.as_str()),
                x.signature.as_ref().and_then(|r| r.as_ref().ok()).copied(),
                result.as_deref(),
            );
        }
    }
}

/// The steps whose failure means the chain's structure is broken: step 10
/// would only say the same thing again.
const STRUCTURAL: [VerifyCheck; 6] = [
    VerifyCheck::ChainPresent,
    VerifyCheck::Envelopes,
    VerifyCheck::Signatures,
    VerifyCheck::Statements,
    VerifyCheck::Links,
    VerifyCheck::Seal,
];

/// Bytes of each thing kept for the whole chain (report lines, names,
/// `tlog-index` names) held in memory before the rest goes to a temporary
/// file: a chain of about 250,000 entries fits without one.
pub const BUDGET: usize = 4 << 20;

/// How verification bounds its memory (the tests vary both: the report must
/// depend on neither).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Lines of the chain read at a time.
    window: usize,
    /// [`BUDGET`].
    budget: usize,
}

/// What one pass over the evidence gave.
enum Pass {
    Done(Box<Report>),
    /// Names were claimed twice that the pass did not know of: run again with them.
    Again(HashSet<named::Key>),
}

/// Verify the evidence `files` give access to (`label` names it in the report).
pub fn verify_files(files: &dyn EvidenceFiles, label: &str, opts: &Options) -> Result<Report> {
    verify_limits(files, label, opts, Limits { window: WINDOW, budget: BUDGET })
}

/// [`verify_files`], reading the chain `window` lines at a time (the tests
/// vary it: the report must not depend on where the windows fall).
#[cfg(test)]
fn verify_windows(files: &dyn EvidenceFiles, label: &str, opts: &Options, window: usize) -> Result<Report> {
    verify_limits(files, label, opts, Limits { window, budget: BUDGET })
}

/// [`verify_files`] within `limits`: one pass, and a second one when the
/// first found names claimed twice (both under one salt).
fn verify_limits(files: &dyn EvidenceFiles, label: &str, opts: &Options, limits: Limits) -> Result<Report> {
    let salt = named::Salt::random();
    let twice = match verify_pass(files, label, opts, limits, salt, &HashSet::new())? {
        Pass::Done(r) => return Ok(*r),
        Pass::Again(twice) => twice,
    };
    match verify_pass(files, label, opts, limits, salt, &twice)? {
        Pass::Done(r) => Ok(*r),
        Pass::Again(_) => Err(Problem::error(format!("the evidence in `{label}` changed while it was verified"))
            .hint("verify it again once nothing writes to it")
            .into()),
    }
}

/// One pass over the evidence, knowing the names claimed twice (`twice`).
fn verify_pass(
    files: &dyn EvidenceFiles,
    label: &str,
    opts: &Options,
    limits: Limits,
    salt: named::Salt,
    twice: &HashSet<named::Key>,
) -> Result<Pass> {
    let Limits { window, budget } = limits;
    let policy = signature::Strict::new(&opts.trusted);
    let mut f = Findings::default();
    let mut warnings = Vec::new();
    let mut notes: BTreeMap<VerifyCheck, String> = BTreeMap::new();

    // Step 1: a regular file, not empty, of whole lines.
    let mut reader = match files.chain() {
        Ok(r) => ChainReader::new(r),
        Err(e) => {
            f.dir(VerifyCheck::ChainPresent, e);
            return Ok(Pass::Done(Box::new(assemble(label, Entries::default(), f, None, false, warnings, notes))));
        }
    };
    let mut next = match reader.next_window(window) {
        Ok(w) if w.is_empty() => Err(format!("`{CHAIN_FILE}` is empty")),
        other => other,
    };
    if let Err(e) = next {
        f.dir(VerifyCheck::ChainPresent, e);
        return Ok(Pass::Done(Box::new(assemble(label, Entries::default(), f, None, false, warnings, notes))));
    }
    let mut s = Stream {
        files,
        opts,
        links: steps::Links::default(),
        named: named::NameSet::new(salt, twice, budget),
        budget,
        seals: steps::Seals::default(),
        checkpoints: checkpoints::Checkpoints::default(),
        unreadable: None,
        rows: entries::EntriesWriter::new(
            opts.trusted.iter().map(|k| Arc::from(k.id.as_str())).collect(),
            opts.lines == ReportLines::Kept,
            budget,
        ),
    };
    // Windows in flight: the workers check the oldest, then the next one
    // queued behind it, while this thread records findings in order and
    // reads ahead ([`pool`]); at most `IN_FLIGHT` windows are held.
    // Step 8's listing needs only the directory: it is made meanwhile.
    let work = |line: &[u8], torn: bool| steps::entry_work(line, torn, files, &opts.trusted, &policy);
    let listing = std::thread::scope(|sc| {
        let listing = sc.spawn(|| steps::list_dir(files, salt, budget));
        let pool = pool::Pool::start(sc, &work, reader.spares());
        let mut queued: VecDeque<Arc<pool::Job>> = VecDeque::new();
        loop {
            while queued.len() < IN_FLIGHT
                && let Ok(w) = next.as_mut()
                && !w.is_empty()
            {
                queued.push_back(pool.submit(std::mem::take(w)));
                next = reader.next_window(window);
            }
            let Some(job) = queued.pop_front() else { break };
            let work = job.wait();
            s.apply(job.window(), &work, &mut f);
        }
        listing.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the evidence directory could not be listed")))
    })?;
    if let Err(e) = next {
        // The stream broke off (the file grew past its cap, or a read failed).
        f.dir(VerifyCheck::ChainPresent, e);
    }

    let (note, claimed_twice) = steps::unnamed_files(listing, s.named.finish()?, s.unreadable, &mut f)?;
    if !claimed_twice.is_subset(twice) {
        return Ok(Pass::Again(claimed_twice));
    }
    if let Some(n) = note {
        notes.insert(VerifyCheck::NoUnnamedFiles, n);
    }
    let (sealed, note) = steps::seal_end(s.seals, !s.rows.is_empty(), opts.allow_unsealed, &mut f, &mut warnings);
    if let Some(n) = note {
        notes.insert(VerifyCheck::Seal, n);
    }
    let runs = s.unreadable.is_none() && STRUCTURAL.iter().all(|c| f.first_of(*c).is_none());
    s.checkpoints.end(runs, reader.offset(), files, &mut f)?;
    // Steps 9 and 10 judge seals once the whole chain was seen: their
    // findings are the first of a seal's line only when nothing came before.
    let mut rows = s.rows;
    for x in f.of(VerifyCheck::Seal).iter().chain(f.of(VerifyCheck::Checkpoint)) {
        if let Some(i) = x.entry {
            rows.late(i, &x.message);
        }
    }
    Ok(Pass::Done(Box::new(assemble(label, rows.finish()?, f, s.links.first, sealed, warnings, notes))))
}

/// The report: one line per entry, one result per check, the first failure.
fn assemble(
    label: &str,
    entries: Entries,
    f: Findings,
    first: Option<Predicate>,
    sealed: bool,
    warnings: Vec<String>,
    notes: BTreeMap<VerifyCheck, String>,
) -> Report {
    let first_failure = entries
        .first_failure()
        .map(|(seq, kind, why)| format!("entry {seq} ({}): {why}", kind.map_or("unreadable", ArtifactKind::as_str)))
        .or_else(|| f.first_for_dir().map(|x| x.message.clone()));
    let checks = VerifyCheck::ALL
        .iter()
        .map(|&name| {
            let found = f.first_of(name).map(|x| match x.entry {
                Some(i) => format!("entry {i}: {}", x.message),
                None => x.message.clone(),
            });
            CheckResult { name, ok: found.is_none(), detail: found.or_else(|| notes.get(&name).cloned()) }
        })
        .collect();
    let findings = f.into_vec();
    Report {
        dir: label.to_string(),
        verified: findings.is_empty(),
        run_id: first.as_ref().map(|p| p.run_id.clone()),
        bundle: first.as_ref().map(|p| p.bundle.clone()),
        bundle_digest: first.map(|p| p.bundle_digest),
        sealed,
        entries,
        checks,
        first_failure,
        warnings,
        findings,
    }
}
