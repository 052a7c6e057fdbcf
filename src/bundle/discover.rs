//! Turning `validate PATH...` arguments into `bundle.json` files, as a
//! stream in path order: a directory is listed only when the walk reaches it,
//! so memory holds the (sorted) listings on the way down, never the result.

use anyhow::Result;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Directories never searched for bundles: VCS metadata, build output, and
/// evidence directories (their `runs/` archives hold copies of artifacts, not bundles).
/// `open`: `dir` itself, when the walk has it open (asked by name from it,
/// not by the whole path again).
fn skipped(dir: &Path, name: &OsStr, open: Option<&OwnedFd>) -> bool {
    if matches!(name.as_bytes(), b".git" | b"target" | b"node_modules" | b"artifacts" | b".agentplane") {
        return true;
    }
    match open {
        // `exists` follows links and says no on any error: so does this.
        Some(fd) => rustix::fs::statat(fd, "evidence.jsonl", rustix::fs::AtFlags::empty()).is_ok(),
        None => dir.join("evidence.jsonl").exists(),
    }
}

/// Whether something that is not a directory is at `p` (a `bundle.json` that
/// is a FIFO, device or link is still found, so the parse check reports it
/// rather than the bundle silently vanishing; it is never opened here).
fn present(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir())
}

/// Expand one argument: a `bundle.json` file, a bundle directory, or a tree.
/// Returns `None` when the path does not exist. The result is sorted.
pub fn expand(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    Ok(Walk::new(path).map(|w| w.map(Found::into_path).collect()))
}

/// A `bundle.json` the walk found, and, when the walk was asked to open
/// ahead ([`Walk::opening`]), its directory and the manifest itself: the
/// open that tells the walk a directory is a bundle is the one its check
/// reads from, so the kernel looks up the bundle's name and `bundle.json`,
/// never its whole path.
#[derive(Debug)]
pub struct Found {
    pub manifest: PathBuf,
    pub opened: Option<Opened>,
}

impl Found {
    /// Only the path: whoever checks it opens it.
    pub fn path(manifest: PathBuf) -> Found {
        Found { manifest, opened: None }
    }

    pub fn into_path(self) -> PathBuf {
        self.manifest
    }
}

/// A bundle directory and its `bundle.json`, opened by the walk that found
/// them: the directory by its name in the listing that showed it (never
/// through a link), the manifest by its name in that directory, as
/// [`crate::fsx::open_regular_meta_via`] opens it (no link followed, no
/// blocking on a FIFO), with its `fstat`. Whether it is a regular file of a
/// readable size is for the checker to judge, as for a manifest it opens.
#[derive(Debug)]
pub struct Opened {
    pub dir: OwnedFd,
    pub file: std::fs::File,
    pub meta: std::fs::Metadata,
    /// Its place in the [`OpenAhead`] budget, given back when it is dropped.
    _held: Held,
}

/// How many bundles a walk may hold open ahead of their checks, two
/// descriptors each. Shared by every walk of one `validate`, so that neither
/// the window of bundles in flight nor the number of path arguments (each
/// stream holds its next bundle) can run the process out of descriptors:
/// past the budget, bundles are found by a `stat` of their manifest and
/// opened by their path, as without it.
#[derive(Debug, Clone)]
pub struct OpenAhead(Arc<AtomicUsize>);

impl OpenAhead {
    /// Enough for the validate window ([`crate::stages::validate::WINDOW`])
    /// and a few streams; more would hold descriptors for nothing.
    pub const MAX: usize = 320;
    /// Descriptors left to everything else: the checks' own opens, the
    /// walk's listings, output and the spool.
    const RESERVE: u64 = 256;

    /// A budget of `n` bundles.
    pub fn new(n: usize) -> OpenAhead {
        OpenAhead(Arc::new(AtomicUsize::new(n)))
    }

