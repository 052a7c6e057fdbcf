//! `validate`: every gate on every bundle found, and (unless `--check`) a
//! ValidationArtifact that starts each valid-enough bundle's evidence chain.

use crate::types::{ArtifactKind, Check, Gate};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::bundle::digest::Want;
use crate::bundle::discover;
use crate::bundle::gates::{self, Report};
use crate::bundle::schema::SchemaChecker;
use crate::error::Problem;
use crate::evidence::artifacts::{BundleMetadata, UpstreamCheck, ValidationArtifact, ValidationDetails};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::Signer;
use crate::fsx;

pub mod held;
pub mod ordered;
pub mod shared;

use held::HeldChecks;

/// One bundle's result, with where its artifact went.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// The evidence directory the ValidationArtifact was written to.
    pub written: Option<PathBuf>,
    /// Why no artifact was written (outDir unusable), when not `--check`.
    pub not_written: Option<String>,
}

/// What `validate` shows of one bundle: the report's visible part, kept
/// (in a [`crate::output::spool::Spool`]) until the output can be rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    pub path: String,
    pub bundle: Option<String>,
    pub valid: bool,
    pub digest: Option<String>,
    pub checks: HeldChecks,
    /// The resolved outDir for the cross-bundle check, when not done yet:
    /// an exact key (escaped bytes) and the root-relative form messages show.
    pub out_dir: Option<(String, String)>,
    /// Where the ValidationArtifact went, root-relative.
    pub written: Option<String>,
    /// Why no artifact was written (outDir unusable), when not `--check`.
    pub not_written: Option<String>,
    /// This bundle's part of the output, when its format was known ahead:
    /// rendered on the worker that checked the bundle, not serially after
    /// the last one. Dropped whenever the checks change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered>,
}

/// A bundle's part of the output, rendered ahead (see [`Shown::rendered`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rendered {
    /// Its element of the json document.
    Json(String),
    /// Its human lines, with colour or without.
    Human { color: bool, text: String },
}

impl Rendered {
    fn len(&self) -> usize {
        match self {
            Rendered::Json(t) | Rendered::Human { text: t, .. } => t.len(),
        }
    }
}

impl Shown {
    /// A report whose outDir still needs the cross-bundle check.
    pub fn unshared(root: &Path, r: Report) -> Shown {
        let out_dir = r
            .out_dir_resolved
            .as_ref()
            .map(|d| (fsx::escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(d.as_os_str())), fsx::rel_to(root, d)));
        Shown { out_dir, ..Shown::settled(root, Outcome { report: r, written: None, not_written: None }) }
    }

    /// An outcome after every check, its artifact written or not.
    pub fn settled(root: &Path, o: Outcome) -> Shown {
        let r = o.report;
        Shown {
            path: r.path,
            bundle: r.bundle,
            valid: r.valid,
            digest: r.digest,
            checks: HeldChecks::new(r.checks),
            out_dir: None,
            written: o.written.map(|w| fsx::rel_to(root, &w)),
            not_written: o.not_written,
            rendered: None,
        }
    }

    /// About the bytes this holds, for the spool's budget.
    pub fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Shown>()
            + self.path.len()
            + text(&self.bundle)
            + text(&self.digest)
            + self.checks.weight()
            + self.out_dir.as_ref().map_or(0, |(k, s)| k.len() + s.len())
            + text(&self.written)
            + text(&self.not_written)
            + self.rendered.as_ref().map_or(0, Rendered::len)
    }

    /// This bundle's outDir is also that of `others`: it fails `out-dir-safe`
    /// (the message of [`shared_out_dirs`]).
    pub fn share_out_dir(&mut self, shown_dir: &str, others: &[&str]) {
        self.checks.push(shared_out_dir_check(shown_dir, others));
        self.valid = false;
        self.rendered = None;
    }
}

fn shared_out_dir_check(shown_dir: &str, others: &[&str]) -> Check {
    Check::fail(
        Gate::OutDirSafe,
        format!("outDir `{shown_dir}` is also the outDir of {}", others.join(", ")),
        Some("/spec/artifacts/outDir"),
    )
}

/// Find every `bundle.json` under `paths` (resolved against `root`), sorted.
pub fn find(root: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    Ok(discover(root, paths, None)?.map(discover::Found::into_path).collect())
}

