//! Every subcommand's outcome, human and json, success and its main exit-1
//! case, as snapshots (exit code included). `--format json` prints exactly
//! one JSON document on stdout on every exit path that has a subject.

use crate::util::Root;

const EV: &str = "artifacts/example-agent";

/// A root whose example bundle has been through `up`.
fn done() -> Root {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    r
}

fn both(r: &Root, name: &str, args: &[&str], code: i32) {
    both_fresh(|| r, name, args, code)
}

/// Like [`both`], with a root made anew for each format (for stages that run once per chain).
fn both_fresh<'r, R: std::ops::Deref<Target = Root> + 'r>(make: impl Fn() -> R, name: &str, args: &[&str], code: i32) {
    let r = make();
    let human = r.cmd(args);
    assert_eq!(human.code, code, "{args:?}\n{}\n{}", human.stdout, human.stderr);
    insta::assert_snapshot!(format!("{name}_human"), human.snap(r.path()));
    let mut json_args = vec!["--format", "json"];
    json_args.extend_from_slice(args);
    let r = make();
    let json = r.cmd(&json_args);
    assert_eq!(json.code, code, "{json_args:?}\n{}\n{}", json.stdout, json.stderr);
    insta::assert_snapshot!(format!("{name}_json"), json.snap_json(r.path()));
}

#[test]
fn validate_outcomes() {
    let r = Root::with_example();
    both(&r, "validate_ok", &["validate", "--check", "bundles/example-agent"], 0);
    r.bundle("bad", "exit 0\n", |v| v["metadata"]["licensePolicy"]["allowAGPL"] = true.into());
    both(&r, "validate_invalid", &["validate", "--check", "bundles/bad"], 1);
}

#[test]
fn validate_with_no_bundle_is_exit_1_with_a_document() {
    let r = Root::new();
    std::fs::create_dir_all(r.join("empty")).unwrap();
    both(&r, "validate_none", &["validate", "--check", "empty"], 1);
}

fn validated() -> Box<Root> {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    Box::new(r)
}

#[test]
fn place_outcomes() {
    both_fresh(validated, "place_ok", &["place", "bundles/example-agent"], 0);
    let with_vm_only = || {
        let r = validated();
        r.inventory(
            &[serde_json::json!({"name": "vm-only", "sshRef": "local", "enabled": true,
                "supportedBackends": ["qemu"], "platform": {"os": "linux", "arch": "x86_64"},
                "health": {"state": "ready"}})],
            "vm-only",
        );
        r
    };
    both_fresh(with_vm_only, "place_none", &["place", "bundles/example-agent", "--inventory", "inv.json"], 1);
}

#[test]
fn run_outcomes() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.cmd(&["place", "bundles/example-agent"]).ok();
    let json = r.cmd(&["--format", "json", "run", "bundles/example-agent"]).ok();
    insta::assert_snapshot!("run_ok_json", json.snap_json(r.path()));

    let r = Root::with_example();
    r.bundle("fails", "echo boom >&2\nexit 3\n", |_| {});
    r.cmd(&["validate", "bundles/fails"]).ok();
    r.cmd(&["place", "bundles/fails"]).ok();
    let human = r.cmd(&["run", "bundles/fails"]).failed();
    insta::assert_snapshot!("run_failed_human", human.snap(r.path()));
}

#[test]
fn a_refused_run_is_one_json_document() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.cmd(&["place", "bundles/example-agent"]).ok();
    r.write("bundles/example-agent/extra.txt", "changed");
    both(&r, "run_refused", &["run", "bundles/example-agent"], 1);
}

#[test]
fn emit_outcome() {
    let r = Root::with_example();
    for stage in ["validate", "place", "run"] {
        r.cmd(&[stage, "bundles/example-agent"]).ok();
    }
    let json = r.cmd(&["--format", "json", "emit", "bundles/example-agent"]).ok();
    insta::assert_snapshot!("emit_json", json.snap_json(r.path()));
}

#[test]
fn up_outcomes() {
    let r = Root::with_example();
    let json = r.cmd(&["--format", "json", "up", "bundles/example-agent"]).ok();
    insta::assert_snapshot!("up_ok_json", json.snap_json(r.path()));
    r.bundle("bad", "exit 0\n", |v| v["spec"]["policy"]["maxRunSeconds"] = 1.into());
    both(&r, "up_invalid", &["up", "bundles/bad"], 1);
}

#[test]
fn verify_and_replay_outcomes() {
    let r = done();
    let key = r.pubkey();
    both(&r, "verify_ok", &["verify", EV, "--trusted-key", &key], 0);
    both(&r, "replay_match", &["replay", EV, "--trusted-key", &key], 0);
    r.write("bundles/example-agent/extra.txt", "changed");
    both(&r, "replay_refused", &["replay", EV, "--trusted-key", &key], 1);
    r.write(&format!("{EV}/run.stdout.log"), "forged\n");
    both(&r, "verify_bad", &["verify", EV, "--trusted-key", &key], 1);
}

#[test]
fn lifecycle_outcomes() {
    let r = Root::with_example();
    both(&r, "promote_refused", &["promote", "bundles/example-agent"], 1);
    both(&r, "rollback_refused", &["rollback"], 1);
    r.up("bundles/example-agent");
    let promoted = r.cmd(&["--format", "json", "promote", "bundles/example-agent"]).ok();
    insta::assert_snapshot!("promote_json", promoted.snap_json(r.path()));
    let status = r.cmd(&["--format", "json", "status"]).ok();
    insta::assert_snapshot!("status_json", status.snap_json(r.path()));
    let human = r.cmd(&["status"]).ok();
    insta::assert_snapshot!("status_human", human.snap(r.path()));
}

#[test]
fn github_format_is_for_validate_only() {
    let r = Root::with_example();
    let out = r.cmd(&["--format", "github", "status"]).error();
    assert!(out.stderr.contains("--format github is for `validate` only"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn github_annotations_cannot_be_injected_through_a_path() {
    let r = Root::new();
    let name = "gh\n::warning file=x::INJECTED";
    let dir = format!("bundles/{name}");
    r.write(&format!("{dir}/bundle.json"), "{\"apiVersion\": 1}");
    let out = r.cmd(&["--format", "github", "validate", "--check", "bundles"]).failed();
    for line in out.stdout.lines() {
        assert!(line.starts_with("::error ") || line.contains("bundle"), "injected line: {line:?}\n{}", out.stdout);
        assert!(!line.starts_with("::warning file=x"), "{}", out.stdout);
    }
}

#[test]
fn escape_sequences_from_evidence_are_shown_not_obeyed() {
    let r = done();
    let key = r.pubkey();
    let planted = format!("{EV}/products/\x1b[2J\x1b[32m✓ verified");
    r.write(&planted, "x");
    let out = r.cmd(&["verify", EV, "--trusted-key", &key]).failed();
    assert!(!out.stdout.contains('\x1b'), "raw escape reached the terminal:\n{:?}", out.stdout);
    assert!(out.stdout.contains("\\x1b[2J"), "{}", out.stdout);
}

#[test]
fn github_annotations_carry_the_line_and_column_of_a_syntax_error() {
    let r = Root::new();
    r.write("bundles/broken/bundle.json", "{\n  \"apiVersion\": \"x\",\n  \"kind\": \n}\n");
    let out = r.cmd(&["--format", "github", "validate", "--check", "bundles"]).failed();
    let line = out.stdout.lines().find(|l| l.starts_with("::error ")).unwrap_or_default().to_string();
    assert!(line.contains(",line=4,col="), "{}", out.stdout);
}
