//! Reading a bundle for the stages after `validate`.

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::digest::{self, BundleDigest};
use super::model::Bundle;
use crate::error::Problem;
use crate::fsx;

/// Largest `bundle.json` agentplane reads: bundles are small manifests.
pub const MAX_MANIFEST_BYTES: u64 = fsx::caps::DOCUMENT;

/// A parsed, typed bundle with its paths resolved against the root.
#[derive(Debug, Clone)]
pub struct LoadedBundle {
    /// Canonical project root.
    pub root: PathBuf,
    /// Canonical path of `bundle.json`.
    pub manifest: PathBuf,
    /// The directory holding `bundle.json`.
    pub dir: PathBuf,
    /// The bundle directory relative to the root, as recorded in evidence.
    pub rel_dir: String,
    pub bundle: Bundle,
    /// The manifest as JSON, for carrying extension blocks through.
    pub value: Value,
    /// Resolved `spec.artifacts.outDir`.
    pub out_dir: PathBuf,
    /// Resolved `spec.smoke.script` (a bundle path: see [`LoadedBundle::resolve_path`]).
    pub script: PathBuf,
}

impl LoadedBundle {
    /// The bundle digest of DESIGN §4.
    pub fn digest(&self) -> Result<BundleDigest> {
        digest::compute(&self.root, &self.dir, Some(&self.out_dir), std::slice::from_ref(&self.script))
    }

    /// Resolve a bundle path (`spec.smoke.script`, `spec.vm.kernel`,
    /// `spec.vm.modulePath`) the way `validate` does: `./x` or `../x` from the
    /// bundle directory; any other relative path from the root (upstream's
    /// form) or, when nothing exists there, from the bundle directory. Returns
    /// the path and whether it stays inside the root.
    pub fn resolve_path(&self, rel: &str) -> (PathBuf, bool) {
        fsx::resolve_bundle_path(&self.root, &self.dir, rel, &fsx::LstatCache::default())
    }

    pub fn identity(&self) -> String {
        self.bundle.identity()
    }
}

/// Find `bundle.json` for a CLI argument (a bundle directory or the manifest itself),
/// resolved against the root.
pub fn manifest_path(root: &Path, arg: &Path) -> Result<PathBuf> {
    let p = if arg.is_absolute() { arg.to_path_buf() } else { root.join(arg) };
    let manifest = if p.is_dir() { p.join("bundle.json") } else { p.clone() };
    if !manifest.is_file() {
        // A folder of bundles: this command runs one; name them.
        let found =
            if p.is_dir() { super::discover::expand(&p).ok().flatten().unwrap_or_default() } else { Vec::new() };
        if !found.is_empty() {
            let list: Vec<String> =
                found.iter().take(20).map(|m| fsx::rel_to(root, m.parent().unwrap_or(root))).collect();
            return Err(Problem::error(format!(
                "`{}` holds {} bundles; this command runs one: {}",
                arg.display(),
                found.len(),
                list.join(", ")
            ))
            .hint("pass one bundle directory")
            .into());
        }
        return Err(Problem::error(format!("no bundle at `{}`", manifest.display()))
            .hint("pass a bundle directory (holding bundle.json) or a bundle.json file")
            .into());
    }
    manifest.canonicalize().with_context(|| format!("cannot resolve `{}`", manifest.display()))
}

/// Read and parse a manifest file into JSON, with the file named on every error.
///
/// Only a regular file is read (never a FIFO, device or symlink: see
/// [`fsx::read_regular`]), at most [`MAX_MANIFEST_BYTES`], and the JSON is
/// parsed strictly ([`crate::json::parse_strict`]): a repeated key is an error
/// whose chain holds the [`crate::json::StrictJsonError`] with its pointer.
pub fn read_manifest(path: &Path) -> Result<(Vec<u8>, Value)> {
    read_manifest_via(None, path).map(|(b, v, _)| (b, v))
}

