//! File-system helpers: atomic writes, digests, paths relative to the root.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Write `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".agentplane-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{}`", dir.display()))?;
    // Evidence is for sharing: 0644 under the usual umask (tempfile makes 0600).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644 & !umask()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write `{}`", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// The process's umask, read once from `/proc/self/status` (022 when unknown):
/// reading it with umask(2) would change it for every thread meanwhile.
pub fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

/// Best-effort fsync of a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Append `line` plus a newline to `path` and fsync it, as one `write`.
///
/// The file only ever grows by whole lines: when the write is short or fails
/// (a full disk) or the fsync fails, the file is cut back to its length
/// before the append and the error returned, so a reader never meets a torn
/// last line written by agentplane.
pub fn append_line(path: &Path, line: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open `{}` for appending", path.display()))?;
    append_whole(&mut f, line).with_context(|| format!("cannot append to `{}`", path.display()))
}

/// What [`append_whole`] needs of a file (a trait so tests can make it fail).
pub(crate) trait LineFile {
    fn len(&self) -> std::io::Result<u64>;
    fn write_once(&mut self, buf: &[u8]) -> std::io::Result<usize>;
    fn sync(&self) -> std::io::Result<()>;
    fn cut(&self, len: u64) -> std::io::Result<()>;
}

impl LineFile for File {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn write_once(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write(buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.sync_all()
    }
    fn cut(&self, len: u64) -> std::io::Result<()> {
        self.set_len(len)?;
        self.sync_all()
    }
}

/// The line plus its newline in one write, then fsync; on any failure the
/// file is cut back to its previous length and the first error returned.
pub(crate) fn append_whole(f: &mut impl LineFile, line: &[u8]) -> std::io::Result<()> {
    let before = f.len()?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line);
    buf.push(b'\n');
    let result = match f.write_once(&buf) {
        Ok(n) if n == buf.len() => f.sync(),
        Ok(n) => Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("only {n} of {} bytes were written", buf.len()),
        )),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // Best effort: if even the cut fails, the reader's torn-tail check says so.
        let _ = f.cut(before);
        return Err(e);
    }
    Ok(())
}

/// Caps on what agentplane reads into memory from files it did not write
/// (DESIGN §4, §7). Larger files are refused; logs and products are hashed
/// as streams and never held whole.
pub mod caps {
    /// A bundle manifest, an inventory, an artifact, an envelope line's file.
    pub const DOCUMENT: u64 = 16 * 1024 * 1024;
    /// A key file (PEM).
    pub const KEY: u64 = 64 * 1024;
    /// The evidence chain, read whole by `verify` (≈ 1,000,000 entries).
    pub const CHAIN: u64 = 2 * 1024 * 1024 * 1024;
    /// All of one bundle's files together: each is digested whole by every
    /// validate and before every run (streamed, never held).
    pub const BUNDLE: u64 = 1024 * 1024 * 1024;
}

/// What a path turned out to be when a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRegular {
    Missing,
    Symlink,
    Directory,
    Fifo,
    Socket,
    Device,
    TooLarge { cap: u64, len: u64 },
}

impl NotRegular {
    /// What a file type is when it is not a regular file (`None` when it is).
    pub fn of(ft: std::fs::FileType) -> Option<NotRegular> {
        use std::os::unix::fs::FileTypeExt;
        Some(if ft.is_file() {
            return None;
        } else if ft.is_symlink() {
            NotRegular::Symlink
        } else if ft.is_dir() {
            NotRegular::Directory
        } else if ft.is_fifo() {
            NotRegular::Fifo
        } else if ft.is_socket() {
            NotRegular::Socket
        } else {
            NotRegular::Device
        })
    }
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRegular::Missing => f.write_str("does not exist"),
            NotRegular::Symlink => f.write_str("is a symbolic link (only regular files are read)"),
            NotRegular::Directory => f.write_str("is a directory, not a file"),
            NotRegular::Fifo => f.write_str("is a FIFO (only regular files are read)"),
            NotRegular::Socket => f.write_str("is a socket (only regular files are read)"),
            NotRegular::Device => f.write_str("is a device (only regular files are read)"),
            NotRegular::TooLarge { cap, len } => write!(f, "is {len} bytes, over the {cap}-byte limit"),
        }
    }
}

