//! The chain as a transparency log: a signed C2SP checkpoint at every seal,
//! `verify --since` proving the log only grew, `prove` / `verify-proof`.

use crate::util::Root;

const EV: &str = "artifacts/example-agent";

fn lines(r: &Root) -> Vec<String> {
    r.read(&format!("{EV}/evidence.jsonl")).lines().map(str::to_string).collect()
}

fn set_lines(r: &Root, l: &[String]) {
    r.write(&format!("{EV}/evidence.jsonl"), l.iter().map(|x| format!("{x}\n")).collect::<String>());
}

#[test]
fn every_seal_publishes_a_checkpoint_that_verify_checks() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let cp = r.read(&format!("{EV}/checkpoint"));
    let mut it = cp.lines();
    assert!(it.next().unwrap().starts_with("agentplane.socioprophet.org/evidence/"), "{cp}");
    assert_eq!(it.next().unwrap(), "5", "the checkpoint covers the five entries before the seal:\n{cp}");
    assert!(cp.contains("\n\n— agentplane.socioprophet.org/evidence/"), "{cp}");
    let v = r.cmd(&["--format", "json", "verify", EV, "--trusted-key", &r.pubkey()]).ok().json();
    assert!(v["checks"].as_array().unwrap().iter().any(|c| c["name"] == "checkpoint" && c["ok"] == true), "{v}");
    // A checkpoint file that is not the last seal's is caught.
    let mut other = cp.replacen("\n5\n", "\n4\n", 1);
    other.push('\n');
    r.write(&format!("{EV}/checkpoint"), other);
    let out = r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()]).failed();
    assert!(out.stdout.contains("not the checkpoint the last seal signed"), "{}", out.stdout);
}

#[test]
fn verify_since_passes_an_extension_and_fails_a_cut_back_a_fork_a_foreign_and_a_forged_checkpoint() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let early = r.join("early.checkpoint");
    std::fs::copy(r.join(&format!("{EV}/checkpoint")), &early).unwrap();
    let early_index = r.join("early.tlog-index");
    std::fs::copy(r.join(&format!("{EV}/tlog-index")), &early_index).unwrap();
    let short = lines(&r);
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    let late = r.join("late.checkpoint");
    std::fs::copy(r.join(&format!("{EV}/checkpoint")), &late).unwrap();
    let key = r.pubkey();
    let since = |cp: &std::path::Path| r.cmd(&["verify", EV, "--trusted-key", &key, "--since", cp.to_str().unwrap()]);
    // The log grew since the early checkpoint: an extension.
    since(&early).ok();
    since(&late).ok();

    // Cut back to the earlier seal (drop the promotion and its seal), with the
    // early checkpoint (and tlog-index) restored: alone it verifies; against
    // the late checkpoint it cannot.
    let full = lines(&r);
    set_lines(&r, &short);
    std::fs::copy(&early, r.join(&format!("{EV}/checkpoint"))).unwrap();
    std::fs::remove_file(r.join(&format!("{EV}/promotion-artifact.json"))).unwrap();
    // With the later seal's index left behind, verify sees the cut too.
    r.cmd(&["verify", EV, "--trusted-key", &key]).failed().stdout_has("`tlog-index` is not the index");
    std::fs::copy(&early_index, r.join(&format!("{EV}/tlog-index"))).unwrap();
    r.cmd(&["verify", EV, "--trusted-key", &key]).ok();
    let out = since(&late).failed();
    assert!(out.stdout.contains("--since checkpoint 1") && out.stdout.contains("cut back"), "{}", out.stdout);

    // A rewritten history, re-signed by the trusted key itself, over the same
    // chain (same origin): a fork the late checkpoint does not contain.
    {
        use agentplane::evidence::{chain::ChainWriter, keys::Signer};
        set_lines(&r, &full[..5]);
        let signer = Signer::load(&r.join(".agentplane/keys/signing.key")).unwrap();
        let (mut w, _) = ChainWriter::open(&r.join(EV), &signer).unwrap();
        w.seal().unwrap();
        let session = agentplane::evidence::artifacts::SessionArtifact {
            kind: agentplane::types::ArtifactKind::SessionArtifact,
            bundle: "example-agent@0.1.0".into(),
            captured_at: "2026-11-23T00:00:00.000Z".into(),
            session_ref: "urn:srcos:session:forged".into(),
            status: agentplane::types::SessionStatus::Success,
            run_artifact_ref: None,
            replay_artifact_ref: None,
            governance_context: None,
        };
        w.write_artifact(&session, &[]).unwrap();
        w.seal().unwrap();
    }
    let out = since(&late).failed();
    assert!(out.stdout.contains("history rewritten"), "{}", out.stdout);

    // Another chain's checkpoint, and a forged signature.
    let other = Root::with_example();
    other.up("bundles/example-agent");
    let foreign = r.join("foreign.checkpoint");
    std::fs::copy(other.join(&format!("{EV}/checkpoint")), &foreign).unwrap();
    let out = since(&foreign).failed();
    assert!(out.stdout.contains("--since checkpoint 1"), "{}", out.stdout);
    let text = std::fs::read_to_string(&early).unwrap();
    let sig_at = text.rfind(' ').unwrap() + 5;
    let mut forged = text.into_bytes();
    forged[sig_at] = if forged[sig_at] == b'A' { b'B' } else { b'A' };
    let forged_path = r.join("forged.checkpoint");
    std::fs::write(&forged_path, forged).unwrap();
    since(&forged_path).failed();
}

