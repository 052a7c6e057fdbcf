//! The bundle digest: what "this exact bundle" means to every later stage.
//!
//! sha256 over a versioned, unambiguous encoding of the bundle directory's
//! files in sorted order (path, mode class, length, contents), excluding the
//! outDir when it lies inside the directory, plus the smoke script when it
//! lives outside the directory. Modes are reduced to git's two classes
//! (executable or not) so that a clone under another umask digests the same.
//!
//! Paths enter the digest as their raw bytes (a file name need not be UTF-8),
//! so two names that only differ in invalid bytes are two files; they are
//! shown escaped ([`crate::fsx::escape_bytes`]). Only regular files and
//! symlinks that stay inside the bundle may be in it: a FIFO, socket or device
//! anywhere, or a link leading out, is a [`BundleFilesError`] naming every one,
//! never a hang. Contents are hashed as streams, never held whole.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fsx;
use crate::fsx::tree::Kind;

/// How much of the bundle digest a caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Only the check of what lives in the bundle: no contents are read.
    Check,
    /// The digest (what `validate --check` shows in json).
    Digest,
    /// The digest and each file's own sha256 (what a ValidationArtifact
    /// records, to name the files that changed later).
    DigestAndFiles,
}

/// One file that went into the digest, with its own sha256 (to name changed files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestEntry {
    /// Root-relative path, escaped for display ([`fsx::escape_bytes`]).
    pub path: String,
    pub mode: &'static str,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct BundleDigest {
    /// `sha256:<hex>`
    pub digest: String,
    /// Each file's own digest; empty unless [`Want::DigestAndFiles`].
    pub files: Vec<DigestEntry>,
}

/// A file in a bundle that may not be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    /// Root-relative path, escaped for display.
    pub path: String,
    /// What is wrong, e.g. "is a FIFO (only regular files are read)".
    pub why: String,
    pub kind: BadKind,
}

/// What kind of file a bundle may not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    /// A FIFO, socket, device, or a file that cannot be opened.
    NotRegular,
    /// A symlink that leads out of the bundle (a path problem, not a content one).
    Escapes,
    /// The file that takes the bundle's files past [`fsx::caps::BUNDLE`].
    TooLarge,
}

/// What the files of one bundle may hold in all, spent file by file in the
/// digest's order. Every stage digests a bundle whole (validate, and run
/// before it starts), so a sparse terabyte, free to make, would hold each of
/// them for as long as hashing it takes; past the cap the bundle is refused
/// instead, naming the file that crossed it, and no file after it is read.
#[derive(Debug)]
struct Budget {
    left: u64,
    spent: bool,
}

impl Budget {
    fn new() -> Budget {
        Budget { left: fsx::caps::BUNDLE, spent: false }
    }

    /// Spend `len` bytes on the file `name`: whether to read it. The file
    /// that crosses the cap is added to `bad`; once it has, no file after it
    /// is read or named.
    fn admit(&mut self, name: &[u8], len: u64, bad: &mut Vec<BadFile>) -> bool {
        if self.spent {
            return false;
        }
        match self.left.checked_sub(len) {
            Some(left) => {
                self.left = left;
                true
            }
            None => {
                self.spent = true;
                bad.push(BadFile {
                    path: fsx::escape_bytes(name),
                    why: format!(
                        "is {len} bytes, which takes the bundle's files past their {}-byte limit",
                        fsx::caps::BUNDLE
                    ),
                    kind: BadKind::TooLarge,
                });
                false
            }
        }
    }
}

/// Every file that kept the bundle from being digested.
#[derive(Debug, Clone)]
pub struct BundleFilesError {
    pub files: Vec<BadFile>,
}

impl std::fmt::Display for BundleFilesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bundle holds files agentplane will not read: ")?;
        for (i, b) in self.files.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "`{}` {}", b.path, b.why)?;
        }
        Ok(())
    }
}

impl std::error::Error for BundleFilesError {}

