//! Offline verification of an evidence directory (DESIGN §7).
//!
//! [`verify_dir`] is one straight function of numbered steps. It trusts only
//! the keys it is given: an envelope's `keyid` is a hint for which trusted key
//! to try, and a key the evidence itself carries is never trusted. Signatures
//! are checked over the exact payload bytes before those bytes are parsed.

use anyhow::Result;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use super::dsse::{self, Envelope, PAYLOAD_TYPE};
use super::keys::TrustedKey;
use super::statement::{STATEMENT_TYPE, Statement, predicate_type};
use super::{CHAIN_FILE, GENESIS, LOCK_FILE, RUNS_DIR};
use crate::error::Problem;
use crate::fsx;
use crate::types::ArtifactKind;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub trusted: Vec<TrustedKey>,
    pub allow_unsealed: bool,
}

/// One chain entry's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct EntryResult {
    pub seq: usize,
    pub kind: Option<ArtifactKind>,
    pub file: Option<String>,
    /// Key id of the trusted key whose signature verified.
    pub signer: Option<String>,
    /// `ok`, or the first thing wrong with this entry.
    pub result: String,
}

/// One named check over the whole directory.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
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
    pub entries: Vec<EntryResult>,
    pub checks: Vec<CheckResult>,
    /// The first failure, as `entry N (Kind): why` or a directory-level reason.
    pub first_failure: Option<String>,
    pub warnings: Vec<String>,
}

struct Line<'a> {
    bytes: &'a [u8],
    env: Option<Envelope>,
    body: Option<Vec<u8>>,
    statement: Option<Statement>,
    signer: Option<String>,
    problem: Option<String>,
}

