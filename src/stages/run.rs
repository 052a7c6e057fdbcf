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
use crate::evidence::artifacts::{FileDigest, PlacementDecision, RunArtifact, SessionArtifact, Transport};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::Signer;
use crate::fsx;
use crate::runner::{self, Event, Job, Outcome, Runner, VmSettings};

/// Host variables a smoke script may see; everything else is dropped.
pub const ENV_ALLOWLIST: &[&str] =
    &["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "USER", "LOGNAME", "TMPDIR", "SHELL"];

/// Between TERM and KILL at the deadline.
pub const GRACE: Duration = Duration::from_secs(2);

/// Log files in the evidence directory.
pub const STDOUT_LOG: &str = "run.stdout.log";
pub const STDERR_LOG: &str = "run.stderr.log";
pub const PRODUCTS_DIR: &str = "products";

/// A secret given to the run: its name and value (never written anywhere).
#[derive(Clone)]
pub struct Secret {
    pub name: String,
    pub env_name: String,
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.name)
    }
}

/// Resolve every required secret from the environment before anything runs.
/// `NAME` is taken from `$NAME`; `NAME_FILE` names a file whose contents are
/// the secret, given to the script as `$NAME` (without `_FILE`).
pub fn resolve_secrets(names: &[String]) -> Result<Vec<Secret>> {
    let mut out = Vec::new();
    for name in names {
        let raw = std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(raw) = raw else {
            return Err(Problem::error(format!("required secret `{name}` is not set"))
                .hint(if name.ends_with("_FILE") {
                    format!("export {name}=/path/to/file holding the secret, then run again")
                } else {
                    format!("export {name}=… in the environment agentplane runs in, then run again")
                })
                .into());
        };
        let (env_name, value) = match name.strip_suffix("_FILE") {
            Some(base) if !base.is_empty() => {
                let v = crate::fsx::read_secret_file(Path::new(&raw)).map_err(|e| {
                    Problem::error(format!("secret `{name}`: cannot read `{raw}`: {e}"))
                        .hint(format!("{name} must name a readable file holding the secret"))
                })?;
                (base.to_string(), v.trim_end_matches(['\n', '\r']).to_string())
            }
            _ => (name.clone(), raw),
        };
        out.push(Secret { name: name.clone(), env_name, value });
    }
    Ok(out)
}

/// The governed environment of DESIGN §6.
pub fn governed_env(
    b: &LoadedBundle,
    run_id: &str,
    executor: &str,
    products: &Path,
    secrets: &[Secret],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        ENV_ALLOWLIST.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
    }
    env.extend([
        ("AGENTPLANE_RUN_ID".to_string(), run_id.to_string()),
        ("AGENTPLANE_BUNDLE".into(), b.identity()),
        ("AGENTPLANE_BUNDLE_NAME".into(), b.bundle.metadata.name.clone()),
        ("AGENTPLANE_LANE".into(), b.bundle.lane().as_str().into()),
        ("AGENTPLANE_EXECUTOR".into(), executor.into()),
        ("AGENTPLANE_PRODUCTS_DIR".into(), products.display().to_string()),
    ]);
    for s in secrets {
        env.push((s.env_name.clone(), s.value.clone()));
    }
    env
}

/// Replace every secret value in `data` with `[redacted:NAME]`. Values shorter
/// than 3 bytes are left alone: redacting them would shred the log.
pub fn redact(data: &[u8], secrets: &[Secret]) -> (Vec<u8>, bool) {
    let mut out = data.to_vec();
    let mut hit = false;
    for s in secrets.iter().filter(|s| s.value.len() >= 3) {
        let needle = s.value.as_bytes();
        let mark = format!("[redacted:{}]", s.name).into_bytes();
        let mut res = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(needle) {
                res.extend_from_slice(&mark);
                i += needle.len();
                hit = true;
            } else {
                res.push(out[i]);
                i += 1;
            }
        }
        out = res;
    }
    (out, hit)
}

/// Redact a live output event before anyone sees it. (Per chunk: a secret
/// split across two reads can reach the terminal; the logs, redacted whole,
/// never hold it.)
pub fn redact_event(ev: Event, secrets: &[Secret]) -> Event {
    match ev {
        Event::Stdout(d) => Event::Stdout(redact(&d, secrets).0),
        Event::Stderr(d) => Event::Stderr(redact(&d, secrets).0),
        s => s,
    }
}

/// What `run` produced.
#[derive(Debug)]
pub struct RunResult {
    pub artifact: RunArtifact,
    pub file: String,
    pub out_dir: PathBuf,
    pub success: bool,
}

/// Pick the runner for a decision: the backend decides VM or process, the transport where.
pub fn runner_for(decision: &PlacementDecision, backend_is_vm: bool) -> Box<dyn Runner> {
    let name = decision.chosen_executor.as_str();
    if backend_is_vm {
        return Box::new(runner::qemu::QemuRunner::new(name));
    }
    match (decision.transport, &decision.ssh) {
        (Transport::Ssh, Some(t)) => Box::new(runner::ssh::SshRunner::new(name, t.clone())),
        _ => Box::new(runner::local::LocalRunner::new(name)),
    }
}

