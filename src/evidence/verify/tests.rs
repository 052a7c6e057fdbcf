//! Table-driven tamper tests: real signed chains (written by `ChainWriter`),
//! loaded into memory, changed one way per row, verified with no processes.
//! Each row names the verdict and exactly which checks fail.

use std::sync::OnceLock;

use super::files::{MemEvidence, MemFile};
use super::*;
use crate::evidence::artifacts::{Artifact, SessionArtifact};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::{self, Signer};
use crate::evidence::statement::{Predicate, STATEMENT_TYPE, Statement, Subject, predicate_type};
use crate::fsx::NotRegular;
use crate::types::{ArtifactKind, SessionStatus};
use VerifyCheck::*;

const LOG: &str = "run.stdout.log";
/// Named so that an old, message-matching verify would have blamed `signatures`.
const PRODUCT: &str = "products/signature-report.txt";

struct Fixture {
    /// Entries: 0 session-artifact.json, 1 session-artifact-1.json + LOG + PRODUCT,
    /// 2 session-artifact-2.json, 3 the seal.
    a: MemEvidence,
    /// Another run of the same bundle, same key, same shape.
    b: MemEvidence,
    /// A chain whose entry 1 is a signed RunArtifact that breaks its schema.
    bogus: MemEvidence,
    key: TrustedKey,
    other: TrustedKey,
    /// The key that signed `a`, `b` and `bogus` (for hand-made entries).
    signer: Signer,
}

fn session(i: usize) -> SessionArtifact {
    SessionArtifact {
        kind: ArtifactKind::SessionArtifact,
        bundle: "demo@0.1.0".into(),
        captured_at: "2026-11-23T00:00:00.000Z".into(),
        session_ref: format!("urn:srcos:session:t{i}"),
        status: SessionStatus::Success,
        run_artifact_ref: None,
        replay_artifact_ref: None,
        governance_context: None,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Bogus {
    kind: String,
    bundle: String,
}

impl Artifact for Bogus {
    const KIND: ArtifactKind = ArtifactKind::RunArtifact;
    type Details = crate::evidence::artifacts::NoDetails;
}

fn run(dir: &std::path::Path, signer: &Signer, bogus: bool) -> MemEvidence {
    let mut w = ChainWriter::start(dir, signer, "demo@0.1.0", &format!("sha256:{}", "ab".repeat(32))).unwrap();
    std::fs::create_dir_all(dir.join("products")).unwrap();
    std::fs::write(dir.join(LOG), "hello\n").unwrap();
    std::fs::write(dir.join(PRODUCT), "42\n").unwrap();
    w.write_artifact(&session(0), &[]).unwrap();
    if bogus {
        w.write_artifact(
            &Bogus { kind: "RunArtifact".into(), bundle: "demo@0.1.0".into() },
            &[LOG.into(), PRODUCT.into()],
        )
        .unwrap();
    } else {
        w.write_artifact(&session(1), &[LOG.into(), PRODUCT.into()]).unwrap();
    }
    w.write_artifact(&session(2), &[]).unwrap();
    w.seal().unwrap();
    drop(w);
    MemEvidence::load(dir)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let (_, key_path, pub_path) = keys::generate(&t.path().join("k")).unwrap();
        let (_, _, other_pub) = keys::generate(&t.path().join("other")).unwrap();
        let signer = Signer::load(&key_path).unwrap();
        Fixture {
            a: run(&t.path().join("a"), &signer, false),
            b: run(&t.path().join("b"), &signer, false),
            bogus: run(&t.path().join("c"), &signer, true),
            key: keys::load_public(&pub_path).unwrap(),
            other: keys::load_public(&other_pub).unwrap(),
            signer,
        }
    })
}

fn bytes<'a>(m: &'a mut MemEvidence, name: &str) -> &'a mut Vec<u8> {
    match m.files.get_mut(name) {
        Some(MemFile::Bytes(b)) => b,
        _ => panic!("{name} is not a file of the fixture"),
    }
}