impl Line<'_> {
    fn fail(&mut self, why: impl Into<String>) {
        if self.problem.is_none() {
            self.problem = Some(why.into());
        }
    }
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
    let mut report = Report {
        dir: dir.display().to_string(),
        verified: false,
        run_id: None,
        bundle: None,
        bundle_digest: None,
        sealed: false,
        entries: Vec::new(),
        checks: Vec::new(),
        first_failure: None,
        warnings: Vec::new(),
    };
    let mut dir_failures: Vec<String> = Vec::new();

    // Step 1: read the chain and split it into lines. Every line must end in
    // a newline; a partial last line is a torn write or a truncation.
    let chain_path = dir.join(CHAIN_FILE);
    let bytes = match std::fs::read(&chain_path) {
        Ok(b) => b,
        Err(e) => {
            report.first_failure = Some(format!("`{CHAIN_FILE}` cannot be read: {e}"));
            report.checks.push(CheckResult { name: "chain-present", ok: false, detail: report.first_failure.clone() });
            return Ok(report);
        }
    };
    let mut raw: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let torn = raw.last().is_some_and(|l| !l.is_empty());
    if !torn {
        raw.pop();
    }
    if raw.is_empty() {
        dir_failures.push(format!("`{CHAIN_FILE}` is empty"));
    }
    let mut lines: Vec<Line> = raw
        .iter()
        .map(|b| Line { bytes: b, env: None, body: None, statement: None, signer: None, problem: None })
        .collect();
    if torn && let Some(last) = lines.last_mut() {
        last.fail(format!("a partial line with no newline: `{CHAIN_FILE}` was truncated or torn"));
    }

    // Step 2: parse each line as a DSSE envelope with our payload type and one signature.
    for line in lines.iter_mut().filter(|l| l.problem.is_none()) {
        match serde_json::from_slice::<Envelope>(line.bytes) {
            Err(e) => line.fail(format!("not a DSSE envelope: {e}")),
            Ok(env) if env.payload_type != PAYLOAD_TYPE => line.fail(format!("payloadType is `{}`", env.payload_type)),
            Ok(env) if env.signatures.is_empty() => line.fail("the envelope has no signature"),
            Ok(env) => match env.body() {
                Ok(body) => {
                    line.body = Some(body);
                    line.env = Some(env);
                }
                Err(e) => line.fail(format!("payload is not base64: {e}")),
            },
        }
    }

    // Step 3: verify each signature over PAE(payloadType, exact payload bytes)
    // against the trusted keys only, before the payload is parsed.
    verify_signatures(&mut lines, &opts.trusted);

    // Steps 4, 6 and 7 need no other entry, so their work (parsing, reading
    // and hashing files, schema checks) runs on all cores first; each step
    // below then applies its findings in order, so the first failure reported
    // for an entry is the same as doing the steps one after another.
    let validators = artifact_validators()?;
    let work = per_entry_work(dir, &lines, &validators);

    // Step 4: parse the verified payload as an in-toto Statement v1 whose
    // predicate type matches its kind.
    for (line, w) in lines.iter_mut().zip(&work) {
        match &w.statement {
            Some(Ok(s)) => line.statement = Some(s.clone()),
            Some(Err(e)) => line.fail(e.clone()),
            None => {}
        }
    }

    // Step 5: the links. seq counts from 0; previous is the digest of the
    // previous line's exact bytes; one runId, bundle and bundle digest throughout.
    let first = lines.first().and_then(|l| l.statement.as_ref()).map(|s| s.predicate.clone());
    if let Some(p) = &first {
        report.run_id = Some(p.run_id.clone());
        report.bundle = Some(p.bundle.clone());
        report.bundle_digest = Some(p.bundle_digest.clone());
    }
    let digests: Vec<String> = lines.iter().map(|l| format!("sha256:{}", fsx::sha256_hex(l.bytes))).collect();
    for i in 0..lines.len() {
        let Some(p) = lines[i].statement.as_ref().map(|s| s.predicate.clone()) else {
            continue;
        };
        let expected_prev = if i == 0 { GENESIS } else { digests[i - 1].as_str() };
        if p.seq != i as u64 {
            lines[i].fail(format!("seq is {} where {} belongs (missing, extra or reordered entry)", p.seq, i));
        } else if p.previous != expected_prev {
            lines[i].fail("previous does not match the digest of the line before (entry removed, inserted or changed)");
        } else if let Some(f) = &first {
            if p.run_id != f.run_id {
                lines[i].fail(format!(
                    "runId `{}` differs from the chain's `{}` (spliced from another run)",
                    p.run_id, f.run_id
                ));
            } else if p.bundle != f.bundle || p.bundle_digest != f.bundle_digest {
                lines[i].fail("bundle or bundle digest differs from the chain's first entry (spliced)");
            }
        }
    }

    // Step 6: every subject's digest matches the file on disk, each file is
    // named once, and names stay inside the directory.
    let mut named: BTreeSet<String> = BTreeSet::new();
    for (line, w) in lines.iter_mut().zip(&work) {
        if line.statement.as_ref().is_none_or(|s| s.predicate.kind.is_seal()) {
            continue;
        }
        for (name, problem) in &w.subjects {
            if problem.is_none() && !named.insert(name.clone()) {
                line.fail(format!("`{name}` is named by an earlier entry too (duplicated entry)"));
            } else if let Some(p) = problem {
                named.insert(name.clone());
                line.fail(p.clone());
            }
        }
    }

    // Step 7: every artifact matches its schema, says the kind its entry
    // says, and belongs to the chain's bundle.
    for (line, w) in lines.iter_mut().zip(&work) {
        if line.problem.is_none()
            && let Some(p) = &w.artifact
        {
            line.fail(p.clone());
        }
    }

    // Step 8: no evidence file in the directory that the chain does not name.
    for extra in unnamed_files(dir, &named) {
        dir_failures.push(format!("`{extra}` is in the directory but no entry names it"));
    }

    // Step 9: the seal. Each seal closes exactly the entries before it, and
    // the chain ends in one.
    for line in lines.iter_mut() {
        let Some(s) = line.statement.clone() else {
            continue;
        };
        if s.predicate.kind.is_seal()
            && (s.predicate.length != Some(s.predicate.seq)
                || s.predicate.head.as_deref() != Some(s.predicate.previous.as_str()))
        {
            line.fail("the seal's length or head does not match the chain it closes");
        }
    }
    report.sealed = lines.last().and_then(|l| l.statement.as_ref()).is_some_and(|s| s.predicate.kind.is_seal());
    if !report.sealed && !lines.is_empty() {
        let msg = "the chain does not end in a seal (truncated, or the run never finished)".to_string();
        if opts.allow_unsealed {
            report.warnings.push(msg);
        } else {
            dir_failures.push(msg);
        }
    }

    // The verdict: the first bad entry, else the first directory-level failure.
    for (i, line) in lines.iter().enumerate() {
        let kind = line.statement.as_ref().map(|s| s.predicate.kind);
        let file = line
            .statement
            .as_ref()
            .and_then(|s| if s.predicate.kind.is_seal() { None } else { s.subject.first().map(|x| x.name.clone()) });
        if report.first_failure.is_none()
            && let Some(p) = &line.problem
        {
            report.first_failure =
                Some(format!("entry {i} ({}): {p}", kind.map_or("unreadable", ArtifactKind::as_str)));
        }
        report.entries.push(EntryResult {
            seq: i,
            kind,
            file,
            signer: line.signer.clone(),
            result: line.problem.clone().unwrap_or_else(|| "ok".into()),
        });
    }
    if report.first_failure.is_none() {
        report.first_failure = dir_failures.first().cloned();
    }
    let entry_fail = |pred: &dyn Fn(&str) -> bool| {
        lines.iter().filter_map(|l| l.problem.as_deref()).find(|p| pred(p)).map(str::to_string)
    };
    report.checks = vec![
        check("envelopes", entry_fail(&|p| p.contains("DSSE") || p.contains("payload"))),
        check("signatures", entry_fail(&|p| p.contains("signature"))),
        check("links", entry_fail(&|p| p.contains("seq") || p.contains("previous") || p.contains("spliced"))),
        check(
            "subject-digests",
            entry_fail(&|p| p.contains("changed") || p.contains("missing") || p.contains("named by")),
        ),
        check("schemas", entry_fail(&|p| p.contains("schema") || p.contains("not JSON") || p.contains("is not a"))),
        check("no-unnamed-files", dir_failures.iter().find(|f| f.contains("no entry names")).cloned()),
        check(
            "seal",
            dir_failures.iter().find(|f| f.contains("seal")).cloned().or(entry_fail(&|p| p.contains("seal"))),
        ),
    ];
    report.verified = report.first_failure.is_none();
    Ok(report)
}