/// Whether `path` is a regular file this process may read, judged without
/// opening it: an `lstat` (the last component not followed) and an
/// `access(R_OK)` for the effective ids. For checks that read nothing:
/// opening a device runs its driver (a tape rewinds, a watchdog starts).
/// The errors are [`open_regular`]'s for the same file.
pub fn readable_regular(path: &Path) -> Result<(), RegularError> {
    let fail = |kind, io| RegularError { path: path.to_path_buf(), kind, io };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(fail(Some(NotRegular::Missing), Some(e))),
        Err(e) => return Err(fail(None, Some(e))),
    };
    if let Some(kind) = NotRegular::of(meta.file_type()) {
        return Err(fail(Some(kind), None));
    }
    use rustix::fs::{Access, AtFlags, CWD};
    rustix::fs::accessat(CWD, path, Access::READ_OK, AtFlags::EACCESS).map_err(|e| fail(None, Some(e.into())))
}

/// Open `path` for reading only if it is a regular file: the last component
/// is not followed when it is a symlink (`O_NOFOLLOW`), and the open never
/// blocks on a FIFO (`O_NONBLOCK`); the type is then checked on the open file
/// (`fstat`), so nothing can swap it between check and read. `cap` bounds its
/// size (`None`: any size, for streaming).
pub fn open_regular(path: &Path, cap: Option<u64>) -> Result<File, RegularError> {
    open_regular_meta(path, cap).map(|(f, _)| f)
}

/// [`open_regular`], also returning the open file's metadata.
pub fn open_regular_meta(path: &Path, cap: Option<u64>) -> Result<(File, fs::Metadata), RegularError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().read(true).custom_flags(REGULAR_OPEN.bits()).open(path);
    checked_regular(path, file, cap)
}

/// [`open_regular_meta`] for `name`, one plain component (no `/`), inside
/// the open directory `dir` (whose path is `dir_path`, for messages): the
/// kernel resolves one name instead of the whole path again, for callers
/// reading many files of one directory. The same guarantees: the name is
/// not followed when it is a symlink, a FIFO never blocks, the type and
/// size are checked on the open file.
pub fn open_regular_in(
    dir: &File,
    dir_path: &Path,
    name: &str,
    cap: Option<u64>,
) -> Result<(File, fs::Metadata), RegularError> {
    open_in(dir, &dir_path.join(name), name, cap)
}

/// [`open_regular_meta`] of `path` through the open directory `dir` when
/// `path` is directly in it (the kernel then resolves one name, not the whole
/// path again), else by the whole path. The same guarantees either way.
pub fn open_regular_meta_via(
    dir: Option<&tree::OpenDir>,
    path: &Path,
    cap: Option<u64>,
) -> Result<(File, fs::Metadata), RegularError> {
    match dir.and_then(|d| Some((d.fd().ok()?, d.name_of(path)?))) {
        Some((fd, name)) => open_in(fd, path, name, cap),
        None => open_regular_meta(path, cap),
    }
}

/// [`open_regular_in`], with the whole path (for messages) already made.
fn open_in(
    dir: impl std::os::fd::AsFd,
    path: &Path,
    name: &str,
    cap: Option<u64>,
) -> Result<(File, fs::Metadata), RegularError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(RegularError { path: path.to_path_buf(), kind: Some(NotRegular::Missing), io: None });
    }
    let file = nix::fcntl::openat(dir, name, REGULAR_OPEN, nix::sys::stat::Mode::empty())
        .map(File::from)
        .map_err(std::io::Error::from);
    checked_regular(path, file, cap)
}

