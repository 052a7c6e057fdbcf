//! Keys, the signed chain, tampering and `verify`.

use crate::util::Root;
use std::os::unix::fs::PermissionsExt;

const EV: &str = "artifacts/example-agent";

fn done() -> Root {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    r
}

fn verify(r: &Root) -> crate::util::Run {
    r.cmd(&["verify", EV, "--trusted-key", &r.pubkey()])
}

fn lines(r: &Root) -> Vec<String> {
    r.read(&format!("{EV}/evidence.jsonl")).lines().map(str::to_string).collect()
}

fn set_lines(r: &Root, lines: &[String]) {
    r.write(&format!("{EV}/evidence.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>());
}

#[test]
fn a_complete_run_verifies() {
    let r = done();
    let out = verify(&r).ok();
    assert!(out.stdout.contains("verified: 6 entries, sealed"), "{}", out.stdout);
    let doc = r.cmd(&["--format", "json", "verify", EV, "--trusted-key", &r.pubkey()]).ok().json();
    assert_eq!(doc["verified"], true);
    assert!(doc["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true));
}

#[test]
fn every_line_is_a_dsse_envelope_over_an_in_toto_statement() {
    use base64::Engine;
    let r = done();
    let mut prev = format!("sha256:{}", "0".repeat(64));
    for (i, line) in lines(&r).iter().enumerate() {
        let env: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
        let body = base64::engine::general_purpose::STANDARD.decode(env["payload"].as_str().unwrap()).unwrap();
        let st: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
        let kind = st["predicate"]["kind"].as_str().unwrap();
        assert_eq!(st["predicateType"], format!("https://agentplane.socioprophet.org/evidence/{kind}/v0.1"));
        assert_eq!(st["predicate"]["seq"], i);
        assert_eq!(st["predicate"]["previous"], prev);
        prev = format!("sha256:{}", agentplane::fsx::sha256_hex(line.as_bytes()));
    }
}

fn expect_bad(r: &Root, needle: &str) {
    let out = verify(r).failed();
    assert!(out.stdout.contains("NOT verified") && out.stdout.contains(needle), "wanted {needle:?}:\n{}", out.stdout);
}

#[test]
fn a_changed_byte_in_an_artifact_is_caught() {
    let r = done();
    let p = format!("{EV}/run-artifact.json");
    let s = r.read(&p).replacen("\"success\"", "\"succe55\"", 1);
    r.write(&p, s);
    expect_bad(&r, "entry 2 (RunArtifact): `run-artifact.json` changed");
}

#[test]
fn a_changed_log_or_product_is_caught() {
    let r = done();
    r.write(&format!("{EV}/run.stdout.log"), "forged output\n");
    expect_bad(&r, "`run.stdout.log` changed: 14 bytes, its artifact recorded");
    // The same size, other bytes: caught by the digest.
    let r = done();
    let log = format!("{EV}/run.stdout.log");
    r.write(&log, r.read(&log).replacen("smoke", "SMOKE", 1));
    expect_bad(&r, "`run.stdout.log` changed: sha256 ");
    let r = done();
    r.write(&format!("{EV}/products/smoke-result.json"), "{}");
    expect_bad(&r, "`products/smoke-result.json` changed");
}

#[test]
fn missing_extra_reordered_and_duplicated_entries_are_caught() {
    let r = done();
    let mut l = lines(&r);
    l.remove(1);
    set_lines(&r, &l);
    expect_bad(&r, "entry 1");

    let r = done();
    let mut l = lines(&r);
    l.swap(1, 2);
    set_lines(&r, &l);
    expect_bad(&r, "entry 1");

    let r = done();
    let mut l = lines(&r);
    let dup = l[2].clone();
    l.insert(3, dup);
    set_lines(&r, &l);
    expect_bad(&r, "entry 3");

    let r = done();
    let mut l = lines(&r);
    let first = l[0].clone();
    l.push(first);
    set_lines(&r, &l);
    expect_bad(&r, "entry 6");
}

#[test]
fn a_truncated_tail_is_caught_and_allow_unsealed_warns() {
    let r = done();
    let mut l = lines(&r);
    l.pop();
    set_lines(&r, &l);
    expect_bad(&r, "does not end in a seal");
    let out = r.cmd(&["verify", EV, "--trusted-key", &r.pubkey(), "--allow-unsealed"]).ok();
    assert!(out.stdout.contains("warning:"), "{}", out.stdout);
    // A torn last line (no newline) is caught too.
    let text = r.read(&format!("{EV}/evidence.jsonl"));
    r.write(&format!("{EV}/evidence.jsonl"), &text[..text.len() - 10]);
    expect_bad(&r, "partial line");
}

#[test]
fn a_forged_signature_or_untrusted_signer_is_caught() {
    let r = done();
    let mut l = lines(&r);
    let mut env: serde_json::Value = serde_json::from_str(&l[1]).unwrap();
    env["signatures"][0]["sig"] = serde_json::Value::String(base64_of(&[7u8; 64]));
    l[1] = env.to_string();
    set_lines(&r, &l);
    expect_bad(&r, "entry 1 (unreadable): the signature does not verify");

    let r = done();
    r.cmd(&["keygen", "--out", "other"]).ok();
    let out = r.cmd(&["verify", EV, "--trusted-key", "other.pub"]).failed();
    assert!(out.stdout.contains("entry 0") && out.stdout.contains("does not verify"), "{}", out.stdout);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn an_unnamed_file_in_the_directory_is_caught() {
    let r = done();
    r.write(&format!("{EV}/products/smuggled.bin"), "x");
    expect_bad(&r, "`products/smuggled.bin` is in the directory but no entry names it");
}

#[test]
fn a_directory_spliced_from_two_runs_is_caught() {
    let a = done();
    let b = done();
    // Take run B's run entry and files into run A's directory.
    for f in ["run-artifact.json", "run.stdout.log", "run.stderr.log"] {
        std::fs::copy(b.join(&format!("{EV}/{f}")), a.join(&format!("{EV}/{f}"))).unwrap();
    }
    let mut la = lines(&a);
    la[2] = lines(&b)[2].clone();
    set_lines(&a, &la);
    // B was signed by another key: trust both, so only the splice can fail.
    let out = a.cmd(&["verify", EV, "--trusted-key", &a.pubkey(), "--trusted-key", &b.pubkey()]).failed();
    assert!(out.stdout.contains("entry 2"), "{}", out.stdout);
}

#[test]
fn an_artifact_that_breaks_its_schema_is_caught_even_when_signed() {
    use agentplane::evidence::{artifacts::Artifact, chain::ChainWriter, keys::Signer};
    use agentplane::types::ArtifactKind;
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Bogus {
        kind: String,
        bundle: String,
    }
    impl Artifact for Bogus {
        const KIND: ArtifactKind = ArtifactKind::RunArtifact;
        type Details = agentplane::evidence::artifacts::NoDetails;
    }
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    let signer = Signer::load(&r.join(".agentplane/keys/signing.key")).unwrap();
    let (mut w, _) = ChainWriter::open(&r.join(EV), &signer).unwrap();
    w.write_artifact(&Bogus { kind: "RunArtifact".into(), bundle: "example-agent@0.1.0".into() }, &[]).unwrap();
    w.seal().unwrap();
    drop(w);
    expect_bad(&r, "does not match the RunArtifact schema");
}

#[test]
fn verify_without_a_trusted_key_cannot_check() {
    let r = done();
    r.cmd(&["verify", EV]).error().stderr_has("--trusted-key");
    r.cmd(&["verify", "no-such-dir", "--trusted-key", &r.pubkey()]).error();
}

#[test]
fn key_errors_are_exit_2_with_a_hint() {
    let r = Root::new();
    r.copy_bundle("example-agent");
    // missing
    r.cmd(&["validate", "bundles/example-agent", "--key", "nope.key"]).error().stderr_has("hint:");
    // readable by others
    r.cmd(&["keygen", "--out", "k"]).ok();
    std::fs::set_permissions(r.join("k.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    r.cmd(&["validate", "bundles/example-agent", "--key", "k.key"]).error().stderr_has("chmod 600");
    // wrong type: a public key where the private one belongs (made private-looking)
    std::fs::set_permissions(r.join("k.pub"), std::fs::Permissions::from_mode(0o600)).unwrap();
    r.cmd(&["validate", "bundles/example-agent", "--key", "k.pub"]).error().stderr_has("PKCS#8");
    // corrupt PEM
    r.write("bad.key", "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n");
    std::fs::set_permissions(r.join("bad.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    r.cmd(&["validate", "bundles/example-agent", "--key", "bad.key"]).error().stderr_has("hint:");
    // a corrupt trusted key
    r.cmd(&["verify", ".", "--trusted-key", "bad.key"]).error().stderr_has("SPKI");
}

#[test]
fn keygen_never_overwrites_and_keeps_the_private_key_private() {
    let r = Root::new();
    let out = r.cmd(&["keygen", "--out", "k"]).ok();
    assert!(out.stdout.contains("key id"));
    assert_eq!(std::fs::metadata(r.join("k.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let before = r.read("k.key");
    r.cmd(&["keygen", "--out", "k"]).error().stderr_has("never overwrites");
    assert_eq!(r.read("k.key"), before);
}

#[test]
fn a_new_validation_keeps_the_previous_chain() {
    let r = done();
    let first_run = lines(&r)[0].clone();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    let runs: Vec<_> = std::fs::read_dir(r.join(&format!("{EV}/runs"))).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let old = runs[0].as_ref().unwrap().path();
    assert_eq!(std::fs::read_to_string(old.join("evidence.jsonl")).unwrap().lines().next().unwrap(), first_run);
    assert!(old.join("run-artifact.json").is_file());
}

#[test]
fn two_writers_at_once_never_corrupt_the_chain() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    for _ in 0..5 {
        let spawn = || {
            std::process::Command::new(crate::util::BIN)
                .args(["--root", r.path().to_str().unwrap(), "validate", "bundles/example-agent"])
                .output()
                .unwrap()
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(spawn);
            let b = s.spawn(spawn);
            (a.join().unwrap(), b.join().unwrap())
        });
        for o in [&a, &b] {
            let code = o.status.code().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(code == 0 || (code == 2 && err.contains("another agentplane process")), "exit {code}: {err}");
        }
        r.cmd(&["verify", EV, "--trusted-key", &r.pubkey(), "--allow-unsealed"]).ok();
    }
}

#[test]
fn the_committed_example_evidence_verifies() {
    let repo = crate::util::repo();
    let out = std::process::Command::new(crate::util::BIN)
        .args(["verify", "examples/evidence/example-agent", "--trusted-key", "examples/keys/demo.pub"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn verify_human_output_snapshots() {
    let r = done();
    let ok = verify(&r).ok();
    insta::assert_snapshot!(
        "verify_ok_human",
        format!("exit {}\n{}", ok.code, crate::util::redact(&ok.stdout, r.path()))
    );
    let p = format!("{EV}/placement-decision.json");
    let s = r.read(&p).replacen("local", "l0cal", 1);
    r.write(&p, s);
    let bad = verify(&r).failed();
    insta::assert_snapshot!(
        "verify_bad_human",
        format!("exit {}\n{}", bad.code, crate::util::redact(&bad.stdout, r.path()))
    );
}

/// Run `verify` in the background and insist it finishes within `secs`
/// (a FIFO opened for reading would block it forever); kill it otherwise.
fn verify_promptly(r: &Root, args: &[&str], secs: u64) -> crate::util::Run {
    let mut child = std::process::Command::new(crate::util::BIN)
        .arg("--root")
        .arg(r.path())
        .args(args)
        .current_dir(r.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() >= secs {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`agentplane {}` did not return within {secs} s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

fn mkfifo(p: &std::path::Path) {
    let _ = std::fs::remove_file(p);
    let status = std::process::Command::new("mkfifo").arg(p).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_as_the_chain_or_a_product_fails_promptly() {
    let r = done();
    mkfifo(&r.join(&format!("{EV}/evidence.jsonl")));
    let out = verify_promptly(&r, &["verify", EV, "--trusted-key", &r.pubkey()], 20).failed();
    assert!(out.stdout.contains("`evidence.jsonl` is a FIFO"), "{}", out.stdout);

    let r = done();
    mkfifo(&r.join(&format!("{EV}/products/smoke-result.json")));
    let out = verify_promptly(&r, &["--format", "json", "verify", EV, "--trusted-key", &r.pubkey()], 20).failed();
    let doc = out.json();
    let failed: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["subject-digests"], "{}", out.stdout);
    assert!(doc["firstFailure"].as_str().unwrap().contains("`products/smoke-result.json` is a FIFO"), "{}", out.stdout);
}

#[test]
fn an_endless_line_in_the_chain_is_refused_without_holding_it() {
    // 40 MiB with no newline where the third entry belongs: over the 16 MiB
    // an entry may be, so the reader stops there instead of holding it.
    let r = done();
    let mut chain: Vec<u8> = lines(&r)[..2].iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
    chain.extend(std::iter::repeat_n(b'x', 40 << 20));
    std::fs::write(r.join(&format!("{EV}/evidence.jsonl")), chain).unwrap();
    let out = verify_promptly(&r, &["--format", "json", "verify", EV, "--trusted-key", &r.pubkey()], 20).failed();
    let doc = out.json();
    let chain_present = doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "chain-present").unwrap();
    assert_eq!(chain_present["ok"], false, "{}", out.stdout);
    assert!(
        chain_present["detail"].as_str().unwrap().contains("line 3 of `evidence.jsonl` is over 16777216 bytes"),
        "{}",
        out.stdout
    );
    // The two entries before it were read and checked.
    assert_eq!(doc["entries"].as_array().unwrap().len(), 2, "{}", out.stdout);
}

/// A log swapped for a sparse terabyte (free to make, an hour to hash): its
/// size is not the one the signed RunArtifact records, so it is reported
/// changed without being read. With the RunArtifact changed too, nothing it
/// records is trusted and the log is not read at all.
#[test]
fn a_sparse_terabyte_log_is_refused_by_its_recorded_size_unread() {
    let r = done();
    let log = r.join(&format!("{EV}/run.stdout.log"));
    let recorded = std::fs::metadata(&log).unwrap().len();
    std::fs::File::options().write(true).open(&log).unwrap().set_len(1 << 40).unwrap();
    let out = verify_promptly(&r, &["verify", EV, "--trusted-key", &r.pubkey()], 20).failed();
    let want = format!("`run.stdout.log` changed: 1099511627776 bytes, its artifact recorded {recorded} (not read)");
    assert!(out.stdout.contains(&want), "{}", out.stdout);

    let p = format!("{EV}/run-artifact.json");
    r.write(&p, r.read(&p).replacen("\"success\"", "\"succe55\"", 1));
    let out = verify_promptly(&r, &["--format", "json", "verify", EV, "--trusted-key", &r.pubkey()], 20).failed();
    assert!(out.stdout.contains("entry 2 (RunArtifact): `run-artifact.json` changed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("`run.stdout.log` not checked: `run-artifact.json`, which records it, did not check out"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_product_symlinked_to_etc_passwd_is_not_read() {
    let r = done();
    let p = r.join(&format!("{EV}/products/smoke-result.json"));
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
    let out = verify(&r).failed();
    assert!(out.stdout.contains("`products/smoke-result.json` is a symbolic link"), "{}", out.stdout);
    let passwd = agentplane::fsx::sha256_hex(&std::fs::read("/etc/passwd").unwrap());
    assert!(!out.stdout.contains(&passwd) && !out.stderr.contains(&passwd), "the digest of /etc/passwd was printed");
}

#[test]
fn a_weak_trusted_key_is_refused_with_exit_2() {
    use base64::Engine;
    let r = done();
    // SPKI DER for ed25519 with the identity point (01 00..00) as the key: small order.
    let mut der = hex_bytes("302a300506032b6570032100");
    der.push(1);
    der.extend([0u8; 31]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    r.write("weak.pub", format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"));
    r.cmd(&["verify", EV, "--trusted-key", "weak.pub"]).error().stderr_has("weak").stderr_has("hint:");
}

#[test]
fn a_fifo_as_the_trusted_key_is_refused_promptly() {
    let r = done();
    mkfifo(&r.join("fifo.pub"));
    verify_promptly(&r, &["verify", EV, "--trusted-key", "fifo.pub"], 20).error().stderr_has("FIFO");
}

#[test]
fn a_planted_temp_file_or_a_non_empty_lock_is_caught() {
    let r = done();
    r.write(&format!("{EV}/.agentplane-tmp-x1y2z3"), "half a write");
    expect_bad(&r, "`.agentplane-tmp-x1y2z3` is a temporary file");
    let r = done();
    r.write(&format!("{EV}/.agentplane.lock"), "not empty");
    expect_bad(&r, "`.agentplane.lock` is not empty");
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
