//! Tests of the file-system helpers.

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

/// A directory holding `f` ("hello"), `link` (to `f`) and the FIFO `fifo`.
fn odd_files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f"), "hello").unwrap();
    std::os::unix::fs::symlink(d.path().join("f"), d.path().join("link")).unwrap();
    nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    d
}

#[test]
fn only_regular_files_are_read() {
    let d = odd_files();
    let p = |n: &str| d.path().join(n);
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

/// `readable_regular` judges, without opening, what `open_regular` judges by
/// opening: the same verdict and message for a file, a directory, a FIFO, a
/// link, a missing name, a path through a file, and a file with no read
/// permission (readable by root, as `open` finds). A device node (root only)
/// is a device, and is never opened.
#[test]
fn a_file_judged_without_opening_gets_the_open_verdict() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = odd_files();
    let p = |n: &str| d.path().join(n);
    std::fs::write(p("locked"), "no").unwrap();
    std::fs::set_permissions(p("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::create_dir(p("dir")).unwrap();
    let shown = |r: Result<(), RegularError>| r.map_err(|e| (e.kind, e.to_string()));
    for name in ["f", "locked", "dir", "link", "fifo", "missing", "f/below"] {
        let opened = shown(open_regular(&p(name), None).map(drop));
        assert_eq!(shown(readable_regular(&p(name))), opened, "{name}");
    }
    assert_eq!(readable_regular(&p("fifo")).unwrap_err().kind, Some(NotRegular::Fifo));
    if nix::unistd::geteuid().is_root() {
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        let dev = nix::sys::stat::makedev(5, 0);
        nix::sys::stat::mknod(&p("tty"), nix::sys::stat::SFlag::S_IFCHR, mode, dev).unwrap();
        assert_eq!(readable_regular(&p("tty")).unwrap_err().kind, Some(NotRegular::Device));
    }
}

#[test]
fn a_name_in_an_open_directory_is_read_with_the_same_checks() {
    let d = odd_files();
    let p = |n: &str| d.path().join(n);
    std::fs::write(p("empty"), "").unwrap();
    std::fs::create_dir(p("sub")).unwrap();
    let dir = std::fs::File::open(d.path()).unwrap();
    let read = |n: &str, cap: u64| read_regular_in(&dir, d.path(), n, cap);
    let kind = |r: Result<Vec<u8>, RegularError>| r.unwrap_err().kind;
    assert_eq!(read("f", 5).unwrap(), b"hello");
    assert_eq!(read("f", 99).unwrap(), b"hello");
    assert_eq!(read("empty", 99).unwrap(), b"");
    assert_eq!(kind(read("f", 4)), Some(NotRegular::TooLarge { cap: 4, len: 5 }));
    assert_eq!(kind(read("link", 99)), Some(NotRegular::Symlink));
    assert_eq!(kind(read("fifo", 99)), Some(NotRegular::Fifo));
    assert_eq!(kind(read("sub", 99)), Some(NotRegular::Directory));
    assert_eq!(kind(read("missing", 99)), Some(NotRegular::Missing));
    // One plain name only: never a path out of the directory.
    for n in ["", ".", "..", "sub/../f", "../f", "/etc/passwd"] {
        assert!(read(n, 99).is_err(), "{n:?}");
    }
    let e = read("fifo", 99).unwrap_err();
    assert_eq!(e.path, p("fifo"), "named by its whole path");
}

#[test]
fn a_file_read_whole_is_read_to_its_end_whatever_its_size() {
    let d = tempfile::tempdir().unwrap();
    // Sizes around the read buffer's edges: the spare byte, and past it.
    for n in [0usize, 1, 4095, 4096, 4097, 65_537] {
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let f = d.path().join(format!("f{n}"));
        std::fs::write(&f, &body).unwrap();
        assert_eq!(read_regular(&f, n as u64).unwrap(), body, "{n} bytes");
        assert!(n == 0 || read_regular(&f, n as u64 - 1).is_err());
    }
    // A file longer than its fstat said (as one that grew after it): /proc's
    // files are regular and say 0 bytes; they are read on past the spare byte.
    let status = read_regular(Path::new("/proc/self/status"), 1 << 20).unwrap();
    assert!(status.starts_with(b"Name:") && status.ends_with(b"\n"), "{}", String::from_utf8_lossy(&status));
    assert_eq!(
        read_regular(Path::new("/proc/self/status"), 8).unwrap_err().kind,
        Some(NotRegular::TooLarge { cap: 8, len: 9 })
    );
}

mod more {
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

#[test]
fn the_lstat_cache_forgets_a_bundle_own_entries_and_keeps_shared_ones() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let (a, b, shared) = (root.join("a"), root.join("b"), root.join("lib"));
    let cache = LstatCache::default();
    // Bundle a: its own missing file, and a missing path outside it.
    cache.seed(&a.join("smoke.sh"), None);
    cache.seed(&shared.join("x"), None);
    cache.forget_under(&a);
    assert!(!cache.known_missing(&root, &a.join("smoke.sh")), "a's own entry is forgotten");
    assert!(cache.known_missing(&root, &shared.join("x")), "what bundles share is kept");
    // Bundle b's pass does not revisit a's leftovers, and forgets only b's.
    cache.seed(&b.join("smoke.sh"), None);
    cache.forget_under(&b);
    assert!(!cache.known_missing(&root, &b.join("smoke.sh")));
    assert!(cache.known_missing(&root, &shared.join("x")));
}

#[test]
fn the_lstat_cache_starts_over_past_its_cap() {
    let root = Path::new("/nonexistent-root");
    let cache = LstatCache::default();
    for i in 0..LstatCache::MAX_KEPT + 10 {
        cache.seed(&root.join(format!("elsewhere-{i}")), None);
        cache.forget_under(&root.join("bundle"));
    }
    assert!(!cache.known_missing(root, &root.join("elsewhere-0")), "the oldest entries went with the cap");
    assert!(cache.known_missing(root, &root.join(format!("elsewhere-{}", LstatCache::MAX_KEPT + 9))));
}

#[test]
fn the_tree_walk_visits_what_walkdir_visits_in_its_order() {
    use std::os::unix::ffi::OsStrExt as _;
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    for f in ["b", "a/z", "a/y/x", "a-b", "c/d/e", "skip/me", "Z", "a/y/.hidden"] {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "x").unwrap();
    }
    fs::write(root.join(std::ffi::OsStr::from_bytes(b"n\xff")), "x").unwrap();
    std::os::unix::fs::symlink("b", root.join("link")).unwrap();
    std::os::unix::fs::symlink("a", root.join("dirlink")).unwrap();
    nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let skip_dir = root.join("skip");
    let skip = |p: &Path| p.starts_with(&skip_dir);
    let mut got = Vec::new();
    tree::walk(&root, &skip, |p, k| got.push((p.to_path_buf(), k))).unwrap();
    let mut want = Vec::new();
    let walk = walkdir::WalkDir::new(&root).follow_links(false).sort_by_file_name().into_iter();
    for e in walk.filter_entry(|e| !skip(e.path())) {
        let e = e.unwrap();
        let t = e.file_type();
        let kind = match () {
            _ if t.is_dir() => continue,
            _ if t.is_file() => tree::Kind::File,
            _ if t.is_symlink() => tree::Kind::Symlink,
            _ => tree::Kind::Other,
        };
        want.push((e.path().to_path_buf(), kind));
    }
    assert_eq!(got, want);
    assert_eq!(got.len(), 11, "{got:?}");
}

#[test]
fn the_tree_walk_names_what_it_cannot_read_as_walkdir_did() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    let err = tree::walk(&missing, &|_| false, |_, _| {}).unwrap_err();
    let old = walkdir::WalkDir::new(&missing).into_iter().next().unwrap().unwrap_err();
    assert_eq!(err.to_string(), old.to_string());
    let chain = |e: &dyn std::error::Error| std::iter::successors(Some(e), |e| e.source()).count();
    assert_eq!(chain(&err), chain(&old));
}