/// How a file that must be regular is opened: never through a final
/// symlink, never blocking on a FIFO.
const REGULAR_OPEN: nix::fcntl::OFlag =
    nix::fcntl::OFlag::O_NOFOLLOW.union(nix::fcntl::OFlag::O_NONBLOCK).union(nix::fcntl::OFlag::O_CLOEXEC);

/// The open of a file that must be regular, checked on the open file.
fn checked_regular(
    path: &Path,
    opened: std::io::Result<File>,
    cap: Option<u64>,
) -> Result<(File, fs::Metadata), RegularError> {
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            let kind = match e.raw_os_error() {
                Some(nix::libc::ELOOP) => Some(NotRegular::Symlink),
                Some(nix::libc::ENOENT) => Some(NotRegular::Missing),
                Some(nix::libc::ENXIO) => Some(NotRegular::Socket),
                _ => None,
            };
            return Err(RegularError { path: path.to_path_buf(), kind, io: Some(e) });
        }
    };
    let meta = file.metadata().map_err(|e| RegularError { path: path.to_path_buf(), kind: None, io: Some(e) })?;
    judged_regular(path, file, meta, cap)
}

/// A file opened as [`open_regular`] opens one, with its `fstat` (`meta`):
/// refused unless regular and within `cap`.
fn judged_regular(
    path: &Path,
    file: File,
    meta: fs::Metadata,
    cap: Option<u64>,
) -> Result<(File, fs::Metadata), RegularError> {
    let not = match NotRegular::of(meta.file_type()) {
        None => match cap {
            Some(cap) if meta.len() > cap => Some(NotRegular::TooLarge { cap, len: meta.len() }),
            _ => None,
        },
        other => other,
    };
    match not {
        Some(kind) => Err(RegularError { path: path.to_path_buf(), kind: Some(kind), io: None }),
        None => Ok((file, meta)),
    }
}

/// Why [`open_regular`] refused or failed: names the file.
#[derive(Debug)]
pub struct RegularError {
    pub path: PathBuf,
    /// What the path is, when it is something other than a readable regular file.
    pub kind: Option<NotRegular>,
    pub io: Option<std::io::Error>,
}

impl std::fmt::Display for RegularError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.kind, &self.io) {
            (Some(k), _) => write!(f, "`{}` {k}", self.path.display()),
            (None, Some(e)) => write!(f, "cannot read `{}`: {e}", self.path.display()),
            (None, None) => write!(f, "cannot read `{}`", self.path.display()),
        }
    }
}

impl std::error::Error for RegularError {}

/// Read a regular file of at most `cap` bytes (see [`open_regular`]), to its end.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, RegularError> {
    read_regular_meta(path, cap).map(|(b, _)| b)
}

/// [`read_regular`], also returning the metadata of the file it read. The
/// usual file is read in one `read` (see [`read_opened`]): a `bundle.json`
/// per bundle in `validate`, an artifact per entry in `verify`.
pub fn read_regular_meta(path: &Path, cap: u64) -> Result<(Vec<u8>, fs::Metadata), RegularError> {
    let (f, meta) = open_regular_meta(path, Some(cap))?;
    read_opened(f, meta, path, cap)
}

/// [`read_regular_meta`] through an open directory: see [`open_regular_meta_via`].
pub fn read_regular_meta_via(
    dir: Option<&tree::OpenDir>,
    path: &Path,
    cap: u64,
) -> Result<(Vec<u8>, fs::Metadata), RegularError> {
    let (f, meta) = open_regular_meta_via(dir, path, Some(cap))?;
    read_opened(f, meta, path, cap)
}

/// [`read_regular_meta`] of a file opened already with [`open_regular`]'s
/// flags (`meta` its `fstat`): the same refusals, the same read.
pub fn read_regular_opened(
    path: &Path,
    file: File,
    meta: fs::Metadata,
    cap: u64,
) -> Result<(Vec<u8>, fs::Metadata), RegularError> {
    let (f, meta) = judged_regular(path, file, meta, Some(cap))?;
    read_opened(f, meta, path, cap)
}

