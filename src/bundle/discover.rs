//! Turning `validate PATH...` arguments into `bundle.json` files.

use anyhow::Result;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Directories never searched for bundles: VCS metadata, build output, and
/// evidence directories (their `runs/` archives hold copies of artifacts, not bundles).
fn skipped(entry: &walkdir::DirEntry) -> bool {
    if entry.depth() == 0 {
        return false;
    }
    let name = entry.file_name().to_string_lossy();
    matches!(name.as_ref(), ".git" | "target" | "node_modules" | "artifacts" | ".agentplane")
        || entry.path().join("evidence.jsonl").exists()
}

/// Whether something that is not a directory is at `p` (a `bundle.json` that
/// is a FIFO, device or link is still found, so the parse check reports it
/// rather than the bundle silently vanishing; it is never opened here).
fn present(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir())
}

/// Expand one argument: a `bundle.json` file, a bundle directory, or a tree.
/// Returns `None` when the path does not exist.
pub fn expand(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    if !path.is_dir() {
        return Ok(present(path).then(|| vec![path.to_path_buf()]));
    }
    let direct = path.join("bundle.json");
    if present(&direct) {
        return Ok(Some(vec![direct]));
    }
    let mut found = Vec::new();
    let mut walk = WalkDir::new(path).follow_links(false).sort_by_file_name().into_iter();
    while let Some(entry) = walk.next() {
        let Ok(entry) = entry else { continue }; // unreadable corners of a tree are not bundles
        if !entry.file_type().is_dir() {
            continue;
        }
        // A directory holding bundle.json is a bundle: one stat instead of
        // listing it, and no descent into its contents. This comes before the
        // skips, which a bundle's author controls (its name, an
        // evidence.jsonl beside the manifest): no bundle hides from CI that way.
        let manifest = entry.path().join("bundle.json");
        if entry.depth() > 0 && entry.file_name() != ".git" && present(&manifest) {
            found.push(manifest);
            walk.skip_current_dir();
            continue;
        }
        if skipped(&entry) {
            walk.skip_current_dir();
        }
    }
    Ok(Some(found))
}