    /// The budget this process's descriptor limit (`RLIMIT_NOFILE`, soft)
    /// allows: none under a limit of 256.
    pub fn from_limit() -> OpenAhead {
        use nix::sys::resource::{Resource, getrlimit};
        let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
        let n = usize::try_from(soft.saturating_sub(Self::RESERVE) / 2).unwrap_or(usize::MAX);
        OpenAhead::new(n.min(Self::MAX))
    }

    /// A place, if one is left.
    fn take(&self) -> Option<Held> {
        self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).ok()?;
        Some(Held(self.0.clone()))
    }

    /// Places left (for tests).
    pub fn left(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// The `bundle.json` files of one argument, in [`Path`] order (component by
/// component, as `Vec<PathBuf>::sort` orders them): a depth-first walk that
/// lists each directory once, sorted, when it gets there.
///
/// A directory is classified by one `lstat` of its `bundle.json` ([`Walk::new`]),
/// or, by a walk that opens ahead ([`Walk::opening`]), by opening it and its
/// `bundle.json`: opens its check would make anyway, and what it lists when
/// it is not a bundle. A bundle directory is not searched further.
#[derive(Debug)]
pub struct Walk {
    /// The argument itself, when it is a manifest or a bundle directory.
    single: Option<PathBuf>,
    /// The listings being walked, outermost first.
    stack: Vec<Listing>,
    /// Open each bundle found below the argument ([`Found::opened`]), within this budget.
    ahead: Option<OpenAhead>,
}

impl Walk {
    /// `None` when nothing is at `path`.
    pub fn new(path: &Path) -> Option<Walk> {
        let single = |p: PathBuf| Walk { single: Some(p), stack: Vec::new(), ahead: None };
        if !path.is_dir() {
            return present(path).then(|| single(path.to_path_buf()));
        }
        let direct = path.join("bundle.json");
        if present(&direct) {
            return Some(single(direct));
        }
        Some(Walk { single: None, stack: vec![Listing::subdirs(path)], ahead: None })
    }

    /// [`Walk::new`], opening each bundle it finds below `path` while
    /// `ahead` has room. (The argument itself, when it is a bundle, is found
    /// by its path and opened by its checker.)
    pub fn opening(path: &Path, ahead: OpenAhead) -> Option<Walk> {
        Walk::new(path).map(|w| Walk { ahead: Some(ahead), ..w })
    }
}

impl Iterator for Walk {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        if let Some(p) = self.single.take() {
            return Some(Found::path(p));
        }
        loop {
            let top = self.stack.last_mut()?;
            let Some(dir) = top.next_path() else {
                self.stack.pop();
                continue;
            };
            let name = dir.file_name().unwrap_or_default();
            // A bundle is found before the skips, which a bundle's author
            // controls (its name, an `evidence.jsonl` beside the manifest):
            // no bundle hides from CI that way.
            let manifest = dir.join("bundle.json");
            let mut sub = None;
            if name != ".git" {
                match top.probe(name, &manifest, self.ahead.as_ref()) {
                    Probe::Bundle(opened) => return Some(Found { manifest, opened }),
                    Probe::Not(fd) => sub = fd,
                }
            }
            if !skipped(&dir, name, sub.as_ref()) {
                self.stack.push(match sub {
                    Some(fd) => Listing::subdirs_of(&dir, fd),
                    None => Listing::subdirs(&dir),
                });
            }
        }
    }
}

/// What one subdirectory of a listing is.
enum Probe {
    /// A bundle: its manifest is there (not a directory), opened when asked.
    Bundle(Option<Opened>),
    /// Not a bundle; the subdirectory itself when it was opened to find out
    /// (the walk lists it through that descriptor).
    Not(Option<OwnedFd>),
}

