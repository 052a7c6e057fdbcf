//! Tests of the parent module: the fast path gives the very proof the whole
//! chain gives; a stale index falls back; a lying index fails, naming it.

use super::*;
use crate::evidence::artifacts::SessionArtifact;
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::{self, Signer, TrustedKey};
use crate::evidence::tlog_index;
use std::fs;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    signer: Signer,
}

fn session(i: usize) -> SessionArtifact {
    SessionArtifact {
        kind: crate::types::ArtifactKind::SessionArtifact,
        bundle: "t@0.1.0".into(),
        captured_at: "2026-11-23T00:00:00.000Z".into(),
        session_ref: format!("urn:srcos:session:t-{i}"),
        status: crate::types::SessionStatus::Success,
        run_artifact_ref: None,
        replay_artifact_ref: None,
        governance_context: None,
    }
}

/// A chain of 7 sessions, a seal, 5 more sessions and a seal: 14 entries,
/// the last checkpoint covering 13.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let (_, key, _) = keys::generate(&tmp.path().join("k")).unwrap();
    let signer = Signer::load(&key).unwrap();
    let dir = tmp.path().join("ev");
    {
        let mut w = ChainWriter::start(&dir, &signer, "t@0.1.0", &format!("sha256:{}", "ab".repeat(32))).unwrap();
        for i in 0..7 {
            w.write_artifact(&session(i), &[]).unwrap();
        }
        w.seal().unwrap();
    }
    {
        let (mut w, _) = ChainWriter::open(&dir, &signer).unwrap();
        for i in 7..12 {
            w.write_artifact(&session(i), &[]).unwrap();
        }
        w.seal().unwrap();
    }
    Fixture { _tmp: tmp, dir, signer }
}

fn names() -> Vec<String> {
    let mut v = vec!["session-artifact.json".to_string(), "evidence.jsonl".to_string()];
    v.extend((1..13).filter(|s| *s != 7).map(|s| format!("session-artifact-{s}.json")));
    v
}

fn trusted(f: &Fixture) -> Vec<TrustedKey> {
    vec![TrustedKey { key: f.signer.verifying_key(), id: f.signer.key_id().to_string(), path: Default::default() }]
}

#[test]
fn the_index_gives_the_proof_the_whole_chain_gives() {
    let f = fixture();
    let mut targets: Vec<Target> = names().into_iter().map(Target::File).collect();
    targets.extend((0..13).map(Target::Entry));
    for t in &targets {
        let fast = prove(&f.dir, t).unwrap();
        let slow = from_chain(&f.dir, t).unwrap();
        assert!(fast.indexed && !slow.indexed, "{t}");
        assert_eq!((fast.proof.as_str(), fast.index, fast.size), (slow.proof.as_str(), slow.index, 13), "{t}");
        assert_eq!(fast.note, None);
    }
    // And it verifies, for a file too.
    let p = prove(&f.dir, &Target::File("session-artifact-9.json".into())).unwrap();
    let v = crate::evidence::transparency::verify_proof(&p.proof, &f.dir.join("session-artifact-9.json"), &trusted(&f))
        .unwrap();
    assert_eq!((v.index, v.size), (9, 13));
    for t in [Target::Entry(13), Target::File("nope.json".into())] {
        let e = prove(&f.dir, &t).unwrap_err();
        assert_eq!(crate::error::exit_of(&e), crate::exit::Exit::Failed, "{t}: {e:#}");
    }
}

#[test]
fn without_an_index_or_with_a_stale_one_the_chain_is_read() {
    let f = fixture();
    let t = Target::File("session-artifact-3.json".into());
    let want = prove(&f.dir, &t).unwrap().proof;
    let index = f.dir.join(TLOG_INDEX_FILE);
    let kept = fs::read(&index).unwrap();
    fs::remove_file(&index).unwrap();
    let p = prove(&f.dir, &t).unwrap();
    assert!(!p.indexed && p.note.is_none(), "a short chain needs no note");
    assert_eq!(p.proof, want);
    // An entry appended after the seal (not sealed yet): the chain's last
    // seal still rules, and the index no longer ends the chain.
    fs::write(&index, &kept).unwrap();
    {
        let (mut w, _) = ChainWriter::open(&f.dir, &f.signer).unwrap();
        w.write_artifact(&session(99), &[]).unwrap();
    }
    let p = prove(&f.dir, &t).unwrap();
    assert!(!p.indexed && p.note.as_deref().unwrap().contains("the chain grew since"), "{:?}", p.note);
    assert_eq!(p.proof, want);
    // An index of the first seal only (an earlier one, kept by a crash).
    let first = fixture();
    let bytes = fs::read(first.dir.join(CHAIN_FILE)).unwrap();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    fs::write(first.dir.join(CHAIN_FILE), [lines[..8].join(&b'\n'), b"\n".to_vec()].concat()).unwrap();
    let early = prove(&first.dir, &t).unwrap(); // index of the later seal, chain cut back: stale
    assert!(!early.indexed && early.note.is_some());
}

