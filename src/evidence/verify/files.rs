//! How verification reads an evidence directory: the [`EvidenceFiles`] trait,
//! its file-system implementation, and (for tests) an in-memory one.
//!
//! The file-system side reads regular files only, with size caps
//! ([`fsx::open_regular`]): a FIFO, device, socket or symlink where evidence
//! belongs is an error naming the file, never a hang, never a read through a
//! link to somewhere else, never unbounded memory.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::evidence::{CHAIN_FILE, LOCK_FILE, RUNS_DIR};
use crate::fsx::{self, NotRegular, RegularError};

/// Why a file could not be read, naming it (relative to the evidence directory).
pub type FileError = String;

/// One non-directory entry of the evidence directory (step 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `/`-separated path relative to the evidence directory.
    pub name: String,
    /// The size of a regular file, or what the entry is instead. On disk only
    /// `.agentplane.lock`'s size is measured (the one size step 8 judges); other
    /// files list as 0.
    pub kind: Result<u64, NotRegular>,
}

/// Read access to one evidence directory.
pub trait EvidenceFiles: Sync {
    /// The exact bytes of `evidence.jsonl`, as a stream (read in windows,
    /// never whole); at most [`fsx::caps::CHAIN`] bytes are handed out.
    fn chain(&self) -> Result<Box<dyn Read + Send + '_>, FileError>;
    /// The bytes of an artifact (a JSON document, capped at [`fsx::caps::DOCUMENT`]).
    fn read_artifact(&self, name: &str) -> Result<Vec<u8>, FileError>;
    /// The lowercase hex sha256 of a log or product, of any size. When its
    /// size is `recorded` (by an artifact whose own digest checked out), a
    /// file of another size is reported changed without being read: a
    /// sparse terabyte costs nothing to make and would take an hour to hash.
    fn hash(&self, name: &str, recorded: Option<u64>) -> Result<String, FileError>;
    /// A regular file of any size, for reads at offsets (`tlog-index`, compared in place).
    fn open_at(&self, name: &str) -> Result<Box<dyn ReadAt + '_>, FileError>;
    /// Whether `name` is in the directory at all (as anything, even a link).
    fn exists(&self, name: &str) -> bool;
    /// Every entry that is not a directory, handed to `each` one by one in
    /// no particular order (nothing is held: a directory of a million files
    /// lists in constant memory). Symlinks are listed, never followed;
    /// `runs/` (archived chains) is not descended.
    fn list(&self, each: &mut dyn FnMut(Listed)) -> Result<(), FileError>;
}

/// A file read at offsets.
pub trait ReadAt: Send + Sync {
    /// Fill `buf` from byte `at` (an error past the end).
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()>;
    /// Its length when opened.
    fn len(&self) -> u64;
}

struct FileAt(std::fs::File, u64);

impl ReadAt for FileAt {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, at)
    }

    fn len(&self) -> u64 {
        self.1
    }
}

impl ReadAt for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let at = usize::try_from(at).map_err(std::io::Error::other)?;
        let src = self.get(at..at.saturating_add(buf.len())).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

/// An evidence directory on disk.
#[derive(Debug, Clone)]
pub struct FsEvidence {
    dir: PathBuf,
    /// The directory, open: a file directly in it is opened by its name
    /// alone (one lookup, not the whole path again). `None` when it could
    /// not be opened; every read then goes by path, with the same checks.
    open: Option<Arc<std::fs::File>>,
}

impl FsEvidence {
    pub fn new(dir: &Path) -> FsEvidence {
        FsEvidence { dir: dir.to_path_buf(), open: std::fs::File::open(dir).ok().map(Arc::new) }
    }

