//! Tests of the parent module: the layout round trip, and hostile index files
//! (each refused at once with a message naming the file, never a panic or hang).

use super::*;
use crate::evidence::tlog::merkle;
use std::fs;

fn sample(n: usize) -> (Vec<Hash>, Vec<u64>, Vec<(String, u64)>) {
    let leaves: Vec<Hash> = (0..n).map(|i| merkle::leaf_hash(format!("line {i}").as_bytes())).collect();
    let offsets: Vec<u64> = (0..=n as u64).map(|i| i * 100).collect();
    let mut names: Vec<(String, u64)> = (0..n as u64).map(|i| (format!("artifact-{i}.json"), i)).collect();
    names.push(("shared.log".into(), 3));
    names.push(("shared.log".into(), 1)); // the first entry naming it wins, in any order
    (leaves, offsets, names)
}

fn write(dir: &Path, n: usize) -> Vec<u8> {
    let (leaves, offsets, names) = sample(n);
    let bytes = encode(&leaves, &offsets, names.iter().map(|(s, i)| (s.as_str(), *i)));
    fs::write(dir.join(TLOG_INDEX_FILE), &bytes).unwrap();
    bytes
}

fn open_err(dir: &Path) -> String {
    format!("{:#}", TlogIndex::open(dir).unwrap_err())
}

#[test]
fn round_trip() {
    let d = tempfile::tempdir().unwrap();
    assert!(TlogIndex::open(d.path()).unwrap().is_none(), "no index is not an error");
    let n = 37;
    let bytes = write(d.path(), n);
    assert_eq!(bytes.len() as u64, HEADER + 32 * stored::count(n as u64) + 8 * (n as u64 + 1) + 24 * (n as u64 + 1));
    let mut idx = TlogIndex::open(d.path()).unwrap().unwrap();
    let (leaves, offsets, _) = sample(n);
    assert_eq!(idx.size, n as u64);
    for i in 0..=n as u64 {
        assert_eq!(idx.offset(i).unwrap(), offsets[i as usize]);
    }
    assert!(idx.offset(n as u64 + 1).is_err());
    for i in 0..n as u64 {
        assert_eq!(idx.lookup(&format!("artifact-{i}.json")).unwrap(), Some(i));
        assert_eq!(idx.stored(0, i).unwrap(), leaves[i as usize]);
    }
    assert_eq!(idx.lookup("shared.log").unwrap(), Some(1));
    assert_eq!(idx.lookup("nope.json").unwrap(), None);
    assert_eq!(stored::root(&mut idx, n as u64).unwrap(), merkle::root(&leaves));
    assert_eq!(stored::inclusion_proof(&mut idx, n as u64, 20).unwrap(), merkle::inclusion_proof(&leaves, 20).unwrap());
    assert!(idx.stored(1, 18).is_err() && idx.stored(64, 0).is_err(), "outside the tree");
}

#[test]
fn an_empty_log_has_an_index_too() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), 0);
    let mut idx = TlogIndex::open(d.path()).unwrap().unwrap();
    assert_eq!((idx.size, idx.offset(0).unwrap(), idx.lookup("x").unwrap()), (0, 0, None));
    assert_eq!(stored::root(&mut idx, 0).unwrap(), merkle::empty_root());
}

#[test]
fn truncated_padded_or_lying_indexes_are_refused_at_open() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TLOG_INDEX_FILE);
    let good = write(d.path(), 9);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 1].to_vec(), "not the length its header gives"),
        ("padded", [&good[..], b"x"].concat(), "not the length its header gives"),
        ("shorter than a header", good[..20].to_vec(), "shorter than its header"),
        ("empty", Vec::new(), "shorter than its header"),
        ("wrong magic", [b"ap-tlog-index/2\n", &good[16..]].concat(), "unknown magic"),
        ("more entries", [&good[..16], &10u64.to_be_bytes(), &good[24..]].concat(), "not the length"),
        ("overflowing entries", [&good[..16], &u64::MAX.to_be_bytes(), &good[24..]].concat(), "not the length"),
        ("overflowing names", [&good[..24], &(u64::MAX / 3).to_be_bytes(), &good[32..]].concat(), "not the length"),
    ];
    for (what, bytes, want) in cases {
        fs::write(&path, &bytes).unwrap();
        let msg = open_err(d.path());
        assert!(msg.contains(want) && msg.contains("tlog-index"), "{what}: {msg}");
    }
}

#[test]
fn a_fifo_a_symlink_a_directory_or_a_huge_file_is_refused_without_reading() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TLOG_INDEX_FILE);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    assert!(open_err(d.path()).contains("is a FIFO"), "{}", open_err(d.path()));
    fs::remove_file(&path).unwrap();
    fs::write(d.path().join("elsewhere"), write(d.path(), 3)).unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(d.path().join("elsewhere"), &path).unwrap();
    assert!(open_err(d.path()).contains("symbolic link"), "{}", open_err(d.path()));
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(open_err(d.path()).contains("directory"), "{}", open_err(d.path()));
    fs::remove_dir(&path).unwrap();
    // Sparse: no disk is used, and nothing is read.
    let f = fs::File::create(&path).unwrap();
    f.set_len(MAX_INDEX + 1).unwrap();
    assert!(open_err(d.path()).contains("over the"), "{}", open_err(d.path()));
}
