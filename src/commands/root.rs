//! Finding the project root when `--root` is not given (DESIGN §3): the
//! nearest ancestor of the command's path argument (a bundle, an evidence
//! directory) or of the current directory that holds `bundles/`, `fleet/` or
//! `.agentplane/` — the way git and cargo find theirs. Nothing is ever written
//! into an unrelated current directory because of where agentplane was started.

use std::path::{Path, PathBuf};

/// What marks a project root.
pub const MARKERS: &[&str] = &["bundles", "fleet", ".agentplane"];

/// The nearest ancestor of `start` (itself included when it is a directory)
/// holding one of [`MARKERS`].
pub fn discover(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    let first = if start.is_dir() { start.as_path() } else { start.parent()? };
    first.ancestors().find(|d| MARKERS.iter().any(|m| d.join(m).is_dir())).map(Path::to_path_buf)
}

/// The root for a command: `--root` when given; else discovered from the
/// command's path argument (made absolute against `cwd`), then from `cwd`;
/// else `cwd` itself.
pub fn choose(flag: Option<&Path>, anchor: Option<&Path>, cwd: &Path) -> PathBuf {
    if let Some(r) = flag {
        return r.to_path_buf();
    }
    anchor
        .map(|a| if a.is_absolute() { a.to_path_buf() } else { cwd.join(a) })
        .and_then(|a| discover(&a))
        .or_else(|| discover(cwd))
        .unwrap_or_else(|| cwd.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_marked_ancestor_wins() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("repo/bundles/x")).unwrap();
        std::fs::create_dir_all(root.join("repo/docs/deep")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        let repo = root.join("repo");
        assert_eq!(discover(&repo.join("bundles/x")), Some(repo.clone()));
        assert_eq!(choose(None, Some(Path::new("bundles/x")), &repo), repo);
        assert_eq!(choose(None, Some(Path::new("x")), &repo.join("bundles")), repo);
        assert_eq!(choose(None, None, &repo.join("docs/deep")), repo);
        // From outside, the bundle path decides.
        assert_eq!(choose(None, Some(&repo.join("bundles/x")), &root.join("elsewhere")), repo);
        // Nothing marked anywhere: the current directory.
        assert_eq!(choose(None, Some(Path::new("nope")), &root.join("elsewhere")), root.join("elsewhere"));
        // --root always wins.
        assert_eq!(choose(Some(Path::new("/given")), Some(Path::new("bundles/x")), &repo), PathBuf::from("/given"));
    }
}