/// Compute the digest of the bundle in `dir`. `root` is the canonical root;
/// `exclude` is the canonical outDir; `extra` are files outside `dir` that the
/// bundle depends on (the smoke script), named root-relative.
pub fn compute(root: &Path, dir: &Path, exclude: Option<&Path>, extra: &[PathBuf]) -> Result<BundleDigest> {
    compute_scanned(root, scan(root, dir, exclude)?, extra, None, Want::DigestAndFiles)
}

/// Only the check of what lives in the bundle (no contents are read): the
/// [`BundleFilesError`] that [`compute`] would return, if any.
pub fn check_files(root: &Path, dir: &Path, exclude: Option<&Path>) -> Result<()> {
    check_scan(root, scan(root, dir, exclude)?, &[], None)
}

/// [`check_files`] for a listing already taken, with the files outside it
/// that [`compute_scanned`] would digest (`extra`) and the one whose bytes
/// are known: the same verdict as [`compute_scanned`], sizes taken from a
/// `stat` of each file instead of reading it.
pub fn check_scan(root: &Path, scan: Scan, extra: &[PathBuf], known: Option<Known>) -> Result<()> {
    let (files, mut bad, dir) = list(root, scan, extra);
    let mut budget = Budget::new();
    for (name, path, is_link) in &files {
        if *is_link {
            continue;
        }
        let len = match known.filter(|(p, _, _)| fsx::same_path(p, path)) {
            Some((_, bytes, _)) => Some(bytes.len() as u64),
            None => size_of(&dir, path),
        };
        // A file gone since the listing has no size here; digesting it would
        // fail as it would have, and the check leaves that to the digest.
        if let Some(len) = len {
            budget.admit(name, len, &mut bad);
        }
    }
    if bad.is_empty() { Ok(()) } else { Err(BundleFilesError { files: bad }.into()) }
}

