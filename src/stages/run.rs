//! `run`: the smoke script on the placed executor, under the bundle's policy,
//! with logs, products and a RunArtifact in the chain.

use crate::types::{ArtifactKind, RunStatus, SessionStatus};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::bundle::{LoadedBundle, load_for_stage};
use crate::error::Problem;
use crate::evidence::artifacts::{
    FileDigest, PlacementDecision, PlacementDetails, RunArtifact, SessionArtifact, Transport,
};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::Signer;
use crate::fsx;
use crate::runner::contract::{self, GRACE, LiveRedactor, Secret, StagedBundle, governed_env, resolve_secrets};
use crate::runner::{self, Event, Job, Outcome, Reach, Target, VmSettings};
use crate::types::Backend;

/// Log files in the evidence directory.
pub const STDOUT_LOG: &str = "run.stdout.log";
pub const STDERR_LOG: &str = "run.stderr.log";
pub const PRODUCTS_DIR: &str = "products";

/// What `run` produced.
#[derive(Debug)]
pub struct RunResult {
    pub artifact: RunArtifact,
    pub file: String,
    pub out_dir: PathBuf,
    pub success: bool,
}

/// Where the placement decision put the run: its executor, how it is
/// reached and the backend, from which [`runner::for_target`] picks the runner.
pub fn target_for(decision: &PlacementDecision, details: &PlacementDetails, backend: Backend) -> Result<Target> {
    let reach = match (details.transport, &details.ssh) {
        (Transport::Local, _) => Reach::Local,
        (Transport::Ssh, Some(t)) => Reach::Ssh(t.clone()),
        (Transport::Ssh, None) => {
            return Err(Problem::error(format!(
                "the placement decision reaches `{}` over ssh but records no SSH target",
                decision.chosen_executor
            ))
            .hint("place the bundle again")
            .into());
        }
    };
    // Boot with what placement found on the executor (and recorded).
    let vm_host = details
        .vm_host
        .as_ref()
        .map(|h| runner::VmHostConfig { qemu: h.qemu.clone(), kernel: h.kernel.clone() })
        .unwrap_or_default();
    Ok(Target { executor: decision.chosen_executor.clone(), reach, backend, vm_host })
}

/// Build the job for a bundle staged and checked by [`contract::stage`]:
/// the runner gets the staged copy, never the bundle directory; `products`
/// must be an empty directory.
pub fn job_for(
    b: &LoadedBundle,
    staged: &StagedBundle,
    run_id: &str,
    executor: &str,
    products: &Path,
    secrets: &[Secret],
    cancel: Arc<AtomicBool>,
) -> Job {
    let spec = &b.bundle.spec;
    let res = spec.vm.resources.as_ref();
    Job {
        run_id: run_id.to_string(),
        root: staged.root.clone(),
        bundle_dir: staged.bundle_dir.clone(),
        script: staged.script.clone(),
        script_in_bundle: staged.script.strip_prefix(&staged.bundle_dir).ok().map(Path::to_path_buf),
        bundle_digest: staged.digest.digest.clone(),
        products_dir: products.to_path_buf(),
        env: governed_env(b, run_id, executor, products, secrets),
        timeout: Duration::from_secs(b.bundle.max_run_seconds()),
        grace: GRACE,
        cancel,
        vm: VmSettings {
            mem_mib: res.and_then(|r| r.mem_mib).and_then(|m| u64::try_from(m).ok()),
            vcpu: res.and_then(|r| r.vcpu).and_then(|m| u64::try_from(m).ok()),
            kernel: spec.vm.kernel.as_ref().map(|k| b.resolve_path(k).0),
            network: spec
                .vm
                .network
                .as_ref()
                .and_then(|n| n.mode)
                .is_some_and(|m| m != crate::bundle::model::NetworkMode::None),
            require_kvm: spec.vm.requires_kvm.unwrap_or(false),
        },
    }
}

