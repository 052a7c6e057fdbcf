//! The whole pipeline through the real binary: run, emit, up, replay,
//! lifecycle, timeouts, secrets, cancellation, demo.

use crate::util::Root;

#[test]
fn up_runs_every_stage_and_the_evidence_verifies() {
    let r = Root::with_example();
    let out = r.up("bundles/example-agent");
    for stage in ["validate", "place", "run", "emit"] {
        assert!(out.stdout.contains(stage), "{}", out.stdout);
    }
    let run = r.json("artifacts/example-agent/run-artifact.json");
    assert_eq!(run["status"], "success");
    assert_eq!(run["isolation"], "process");
    assert_eq!(run["exitCode"], 0);
    assert_eq!(run["products"][0]["path"], "products/smoke-result.json");
    assert!(r.read("artifacts/example-agent/run.stdout.log").contains("smoke test starting"));
    assert_eq!(r.json("artifacts/example-agent/session-artifact.json")["status"], "success");
    let replay = r.json("artifacts/example-agent/replay-artifact.json");
    assert_eq!(replay["inputs"]["bundlePath"], "bundles/example-agent");
    assert_eq!(r.json("state/pointers/current-staging")["path"], "bundles/example-agent");
    r.cmd(&["verify", "artifacts/example-agent", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn stages_one_at_a_time_and_out_of_order() {
    let r = Root::with_example();
    let b = "bundles/example-agent";
    r.cmd(&["place", b]).error().stderr_has("agentplane validate");
    r.cmd(&["validate", b]).ok();
    r.cmd(&["run", b]).error().stderr_has("agentplane place");
    r.cmd(&["emit", b]).error().stderr_has("agentplane run");
    let placed = r.cmd(&["--format", "json", "place", b]).ok().json();
    assert_eq!(placed["chosenExecutor"], "local");
    assert_eq!(placed["transport"], "local");
    r.cmd(&["place", b]).error().stderr_has("already has a PlacementDecision");
    let run = r.cmd(&["--format", "json", "run", b]).ok().json();
    assert_eq!(run["status"], "success");
    r.cmd(&["emit", b]).ok();
    r.cmd(&["verify", "artifacts/example-agent", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn run_refuses_a_bundle_changed_since_validation() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.cmd(&["place", "bundles/example-agent"]).ok();
    r.write("bundles/example-agent/smoke.sh", "#!/bin/sh\necho changed\n");
    r.write("bundles/example-agent/new-file.txt", "x");
    r.cmd(&["run", "bundles/example-agent"])
        .failed()
        .stderr_has("bundles/example-agent/smoke.sh (changed)")
        .stderr_has("new-file.txt (added)");
}

#[test]
fn a_failing_smoke_is_a_failed_run_with_evidence() {
    let r = Root::new();
    r.keygen();
    r.bundle("fails", "#!/bin/sh\necho boom >&2\nexit 3\n", |_| {});
    r.cmd(&["up", "bundles/fails"]).failed();
    let run = r.json("artifacts/fails/run-artifact.json");
    assert_eq!(run["status"], "failure");
    assert_eq!(run["exitCode"], 3);
    assert_eq!(r.json("artifacts/fails/session-artifact.json")["status"], "failure");
    assert!(r.read("artifacts/fails/run.stderr.log").contains("boom"));
    r.cmd(&["verify", "artifacts/fails", "--trusted-key", &r.pubkey()]).ok();
}

fn alive(marker: &str) -> bool {
    let out = std::process::Command::new("pgrep").args(["-f", marker]).output().unwrap();
    !out.stdout.is_empty()
}

#[test]
fn a_runaway_smoke_is_killed_at_max_run_seconds_with_no_survivor() {
    let r = Root::new();
    r.keygen();
    // A unique duration marks this test's processes for pgrep.
    let marker = format!("sleep 299.{}", std::process::id());
    // A background child and a foreground sleep, both far past the limit.
    let smoke = format!("#!/bin/sh\nsh -c '{marker}' &\n{marker}\n");
    r.bundle("runaway", &smoke, |v| v["spec"]["policy"]["maxRunSeconds"] = 5.into());
    let t0 = std::time::Instant::now();
    r.cmd(&["up", "bundles/runaway"]).failed();
    assert!(t0.elapsed().as_secs() < 30, "the run was not stopped near its deadline");
    let run = r.json("artifacts/runaway/run-artifact.json");
    assert_eq!(run["timedOut"], true);
    assert_eq!(run["status"], "failure");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!alive(&marker), "a process started by the smoke survived the run");
    r.cmd(&["verify", "artifacts/runaway", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn secrets_reach_the_smoke_and_never_the_evidence() {
    let r = Root::new();
    r.keygen();
    let secret = "tok-5d1c9f0e-very-secret";
    r.write("secret.txt", format!("{secret}\n"));
    r.bundle(
        "secretive",
        "#!/bin/sh\necho \"token is $DEMO_TOKEN and $API_KEY\"\necho \"$DEMO_TOKEN\" >&2\necho \"$API_KEY\" > \"$1/leak.txt\"\n",
        |v| v["spec"]["secrets"]["required"] = serde_json::json!(["DEMO_TOKEN", "API_KEY_FILE"]),
    );
    let key_file = r.join("secret.txt").display().to_string();
    r.cmd_env(&["up", "bundles/secretive"], &[("DEMO_TOKEN", "plain-secret-value-42"), ("API_KEY_FILE", &key_file)])
        .ok();
    let log = r.read("artifacts/secretive/run.stdout.log");
    assert!(log.contains("[redacted:DEMO_TOKEN]") && log.contains("[redacted:API_KEY_FILE]"), "{log}");
    for e in walkdir::WalkDir::new(r.join("artifacts/secretive")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret) && !text.contains("plain-secret-value-42"),
                "secret in {}",
                e.path().display()
            );
        }
    }
    let run = r.json("artifacts/secretive/run-artifact.json");
    assert_eq!(run["secretsProvided"], serde_json::json!(["DEMO_TOKEN", "API_KEY_FILE"]));
    r.cmd(&["verify", "artifacts/secretive", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn a_missing_secret_stops_the_run_before_it_starts() {
    let r = Root::new();
    r.keygen();
    r.write("ran", "");
    r.bundle("needs", "#!/bin/sh\ntouch \"$AGENTPLANE_PRODUCTS_DIR/ran\"\n", |v| {
        v["spec"]["secrets"]["required"] = serde_json::json!(["AGENTPLANE_TEST_NEVER_SET"])
    });
    r.cmd(&["up", "bundles/needs"]).error().stderr_has("`AGENTPLANE_TEST_NEVER_SET` is not set");
    assert!(!r.join("artifacts/needs/run-artifact.json").exists());
}

#[test]
fn replay_matches_a_deterministic_run() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let out =
        r.cmd(&["replay", "artifacts/example-agent", "--trusted-key", &r.pubkey(), "--report", "verdict.json"]).ok();
    assert!(out.stdout.contains("match"), "{}", out.stdout);
    assert_eq!(r.json("verdict.json")["verdict"], "match");
    // Replay writes nothing into the evidence directory.
    r.cmd(&["verify", "artifacts/example-agent", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn replay_refuses_a_changed_bundle_naming_the_file() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    r.write("bundles/example-agent/smoke.sh", "#!/bin/sh\necho tampered\n");
    r.cmd(&["replay", "artifacts/example-agent", "--trusted-key", &r.pubkey()])
        .failed()
        .stderr_has("bundles/example-agent/smoke.sh (changed)");
}

#[test]
fn replay_reports_divergence_of_a_nondeterministic_bundle() {
    let r = Root::new();
    r.keygen();
    r.bundle("clock", "#!/bin/sh\ndate +%s%N > \"$1/now.txt\"\n", |v| {
        v["spec"]["determinism"] = serde_json::json!({"required": true})
    });
    r.up("bundles/clock");
    let out = r.cmd(&["--format", "json", "replay", "artifacts/clock", "--trusted-key", &r.pubkey()]).failed();
    let v = out.json();
    assert_eq!(v["verdict"], "diverged");
    assert!(v["differences"][0].as_str().unwrap().starts_with("products/now.txt"), "{v}");
}

#[test]
fn promote_needs_a_successful_sealed_run() {
    let r = Root::with_example();
    r.cmd(&["promote", "bundles/example-agent"]).failed().stderr_has("has no evidence");
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.cmd(&["promote", "bundles/example-agent"]).failed().stderr_has("does not verify");
}

#[test]
fn promote_promote_rollback_moves_the_pointers() {
    let r = Root::with_example();
    r.bundle("second", "#!/bin/sh\necho two > \"$1/two.txt\"\n", |_| {});
    r.up("bundles/example-agent");
    r.up("bundles/second");
    let ptr = |name: &str| r.json(&format!("state/pointers/{name}"))["path"].as_str().unwrap().to_string();
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    assert_eq!(ptr("current-prod"), "bundles/example-agent");
    assert!(!r.join("state/pointers/previous-good").exists());
    r.cmd(&["promote", "bundles/second"]).ok();
    assert_eq!(ptr("current-prod"), "bundles/second");
    assert_eq!(ptr("previous-good"), "bundles/example-agent");
    let promo = r.json("artifacts/second/promotion-artifact.json");
    assert!(promo["promotionReceiptRef"].as_str().unwrap().starts_with("urn:srcos:receipt:promotion:"));
    r.cmd(&["rollback"]).ok();
    assert_eq!(ptr("current-prod"), "bundles/example-agent");
    let rev = r.json("artifacts/second/reversal-artifact.json");
    assert_eq!(rev["sourcePromotionReceiptRef"], promo["promotionReceiptRef"]);
    r.cmd(&["rollback"]).failed().stderr_has("no previous-good");
    // Both chains were resealed and still verify.
    r.cmd(&["verify", "artifacts/second", "--trusted-key", &r.pubkey()]).ok();
    r.cmd(&["verify", "artifacts/example-agent", "--trusted-key", &r.pubkey()]).ok();
    let status = r.cmd(&["--format", "json", "status"]).ok().json();
    assert_eq!(status["pointers"]["current-prod"]["path"], "bundles/example-agent");
    assert_eq!(status["pointers"]["current-prod"]["bundle"], "example-agent@0.1.0");
}

#[test]
fn promoting_a_second_version_keeps_the_first_as_previous_good_and_rollback_checks_content() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    let first = r.json("state/pointers/current-prod");
    assert_eq!(first["bundle"], "example-agent@0.1.0");
    // Promoting the same content again changes nothing.
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    assert!(!r.join("state/pointers/previous-good").exists());
    // v0.2.0 of the same bundle: v0.1.0 becomes previous-good.
    let manifest = r.read("bundles/example-agent/bundle.json").replace("\"0.1.0\"", "\"0.2.0\"");
    r.write("bundles/example-agent/bundle.json", manifest);
    r.up("bundles/example-agent");
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    assert_eq!(r.json("state/pointers/previous-good"), first);
    assert_eq!(r.json("state/pointers/current-prod")["bundle"], "example-agent@0.2.0");
    // previous-good is the same path, whose content is now v0.2.0: rolling
    // back would point prod at content that never ran as v0.1.0.
    let out = r.cmd(&["rollback"]).failed();
    assert!(out.stderr.contains("no longer has the digest that was promoted"), "{}", out.stderr);
    assert!(out.stderr.contains("bundles/example-agent/bundle.json"), "{}", out.stderr);
    assert_eq!(r.json("state/pointers/current-prod")["bundle"], "example-agent@0.2.0", "prod moved anyway");
}

#[test]
fn the_human_gate_needs_a_second_key() {
    let r = Root::new();
    r.keygen();
    r.bundle("gated", "#!/bin/sh\necho ok\n", |v| v["spec"]["policy"]["humanGateRequired"] = true.into());
    r.up("bundles/gated");
    r.cmd(&["promote", "bundles/gated"]).failed().stderr_has("--approval-key");
    r.cmd(&["promote", "bundles/gated", "--approval-key", ".agentplane/keys/signing.key"])
        .failed()
        .stderr_has("second person");
    r.cmd(&["keygen", "--out", "approver"]).ok();
    r.cmd(&["promote", "bundles/gated", "--approval-key", "approver.key"]).ok();
    let details = &crate::compat::predicate(&r, "artifacts/gated", "PromotionArtifact")["details"];
    assert!(details["approval"]["sig"].is_string(), "{details}");
    r.cmd(&["verify", "artifacts/gated", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn ctrl_c_during_up_leaves_a_sealed_chain_whose_session_says_canceled() {
    let r = Root::new();
    r.keygen();
    r.bundle("slow", "#!/bin/sh\necho started\nsleep 60\n", |_| {});
    let child = std::process::Command::new(crate::util::BIN)
        .args(["--root", r.path().to_str().unwrap(), "up", "bundles/slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the smoke is running, then interrupt agentplane.
    let log_started = || r.join("artifacts/slow/placement-decision.json").exists();
    for _ in 0..100 {
        if log_started() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let session = r.json("artifacts/slow/session-artifact.json");
    assert_eq!(session["status"], "canceled");
    assert_eq!(r.json("artifacts/slow/run-artifact.json")["canceled"], true);
    r.cmd(&["verify", "artifacts/slow", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn demo_tells_its_story_on_a_fresh_root() {
    let r = Root::new();
    r.copy_bundle("example-agent");
    let out = r.cmd(&["demo"]).ok();
    for needle in ["created a demo signing key", "agentplane up", "agentplane verify", "match", "auditor"] {
        assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
    }
    // A second demo reuses the key and starts a new chain.
    let again = r.cmd(&["demo"]).ok();
    assert!(!again.stdout.contains("created a demo signing key"));
}

#[test]
fn up_human_output_snapshot() {
    let r = Root::with_example();
    let out = r.up("bundles/example-agent");
    insta::assert_snapshot!("up_human", format!("exit {}\n{}", out.code, crate::util::redact(&out.stdout, r.path())));
}

#[test]
fn a_bundle_changed_after_validation_is_refused_and_nothing_runs() {
    let r = Root::new();
    r.keygen();
    r.bundle("swap", "#!/bin/sh\necho good > \"$1/which\"\n", |_| {});
    let b = "bundles/swap";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    let marker = r.join("marker");
    r.write(&format!("{b}/smoke.sh"), format!("#!/bin/sh\ntouch '{}'\n", marker.display()));
    r.cmd(&["run", b]).failed().stderr_has("bundles/swap/smoke.sh (changed)");
    assert!(!marker.exists(), "the changed script must not run");
    assert!(!r.join("artifacts/swap/run-artifact.json").exists(), "no run is recorded");
}

#[test]
fn a_script_swapped_during_the_run_stage_never_runs() {
    // An attacker flips the smoke script while `run` checks, stages and runs
    // it: whatever it catches, the swapped script never runs, and a recorded
    // success is always the validated script's. (Before the staged copy was
    // checked, this caught the script swapped between the check and the copy
    // within the first few attempts.)
    use std::sync::atomic::{AtomicBool, Ordering};
    let r = Root::new();
    r.keygen();
    let marker = r.join("evil-ran");
    let good = "#!/bin/sh\necho good > \"$1/which\"\n";
    let evil = format!("#!/bin/sh\ntouch '{}'\necho evil > \"$1/which\"\n", marker.display());
    r.bundle("race", good, |_| {});
    let b = "bundles/race";
    let script = r.join(&format!("{b}/smoke.sh"));
    let (mut ran, mut refused) = (0, 0);
    for attempt in 0..30u64 {
        std::fs::write(&script, good).unwrap();
        r.cmd(&["validate", b]).ok();
        r.cmd(&["place", b]).ok();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flipper = {
            let (stop, script, evil) = (stop.clone(), script.clone(), evil.clone());
            let tmp = r.join("swap.tmp"); // outside the bundle
            std::thread::spawn(move || {
                // The first swap lands at a different moment of each run.
                std::thread::sleep(std::time::Duration::from_millis(attempt * 2));
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    // Swap in whole files (rename), as an attacker would.
                    std::fs::write(&tmp, if n.is_multiple_of(2) { evil.as_str() } else { good }).unwrap();
                    std::fs::rename(&tmp, &script).unwrap();
                    n += 1;
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
            })
        };
        let out = r.cmd(&["run", b]);
        stop.store(true, Ordering::SeqCst);
        flipper.join().unwrap();
        assert!(!marker.exists(), "the swapped script ran\n{}", out.stderr);
        match out.code {
            0 => {
                ran += 1;
                assert_eq!(r.read("artifacts/race/products/which"), "good\n");
            }
            1 => {
                refused += 1;
                assert!(out.stderr.contains("smoke.sh (changed)"), "{}", out.stderr);
            }
            c => panic!("exit {c}: {}", out.stderr),
        }
    }
    assert_eq!(ran + refused, 30);
}

#[test]
fn a_bundle_with_non_utf8_names_stages_runs_and_replays() {
    use std::os::unix::ffi::OsStrExt;
    let r = Root::new();
    r.keygen();
    r.bundle("raw", "#!/bin/sh\ncat \"$(printf 'f\\377')\" > \"$1/copy\"\n", |_| {});
    let raw = r.join("bundles/raw").join(std::ffi::OsStr::from_bytes(b"f\xff"));
    std::fs::write(raw, "raw bytes\n").unwrap();
    r.up("bundles/raw");
    let run = r.json("artifacts/raw/run-artifact.json");
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(r.read("artifacts/raw/products/copy"), "raw bytes\n");
    r.cmd(&["replay", "artifacts/raw", "--trusted-key", &r.pubkey()]).ok();
}
