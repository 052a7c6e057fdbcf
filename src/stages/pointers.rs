//! The lane pointers in `state/pointers/` (DESIGN §9): `current-staging`,
//! `current-prod`, `previous-good`. Each names a bundle by content, not just
//! by path: its path, its identity (`name@version`) and the bundle digest that
//! ran, so a rollback can refuse a bundle that was edited since it was good.
//!
//! On disk a pointer is one JSON object (`{"v": 1, "path", "bundle", "digest"}`);
//! a one-line path written by earlier versions still reads, with no identity
//! or digest (and then a rollback to it cannot be checked, so it is refused).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::evidence::chain::DirLock;
use crate::fsx;

pub const POINTERS_DIR: &str = "state/pointers";
pub const CURRENT_STAGING: &str = "current-staging";
pub const CURRENT_PROD: &str = "current-prod";
pub const PREVIOUS_GOOD: &str = "previous-good";
pub const ALL: [&str; 3] = [CURRENT_STAGING, CURRENT_PROD, PREVIOUS_GOOD];

/// A bundle, by path and by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The format version.
    #[serde(default = "one")]
    pub v: u32,
    /// The bundle directory, relative to the root.
    pub path: String,
    /// `name@version`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The bundle digest that ran (`sha256:…`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

fn one() -> u32 {
    1
}

impl Pointer {
    pub fn new(path: &str, bundle: &str, digest: &str) -> Pointer {
        Pointer { v: 1, path: path.into(), bundle: Some(bundle.into()), digest: Some(digest.into()) }
    }

    /// The same bundle content (path and digest).
    pub fn same_content(&self, other: &Pointer) -> bool {
        self.path == other.path && self.digest.is_some() && self.digest == other.digest
    }

    /// `bundles/x (x@0.1.0, sha256:0123456789ab…)`
    pub fn describe(&self) -> String {
        let mut s = self.path.clone();
        let short = self.digest.as_deref().map(|d| format!("{}…", &d[..19.min(d.len())]));
        match (&self.bundle, short) {
            (Some(b), Some(d)) => s.push_str(&format!(" ({b}, {d})")),
            (Some(b), None) => s.push_str(&format!(" ({b})")),
            (None, Some(d)) => s.push_str(&format!(" ({d})")),
            (None, None) => {}
        }
        s
    }
}

pub fn dir(root: &Path) -> PathBuf {
    root.join(POINTERS_DIR)
}

/// Read one pointer: `None` when unset (absent, or empty). One that cannot
/// be read (not a regular file, over 64 KiB, not UTF-8, not a pointer) is an
/// error naming it: taken as unset, it would show its lane as empty, and the
/// next promotion would drop the prod it held instead of keeping it as
/// previous-good.
pub fn get(root: &Path, name: &str) -> Result<Option<Pointer>> {
    let path = dir(root).join(name);
    let damaged = |why: String| -> anyhow::Error {
        crate::error::Problem::error(format!("lane pointer `{name}` cannot be read: {why}"))
            .hint(format!(
                "`{}` is agentplane's own file: restore it (`agentplane status` names what each lane held), or remove it and promote again",
                path.display()
            ))
            .into()
    };
    let bytes = match fsx::read_regular(&path, 64 * 1024) {
        Ok(b) => b,
        Err(e) if e.kind == Some(fsx::NotRegular::Missing) => return Ok(None),
        Err(e) => return Err(damaged(e.to_string())),
    };
    let text = String::from_utf8(bytes).map_err(|_| damaged("it is not UTF-8".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with('{') {
        return serde_json::from_str(text).map(Some).map_err(|e| damaged(format!("not a pointer: {e}")));
    }
    // The one-line form of earlier versions: a path only.
    Ok(Some(Pointer { v: 1, path: text.to_string(), bundle: None, digest: None }))
}

/// Write one pointer atomically; the caller holds the pointers lock.
pub fn put(root: &Path, name: &str, p: &Pointer) -> Result<()> {
    let mut bytes = serde_json::to_vec(p)?;
    bytes.push(b'\n');
    fsx::write_atomic(&dir(root).join(name), &bytes)
}

/// Remove one pointer; the caller holds the pointers lock.
pub fn clear(root: &Path, name: &str) -> Result<()> {
    match std::fs::remove_file(dir(root).join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot clear pointer `{name}`"))),
    }
}

/// Lock the pointers directory for a read-modify-write.
pub fn lock(root: &Path) -> Result<DirLock> {
    DirLock::acquire(&dir(root)).context("cannot lock the lane pointers")
}

/// Set one pointer under the lock.
pub fn set(root: &Path, name: &str, p: &Pointer) -> Result<()> {
    let _lock = lock(root)?;
    put(root, name, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_old_ones_still_read() {
        let d = tempfile::tempdir().unwrap();
        let p = Pointer::new("bundles/x", "x@0.2.0", "sha256:abc");
        set(d.path(), CURRENT_PROD, &p).unwrap();
        assert_eq!(get(d.path(), CURRENT_PROD).unwrap(), Some(p.clone()));
        std::fs::write(dir(d.path()).join(PREVIOUS_GOOD), "bundles/old\n").unwrap();
        let old = get(d.path(), PREVIOUS_GOOD).unwrap().unwrap();
        assert_eq!((old.path.as_str(), old.digest.as_deref()), ("bundles/old", None));
        assert!(!old.same_content(&old), "a pointer without a digest proves nothing");
        assert!(p.same_content(&p));
        assert_eq!(get(d.path(), CURRENT_STAGING).unwrap(), None);
    }

    #[test]
    fn a_damaged_pointer_is_an_error_naming_it_never_unset() {
        let d = tempfile::tempdir().unwrap();
        let p = dir(d.path()).join(CURRENT_PROD);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let why = |d: &Path| format!("{:#}", get(d, CURRENT_PROD).unwrap_err());
        assert!(why(d.path()).contains("lane pointer `current-prod` cannot be read") && why(d.path()).contains("FIFO"));
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "{\"path\": 7}").unwrap();
        assert!(why(d.path()).contains("not a pointer"), "{}", why(d.path()));
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert!(why(d.path()).contains("not UTF-8"));
        std::fs::write(&p, "\n").unwrap();
        assert_eq!(get(d.path(), CURRENT_PROD).unwrap(), None, "an empty pointer is unset");
    }
}