/// The size of the file `path` (not following a link), through the listed
/// directory when it lies directly in it (one name to resolve, not the path).
fn size_of(dir: &fsx::tree::OpenDir, path: &Path) -> Option<u64> {
    match dir.fd().ok().zip(dir.name_of(path)) {
        Some((fd, name)) => {
            rustix::fs::statat(fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok().map(|st| st.st_size as u64)
        }
        None => fs::symlink_metadata(path).ok().map(|m| m.len()),
    }
}

/// A file to digest: raw root-relative name, path, is a symlink.
pub type Listed = (Vec<u8>, PathBuf, bool);

/// What lives in a bundle directory (not in its outDir), listed once: the
/// files to digest, in name order, and those that may not be there.
#[derive(Debug)]
pub struct Scan {
    /// The bundle directory listed, still open: [`compute_scanned`] opens
    /// the files directly in it by name.
    pub dir: fsx::tree::OpenDir,
    pub files: Vec<Listed>,
    pub bad: Vec<BadFile>,
}

/// The files [`compute`] digests, in its order, without reading their
/// contents: what a runner stages so that the staged copy digests the same.
pub fn files(root: &Path, dir: &Path, exclude: Option<&Path>, extra: &[PathBuf]) -> Result<Vec<Listed>> {
    let (files, bad, _) = list(root, scan(root, dir, exclude)?, extra);
    if bad.is_empty() { Ok(files) } else { Err(BundleFilesError { files: bad }.into()) }
}

/// The scan plus the `extra` files outside its directory, sorted by name, each once.
fn list(root: &Path, scan: Scan, extra: &[PathBuf]) -> (Vec<Listed>, Vec<BadFile>, fsx::tree::OpenDir) {
    let Scan { dir, mut files, bad } = scan;
    for p in extra {
        if !p.starts_with(dir.path()) && fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) {
            files.push((name_of(root, p), p.clone(), false));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0); // the same bytes: the same file
    (files, bad, dir)
}

fn name_of(root: &Path, p: &Path) -> Vec<u8> {
    match fsx::rel_bytes(root, p) {
        Some(rest) => rest.to_vec(),
        None => p.strip_prefix(root).unwrap_or(p).as_os_str().as_bytes().to_vec(),
    }
}

/// Walk `dir` (not into `exclude`): the files to digest, and those that may not be there.
pub fn scan(root: &Path, dir: &Path, exclude: Option<&Path>) -> Result<Scan> {
    scan_from(root, dir, None, exclude)
}

/// [`scan`], listing `open` when the caller has `dir` open already (else it
/// is opened here); either way the scan keeps it open for [`compute_scanned`].
pub fn scan_from(root: &Path, dir: &Path, open: Option<fsx::tree::OpenDir>, exclude: Option<&Path>) -> Result<Scan> {
    let mut files = Vec::new();
    let mut bad = Vec::new();
    let links = fsx::LstatCache::default();
    // Everything the walk finds is under `dir`, so it can be under `exclude`
    // only when one of the two holds the other: asked once, not per file.
    let (skip_all, ask_each) = exclude.map_or((false, false), |ex| (fsx::is_under(dir, ex), fsx::is_under(ex, dir)));
    let skip = |p: &Path| skip_all || (ask_each && exclude.is_some_and(|ex| fsx::is_under(p, ex)));
    let mut top = match open {
        Some(top) => {
            debug_assert_eq!(top.path(), dir, "the directory open is the one to scan");
            top
        }
        None => fsx::tree::OpenDir::open(dir)
            .with_context(|| format!("cannot read bundle directory `{}`", dir.display()))?,
    };
    // The type comes from the directory listing: no stat per entry.
    fsx::tree::walk_from(&mut top, &skip, |path, kind| {
        let name = name_of(root, path);
        match kind {
            Kind::Symlink => {
                // A link is digested as its target text; it must stay in the bundle.
                let rel = path.strip_prefix(dir).unwrap_or(path);
                let (resolved, inside) = fsx::resolve_path_in_root(dir, rel, &links);
                if !inside {
                    bad.push(BadFile {
                        path: fsx::escape_bytes(&name),
                        why: format!(
                            "is a symbolic link leading out of the bundle (to `{}`)",
                            fsx::escape_bytes(resolved.as_os_str().as_bytes())
                        ),
                        kind: BadKind::Escapes,
                    });
                    return;
                }
                files.push((name, path.to_path_buf(), true));
            }
            Kind::File => files.push((name, path.to_path_buf(), false)),
            Kind::Other | Kind::Dir => {
                // Named by an `lstat`, never opened: opening a device can
                // act (a tape rewinds, a watchdog starts; `/dev/tty` without
                // a terminal fails as if it were a socket).
                let kind = fs::symlink_metadata(path).ok().and_then(|m| fsx::NotRegular::of(m.file_type()));
                let why = kind.map_or_else(|| "is not a regular file".to_string(), |k| k.to_string());
                bad.push(BadFile { path: fsx::escape_bytes(&name), why, kind: BadKind::NotRegular });
            }
        }
    })
    .with_context(|| format!("cannot read bundle directory `{}`", dir.display()))?;
    Ok(Scan { dir: top, files, bad })
}

/// Bytes already read (e.g. the manifest), with the file's mode bits, so
/// that [`compute_scanned`] need not read or stat it again.
pub type Known<'a> = (&'a Path, &'a [u8], u32);

/// [`compute`] over a listing already taken (see [`scan`]), reusing bytes
/// already read instead of reading them again. Each file's own sha256 is
/// computed only for [`Want::DigestAndFiles`].
pub fn compute_scanned(
    root: &Path,
    scan: Scan,
    extra: &[PathBuf],
    known: Option<Known>,
    want: Want,
) -> Result<BundleDigest> {
    // Each file's own sha256, when asked for.
    let per_file = want == Want::DigestAndFiles;
    let own_of = |bytes: &[u8]| per_file.then(|| fsx::sha256_hex(bytes));
    let (files, mut bad, dir) = list(root, scan, extra);

    let mut budget = Budget::new();
    let mut total = Sha256::new();
    total.update(b"agentplane-bundle-digest/v1\n");
    let mut entries = Vec::with_capacity(files.len());
    for (name, path, is_link) in files {
        let header = |total: &mut Sha256, mode: &str, len: u64| {
            total.update(&name);
            total.update([0]);
            total.update(mode.as_bytes());
            total.update([0]);
            total.update(len.to_string().as_bytes());
            total.update([0]);
        };
        let (mode, sha256) = if is_link {
            let target = fs::read_link(&path).with_context(|| format!("cannot read link `{}`", path.display()))?;
            let content = target.as_os_str().as_bytes();
            header(&mut total, "link", content.len() as u64);
            total.update(content);
            ("link", own_of(content))
        } else if let Some((_, bytes, bits)) = known.filter(|(p, _, _)| fsx::same_path(p, &path)) {
            if !budget.admit(&name, bytes.len() as u64, &mut bad) {
                continue;
            }
            let mode = if bits & 0o111 != 0 { "755" } else { "644" };
            header(&mut total, mode, bytes.len() as u64);
            total.update(bytes);
            (mode, own_of(bytes))
        } else {
            let (mut f, meta) = match fsx::open_regular_meta_via(Some(&dir), &path, None) {
                Ok(fm) => fm,
                Err(e) => {
                    let why = e.kind.map_or_else(|| format!("cannot be read: {e}"), |k| k.to_string());
                    bad.push(BadFile { path: fsx::escape_bytes(&name), why, kind: BadKind::NotRegular });
                    continue;
                }
            };
            if !budget.admit(&name, meta.len(), &mut bad) {
                continue;
            }
            let mode = if meta.permissions().mode() & 0o111 != 0 { "755" } else { "644" };
            header(&mut total, mode, meta.len());
            // Stream exactly the length the header promised: a file that
            // shrinks while it is read is an error, one that grows is cut.
            let mut own = Sha256::new();
            let mut buf = vec![0u8; (meta.len() as usize).clamp(1, 64 * 1024)];
            let mut left = meta.len();
            let mut reader = (&mut f).take(left);
            while left > 0 {
                let n = reader.read(&mut buf).with_context(|| format!("cannot read `{}`", path.display()))?;
                if n == 0 {
                    anyhow::bail!("`{}` changed while it was being digested", path.display());
                }
                total.update(&buf[..n]);
                if per_file {
                    own.update(&buf[..n]);
                }
                left -= n as u64;
            }
            (mode, per_file.then(|| fsx::hex_lower(&own.finalize())))
        };
        if let Some(sha256) = sha256 {
            entries.push(DigestEntry { path: fsx::escape_bytes(&name), mode, sha256 });
        }
    }
    if !bad.is_empty() {
        return Err(BundleFilesError { files: bad }.into());
    }
    Ok(BundleDigest { digest: format!("sha256:{}", fsx::hex_lower(&total.finalize())), files: entries })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn names_are_raw_bytes_and_never_merged() {
        let (_d, root, dir) = bundle_dir();
        // Both names turn into "f\u{FFFD}" under a lossy conversion.
        fs::write(dir.join(OsStr::from_bytes(b"f\xff")), "one").unwrap();
        fs::write(dir.join(OsStr::from_bytes(b"f\xfe")), "two").unwrap();
        let d1 = compute(&root, &dir, None, &[]).unwrap();
        let names: Vec<&str> = d1.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["b/f\\xfe", "b/f\\xff"]);
        // Each file is in the digest: changing either changes it.
        fs::write(dir.join(OsStr::from_bytes(b"f\xfe")), "TWO").unwrap();
        let d2 = compute(&root, &dir, None, &[]).unwrap();
        assert_ne!(d1.digest, d2.digest);
        fs::write(dir.join(OsStr::from_bytes(b"f\xff")), "ONE").unwrap();
        assert_ne!(d2.digest, compute(&root, &dir, None, &[]).unwrap().digest);
    }

    #[test]
    fn utf8_names_digest_as_before() {
        // The v1 encoding of a one-file bundle, spelled out: names, modes,
        // lengths and contents, NUL-separated.
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        fs::create_dir(root.join("b")).unwrap();
        fs::write(root.join("b/a.txt"), "hi").unwrap();
        fs::set_permissions(root.join("b/a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        let want = fsx::sha256_hex(b"agentplane-bundle-digest/v1\nb/a.txt\x00644\x002\x00hi");
        assert_eq!(compute(&root, &root.join("b"), None, &[]).unwrap().digest, format!("sha256:{want}"));
    }

    /// A temporary root holding an empty bundle directory `b`: (guard, root, dir).
    fn bundle_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let dir = root.join("b");
        fs::create_dir(&dir).unwrap();
        (d, root, dir)
    }

    #[test]
    fn the_digest_alone_is_the_digest_with_its_files() {
        let (_d, root, dir) = bundle_dir();
        fs::write(dir.join("a.txt"), "hi").unwrap();
        fs::write(dir.join("big"), vec![7u8; 200 * 1024]).unwrap();
        std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
        let with = |want| compute_scanned(&root, scan(&root, &dir, None).unwrap(), &[], None, want).unwrap();
        let (full, alone) = (with(Want::DigestAndFiles), with(Want::Digest));
        assert_eq!(alone.digest, full.digest);
        assert_eq!(full.files.len(), 3);
        assert!(alone.files.is_empty(), "no per-file digests were asked for");
    }

    #[test]
    fn the_file_that_takes_a_bundle_past_its_cap_is_named_and_nothing_after_it_read() {
        let (_d, root, dir) = bundle_dir();
        let sparse = |name: &str, len: u64| fs::File::create(dir.join(name)).unwrap().set_len(len).unwrap();
        fs::write(dir.join("a.txt"), "hi").unwrap();
        sparse("b.bin", fsx::caps::BUNDLE - 2); // with a.txt: exactly the cap
        let check = || check_scan(&root, scan(&root, &dir, None).unwrap(), &[], None);
        assert!(check().is_ok(), "a bundle of exactly the cap is within it");
        sparse("c.bin", 1); // one byte past it
        sparse("d.bin", 1 << 40); // after the crossing: neither read nor named
        let named = |r: Result<()>| -> Vec<(String, BadKind)> {
            let e = r.unwrap_err();
            e.downcast_ref::<BundleFilesError>().unwrap().files.iter().map(|b| (b.path.clone(), b.kind)).collect()
        };
        let want = vec![("b/c.bin".to_string(), BadKind::TooLarge)];
        assert_eq!(named(check()), want);
        // With `b.bin` one GiB, it is the one that crosses: the digest names
        // it without reading it (nor `c.bin` or `d.bin`), as the check does.
        fs::remove_file(dir.join("b.bin")).unwrap();
        sparse("b.bin", fsx::caps::BUNDLE);
        let digest = compute_scanned(&root, scan(&root, &dir, None).unwrap(), &[], None, Want::Digest);
        assert_eq!(named(digest.map(|_| ())), vec![("b/b.bin".to_string(), BadKind::TooLarge)]);
        assert_eq!(named(check()), vec![("b/b.bin".to_string(), BadKind::TooLarge)]);
    }

    #[test]
    fn special_files_and_outward_links_are_named_not_read() {
        let (_d, root, dir) = bundle_dir();
        fs::write(dir.join("ok"), "x").unwrap();
        nix::unistd::mkfifo(&dir.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        std::os::unix::fs::symlink("ok", dir.join("inside")).unwrap();
        let err = compute(&root, &dir, None, &[]).unwrap_err();
        let bad = err.downcast_ref::<BundleFilesError>().unwrap();
        let got: Vec<(&str, BadKind)> = bad.files.iter().map(|b| (b.path.as_str(), b.kind)).collect();
        assert_eq!(got, [("b/pipe", BadKind::NotRegular), ("b/zero", BadKind::Escapes)]);
        assert!(bad.files[0].why.contains("FIFO"), "{}", bad.files[0].why);
        assert!(check_files(&root, &dir, None).is_err());
        fs::remove_file(dir.join("pipe")).unwrap();
        fs::remove_file(dir.join("zero")).unwrap();
        let ok = compute(&root, &dir, None, &[]).unwrap();
        assert_eq!(ok.files.iter().map(|f| f.mode).collect::<Vec<_>>(), ["link", "644"]);
    }
}
