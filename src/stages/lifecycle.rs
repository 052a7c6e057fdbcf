//! Lifecycle: the `state/pointers` lanes, promote, rollback and status (DESIGN §9).
//!
//! Pointer files hold one bundle path (relative to the root) each and are
//! written atomically under a lock on `state/pointers/`. `rollback` moves
//! current-prod back to previous-good and clears previous-good: the bundle
//! rolled back from is not "good", so it is not kept as a fallback.

use crate::types::{ArtifactKind, ReversalStatus, RunStatus};
use anyhow::{Context, Result};
use base64::Engine;
use std::path::{Path, PathBuf};

use crate::bundle::load_for_stage;
use crate::error::{Refusal, RefusalCode};
use crate::evidence::artifacts::{Approval, PromotionArtifact, ReversalArtifact, RunArtifact};
use crate::evidence::chain::{Chain, ChainWriter, DirLock};
use crate::evidence::keys::{Signer, TrustedKey};
use crate::evidence::verify;
use crate::fsx;

pub const POINTERS_DIR: &str = "state/pointers";
pub const CURRENT_STAGING: &str = "current-staging";
pub const CURRENT_PROD: &str = "current-prod";
pub const PREVIOUS_GOOD: &str = "previous-good";

fn pointers_dir(root: &Path) -> PathBuf {
    root.join(POINTERS_DIR)
}

pub fn get_pointer(root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(pointers_dir(root).join(name)).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Set one pointer atomically under the pointers lock.
pub fn set_pointer(root: &Path, name: &str, value: &str) -> Result<()> {
    let dir = pointers_dir(root);
    let _lock = DirLock::acquire(&dir)?;
    fsx::write_atomic(&dir.join(name), format!("{value}\n").as_bytes())
}

fn clear_pointer(dir: &Path, name: &str) -> Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot clear pointer `{name}`"))),
    }
}

/// The message an approver signs for a human-gated promotion.
pub fn approval_message(object_ref: &str, digest: &str) -> Vec<u8> {
    format!("agentplane-approval/v1:{object_ref}:{digest}").into_bytes()
}

#[derive(Debug)]
pub struct Promoted {
    pub artifact: PromotionArtifact,
    pub file: String,
    pub previous_good: Option<String>,
}

/// Promote the bundle at `arg` to prod. Needs a verified, sealed, successful
/// run of this exact bundle digest, signed by a trusted key (the signer's own
/// key is trusted, plus any `trusted`).
pub fn promote(
    root: &Path,
    arg: &Path,
    signer: &Signer,
    trusted: &[TrustedKey],
    approval_key: Option<&Path>,
) -> Result<Promoted> {
    let b = load_for_stage(root, arg)?;
    let mut keys = trusted.to_vec();
    keys.push(TrustedKey { id: signer.key_id().to_string(), key: signer.verifying_key(), path: signer.path.clone() });
    let missing = |what: String| -> anyhow::Error {
        Refusal::new(RefusalCode::PromotionRefused, format!("cannot promote `{}`: {what}", b.rel_dir))
            .hint(format!("run `agentplane up {}` and promote once it succeeds", b.rel_dir))
            .into()
    };
    if Chain::read(&b.out_dir)?.is_none() {
        return Err(missing("it has no evidence".into()));
    }
    let report = verify::verify_dir(&b.out_dir, &verify::Options { trusted: keys, allow_unsealed: false })?;
    if !report.verified {
        return Err(missing(format!("its evidence does not verify: {}", report.first_failure.unwrap_or_default())));
    }
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    let run: RunArtifact =
        chain.load::<RunArtifact>(&b.out_dir)?.ok_or_else(|| missing("no run is recorded".into()))?;
    if run.status != RunStatus::Success {
        return Err(missing(format!("its run ended in {}", run.status)));
    }
    let digest = b.digest()?.digest;
    if Some(digest.as_str()) != chain.bundle_digest() {
        return Err(missing("the bundle changed since its run (digest differs)".into()));
    }
    let object = b.identity();
    let approval = if b.bundle.spec.policy.human_gate_required.unwrap_or(false) {
        let path = approval_key.ok_or_else(|| {
            Refusal::new(RefusalCode::ApprovalRequired, format!("`{}` requires a human approval to promote", b.rel_dir))
                .hint("pass --approval-key KEY: the private key of an approver other than the run's signer")
        })?;
        let approver = Signer::load(path)?;
        let run_signers: Vec<String> = report.entries.iter().filter_map(|e| e.signer.clone()).collect();
        if run_signers.iter().any(|s| s == approver.key_id()) || approver.key_id() == signer.key_id() {
            return Err(Refusal::new(
                RefusalCode::ApprovalRequired,
                "the approval key signed the run itself; approval needs a second person's key",
            )
            .hint("use a key created with `agentplane keygen --out …` by the approver")
            .into());
        }
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let sig = approver.sign(&approval_message(&object, &digest));
        Some(Approval {
            keyid: approver.key_id().to_string(),
            public_key: approver
                .verifying_key()
                .to_public_key_pem(Default::default())
                .context("cannot encode the approver key")?,
            sig: base64::engine::general_purpose::STANDARD.encode(sig),
        })
    } else {
        None
    };

    let ptr_dir = pointers_dir(root);
    let _lock = DirLock::acquire(&ptr_dir)?;
    let old_prod = get_pointer(root, CURRENT_PROD);
    let artifact = PromotionArtifact {
        kind: ArtifactKind::PromotionArtifact,
        bundle: object.clone(),
        captured_at: fsx::now_rfc3339(),
        promotion_receipt_ref: format!("urn:srcos:receipt:promotion:{}", fsx::new_id()),
        promoted_object_ref: object,
        review_session_ref: Some(format!("urn:srcos:session:{}", writer.run_id())),
        bundle_digest: digest,
        bundle_path: b.rel_dir.clone(),
        replaced: old_prod.clone(),
        approval,
    };
    let file = writer.write_artifact(&artifact, &[])?;
    writer.seal()?;
    if let Some(old) = old_prod.as_ref().filter(|o| **o != b.rel_dir) {
        fsx::write_atomic(&ptr_dir.join(PREVIOUS_GOOD), format!("{old}\n").as_bytes())?;
    }
    fsx::write_atomic(&ptr_dir.join(CURRENT_PROD), format!("{}\n", b.rel_dir).as_bytes())?;
    Ok(Promoted { artifact, file, previous_good: get_pointer(root, PREVIOUS_GOOD) })
}

