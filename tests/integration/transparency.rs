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
    // early checkpoint restored: alone it verifies; against the late checkpoint it cannot.
    let full = lines(&r);
    set_lines(&r, &short);
    std::fs::copy(&early, r.join(&format!("{EV}/checkpoint"))).unwrap();
    std::fs::remove_file(r.join(&format!("{EV}/promotion-artifact.json"))).unwrap();
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