fn lines(m: &mut MemEvidence) -> Vec<Vec<u8>> {
    bytes(m, CHAIN).split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn set_lines(m: &mut MemEvidence, lines: &[Vec<u8>]) {
    *bytes(m, CHAIN) = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
}

/// Change one entry's envelope as JSON.
fn edit_envelope(m: &mut MemEvidence, i: usize, edit: impl Fn(&mut serde_json::Value)) {
    let mut l = lines(m);
    let mut env: serde_json::Value = serde_json::from_slice(&l[i]).unwrap();
    edit(&mut env);
    l[i] = serde_json::to_vec(&env).unwrap();
    set_lines(m, &l);
}

fn flip_last_byte(b: &mut [u8]) {
    let n = b.len() - 2; // keep the final newline
    b[n] ^= 1;
}

const CHAIN: &str = crate::evidence::CHAIN_FILE;

/// Drop the seal, then append a signed entry properly linked to the last
/// line: `body` gets that entry's predicate to shape (or replace) the statement.
fn append_signed(m: &mut MemEvidence, f: &Fixture, body: impl Fn(Predicate) -> Vec<u8>) {
    use crate::evidence::dsse::Envelope;
    let mut l = lines(m);
    l.pop();
    let env: Envelope = serde_json::from_slice(&l[0]).unwrap();
    let first: Statement = serde_json::from_slice(&env.body().unwrap()).unwrap();
    let p = Predicate {
        seq: l.len() as u64,
        previous: format!("sha256:{}", crate::fsx::sha256_hex(l.last().unwrap())),
        ..first.predicate
    };
    l.push(serde_json::to_vec(&Envelope::sign(&body(p), &f.signer)).unwrap());
    set_lines(m, &l);
}

fn statement(kind: ArtifactKind, subject: Vec<Subject>, p: Predicate) -> Vec<u8> {
    let predicate = Predicate { kind, ..p };
    serde_json::to_vec(&Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject,
        predicate_type: predicate_type(kind),
        predicate,
    })
    .unwrap()
}

/// Append a correct seal after the last line.
/// The sha256 of the chain file as it is: what a seal signed now names.
fn file_hex(l: &[Vec<u8>]) -> String {
    let mut all = Vec::new();
    for line in l {
        all.extend_from_slice(line);
        all.push(b'\n');
    }
    crate::fsx::sha256_hex(&all)
}

fn reseal(m: &mut MemEvidence, f: &Fixture) {
    let mut l = lines(m);
    let hex = file_hex(&l);
    l.push(b"placeholder".to_vec()); // append_signed drops the last line
    set_lines(m, &l);
    append_signed(m, f, |p| {
        let head = p.previous.clone();
        let hex = hex.clone();
        let seq = p.seq;
        statement(
            ArtifactKind::Seal,
            vec![Subject::sha256(CHAIN, hex)],
            Predicate { length: Some(seq), head: Some(head), ..p },
        )
    });
}

fn session_subject(m: &mut MemEvidence, name: &str) -> Subject {
    Subject::sha256(name, crate::fsx::sha256_hex(bytes(m, name)))
}

struct Row {
    name: &'static str,
    tamper: fn(&mut MemEvidence, &Fixture),
    /// Trust the other key instead of the signer's.
    untrusted: bool,
    /// The checks that fail (empty: verified).
    failed: &'static [VerifyCheck],
    /// The first entry reported bad, if any.
    entry: Option<usize>,
}