/// [`read_regular`] of one plain name in an open directory ([`open_regular_in`]).
pub fn read_regular_in(dir: &File, dir_path: &Path, name: &str, cap: u64) -> Result<Vec<u8>, RegularError> {
    let path = dir_path.join(name);
    let (f, meta) = open_in(dir, &path, name, Some(cap))?;
    read_opened(f, meta, &path, cap).map(|(b, _)| b)
}

/// Read an opened regular file whose `fstat` was `meta`, at most `cap` bytes.
fn read_opened(
    mut f: File,
    meta: fs::Metadata,
    path: &Path,
    cap: u64,
) -> Result<(Vec<u8>, fs::Metadata), RegularError> {
    let io = |e| RegularError { path: path.to_path_buf(), kind: None, io: Some(e) };
    // Sized from the open file's fstat, with a byte to spare: a read of a
    // regular file that returns less than it asked for has met the end, so
    // the usual file is read in one call with no second one to see the end.
    // A file that grew since the fstat fills the spare byte and is read on,
    // through `take`, up to one byte past the cap.
    let mut buf = vec![0u8; meta.len().min(cap) as usize + 1];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    buf.truncate(len);
    if len == meta.len().min(cap) as usize + 1 {
        (&mut f).take(cap + 1 - len as u64).read_to_end(&mut buf).map_err(io)?;
    }
    if buf.len() as u64 > cap {
        return Err(RegularError {
            path: path.to_path_buf(),
            kind: Some(NotRegular::TooLarge { cap, len: buf.len() as u64 }),
            io: None,
        });
    }
    Ok((buf, meta))
}

/// [`read_regular`] of a file an operator named, links followed (mounted
/// secrets and dotfiles are often links): the file reached must be regular
/// and within `cap`. Errors name `path` as given.
pub fn read_regular_followed(path: &Path, cap: u64) -> Result<Vec<u8>, RegularError> {
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    read_regular(&real, cap).map_err(|e| RegularError { path: path.to_path_buf(), ..e })
}

/// A secret named by a `NAME_FILE` variable: the operator's path, so its
/// links are followed (mounted secrets are often links), but the file itself
/// must be a regular one (a FIFO never blocks), UTF-8 and at most
/// [`caps::DOCUMENT`].
pub fn read_secret_file(path: &Path) -> Result<String, RegularError> {
    let bytes = read_regular_followed(path, caps::DOCUMENT)?;
    String::from_utf8(bytes).map_err(|_| RegularError {
        path: path.to_path_buf(),
        kind: None,
        io: Some(std::io::Error::new(std::io::ErrorKind::InvalidData, "the secret is not UTF-8")),
    })
}

/// sha256 (hex) and length of a regular file, streamed (any size).
pub fn sha256_regular(path: &Path) -> Result<(String, u64), RegularError> {
    let (f, meta) = open_regular_meta(path, None)?;
    sha256_opened(f, meta.len(), path)
}

/// sha256 (hex) and length of a regular file opened with [`open_regular_meta`]
/// when its `fstat` said `len` bytes. No more than `len + 1` bytes are read:
/// a file that another process keeps growing is an error ("grew while it was
/// read"), never an endless read.
pub fn sha256_opened(f: File, len: u64, path: &Path) -> Result<(String, u64), RegularError> {
    let io = |e| RegularError { path: path.to_path_buf(), kind: None, io: Some(e) };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; len.clamp(1, 64 * 1024) as usize];
    let mut read = 0u64;
    let mut f = f.take(len.saturating_add(1));
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        read += n as u64;
        if read > len {
            return Err(io(std::io::Error::other(format!("it grew while it was read (it was {len} bytes)"))));
        }
        h.update(&buf[..n]);
    }
    Ok((hex_lower(&h.finalize()), read))
}