/// Build the job for a bundle; `products` must be an empty directory.
pub fn job_for(
    b: &LoadedBundle,
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
        root: b.root.clone(),
        bundle_dir: b.dir.clone(),
        script: b.script.clone(),
        script_in_bundle: b.script.strip_prefix(&b.dir).ok().map(Path::to_path_buf),
        products_dir: products.to_path_buf(),
        env: governed_env(b, run_id, executor, products, secrets),
        timeout: Duration::from_secs(b.bundle.max_run_seconds()),
        grace: GRACE,
        cancel,
        vm: VmSettings {
            mem_mib: res.and_then(|r| r.mem_mib).and_then(|m| u64::try_from(m).ok()),
            vcpu: res.and_then(|r| r.vcpu).and_then(|m| u64::try_from(m).ok()),
            kernel: spec.vm.kernel.as_ref().map(|k| fsx::resolve_in_root(&b.root, k).0),
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

/// Redact secret values inside product files in place; returns the files touched.
fn redact_products(products: &Path, base: &Path, secrets: &[Secret]) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    if secrets.is_empty() || !products.exists() {
        return Ok(touched);
    }
    for e in walkdir::WalkDir::new(products) {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let data = std::fs::read(e.path())?;
        let (clean, hit) = redact(&data, secrets);
        if hit {
            fsx::write_atomic(e.path(), &clean)?;
            touched.push(fsx::rel_to(base, e.path()));
        }
    }
    Ok(touched)
}

/// Run the bundle at `arg` on the executor its chain's PlacementDecision chose.
pub fn run(
    root: &Path,
    arg: &Path,
    signer: &Signer,
    cancel: Arc<AtomicBool>,
    events: &mut dyn FnMut(Event),
) -> Result<RunResult> {
    let b = load_for_stage(root, arg)?;
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    super::ensure_validated(&b, &chain)?;
    let digest = super::ensure_unchanged(&b, &chain)?;
    super::ensure_not_done(&chain, ArtifactKind::RunArtifact, "run", &b)?;
    let decision: PlacementDecision = chain.load::<PlacementDecision>(&b.out_dir)?.ok_or_else(|| {
        Problem::error(format!("bundle `{}` has not been placed", b.rel_dir))
            .hint(format!("run `agentplane place {}` first", b.rel_dir))
    })?;
    let secrets = resolve_secrets(b.bundle.secrets_required())?;

    let products = b.out_dir.join(PRODUCTS_DIR);
    if products.exists() {
        std::fs::remove_dir_all(&products).context("cannot clear a stale products directory")?;
    }
    std::fs::create_dir_all(&products).with_context(|| format!("cannot create `{}`", products.display()))?;
    let job = job_for(&b, writer.run_id(), &decision.chosen_executor, &products, &secrets, cancel);
    let mut runner = runner_for(&decision, b.bundle.spec.vm.backend_intent.is_vm());

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = runner::execute(runner.as_mut(), &job, &mut |ev| {
        match &ev {
            Event::Stdout(d) => out.extend_from_slice(d),
            Event::Stderr(d) => err.extend_from_slice(d),
            Event::Status(_) => {}
        }
        events(redact_event(ev, &secrets));
    });
    let (out, out_hit) = redact(&out, &secrets);
    let (err, err_hit) = redact(&err, &secrets);
    fsx::write_atomic(&b.out_dir.join(STDOUT_LOG), &out)?;
    fsx::write_atomic(&b.out_dir.join(STDERR_LOG), &err)?;
    let mut redacted_in = redact_products(&products, &b.out_dir, &secrets)?;
    if out_hit {
        redacted_in.insert(0, STDOUT_LOG.into());
    }
    if err_hit {
        redacted_in.insert(usize::from(out_hit), STDERR_LOG.into());
    }
    let product_digests = digest_tree(&b.out_dir, &products)?;
    let artifact = build_artifact(&b, &decision, &digest.digest, &outcome, &product_digests, &secrets, redacted_in)?;
    let mut subjects = vec![STDOUT_LOG.to_string(), STDERR_LOG.to_string()];
    subjects.extend(product_digests.iter().map(|p| p.path.clone()));
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
            reason: Some("interrupted (SIGINT/SIGTERM) during the run".into()),
        };
        writer.write_artifact(&session, &[])?;
        writer.seal()?;
    } else if success && b.bundle.lane() == crate::bundle::model::Lane::Staging {
        crate::stages::lifecycle::set_pointer(root, crate::stages::lifecycle::CURRENT_STAGING, &b.rel_dir)?;
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
        logs: vec![log(STDOUT_LOG)?, log(STDERR_LOG)?],
        products: products.to_vec(),
        secrets_provided: secrets.iter().map(|s| s.name.clone()).collect(),
        redacted_in,
        error: o.exit.error.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_occurrence() {
        let s = vec![Secret { name: "TOK".into(), env_name: "TOK".into(), value: "s3cret".into() }];
        let (out, hit) = redact(b"a s3cret b s3crets3cret", &s);
        assert!(hit);
        assert_eq!(out, b"a [redacted:TOK] b [redacted:TOK][redacted:TOK]".to_vec());
        let (out, hit) = redact(b"nothing here", &s);
        assert!(!hit);
        assert_eq!(out, b"nothing here".to_vec());
    }
}