fn rows() -> Vec<Row> {
    let row = |name, tamper, failed, entry| Row { name, tamper, untrusted: false, failed, entry };
    vec![
        row("untouched", |_, _| {}, &[], None),
        row(
            "changed byte in an artifact",
            |m, _| flip_last_byte(bytes(m, "session-artifact-1.json")),
            &[SubjectDigests],
            Some(1),
        ),
        row("changed byte in a log", |m, _| flip_last_byte(bytes(m, LOG)), &[SubjectDigests], Some(1)),
        row("changed byte in a product", |m, _| flip_last_byte(bytes(m, PRODUCT)), &[SubjectDigests], Some(1)),
        row("missing product", |m, _| drop(m.files.remove(PRODUCT)), &[SubjectDigests], Some(1)),
        row("changed byte in the tlog index", |m, _| flip_last_byte(bytes(m, "tlog-index")), &[Checkpoint], None),
        row(
            "a tlog index that is a FIFO",
            |m, _| drop(m.files.insert("tlog-index".into(), MemFile::Special(NotRegular::Fifo))),
            &[Checkpoint],
            None,
        ),
        row("no tlog index (sealed before it existed)", |m, _| drop(m.files.remove("tlog-index")), &[], None),
        row(
            "missing entry (its files left behind)",
            |m, _| {
                let mut l = lines(m);
                l.remove(1);
                set_lines(m, &l);
            },
            &[Links, NoUnnamedFiles],
            Some(1),
        ),
        row(
            "missing entry and its files",
            |m, _| {
                let mut l = lines(m);
                l.remove(2);
                set_lines(m, &l);
                m.files.remove("session-artifact-2.json");
            },
            &[Links],
            Some(2),
        ),
        row(
            "extra entry at the end",
            |m, _| {
                let mut l = lines(m);
                l.push(l[0].clone());
                set_lines(m, &l);
            },
            &[Links, Seal],
            Some(4),
        ),
        row(
            "reordered entries",
            |m, _| {
                let mut l = lines(m);
                l.swap(1, 2);
                set_lines(m, &l);
            },
            &[Links],
            Some(1),
        ),
        row(
            "duplicated entry",
            |m, _| {
                let mut l = lines(m);
                l.insert(2, l[1].clone());
                set_lines(m, &l);
            },
            &[Links],
            Some(2),
        ),
        row(
            "truncated tail (no seal)",
            |m, _| {
                let mut l = lines(m);
                l.pop();
                set_lines(m, &l);
            },
            &[Seal],
            None,
        ),
        row(
            "torn partial last line",
            |m, _| {
                let b = bytes(m, CHAIN);
                b.truncate(b.len() - 10);
            },
            &[ChainPresent],
            Some(3),
        ),
        row(
            "bad signature mid-chain (the next link breaks too)",
            |m, _| edit_envelope(m, 1, |e| e["signatures"][0]["sig"] = base64(&[7u8; 64]).into()),
            &[Signatures, Links],
            Some(1),
        ),
        row(
            "bad signature on the seal",
            |m, _| edit_envelope(m, 3, |e| e["signatures"][0]["sig"] = base64(&[7u8; 64]).into()),
            &[Signatures],
            Some(3),
        ),
        row(
            "wrong payloadType",
            |m, _| edit_envelope(m, 3, |e| e["payloadType"] = "text/plain".into()),
            &[Envelopes],
            Some(3),
        ),
        row(
            "two signatures",
            |m, _| {
                edit_envelope(m, 3, |e| {
                    let s = e["signatures"][0].clone();
                    e["signatures"].as_array_mut().unwrap().push(s);
                })
            },
            &[Envelopes],
            Some(3),
        ),
        row("artifact violating its schema, signed", |m, f| *m = f.bogus.clone(), &[Schemas], Some(1)),
        row(
            "spliced from another run",
            |m, f| {
                let mut b = f.b.clone();
                let mut l = lines(m);
                l[1] = lines(&mut b)[1].clone();
                set_lines(m, &l);
                for n in ["session-artifact-1.json", LOG, PRODUCT] {
                    m.files.insert(n.into(), b.files[n].clone());
                }
            },
            &[Links],
            Some(1),
        ),
        row(
            "unnamed extra file",
            |m, _| drop(m.files.insert("products/smuggled.bin".into(), MemFile::Bytes(b"x".to_vec()))),
            &[NoUnnamedFiles],
            None,
        ),
        row(
            "planted temp file",
            |m, _| drop(m.files.insert(".agentplane-tmp-abc123".into(), MemFile::Bytes(Vec::new()))),
            &[NoUnnamedFiles],
            None,
        ),
        row(
            "planted temp file in products/",
            |m, _| drop(m.files.insert("products/.agentplane-tmp-x".into(), MemFile::Bytes(b"x".to_vec()))),
            &[NoUnnamedFiles],
            None,
        ),
        row(
            "non-empty lock",
            |m, _| drop(m.files.insert(".agentplane.lock".into(), MemFile::Bytes(b"pid 1".to_vec()))),
            &[NoUnnamedFiles],
            None,
        ),
        row(
            "lock is a FIFO",
            |m, _| drop(m.files.insert(".agentplane.lock".into(), MemFile::Special(NotRegular::Fifo))),
            &[NoUnnamedFiles],
            None,
        ),
        row(
            "product is a FIFO",
            |m, _| drop(m.files.insert(PRODUCT.into(), MemFile::Special(NotRegular::Fifo))),
            &[SubjectDigests],
            Some(1),
        ),
        row(
            "artifact is a symlink",
            |m, _| drop(m.files.insert("session-artifact-2.json".into(), MemFile::Special(NotRegular::Symlink))),
            &[SubjectDigests],
            Some(2),
        ),
        row(
            "evidence.jsonl is a FIFO",
            |m, _| drop(m.files.insert(CHAIN.into(), MemFile::Special(NotRegular::Fifo))),
            &[ChainPresent],
            None,
        ),
        row("evidence.jsonl is missing", |m, _| drop(m.files.remove(CHAIN)), &[ChainPresent], None),
        row("evidence.jsonl is empty", |m, _| bytes(m, CHAIN).clear(), &[ChainPresent], None),
        row(
            "signed payload that is not a statement",
            |m, f| append_signed(m, f, |_| b"{\"hello\":1}".to_vec()),
            &[Statements],
            Some(3),
        ),
        row(
            "predicateType of another kind",
            |m, f| {
                append_signed(m, f, |p| {
                    let mut st: serde_json::Value =
                        serde_json::from_slice(&statement(ArtifactKind::Seal, vec![Subject::sha256(CHAIN, "00")], p))
                            .unwrap();
                    st["predicateType"] = predicate_type(ArtifactKind::RunArtifact).into();
                    serde_json::to_vec(&st).unwrap()
                })
            },
            &[Statements],
            Some(3),
        ),
        row(
            "a file named by two entries",
            |m, f| {
                let s = session_subject(m, "session-artifact.json");
                append_signed(m, f, |p| statement(ArtifactKind::SessionArtifact, vec![s.clone()], p));
                reseal(m, f);
            },
            &[SubjectDigests],
            Some(3),
        ),
        row(
            "a subject outside the directory",
            |m, f| {
                let s = session_subject(m, "session-artifact.json");
                let out = Subject::sha256("../../etc/passwd", "00");
                append_signed(m, f, |p| statement(ArtifactKind::SessionArtifact, vec![s.clone(), out.clone()], p));
                reseal(m, f);
            },
            &[SubjectDigests],
            Some(3),
        ),
        row(
            "a seal with the wrong length",
            |m, f| {
                append_signed(m, f, |p| {
                    let head = p.previous.clone();
                    let hex = head.trim_start_matches("sha256:").to_string();
                    statement(
                        ArtifactKind::Seal,
                        vec![Subject::sha256(CHAIN, hex)],
                        Predicate { length: Some(2), head: Some(head), ..p },
                    )
                })
            },
            &[Seal],
            Some(3),
        ),
        row("a correct hand-made seal", reseal, &[], None),
        Row { name: "untrusted signer", tamper: |_, _| {}, untrusted: true, failed: &[Signatures], entry: Some(0) },
    ]
}

