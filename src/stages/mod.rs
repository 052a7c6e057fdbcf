//! The stages, as library functions: validate → place → run → emit. Each
//! returns data for the CLI to print; none of them prints.

pub mod emit;
pub mod lifecycle;
pub mod place;
pub mod replay;
pub mod run;
pub mod validate;

use anyhow::Result;
use std::path::Path;

use crate::bundle::LoadedBundle;
use crate::bundle::digest::{self, BundleDigest, DigestEntry};
use crate::error::Problem;
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
    let validation: Option<ValidationArtifact> = chain.load::<ValidationArtifact>(&b.out_dir).ok().flatten();
    let changed =
        validation.map(|v| digest::changed_files(&from_bundle_files(&v.bundle_files), &now.files)).unwrap_or_default();
    let list = if changed.is_empty() { String::new() } else { format!(": {}", changed.join(", ")) };
    Err(Problem::failed(format!("bundle `{}` changed since it was validated{list}", b.rel_dir))
        .hint(format!("run `agentplane validate {}` again to start a new evidence chain", b.rel_dir))
        .into())
}

/// The chain's validation must have passed.
pub fn ensure_validated(b: &LoadedBundle, chain: &Chain) -> Result<()> {
    let v: Option<ValidationArtifact> = chain.load::<ValidationArtifact>(&b.out_dir)?;
    match v {
        Some(v) if v.valid => Ok(()),
        Some(_) => Err(Problem::failed(format!("bundle `{}` did not pass validation", b.rel_dir))
            .hint(format!("fix what `agentplane validate {}` reports, then validate again", b.rel_dir))
            .into()),
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