/// [`find`] as a stream, in the same order: the directories are walked as
/// the stream is read. A path that does not exist is an error before anything
/// is found. With `ahead`, the bundles found below an argument come open
/// ([`discover::Walk::opening`]): for a stream read as it is checked
/// ([`check_each`]), not for one collected first.
pub fn discover(
    root: &Path,
    paths: &[PathBuf],
    ahead: Option<discover::OpenAhead>,
) -> Result<discover::Merged<discover::Walk>> {
    let mut walks = Vec::with_capacity(paths.len());
    for p in paths {
        let abs = if p.is_absolute() { p.clone() } else { root.join(p) };
        let walk = match &ahead {
            Some(ahead) => discover::Walk::opening(&abs, ahead.clone()),
            None => discover::Walk::new(&abs),
        };
        match walk {
            Some(walk) => walks.push(walk),
            None => {
                return Err(Problem::error(format!("`{}` does not exist", p.display()))
                    .hint("pass a bundle directory, a bundle.json, or a folder of bundles")
                    .into());
            }
        }
    }
    Ok(discover::Merged::new(walks))
}

/// Bundles checked at once beyond the one handed over: bounds the reports in memory.
pub const WINDOW: usize = 256;

/// Run the gates on every manifest, on all cores, and hand each report to
/// `sink` in the manifests' order. At most [`WINDOW`] reports exist at a
/// time. The cross-bundle check (a shared outDir) is the caller's: see
/// [`shared_out_dirs`] and [`shared`].
/// `want`: how much of each bundle digest to compute (to write artifacts or show it).
pub fn check_each(
    root: &Path,
    manifests: impl Iterator<Item = discover::Found> + Send,
    want: Want,
    sink: impl FnMut(Report) -> Result<()>,
) -> Result<()> {
    check_each_in(root, manifests, want, WINDOW, |r| r, sink)
}

/// [`check_each`] with its window given (tests use small ones), and `finish`
/// applied to each report on the worker that made it (work that would
/// otherwise run serially in `sink`).
pub(crate) fn check_each_in<T: Send>(
    root: &Path,
    manifests: impl Iterator<Item = discover::Found> + Send,
    want: Want,
    window: usize,
    finish: impl Fn(Report) -> T + Sync,
    sink: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let checker = &SchemaChecker::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let check = |cache: &fsx::LstatCache, m: discover::Found| {
        finish(gates::validate_opened(root, &m.manifest, m.opened, checker, want, cache))
    };
    ordered::map_in_order(manifests, threads, window, fsx::LstatCache::default, check, sink).map_err(|e| match e {
        ordered::Stopped::Sink(e) => e,
        ordered::Stopped::Panicked(at) => {
            anyhow::anyhow!("a validation worker failed on bundle {}; {at} bundles were checked", at + 1)
        }
    })
}

/// Run the gates on every manifest, on all cores, including the
/// cross-bundle check: every report in memory, for a few bundles (`up`) or
/// to write their artifacts.
pub fn check_all(root: &Path, manifests: &[PathBuf], want: Want) -> Result<Vec<Report>> {
    let mut reports = Vec::with_capacity(manifests.len());
    check_each_in(root, manifests.iter().cloned().map(discover::Found::path), want, WINDOW, Report::slimmed, |r| {
        reports.push(r);
        Ok(())
    })?;
    shared_out_dirs(root, &mut reports);
    Ok(reports)
}

/// Two bundles with one outDir would archive each other's evidence and mix
/// their chains: each fails `out-dir-safe`, naming the other.
fn shared_out_dirs(root: &Path, reports: &mut [Report]) {
    let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<usize>> = Default::default();
    for (i, r) in reports.iter().enumerate() {
        if let Some(d) = &r.out_dir_resolved {
            by_dir.entry(d.clone()).or_default().push(i);
        }
    }
    for (dir, idx) in by_dir.into_iter().filter(|(_, v)| v.len() > 1) {
        for &i in &idx {
            let others: Vec<String> = idx.iter().filter(|&&j| j != i).map(|&j| reports[j].path.clone()).collect();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            let r = &mut reports[i];
            r.checks.push(shared_out_dir_check(&fsx::rel_to(root, &dir), &others));
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
        let meta = report.metadata();
        let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(|v| v.as_str()).map(str::to_string);
        let artifact = ValidationArtifact {
            kind: ArtifactKind::ValidationArtifact,
            bundle: bundle.clone(),
            bundle_path: Some(fsx::rel_to(root, report.manifest.parent().unwrap_or(root))),
            captured_at: fsx::now_rfc3339(),
            valid: report.valid,
            lane: report.lane(),
            governance_context: report.governance_context().cloned(),
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
            bundle_extensions: report.extensions(),
        };
        let mut w = ChainWriter::start(&dir, signer, &bundle, &digest)?;
        w.write_entry(&artifact, &details, &[])?;
        out.push(Outcome { report, written: Some(dir), not_written: None });
    }
    Ok(out)
}
