//! `replay`: verify the evidence, then re-run the recorded bundle in a scratch
//! directory and compare with the recorded run (DESIGN §8). Replay never
//! writes into the evidence directory it checks.

use crate::types::ReplayVerdict;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::bundle::digest;
use crate::bundle::load_for_stage;
use crate::error::{Problem, Refusal, RefusalCode};
use crate::evidence::artifacts::ReplayArtifact;
use crate::evidence::chain::Chain;
use crate::evidence::keys::TrustedKey;
use crate::evidence::verify;
use crate::runner::contract;
use crate::runner::{self, Reach, Target, VmHostConfig};
use crate::stages::run::{self as run_stage, digest_tree};
use crate::types::Backend;

#[derive(Debug, Clone)]
pub struct Options {
    pub trusted: Vec<TrustedKey>,
    /// Run on this executor instead of the recorded one (`local`, or an inventory name).
    pub executor: Option<String>,
    pub inventory: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub verdict: ReplayVerdict,
    pub bundle: String,
    pub bundle_digest: String,
    pub executor: String,
    pub determinism_required: bool,
    pub expected_exit_code: i64,
    pub exit_code: i64,
    pub timed_out: bool,
    pub differences: Vec<String>,
    pub run_error: Option<String>,
}

pub fn replay(
    root: &Path,
    dir: &Path,
    opts: &Options,
    cancel: Arc<AtomicBool>,
    reporter: &mut dyn super::Reporter,
) -> Result<Verdict> {
    reporter.begin(super::Stage::Verify, &dir.display().to_string());
    // 1. The evidence must verify against the trusted keys.
    let report = verify::verify_dir(
        dir,
        &verify::Options {
            trusted: opts.trusted.clone(),
            allow_unsealed: false,
            since: Vec::new(),
            lines: verify::ReportLines::Kept,
        },
    )?;
    if !report.verified {
        return Err(Refusal::new(
            RefusalCode::EvidenceUnverified,
            format!(
                "the evidence in `{}` does not verify: {}",
                dir.display(),
                report.first_failure.unwrap_or_default()
            ),
        )
        .hint(format!("run `agentplane verify {} --trusted-key PUB` for the full report", dir.display()))
        .into());
    }
    let chain = Chain::read(dir)?.unwrap_or_default();
    let recorded: ReplayArtifact = chain.load::<ReplayArtifact>(dir)?.ok_or_else(|| {
        Refusal::new(
            RefusalCode::NotEmitted,
            format!("`{}` has no ReplayArtifact: the run was never emitted", dir.display()),
        )
        .hint("replay needs a chain completed by `agentplane emit` or `agentplane up`")
    })?;

    // 2. The bundle must be the exact one recorded.
    let b = load_for_stage(root, Path::new(&recorded.inputs.bundle_path))?;
    let now = b.digest()?;
    if now.digest != recorded.bundle_digest {
        let changed = digest::changed_files(&crate::stages::from_bundle_files(&recorded.bundle_files), &now.files);
        return Err(Refusal::new(
            RefusalCode::BundleChanged,
            format!(
                "bundle `{}` differs from the recorded one: {}",
                recorded.inputs.bundle_path,
                if changed.is_empty() { "digest differs".to_string() } else { changed.join(", ") }
            ),
        )
        .hint("replay the bundle exactly as recorded (check out the recorded revision)")
        .changed(changed)
        .into());
    }

    // 3. Re-run into a scratch directory on the auditor's machine, unless
    //    `--executor` names one in an inventory: replay never logs in to a host
    //    just because the evidence recorded it (DESIGN §8).
    let target = target(root, opts, b.bundle.spec.vm.backend_intent)?;
    // The secret names come from the bundle, whose digest was just checked,
    // never from the evidence (which could ask for any variable of ours).
    let secrets = contract::resolve_secrets(b.bundle.secrets_required())?;
    // What runs is a staged copy checked against the digest just compared.
    let staged = contract::stage(&b, &now)?;
    let scratch = tempfile::Builder::new().prefix("agentplane-replay-").tempdir()?;
    let products = scratch.path().join("products");
    std::fs::create_dir_all(&products)?;
    let job = run_stage::job_for(
        &b,
        &staged,
        &format!("replay-{}", crate::fsx::new_id()),
        &target.executor,
        &products,
        &secrets,
        cancel,
    );
    let mut r = runner::for_target(&target)?;
    reporter.begin(super::Stage::Replay, &recorded.inputs.bundle_path);
    let redactor = contract::redactor(&secrets);
    let mut live = contract::LiveRedactor::new(&redactor);
    let outcome = runner::execute(r.as_mut(), &job, &mut |ev| super::report_event(reporter, live.event(ev)));
    for ev in live.finish() {
        super::report_event(reporter, ev);
    }
    drop(staged);
    // Compare like with like: the recorded products were redacted before they
    // were digested, so the re-run's are too (names and contents).
    super::hygiene::redact_products(&products, scratch.path(), &redactor)?;

    // 4. Compare: the exit status always; every product when determinism is declared.
    let exit_code = outcome.exit.code.map_or(-1, i64::from);
    let mut differences = Vec::new();
    if let Some(e) = &outcome.exit.error {
        differences.push(format!("the re-run failed: {e}"));
    }
    if outcome.exit.timed_out {
        differences.push("the re-run timed out".into());
    }
    if exit_code != recorded.expected_exit_code {
        differences.push(format!("exit code {exit_code}, recorded {}", recorded.expected_exit_code));
    }
    if recorded.determinism_required {
        let got = digest_tree(scratch.path(), &products)?;
        for want in &recorded.expected_products {
            match got.iter().find(|g| g.path == want.path) {
                None => differences.push(format!("{}: missing in the re-run", want.path)),
                Some(g) if g.sha256 != want.sha256 => differences
                    .push(format!("{}: sha256 {} differs from recorded {}", want.path, g.sha256, want.sha256)),
                _ => {}
            }
        }
        for g in &got {
            if !recorded.expected_products.iter().any(|w| w.path == g.path) {
                differences.push(format!("{}: produced by the re-run but not recorded", g.path));
            }
        }
    }
    Ok(Verdict {
        verdict: if differences.is_empty() { ReplayVerdict::Match } else { ReplayVerdict::Diverged },
        bundle: recorded.bundle.clone(),
        bundle_digest: recorded.bundle_digest.clone(),
        executor: target.executor.clone(),
        determinism_required: recorded.determinism_required,
        expected_exit_code: recorded.expected_exit_code,
        exit_code,
        timed_out: outcome.exit.timed_out,
        differences,
        run_error: outcome.exit.error,
    })
}