/// Rewrite the index from (possibly wrong) parts.
fn forge(f: &Fixture, edit: impl FnOnce(&mut Vec<tlog::Hash>, &mut Vec<u64>, &mut Vec<(String, u64)>)) {
    let chain = Chain::read(&f.dir).unwrap().unwrap();
    let n = 13;
    let mut leaves = chain.leaves[..n].to_vec();
    let mut offsets = vec![0u64];
    for i in 0..n {
        offsets.push(offsets[i] + chain.line(i).len() as u64 + 1);
    }
    let mut names: Vec<(String, u64)> = chain.entries[..n]
        .iter()
        .enumerate()
        .flat_map(|(i, e)| e.statement.subject.iter().map(move |s| (s.name.clone(), i as u64)))
        .collect();
    edit(&mut leaves, &mut offsets, &mut names);
    let bytes = tlog_index::encode(&leaves, &offsets, names.iter().map(|(s, i)| (s.as_str(), *i)));
    fs::write(f.dir.join(TLOG_INDEX_FILE), bytes).unwrap();
}

#[test]
fn a_lying_index_fails_naming_it_and_never_proves() {
    type Edit = Box<dyn FnOnce(&mut Vec<tlog::Hash>, &mut Vec<u64>, &mut Vec<(String, u64)>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("the honest index", Box::new(|_, _, _| {}), ""),
        ("a leaf changed", Box::new(|l, _, _| l[4][0] ^= 1), "do not give the root"),
        ("two leaves swapped", Box::new(|l, _, _| l.swap(2, 3)), "do not give the root"),
        (
            "the name points elsewhere",
            Box::new(|_, _, n| n.iter_mut().filter(|(s, _)| s == "session-artifact-3.json").for_each(|x| x.1 = 5)),
            "which does not name it",
        ),
        (
            "the name points past the log",
            Box::new(|_, _, n| n.iter_mut().filter(|(s, _)| s == "session-artifact-3.json").for_each(|x| x.1 = 20)),
            "beyond its 13 entries",
        ),
        ("offsets shifted", Box::new(|_, o, _| o.iter_mut().skip(1).for_each(|x| *x += 1)), "start of a line"),
        ("a line's start moved", Box::new(|_, o, _| o[3] += 1), "not one whole line"),
        ("two lines' starts swapped", Box::new(|_, o, _| o.swap(3, 4)), "bytes"),
        ("the next line's span", Box::new(|_, o, _| (o[3], o[4]) = (o[4], o[5])), "leaf hash"),
        ("a seal past the end", Box::new(|_, o, _| o[13] = u64::MAX / 2), ""),
    ];
    for (what, edit, want) in cases {
        let f = fixture();
        forge(&f, edit);
        let t = Target::File("session-artifact-3.json".into());
        match prove(&f.dir, &t) {
            // Proofs that come out are the true one (from the index or, for a
            // stale-looking index, from the chain).
            Ok(p) => {
                assert!(want.is_empty(), "{what}: proved, expected `{want}`");
                assert_eq!(p.proof, from_chain(&f.dir, &t).unwrap().proof, "{what}");
            }
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(!want.is_empty() && msg.contains(want), "{what}: {msg}");
                assert!(msg.contains("tlog-index"), "{what}: names the file: {msg}");
                assert_eq!(crate::error::exit_of(&e), crate::exit::Exit::Error, "{what}");
            }
        }
    }
}

#[test]
fn a_wrong_index_size_and_a_fifo_chain_are_errors_not_hangs() {
    let f = fixture();
    let index = f.dir.join(TLOG_INDEX_FILE);
    let bytes = fs::read(&index).unwrap();
    fs::write(&index, &bytes[..bytes.len() - 24]).unwrap();
    let e = prove(&f.dir, &Target::Entry(1)).unwrap_err();
    assert!(format!("{e:#}").contains("not the length its header gives"), "{e:#}");
    fs::write(&index, &bytes).unwrap();
    let chain = f.dir.join(CHAIN_FILE);
    fs::remove_file(&chain).unwrap();
    nix::unistd::mkfifo(&chain, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let e = prove(&f.dir, &Target::Entry(1)).unwrap_err();
    assert!(format!("{e:#}").contains("is a FIFO"), "{e:#}");
}

#[test]
fn a_chain_that_is_not_its_checkpoints_log_is_not_provable() {
    let f = fixture();
    fs::remove_file(f.dir.join(TLOG_INDEX_FILE)).unwrap();
    let bytes = fs::read(f.dir.join(CHAIN_FILE)).unwrap();
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.swap(1, 2);
    fs::write(f.dir.join(CHAIN_FILE), lines.iter().flat_map(|l| [*l, b"\n"].concat()).collect::<Vec<u8>>()).unwrap();
    let e = prove(&f.dir, &Target::Entry(1)).unwrap_err();
    assert_eq!(crate::error::exit_of(&e), crate::exit::Exit::Failed, "{e:#}");
    assert!(format!("{e:#}").contains("root does not match"), "{e:#}");
}