/// The real subdirectories of one directory (symlinks are not followed), by
/// name: the names in one buffer, sorted by byte order (a component's order in
/// [`Path`]'s). An unreadable directory has none: unreadable corners of a tree
/// are not bundles.
#[derive(Debug)]
struct Listing {
    dir: PathBuf,
    /// The directory, kept open while its subdirectories are asked about:
    /// each question is a lookup of two names from it, not of the whole path.
    fd: Option<std::os::fd::OwnedFd>,
    names: Vec<u8>,
    /// `(start, end)` of each name in `names`, in sorted order, next last.
    spans: Vec<(u32, u32)>,
}

impl Listing {
    fn subdirs(dir: &Path) -> Listing {
        use rustix::fs::{CWD, Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        Listing::list(dir, rustix::fs::openat(CWD, dir, flags, Mode::empty()).ok())
    }

    /// [`Listing::subdirs`] of a directory already open.
    fn subdirs_of(dir: &Path, fd: OwnedFd) -> Listing {
        Listing::list(dir, Some(fd))
    }

    fn list(dir: &Path, fd: Option<OwnedFd>) -> Listing {
        use rustix::fs::{AtFlags, FileType, RawDir};
        let mut names = Vec::new();
        let mut spans = Vec::new();
        if let Some(fd) = &fd {
            // Listed through `fd` itself (kept for the lookups), into a
            // buffer on the stack.
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
            let mut rd = RawDir::new(fd, &mut buf);
            // The file type comes from the listing (d_type): no stat per entry.
            while let Some(Ok(e)) = rd.next() {
                let is_dir = match e.file_type() {
                    FileType::Directory => true,
                    FileType::Unknown => rustix::fs::statat(fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
                    _ => false,
                };
                let name = e.file_name().to_bytes();
                if !is_dir || name == b"." || name == b".." {
                    continue;
                }
                let start = names.len();
                names.extend_from_slice(name);
                // Over 4 GiB of names in one directory: stop listing rather than wrap.
                let (Ok(s), Ok(end)) = (u32::try_from(start), u32::try_from(names.len())) else { break };
                spans.push((s, end));
            }
        }
        let name = |&(s, e): &(u32, u32)| &names[s as usize..e as usize];
        // Reversed: the next name is popped from the end.
        spans.sort_unstable_by(|a, b| name(b).cmp(name(a)));
        Listing { dir: dir.to_path_buf(), fd, names, spans }
    }

    /// Whether the subdirectory `name` is a bundle. With a place in `ahead`,
    /// by opening it (by name, not through a link) and its `bundle.json`:
    /// a bundle is then handed on open, and a directory that is not one is
    /// listed through the descriptor. Whatever that open cannot tell (no
    /// place left, a link or a socket at `bundle.json`, no permission) is
    /// asked as without it ([`Listing::holds_manifest`]).
    fn probe(&self, name: &OsStr, manifest: &Path, ahead: Option<&OpenAhead>) -> Probe {
        if let (Some(fd), Some(held)) = (&self.fd, ahead.and_then(OpenAhead::take))
            && let Some(probe) = open_probe(fd, name, held)
        {
            return probe;
        }
        if self.holds_manifest(name, manifest) { Probe::Bundle(None) } else { Probe::Not(None) }
    }

    /// Whether the subdirectory `name` holds a `bundle.json` that is not a
    /// directory ([`present`], asked relative to this directory).
    fn holds_manifest(&self, name: &OsStr, manifest: &Path) -> bool {
        use rustix::fs::{AtFlags, FileType};
        let Some(fd) = &self.fd else { return present(manifest) };
        let mut rel = Vec::with_capacity(name.len() + 12);
        rel.extend_from_slice(name.as_bytes());
        rel.extend_from_slice(b"/bundle.json");
        rustix::fs::statat(fd, OsStr::from_bytes(&rel), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) != FileType::Directory)
    }

    fn next_path(&mut self) -> Option<PathBuf> {
        let (s, e) = self.spans.pop()?;
        Some(self.dir.join(OsStr::from_bytes(&self.names[s as usize..e as usize])))
    }
}

/// [`Listing::probe`] by opening: `None` when the opens cannot tell.
fn open_probe(listing: &OwnedFd, name: &OsStr, held: Held) -> Option<Probe> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let dir = rustix::fs::openat(listing, name, dir_flags, Mode::empty()).ok()?;
    // The flags of `fsx::open_regular_meta_via`: a FIFO does not block, a
    // link is refused (ELOOP: then the `lstat` finds it, and the checker
    // reports it).
    let file_flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(&dir, "bundle.json", file_flags, Mode::empty()) {
        Ok(fd) => {
            let file = std::fs::File::from(fd);
            let meta = file.metadata().ok()?;
            if meta.is_dir() {
                return Some(Probe::Not(Some(dir)));
            }
            Some(Probe::Bundle(Some(Opened { dir, file, meta, _held: held })))
        }
        Err(Errno::NOENT) => Some(Probe::Not(Some(dir))),
        Err(_) => None,
    }
}