#[test]
fn a_sized_read_gives_the_bytes_fstat_counted() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    fs::write(&p, "hello").unwrap();
    let (bytes, meta) = read_regular_meta(&p, 5).unwrap();
    assert_eq!((bytes.as_slice(), meta.len()), (b"hello".as_slice(), 5));
    assert_eq!(read_regular_meta(&p, 4).unwrap_err().kind, Some(NotRegular::TooLarge { cap: 4, len: 5 }));
    fs::write(&p, "").unwrap();
    assert!(read_regular_meta(&p, 4).unwrap().0.is_empty());
    // A size-0 file that is not empty (procfs) is read to its end.
    let status = read_regular_meta(Path::new("/proc/self/status"), caps::DOCUMENT).unwrap().0;
    assert!(status.starts_with(b"Name:"), "{:?}", String::from_utf8_lossy(&status));
}

#[test]
fn the_lstat_cache_compares_paths_as_bytes_under_a_directory() {
    assert!(bytes_under(b"/r/b", b"/r/b"));
    assert!(bytes_under(b"/r/b/x", b"/r/b"));
    assert!(bytes_under(b"/r/b/x", b"/r/b/"));
    assert!(bytes_under(b"/x", b"/"));
    assert!(!bytes_under(b"/r/bc/x", b"/r/b"));
    assert!(!bytes_under(b"/r", b"/r/b"));
}

