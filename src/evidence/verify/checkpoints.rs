//! Step 10 (see the list in [`super`]): the checkpoints, and the `tlog-index`
//! the last one's seal wrote for `prove`.

use serde_json::Value;

use super::files::EvidenceFiles;
use super::findings::{Findings, VerifyCheck};
use super::steps::{RawChain, Work};
use crate::evidence::chain::checkpoint_origin;
use crate::evidence::tlog::{self, Checkpoint};
use crate::evidence::{CHECKPOINT_FILE, TLOG_INDEX_FILE, tlog_index};

/// Step 10: the checkpoints. Each seal's checkpoint (in its predicate) is
/// signed by a trusted key under this chain's origin and is the RFC 6962 root
/// of exactly the lines before the seal; `outDir/checkpoint` is the last
/// seal's; and each `--since` checkpoint (seen earlier by the auditor) is a
/// prefix of this log: the log only grew since.
pub fn checkpoints(
    chain: &RawChain,
    work: &[Work],
    files: &dyn EvidenceFiles,
    trusted: &[crate::evidence::keys::TrustedKey],
    since: &[String],
    f: &mut Findings,
) {
    // A chain whose structure already failed (an unreadable, missing, extra
    // or reordered entry, a broken seal) has shown its tampering where it was
    // first seen: its checkpoints would only say the same thing again.
    let structural = [
        VerifyCheck::ChainPresent,
        VerifyCheck::Envelopes,
        VerifyCheck::Signatures,
        VerifyCheck::Statements,
        VerifyCheck::Links,
        VerifyCheck::Seal,
    ];
    if work.iter().any(|w| w.statement().is_none()) || structural.iter().any(|s| f.first_of(*s).is_some()) {
        return;
    }
    let Some(run_id) = work.first().and_then(Work::statement).map(|s| s.predicate.run_id.clone()) else { return };
    let origin = checkpoint_origin(&run_id);
    let keys: Vec<tlog::NoteKey> = trusted.iter().filter_map(|k| tlog::NoteKey::new(&origin, k.key).ok()).collect();
    let leaves: Vec<tlog::Hash> = (0..chain.len()).map(|i| tlog::merkle::leaf_hash(chain.line(i))).collect();
    let check = |text: &str| -> Result<Checkpoint, String> {
        crate::evidence::transparency::check_against(text, &origin, &keys, &leaves).map_err(|e| format!("{e:#}"))
    };
    let mut last = None;
    let mut last_at = None;
    for (i, w) in work.iter().enumerate() {
        let Some(s) = w.statement().filter(|s| s.predicate.kind.is_seal()) else { continue };
        let Some(text) = s.predicate.details.as_ref().and_then(|d| d.get("checkpoint")).and_then(Value::as_str) else {
            continue; // a seal from before checkpoints
        };
        match check(text) {
            Ok(cp) if cp.size as usize == i => (last, last_at) = (Some(text.to_string()), Some(i)),
            Ok(cp) => f.entry(
                VerifyCheck::Checkpoint,
                i,
                format!("its checkpoint covers {} entries, not the {i} it seals", cp.size),
            ),
            Err(e) => f.entry(VerifyCheck::Checkpoint, i, format!("its checkpoint does not verify: {e}")),
        }
    }
    match (files.read_artifact(CHECKPOINT_FILE), &last) {
        (Ok(bytes), Some(text)) if bytes == text.as_bytes() => {}
        (Ok(_), Some(_)) => {
            f.dir(VerifyCheck::Checkpoint, format!("`{CHECKPOINT_FILE}` is not the checkpoint the last seal signed"))
        }
        // No seal left to compare with (an unsealed chain, with --allow-unsealed):
        // the file must still be a signed prefix of this log (and the index is its log's).
        (Ok(bytes), None) => {
            match String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string()).and_then(|t| check(&t)) {
                Ok(cp) => last_at = Some(cp.size as usize),
                Err(e) => {
                    f.dir(VerifyCheck::Checkpoint, format!("`{CHECKPOINT_FILE}` does not verify against this log: {e}"))
                }
            }
        }
        (Err(e), Some(_)) => f.dir(VerifyCheck::Checkpoint, format!("`{CHECKPOINT_FILE}`: {e}")),
        (Err(_), None) => {}
    }
    tlog_index(chain, work, files, &leaves, last_at, f);
    for (n, text) in since.iter().enumerate() {
        if let Err(e) = check(text) {
            f.dir(
                VerifyCheck::Checkpoint,
                format!("--since checkpoint {}: the log is not an extension of it: {e}", n + 1),
            );
        }
    }
}

/// `tlog-index`, when present, must be exactly the index of the log the last
/// checkpointed seal closes (its first `last_at` entries; without a seal, the
/// `checkpoint` file's): a cache `prove` reads, so it is checked here rather
/// than left as a file no entry explains. Absent is fine (evidence sealed
/// before it existed); present without any checkpoint is not.
fn tlog_index(
    chain: &RawChain,
    work: &[Work],
    files: &dyn EvidenceFiles,
    leaves: &[tlog::Hash],
    last_at: Option<usize>,
    f: &mut Findings,
) {
    if !files.exists(TLOG_INDEX_FILE) {
        return;
    }
    let Some(n) = last_at else {
        f.dir(VerifyCheck::Checkpoint, format!("`{TLOG_INDEX_FILE}` is here but no seal published a checkpoint"));
        return;
    };
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u64);
    for i in 0..n {
        offsets.push(offsets[i] + chain.line(i).len() as u64 + 1);
    }
    let names = work[..n]
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.statement().map(|s| (i, s)))
        .flat_map(|(i, s)| s.subject.iter().map(move |x| (x.name.as_str(), i as u64)));
    let expected = crate::fsx::sha256_hex(&tlog_index::encode(&leaves[..n], &offsets, names));
    match files.hash(TLOG_INDEX_FILE) {
        Ok(got) if got == expected => {}
        Ok(_) => f.dir(
            VerifyCheck::Checkpoint,
            format!("`{TLOG_INDEX_FILE}` is not the index of the log the last seal's checkpoint signs"),
        ),
        Err(e) => f.dir(VerifyCheck::Checkpoint, e),
    }
}
