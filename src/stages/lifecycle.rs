//! Lifecycle: promote, rollback and status over the lane pointers (DESIGN §9;
//! the pointer files are `pointers.rs`).
//!
//! Pointers name bundles by content (path, identity, digest). Promoting a new
//! version of the same bundle moves the old one to previous-good. `rollback`
//! moves current-prod back to previous-good and clears previous-good (the
//! bundle rolled back from is not "good"), and refuses when the bundle at
//! previous-good no longer has the digest that was promoted: prod must never
//! point at content that did not run.

use crate::types::{ArtifactKind, ReversalStatus, RunStatus};
use anyhow::{Context, Result};
use base64::Engine;
use std::path::Path;

use crate::bundle::load_for_stage;
use crate::error::{Refusal, RefusalCode};
use crate::evidence::artifacts::{
    Approval, PromotionArtifact, PromotionDetails, ReversalArtifact, ReversalDetails, RunArtifact,
};
use crate::evidence::chain::{Chain, ChainWriter};
use crate::evidence::keys::{Signer, TrustedKey};
use crate::evidence::verify;
use crate::fsx;

use super::pointers::{self, CURRENT_PROD, PREVIOUS_GOOD, Pointer};

/// The message an approver signs for a human-gated promotion.
pub fn approval_message(object_ref: &str, digest: &str) -> Vec<u8> {
    format!("agentplane-approval/v1:{object_ref}:{digest}").into_bytes()
}

#[derive(Debug)]
pub struct Promoted {
    pub artifact: PromotionArtifact,
    pub details: PromotionDetails,
    pub file: String,
    pub previous_good: Option<Pointer>,
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
    let report = verify::verify_dir(
        &b.out_dir,
        &verify::Options { trusted: keys, allow_unsealed: false, since: Vec::new(), lines: verify::ReportLines::Kept },
    )?;
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
        let mut run_signers: Vec<String> = Vec::new();
        report.entries.each(|e| {
            run_signers.extend(e.signer.as_deref().map(str::to_string));
            Ok(())
        })?;
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

    let _lock = pointers::lock(root)?;
    // Both read before anything is written: a damaged one stops the promotion here.
    let old_prod = pointers::get(root, CURRENT_PROD)?;
    let old_good = pointers::get(root, PREVIOUS_GOOD)?;
    let new_prod = Pointer::new(&b.rel_dir, &object, &digest);
    let artifact = PromotionArtifact {
        kind: ArtifactKind::PromotionArtifact,
        bundle: object.clone(),
        captured_at: fsx::now_rfc3339(),
        promotion_receipt_ref: format!("urn:srcos:receipt:promotion:{}", fsx::new_id()),
        promoted_object_ref: object,
        review_session_ref: Some(format!("urn:srcos:session:{}", writer.run_id())),
    };
    let details = PromotionDetails {
        bundle_digest: digest,
        bundle_path: b.rel_dir.clone(),
        replaced: old_prod.as_ref().map(Pointer::describe),
        approval,
    };
    let file = writer.write_entry(&artifact, &details, &[])?;
    writer.seal()?;
    // Re-promoting the very content in prod changes nothing; anything else
    // (another bundle, or another version of this one) becomes previous-good.
    let previous_good = match old_prod.filter(|o| !o.same_content(&new_prod)) {
        Some(old) => {
            pointers::put(root, PREVIOUS_GOOD, &old)?;
            Some(old)
        }
        None => old_good,
    };
    pointers::put(root, CURRENT_PROD, &new_prod)?;
    Ok(Promoted { artifact, details, file, previous_good })
}

#[derive(Debug)]
pub struct RolledBack {
    pub artifact: ReversalArtifact,
    pub details: ReversalDetails,
    pub from: Pointer,
    pub to: Pointer,
}

/// Move current-prod back to previous-good, recording a ReversalArtifact in
/// the rolled-back bundle's chain.
pub fn rollback(root: &Path, signer: &Signer) -> Result<RolledBack> {
    let _lock = pointers::lock(root)?;
    let from = pointers::get(root, CURRENT_PROD)?.ok_or_else(|| {
        Refusal::new(RefusalCode::RollbackRefused, "nothing is in prod: there is nothing to roll back")
            .hint("promote a bundle first")
    })?;
    let to = pointers::get(root, PREVIOUS_GOOD)?.ok_or_else(|| {
        Refusal::new(RefusalCode::RollbackRefused, format!("no previous-good bundle to roll `{}` back to", from.path))
            .hint("a rollback needs two promotions: the second one records the first as previous-good")
    })?;
    // The bundle at previous-good must still be the content that was promoted.
    let good = load_for_stage(root, Path::new(&to.path))?;
    let now = good.digest()?.digest;
    if to.digest.as_deref() != Some(now.as_str()) {
        let was = to.digest.as_deref().unwrap_or("not recorded (a pointer from an earlier agentplane)");
        return Err(Refusal::new(
            RefusalCode::RollbackRefused,
            format!(
                "previous-good `{}` no longer has the digest that was promoted: {}/bundle.json and its files now digest to {now}, promoted {was}",
                to.path, to.path
            ),
        )
        .hint("restore the bundle as it was promoted (check out that revision), or promote a good bundle again")
        .into());
    }
    let b = load_for_stage(root, Path::new(&from.path))?;
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    let promo: PromotionArtifact = chain.load::<PromotionArtifact>(&b.out_dir)?.ok_or_else(|| {
        Refusal::new(RefusalCode::RollbackRefused, format!("`{}` has no PromotionArtifact in its evidence", from.path))
            .hint("was prod moved by hand?")
    })?;
    let artifact = ReversalArtifact {
        kind: ArtifactKind::ReversalArtifact,
        bundle: b.identity(),
        captured_at: fsx::now_rfc3339(),
        source_promotion_receipt_ref: promo.promotion_receipt_ref,
        reversal_handle: format!("urn:srcos:reversal:{}", fsx::new_id()),
        status: ReversalStatus::Succeeded,
    };
    let details = ReversalDetails { restored: to.describe() };
    writer.write_entry(&artifact, &details, &[])?;
    writer.seal()?;
    pointers::put(root, CURRENT_PROD, &to)?;
    pointers::clear(root, PREVIOUS_GOOD)?;
    Ok(RolledBack { artifact, details, from, to })
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
    pub pointers: std::collections::BTreeMap<String, Option<Pointer>>,
    pub bundles: Vec<BundleStatus>,
}

/// Pointers plus each bundle's latest chain under `bundles/` (or the root).
pub fn status(root: &Path) -> Result<Status> {
    let mut pointers = std::collections::BTreeMap::new();
    for p in pointers::ALL {
        pointers.insert(p.to_string(), pointers::get(root, p)?);
    }
    // Bundles live under `bundles/`; without that folder there is nothing to
    // list (never a walk of the whole tree).
    let search = root.join("bundles");
    let mut bundles = Vec::new();
    let found =
        if search.is_dir() { crate::bundle::discover::expand(&search)?.unwrap_or_default() } else { Vec::new() };
    for m in found {
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