#[test]
fn paths_in_normal_form_resolve_as_the_component_walk_does() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    fs::create_dir_all(root.join("bundles/a/sub")).unwrap();
    fs::write(root.join("bundles/a/smoke.sh"), "x").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("bundles/a/out")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("bundles/a/in")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("bundles/a/up")).unwrap();
    // The same root spelled with a trailing `/` takes the component walk.
    let spelled = PathBuf::from(format!("{}/", root.display()));
    for rel in [
        "bundles/a/smoke.sh",
        "bundles/a/missing/x",
        "bundles/a/out/passwd",
        "bundles/a/in/x",
        "bundles/a/up/etc",
        "bundles/a/up",
        "./bundles/a/smoke.sh",
        "bundles//a/smoke.sh",
        "bundles/a/../../../x",
        "/etc/passwd",
        "missing",
    ] {
        let fast = resolve_path_in_root(&root, Path::new(rel), &LstatCache::default());
        let walked = resolve_path_in_root(&spelled, Path::new(rel), &LstatCache::default());
        assert_eq!(fast, walked, "{rel}");
    }
    assert!(resolve_path_in_root(&root, Path::new("bundles/a/smoke.sh"), &LstatCache::default()).1);
    assert!(!resolve_path_in_root(&root, Path::new("bundles/a/out/passwd"), &LstatCache::default()).1);
    assert!(!resolve_path_in_root(&root, Path::new("bundles/a/up/etc"), &LstatCache::default()).1);
}

#[test]
fn relative_bytes_agree_with_strip_prefix() {
    use std::os::unix::ffi::OsStrExt as _;
    let root = Path::new("/r/oot");
    for p in ["/r/oot/a", "/r/oot/a/b.json", "/r/oot", "/r/ootx/a", "/r/oot//a", "/r/oot/./a", "/r/oot/a/", "/x"] {
        let p = Path::new(p);
        if let Some(rest) = rel_bytes(root, p) {
            assert_eq!(rest, p.strip_prefix(root).unwrap().as_os_str().as_bytes(), "{}", p.display());
        }
    }
    assert_eq!(rel_bytes(root, Path::new("/r/oot/a/b")), Some(b"a/b".as_slice()));
    assert_eq!(rel_bytes(root, Path::new("/r/ootx/a")), None);
    assert_eq!(rel_bytes(root, Path::new("/r/oot")), None);
    assert_eq!(rel_bytes(Path::new("/r/oot/"), Path::new("/r/oot/a")), None);
    // known_missing sees the same ancestors either way.
    let cache = LstatCache::default();
    cache.seed(Path::new("/r/oot/a/b"), None);
    assert!(cache.known_missing(root, Path::new("/r/oot/a/b/c/d")));
    assert!(cache.known_missing(root, Path::new("/r/oot/a/b")));
    assert!(!cache.known_missing(root, Path::new("/r/oot/a/bc")));
    assert!(!cache.known_missing(root, Path::new("/r/oot/a")));
}

/// Paths from a few parts, some of which are not in normal form.
fn path_from(parts: &[u8], absolute: bool) -> PathBuf {
    const PARTS: [&str; 10] = ["a", "b", "ab", ".", "..", "", "a.b", "b/", "...", ".a"];
    let joined: Vec<&str> = parts.iter().map(|&i| PARTS[i as usize % PARTS.len()]).collect();
    PathBuf::from(format!("{}{}", if absolute { "/" } else { "" }, joined.join("/")))
}

/// Paths of fewer than `parts` parts from [`path_from`], absolute or not.
fn paths(parts: usize) -> impl proptest::strategy::Strategy<Value = PathBuf> {
    use proptest::strategy::Strategy as _;
    (proptest::collection::vec(0u8..10, 0..parts), proptest::bool::ANY).prop_map(|(p, abs)| path_from(&p, abs))
}