impl Row {
    /// The fixture's evidence with this row's tampering, and the options
    /// that trust the key the row says.
    fn apply(&self, f: &Fixture) -> (MemEvidence, Options) {
        let mut m = f.a.clone();
        (self.tamper)(&mut m, f);
        (m, opts(if self.untrusted { &f.other } else { &f.key }))
    }
}

fn base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn each_tampering_fails_exactly_its_own_checks() {
    let f = fixture();
    let mut wrong = Vec::new();
    for row in rows() {
        let (m, o) = row.apply(f);
        let r = verify_files(&m, "mem", &o).unwrap();
        let failed: Vec<VerifyCheck> = r.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        let mut results = Vec::new();
        r.entries
            .each(|e| {
                results.push(e.result);
                Ok(())
            })
            .unwrap();
        let entry = results.iter().position(|e| e != "ok");
        let verified_ok = r.verified == row.failed.is_empty();
        if !verified_ok || failed != row.failed || entry != row.entry {
            wrong.push(format!(
                "{}: verified {} failed {failed:?} (want {:?}) first bad entry {entry:?} (want {:?})\n  {:?}\n  {:#?}",
                row.name, r.verified, row.failed, row.entry, r.first_failure, r.findings
            ));
        }
        if !r.verified {
            assert!(r.first_failure.is_some(), "{}", row.name);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn allow_unsealed_turns_a_missing_seal_into_a_warning() {
    let f = fixture();
    let mut m = f.a.clone();
    let mut l = lines(&mut m);
    l.pop();
    set_lines(&mut m, &l);
    let r = verify_files(
        &m,
        "mem",
        &Options { trusted: vec![f.key.clone()], allow_unsealed: true, since: Vec::new(), lines: ReportLines::Kept },
    )
    .unwrap();
    assert!(r.verified && !r.sealed, "{:?}", r.findings);
    assert_eq!(r.warnings.len(), 1);
}

#[test]
fn the_report_names_the_checks_and_the_first_failure() {
    let f = fixture();
    let mut m = f.a.clone();
    flip_last_byte(bytes(&mut m, PRODUCT));
    let r = verify_files(
        &m,
        "mem",
        &Options { trusted: vec![f.key.clone()], allow_unsealed: false, since: Vec::new(), lines: ReportLines::Kept },
    )
    .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    let names: Vec<&str> = json["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "chain-present",
            "envelopes",
            "signatures",
            "statements",
            "links",
            "subject-digests",
            "schemas",
            "no-unnamed-files",
            "seal",
            "checkpoint"
        ]
    );
    let ff = r.first_failure.unwrap();
    assert!(ff.starts_with("entry 1 (SessionArtifact): `products/signature-report.txt` changed"), "{ff}");
    assert_eq!(json["findings"][0]["step"], "subject-digests");
    assert_eq!(json["findings"][0]["entry"], 1);
}

/// The real file access on a real directory: FIFOs, devices and symlinks are
/// findings naming the file, never a hang and never a read through the link.
#[test]
fn the_file_system_reads_regular_files_only() {
    let f = fixture();
    type Plant = fn(&std::path::Path);
    let cases: [(&str, &str, Plant); 5] = [
        ("product FIFO", PRODUCT, |p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()),
        ("product -> /etc/passwd", PRODUCT, |p| std::os::unix::fs::symlink("/etc/passwd", p).unwrap()),
        ("artifact -> /dev/zero", "session-artifact.json", |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
        ("chain FIFO", CHAIN, |p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()),
        ("products/ -> /etc", "products", |p| {
            std::fs::remove_dir_all(p).unwrap();
            std::os::unix::fs::symlink("/etc", p).unwrap();
        }),
    ];
    for (what, name, plant) in cases {
        let t = tempfile::tempdir().unwrap();
        for (n, file) in &f.a.files {
            let MemFile::Bytes(b) = file else { unreachable!() };
            let p = t.path().join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        }
        let p = t.path().join(name);
        if name != "products" {
            std::fs::remove_file(&p).unwrap();
        }
        plant(&p);
        let r = verify_dir(
            t.path(),
            &Options {
                trusted: vec![f.key.clone()],
                allow_unsealed: false,
                since: Vec::new(),
                lines: ReportLines::Kept,
            },
        )
        .unwrap();
        assert!(!r.verified, "{what}");
        let all = serde_json::to_string(&r).unwrap();
        let first = r.first_failure.unwrap();
        let shown = if name == "products" { "products" } else { name };
        assert!(first.contains(&format!("`{shown}`")), "{what}: {first}");
        let passwd = crate::fsx::sha256_hex(&std::fs::read("/etc/passwd").unwrap_or_default());
        assert!(!all.contains(&passwd), "{what}: the digest of /etc/passwd leaked");
    }
}

fn opts(key: &TrustedKey) -> Options {
    Options { trusted: vec![key.clone()], allow_unsealed: false, since: Vec::new(), lines: ReportLines::Kept }
}

/// The report, as json, reading the chain `window` lines at a time.
fn report_in_windows(m: &MemEvidence, opts: &Options, window: usize) -> serde_json::Value {
    serde_json::to_value(verify_windows(m, "mem", opts, window).unwrap()).unwrap()
}

/// Where the windows fall changes nothing: every tampering of the table read
/// one line at a time, two, three... (so each break, seal and torn line falls
/// at a window's edge and inside one) gives the report of a single window.
#[test]
fn every_window_size_gives_the_same_report() {
    let f = fixture();
    for row in rows() {
        let (m, o) = row.apply(f);
        let whole = report_in_windows(&m, &o, reader::WINDOW);
        for window in 1..=5 {
            assert_eq!(report_in_windows(&m, &o, window), whole, "{}: windows of {window}", row.name);
        }
    }
}

/// Where memory's budget falls changes nothing: every tampering of the table
/// with everything kept in temporary files (sorted runs of one name, a
/// report line at a time) gives the report kept in memory, in windows of
/// any size.
#[test]
fn every_budget_gives_the_same_report() {
    let f = fixture();
    for row in rows() {
        let (m, o) = row.apply(f);
        let whole = report_in_windows(&m, &o, reader::WINDOW);
        for (window, budget) in [(reader::WINDOW, 0), (1, 0), (2, 1), (3, 64), (reader::WINDOW, 200)] {
            let r = verify_limits(&m, "mem", &o, Limits { window, budget }).unwrap();
            assert_eq!(serde_json::to_value(r).unwrap(), whole, "{}: windows of {window}, budget {budget}", row.name);
        }
        let dropped = Options { lines: ReportLines::Dropped, ..o.clone() };
        let a = verify_limits(&m, "mem", &dropped, Limits { window: 2, budget: 0 }).unwrap();
        let b = verify_windows(&m, "mem", &dropped, reader::WINDOW).unwrap();
        assert_eq!(serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap(), "{}: -q", row.name);
    }
}

/// Without its lines (`-q`), a report says all else the same: the verdict,
/// the first failure, every check and finding, and the count of entries.
#[test]
fn a_report_without_its_lines_says_the_same_of_every_tampering() {
    let f = fixture();
    for row in rows() {
        let (m, kept) = row.apply(f);
        let dropped = Options { lines: ReportLines::Dropped, ..kept.clone() };
        for window in [1, 2, reader::WINDOW] {
            let mut a = report_in_windows(&m, &kept, window);
            let b = report_in_windows(&m, &dropped, window);
            assert_eq!(b["entries"], serde_json::json!([]), "{}: no lines kept", row.name);
            a["entries"] = serde_json::json!([]);
            assert_eq!(b, a, "{}: windows of {window}", row.name);
        }
        let r = verify_windows(&m, "mem", &dropped, reader::WINDOW).unwrap();
        let k = verify_windows(&m, "mem", &kept, reader::WINDOW).unwrap();
        assert_eq!(r.entries.len(), k.entries.len(), "{}: the count stays", row.name);
    }
}

/// A chain sealed twice: 0–2, the seal 3, 4–5, the seal 6.
fn twice_sealed() -> &'static MemEvidence {
    static M: OnceLock<MemEvidence> = OnceLock::new();
    M.get_or_init(|| {
        let f = fixture();
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("twice");
        run(&dir, &f.signer, false);
        let (mut w, _) = ChainWriter::open(&dir, &f.signer).unwrap();
        w.write_artifact(&session(3), &[]).unwrap();
        w.write_artifact(&session(4), &[]).unwrap();
        w.seal().unwrap();
        drop(w);
        MemEvidence::load(&dir)
    })
}

fn statement_of(line: &[u8]) -> Statement {
    let env: crate::evidence::dsse::Envelope = serde_json::from_slice(line).unwrap();
    serde_json::from_slice(&env.body().unwrap()).unwrap()
}

#[test]
fn a_seal_inside_a_window_verifies_in_every_window_size() {
    let f = fixture();
    let m = twice_sealed();
    let whole = report_in_windows(m, &opts(&f.key), reader::WINDOW);
    assert_eq!(whole["verified"], true, "{whole:#}");
    assert_eq!(whole["entries"].as_array().unwrap().len(), 7);
    for window in 1..=8 {
        assert_eq!(report_in_windows(m, &opts(&f.key), window), whole, "windows of {window}");
    }
}

/// The last seal re-signed with an earlier checkpoint (`size`, its text): a
/// size the stream had passed when the seal named it.
fn reseal_with_checkpoint(f: &Fixture, details: Option<serde_json::Value>) -> MemEvidence {
    let mut m = twice_sealed().clone();
    let l = lines(&mut m);
    let hex = file_hex(&l[..6]);
    append_signed(&mut m, f, |p| {
        let seq = p.seq;
        let head = p.previous.clone();
        statement(
            ArtifactKind::Seal,
            vec![Subject::sha256(CHAIN, hex.clone())],
            Predicate { length: Some(seq), head: Some(head), details: details.clone(), ..p },
        )
    });
    m
}

/// A seal carrying a correctly signed checkpoint of 2 entries, a size no
/// other checkpoint names: its root comes from one more pass over the chain.
#[test]
fn a_checkpoint_of_a_passed_size_is_judged_by_the_root_at_that_size() {
    let f = fixture();
    let mut m = twice_sealed().clone();
    let l = lines(&mut m);
    let origin = crate::evidence::chain::checkpoint_origin(&statement_of(&l[0]).predicate.run_id);
    let leaves: Vec<_> = l.iter().map(|x| crate::evidence::tlog::merkle::leaf_hash(x)).collect();
    for (root, why) in [
        (crate::evidence::tlog::merkle::root(&leaves[..2]), "its checkpoint covers 2 entries, not the 6 it seals"),
        (
            crate::evidence::tlog::merkle::root(&leaves[..1]),
            "its checkpoint does not verify: its root is not the root of the chain's first 2 entries (history rewritten)",
        ),
    ] {
        let note = crate::evidence::tlog::Checkpoint::sign(&origin, 2, &root, &origin, &f.signer).unwrap();
        let m = reseal_with_checkpoint(f, Some(serde_json::json!({ "checkpoint": note })));
        let whole = report_in_windows(&m, &opts(&f.key), reader::WINDOW);
        assert_eq!(whole["entries"][6]["result"], why, "{whole:#}");
        for window in 1..=8 {
            assert_eq!(report_in_windows(&m, &opts(&f.key), window), whole, "windows of {window}");
        }
    }
}

/// The last seal re-signed with the first seal's checkpoint.
#[test]
fn a_stale_checkpoint_is_judged_by_the_root_at_its_own_size() {
    let f = fixture();
    let mut m = twice_sealed().clone();
    let l = lines(&mut m);
    let first_seal = statement_of(&l[3]);
    let m = reseal_with_checkpoint(f, first_seal.predicate.details.clone());
    let whole = report_in_windows(&m, &opts(&f.key), reader::WINDOW);
    let r: Vec<&serde_json::Value> =
        whole["findings"].as_array().unwrap().iter().filter(|x| x["step"] == "checkpoint").collect();
    assert_eq!(r[0]["entry"], 6, "{whole:#}");
    assert_eq!(r[0]["message"], "its checkpoint covers 3 entries, not the 6 it seals", "{whole:#}");
    assert_eq!(whole["entries"][6]["result"], "its checkpoint covers 3 entries, not the 6 it seals");
    for window in 1..=8 {
        assert_eq!(report_in_windows(&m, &opts(&f.key), window), whole, "windows of {window}");
    }
}

/// The listing comes in no order; unnamed files are reported in the order a
/// sorted walk meets them (`a/b` before `a.txt`), and a missing named file
/// and an extra one are each found once.
#[test]
fn unnamed_files_are_reported_in_walk_order() {
    let f = fixture();
    let mut m = f.a.clone();
    m.files.insert("a.txt".into(), MemFile::Bytes(b"x".to_vec()));
    m.files.insert("a/b".into(), MemFile::Bytes(b"y".to_vec()));
    m.files.insert("0".into(), MemFile::Special(NotRegular::Fifo));
    let r = verify_files(&m, "mem", &opts(&f.key)).unwrap();
    let unnamed: Vec<&str> =
        r.findings.iter().filter(|x| x.step == NoUnnamedFiles).map(|x| x.message.as_str()).collect();
    assert_eq!(
        unnamed,
        [
            "`0` is in the directory but no entry names it (a FIFO)",
            "`a/b` is in the directory but no entry names it",
            "`a.txt` is in the directory but no entry names it",
        ]
    );
    m.files.remove(PRODUCT);
    let r = verify_files(&m, "mem", &opts(&f.key)).unwrap();
    let missing: Vec<&Finding> = r.findings.iter().filter(|x| x.message.contains(PRODUCT)).collect();
    assert_eq!(missing.len(), 1, "{:?}", r.findings);
    assert_eq!((missing[0].step, missing[0].entry), (SubjectDigests, Some(1)));
}

/// The `tlog-index` is compared in place: any byte changed, a byte more or
/// less, is a finding of step 10 alone.
#[test]
fn every_byte_of_the_tlog_index_is_checked() {
    let f = fixture();
    let clean = bytes(&mut f.a.clone(), "tlog-index").clone();
    let mut variants: Vec<Vec<u8>> = (0..clean.len())
        .map(|i| {
            let mut b = clean.clone();
            b[i] ^= 0x40;
            b
        })
        .collect();
    variants.push(clean[..clean.len() - 1].to_vec());
    variants.push([clean.as_slice(), &[0]].concat());
    variants.push(Vec::new());
    for (n, v) in variants.into_iter().enumerate() {
        let mut m = f.a.clone();
        *bytes(&mut m, "tlog-index") = v;
        let r = verify_files(&m, "mem", &opts(&f.key)).unwrap();
        let failed: Vec<VerifyCheck> = r.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        assert_eq!(failed, [Checkpoint], "variant {n}: {:?}", r.findings);
    }
}

/// `verify --format json` streams its lines back from where they were kept
/// (here a temporary file): the same bytes as the document built whole.
#[test]
fn the_streamed_json_is_the_document_built_whole() {
    use crate::output::render::Render;
    let f = fixture();
    for row in rows() {
        let (m, o) = row.apply(f);
        let report = verify_limits(&m, "mem", &o, Limits { window: 2, budget: 0 }).unwrap();
        let v = crate::commands::verify::Verified { report };
        let mut streamed = Vec::new();
        v.write_json(&mut streamed).unwrap();
        let mut whole = serde_json::to_vec_pretty(&v.json()).unwrap();
        whole.push(b'\n');
        assert_eq!(String::from_utf8(streamed).unwrap(), String::from_utf8(whole).unwrap(), "{}", row.name);
    }
}