/// [`read_manifest`], also returning the file's mode bits (from the same
/// `fstat`), and opening the file through its directory when that is open
/// already ([`fsx::read_regular_meta_via`]).
pub fn read_manifest_via(dir: Option<&fsx::tree::OpenDir>, path: &Path) -> Result<(Vec<u8>, Value, u32)> {
    parse_manifest(path, fsx::read_regular_meta_via(dir, path, MAX_MANIFEST_BYTES)?)
}

/// [`read_manifest_via`] of a manifest opened already, `meta` its `fstat`
/// ([`crate::bundle::discover::Opened`]): judged and read as if opened here.
pub fn read_manifest_opened(
    path: &Path,
    file: std::fs::File,
    meta: std::fs::Metadata,
) -> Result<(Vec<u8>, Value, u32)> {
    parse_manifest(path, fsx::read_regular_opened(path, file, meta, MAX_MANIFEST_BYTES)?)
}

fn parse_manifest(path: &Path, (bytes, meta): (Vec<u8>, std::fs::Metadata)) -> Result<(Vec<u8>, Value, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => anyhow::bail!("`{}` is not UTF-8 (byte {})", path.display(), e.valid_up_to()),
    };
    let value = crate::json::parse_strict_str(text)
        .map_err(|e| anyhow::Error::new(e).context(format!("`{}` is not valid JSON", path.display())))?;
    Ok((bytes, value, meta.permissions().mode()))
}

/// Load a bundle that a later stage will act on. Anything wrong with it is a
/// `Problem` telling the user to run `agentplane validate`.
pub fn load_for_stage(root: &Path, arg: &Path) -> Result<LoadedBundle> {
    let manifest = manifest_path(root, arg)?;
    let (_, value) = read_manifest(&manifest).map_err(|e| {
        Problem::failed(format!("{e:#}")).hint(format!("run `agentplane validate {}` for every problem", arg.display()))
    })?;
    let bundle: Bundle = serde_json::from_value(value.clone()).map_err(|e| {
        Problem::failed(format!("`{}` does not match the bundle schema: {e}", manifest.display()))
            .hint(format!("run `agentplane validate {}` for every problem", arg.display()))
    })?;
    from_parts(root, manifest, bundle, value)
}

/// Resolve a typed bundle's paths: outDir against the root, the smoke script
/// by the bundle-path rule ([`fsx::resolve_bundle_path`]), as the gates do.
pub fn from_parts(root: &Path, manifest: PathBuf, bundle: Bundle, value: Value) -> Result<LoadedBundle> {
    let dir = manifest.parent().unwrap_or(root).to_path_buf();
    let (out_dir, out_ok) = fsx::resolve_in_root(root, &bundle.spec.artifacts.out_dir);
    if !out_ok {
        return Err(Problem::failed(format!(
            "`{}`: outDir `{}` is not a directory inside the root `{}`",
            manifest.display(),
            bundle.spec.artifacts.out_dir,
            root.display()
        ))
        .hint("set spec.artifacts.outDir to a folder under the project root, e.g. `artifacts/<name>`")
        .into());
    }
    if let Some(why) = super::gates::out_dir_misplaced(root, &dir, &out_dir) {
        return Err(Problem::failed(format!("`{}`: {why}", manifest.display()))
            .hint(super::gates::hint_for(super::gates::Gate::OutDirSafe))
            .into());
    }
    let (script, script_ok) =
        fsx::resolve_bundle_path(root, &dir, &bundle.spec.smoke.script, &fsx::LstatCache::default());
    if !script_ok {
        return Err(Problem::failed(format!(
            "`{}`: smoke script `{}` resolves outside the root",
            manifest.display(),
            bundle.spec.smoke.script
        ))
        .into());
    }
    let rel_dir = fsx::rel_to(root, &dir);
    Ok(LoadedBundle { root: root.to_path_buf(), manifest, dir, rel_dir, bundle, value, out_dir, script })
}