    /// The open directory, when `name` is one plain component directly in it.
    fn open_for(&self, name: &str) -> Option<&std::fs::File> {
        let mut parts = Path::new(name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(_)), None) if !name.contains('/') => self.open.as_deref(),
            _ => None,
        }
    }

    /// The path of `name`, refusing when a directory on the way is not a
    /// real directory: `O_NOFOLLOW` guards only the last component, so a
    /// symlinked `products/` must be caught here.
    fn path(&self, name: &str) -> Result<PathBuf, FileError> {
        let parts: Vec<Component> = Path::new(name).components().collect();
        let mut p = self.dir.clone();
        for (i, c) in parts.iter().enumerate() {
            if !matches!(c, Component::Normal(_)) {
                return Err(format!("`{name}` is not a plain path inside the directory"));
            }
            p.push(c);
            if i + 1 < parts.len() {
                let rel = fsx::rel_to(&self.dir, &p);
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(format!("`{rel}` {}", NotRegular::Symlink));
                    }
                    Ok(_) => return Err(format!("`{rel}` is not a directory")),
                    Err(_) => return Err(format!("`{name}` {}", NotRegular::Missing)),
                }
            }
        }
        Ok(p)
    }
}

/// A file whose size is not the one its artifact recorded (it was not read).
fn other_size(name: &str, len: u64, recorded: u64) -> FileError {
    format!("`{name}` changed: {len} bytes, its artifact recorded {recorded} (not read)")
}

/// A [`RegularError`] as a message naming the file by its evidence name.
fn describe(name: &str, e: &RegularError) -> FileError {
    match (&e.kind, &e.io) {
        (Some(k), _) => format!("`{name}` {k}"),
        (None, Some(io)) => format!("cannot read `{name}`: {io}"),
        (None, None) => format!("cannot read `{name}`"),
    }
}

impl EvidenceFiles for FsEvidence {
    fn chain(&self) -> Result<Box<dyn Read + Send + '_>, FileError> {
        let f = fsx::open_regular(&self.dir.join(CHAIN_FILE), Some(fsx::caps::CHAIN))
            .map_err(|e| describe(CHAIN_FILE, &e))?;
        Ok(Box::new(Capped { inner: f.take(fsx::caps::CHAIN + 1), read: 0 }))
    }

    fn read_artifact(&self, name: &str) -> Result<Vec<u8>, FileError> {
        match self.open_for(name) {
            Some(dir) => fsx::read_regular_in(dir, &self.dir, name, fsx::caps::DOCUMENT),
            None => fsx::read_regular(&self.path(name)?, fsx::caps::DOCUMENT),
        }
        .map_err(|e| describe(name, &e))
    }

    fn hash(&self, name: &str, recorded: Option<u64>) -> Result<String, FileError> {
        let path = self.path(name)?;
        let (f, meta) = fsx::open_regular_meta(&path, None).map_err(|e| describe(name, &e))?;
        if let Some(want) = recorded.filter(|w| *w != meta.len()) {
            return Err(other_size(name, meta.len(), want));
        }
        fsx::sha256_opened(f, meta.len(), &path).map(|(hex, _)| hex).map_err(|e| describe(name, &e))
    }

    fn exists(&self, name: &str) -> bool {
        std::fs::symlink_metadata(self.dir.join(name)).is_ok()
    }

    fn open_at(&self, name: &str) -> Result<Box<dyn ReadAt + '_>, FileError> {
        let (f, meta) = fsx::open_regular_meta(&self.path(name)?, None).map_err(|e| describe(name, &e))?;
        Ok(Box::new(FileAt(f, meta.len())))
    }

    fn list(&self, each: &mut dyn FnMut(Listed)) -> Result<(), FileError> {
        // Unsorted: walkdir sorts by reading a whole directory first, and an
        // evidence directory holds one file per entry. Step 8 sorts what it reports.
        let walk = walkdir::WalkDir::new(&self.dir)
            .min_depth(1)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| !(e.depth() == 1 && e.file_type().is_dir() && e.file_name() == RUNS_DIR));
        for entry in walk {
            let entry = entry.map_err(|e| format!("cannot list the evidence directory: {e}"))?;
            let ft = entry.file_type();
            if ft.is_dir() {
                continue;
            }
            // Not following links: the type is the listing's own. Only the
            // lock's size is judged (step 8), so only the lock is stat'ed.
            let kind = match NotRegular::of(ft) {
                None if entry.depth() == 1 && entry.file_name() == LOCK_FILE => {
                    Ok(entry.metadata().map_or(0, |m| m.len()))
                }
                None => Ok(0),
                Some(k) => Err(k),
            };
            each(Listed { name: fsx::rel_to(&self.dir, entry.path()), kind });
        }
        Ok(())
    }
}

