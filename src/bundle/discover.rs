//! Turning `validate PATH...` arguments into `bundle.json` files, as a
//! stream in path order: a directory is listed only when the walk reaches it,
//! so memory holds the (sorted) listings on the way down, never the result.

use anyhow::Result;
use std::ffi::OsStr;
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
pub fn expand(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    Ok(Walk::new(path).map(Iterator::collect))
}

/// The `bundle.json` files of one argument, in [`Path`] order (component by
/// component, as `Vec<PathBuf>::sort` orders them): a depth-first walk that
/// lists each directory once, sorted, when it gets there.
///
/// A directory is never opened just to be classified: one `lstat` of its
/// `bundle.json`. A bundle directory is not searched further.
#[derive(Debug)]
pub struct Walk {
    /// The argument itself, when it is a manifest or a bundle directory.
    single: Option<PathBuf>,
    /// The listings being walked, outermost first.
    stack: Vec<Listing>,
}

impl Walk {
    /// `None` when nothing is at `path`.
    pub fn new(path: &Path) -> Option<Walk> {
        let single = |p: PathBuf| Walk { single: Some(p), stack: Vec::new() };
        if !path.is_dir() {
            return present(path).then(|| single(path.to_path_buf()));
        }
        let direct = path.join("bundle.json");
        if present(&direct) {
            return Some(single(direct));
        }
        Some(Walk { single: None, stack: vec![Listing::subdirs(path)] })
    }
}

impl Iterator for Walk {
    type Item = PathBuf;

    fn next(&mut self) -> Option<PathBuf> {
        if let Some(p) = self.single.take() {
            return Some(p);
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
            if name != ".git" && top.holds_manifest(name, &manifest) {
                return Some(manifest);
            }
            if !skipped(&dir, name) {
                self.stack.push(Listing::subdirs(&dir));
            }
        }
    }
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
        use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawDir};
        let mut names = Vec::new();
        let mut spans = Vec::new();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(CWD, dir, flags, Mode::empty()).ok();
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

/// Several sorted streams as one sorted stream, each path once.
pub struct Merged<I: Iterator<Item = PathBuf>> {
    heads: Vec<(Option<PathBuf>, I)>,
    last: Option<PathBuf>,
}

impl<I: Iterator<Item = PathBuf>> Merged<I> {
    pub fn new(streams: Vec<I>) -> Self {
        let heads = streams.into_iter().map(|mut s| (s.next(), s)).collect();
        Merged { heads, last: None }
    }
}

impl<I: Iterator<Item = PathBuf>> Iterator for Merged<I> {
    type Item = PathBuf;

    fn next(&mut self) -> Option<PathBuf> {
        loop {
            let (i, _) = self
                .heads
                .iter()
                .enumerate()
                .filter_map(|(i, (h, _))| h.as_ref().map(|h| (i, h)))
                .min_by(|a, b| a.1.cmp(b.1))?;
            let (head, stream) = &mut self.heads[i];
            let next = std::mem::replace(head, stream.next())?;
            if !self.last.as_deref().is_some_and(|last| crate::fsx::same_path(last, &next)) {
                self.last = Some(next.clone());
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
        let got: Vec<PathBuf> = Walk::new(d.path()).unwrap().collect();
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
        let one: Vec<PathBuf> = Walk::new(&d.path().join("b")).unwrap().collect();
        assert_eq!(one, [d.path().join("b/bundle.json")]);
        let file: Vec<PathBuf> = Walk::new(&d.path().join("b/bundle.json")).unwrap().collect();
        assert_eq!(file, [d.path().join("b/bundle.json")]);
        assert!(Walk::new(&d.path().join("missing")).is_none());
    }

    #[test]
    fn merged_streams_are_sorted_and_each_path_comes_once() {
        let d = tree(&["x/1/bundle.json", "x/2/bundle.json", "y/bundle.json"]);
        let walks = ["x", "x/2", "y", "x"].iter().map(|a| Walk::new(&d.path().join(a)).unwrap()).collect();
        let got: Vec<PathBuf> = Merged::new(walks).collect();
        let want: Vec<PathBuf> =
            ["x/1/bundle.json", "x/2/bundle.json", "y/bundle.json"].iter().map(|p| d.path().join(p)).collect();
        assert_eq!(got, want);
    }
}
