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

/// Open `path` for reading only if it is a regular file: the last component
/// is not followed when it is a symlink (`O_NOFOLLOW`), and the open never
/// blocks on a FIFO (`O_NONBLOCK`); the type is then checked on the open file
/// (`fstat`), so nothing can swap it between check and read. `cap` bounds its
/// size (`None`: any size, for streaming).
pub fn open_regular(path: &Path, cap: Option<u64>) -> Result<File, RegularError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC;
    let file = match OpenOptions::new().read(true).custom_flags(flags.bits()).open(path) {
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
    let ft = meta.file_type();
    let not = if ft.is_file() {
        match cap {
            Some(cap) if meta.len() > cap => Some(NotRegular::TooLarge { cap, len: meta.len() }),
            _ => None,
        }
    } else if ft.is_dir() {
        Some(NotRegular::Directory)
    } else if ft.is_fifo() {
        Some(NotRegular::Fifo)
    } else if ft.is_socket() {
        Some(NotRegular::Socket)
    } else {
        Some(NotRegular::Device)
    };
    match not {
        Some(kind) => Err(RegularError { path: path.to_path_buf(), kind: Some(kind), io: None }),
        None => Ok(file),
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

/// Read a regular file of at most `cap` bytes (see [`open_regular`]).
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, RegularError> {
    let mut f = open_regular(path, Some(cap))?;
    let mut buf = Vec::new();
    // `take` guards against a file that grows after the fstat.
    (&mut f).take(cap + 1).read_to_end(&mut buf).map_err(|e| RegularError {
        path: path.to_path_buf(),
        kind: None,
        io: Some(e),
    })?;
    if buf.len() as u64 > cap {
        return Err(RegularError {
            path: path.to_path_buf(),
            kind: Some(NotRegular::TooLarge { cap, len: buf.len() as u64 }),
            io: None,
        });
    }
    Ok(buf)
}

/// A secret named by a `NAME_FILE` variable: the operator's path, so its
/// links are followed (mounted secrets are often links), but the file itself
/// must be a regular one (a FIFO never blocks), UTF-8 and at most
/// [`caps::DOCUMENT`].
pub fn read_secret_file(path: &Path) -> Result<String, RegularError> {
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let bytes = read_regular(&real, caps::DOCUMENT).map_err(|e| RegularError { path: path.to_path_buf(), ..e })?;
    String::from_utf8(bytes).map_err(|_| RegularError {
        path: path.to_path_buf(),
        kind: None,
        io: Some(std::io::Error::new(std::io::ErrorKind::InvalidData, "the secret is not UTF-8")),
    })
}

/// sha256 (hex) and length of a regular file, streamed (any size).
pub fn sha256_regular(path: &Path) -> Result<(String, u64), RegularError> {
    let mut f = open_regular(path, None)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| RegularError { path: path.to_path_buf(), kind: None, io: Some(e) })?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_and_catches_escapes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("b", root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/out")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_root(&root, "a/link/f"), (root.join("a/b/f"), true));
        assert_eq!(resolve_in_root(&root, "./a/b/../b/f"), (root.join("a/b/f"), true));
        assert_eq!(resolve_in_root(&root, "a/missing/x"), (root.join("a/missing/x"), true));
        assert!(!resolve_in_root(&root, "a/out/passwd").1);
        assert!(!resolve_in_root(&root, "../x").1);
        assert!(!resolve_in_root(&root, "/etc/passwd").1);
        assert!(!resolve_in_root(&root, "loop/x").1);
        assert_eq!(resolve_in_root(&root, "a/b/f").0, root.join("a/b/f").canonicalize().unwrap());
    }

    #[test]
    fn only_regular_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("f"), "hello").unwrap();
        std::os::unix::fs::symlink(p("f"), p("link")).unwrap();
        nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_regular(&p("f"), 5).unwrap(), b"hello");
        assert_eq!(sha256_regular(&p("f")).unwrap().1, 5);
        let kind = |r: Result<Vec<u8>, RegularError>| r.unwrap_err().kind;
        assert_eq!(kind(read_regular(&p("f"), 4)), Some(NotRegular::TooLarge { cap: 4, len: 5 }));
        assert_eq!(kind(read_regular(&p("link"), 99)), Some(NotRegular::Symlink));
        assert_eq!(kind(read_regular(&p("fifo"), 99)), Some(NotRegular::Fifo));
        assert_eq!(kind(read_regular(d.path(), 99)), Some(NotRegular::Directory));
        assert_eq!(kind(read_regular(Path::new("/dev/zero"), 99)), Some(NotRegular::Device));
        assert_eq!(kind(read_regular(&p("missing"), 99)), Some(NotRegular::Missing));
        let msg = read_regular(&p("fifo"), 99).unwrap_err().to_string();
        assert!(msg.contains("fifo") && msg.contains("FIFO"), "{msg}");
    }
}