/// Several sorted streams as one sorted stream, each path once.
pub struct Merged<I: Iterator<Item = Found>> {
    heads: Vec<(Option<Found>, I)>,
    last: Option<PathBuf>,
}

impl<I: Iterator<Item = Found>> Merged<I> {
    pub fn new(streams: Vec<I>) -> Self {
        let heads = streams.into_iter().map(|mut s| (s.next(), s)).collect();
        Merged { heads, last: None }
    }
}

impl<I: Iterator<Item = Found>> Iterator for Merged<I> {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        loop {
            let (i, _) = self
                .heads
                .iter()
                .enumerate()
                .filter_map(|(i, (h, _))| h.as_ref().map(|h| (i, &h.manifest)))
                .min_by(|a, b| a.1.cmp(b.1))?;
            let (head, stream) = &mut self.heads[i];
            let next = std::mem::replace(head, stream.next())?;
            if !self.last.as_deref().is_some_and(|last| crate::fsx::same_path(last, &next.manifest)) {
                self.last = Some(next.manifest.clone());
                return Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for p in paths {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "{}").unwrap();
        }
        d
    }

    #[test]
    fn the_walk_yields_what_a_sorted_list_would_hold() {
        // Names chosen so that byte order of whole paths ("a-b" < "a/b") and
        // component order ("a" < "a-b") disagree.
        let d = tree(&[
            "a/b/bundle.json",
            "a-b/bundle.json",
            "a/bundle.json.txt",
            "a/c/d/bundle.json",
            "a.x/bundle.json",
            "z/.git/bundle.json",
            "z/target/t/bundle.json",
            "z/target/bundle.json",
            "z/ev/evidence.jsonl",
            "z/ev/inner/bundle.json",
            "Z/bundle.json",
        ]);
        let got: Vec<PathBuf> = Walk::new(d.path()).unwrap().map(Found::into_path).collect();
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
        let rel: Vec<String> = got.iter().map(|p| p.strip_prefix(d.path()).unwrap().display().to_string()).collect();
        // A bundle named like a skipped folder is still found; what is under
        // a skipped folder or an evidence directory is not.
        assert_eq!(
            rel,
            [
                "Z/bundle.json",
                "a/b/bundle.json",
                "a/c/d/bundle.json",
                "a-b/bundle.json",
                "a.x/bundle.json",
                "z/target/bundle.json"
            ]
        );
    }

    #[test]
    fn an_argument_that_is_a_bundle_or_a_manifest_is_itself() {
        let d = tree(&["b/bundle.json", "b/inner/bundle.json"]);
        let one: Vec<PathBuf> = Walk::new(&d.path().join("b")).unwrap().map(Found::into_path).collect();
        assert_eq!(one, [d.path().join("b/bundle.json")]);
        let file: Vec<PathBuf> = Walk::new(&d.path().join("b/bundle.json")).unwrap().map(Found::into_path).collect();
        assert_eq!(file, [d.path().join("b/bundle.json")]);
        assert!(Walk::new(&d.path().join("missing")).is_none());
    }

