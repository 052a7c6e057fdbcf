//! The bundle digest: what "this exact bundle" means to every later stage.
//!
//! sha256 over a versioned, unambiguous encoding of the bundle directory's
//! files in sorted order (path, mode class, length, contents), excluding the
//! outDir when it lies inside the directory, plus the smoke script when it
//! lives outside the directory. Modes are reduced to git's two classes
//! (executable or not) so that a clone under another umask digests the same.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// One file that went into the digest, with its own sha256 (to name changed files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestEntry {
    pub path: String,
    pub mode: &'static str,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct BundleDigest {
    /// `sha256:<hex>`
    pub digest: String,
    pub files: Vec<DigestEntry>,
}

/// Compute the digest of the bundle in `dir`. `root` is the canonical root;
/// `exclude` is the canonical outDir; `extra` are files outside `dir` that the
/// bundle depends on (the smoke script), named root-relative.
pub fn compute(root: &Path, dir: &Path, exclude: Option<&Path>, extra: &[PathBuf]) -> Result<BundleDigest> {
    compute_with(root, dir, exclude, extra, None)
}

/// [`compute`], reusing bytes already read (e.g. the manifest) instead of reading them again.
pub fn compute_with(
    root: &Path,
    dir: &Path,
    exclude: Option<&Path>,
    extra: &[PathBuf],
    known: Option<(&Path, &[u8])>,
) -> Result<BundleDigest> {
    let mut files: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read bundle directory `{}`", dir.display()))?;
        let path = entry.path();
        if let Some(ex) = exclude
            && path.starts_with(ex)
        {
            continue;
        }
        if entry.file_type().is_dir() {
            continue;
        }
        // The entry's type comes from the directory listing: no extra stat.
        files.push((crate::fsx::rel_to(root, path), path.to_path_buf(), entry.file_type().is_symlink()));
    }
    for p in extra {
        if !p.starts_with(dir) && p.is_file() {
            files.push((crate::fsx::rel_to(root, p), p.clone(), false));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);

    let mut total = Sha256::new();
    total.update(b"agentplane-bundle-digest/v1\n");
    let mut entries = Vec::with_capacity(files.len());
    for (name, path, is_link) in files {
        let (mode, content) = if is_link {
            let target = fs::read_link(&path)?;
            ("link", target.to_string_lossy().into_owned().into_bytes())
        } else {
            let mut f = fs::File::open(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
            let meta = f.metadata().with_context(|| format!("cannot stat `{}`", path.display()))?;
            let mode = if meta.permissions().mode() & 0o111 != 0 { "755" } else { "644" };
            let content = match known {
                Some((p, bytes)) if p == path => bytes.to_vec(),
                _ => {
                    let mut buf = Vec::with_capacity(meta.len() as usize);
                    f.read_to_end(&mut buf).with_context(|| format!("cannot read `{}`", path.display()))?;
                    buf
                }
            };
            (mode, content)
        };
        total.update(name.as_bytes());
        total.update([0]);
        total.update(mode.as_bytes());
        total.update([0]);
        total.update((content.len() as u64).to_string().as_bytes());
        total.update([0]);
        total.update(&content);
        entries.push(DigestEntry { path: name, mode, sha256: crate::fsx::sha256_hex(&content) });
    }
    Ok(BundleDigest { digest: format!("sha256:{}", hex::encode(total.finalize())), files: entries })
}

/// Files that differ between two digests' file lists: added, removed or changed.
pub fn changed_files(recorded: &[DigestEntry], now: &[DigestEntry]) -> Vec<String> {
    let mut out = Vec::new();
    for r in recorded {
        match now.iter().find(|n| n.path == r.path) {
            None => out.push(format!("{} (removed)", r.path)),
            Some(n) if n != r => out.push(format!("{} (changed)", r.path)),
            _ => {}
        }
    }
    for n in now {
        if !recorded.iter().any(|r| r.path == n.path) {
            out.push(format!("{} (added)", n.path));
        }
    }
    out
}
