//! The numbered steps of verification (see the list in [`super`]).
//!
//! Steps 2, 3, 4 and the file halves of 6 and 7 look at one entry only, so
//! [`entry_work`] does that work for one entry, on all cores at once; each
//! step function then applies its own results to the window in entry order,
//! with what it carries from the windows before (the previous line's digest,
//! the first entry's run, the names seen). Findings are recorded step by
//! step, so an entry's first finding is the one a strictly sequential run
//! would have found.

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Component, Path};

use super::extsort::Merge;
use super::files::{EvidenceFiles, Listed};
use super::findings::{Findings, VerifyCheck};
use super::named::{self, Key, ListedName, NameSet, Names, Salt};
use super::reader::Window;
use super::signature;
use crate::evidence::dsse::{self, Envelope, PAYLOAD_TYPE};
use crate::evidence::keys::TrustedKey;
use crate::evidence::statement::{Predicate, STATEMENT_TYPE, Statement, predicate_type};
use crate::evidence::tlog;
use crate::evidence::{CHAIN_FILE, CHECKPOINT_FILE, GENESIS, LOCK_FILE, TLOG_INDEX_FILE};
use crate::fsx::{self, NotRegular};
use sha2::Digest as _;

/// The prefix of agentplane's temporary files (`fsx::write_atomic`).
pub const TMP_PREFIX: &str = ".agentplane-tmp-";

/// What one entry's own content says, before it is compared with its
/// neighbours. Each step's slot is `None` when an earlier step failed.
#[derive(Debug, Default, Clone)]
pub struct Work {
    /// `sha256:<hex>` of the line's exact bytes (the next entry's `previous`).
    pub digest: String,
    /// The line's RFC 6962 leaf hash (step 10).
    pub leaf: tlog::Hash,
    /// Step 2.
    pub envelope: Option<Result<(), String>>,
    /// Step 3: the index of the trusted key that verified.
    pub signature: Option<Result<usize, String>>,
    /// Step 4.
    pub statement: Option<Result<Statement, String>>,
    /// Step 6, per subject in order: its name and what is wrong with its file.
    pub subjects: Vec<SubjectResult>,
    /// Step 7.
    pub artifact: Option<Result<(), String>>,
}

/// One subject's name and what is wrong with its file, if anything.
pub type SubjectResult = (String, Result<(), String>);

impl Work {
    pub fn statement(&self) -> Option<&Statement> {
        self.statement.as_ref().and_then(|s| s.as_ref().ok())
    }
}

/// Step 1 for a window: its last line, when the chain's last has no newline,
/// is a torn write or a truncation.
pub fn torn(w: &Window, f: &mut Findings) {
    if w.torn {
        f.entry(
            VerifyCheck::ChainPresent,
            w.first + w.len() - 1,
            format!("a partial line with no newline: `{CHAIN_FILE}` was truncated or torn"),
        );
    }
}

/// The per-entry work of steps 2, 3, 4, 6 and 7 for one line (`skip`: it
/// is the torn last line, only hashed), done on every core by [`super::pool`].
pub fn entry_work(
    bytes: &[u8],
    skip: bool,
    files: &dyn EvidenceFiles,
    trusted: &[TrustedKey],
    policy: &signature::Strict,
) -> Work {
    let mut w = Work {
        digest: format!("sha256:{}", fsx::sha256_hex(bytes)),
        leaf: tlog::merkle::leaf_hash(bytes),
        ..Work::default()
    };
    if skip {
        return w;
    }
    let (env, body, sig) = match parse_envelope(bytes) {
        Ok(p) => p,
        Err(e) => {
            w.envelope = Some(Err(e));
            return w;
        }
    };
    w.envelope = Some(Ok(()));
    // The signature is checked over the exact payload bytes before they are parsed.
    match policy.check(&env.payload_type, &body, &env.signatures[0].keyid, &sig) {
        Some(k) => w.signature = Some(Ok(k)),
        None => {
            // Name the key the envelope says signed it, so the auditor knows
            // which `--trusted-key` it would take (when it is not one given).
            let keyid = &env.signatures[0].keyid; // escaped where it is shown
            let why = if trusted.iter().any(|k| k.id == env.signatures[0].keyid) {
                format!("{} (it names trusted key {keyid})", signature::DOES_NOT_VERIFY)
            } else {
                format!(
                    "{}: it names key {keyid}, which is not among the trusted keys: pass its public key with --trusted-key if you trust its owner",
                    signature::DOES_NOT_VERIFY
                )
            };
            w.signature = Some(Err(why));
            return w;
        }
    }
    let st = parse_statement(&body);
    if let Ok(s) = &st
        && !s.predicate.kind.is_seal()
    {
        let artifact_bytes;
        (w.subjects, artifact_bytes) = subject_files(s, files);
        if let Some(b) = artifact_bytes.filter(|_| w.subjects.iter().all(|(_, r)| r.is_ok())) {
            w.artifact = Some(artifact_matches(s, &b));
        }
    }
    w.statement = Some(st);
    w
}

