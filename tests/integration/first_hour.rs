//! A new user's first hour: the project root is found from anywhere, and
//! mistakes are refused early with a message that explains them.

use std::process::Command;

use crate::util::{BIN, Root, Run};

/// Run agentplane without `--root`, from `cwd`.
fn run_in(cwd: &std::path::Path, args: &[&str]) -> Run {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(cwd).env_remove("AGENTPLANE_SIGNING_KEY").env("NO_COLOR", "1");
    Run::from(c.output().expect("run agentplane"))
}

#[test]
fn validate_from_a_subdirectory_finds_the_root() {
    let r = Root::with_example();
    let sub = r.join("bundles");
    let out = run_in(&sub, &["validate", "--check", "example-agent"]).ok();
    assert!(out.stdout.contains("1 bundle: 1 valid"), "{}", out.stdout);
    assert!(out.stderr.contains("using project root"), "{}", out.stderr);
}

#[test]
fn up_from_outside_the_project_writes_nothing_where_it_was_started() {
    let r = Root::with_example();
    let elsewhere = tempfile::tempdir().unwrap();
    let bundle = r.join("bundles/example-agent");
    run_in(elsewhere.path(), &["up", bundle.to_str().unwrap()]).ok();
    assert!(r.join("artifacts/example-agent/evidence.jsonl").is_file());
    let left: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(left.is_empty(), "agentplane wrote into the current directory: {left:?}");
}

#[test]
fn up_given_a_folder_of_bundles_refuses_before_writing_anything() {
    let r = Root::with_example();
    r.bundle("second", "exit 0\n", |_| {});
    let out = r.cmd(&["up", "bundles"]).error();
    assert!(out.stderr.contains("holds 2 bundles"), "{}", out.stderr);
    assert!(out.stderr.contains("bundles/example-agent") && out.stderr.contains("bundles/second"), "{}", out.stderr);
    assert!(!r.join("artifacts").exists(), "up wrote evidence before refusing");
}

#[test]
fn up_with_an_unknown_executor_is_a_bad_flag_before_any_evidence() {
    let r = Root::with_example();
    let out = r.cmd(&["up", "bundles/example-agent", "--executor", "bogus"]).error();
    assert!(out.stderr.contains("`bogus` is not in the inventory"), "{}", out.stderr);
    assert!(!r.join("artifacts/example-agent/evidence.jsonl").exists(), "a chain was started");
}

#[test]
fn validate_check_on_a_tree_without_bundles_fails() {
    let r = Root::new();
    std::fs::create_dir_all(r.join("bundels")).unwrap();
    let out = r.cmd(&["validate", "--check", "bundels"]).failed();
    assert!(out.stderr.contains("no bundle.json under bundels"), "{}", out.stderr);
}

#[test]
fn status_survives_a_bundle_name_of_70000_characters() {
    let r = Root::new();
    let name = "n".repeat(70_000);
    r.bundle("long", "exit 0\n", |v| v["metadata"]["name"] = name.clone().into());
    let out = r.cmd(&["status"]).ok();
    assert!(out.stdout.contains(&name[..100]), "{}", &out.stdout[..200.min(out.stdout.len())]);
}

#[test]
fn verify_pointed_at_a_bundle_says_where_its_evidence_is() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let out = r.cmd(&["verify", "bundles/example-agent", "--trusted-key", &r.pubkey()]).error();
    assert!(out.stderr.contains("is a bundle, not an evidence directory"), "{}", out.stderr);
    assert!(out.stderr.contains("artifacts/example-agent"), "{}", out.stderr);
}

#[test]
fn validate_without_a_key_reports_the_checks_then_exits_2() {
    let r = Root::new();
    r.copy_bundle("example-agent");
    let out = r.cmd(&["validate", "bundles/example-agent"]).error();
    assert!(out.stdout.contains("1 bundle: 1 valid"), "{}", out.stdout);
    assert!(out.stderr.contains("no ValidationArtifact was written"), "{}", out.stderr);
    assert!(out.stderr.contains("--check"), "{}", out.stderr);
}