/// Digest every file under `dir`, paths relative to `base`, sorted.
pub fn digest_tree(base: &Path, dir: &Path) -> Result<Vec<FileDigest>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e?;
        if e.file_type().is_file() {
            out.push(FileDigest {
                path: fsx::rel_to(base, e.path()),
                sha256: fsx::sha256_file(e.path())?,
                bytes: e.metadata()?.len(),
            });
        } else if e.file_type().is_symlink() {
            // A product symlink could point anywhere; evidence holds only real files.
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(out)
}

/// Run the bundle at `arg` on the executor its chain's PlacementDecision chose.
pub fn run(
    root: &Path,
    arg: &Path,
    signer: &Signer,
    cancel: Arc<AtomicBool>,
    reporter: &mut dyn super::Reporter,
) -> Result<RunResult> {
    let b = load_for_stage(root, arg)?;
    reporter.begin(super::Stage::Run, &b.rel_dir);
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    super::ensure_validated(&b, &chain)?;
    let digest = super::ensure_unchanged(&b, &chain)?;
    super::ensure_not_done(&chain, ArtifactKind::RunArtifact, "run", &b)?;
    let decision: PlacementDecision = chain.load::<PlacementDecision>(&b.out_dir)?.ok_or_else(|| {
        Problem::error(format!("bundle `{}` has not been placed", b.rel_dir))
            .hint(format!("run `agentplane place {}` first", b.rel_dir))
    })?;
    // The runner first: a local one starts probing its containment while
    // the bundle is staged below.
    let placed = chain.load_details::<PlacementDecision>()?;
    let mut runner = runner::for_target(&target_for(&decision, &placed, b.bundle.spec.vm.backend_intent)?)?;
    let secrets = resolve_secrets(b.bundle.secrets_required())?;
    // Stage the bundle and check the staged copy against the digest just
    // checked: what runs is this copy, so a file swapped in the bundle
    // directory from now on changes nothing, and one swapped before the copy
    // was made is a refusal (nothing runs, no RunArtifact).
    let staged = contract::stage(&b, &digest)?;

    let products = b.out_dir.join(PRODUCTS_DIR);
    if products.exists() {
        std::fs::remove_dir_all(&products).context("cannot clear a stale products directory")?;
    }
    std::fs::create_dir_all(&products).with_context(|| format!("cannot create `{}`", products.display()))?;
    let job = job_for(&b, &staged, writer.run_id(), &decision.chosen_executor, &products, &secrets, cancel);

    let redactor = contract::redactor(&secrets);
    let mut live = LiveRedactor::new(&redactor);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = runner::execute(runner.as_mut(), &job, &mut |ev| {
        match &ev {
            Event::Stdout(d) => out.extend_from_slice(d),
            Event::Stderr(d) => err.extend_from_slice(d),
            Event::Status(_) => {}
        }
        super::report_event(reporter, live.event(ev));
    });
    for ev in live.finish() {
        super::report_event(reporter, ev);
    }
    drop(staged); // the staged copy is the run's scratch: it goes with the run
    // Everything below happens after the runner confirmed containment (its
    // teardown ran in `wait`): nothing of the run can write into the evidence now.
    let (out, out_hit) = redactor.redact(&out);
    let (err, err_hit) = redactor.redact(&err);
    fsx::write_atomic(&b.out_dir.join(STDOUT_LOG), &out)?;
    fsx::write_atomic(&b.out_dir.join(STDERR_LOG), &err)?;
    let redacted = super::hygiene::redact_products(&products, &b.out_dir, &redactor)?;
    let mut redacted_in = redacted.contents;
    if out_hit {
        redacted_in.insert(0, STDOUT_LOG.into());
    }
    if err_hit {
        redacted_in.insert(usize::from(out_hit), STDERR_LOG.into());
    }
    let product_digests = digest_tree(&b.out_dir, &products)?;
    let mut artifact =
        build_artifact(&b, &decision, &digest.digest, &outcome, &product_digests, &secrets, redacted_in)?;
    artifact.renamed_products = redacted.renamed;
    let mut subjects = vec![STDOUT_LOG.to_string(), STDERR_LOG.to_string()];
    subjects.extend(product_digests.iter().map(|p| p.path.clone()));
    // The leak gate: an exact-value scan of everything about to be signed.
    let files: Vec<PathBuf> = subjects.iter().map(|s| b.out_dir.join(s)).collect();
    let draft = serde_json::to_vec(&artifact)?;
    artifact.secret_scan = Some(super::hygiene::leak_gate(&redactor, secrets.len(), &draft, &files, &subjects)?);
    let file = writer.write_artifact(&artifact, &subjects)?;
    let success = artifact.status == RunStatus::Success;

    if outcome.exit.canceled {
        // Ctrl-C: record what happened and seal, so the evidence stays verifiable.
        let session = SessionArtifact {
            kind: ArtifactKind::SessionArtifact,
            bundle: b.identity(),
            captured_at: fsx::now_rfc3339(),
            session_ref: format!("urn:srcos:session:{}", writer.run_id()),
            status: SessionStatus::Canceled,
            run_artifact_ref: Some(file.clone()),
            replay_artifact_ref: None,
            governance_context: b.bundle.governance_context().cloned(),
        };
        let why = crate::evidence::artifacts::SessionDetails {
            reason: Some("interrupted (SIGINT/SIGTERM) during the run".into()),
        };
        writer.write_entry(&session, &why, &[])?;
        writer.seal()?;
    } else if success && b.bundle.lane() == crate::bundle::model::Lane::Staging {
        let here = super::pointers::Pointer::new(&b.rel_dir, &b.identity(), &digest.digest);
        super::pointers::set(root, super::pointers::CURRENT_STAGING, &here)?;
    }
    Ok(RunResult { artifact, file, out_dir: b.out_dir.clone(), success })
}