/// Step 2 for one line: a DSSE envelope, our payload type, exactly one
/// signature of 64 bytes, a base64 payload.
fn parse_envelope(bytes: &[u8]) -> Result<(Envelope, Vec<u8>, [u8; 64]), String> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(format!("payloadType is `{}`, not `{PAYLOAD_TYPE}`", env.payload_type));
    }
    if env.signatures.len() != 1 {
        return Err(format!("the envelope has {} signatures; each entry is signed exactly once", env.signatures.len()));
    }
    let body = env.body().map_err(|e| format!("payload is not base64: {e}"))?;
    let sig = dsse::decode_sig(&env.signatures[0].sig).ok_or("the signature is not 64 base64-encoded bytes")?;
    Ok((env, body, sig))
}

/// Step 4 for one entry: an in-toto Statement v1 whose predicate type is its kind's.
fn parse_statement(body: &[u8]) -> Result<Statement, String> {
    let s: Statement =
        serde_json::from_slice(body).map_err(|e| format!("payload is not an agentplane statement: {e}"))?;
    if s.statement_type != STATEMENT_TYPE {
        return Err(format!("_type is `{}`, not `{STATEMENT_TYPE}`", s.statement_type));
    }
    if s.predicate_type != predicate_type(s.predicate.kind) {
        return Err(format!("predicateType `{}` does not match kind `{}`", s.predicate_type, s.predicate.kind));
    }
    if s.subject.is_empty() {
        return Err("the statement names no subject".into());
    }
    Ok(s)
}

/// Step 6 for one entry: each subject's file against its signed digest. The
/// first subject is the artifact, read once (capped) and returned for step 7;
/// logs and products are hashed as streams, after their size is compared with
/// the one the artifact records (when it does). When the artifact did not
/// check out, nothing it records is trusted and they are not read at all.
fn subject_files(s: &Statement, files: &dyn EvidenceFiles) -> (Vec<SubjectResult>, Option<Vec<u8>>) {
    let mut artifact = None;
    let mut recorded = None;
    let mut out = Vec::with_capacity(s.subject.len());
    for (i, subj) in s.subject.iter().enumerate() {
        let name = &subj.name;
        let result = if !safe_name(name) {
            Err(format!("subject `{name}` is not a plain path inside the directory"))
        } else if let Some(want) = subj.sha256_hex() {
            let got = if i == 0 {
                files.read_artifact(name).map(|b| {
                    let hex = fsx::sha256_hex(&b);
                    if hex == want && s.subject.len() > 1 {
                        recorded = Some(RecordedSizes::of(&b));
                    }
                    artifact = Some(b);
                    hex
                })
            } else {
                match &recorded {
                    Some(r) => files.hash(name, r.of_file(name)),
                    None => Err(format!(
                        "`{name}` not checked: `{}`, which records it, did not check out",
                        s.subject[0].name
                    )),
                }
            };
            match got {
                Err(e) => Err(e),
                Ok(got) if got != want => Err(format!("`{name}` changed: sha256 {got}, signed {want}")),
                Ok(_) => Ok(()),
            }
        } else {
            Err(format!("subject `{name}` has no sha256 digest"))
        };
        out.push((name.clone(), result));
    }
    (out, artifact)
}

/// The sizes an artifact records for the files it names (a RunArtifact's
/// `logs` and `products`: `{path, sha256, bytes}`). Read leniently: what does
/// not parse records nothing here, and step 7 judges the artifact's schema.
#[derive(Debug, Default, serde::Deserialize)]
struct RecordedSizes {
    #[serde(default)]
    logs: Vec<RecordedFile>,
    #[serde(default)]
    products: Vec<RecordedFile>,
}

#[derive(Debug, serde::Deserialize)]
struct RecordedFile {
    path: String,
    bytes: u64,
}

impl RecordedSizes {
    fn of(artifact: &[u8]) -> RecordedSizes {
        serde_json::from_slice(artifact).unwrap_or_default()
    }

    /// The size recorded for `name`, when exactly one size is recorded for it.
    fn of_file(&self, name: &str) -> Option<u64> {
        let mut sizes = self.logs.iter().chain(&self.products).filter(|f| f.path == name).map(|f| f.bytes);
        let first = sizes.next()?;
        sizes.all(|b| b == first).then_some(first)
    }
}