/// The chain file read through its cap: a file that grew past
/// [`fsx::caps::CHAIN`] after it was opened is an error, never more memory.
struct Capped<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > fsx::caps::CHAIN {
            let cap = fsx::caps::CHAIN;
            return Err(std::io::Error::other(format!(
                "`{CHAIN_FILE}` {}",
                NotRegular::TooLarge { cap, len: self.read }
            )));
        }
        Ok(n)
    }
}

/// An evidence directory held in memory, for table-driven tests.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct MemEvidence {
    pub files: std::collections::BTreeMap<String, MemFile>,
}

#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemFile {
    Bytes(Vec<u8>),
    /// Something other than a regular file (a FIFO, a symlink, ...).
    Special(NotRegular),
}

#[cfg(test)]
impl MemEvidence {
    /// Copy every regular file under `dir` (as agentplane left it) into memory.
    pub fn load(dir: &Path) -> MemEvidence {
        let mut m = MemEvidence::default();
        for e in walkdir::WalkDir::new(dir).min_depth(1).into_iter().map(Result::unwrap) {
            if e.file_type().is_file() {
                let bytes = std::fs::read(e.path()).unwrap();
                m.files.insert(fsx::rel_to(dir, e.path()), MemFile::Bytes(bytes));
            }
        }
        m
    }

    fn get(&self, name: &str, cap: Option<u64>) -> Result<&[u8], FileError> {
        match self.files.get(name) {
            None => Err(format!("`{name}` {}", NotRegular::Missing)),
            Some(MemFile::Special(k)) => Err(format!("`{name}` {k}")),
            Some(MemFile::Bytes(b)) => match cap {
                Some(cap) if b.len() as u64 > cap => {
                    Err(format!("`{name}` {}", NotRegular::TooLarge { cap, len: b.len() as u64 }))
                }
                _ => Ok(b),
            },
        }
    }
}

#[cfg(test)]
impl EvidenceFiles for MemEvidence {
    fn chain(&self) -> Result<Box<dyn Read + Send + '_>, FileError> {
        self.get(CHAIN_FILE, Some(fsx::caps::CHAIN)).map(|b| Box::new(b) as Box<dyn Read + Send>)
    }

    fn read_artifact(&self, name: &str) -> Result<Vec<u8>, FileError> {
        self.get(name, Some(fsx::caps::DOCUMENT)).map(<[u8]>::to_vec)
    }

    fn hash(&self, name: &str, recorded: Option<u64>) -> Result<String, FileError> {
        let b = self.get(name, None)?;
        match recorded.filter(|w| *w != b.len() as u64) {
            Some(want) => Err(other_size(name, b.len() as u64, want)),
            None => Ok(fsx::sha256_hex(b)),
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    fn open_at(&self, name: &str) -> Result<Box<dyn ReadAt + '_>, FileError> {
        self.get(name, None).map(|b| Box::new(b) as Box<dyn ReadAt>)
    }

    fn list(&self, each: &mut dyn FnMut(Listed)) -> Result<(), FileError> {
        // Reversed: callers must not depend on the order.
        for (n, f) in self.files.iter().rev().filter(|(n, _)| !n.starts_with(&format!("{RUNS_DIR}/"))) {
            each(Listed {
                name: n.clone(),
                kind: match f {
                    MemFile::Bytes(b) => Ok(b.len() as u64),
                    MemFile::Special(k) => Err(*k),
                },
            });
        }
        Ok(())
    }
}