/// What one entry's own content says, before it is compared with its neighbours.
#[derive(Default, Clone)]
struct Work {
    /// Step 4's parse: `None` when the entry already failed.
    statement: Option<Result<Statement, String>>,
    /// Step 6 per subject, in order: its name and what is wrong with its file.
    subjects: Vec<(String, Option<String>)>,
    /// Step 7: what is wrong with the artifact, if anything.
    artifact: Option<String>,
}

/// Per kind: the file's schema and, where the kind has details, theirs.
type Validators = BTreeMap<ArtifactKind, (jsonschema::Validator, Option<jsonschema::Validator>)>;

fn artifact_validators() -> Result<Validators> {
    let mut v = BTreeMap::new();
    for kind in ArtifactKind::FILES {
        let file = crate::schema_tools::compile(kind.schema_name(), &super::artifacts::schema_of(kind))?;
        let details = match super::artifacts::details_schema_of(kind) {
            Some(d) => Some(crate::schema_tools::compile(&format!("{} details", kind.schema_name()), &d)?),
            None => None,
        };
        v.insert(kind, (file, details));
    }
    Ok(v)
}

/// Steps 4, 6 and 7's independent work for every entry, on all cores.
fn per_entry_work(dir: &Path, lines: &[Line], validators: &Validators) -> Vec<Work> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let per = lines.len().div_ceil(threads).max(256);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(|l| entry_work(dir, l, validators)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(lines.len());
        for h in handles {
            // A worker that died leaves its entries unchecked: fail them, never pass them.
            out.extend(h.join().unwrap_or_else(|_| {
                vec![Work { statement: Some(Err("this entry could not be checked".into())), ..Work::default() }; per]
            }));
        }
        out.truncate(lines.len());
        out
    })
}

