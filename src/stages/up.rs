//! `up`: validate → place → run → emit for one bundle, stopping at the first
//! stage whose subject fails. It composes the stages; it never calls commands.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Reporter, Stage, emit, place, run, validate};
use crate::bundle::digest::Want;
use crate::error::Problem;
use crate::evidence::keys::Signer;
use crate::types::SessionStatus;

/// How far `up` got and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpStatus {
    /// The bundle did not pass validation.
    Invalid,
    /// No executor qualifies.
    Unplaced,
    /// Ctrl-C during the run: recorded as a canceled session and sealed.
    Canceled,
    /// Sealed, with a successful run.
    Success,
    /// Sealed, with a failed run.
    Failure,
}

/// Every stage's outcome, as far as `up` got.
#[derive(Debug)]
pub struct UpOutcome {
    pub validation: validate::Outcome,
    pub placed: Option<place::Placed>,
    pub run: Option<run::RunResult>,
    pub emitted: Option<emit::Emitted>,
}

impl UpOutcome {
    pub fn status(&self) -> UpStatus {
        if !self.validation.report.valid {
            return UpStatus::Invalid;
        }
        if self.placed.as_ref().is_none_or(|p| p.chosen.is_none()) {
            return UpStatus::Unplaced;
        }
        match (&self.run, &self.emitted) {
            (Some(r), _) if r.artifact.canceled => UpStatus::Canceled,
            (_, Some(e)) if e.session.status == SessionStatus::Success => UpStatus::Success,
            _ => UpStatus::Failure,
        }
    }

    /// The evidence directory the chain lives in.
    pub fn evidence(&self) -> Option<&Path> {
        self.validation.written.as_deref()
    }
}

/// The one bundle at `arg`; a folder holding several is refused before
/// anything is written (`up` runs one bundle: name it).
pub fn one_bundle(root: &Path, arg: &Path) -> Result<PathBuf> {
    let manifests = validate::find(root, &[arg.to_path_buf()])?;
    match manifests.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Problem::error(format!("no bundle.json under `{}`", arg.display()))
            .hint("pass a bundle directory (one holding bundle.json)")
            .into()),
        many => {
            let list: Vec<String> = many.iter().map(|m| crate::fsx::rel_to(root, m.parent().unwrap_or(root))).collect();
            Err(Problem::error(format!(
                "`{}` holds {} bundles; this command runs one: {}",
                arg.display(),
                many.len(),
                list.join(", ")
            ))
            .hint("pass one bundle directory, e.g. the first of those")
            .into())
        }
    }
}

/// validate → place → run → emit. `Ok` whatever the subject's fate; `Err`
/// only when agentplane itself could not go on (exit 2).
pub fn up(
    root: &Path,
    bundle: &Path,
    opts: &place::Options,
    signer: &Signer,
    cancel: Arc<AtomicBool>,
    reporter: &mut dyn Reporter,
) -> Result<UpOutcome> {
    let manifest = one_bundle(root, bundle)?;
    // A bad `--executor` is the operator's mistake (exit 2): refuse it before
    // validation starts a new chain.
    if let Some(name) = &opts.executor {
        let inv = place::load_inventory(root, opts.inventory.as_deref())?;
        if !inv.executors.iter().any(|e| &e.name == name) {
            let names: Vec<&str> = inv.executors.iter().map(|e| e.name.as_str()).collect();
            return Err(Problem::error(format!("--executor `{name}` is not in the inventory"))
                .hint(format!("known executors: {}", names.join(", ")))
                .into());
        }
    }
    reporter.begin(Stage::Validate, &bundle.display().to_string());
    let reports = validate::check_all(root, std::slice::from_ref(&manifest), Want::DigestAndFiles)?;
    let validation = validate::write_all(root, reports, signer)?.into_iter().next().expect("one bundle, one outcome");
    let mut out = UpOutcome { validation, placed: None, run: None, emitted: None };
    if !out.validation.report.valid {
        reporter.end();
        return Ok(out);
    }
    reporter.begin(Stage::Place, &bundle.display().to_string());
    let placed = place::place(root, bundle, signer, opts)?;
    let chosen = placed.chosen.is_some();
    out.placed = Some(placed);
    if !chosen {
        reporter.end();
        return Ok(out);
    }
    let r = run::run(root, bundle, signer, cancel, reporter)?;
    let canceled = r.artifact.canceled;
    out.run = Some(r);
    if canceled {
        reporter.end();
        return Ok(out);
    }
    reporter.begin(Stage::Emit, &bundle.display().to_string());
    out.emitted = Some(emit::emit(root, bundle, signer)?);
    reporter.end();
    Ok(out)
}
