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
    let backend = b.bundle.spec.vm.backend_intent;
    let local = || Target { executor: "local".into(), reach: Reach::Local, backend };
    let target = match (opts.executor.as_deref(), &decision) {
        (Some("local"), _) | (None, None) => local(),
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
    };
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