#[derive(Debug)]
pub struct RolledBack {
    pub artifact: ReversalArtifact,
    pub from: String,
    pub to: String,
}

/// Move current-prod back to previous-good, recording a ReversalArtifact in
/// the rolled-back bundle's chain.
pub fn rollback(root: &Path, signer: &Signer) -> Result<RolledBack> {
    let ptr_dir = pointers_dir(root);
    let _lock = DirLock::acquire(&ptr_dir)?;
    let from = get_pointer(root, CURRENT_PROD).ok_or_else(|| {
        Refusal::new(RefusalCode::RollbackRefused, "nothing is in prod: there is nothing to roll back")
            .hint("promote a bundle first")
    })?;
    let to = get_pointer(root, PREVIOUS_GOOD).ok_or_else(|| {
        Refusal::new(RefusalCode::RollbackRefused, format!("no previous-good bundle to roll `{from}` back to"))
            .hint("a rollback needs two promotions: the second one records the first as previous-good")
    })?;
    let b = load_for_stage(root, Path::new(&from))?;
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    let promo: PromotionArtifact = chain.load::<PromotionArtifact>(&b.out_dir)?.ok_or_else(|| {
        Refusal::new(RefusalCode::RollbackRefused, format!("`{from}` has no PromotionArtifact in its evidence"))
            .hint("was prod moved by hand?")
    })?;
    let artifact = ReversalArtifact {
        kind: ArtifactKind::ReversalArtifact,
        bundle: b.identity(),
        captured_at: fsx::now_rfc3339(),
        source_promotion_receipt_ref: promo.promotion_receipt_ref,
        reversal_handle: format!("urn:srcos:reversal:{}", fsx::new_id()),
        status: ReversalStatus::Succeeded,
        restored: to.clone(),
    };
    writer.write_artifact(&artifact, &[])?;
    writer.seal()?;
    fsx::write_atomic(&ptr_dir.join(CURRENT_PROD), format!("{to}\n").as_bytes())?;
    clear_pointer(&ptr_dir, PREVIOUS_GOOD)?;
    Ok(RolledBack { artifact, from, to })
}

/// One bundle's latest run, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    pub bundle: String,
    pub path: String,
    pub evidence: String,
    pub stage: String,
    pub run_status: Option<RunStatus>,
    pub sealed: bool,
    pub captured_at: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pointers: std::collections::BTreeMap<String, Option<String>>,
    pub bundles: Vec<BundleStatus>,
}

/// Pointers plus each bundle's latest chain under `bundles/` (or the root).
pub fn status(root: &Path) -> Result<Status> {
    let mut pointers = std::collections::BTreeMap::new();
    for p in [CURRENT_STAGING, CURRENT_PROD, PREVIOUS_GOOD] {
        pointers.insert(p.to_string(), get_pointer(root, p));
    }
    let search = if root.join("bundles").is_dir() { root.join("bundles") } else { root.to_path_buf() };
    let mut bundles = Vec::new();
    for m in crate::bundle::discover::expand(&search)?.unwrap_or_default() {
        let Ok(b) = load_for_stage(root, &m) else {
            continue;
        };
        let chain = Chain::read(&b.out_dir).ok().flatten();
        let (stage, run_status, sealed, captured_at) = match &chain {
            None => ("none".to_string(), None, false, None),
            Some(c) => {
                let stage = c
                    .entries
                    .iter()
                    .rev()
                    .find(|e| !e.kind().is_seal())
                    .map(|e| e.kind().to_string())
                    .unwrap_or_default();
                let run: Option<RunArtifact> = c.load::<RunArtifact>(&b.out_dir).ok().flatten();
                (stage, run.as_ref().map(|r| r.status), c.is_sealed(), run.map(|r| r.captured_at))
            }
        };
        bundles.push(BundleStatus {
            bundle: b.identity(),
            path: b.rel_dir.clone(),
            evidence: fsx::rel_to(root, &b.out_dir),
            stage,
            run_status,
            sealed,
            captured_at,
        });
    }
    Ok(Status { pointers, bundles })
}