/// Lowercase hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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
    Ok(hex::encode(h.finalize()))
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
#[derive(Debug, Default)]
pub struct LstatCache(std::cell::RefCell<std::collections::HashMap<PathBuf, Option<bool>>>);

impl LstatCache {
    fn lstat(&self, p: &Path) -> Option<bool> {
        if let Some(r) = self.0.borrow().get(p) {
            return *r;
        }
        let r = std::fs::symlink_metadata(p).ok().map(|m| m.file_type().is_symlink());
        self.0.borrow_mut().insert(p.to_path_buf(), r);
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
    let Some(lexical) = normalize(root, rel) else {
        return (root.join(rel), false);
    };
    let (mut cur, first): (PathBuf, &Path) = match lexical.strip_prefix(root) {
        Ok(rest) => (root.to_path_buf(), rest),
        Err(_) => (PathBuf::from("/"), lexical.strip_prefix("/").unwrap_or(&lexical)),
    };
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
    let inside = cur.starts_with(root) && lexical.starts_with(root);
    (cur, inside)
}

/// Raw file-name bytes as text that shows every byte: valid UTF-8 stays as
/// it is, except that a backslash is doubled and control characters and
/// invalid bytes become `\xNN`. Distinct names stay distinct, and nothing in
/// the result can steer a terminal.
pub fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
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
    let p = path.strip_prefix(root).unwrap_or(path);
    let s = p.to_string_lossy().replace('\\', "/");
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

#[cfg(test)]
mod more_tests {
    use super::*;

    /// A file that accepts `room` bytes, then fails like a full disk.
    struct Full {
        data: std::cell::RefCell<Vec<u8>>,
        room: usize,
        fail_sync: bool,
    }

    impl LineFile for Full {
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.data.borrow().len() as u64)
        }
        fn write_once(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
            }
            self.room -= n;
            self.data.borrow_mut().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn sync(&self) -> std::io::Result<()> {
            if self.fail_sync { Err(std::io::Error::from_raw_os_error(nix::libc::EIO)) } else { Ok(()) }
        }
        fn cut(&self, len: u64) -> std::io::Result<()> {
            self.data.borrow_mut().truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_failed_append_leaves_only_whole_lines() {
        let mut f = Full { data: b"line 1\n".to_vec().into(), room: 12, fail_sync: false };
        append_whole(&mut f, b"line 2").unwrap();
        // A short write (the disk filled mid-line) is cut back.
        assert!(append_whole(&mut f, b"line 3 is long").is_err());
        assert_eq!(f.data.borrow().as_slice(), b"line 1\nline 2\n");
        // A write refused outright leaves the file as it was.
        assert_eq!(append_whole(&mut f, b"x").unwrap_err().raw_os_error(), Some(nix::libc::ENOSPC));
        assert_eq!(f.data.borrow().as_slice(), b"line 1\nline 2\n");
        // So does a failed fsync after a whole write.
        let mut f = Full { data: Vec::new().into(), room: 99, fail_sync: true };
        assert!(append_whole(&mut f, b"x").is_err());
        assert!(f.data.borrow().is_empty());
    }

    /// A 16 KiB tmpfs, unmounted on drop; `None` where mounting is not allowed.
    struct TinyFs(tempfile::TempDir);

    impl TinyFs {
        fn mount() -> Option<TinyFs> {
            let d = tempfile::tempdir().ok()?;
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
                .arg(d.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(TinyFs(d))
        }
    }

    impl Drop for TinyFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0.path()).status();
        }
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn a_full_disk_mid_line_leaves_the_file_as_it_was() {
        let Some(fs_) = TinyFs::mount() else {
            eprintln!("skipped: cannot mount a tmpfs here (needs root); append_whole's own test covers the logic");
            return;
        };
        let chain = fs_.0.path().join("evidence.jsonl");
        append_line(&chain, b"line 1").unwrap();
        // Fill the rest of the file system.
        let mut filler = File::create(fs_.0.path().join("filler")).unwrap();
        while filler.write(&[b'x'; 4096]).is_ok_and(|n| n > 0) {}
        let err = append_line(&chain, &[b'y'; 10_000]).unwrap_err();
        assert!(format!("{err:#}").contains("evidence.jsonl"), "{err:#}");
        let left = fs::read(&chain).unwrap();
        assert!(left == b"line 1\n", "the file was not cut back: {} bytes", left.len());
    }

    #[test]
    fn appending_to_a_file_writes_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("chain");
        append_line(&p, b"a").unwrap();
        append_line(&p, b"b").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"a\nb\n");
    }

    #[test]
    fn escaping_shows_every_byte_and_keeps_names_apart() {
        assert_eq!(escape_bytes("bundles/é.txt".as_bytes()), "bundles/é.txt");
        assert_eq!(escape_bytes(b"a\xffb\xfe"), "a\\xffb\\xfe");
        assert_eq!(escape_bytes(b"a\\xff"), "a\\\\xff");
        assert_eq!(escape_bytes(b"\x1b[31mred\n"), "\\x1b[31mred\\x0a");
    }
}
