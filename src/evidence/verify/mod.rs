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
//! Steps 2–4 and the file work of 6–7 run for all entries on all cores
//! first ([`steps::per_entry`]); the steps then record their findings in
//! order, so each entry's first finding is deterministic. An entry that
//! failed a step is not checked by steps 6 and 7, so one tampering shows up
//! once, where it was first seen. A check fails exactly when its own step
//! recorded a [`Finding`].

mod checkpoints;
mod files;
mod findings;
mod signature;
mod steps;
#[cfg(test)]
mod tests;

use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub use files::{EvidenceFiles, FsEvidence, Listed};
pub use findings::{Finding, Findings, VerifyCheck};

use super::keys::TrustedKey;
use crate::error::Problem;
use crate::types::ArtifactKind;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub trusted: Vec<TrustedKey>,
    pub allow_unsealed: bool,
    /// Checkpoints (signed-note texts) the auditor saw earlier: `--since`.
    pub since: Vec<String>,
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
    pub entries: Vec<EntryResult>,
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

/// Verify the evidence `files` give access to (`label` names it in the report).
pub fn verify_files(files: &dyn EvidenceFiles, label: &str, opts: &Options) -> Result<Report> {
    let validators = steps::artifact_validators()?;
    let mut f = Findings::default();
    let mut warnings = Vec::new();
    let mut notes: BTreeMap<VerifyCheck, String> = BTreeMap::new();

    let Some(chain) = steps::read_chain(files, &mut f) else {
        return Ok(assemble(label, &[], &opts.trusted, f, None, false, warnings, notes));
    };
    // The directory listing (step 8) needs no entry: take it meanwhile.
    let (work, listing) = std::thread::scope(|s| {
        let listing = s.spawn(|| files.list());
        let work = steps::per_entry(&chain, files, &opts.trusted, &validators);
        let listing = listing.join().unwrap_or_else(|_| Err("the directory could not be listed".into()));
        (work, listing)
    });
    steps::envelopes(&work, &mut f);
    steps::signatures(&work, &mut f);
    steps::statements(&work, &mut f);
    let first = steps::links(&work, &mut f);
    steps::subjects(&work, &mut f);
    steps::schemas(&work, &mut f);
    if let Some(n) = steps::unnamed_files(listing, &work, &mut f) {
        notes.insert(VerifyCheck::NoUnnamedFiles, n);
    }
    let (sealed, note) = steps::seal(&chain, &work, opts.allow_unsealed, &mut f, &mut warnings);
    if let Some(n) = note {
        notes.insert(VerifyCheck::Seal, n);
    }
    checkpoints::checkpoints(&chain, &work, files, &opts.trusted, &opts.since, &mut f);
    let first = first.map(|p| (p.run_id, p.bundle, p.bundle_digest));
    Ok(assemble(label, &work, &opts.trusted, f, first, sealed, warnings, notes))
}

/// The report: one line per entry, one result per check, the first failure.
#[allow(clippy::too_many_arguments)]
fn assemble(
    label: &str,
    work: &[steps::Work],
    trusted: &[TrustedKey],
    f: Findings,
    first: Option<(String, String, String)>,
    sealed: bool,
    warnings: Vec<String>,
    notes: BTreeMap<VerifyCheck, String>,
) -> Report {
    let mut entries = Vec::with_capacity(work.len());
    let mut first_failure = None;
    for (i, w) in work.iter().enumerate() {
        let st = w.statement();
        let kind = st.map(|s| s.predicate.kind);
        let problem = f.first_for_entry(i).map(|x| x.message.clone());
        if first_failure.is_none()
            && let Some(p) = &problem
        {
            first_failure = Some(format!("entry {i} ({}): {p}", kind.map_or("unreadable", ArtifactKind::as_str)));
        }
        entries.push(EntryResult {
            seq: i,
            kind,
            file: st.filter(|s| !s.predicate.kind.is_seal()).and_then(|s| s.subject.first()).map(|x| x.name.clone()),
            signer: w.signature.as_ref().and_then(|r| r.as_ref().ok()).map(|&k| trusted[k].id.clone()),
            result: problem.unwrap_or_else(|| "ok".into()),
        });
    }
    let first_failure = first_failure.or_else(|| f.first_for_dir().map(|x| x.message.clone()));
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
    let (run_id, bundle, bundle_digest) = match first {
        Some((r, b, d)) => (Some(r), Some(b), Some(d)),
        None => (None, None, None),
    };
    let findings = f.into_vec();
    Report {
        dir: label.to_string(),
        verified: findings.is_empty(),
        run_id,
        bundle,
        bundle_digest,
        sealed,
        entries,
        checks,
        first_failure,
        warnings,
        findings,
    }
}