#[test]
fn prove_and_verify_proof_round_trip_and_a_tampered_file_fails() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let proof = r.cmd(&["prove", EV, "run-artifact.json"]).ok().stdout;
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{proof}");
    r.write("run.tlog-proof", &proof);
    let file = r.join(&format!("{EV}/run-artifact.json")).display().to_string();
    let out = r.cmd(&["verify-proof", "run.tlog-proof", &file, "--trusted-key", &r.pubkey()]).ok();
    assert!(out.stdout.contains("is entry 2 (RunArtifact)"), "{}", out.stdout);
    // A product too.
    let p = r.cmd(&["prove", EV, "products/smoke-result.json"]).ok().stdout;
    r.write("p.tlog-proof", &p);
    let prod = r.join(&format!("{EV}/products/smoke-result.json")).display().to_string();
    r.cmd(&["verify-proof", "p.tlog-proof", &prod, "--trusted-key", &r.pubkey()]).ok();
    // Tampered file, wrong key, unknown file.
    r.write(&format!("{EV}/run-artifact.json"), "{}\n");
    let out = r.cmd(&["verify-proof", "run.tlog-proof", &file, "--trusted-key", &r.pubkey()]).failed();
    assert!(out.stdout.contains("NOT proven"), "{}", out.stdout);
    r.cmd(&["keygen", "--out", "other"]).ok();
    r.cmd(&["verify-proof", "p.tlog-proof", &prod, "--trusted-key", "other.pub"]).failed();
    r.cmd(&["prove", EV, "nope.json"]).failed().stderr_has("no entry before the last checkpoint names");
}

fn prove_json(r: &Root, dir: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--format", "json", "prove", dir];
    a.extend_from_slice(args);
    r.cmd(&a).ok().json()
}

#[test]
fn prove_answers_from_the_tlog_index_and_from_the_chain_alike() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let fast = prove_json(&r, EV, &["run-artifact.json"]);
    assert_eq!(
        (fast["source"].as_str(), fast["index"].as_u64(), fast["size"].as_u64()),
        (Some("tlog-index"), Some(2), Some(5))
    );
    let by_entry = prove_json(&r, EV, &["--entry", "2"]);
    assert_eq!(by_entry["proof"], fast["proof"]);
    assert_eq!(by_entry["source"], "tlog-index");
    // Without the index (evidence sealed by an older agentplane): the chain is read, the proof is the same.
    let index = r.join(&format!("{EV}/tlog-index"));
    let kept = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    let slow = prove_json(&r, EV, &["run-artifact.json"]);
    assert_eq!((slow["source"].as_str(), &slow["proof"]), (Some("chain"), &fast["proof"]));
    r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()]).ok(); // an index is optional
    std::fs::write(&index, kept).unwrap();
    r.write("run.tlog-proof", fast["proof"].as_str().unwrap());
    let file = r.join(&format!("{EV}/run-artifact.json")).display().to_string();
    r.cmd(&["verify-proof", "run.tlog-proof", &file, "--trusted-key", &r.pubkey()]).ok();
    // A later seal rewrites the index: the promotion is provable from it.
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    let p = prove_json(&r, EV, &["promotion-artifact.json"]);
    assert_eq!((p["source"].as_str(), p["index"].as_u64(), p["size"].as_u64()), (Some("tlog-index"), Some(6), Some(7)));
    r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()]).ok();
    // Out of range, both at once, neither.
    r.cmd(&["prove", EV, "--entry", "7"]).failed().stderr_has("covers entries 0..7, not 7");
    r.cmd(&["prove", EV, "run-artifact.json", "--entry", "1"]).error();
    r.cmd(&["prove", EV]).error();
}

