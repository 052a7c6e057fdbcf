//! `validate`: every gate on every bundle found, and (unless `--check`) a
//! ValidationArtifact that starts each valid-enough bundle's evidence chain.

use crate::types::ArtifactKind;
use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::bundle::discover;
use crate::bundle::gates::{self, Report};
use crate::bundle::schema::SchemaChecker;
use crate::error::Problem;
use crate::evidence::artifacts::{BundleMetadata, UpstreamCheck, ValidationArtifact, ValidationDetails};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::Signer;
use crate::fsx;

/// One bundle's result, with where its artifact went.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// The evidence directory the ValidationArtifact was written to.
    pub written: Option<PathBuf>,
    /// Why no artifact was written (outDir unusable), when not `--check`.
    pub not_written: Option<String>,
}

/// Find every `bundle.json` under `paths` (resolved against `root`).
pub fn find(root: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut manifests = Vec::new();
    for p in paths {
        let abs = if p.is_absolute() { p.clone() } else { root.join(p) };
        match discover::expand(&abs)? {
            Some(found) => manifests.extend(found),
            None => {
                return Err(Problem::error(format!("`{}` does not exist", p.display()))
                    .hint("pass a bundle directory, a bundle.json, or a folder of bundles")
                    .into());
            }
        }
    }
    manifests.sort();
    manifests.dedup();
    Ok(manifests)
}

/// Run the gates on every manifest, on all cores.
/// `with_digest`: also compute each bundle digest (needed to write artifacts or show it).
pub fn check_all(root: &Path, manifests: &[PathBuf], with_digest: bool) -> Result<Vec<Report>> {
    let checker = SchemaChecker::new()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(manifests.len().max(1));
    let per = manifests.len().div_ceil(threads).max(1);
    let reports = std::thread::scope(|s| {
        let handles: Vec<_> = manifests
            .chunks(per)
            .map(|chunk| {
                let checker = &checker;
                s.spawn(move || {
                    let cache = crate::fsx::LstatCache::default();
                    chunk
                        .iter()
                        .map(|m| gates::validate_cached(root, m, checker, with_digest, &cache))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect::<Vec<_>>()
    });
    if reports.len() != manifests.len() {
        anyhow::bail!("a validation worker failed; {} of {} bundles were checked", reports.len(), manifests.len());
    }
    let mut reports = reports;
    shared_out_dirs(root, &mut reports);
    Ok(reports)
}

/// Two bundles with one outDir would archive each other's evidence and mix
/// their chains: each fails `out-dir-safe`, naming the other.
fn shared_out_dirs(root: &Path, reports: &mut [Report]) {
    use crate::types::{Check, Gate};
    let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<usize>> = Default::default();
    for (i, r) in reports.iter().enumerate() {
        if let Some(d) = &r.out_dir_resolved {
            by_dir.entry(d.clone()).or_default().push(i);
        }
    }
    for (dir, idx) in by_dir.into_iter().filter(|(_, v)| v.len() > 1) {
        for &i in &idx {
            let others: Vec<String> = idx.iter().filter(|&&j| j != i).map(|&j| reports[j].path.clone()).collect();
            let r = &mut reports[i];
            r.checks.push(Check::fail(
                Gate::OutDirSafe,
                format!("outDir `{}` is also the outDir of {}", fsx::rel_to(root, &dir), others.join(", ")),
                Some("/spec/artifacts/outDir"),
            ));
            r.valid = false;
            r.out_dir = None;
        }
    }
}

/// Write each report's ValidationArtifact, starting a new chain per bundle.
pub fn write_all(root: &Path, reports: Vec<Report>, signer: &Signer) -> Result<Vec<Outcome>> {
    let mut out = Vec::with_capacity(reports.len());
    for report in reports {
        let (Some(dir), Some(digest)) = (report.out_dir.clone(), report.digest.clone()) else {
            out.push(Outcome { report, written: None, not_written: Some("the bundle names no usable outDir".into()) });
            continue;
        };
        let bundle = report.bundle.clone().unwrap_or_else(|| "unknown@unknown".into());
        let meta = report.metadata.as_ref();
        let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(|v| v.as_str()).map(str::to_string);
        let artifact = ValidationArtifact {
            kind: ArtifactKind::ValidationArtifact,
            bundle: bundle.clone(),
            bundle_path: Some(fsx::rel_to(root, report.manifest.parent().unwrap_or(root))),
            captured_at: fsx::now_rfc3339(),
            valid: report.valid,
            lane: report.lane,
            governance_context: report.governance_context.clone(),
            checks: report.checks.iter().map(UpstreamCheck::from).collect(),
            bundle_metadata: Some(BundleMetadata {
                name: field("name"),
                version: field("version"),
                created_at: field("createdAt"),
            }),
        };
        let details = ValidationDetails {
            bundle_digest: digest.clone(),
            bundle_files: super::to_bundle_files(&report.digest_files),
            checks: report.checks.clone(),
            bundle_extensions: report.extensions.clone(),
        };
        let mut w = ChainWriter::start(&dir, signer, &bundle, &digest)?;
        w.write_entry(&artifact, &details, &[])?;
        out.push(Outcome { report, written: Some(dir), not_written: None });
    }
    Ok(out)
}