/// Lowercase hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest: `hex::encode` without its `char` at a time
/// collect (verify makes several per chain entry).
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| hex::encode(bytes)),
        Err(_) => hex::encode(bytes),
    }
}

/// Lowercase hex sha256 of a file's contents, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex_lower(&h.finalize()))
}

/// Join `rel` onto `base` and remove `.` and `..` lexically (no file-system access).
/// Returns `None` when `..` would climb above `base`'s root.
pub fn normalize(base: &Path, rel: &Path) -> Option<PathBuf> {
    let joined = if rel.is_absolute() { rel.to_path_buf() } else { base.join(rel) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// Resolve `rel` (as written in a bundle) against `root`, following symlinks
/// for the part of the path that exists. `root` must be canonical. Returns the
/// resolved path and whether it stays inside `root`.
///
/// This walks from `root` with one `lstat` per component and reads a link only
/// when a component is one: `canonicalize` (realpath) readlinks every component
/// of the absolute path, which dominated `validate` over large trees.
pub fn resolve_in_root(root: &Path, rel: &str) -> (PathBuf, bool) {
    resolve_in_root_cached(root, rel, &LstatCache::default())
}

/// What `lstat` said about a path: `None` missing, `Some(true)` a symlink.
/// One cache serves a whole `validate` worker: bundles share directories.
///
/// Entries made since the last [`LstatCache::forget_under`] are remembered in
/// order, so forgetting one bundle's files costs what that bundle added, not
/// a scan of everything every earlier bundle left behind (paths outside their
/// own directory, e.g. a tree validated with the wrong `--root`, made that
/// quadratic: 2,000 such bundles took ~5x as long as valid ones). What stays
/// is capped: past [`LstatCache::MAX_KEPT`] entries the cache starts over,
/// which costs only repeated `lstat`s.
///
/// Paths are keyed by their bytes with a fast, non-cryptographic hash: the
/// keys are this process's own paths, and `Path`'s component-wise hashing and
/// comparison were ~15 % of `validate`'s user time. Two spellings of one path
/// (`a//b`, `a/./b`) are two keys; that costs at most a repeated `lstat`,
/// never a wrong answer, and the resolver only builds normal forms.
#[derive(Debug, Default)]
pub struct LstatCache(std::cell::RefCell<LstatEntries>);

#[derive(Debug, Default)]
struct LstatEntries {
    seen: foldhash::HashMap<Vec<u8>, Option<bool>>,
    added: Vec<Vec<u8>>,
}

impl LstatEntries {
    fn insert(&mut self, p: &[u8], what: Option<bool>) {
        if self.seen.len() >= LstatCache::MAX_KEPT {
            self.seen.clear();
            self.added.clear();
        }
        if self.seen.insert(p.to_vec(), what).is_none() {
            self.added.push(p.to_vec());
        }
    }
}

/// The bytes of a path, the cache's key.
fn key(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

/// Whether the path `p` is `dir` or under it, on bytes: [`Path::starts_with`]
/// for paths in normal form (no `//`, `.` or trailing `/`), without walking components.
fn bytes_under(p: &[u8], dir: &[u8]) -> bool {
    let dir = match dir {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        d => d,
    };
    p.starts_with(dir) && (p.len() == dir.len() || p[dir.len()] == b'/' || dir == b"/")
}

impl LstatCache {
    /// Most entries kept across bundles before the cache starts over.
    pub const MAX_KEPT: usize = 65_536;

    /// Record what is already known of `p` (from a directory listing, or a
    /// canonical directory), so that no `lstat` asks again.
    pub fn seed(&self, p: &Path, what: Option<bool>) {
        self.0.borrow_mut().insert(key(p), what);
    }

    /// Forget everything at or under `dir` (one bundle's own files) that was
    /// added since the last call, so that the cache keeps only what bundles
    /// share and does not grow with them.
    pub fn forget_under(&self, dir: &Path) {
        let mut e = self.0.borrow_mut();
        let LstatEntries { seen, added } = &mut *e;
        let dir = key(dir);
        for p in added.drain(..) {
            if bytes_under(&p, dir) {
                seen.remove(&p);
            }
        }
    }

    /// Whether `p`, or a directory on its way below `root`, was found missing.
    pub fn known_missing(&self, root: &Path, p: &Path) -> bool {
        let e = self.0.borrow();
        let missing = |a: &[u8]| matches!(e.seen.get(a), Some(None));
        if let Some(rest) = rel_bytes(root, p) {
            // The ancestors below the root are `p` cut at each `/` of `rest`.
            let whole = key(p);
            let start = whole.len() - rest.len();
            return missing(whole) || rest.iter().enumerate().any(|(i, &c)| c == b'/' && missing(&whole[..start + i]));
        }
        p.ancestors().take_while(|a| a.starts_with(root) && *a != root).any(|a| missing(key(a)))
    }

    fn lstat(&self, p: &Path) -> Option<bool> {
        if let Some(r) = self.0.borrow().seen.get(key(p)) {
            return *r;
        }
        let r = std::fs::symlink_metadata(p).ok().map(|m| m.file_type().is_symlink());
        self.0.borrow_mut().insert(key(p), r);
        r
    }
}

/// [`resolve_in_root`] sharing `lstat` results across calls.
pub fn resolve_in_root_cached(root: &Path, rel: &str, cache: &LstatCache) -> (PathBuf, bool) {
    resolve_path_in_root(root, Path::new(rel), cache)
}

/// Resolve a path written in a bundle whose (canonical) directory is `dir`,
/// by the rule for bundle paths (`spec.smoke.script`, `spec.vm.kernel`,
/// `spec.vm.modulePath`; DESIGN §4 allows both forms):
/// - a path starting with `./` or `../` is relative to the bundle directory;
/// - any other relative path is tried against the root first (upstream's form,
///   `bundles/x/smoke.sh`) and, when nothing exists there, against the bundle
///   directory (`smoke.sh`); when neither exists the root form is returned;
/// - an absolute path is taken as it is.
///
/// Returns the resolved path and whether it stays inside `root`, exactly as
/// [`resolve_in_root_cached`]: the inside-the-root rule holds in every case.
pub fn resolve_bundle_path(root: &Path, dir: &Path, rel: &str, cache: &LstatCache) -> (PathBuf, bool) {
    let path = Path::new(rel);
    if path.is_absolute() {
        return resolve_path_in_root(root, path, cache);
    }
    let in_dir = || resolve_path_in_root(root, &dir.join(path), cache);
    if matches!(path.components().next(), Some(Component::CurDir | Component::ParentDir)) {
        return in_dir();
    }
    let from_root = resolve_path_in_root(root, path, cache);
    if cache.lstat(&from_root.0).is_some() {
        return from_root;
    }
    let from_dir = in_dir();
    if cache.lstat(&from_dir.0).is_some() { from_dir } else { from_root }
}

/// [`resolve_in_root_cached`] for a path that need not be UTF-8 (a file name
/// found on disk rather than written in a bundle).
pub fn resolve_path_in_root(root: &Path, rel: &Path, cache: &LstatCache) -> (PathBuf, bool) {
    // Both in normal form (the usual `bundles/x/smoke.sh` under a canonical
    // root): `normalize` and `strip_prefix` would give `root/rel` and `rel`
    // back, so the component walks they cost are skipped.
    let simple = is_normal_abs(key(root)) && is_normal_rel(key(rel));
    if simple && let Some(down) = walk_down(root, rel, cache) {
        return (down, true);
    }
    resolve_walk(root, rel, simple, cache)
}

/// The general walk of [`resolve_path_in_root`]: every component in turn,
/// links followed (at most 40), `..` taken after them as the kernel does.
fn resolve_walk(root: &Path, rel: &Path, simple: bool, cache: &LstatCache) -> (PathBuf, bool) {
    let lexical = match simple {
        true => root.join(rel),
        false => match normalize(root, rel) {
            Some(lexical) => lexical,
            None => return (root.join(rel), false),
        },
    };
    let (mut cur, first): (PathBuf, &Path) = match simple {
        true => (root.to_path_buf(), rel),
        false => match lexical.strip_prefix(root) {
            Ok(rest) => (root.to_path_buf(), rest),
            Err(_) => (PathBuf::from("/"), lexical.strip_prefix("/").unwrap_or(&lexical)),
        },
    };
    let mut followed = false;
    let mut queue: std::collections::VecDeque<std::ffi::OsString> =
        first.components().map(|c| c.as_os_str().to_os_string()).collect();
    let mut hops = 40; // symlink loops end here, as ELOOP would
    let mut missing = false;
    while let Some(part) = queue.pop_front() {
        if part == ".." {
            cur.pop();
            continue;
        }
        if part == "." || part.is_empty() {
            continue;
        }
        let next = cur.join(&part);
        if missing {
            cur = next;
            continue;
        }
        match cache.lstat(&next) {
            Some(true) => {
                followed = true;
                hops -= 1;
                let Ok(target) = std::fs::read_link(&next) else { return (next, false) };
                if hops == 0 {
                    return (next, false);
                }
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::RootDir | Component::Prefix(_) => {}
                        other => queue.push_front(other.as_os_str().to_os_string()),
                    }
                }
            }
            Some(false) => cur = next,
            None => {
                missing = true;
                cur = next;
            }
        }
    }
    // Without a link on the way, a simple path only went down from the root.
    let inside = (simple && !followed) || (is_under(&cur, root) && is_under(&lexical, root));
    (cur, inside)
}

/// [`resolve_path_in_root`] for a path in normal form under a root in normal
/// form when no link is on its way: each component pushed onto one buffer
/// and asked about once (the general walk allocates a path and a queue
/// entry per component). `None` at the first link: the general walk, which
/// follows it, then starts over (the answers so far are in the cache).
fn walk_down(root: &Path, rel: &Path, cache: &LstatCache) -> Option<PathBuf> {
    let mut cur = PathBuf::with_capacity(root.as_os_str().len() + rel.as_os_str().len() + 1);
    cur.push(root);
    let mut missing = false;
    for part in rel.components() {
        cur.push(part);
        if missing {
            continue;
        }
        match cache.lstat(&cur) {
            Some(true) => return None,
            Some(false) => {}
            None => missing = true,
        }
    }
    Some(cur)
}

/// Whether `b` is a relative path in normal form: non-empty, and every
/// `/`-separated part a name (no empty part, `.` or `..`). Such a path's bytes
/// are its components joined, so byte comparisons agree with [`Path`]'s.
fn is_normal_rel(b: &[u8]) -> bool {
    !b.is_empty() && b.split(|&c| c == b'/').all(|part| !matches!(part, b"" | b"." | b".."))
}

/// Whether `b` is an absolute path in normal form other than `/`.
fn is_normal_abs(b: &[u8]) -> bool {
    b.first() == Some(&b'/') && is_normal_rel(&b[1..])
}

/// [`Path::starts_with`]: whether `p` is `base` or under it, component by
/// component. When both are absolute with no `//` and no part starting with
/// `.` (the usual case: paths built under a canonical root), their
/// components are their `/`-separated parts, so the bytes answer without
/// parsing components, which took ~1,300 instructions a call on a bundle's
/// paths. Anything else (`.`, `..`, a dotfile, `//`) asks [`Path`].
///
/// Why not [`is_normal_abs`] for the test: it splits into parts and costs
/// more than half again as much here (callgrind, 2,000 bundles: 12.9M against 7.8M
/// instructions; a one-pass rewrite of it measured 13.3M). A prefix answer
/// needs only that no component hides in the bytes, which this weaker test
/// gives (a property test holds the result to [`Path::starts_with`]).
pub fn is_under(p: &Path, base: &Path) -> bool {
    let (pb, bb) = (key(p), key(base));
    match is_plain(pb) && is_plain(bb) {
        true => bytes_under(pb, bb),
        false => p.starts_with(base),
    }
}

/// Absolute, with no `//` and no part starting with `.`: every component
/// after the root is a plain name, at the `/`s of the bytes (a trailing `/`
/// aside).
fn is_plain(b: &[u8]) -> bool {
    b.first() == Some(&b'/') && b.iter().zip(&b[1..]).all(|(&x, &y)| x != b'/' || (y != b'/' && y != b'.'))
}

/// [`is_plain`] with no trailing `/`, and not `/` itself: its components
/// after the root are exactly its `/`-separated parts, so its bytes are its
/// normal form.
fn is_plain_exact(b: &[u8]) -> bool {
    b.len() > 1 && b.last() != Some(&b'/') && is_plain(b)
}

/// `a == b` for paths ([`Path`]'s equality, component by component), on
/// bytes when they decide it: equal bytes are equal paths, and two paths
/// in exact plain form ([`is_plain_exact`]) are equal only if their bytes
/// are. `Path`'s own comparison walks both paths from their ends whenever
/// the bytes differ (~900 instructions for two bundle paths; ~10,000 such
/// comparisons in a validate of 2,000 bundles).
pub fn same_path(a: &Path, b: &Path) -> bool {
    let (x, y) = (key(a), key(b));
    if x == y {
        return true;
    }
    if is_plain_exact(x) && is_plain_exact(y) {
        return false;
    }
    a == b
}

/// `p` relative to `root`, on bytes, when both are in normal form and `p` is
/// strictly under `root`: what `p.strip_prefix(root)` gives, without walking
/// components. `None` otherwise (then ask [`Path::strip_prefix`]).
pub fn rel_bytes<'p>(root: &Path, p: &'p Path) -> Option<&'p [u8]> {
    let (r, b) = (key(root), key(p));
    let rest = b.strip_prefix(r)?.strip_prefix(b"/")?;
    // `p` plain with no trailing `/` (one pass over it: the usual case)
    // makes both normal, `root` being a non-empty prefix of it ending at a `/`;
    // otherwise (a dotfile on the way, say) the parts are split and looked at.
    let plain = !r.is_empty() && is_plain_exact(b);
    (plain || (is_normal_abs(r) && is_normal_rel(rest))).then_some(rest)
}