proptest::proptest! {
    #[test]
    fn is_under_is_path_starts_with(p in paths(6), base in paths(6)) {
        proptest::prop_assert_eq!(is_under(&p, &base), p.starts_with(&base), "{:?} under {:?}", p, base);
    }

    #[test]
    fn hex_lower_is_hex_encode(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
        proptest::prop_assert_eq!(hex_lower(&bytes), hex::encode(&bytes));
    }
}

#[test]
fn is_under_answers_on_bytes_at_component_bounds() {
    let under = |p: &str, b: &str| is_under(Path::new(p), Path::new(b));
    assert!(under("/r/a/b", "/r/a") && under("/r/a", "/r/a"));
    assert!(!under("/r/ab", "/r/a") && !under("/r", "/r/a"));
    // Not in normal form: answered by components, as Path does.
    assert!(under("/r//a/./b", "/r/a") && under("/r/a/b", "/r/a/"));
    assert!(!under("/r/a/../b", "/r/b"));
}

/// An open directory keeps reading the directory it opened: a directory
/// renamed into its path afterwards (a bundle swapped mid-validate) is
/// neither listed nor read, so a digest covers the files of one directory.
/// Paths not directly in it, and names that are not plain, go by path.
#[test]
fn an_open_directory_reads_the_directory_it_opened() {
    let d = tempfile::tempdir().unwrap();
    let b = d.path().join("b");
    fs::create_dir(&b).unwrap();
    fs::write(b.join("f"), "first").unwrap();
    let mut open = tree::OpenDir::open(&b).unwrap();
    fs::rename(&b, d.path().join("b.old")).unwrap();
    fs::create_dir(&b).unwrap();
    fs::write(b.join("f"), "swapped").unwrap();
    fs::write(b.join("g"), "added").unwrap();
    let via = |p: &Path| read_regular_meta_via(Some(&open), p, 99).map(|(bytes, _)| bytes);
    assert_eq!(via(&b.join("f")).unwrap(), b"first");
    assert_eq!(open.name_of(&b.join("f")), Some("f"));
    assert_eq!(open.name_of(&b.join("sub/f")), None);
    assert_eq!(open.name_of(&d.path().join("f")), None);
    // By path, the new directory: what it would read without the open one.
    assert_eq!(read_regular_meta_via(None, &b.join("f"), 99).unwrap().0, b"swapped");
    assert_eq!(via(&b.join("g")).unwrap_err().kind, Some(NotRegular::Missing), "not in the opened directory");
    let mut listed = Vec::new();
    tree::walk_from(&mut open, &|_| false, |p, _| listed.push(p.to_path_buf())).unwrap();
    assert_eq!(listed, vec![b.join("f")]);
    // A second walk lists it again, from the start.
    let mut again = Vec::new();
    tree::walk_from(&mut open, &|_| false, |p, _| again.push(p.to_path_buf())).unwrap();
    assert_eq!(again, listed);
}

/// What `rel_to` was before its byte fast path: the reference.
fn rel_to_by_components(root: &Path, path: &Path) -> String {
    let p = path.strip_prefix(root).unwrap_or(path);
    let s = p.to_string_lossy().replace('\\', "/");
    if s.is_empty() { ".".to_string() } else { s }
}

/// What `escape_bytes` does for every name (its fast path skips it for
/// printable ASCII): the reference.
fn escape_bytes_by_chars(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => c.to_string().bytes().for_each(|b| out.push_str(&format!("\\x{b:02x}"))),
                c => out.push(c),
            }
        }
        chunk.invalid().iter().for_each(|b| out.push_str(&format!("\\x{b:02x}")));
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]
    #[test]
    fn rel_to_is_its_component_reading(
        p in paths(6),
        base in paths(6),
        odd in proptest::sample::select(vec!["", "\\", "\u{1b}[31m", "\u{fffd}"]),
    ) {
        let p = p.join(format!("x{odd}"));
        proptest::prop_assert_eq!(rel_to(&base, &p), rel_to_by_components(&base, &p), "{:?} from {:?}", p, base);
        proptest::prop_assert_eq!(rel_to(&base, &base), rel_to_by_components(&base, &base));
    }

    #[test]
    fn escape_bytes_fast_path_changes_nothing(bytes in proptest::collection::vec(
        proptest::prop_oneof![0x20u8..0x7f, proptest::num::u8::ANY], 0..40)
    ) {
        proptest::prop_assert_eq!(escape_bytes(&bytes), escape_bytes_by_chars(&bytes));
    }
}

