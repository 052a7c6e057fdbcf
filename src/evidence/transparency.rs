//! The chain as a transparency log (DESIGN §7): every seal publishes a C2SP
//! checkpoint — a signed note over the RFC 6962 root of the chain's lines —
//! so an auditor can prove offline that a log only grew since a checkpoint
//! they saw (`verify --since`) and that one entry is in a checkpointed log
//! (`prove`, see [`super::prove`]; `verify-proof`).
//!
//! A leaf is the exact bytes of one `evidence.jsonl` line, without its
//! newline. A checkpoint's origin is `agentplane.socioprophet.org/evidence/<runId>`
//! (unique per chain), and its key name is the origin, signed with the run's
//! key: an auditor's `--trusted-key` plus the origin give the note key. Extra
//! signature lines from keys the auditor does not name (a witness's
//! cosignature) are ignored, as the signed-note spec says.

use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

use super::chain::Chain;
use super::keys::TrustedKey;
use super::tlog::{self, Checkpoint, NoteKey, TlogProof};
use crate::fsx;

/// The note keys an auditor trusts for a log of `origin`.
pub fn note_keys(trusted: &[TrustedKey], origin: &str) -> Result<Vec<NoteKey>> {
    trusted.iter().map(|k| NoteKey::new(origin, k.key)).collect()
}

/// The checkpoint the chain's last seal published (its text), and how many
/// entries it covers.
pub fn last_checkpoint(chain: &Chain) -> Option<(String, usize)> {
    chain.entries.iter().enumerate().rev().find_map(|(i, e)| {
        let text = e.statement.predicate.details.as_ref()?.get("checkpoint")?.as_str()?;
        e.kind().is_seal().then(|| (text.to_string(), i))
    })
}

/// Open a checkpoint of the log `origin` with the trusted note keys and check
/// it against the log's leaves: its root must be the root of the first `size`
/// leaves. What verify's step 10 runs on every seal's checkpoint, the
/// `checkpoint` file and each `--since` checkpoint.
pub fn check_against(text: &str, origin: &str, keys: &[NoteKey], leaves: &[tlog::Hash]) -> Result<Checkpoint> {
    let cp = open_for(text, origin, keys)?;
    check_root(&cp, leaves.len() as u64, |size| tlog::merkle::root(&leaves[..size as usize]))?;
    Ok(cp)
}

/// The first half of [`check_against`]: the checkpoint is signed by a trusted
/// note key and is of the log `origin`.
pub fn open_for(text: &str, origin: &str, keys: &[NoteKey]) -> Result<Checkpoint> {
    let cp = Checkpoint::open(text, keys)?;
    cp.expect_origin(origin)?;
    Ok(cp)
}

/// The second half of [`check_against`], for a log of `len` leaves whose
/// root at a size is `root_at(size)` (asked only for a size up to `len`):
/// verify keeps a running tree head, not every leaf.
pub fn check_root(cp: &Checkpoint, len: u64, root_at: impl FnOnce(u64) -> tlog::Hash) -> Result<()> {
    let size = cp.size;
    if size > len {
        bail!("it covers {size} entries; the chain has only {len} (cut back)");
    }
    if root_at(size) != cp.root {
        bail!("its root is not the root of the chain's first {size} entries (history rewritten)");
    }
    Ok(())
}

/// What `verify-proof` established.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofVerdict {
    pub origin: String,
    pub index: u64,
    pub size: u64,
    pub file: String,
    pub sha256: String,
    pub kind: crate::types::ArtifactKind,
}

/// `verify-proof PROOF FILE`: the checkpoint's signature (trusted keys, under
/// its own origin), the entry's inclusion in it, the entry's own DSSE
/// signature, and FILE's digest against the subject the entry gives it.
pub fn verify_proof(proof_text: &str, file: &Path, trusted: &[TrustedKey]) -> Result<ProofVerdict> {
    let proof = TlogProof::parse(proof_text).context("not a C2SP tlog-proof")?;
    let line = proof.extra.clone().ok_or_else(|| anyhow!("the proof carries no entry (no `extra` line)"))?;
    let peek = tlog::note::parse(&proof.checkpoint).context("the proof's checkpoint is not a signed note")?;
    let origin = Checkpoint::parse_body(&peek.text)?.origin;
    let verified = proof
        .verify(&tlog::merkle::leaf_hash(&line), &note_keys(trusted, &origin)?)
        .context("the entry is not in the signed log")?;
    // The entry itself: a DSSE envelope signed by a trusted key.
    let env: super::dsse::Envelope = serde_json::from_slice(&line).context("the entry is not a DSSE envelope")?;
    let body = env.body().context("the entry's payload is not base64")?;
    let sig = env.signatures.first().ok_or_else(|| anyhow!("the entry is unsigned"))?;
    let sig = super::dsse::decode_sig(&sig.sig).ok_or_else(|| anyhow!("the entry's signature is malformed"))?;
    let msg = super::dsse::pae(&env.payload_type, &body);
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    if !trusted.iter().any(|k| k.key.verify_strict(&msg, &sig).is_ok()) {
        bail!("the entry's signature does not verify against the trusted keys");
    }
    let st: super::statement::Statement = serde_json::from_slice(&body).context("not an agentplane statement")?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let subject = st
        .subject
        .iter()
        .find(|s| s.name == name || s.name.ends_with(&format!("/{name}")) || file.ends_with(&s.name))
        .ok_or_else(|| anyhow!("the entry names no file `{name}`"))?;
    let (got, _) = fsx::sha256_regular(file).map_err(|e| anyhow!("{e}"))?;
    if Some(got.as_str()) != subject.sha256_hex() {
        bail!("`{}` has sha256 {got}; the entry signed {}", file.display(), subject.sha256_hex().unwrap_or("?"));
    }
    Ok(ProofVerdict {
        origin,
        index: verified.index,
        size: verified.checkpoint.size,
        file: subject.name.clone(),
        sha256: got,
        kind: st.predicate.kind,
    })
}