#[test]
fn a_hostile_tlog_index_fails_promptly_naming_it_and_never_proves_something_false() {
    use agentplane::evidence::tlog_index;
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let index = r.join(&format!("{EV}/tlog-index"));
    let good = std::fs::read(&index).unwrap();
    let put = |bytes: &[u8]| {
        let _ = std::fs::remove_file(&index);
        std::fs::write(&index, bytes).unwrap();
    };
    let prove_fails = |want: &str| {
        let out = r.cmd(&["prove", EV, "run-artifact.json"]).error();
        assert!(out.stderr.contains("tlog-index") && out.stderr.contains(want), "{want}:\n{}", out.stderr);
        assert!(out.stderr.contains("hint: `tlog-index` is a cache"), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "no proof printed:\n{}", out.stdout);
    };
    put(&good[..good.len() - 5]);
    prove_fails("not the length its header gives");
    put(&[&good[..], b"extra"].concat());
    prove_fails("not the length its header gives");
    put(b"not an index at all, but long enough for a header");
    prove_fails("unknown magic");
    r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()]).failed().stdout_has("`tlog-index` is not the index");

    // Well-formed but lying: run-artifact.json said to be entry 1; the hashes of another log.
    let chain = r.read(&format!("{EV}/evidence.jsonl"));
    let lines: Vec<&str> = chain.lines().collect();
    let leaves: Vec<_> =
        lines[..5].iter().map(|l| agentplane::evidence::tlog::merkle::leaf_hash(l.as_bytes())).collect();
    let mut offsets = vec![0u64];
    for l in &lines[..5] {
        offsets.push(offsets.last().unwrap() + l.len() as u64 + 1);
    }
    put(&tlog_index::encode(&leaves, &offsets, [("run-artifact.json", 1)]));
    prove_fails("points `run-artifact.json` at entry 1, which does not name it");
    let mut other = leaves.clone();
    other.swap(0, 1);
    put(&tlog_index::encode(&other, &offsets, [("run-artifact.json", 2)]));
    prove_fails("do not give the root");
    put(&tlog_index::encode(&leaves, &offsets, [("run-artifact.json", 9)]));
    prove_fails("beyond its 5 entries");
    // Pointing past the end of the chain: it describes no seal of this chain,
    // so the chain is read (and says so).
    let mut past = offsets.clone();
    past[5] = 1 << 40;
    put(&tlog_index::encode(&leaves, &past, [("run-artifact.json", 2)]));
    let out = r.cmd(&["--format", "json", "prove", EV, "run-artifact.json"]).ok();
    assert_eq!(out.json()["source"], "chain");
    assert!(out.stderr.contains("read the whole chain instead"), "{}", out.stderr);

    // Not a regular file, or huge: refused at open, never read, never waited on.
    std::fs::remove_file(&index).unwrap();
    nix::unistd::mkfifo(&index, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    prove_fails("is a FIFO");
    r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()]).failed().stdout_has("`tlog-index` is a FIFO");
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &index).unwrap();
    prove_fails("is a symbolic link");
    std::fs::remove_file(&index).unwrap();
    std::fs::File::create(&index).unwrap().set_len(tlog_index::MAX_INDEX + 1).unwrap();
    prove_fails("over the");
    put(&good);
    r.cmd(&["prove", EV, "run-artifact.json"]).ok();
    r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()]).ok();
}