/// The walk down a plain path (no link on the way) gives what the general
/// walk gives, on a tree with files, missing parts and links in and out of
/// the root, whatever the cache already holds.
#[test]
fn walking_down_agrees_with_the_general_walk() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap().join("root");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/f"), "x").unwrap();
    fs::write(root.join("a/g"), "x").unwrap();
    std::os::unix::fs::symlink("b", root.join("a/in")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("a/out")).unwrap();
    std::os::unix::fs::symlink(d.path(), root.join("abs")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    let names = ["a", "b", "f", "g", "in", "out", "abs", "loop", "missing", ".."];
    let mut rels: Vec<String> = Vec::new();
    for x in names {
        rels.push(x.to_string());
        for y in names {
            rels.push(format!("{x}/{y}"));
            for z in ["f", "b", "missing", "in"] {
                rels.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    let warm = LstatCache::default();
    for rel in &rels {
        let rel = Path::new(rel);
        let simple = is_normal_rel(key(rel));
        let want = resolve_walk(&root, rel, simple, &LstatCache::default());
        assert_eq!(resolve_path_in_root(&root, rel, &LstatCache::default()), want, "{rel:?} (cold cache)");
        assert_eq!(resolve_path_in_root(&root, rel, &warm), want, "{rel:?} (shared cache)");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
    /// `same_path` is `Path`'s equality, dotfiles, `.`, `..`, `//` and
    /// trailing `/` included.
    #[test]
    fn same_path_is_path_equality(a in paths(5), b in paths(5), b_like_a in proptest::bool::ANY) {
        // Often the same parts: equal paths in different forms are the interesting case.
        let b = if b_like_a { PathBuf::from(format!("{}/", a.display()).replace("//", "/")) } else { b };
        proptest::prop_assert_eq!(same_path(&a, &b), a == b, "{:?} vs {:?}", a, b);
        proptest::prop_assert_eq!(same_path(&b, &a), b == a);
        proptest::prop_assert!(same_path(&a, &a));
    }

    /// Whenever `rel_bytes` answers, it answers what `strip_prefix` gives,
    /// byte for byte, and it answers for every plain path under a plain root.
    #[test]
    fn rel_bytes_is_strip_prefix(p in paths(6), base in paths(4)) {
        use std::os::unix::ffi::OsStrExt;
        let p = base.join(p);
        if let Some(rest) = rel_bytes(&base, &p) {
            let want = p.strip_prefix(&base).map(|r| r.as_os_str().as_bytes().to_vec());
            proptest::prop_assert_eq!(Ok(rest.to_vec()), want.map_err(|_| ()), "{:?} from {:?}", p, base);
        }
        let plain = |x: &Path| x.as_os_str().len() > 1 && !x.as_os_str().as_bytes().ends_with(b"/") && is_plain(key(x));
        if plain(&base) && plain(&p) && p != base && p.starts_with(&base) {
            proptest::prop_assert!(rel_bytes(&base, &p).is_some(), "{:?} from {:?}", p, base);
        }
    }
}

#[test]
fn rel_bytes_answers_for_plain_paths() {
    let rel = |r: &str, p: &str| rel_bytes(Path::new(r), Path::new(p)).map(|b| String::from_utf8_lossy(b).into_owned());
    assert_eq!(rel("/r/x", "/r/x/a/b").as_deref(), Some("a/b"));
    assert_eq!(rel("/r/x", "/r/x/.a/b").as_deref(), Some(".a/b"), "a dotfile: the split test");
    assert_eq!(rel("/r/x", "/r/x/a//b"), None);
    assert_eq!(rel("/r/x", "/r/x/a/"), None);
    assert_eq!(rel("/r/x", "/r/x/./a"), None);
    assert_eq!(rel("/r/x", "/r/xa/b"), None);
    assert_eq!(rel("/r/x", "/r/x"), None);
    // An empty root is no prefix at a `/`: `strip_prefix` keeps the leading `/`.
    assert_eq!(rel("", "/a.b"), None);
}

#[test]
fn a_file_hashed_is_read_no_further_than_its_size_when_opened() {
    // A writer that keeps appending would otherwise keep the hash reading.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("log");
    fs::write(&p, "hello").unwrap();
    let (f, meta) = open_regular_meta(&p, None).unwrap();
    fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b" and more").unwrap();
    let err = sha256_opened(f, meta.len(), &p).unwrap_err();
    assert!(err.to_string().contains("grew while it was read (it was 5 bytes)"), "{err}");
    let (f, meta) = open_regular_meta(&p, None).unwrap();
    assert_eq!(sha256_opened(f, meta.len(), &p).unwrap(), (sha256_hex(b"hello and more"), 14));
}