fn entry_work(dir: &Path, line: &Line, validators: &Validators) -> Work {
    let mut w = Work::default();
    if line.problem.is_some() {
        return w;
    }
    let st = match serde_json::from_slice::<Statement>(line.body.as_deref().unwrap_or_default()) {
        Err(e) => Err(format!("payload is not an agentplane statement: {e}")),
        Ok(s) if s.statement_type != STATEMENT_TYPE => Err(format!("_type is `{}`", s.statement_type)),
        Ok(s) if s.predicate_type != predicate_type(s.predicate.kind) => {
            Err(format!("predicateType `{}` does not match kind `{}`", s.predicate_type, s.predicate.kind))
        }
        Ok(s) if s.subject.is_empty() => Err("the statement names no subject".into()),
        Ok(s) => Ok(s),
    };
    let Ok(s) = &st else {
        w.statement = Some(st);
        return w;
    };
    if !s.predicate.kind.is_seal() {
        let mut artifact_bytes = None;
        for (i, subj) in s.subject.iter().enumerate() {
            let problem = if !safe_name(&subj.name) {
                Some(format!("subject `{}` is not a plain path inside the directory", subj.name))
            } else if let Some(want) = subj.sha256_hex() {
                match std::fs::read(dir.join(&subj.name)) {
                    Err(_) => Some(format!("`{}` is missing", subj.name)),
                    Ok(bytes) => {
                        let got = fsx::sha256_hex(&bytes);
                        if got != want {
                            Some(format!("`{}` changed: sha256 {got}, signed {want}", subj.name))
                        } else {
                            if i == 0 {
                                artifact_bytes = Some(bytes);
                            }
                            None
                        }
                    }
                }
            } else {
                Some(format!("subject `{}` has no sha256 digest", subj.name))
            };
            w.subjects.push((subj.name.clone(), problem));
        }
        if w.subjects.iter().all(|(_, p)| p.is_none()) {
            w.artifact = artifact_problem(s, artifact_bytes, validators);
        }
    }
    w.statement = Some(st);
    w
}

/// Step 7 for one entry: schema, kind, bundle and bundle digest of its artifact.
fn artifact_problem(s: &Statement, bytes: Option<Vec<u8>>, validators: &Validators) -> Option<String> {
    let kind = s.predicate.kind;
    let Some((validator, details_validator)) = validators.get(&kind) else {
        return Some(format!("unknown entry kind `{kind}`"));
    };
    let name = &s.subject[0].name;
    let Some(value) = bytes.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
        return Some(format!("`{name}` is not JSON"));
    };
    if let Some(err) = validator.iter_errors(&value).next() {
        return Some(format!("`{name}` does not match the {kind} schema at `{}`: {err}", err.instance_path()));
    }
    if value.get("kind").and_then(Value::as_str) != Some(kind.as_str()) {
        return Some(format!("`{name}` is not a {kind}"));
    }
    // The facts upstream's file has no room for are in the predicate's details.
    let empty = Value::Object(Default::default());
    let details = s.predicate.details.as_ref();
    match details_validator {
        // Absent details are empty ones (write_entry omits `{}`).
        Some(dv) => {
            if let Some(err) = dv.iter_errors(details.unwrap_or(&empty)).next() {
                return Some(format!(
                    "the {kind} entry's details do not match their schema at `{}`: {err}",
                    err.instance_path()
                ));
            }
        }
        None if details.is_some_and(|d| d != &empty) => {
            return Some(format!("a {kind} entry carries details it cannot have"));
        }
        None => {}
    }
    let field = |k: &str| value.get(k).or_else(|| details.and_then(|d| d.get(k))).and_then(Value::as_str);
    if field("bundle").is_some_and(|b| b != s.predicate.bundle)
        || (value.get("bundle").is_none() && field("bundle").is_none())
    {
        return Some(format!("`{name}` is for another bundle (spliced)"));
    }
    match field("bundleDigest") {
        Some(d) if d != s.predicate.bundle_digest => Some(format!("`{name}` records another bundle digest (spliced)")),
        _ => None,
    }
}