/// Raw file-name bytes as text that shows every byte: valid UTF-8 stays as
/// it is, except that a backslash is doubled and control characters and
/// invalid bytes become `\xNN`. Distinct names stay distinct, and nothing in
/// the result can steer a terminal.
pub fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    // The usual name is printable ASCII with no backslash: itself.
    if bytes.iter().all(|&b| matches!(b, b' '..=b'~') && b != b'\\')
        && let Ok(plain) = std::str::from_utf8(bytes)
    {
        return plain.to_string();
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    for b in c.to_string().bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `path` relative to `root` with `/` separators, for display and evidence.
pub fn rel_to(root: &Path, path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // Both in normal form (the usual case): the rest after the root's bytes,
    // which is what `strip_prefix` gives, without walking components.
    let rest = match rel_bytes(root, path) {
        Some(rest) => rest,
        None => path.strip_prefix(root).unwrap_or(path).as_os_str().as_bytes(),
    };
    let s = String::from_utf8_lossy(rest);
    let s = if s.contains('\\') { s.replace('\\', "/") } else { s.into_owned() };
    if s.is_empty() { ".".to_string() } else { s }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A fresh random identifier: a UTC timestamp plus 6 random bytes in hex,
/// sortable by time and unique across hosts.
pub fn new_id() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).expect("the OS random source is unavailable");
    let ts = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = ts.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{}-{}", compact.to_lowercase(), hex::encode(b))
}

pub mod tree;

#[cfg(test)]
mod tests;