#[test]
fn evidence_and_public_keys_are_readable_private_keys_are_not() {
    use std::os::unix::fs::PermissionsExt;
    let r = Root::with_example();
    r.up("bundles/example-agent");
    let mode = |p: &str| std::fs::metadata(r.join(p)).unwrap().permissions().mode() & 0o777;
    for f in [
        "artifacts/example-agent/validation-artifact.json",
        "artifacts/example-agent/run-artifact.json",
        "artifacts/example-agent/run.stdout.log",
        "artifacts/example-agent/evidence.jsonl",
        ".agentplane/keys/signing.pub",
    ] {
        assert_eq!(mode(f), 0o644, "{f}");
    }
    assert_eq!(mode(".agentplane/keys/signing.key"), 0o600);
}

#[test]
fn two_bundles_sharing_an_outdir_both_fail_naming_each_other() {
    let r = Root::with_example();
    r.copy_bundle("example-agent");
    crate::util::copy_dir(&r.join("bundles/example-agent"), &r.join("bundles/my-agent"));
    let manifest = r.read("bundles/my-agent/bundle.json").replace("\"example-agent\"", "\"my-agent\"");
    r.write("bundles/my-agent/bundle.json", manifest);
    let out = r.cmd(&["validate", "--check", "bundles"]).failed();
    assert!(out.stdout.contains("is also the outDir of bundles/example-agent/bundle.json"), "{}", out.stdout);
    assert!(out.stdout.contains("is also the outDir of bundles/my-agent/bundle.json"), "{}", out.stdout);
}

#[test]
fn a_failed_run_explains_itself_with_its_stderr_tail_and_a_timeout_says_so() {
    let r = Root::with_example();
    r.bundle(
        "fails",
        "#!/bin/sh\necho 'line one' >&2\necho 'cannot reach the model: connection refused' >&2\nexit 3\n",
        |_| {},
    );
    let out = r.cmd(&["up", "bundles/fails"]).failed();
    assert!(out.stdout.contains("exit 3"), "{}", out.stdout);
    assert!(out.stdout.contains("stderr| cannot reach the model: connection refused"), "{}", out.stdout);
    assert!(out.stdout.contains("artifacts/fails/run.stderr.log"), "{}", out.stdout);
    r.bundle("slow", "#!/bin/sh\nsleep 60\n", |v| v["spec"]["policy"]["maxRunSeconds"] = 5.into());
    let out = r.cmd(&["up", "bundles/slow"]).failed();
    assert!(out.stdout.contains("timed out at its deadline after"), "{}", out.stdout);
    assert!(out.stdout.contains("SIGTERM, then SIGKILL"), "{}", out.stdout);
    assert!(!out.stdout.contains("exit -1"), "{}", out.stdout);
}

#[test]
fn verify_with_the_wrong_key_names_the_key_that_signed() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    r.cmd(&["keygen", "--out", "other"]).ok();
    let signer = r
        .cmd(&["--format", "json", "verify", "artifacts/example-agent", "--trusted-key", &r.pubkey()])
        .ok()
        .json()["entries"][0]["signer"]
        .as_str()
        .unwrap()
        .to_string();
    let out = r.cmd(&["verify", "artifacts/example-agent", "--trusted-key", "other.pub"]).failed();
    assert!(out.stdout.contains(&signer), "the signing key id is named:\n{}", out.stdout);
    assert!(out.stdout.contains("--trusted-key"), "{}", out.stdout);
}

/// A bundle whose smoke script prints `ran <name>`, naming it `script`.
fn bundle_with_script(r: &Root, name: &str, script: &str) {
    let s = script.to_string();
    r.bundle(name, &format!("#!/bin/sh\necho 'ran {name}'\n"), move |v| v["spec"]["smoke"]["script"] = s.into());
}