    /// The opening walk finds what the plain walk finds. It hands on open
    /// the bundles whose `bundle.json` it could open (a FIFO included: the
    /// checker refuses it as it would by path), and the others by path: a
    /// manifest that is a link is neither followed nor hidden. A
    /// `bundle.json` directory is not a bundle; the walk goes on below it.
    #[test]
    fn an_opening_walk_finds_what_the_plain_walk_finds() {
        let d = tree(&["a/bundle.json", "a-b/bundle.json", "n/m/bundle.json", "dir/bundle.json/x/bundle.json"]);
        let p = d.path();
        fs::create_dir(p.join("link")).unwrap();
        std::os::unix::fs::symlink("../a/bundle.json", p.join("link/bundle.json")).unwrap();
        fs::create_dir(p.join("fifo")).unwrap();
        nix::unistd::mkfifo(&p.join("fifo/bundle.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let plain: Vec<PathBuf> = Walk::new(p).unwrap().map(Found::into_path).collect();
        let ahead = OpenAhead::new(100);
        let opening: Vec<Found> = Walk::opening(p, ahead.clone()).unwrap().collect();
        let paths: Vec<PathBuf> = opening.iter().map(|f| f.manifest.clone()).collect();
        assert_eq!(paths, plain);
        let shown: Vec<(String, Option<bool>)> = opening
            .iter()
            .map(|f| {
                let rel = f.manifest.strip_prefix(p).unwrap().display().to_string();
                (rel, f.opened.as_ref().map(|o| o.meta.is_file()))
            })
            .collect();
        let want = [
            ("a/bundle.json", Some(true)),
            ("a-b/bundle.json", Some(true)),
            ("dir/bundle.json/x/bundle.json", Some(true)),
            ("fifo/bundle.json", Some(false)),
            ("link/bundle.json", None),
            ("n/m/bundle.json", Some(true)),
        ];
        assert_eq!(shown, want.map(|(r, o)| (r.to_string(), o)));
        // Five held open; each gives its place back when dropped.
        assert_eq!(ahead.left(), 95);
        drop(opening);
        assert_eq!(ahead.left(), 100);
        // An argument that is itself a bundle comes by its path.
        let one: Vec<Found> = Walk::opening(&p.join("a"), ahead.clone()).unwrap().collect();
        assert!(one.len() == 1 && one[0].opened.is_none());
    }

    /// Past its budget the walk finds bundles by path, as without one, and
    /// opens again once a place is given back.
    #[test]
    fn an_opening_walk_keeps_to_its_budget() {
        let d = tree(&["a/bundle.json", "b/bundle.json", "c/bundle.json"]);
        let ahead = OpenAhead::new(1);
        let mut walk = Walk::opening(d.path(), ahead.clone()).unwrap();
        let a = walk.next().unwrap();
        let b = walk.next().unwrap();
        assert!(a.opened.is_some() && b.opened.is_none());
        assert_eq!(ahead.left(), 0);
        drop(a);
        let c = walk.next().unwrap();
        assert!(c.opened.is_some());
        assert_eq!(c.manifest, d.path().join("c/bundle.json"));
        assert!(walk.next().is_none());
        // Under a descriptor limit of 256, no budget at all.
        assert!(OpenAhead::from_limit().left() <= OpenAhead::MAX);
    }

    #[test]
    fn merged_streams_are_sorted_and_each_path_comes_once() {
        let d = tree(&["x/1/bundle.json", "x/2/bundle.json", "y/bundle.json"]);
        let walks = ["x", "x/2", "y", "x"].iter().map(|a| Walk::new(&d.path().join(a)).unwrap()).collect();
        let got: Vec<PathBuf> = Merged::new(walks).map(Found::into_path).collect();
        let want: Vec<PathBuf> =
            ["x/1/bundle.json", "x/2/bundle.json", "y/bundle.json"].iter().map(|p| d.path().join(p)).collect();
        assert_eq!(got, want);
    }
}