fn build_artifact(
    b: &LoadedBundle,
    decision: &PlacementDecision,
    digest: &str,
    o: &Outcome,
    products: &[FileDigest],
    secrets: &[Secret],
    redacted_in: Vec<String>,
) -> Result<RunArtifact> {
    let fail_on_timeout = b.bundle.spec.policy.fail_on_timeout.unwrap_or(true);
    let ok = o.exit.error.is_none()
        && !o.exit.canceled
        && if o.exit.timed_out { !fail_on_timeout } else { o.exit.code == Some(0) };
    let ended = o.started + o.duration;
    let log = |name: &str| -> Result<FileDigest> {
        let p = b.out_dir.join(name);
        Ok(FileDigest { path: name.into(), sha256: fsx::sha256_file(&p)?, bytes: std::fs::metadata(&p)?.len() })
    };
    Ok(RunArtifact {
        kind: ArtifactKind::RunArtifact,
        bundle: b.identity(),
        bundle_path: Some(b.rel_dir.clone()),
        captured_at: fsx::now_rfc3339(),
        lane: b.bundle.lane(),
        executor: decision.chosen_executor.clone(),
        backend_intent: b.bundle.spec.vm.backend_intent,
        status: if ok { RunStatus::Success } else { RunStatus::Failure },
        exit_code: o.exit.code.map_or(-1, i64::from),
        stdout_ref: Some(STDOUT_LOG.into()),
        stderr_ref: Some(STDERR_LOG.into()),
        governance_context: b.bundle.governance_context().cloned(),
        chronos_carrier: b.value.pointer("/spec/chronosCarrier").cloned(),
        bundle_digest: digest.into(),
        timed_out: o.exit.timed_out,
        canceled: o.exit.canceled,
        signal: o.exit.signal.clone(),
        started_at: humantime::format_rfc3339_millis(o.started).to_string(),
        ended_at: humantime::format_rfc3339_millis(ended).to_string(),
        duration_ms: o.duration.as_millis() as u64,
        isolation: o.isolation,
        environment: o.environment.clone(),
        vm_host: o.vm_host.clone(),
        logs: vec![log(STDOUT_LOG)?, log(STDERR_LOG)?],
        products: products.to_vec(),
        secrets_provided: secrets.iter().map(|s| s.name.clone()).collect(),
        redacted_in,
        error: o.exit.error.clone(),
        renamed_products: Vec::new(),
        secret_scan: None,
        containment: o.containment.clone(),
        bundle_extensions: crate::evidence::artifacts::bundle_extensions(&b.value),
    })
}