#[test]
fn a_smoke_script_may_be_named_relative_to_the_bundle_or_to_the_root() {
    let r = Root::with_example();
    for (name, script) in [("plain", "smoke.sh"), ("dotted", "./smoke.sh"), ("upstream", "bundles/upstream/smoke.sh")] {
        bundle_with_script(&r, name, script);
        let dir = format!("bundles/{name}");
        let out = r.cmd(&["validate", "--check", &dir]).ok();
        assert!(out.stdout.contains("1 bundle: 1 valid"), "{script}: {}", out.stdout);
        assert!(!out.stdout.contains("another bundle"), "{script}: {}", out.stdout);
        r.up(&dir);
        let log = r.read(&format!("artifacts/{name}/run.stdout.log"));
        assert!(log.contains(&format!("ran {name}")), "{script}: {log}");
    }
}

#[test]
fn a_smoke_script_inside_another_bundle_is_a_warning() {
    let r = Root::new();
    bundle_with_script(&r, "other", "smoke.sh");
    bundle_with_script(&r, "mine", "../other/smoke.sh");
    let json = r.cmd(&["--format", "json", "validate", "--check", "bundles/mine"]).ok().json();
    let text = json.to_string();
    let warn = text.contains("\"warn\"") && text.contains("inside another bundle") && text.contains("bundles/other");
    assert!(warn, "{text}");
    // Upstream's form naming the other bundle's script warns too.
    bundle_with_script(&r, "upstream", "bundles/other/smoke.sh");
    let out = r.cmd(&["validate", "--check", "bundles/upstream"]).ok();
    assert!(out.stdout.contains("inside another bundle"), "{}", out.stdout);
}

#[test]
fn a_bundle_relative_script_cannot_leave_the_root() {
    let r = Root::new();
    bundle_with_script(&r, "escape", "../../../etc/passwd");
    let out = r.cmd(&["validate", "--check", "bundles/escape"]).failed();
    assert!(out.stdout.contains("paths-inside-root"), "{}", out.stdout);
    assert!(out.stdout.contains("outside the root"), "{}", out.stdout);
}

#[test]
fn a_copied_bundle_naming_smoke_sh_runs_its_own_script() {
    let r = Root::with_example();
    crate::util::copy_dir(&r.join("bundles/example-agent"), &r.join("bundles/my-agent"));
    let manifest = r
        .read("bundles/my-agent/bundle.json")
        .replace("\"name\": \"example-agent\"", "\"name\": \"my-agent\"")
        .replace("\"outDir\": \"artifacts/example-agent\"", "\"outDir\": \"artifacts/my-agent\"")
        .replace("\"script\": \"bundles/example-agent/smoke.sh\"", "\"script\": \"smoke.sh\"");
    r.write("bundles/my-agent/bundle.json", manifest);
    r.write("bundles/my-agent/smoke.sh", "#!/bin/sh\necho 'my-agent: my own smoke'\n");
    let out = r.cmd(&["validate", "--check", "bundles"]).ok();
    assert!(out.stdout.contains("2 bundles: 2 valid"), "{}", out.stdout);
    assert!(!out.stdout.contains("another bundle"), "{}", out.stdout);
    r.up("bundles/my-agent");
    let log = r.read("artifacts/my-agent/run.stdout.log");
    assert!(log.contains("my-agent: my own smoke"), "{log}");
    assert!(!log.contains("example-agent: smoke test starting"), "ran the original's script: {log}");
}

#[test]
fn run_place_and_emit_given_a_folder_of_bundles_name_them() {
    let r = Root::with_example();
    r.bundle("second", "exit 0\n", |_| {});
    for cmd in ["place", "run", "emit"] {
        let out = r.cmd(&[cmd, "bundles"]).error();
        assert!(
            out.stderr.contains("holds 2 bundles") && out.stderr.contains("bundles/second"),
            "{cmd}: {}",
            out.stderr
        );
    }
}
