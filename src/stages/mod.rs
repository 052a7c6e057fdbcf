//! The stages, as library functions: validate → place → run → emit, then
//! replay and the lifecycle (promote, rollback, status); `up` composes the
//! first four. Each returns a typed outcome for the CLI to render and reports
//! progress through one [`Reporter`]; none of them prints.

pub mod emit;
pub mod hygiene;
pub mod lifecycle;
pub mod place;
pub mod pointers;
pub mod replay;
pub mod run;
pub mod up;
pub mod validate;

use anyhow::Result;
use std::path::Path;

use crate::bundle::LoadedBundle;
use crate::bundle::digest::{self, BundleDigest, DigestEntry};
use crate::error::{Problem, Refusal, RefusalCode};
use crate::evidence::artifacts::{BundleFile, ValidationArtifact};
use crate::evidence::chain::Chain;
use crate::types::ArtifactKind;

pub fn to_bundle_files(files: &[DigestEntry]) -> Vec<BundleFile> {
    files
        .iter()
        .map(|f| BundleFile { path: f.path.clone(), mode: f.mode.to_string(), sha256: f.sha256.clone() })
        .collect()
}

pub fn from_bundle_files(files: &[BundleFile]) -> Vec<DigestEntry> {
    files
        .iter()
        .map(|f| DigestEntry {
            path: f.path.clone(),
            mode: match f.mode.as_str() {
                "755" => "755",
                "link" => "link",
                _ => "644",
            },
            sha256: f.sha256.clone(),
        })
        .collect()
}

/// Refuse (exit 1) when the bundle is not the one the chain validated, naming
/// every file that changed. Returns the current digest.
pub fn ensure_unchanged(b: &LoadedBundle, chain: &Chain) -> Result<BundleDigest> {
    let now = b.digest()?;
    let recorded = chain.bundle_digest().unwrap_or_default();
    if now.digest == recorded {
        return Ok(now);
    }
    let validated = chain.load_details::<ValidationArtifact>().map(|d| d.bundle_files).unwrap_or_default();
    let changed = digest::changed_files(&from_bundle_files(&validated), &now.files);
    let list = if changed.is_empty() { String::new() } else { format!(": {}", changed.join(", ")) };
    Err(Refusal::new(
        RefusalCode::BundleChanged,
        format!("bundle `{}` changed since it was validated{list}", b.rel_dir),
    )
    .hint(format!("run `agentplane validate {}` again to start a new evidence chain", b.rel_dir))
    .changed(changed)
    .into())
}

/// The chain's validation must have passed.
pub fn ensure_validated(b: &LoadedBundle, chain: &Chain) -> Result<()> {
    let v: Option<ValidationArtifact> = chain.load::<ValidationArtifact>(&b.out_dir)?;
    match v {
        Some(v) if v.valid => Ok(()),
        Some(_) => {
            Err(Refusal::new(RefusalCode::BundleInvalid, format!("bundle `{}` did not pass validation", b.rel_dir))
                .hint(format!("fix what `agentplane validate {}` reports, then validate again", b.rel_dir))
                .into())
        }
        None => Err(Problem::error(format!("the evidence in `{}` has no ValidationArtifact", b.out_dir.display()))
            .hint(format!("run `agentplane validate {}` first", b.rel_dir))
            .into()),
    }
}

/// Refuse a stage that this chain already has (each runs once per chain).
pub fn ensure_not_done(chain: &Chain, kind: ArtifactKind, stage: &str, b: &LoadedBundle) -> Result<()> {
    if chain.last_of(kind).is_some() {
        return Err(Problem::error(format!(
            "this evidence chain already has a {kind}: each stage runs once per chain"
        ))
        .hint(format!("run `agentplane validate {}` to start a new chain, then `{stage}` again", b.rel_dir))
        .into());
    }
    Ok(())
}

/// Path shown to users: relative to the root when inside it.
pub fn show(root: &Path, p: &Path) -> String {
    crate::fsx::rel_to(root, p)
}

/// A stage, as progress names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Validate,
    Place,
    Run,
    Emit,
    Verify,
    Replay,
}

impl Stage {
    /// What the stage is doing, for a spinner.
    pub fn verb(self) -> &'static str {
        match self {
            Stage::Validate => "validating",
            Stage::Place => "placing",
            Stage::Run => "running",
            Stage::Emit => "emitting",
            Stage::Verify => "verifying",
            Stage::Replay => "replaying",
        }
    }
}

/// Which stream live output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where stages report progress. The CLI implements it (a spinner, live
/// output with `--watch`, nothing for json); `replay` reports through the
/// same reporter as `run`. Every method defaults to doing nothing.
pub trait Reporter {
    /// A stage began on `subject` (a bundle path or evidence directory).
    fn begin(&mut self, _stage: Stage, _subject: &str) {}
    /// A runner step ("uploading bundle", "booting VM (tcg)").
    fn status(&mut self, _msg: &str) {}
    /// Live output of the smoke script, already redacted.
    fn output(&mut self, _stream: Stream, _bytes: &[u8]) {}
    /// The work is over (clear any spinner).
    fn end(&mut self) {}
}

/// Reports nothing (json output, tests).
pub struct Silent;

impl Reporter for Silent {}

/// Feed a runner event to a reporter.
pub fn report_event(reporter: &mut dyn Reporter, ev: crate::runner::Event) {
    use crate::runner::Event;
    match ev {
        Event::Stdout(d) => reporter.output(Stream::Stdout, &d),
        Event::Stderr(d) => reporter.output(Stream::Stderr, &d),
        Event::Status(s) => reporter.status(&s),
    }
}