/// Step 7 for one entry: its artifact matches its kind's schema, says that
/// kind, and belongs to the entry's bundle.
fn artifact_matches(s: &Statement, bytes: &[u8]) -> Result<(), String> {
    let kind = s.predicate.kind;
    let validator = super::schemas::file(kind).ok_or_else(|| format!("unknown entry kind `{kind}`"))?;
    let name = &s.subject[0].name;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("`{name}` is not JSON: {e}"))?;
    if let Some(err) = validator.first_error(&value) {
        return Err(format!("`{name}` does not match the {kind} schema at `{}`: {err}", err.instance_path()));
    }
    if value.get("kind").and_then(Value::as_str) != Some(kind.as_str()) {
        return Err(format!("`{name}` is not a {kind}"));
    }
    // What upstream's file has no room for is in the predicate's details,
    // checked against their own schema (absent details are empty ones).
    let empty = Value::Object(Default::default());
    let details = s.predicate.details.as_ref();
    match super::schemas::details(kind) {
        Some(dv) => {
            if let Some(err) = dv.first_error(details.unwrap_or(&empty)) {
                return Err(format!(
                    "the {kind} entry's details do not match their schema at `{}`: {err}",
                    err.instance_path()
                ));
            }
        }
        None if details.is_some_and(|d| d != &empty) => {
            return Err(format!("a {kind} entry carries details it cannot have"));
        }
        None => {}
    }
    let field = |k: &str| value.get(k).or_else(|| details.and_then(|d| d.get(k))).and_then(Value::as_str);
    if field("bundle") != Some(s.predicate.bundle.as_str()) {
        return Err(format!("`{name}` is for another bundle (spliced)"));
    }
    match field("bundleDigest") {
        Some(d) if d != s.predicate.bundle_digest => Err(format!("`{name}` records another bundle digest (spliced)")),
        _ => Ok(()),
    }
}

/// A subject name is a relative path with no `..`, `.` or root components.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && Path::new(name).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Record one step's per-entry results for a window.
fn apply<T>(
    w: &Window,
    work: &[Work],
    f: &mut Findings,
    step: VerifyCheck,
    slot: impl Fn(&Work) -> &Option<Result<T, String>>,
) {
    for (k, x) in work.iter().enumerate() {
        if let Some(Err(why)) = slot(x) {
            f.entry(step, w.first + k, why.clone());
        }
    }
}

/// Step 2: each line is a DSSE envelope with our payload type and one signature.
pub fn envelopes(w: &Window, work: &[Work], f: &mut Findings) {
    apply(w, work, f, VerifyCheck::Envelopes, |x| &x.envelope);
}

/// Step 3: each signature verifies, strictly, against a trusted key
/// (never one the evidence carries), over PAE(payloadType, exact payload).
pub fn signatures(w: &Window, work: &[Work], f: &mut Findings) {
    apply(w, work, f, VerifyCheck::Signatures, |x| &x.signature);
}

/// Step 4: each verified payload is an in-toto Statement v1 for its kind.
pub fn statements(w: &Window, work: &[Work], f: &mut Findings) {
    apply(w, work, f, VerifyCheck::Statements, |x| &x.statement);
}

/// What step 5 carries from one window to the next.
#[derive(Debug, Default)]
pub struct Links {
    /// The digest of the last line seen (`None` before the first).
    prev: Option<String>,
    /// The first readable entry's predicate: its runId, bundle and digest are the chain's.
    pub first: Option<Predicate>,
}

/// Step 5: the links. `seq` counts from 0; `previous` is the digest of the
/// previous line's exact bytes; one runId, bundle and bundle digest
/// throughout (those of the first readable entry, kept in `links`).
pub fn links(w: &Window, work: &[Work], links: &mut Links, f: &mut Findings) {
    for (k, x) in work.iter().enumerate() {
        let i = w.first + k;
        let prev = links.prev.replace(x.digest.clone());
        let Some(s) = x.statement() else { continue };
        let r = links.first.get_or_insert_with(|| s.predicate.clone());
        let p = &s.predicate;
        let expected_prev = prev.as_deref().unwrap_or(GENESIS);
        let why = if p.seq != i as u64 {
            format!("seq is {} where {i} belongs (missing, extra or reordered entry)", p.seq)
        } else if p.previous != expected_prev {
            "previous does not match the digest of the line before (entry removed, inserted or changed)".into()
        } else if p.run_id != r.run_id {
            format!("runId `{}` differs from the chain's `{}` (spliced from another run)", p.run_id, r.run_id)
        } else if p.bundle != r.bundle || p.bundle_digest != r.bundle_digest {
            "bundle or bundle digest differs from the chain's first entry (spliced)".into()
        } else {
            continue;
        };
        f.entry(VerifyCheck::Links, i, why);
    }
}