/// Where the replay runs: this host, unless `--executor NAME` names an
/// executor of the inventory (`local` is this host too).
fn target(root: &Path, opts: &Options, backend: Backend) -> Result<Target> {
    Ok(match opts.executor.as_deref() {
        None | Some("local") => {
            Target { executor: "local".into(), reach: Reach::Local, backend, vm_host: VmHostConfig::default() }
        }
        Some(name) => {
            let inv = crate::stages::place::load_inventory(root, opts.inventory.as_deref())?;
            let e = inv.executors.iter().find(|e| e.name == name).ok_or_else(|| {
                Problem::error(format!("executor `{name}` is not in the inventory"))
                    .hint("pass --executor local or a name from fleet/inventory.json")
            })?;
            let vm_host = VmHostConfig::from_caps(&e.caps);
            Target { executor: e.name.clone(), reach: e.reach.clone(), backend, vm_host }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_runs_here_unless_an_inventory_executor_is_named() {
        let root = tempfile::tempdir().unwrap();
        let opts = |executor: Option<&str>| Options {
            trusted: Vec::new(),
            executor: executor.map(String::from),
            inventory: None,
        };
        let pick = |executor| target(root.path(), &opts(executor), Backend::LimaProcess);
        let here = Target {
            executor: "local".into(),
            reach: Reach::Local,
            backend: Backend::LimaProcess,
            vm_host: VmHostConfig::default(),
        };
        assert_eq!(pick(None).unwrap(), here, "by default: this host, whatever the evidence recorded");
        assert_eq!(pick(Some("local")).unwrap(), here);
        // The implicit inventory (no fleet/inventory.json) knows only `local`.
        let err = pick(Some("elsewhere")).unwrap_err();
        assert!(format!("{err:#}").contains("executor `elsewhere` is not in the inventory"), "{err:#}");
    }
}
