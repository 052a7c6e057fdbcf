//! `emit`: the ReplayArtifact and SessionArtifact, then the seal.

use crate::types::{ArtifactKind, RunStatus, SessionStatus};
use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::bundle::load_for_stage;
use crate::error::Problem;
use crate::evidence::artifacts::{
    ReplayArtifact, ReplayInputs, RunArtifact, SessionArtifact, SessionDetails, ValidationArtifact,
};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::Signer;
use crate::fsx;

#[derive(Debug)]
pub struct Emitted {
    pub out_dir: PathBuf,
    pub replay_file: String,
    pub session_file: String,
    pub session: SessionArtifact,
}

/// The git revision of the root, when it is a git checkout (read from `.git`, no subprocess).
fn git_rev(root: &Path) -> Option<String> {
    let head = std::fs::read_to_string(root.join(".git/HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref: ") {
        None => Some(head.to_string()),
        Some(r) => {
            std::fs::read_to_string(root.join(".git").join(r)).ok().map(|s| s.trim().to_string()).or_else(|| {
                let packed = std::fs::read_to_string(root.join(".git/packed-refs")).ok()?;
                packed.lines().find(|l| l.ends_with(r)).and_then(|l| l.split_whitespace().next()).map(str::to_string)
            })
        }
    }
}

pub fn emit(root: &Path, arg: &Path, signer: &Signer) -> Result<Emitted> {
    let b = load_for_stage(root, arg)?;
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    super::ensure_unchanged(&b, &chain)?;
    super::ensure_not_done(&chain, ArtifactKind::ReplayArtifact, "emit", &b)?;
    if chain.last_of(ArtifactKind::SessionArtifact).is_some() {
        return Err(Problem::error("this chain's session has already ended (canceled run)")
            .hint(format!("run `agentplane up {}` to start again", b.rel_dir))
            .into());
    }
    let run: RunArtifact = chain.load::<RunArtifact>(&b.out_dir)?.ok_or_else(|| {
        Problem::error(format!("bundle `{}` has no completed run in `{}`", b.rel_dir, b.out_dir.display()))
            .hint(format!("run `agentplane run {}` first", b.rel_dir))
    })?;
    let validated = chain.load_details::<ValidationArtifact>()?;
    let run_file = chain
        .last_of(ArtifactKind::RunArtifact)
        .and_then(|e| e.artifact_file())
        .unwrap_or("run-artifact.json")
        .to_string();
    let policy = &b.bundle.spec.policy;
    let replay = ReplayArtifact {
        kind: ArtifactKind::ReplayArtifact,
        bundle: b.identity(),
        captured_at: fsx::now_rfc3339(),
        executor: run.executor.clone(),
        backend_intent: run.backend_intent,
        inputs: ReplayInputs {
            bundle_path: b.rel_dir.clone(),
            bundle_rev: git_rev(root),
            artifact_dir: fsx::rel_to(root, &b.out_dir),
            policy_pack_ref: policy.policy_pack_ref.clone(),
            policy_pack_hash: policy.policy_pack_hash.clone(),
            secrets_required: b.bundle.secrets_required().to_vec(),
            governance_context: b.bundle.governance_context().cloned(),
        },
        bundle_digest: writer.bundle_digest().to_string(),
        bundle_files: validated.bundle_files,
        invocation: vec!["/bin/sh".into(), fsx::rel_to(root, &b.script), "$AGENTPLANE_PRODUCTS_DIR".into()],
        expected_exit_code: run.exit_code,
        expected_products: run.products.clone(),
        determinism_required: b.bundle.determinism_required(),
    };
    let replay_file = writer.write_artifact(&replay, &[])?;
    let session = SessionArtifact {
        kind: ArtifactKind::SessionArtifact,
        bundle: b.identity(),
        captured_at: fsx::now_rfc3339(),
        session_ref: format!("urn:srcos:session:{}", writer.run_id()),
        status: if run.status == RunStatus::Success { SessionStatus::Success } else { SessionStatus::Failure },
        run_artifact_ref: Some(run_file),
        replay_artifact_ref: Some(replay_file.clone()),
        governance_context: b.bundle.governance_context().cloned(),
    };
    let session_file = writer.write_entry(&session, &SessionDetails { reason: run.error.clone() }, &[])?;
    writer.seal()?;
    Ok(Emitted { out_dir: b.out_dir.clone(), replay_file, session_file, session })
}