fn check(name: &'static str, failure: Option<String>) -> CheckResult {
    CheckResult { name, ok: failure.is_none(), detail: failure }
}

/// A subject name is a relative path with no `..`, `.` or root components.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && Path::new(name).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Evidence files present in `dir` that no entry names: top-level files
/// (other than the chain, the lock and temp files) and everything under `products/`.
fn unnamed_files(dir: &Path, named: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_type().is_dir() && e.file_name() == RUNS_DIR))
    {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = fsx::rel_to(dir, entry.path());
        let name = entry.file_name().to_string_lossy();
        if rel == CHAIN_FILE
            || rel == LOCK_FILE
            || rel == super::CHECKPOINT_FILE
            || name.starts_with(".agentplane-tmp-")
        {
            continue;
        }
        if !named.contains(&rel) {
            out.push(rel);
        }
    }
    out
}

/// Check every envelope's first signature. Entries whose `keyid` names a
/// trusted key are verified in batches (two threads); the rest, and any batch
/// that fails, one by one against every trusted key.
fn verify_signatures(lines: &mut [Line], trusted: &[TrustedKey]) {
    struct Job {
        idx: usize,
        msg: Vec<u8>,
        sig: Signature,
        key: Option<usize>,
    }
    let mut jobs = Vec::new();
    for (idx, line) in lines.iter_mut().enumerate() {
        let (Some(env), Some(body)) = (&line.env, &line.body) else {
            continue;
        };
        let Some(sig_bytes) = dsse::decode_sig(&env.signatures[0].sig) else {
            line.fail("the signature is not 64 base64-encoded bytes");
            continue;
        };
        let key = trusted.iter().position(|k| k.id == env.signatures[0].keyid);
        jobs.push(Job { idx, msg: dsse::pae(&env.payload_type, body), sig: Signature::from_bytes(&sig_bytes), key });
    }

    let check_one = |job: &Job| -> Option<usize> {
        let order: Vec<usize> = job.key.into_iter().chain((0..trusted.len()).filter(|k| Some(*k) != job.key)).collect();
        order.into_iter().find(|&k| trusted[k].key.verify_strict(&job.msg, &job.sig).is_ok())
    };
    let run_chunk = |chunk: &[Job]| -> Vec<(usize, Option<usize>)> {
        let mut out = Vec::with_capacity(chunk.len());
        for group in chunk.chunks(64) {
            if group.iter().all(|j| j.key.is_some()) {
                let msgs: Vec<&[u8]> = group.iter().map(|j| j.msg.as_slice()).collect();
                let sigs: Vec<Signature> = group.iter().map(|j| j.sig).collect();
                let keys: Vec<VerifyingKey> = group.iter().map(|j| trusted[j.key.unwrap_or(0)].key).collect();
                if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
                    out.extend(group.iter().map(|j| (j.idx, j.key)));
                    continue;
                }
            }
            out.extend(group.iter().map(|j| (j.idx, check_one(j))));
        }
        out
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let per = jobs.len().div_ceil(threads).max(64);
    let results: Vec<(usize, Option<usize>)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.chunks(per).map(|c| s.spawn(move || run_chunk(c))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    for (idx, key) in results {
        match key {
            Some(k) => lines[idx].signer = Some(trusted[k].id.clone()),
            None => lines[idx]
                .fail("the signature does not verify against any trusted key (changed, or signed by an untrusted key)"),
        }
    }
    // Belt and braces: an envelope whose signature was never checked fails.
    for line in lines.iter_mut().filter(|l| l.env.is_some() && l.signer.is_none()) {
        line.fail("the signature could not be checked");
    }
}