/// Step 6: for every entry still in good standing, each file it names has
/// the signed digest, and no file is named twice. Every name a readable
/// entry gives is recorded for step 8 ([`NameSet`] says how "named twice"
/// is decided).
pub fn subjects(w: &Window, work: &[Work], named: &mut NameSet, f: &mut Findings) {
    for (k, x) in work.iter().enumerate() {
        let i = w.first + k;
        let Some(s) = x.statement() else { continue };
        if s.predicate.kind.is_seal() {
            continue;
        }
        let failed = f.entry_failed(i);
        // (`x.subjects` are the statement's subjects, in order.)
        for (j, subj) in s.subject.iter().enumerate() {
            let key = named.key(&subj.name);
            let checked = if failed { None } else { x.subjects.get(j) };
            let first = named.name(key, matches!(checked, Some((_, Ok(())))));
            match checked {
                Some((_, Err(why))) => f.entry(VerifyCheck::SubjectDigests, i, why.clone()),
                Some((name, Ok(()))) if !first => {
                    f.entry(VerifyCheck::SubjectDigests, i, format!("`{name}` is named twice (duplicated entry)"));
                }
                _ => {}
            }
        }
    }
}

/// Step 7: every artifact whose file checked out matches its schema, kind and bundle.
pub fn schemas(w: &Window, work: &[Work], f: &mut Findings) {
    for (k, x) in work.iter().enumerate() {
        let i = w.first + k;
        if let Some(Err(why)) = &x.artifact
            && !f.entry_failed(i)
        {
            f.entry(VerifyCheck::Schemas, i, why.clone());
        }
    }
}

/// Step 8's half that needs only the directory: its listing, with the lock
/// and temp files judged and every other name sorted by fingerprint for
/// [`unnamed_files`]. It does not depend on the chain, so it runs while the
/// chain is read (`salt`: the one the chain's names are kept under).
pub struct Listing {
    /// Findings known from the listing alone: (path, why).
    found: Vec<(String, String)>,
    /// The names an entry must name, sorted (`None` when the listing failed).
    candidates: Option<Merge<ListedName>>,
    /// Why the directory could not be listed.
    listed: Result<(), String>,
}

/// List the evidence directory for step 8. `Err`: the names could not be kept.
pub fn list_dir(files: &dyn EvidenceFiles, salt: Salt, budget: usize) -> anyhow::Result<Listing> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut candidates = named::listing(budget);
    let mut kept = Ok(());
    let listed = files.list(&mut |l: Listed| {
        let base = l.name.rsplit('/').next().unwrap_or(&l.name);
        let why = if l.name == CHAIN_FILE || l.name == CHECKPOINT_FILE || l.name == TLOG_INDEX_FILE {
            return; // steps 1 and 10 read them
        } else if l.name == LOCK_FILE {
            match l.kind {
                Ok(0) => return,
                Ok(n) => format!("`{LOCK_FILE}` is not empty ({n} bytes); agentplane's lock file always is"),
                Err(k) => format!("`{LOCK_FILE}` {k}"),
            }
        } else if base.starts_with(TMP_PREFIX) {
            format!("`{}` is a temporary file: agentplane's atomic writes never leave one behind", l.name)
        } else {
            // Unnamed unless an entry names it: known once both are sorted.
            if kept.is_ok() {
                kept = candidates.push(ListedName::new(&salt, l.name, l.kind));
            }
            return;
        };
        found.push((l.name, why));
    });
    kept?;
    let candidates = match listed {
        Ok(()) => Some(candidates.finish()?),
        Err(_) => None,
    };
    Ok(Listing { found, candidates, listed })
}

