//! Turning `validate PATH...` arguments into `bundle.json` files.

use anyhow::Result;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Directories never searched for bundles: VCS metadata, build output, and
/// evidence directories (their `runs/` archives hold copies of artifacts, not bundles).
fn skipped(dir: &Path, name: &OsStr) -> bool {
    matches!(name.as_bytes(), b".git" | b"target" | b"node_modules" | b"artifacts" | b".agentplane")
        || dir.join("evidence.jsonl").exists()
}

/// Whether something that is not a directory is at `p` (a `bundle.json` that
/// is a FIFO, device or link is still found, so the parse check reports it
/// rather than the bundle silently vanishing; it is never opened here).
fn present(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir())
}

/// Expand one argument: a `bundle.json` file, a bundle directory, or a tree.
/// Returns `None` when the path does not exist. The result is sorted.
///
/// The tree's top-level directories are visited on all cores. A directory is
/// never opened just to be classified: one `lstat` of its `bundle.json`.
pub fn expand(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    if !path.is_dir() {
        return Ok(present(path).then(|| vec![path.to_path_buf()]));
    }
    let direct = path.join("bundle.json");
    if present(&direct) {
        return Ok(Some(vec![direct]));
    }
    let top = subdirs(path);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(top.len().max(1));
    let per = top.len().div_ceil(threads).max(1);
    let mut found: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = top
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().flat_map(|(d, n)| visit(d, n)).collect::<Vec<_>>()))
            .collect();
        // A visit only reads the file system; a panic there is a bug worth surfacing.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    found.sort();
    Ok(Some(found))
}

/// One directory below the argument: a bundle when it holds `bundle.json`
/// (checked before the skips, which a bundle's author controls: its name, an
/// `evidence.jsonl` beside the manifest; no bundle hides from CI that way),
/// else its subdirectories, unless it is one never searched.
fn visit(dir: &Path, name: &OsStr) -> Vec<PathBuf> {
    let manifest = dir.join("bundle.json");
    if name != ".git" && present(&manifest) {
        return vec![manifest];
    }
    if skipped(dir, name) {
        return Vec::new();
    }
    subdirs(dir).iter().flat_map(|(d, n)| visit(d, n)).collect()
}

/// The real subdirectories of `dir` (symlinks are not followed), with their
/// names; an unreadable directory has none: unreadable corners of a tree are
/// not bundles.
fn subdirs(dir: &Path) -> Vec<(PathBuf, OsString)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.path(), e.file_name()))
        .collect()
}
