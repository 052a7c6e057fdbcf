//! `replay`: verify the evidence, then re-run the recorded bundle in a scratch
//! directory and compare with the recorded run (DESIGN §8). Replay never
//! writes into the evidence directory it checks.

use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::bundle::digest;
use crate::bundle::load_for_stage;
use crate::error::Problem;
use crate::evidence::artifacts::{PlacementDecision, ReplayArtifact};
use crate::evidence::chain::Chain;
use crate::evidence::keys::TrustedKey;
use crate::evidence::verify;
use crate::runner::contract;
use crate::runner::{self, Event, Reach, Target};
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
    /// `match` or `diverged`.
    pub verdict: String,
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
    events: &mut dyn FnMut(Event),
) -> Result<Verdict> {
    // 1. The evidence must verify against the trusted keys.
    let report = verify::verify_dir(dir, &verify::Options { trusted: opts.trusted.clone(), allow_unsealed: false })?;
    if !report.verified {
        return Err(Problem::failed(format!(
            "the evidence in `{}` does not verify: {}",
            dir.display(),
            report.first_failure.unwrap_or_default()
        ))
        .hint(format!("run `agentplane verify {}` for the full report", dir.display()))
        .into());
    }
    let chain = Chain::read(dir)?.unwrap_or_default();
    let recorded: ReplayArtifact = chain.load::<ReplayArtifact>(dir)?.ok_or_else(|| {
        Problem::failed(format!("`{}` has no ReplayArtifact: the run was never emitted", dir.display()))
            .hint("replay needs a chain completed by `agentplane emit` or `agentplane up`")
    })?;
    let decision: Option<PlacementDecision> = chain.load::<PlacementDecision>(dir)?;

    // 2. The bundle must be the exact one recorded.
    let b = load_for_stage(root, Path::new(&recorded.inputs.bundle_path))?;
    let now = b.digest()?;
    if now.digest != recorded.bundle_digest {
        let changed = digest::changed_files(&crate::stages::from_bundle_files(&recorded.bundle_files), &now.files);
        return Err(Problem::failed(format!(
            "bundle `{}` differs from the recorded one: {}",
            recorded.inputs.bundle_path,
            if changed.is_empty() { "digest differs".to_string() } else { changed.join(", ") }
        ))
        .hint("replay the bundle exactly as recorded (check out the recorded revision)")
        .into());
    }

    // 3. Re-run into a scratch directory on the recorded (or chosen) executor.
    let target = target(root, opts, decision.as_ref(), b.bundle.spec.vm.backend_intent)?;
    let secrets = contract::resolve_secrets(&recorded.inputs.secrets_required)?;
    let scratch = tempfile::Builder::new().prefix("agentplane-replay-").tempdir()?;
    let products = scratch.path().join("products");
    std::fs::create_dir_all(&products)?;
    let job = run_stage::job_for(
        &b,
        &format!("replay-{}", crate::fsx::new_id()),
        &target.executor,
        &products,
        &secrets,
        cancel,
    );
    let mut r = runner::for_target(&target)?;
    let outcome = runner::execute(r.as_mut(), &job, &mut |ev| events(contract::redact_event(ev, &secrets)));

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
        verdict: if differences.is_empty() { "match" } else { "diverged" }.into(),
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

/// Where the replay runs: `--executor local` on this host, `--executor NAME`
/// on that inventory executor, else where the recorded decision placed the
/// run (this host when the chain has no decision).
fn target(root: &Path, opts: &Options, decision: Option<&PlacementDecision>, backend: Backend) -> Result<Target> {
    Ok(match (opts.executor.as_deref(), decision) {
        (Some("local"), _) | (None, None) => Target { executor: "local".into(), reach: Reach::Local, backend },
        (None, Some(d)) => run_stage::target_for(d, backend)?,
        (Some(name), Some(d)) if name == d.chosen_executor => run_stage::target_for(d, backend)?,
        (Some(name), _) => {
            let inv = crate::stages::place::load_inventory(root, opts.inventory.as_deref())?;
            let e = inv.executors.iter().find(|e| e.name == name).ok_or_else(|| {
                Problem::error(format!("executor `{name}` is not in the inventory"))
                    .hint("pass --executor local or a name from fleet/inventory.json")
            })?;
            Target { executor: e.name.clone(), reach: e.reach.clone(), backend }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ArtifactKind, Isolation, SshTarget, Transport};

    fn decision(executor: &str, ssh: Option<SshTarget>) -> PlacementDecision {
        PlacementDecision {
            kind: ArtifactKind::PlacementDecision,
            captured_at: String::new(),
            backend_intent: Backend::LimaProcess,
            requires_kvm: false,
            chosen_executor: executor.into(),
            ssh_ref: executor.into(),
            caps: serde_json::json!({}),
            rejected: Vec::new(),
            bundle: "b@1".into(),
            bundle_digest: String::new(),
            transport: if ssh.is_some() { Transport::Ssh } else { Transport::Local },
            ssh,
            isolation: Isolation::Process,
            inventory: "implicit".into(),
            observed_platform: None,
        }
    }

    #[test]
    fn the_replay_target_comes_from_the_flag_or_the_recorded_decision() {
        let root = tempfile::tempdir().unwrap();
        let t = SshTarget {
            host: "h".into(),
            port: 2222,
            user: "u".into(),
            identity_file: "/k".into(),
            known_hosts_file: "/kh".into(),
        };
        let recorded = decision("build-1", Some(t.clone()));
        let opts = |executor: Option<&str>| Options {
            trusted: Vec::new(),
            executor: executor.map(String::from),
            inventory: None,
        };
        let pick = |executor, d| target(root.path(), &opts(executor), d, Backend::LimaProcess);

        let here = Target { executor: "local".into(), reach: Reach::Local, backend: Backend::LimaProcess };
        let there = Target { executor: "build-1".into(), reach: Reach::Ssh(t), backend: Backend::LimaProcess };
        assert_eq!(pick(None, None).unwrap(), here, "no decision: this host");
        assert_eq!(pick(None, Some(&recorded)).unwrap(), there, "the recorded executor, reached as recorded");
        assert_eq!(pick(Some("build-1"), Some(&recorded)).unwrap(), there);
        assert_eq!(pick(Some("local"), Some(&recorded)).unwrap(), here);
        // The implicit inventory (no fleet/inventory.json) knows only `local`.
        let err = pick(Some("elsewhere"), Some(&recorded)).unwrap_err();
        assert!(format!("{err:#}").contains("executor `elsewhere` is not in the inventory"), "{err:#}");

        let mut broken = decision("build-1", None);
        broken.transport = Transport::Ssh;
        assert!(pick(None, Some(&broken)).is_err(), "an ssh decision without a target never falls back to local");
    }
}