/// Step 8: nothing in the directory that the chain does not name. The lock
/// must be an empty regular file; a temp file is never left by agentplane.
/// Run once every entry was seen (`names`; `unreadable` is the first entry
/// that could not be read, whose names are unknown), with the directory's
/// [`Listing`]. The listing comes in no order: its findings are reported
/// sorted by path, as a walk of the directory in name order would meet them.
/// Returns a note when the unnamed-file part could not be checked, and the
/// names claimed twice (step 6, [`super::named`]). `Err`: the names could
/// not be kept.
pub fn unnamed_files(
    listing: Listing,
    names: Names,
    unreadable: Option<usize>,
    f: &mut Findings,
) -> anyhow::Result<(Option<String>, HashSet<Key>)> {
    let Listing { mut found, candidates, listed } = listing;
    let walked = named::walk(names, candidates.filter(|_| unreadable.is_none()))?;
    if let Err(e) = listed {
        f.dir(VerifyCheck::NoUnnamedFiles, e);
        return Ok((None, walked.twice));
    }
    for l in walked.unnamed {
        let why = match l.kind() {
            Ok(()) => format!("`{}` is in the directory but no entry names it", l.name),
            Err(k) => format!("`{}` is in the directory but no entry names it ({})", l.name, what(k)),
        };
        found.push((l.name, why));
    }
    // Path order: component by component, as a sorted walk visits them.
    found.sort_by(|(a, _), (b, _)| Path::new(a).cmp(Path::new(b)));
    for (_, why) in found {
        f.dir(VerifyCheck::NoUnnamedFiles, why);
    }
    let note = unreadable
        .map(|i| format!("unnamed files not checked: entry {i} could not be read, so what it names is unknown"));
    Ok((note, walked.twice))
}

/// A non-regular directory entry, in a few words.
fn what(k: NotRegular) -> &'static str {
    match k {
        NotRegular::Symlink => "a symbolic link",
        NotRegular::Fifo => "a FIFO",
        NotRegular::Socket => "a socket",
        NotRegular::Device => "a device",
        NotRegular::Directory => "a directory",
        NotRegular::Missing => "gone while listed",
        NotRegular::TooLarge { .. } => "too large",
    }
}

/// What step 9 carries from one window to the next.
pub struct Seals {
    /// sha256 of every line so far, each with its newline.
    prefix: sha2::Sha256,
    /// Findings so far, each with whether it stands only if no link broke
    /// anywhere in the chain (known at the end).
    found: Vec<(usize, String, bool)>,
    /// Whether the last entry seen was a seal (`None`: it could not be read).
    last: Option<bool>,
}

impl Default for Seals {
    fn default() -> Self {
        Seals { prefix: sha2::Sha256::new(), found: Vec::new(), last: None }
    }
}

/// Step 9 for a window: each seal closes exactly the entries before it,
/// naming the chain with the digest of every byte before its own line.
pub fn seals(w: &Window, work: &[Work], seals: &mut Seals) {
    for (k, x) in work.iter().enumerate() {
        let i = w.first + k;
        let st = x.statement();
        seals.last = st.map(|s| s.predicate.kind.is_seal());
        let line = w.line(k);
        let Some(s) = st.filter(|s| s.predicate.kind.is_seal()) else {
            seals.prefix.update(line);
            seals.prefix.update(b"\n");
            continue;
        };
        // A seal's subject is `evidence.jsonl` with the sha256 of every byte
        // before the seal's own line: the file as it was when the seal was signed.
        let before = hex::encode(seals.prefix.clone().finalize());
        seals.prefix.update(line);
        seals.prefix.update(b"\n");
        let p = &s.predicate;
        if p.length != Some(p.seq) || p.head.as_deref() != Some(p.previous.as_str()) {
            seals.found.push((i, "the seal's length or head does not match the chain it closes".into(), false));
        } else if s.subject.len() != 1
            || s.subject[0].name != CHAIN_FILE
            || s.subject[0].sha256_hex() != Some(before.as_str())
        {
            // (After a broken link the prefix is known to differ: that
            // tampering is reported where it was first seen, not here.)
            seals.found.push((
                i,
                format!("the seal's subject is not `{CHAIN_FILE}` as it was when the seal was signed"),
                true,
            ));
        }
    }
}

/// Step 9, once every entry was seen: record the seals' findings, and the
/// chain must end in one (with `allow_unsealed`, a missing final seal is a
/// warning). Returns whether the chain is sealed, and a note when that is unknown.
pub fn seal_end(
    seals: Seals,
    any_entry: bool,
    allow_unsealed: bool,
    f: &mut Findings,
    warnings: &mut Vec<String>,
) -> (bool, Option<String>) {
    let links_held = f.first_of(VerifyCheck::Links).is_none();
    for (i, why, only_if_links_held) in seals.found {
        if links_held || !only_if_links_held {
            f.entry(VerifyCheck::Seal, i, why);
        }
    }
    match (any_entry, seals.last) {
        (true, Some(true)) => (true, None),
        (true, Some(false)) => {
            let msg = "the chain does not end in a seal (truncated, or the run never finished)".to_string();
            if allow_unsealed {
                warnings.push(msg);
            } else {
                f.dir(VerifyCheck::Seal, msg);
            }
            (false, None)
        }
        (true, None) => (false, Some("final seal not checked: the last entry could not be read".into())),
        (false, _) => (false, None),
    }
}
