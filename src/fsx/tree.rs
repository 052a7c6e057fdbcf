//! Listing a directory tree in name order, each directory through its own
//! descriptor: what the bundle digest and the bundle-files check walk.
//!
//! It visits what `walkdir` (sorted by file name, links not followed) visited,
//! in the same order, and fails on the same first error with the same
//! message; it costs an `open`, the `getdents64` calls and a `close` per
//! directory, where `walkdir` (through `opendir`) also `stat`ed the top
//! directory and `fstat`ed each one it opened: 2 of the ~12 system calls
//! `validate` made per bundle.

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// What a directory entry is, from the listing (`d_type`), or from an `lstat`
/// where the file system does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// A directory that could not be opened or read, or an entry whose type
/// could not be found. Shown as `walkdir` showed it, so messages stay the same.
#[derive(Debug)]
pub struct TreeError {
    pub path: PathBuf,
    pub io: std::io::Error,
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IO error for operation on {}: {}", self.path.display(), self.io)
    }
}

impl std::error::Error for TreeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.io)
    }
}

/// A directory opened once, to be listed (once) and to open the files it
/// holds by name: the kernel resolves the directory's path once, and every
/// file opened through it comes from the directory that was listed, even if
/// something renames another directory into its path meanwhile.
#[derive(Debug)]
pub struct OpenDir {
    path: PathBuf,
    dir: Dir,
    /// Whether [`walk_from`] has read its entries (a second listing rewinds).
    listed: bool,
}

impl OpenDir {
    /// Open the directory `path`, which may be reached through a link.
    pub fn open(path: &Path) -> Result<OpenDir, TreeError> {
        Ok(OpenDir { path: path.to_path_buf(), dir: open_dir(path, true)?, listed: false })
    }

    /// The directory at `path`, opened already (`fd`, read from its start).
    pub fn from_fd(path: &Path, fd: std::os::fd::OwnedFd) -> Result<OpenDir, TreeError> {
        Ok(OpenDir { path: path.to_path_buf(), dir: Dir::new(fd).map_err(|e| fail(path, e))?, listed: false })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path`'s name when `path` is directly in this directory, by its
    /// path as given (one plain UTF-8 component after this directory's path).
    pub fn name_of<'p>(&self, path: &'p Path) -> Option<&'p str> {
        path.parent().is_some_and(|p| super::same_path(p, &self.path)).then(|| path.file_name()?.to_str()).flatten()
    }

    /// The descriptor, to open files relative to it.
    pub fn fd(&self) -> std::io::Result<rustix::fd::BorrowedFd<'_>> {
        self.dir.fd().map_err(std::io::Error::from)
    }
}

/// Walk `dir` depth first, each directory's entries sorted by name (bytes),
/// calling `visit` with every entry that is not a directory. Entries for
/// which `skip` holds are left out (a directory with all it holds). `dir`
/// itself may be a link to a directory; no link below it is followed.
/// Stops at the first error.
pub fn walk(dir: &Path, skip: &dyn Fn(&Path) -> bool, visit: impl FnMut(&Path, Kind)) -> Result<(), TreeError> {
    walk_from(&mut OpenDir::open(dir)?, skip, visit)
}

/// [`walk`] from a directory already open: its own listing reads `top`.
pub fn walk_from(
    top: &mut OpenDir,
    skip: &dyn Fn(&Path) -> bool,
    mut visit: impl FnMut(&Path, Kind),
) -> Result<(), TreeError> {
    if std::mem::replace(&mut top.listed, true) {
        top.dir.rewind();
    }
    let mut stack = vec![(top.path.clone(), entries(&mut top.dir, &top.path)?.into_iter())];
    loop {
        let next = match stack.last_mut() {
            None => return Ok(()),
            Some((parent, entries)) => entries.next().map(|(name, kind)| (parent.join(name), kind)),
        };
        let Some((path, kind)) = next else {
            stack.pop();
            continue;
        };
        if skip(&path) {
            continue;
        }
        match kind {
            Kind::Dir => {
                let entries = entries(&mut open_dir(&path, false)?, &path)?;
                stack.push((path, entries.into_iter()));
            }
            kind => visit(&path, kind),
        }
    }
}

fn fail(path: &Path, e: rustix::io::Errno) -> TreeError {
    TreeError { path: path.to_path_buf(), io: e.into() }
}

/// Open a directory to list. `follow`: it may be reached through a link (the
/// top one only).
fn open_dir(dir: &Path, follow: bool) -> Result<Dir, TreeError> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if !follow {
        // Listed as a directory: if a link took its place since, it is not followed.
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::openat(CWD, dir, flags, Mode::empty()).map_err(|e| fail(dir, e))?;
    Dir::new(fd).map_err(|e| fail(dir, e))
}

/// One open directory's entries (not `.` and `..`), sorted by name.
fn entries(d: &mut Dir, dir: &Path) -> Result<Vec<(OsString, Kind)>, TreeError> {
    let mut out = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry.map_err(|e| fail(dir, e))?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let owned = OsString::from_vec(name.to_bytes().to_vec());
        let kind = match entry.file_type() {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            FileType::Unknown => {
                // The file system keeps no type in its directories: ask the entry.
                let fd = d.fd().map_err(|e| fail(dir, e))?;
                let st =
                    rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail(&dir.join(&owned), e))?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => Kind::Dir,
                    FileType::RegularFile => Kind::File,
                    FileType::Symlink => Kind::Symlink,
                    _ => Kind::Other,
                }
            }
            _ => Kind::Other,
        };
        out.push((owned, kind));
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
