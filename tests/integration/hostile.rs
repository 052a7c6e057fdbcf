//! Hostile bundles (CI validates bundles from untrusted pull requests): each
//! attack ends in a prompt, clear failure and harms nothing.

use crate::util::{BIN, Root, Run};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run agentplane under `root`, killing it if it has not finished in 20 s:
/// a hang is a test failure, never a hung test.
fn run_bounded(root: &Root, args: &[&str]) -> Run {
    let mut c = Command::new(BIN);
    c.arg("--root").arg(root.path()).args(args).current_dir(root.path());
    c.env_remove("AGENTPLANE_SIGNING_KEY").env("NO_COLOR", "1");
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run agentplane");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agentplane {args:?} hung (killed after 20 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run::from(child.wait_with_output().expect("collect output"))
}

/// Every path under `dir` (not following links) with its type and content hash.
fn listing(dir: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().as_os_str().as_bytes().to_vec();
        let ft = e.file_type();
        let what = if ft.is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            format!("file {}", agentplane::fsx::sha256_hex(&bytes))
        } else if ft.is_symlink() {
            format!("link {}", std::fs::read_link(e.path()).unwrap().display())
        } else {
            "dir".to_string()
        };
        out.insert(rel, what);
    }
    out
}

/// The checks named `gate` that failed in a `--format json validate` document
/// (a gate that failed never also reports a pass).
fn failing(doc: &serde_json::Value, gate: &str) -> Vec<serde_json::Value> {
    let checks = doc["bundles"][0]["checks"].as_array().unwrap();
    let of = |status: &str| -> Vec<serde_json::Value> {
        checks.iter().filter(|c| c["name"] == gate && c["status"] == status).cloned().collect()
    };
    let fails = of("fail");
    assert!(fails.is_empty() || of("pass").is_empty(), "{gate} both passed and failed: {checks:#?}");
    fails
}

/// A key, a bundle `evil` whose outDir is `out_dir`, and files in that dir.
fn outdir_attack(out_dir: &str, files: &[(&str, &str)]) {
    let r = Root::new();
    r.keygen();
    r.write("fleet/inventory.json", "{\"executors\": []}\n");
    r.write("src/main.rs", "fn main() {}\n");
    for (rel, body) in files {
        r.write(rel, body);
    }
    r.bundle("evil", "#!/bin/sh\necho ok\n", |v| v["spec"]["artifacts"]["outDir"] = out_dir.into());
    let target = r.join(out_dir);
    let before = listing(&target);
    let keys_before = listing(&r.join(".agentplane"));
    assert!(before.len() > 1, "{out_dir} should hold files for this test");

    // Plain validate (not --check), with a key: it would write evidence.
    let out = run_bounded(&r, &["--format", "json", "validate", "bundles/"]);
    assert_eq!(out.code, 1, "{out_dir}: expected exit 1\n{}\n{}", out.stdout, out.stderr);
    let fails = failing(&out.json(), "out-dir-safe");
    assert!(!fails.is_empty(), "{out_dir}: no failing out-dir-safe check:\n{}", out.stdout);
    assert_eq!(fails[0]["pointer"], "/spec/artifacts/outDir");
    let human = run_bounded(&r, &["validate", "bundles/evil"]);
    assert_eq!(human.code, 1, "{}", human.stdout);
    assert!(human.stdout.contains("out-dir-safe") && human.stdout.contains("hint:"), "{}", human.stdout);

    assert_eq!(listing(&target), before, "{out_dir} changed");
    assert_eq!(listing(&r.join(".agentplane")), keys_before, "the keys changed");
    assert!(!target.join("runs").exists() && !target.join("evidence.jsonl").exists());
}

#[test]
fn an_outdir_of_git_is_refused_and_git_is_untouched() {
    outdir_attack(
        ".git",
        &[(".git/HEAD", "ref: refs/heads/main\n"), (".git/config", "[core]\n"), (".git/objects/ab/cdef", "blob")],
    );
}

#[test]
fn an_outdir_of_the_signing_keys_is_refused_and_the_keys_stay() {
    outdir_attack(".agentplane/keys", &[]);
}

#[test]
fn an_outdir_of_fleet_is_refused() {
    outdir_attack("fleet", &[]);
}

#[test]
fn an_outdir_of_src_is_refused() {
    outdir_attack("src", &[("src/lib.rs", "pub fn f() {}\n")]);
}

#[test]
fn an_outdir_holding_foreign_files_is_refused() {
    outdir_attack("docs", &[("docs/design.md", "# design\n"), ("docs/img/a.png", "png")]);
}

#[test]
fn an_outdir_holding_foreign_files_beside_a_chain_is_refused() {
    // A real chain, then someone else's file next to it.
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.write("artifacts/example-agent/notes.txt", "mine\n");
    let before = listing(&r.join("artifacts/example-agent"));
    let out = run_bounded(&r, &["--format", "json", "validate", "bundles/example-agent"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let fails = failing(&out.json(), "out-dir-safe");
    assert!(fails[0]["message"].as_str().unwrap().contains("notes.txt"), "{fails:?}");
    assert_eq!(listing(&r.join("artifacts/example-agent")), before);
    // Without the stranger, a second validate keeps the first chain under runs/.
    std::fs::remove_file(r.join("artifacts/example-agent/notes.txt")).unwrap();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    assert_eq!(std::fs::read_dir(r.join("artifacts/example-agent/runs")).unwrap().count(), 1);
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
}

#[test]
fn a_fifo_in_a_bundle_fails_promptly_naming_it() {
    let r = Root::with_example();
    mkfifo(&r.join("bundles/example-agent/pipe"));
    for args in [
        &["--format", "json", "validate", "bundles/example-agent"][..],
        &["--format", "json", "validate", "--check", "bundles/example-agent"],
    ] {
        let out = run_bounded(&r, args);
        assert_eq!(out.code, 1, "{args:?}\n{}\n{}", out.stdout, out.stderr);
        let fails = failing(&out.json(), "parse");
        let msg = fails[0]["message"].as_str().unwrap();
        assert!(msg.contains("bundles/example-agent/pipe") && msg.contains("FIFO"), "{msg}");
    }
    let up = run_bounded(&r, &["up", "bundles/example-agent"]);
    assert_eq!(up.code, 1, "{}\n{}", up.stdout, up.stderr);
}

/// A device node in a bundle, also named as its smoke script, is named as a
/// device by both checks without being opened:
/// `/dev/tty`'s (5, 0), opened by a process with no terminal, fails with
/// ENXIO, which a classification by `open` took for a socket. Needs root
/// (mknod); says so and skips otherwise.
#[test]
#[allow(clippy::print_stdout)] // the skip notice
fn a_device_in_a_bundle_is_named_without_being_opened() {
    if !nix::unistd::geteuid().is_root() {
        println!("note: a_device_in_a_bundle_is_named_without_being_opened skipped: mknod needs root");
        return;
    }
    let r = Root::with_example();
    let dev = r.join("bundles/example-agent/tty");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::sys::stat::mknod(&dev, nix::sys::stat::SFlag::S_IFCHR, mode, nix::sys::stat::makedev(5, 0)).unwrap();
    // Named as the smoke script too: smoke-script-present looks, never opens.
    let mut manifest = r.json("bundles/example-agent/bundle.json");
    manifest["spec"]["smoke"]["script"] = "./tty".into();
    r.write("bundles/example-agent/bundle.json", serde_json::to_vec_pretty(&manifest).unwrap());
    // setsid: no controlling terminal, whatever runs the tests.
    let out = std::process::Command::new("setsid")
        .args(["-w", crate::util::BIN, "--format", "json", "--root", ".", "validate", "--check", "bundles/"])
        .current_dir(r.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let msg = failing(&doc, "parse")[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("bundles/example-agent/tty") && msg.contains("is a device"), "{msg}");
    let smoke = failing(&doc, "smoke-script-present")[0]["message"].as_str().unwrap().to_string();
    assert!(smoke.contains("`./tty` is a device"), "{smoke}");
}

#[test]
fn a_fifo_as_bundle_json_fails_promptly_naming_it() {
    let r = Root::new();
    r.keygen();
    std::fs::create_dir_all(r.join("bundles/pipe")).unwrap();
    mkfifo(&r.join("bundles/pipe/bundle.json"));
    for arg in ["bundles/", "bundles/pipe", "bundles/pipe/bundle.json"] {
        let out = run_bounded(&r, &["--format", "json", "validate", "--check", arg]);
        assert_eq!(out.code, 1, "{arg}\n{}\n{}", out.stdout, out.stderr);
        let doc = out.json();
        assert_eq!(doc["bundles"][0]["path"], "bundles/pipe/bundle.json");
        let msg = failing(&doc, "parse")[0]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("FIFO"), "{msg}");
    }
}

#[test]
fn a_link_to_dev_zero_in_a_bundle_fails() {
    let r = Root::with_example();
    std::os::unix::fs::symlink("/dev/zero", r.join("bundles/example-agent/zero")).unwrap();
    let out = run_bounded(&r, &["--format", "json", "validate", "bundles/example-agent"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let fails = failing(&out.json(), "paths-inside-root");
    assert!(fails[0]["message"].as_str().unwrap().contains("bundles/example-agent/zero"), "{fails:?}");
    assert!(!r.join("artifacts").exists(), "an invalid outDir-less run wrote evidence");
}

/// A sparse terabyte in a bundle (free to make, minutes to hash) is refused
/// by its size, unread, with the same verdict whether or not the run reads
/// contents (human `--check` only lists; json and a real validate digest),
/// and `up` stops at it too.
#[test]
fn a_sparse_terabyte_in_a_bundle_is_refused_by_size_in_every_mode() {
    let r = Root::with_example();
    let f = std::fs::File::create(r.join("bundles/example-agent/weights.bin")).unwrap();
    f.set_len(1 << 40).unwrap();
    let want = "`bundles/example-agent/weights.bin` is 1099511627776 bytes, which takes the bundle's files past their 1073741824-byte limit";
    for args in [
        &["validate", "--check", "bundles/example-agent"][..],
        &["--format", "json", "validate", "--check", "bundles/example-agent"],
        &["--format", "json", "validate", "bundles/example-agent"],
        &["up", "bundles/example-agent"],
    ] {
        let out = run_bounded(&r, args);
        assert_eq!(out.code, 1, "{args:?}\n{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(want), "{args:?}\n{}", out.stdout);
        assert!(out.stdout.contains("keep large inputs outside it"), "{args:?}\n{}", out.stdout);
    }
    let out = run_bounded(&r, &["--format", "json", "validate", "--check", "bundles/example-agent"]);
    assert_eq!(failing(&out.json(), "parse").len(), 1, "{}", out.stdout);
}

#[test]
fn a_huge_bundle_json_is_refused_by_its_size() {
    let r = Root::new();
    std::fs::create_dir_all(r.join("bundles/big")).unwrap();
    let f = std::fs::File::create(r.join("bundles/big/bundle.json")).unwrap();
    f.set_len(20 * 1024 * 1024).unwrap(); // sparse: no disk, no memory
    let out = run_bounded(&r, &["--format", "json", "validate", "--check", "bundles/big"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let msg = failing(&out.json(), "parse")[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("20971520 bytes, over the 16777216-byte limit"), "{msg}");
}

#[test]
fn a_duplicate_key_fails_parse_with_its_pointer() {
    let r = Root::new();
    r.bundle("dup", "#!/bin/sh\n", |_| {});
    let p = r.join("bundles/dup/bundle.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"allowAGPL\": false", "\"allowAGPL\": false, \"allowAGPL\": true");
    std::fs::write(&p, text).unwrap();
    let out = run_bounded(&r, &["--format", "json", "validate", "--check", "bundles/dup"]);
    assert_eq!(out.code, 1);
    let fails = failing(&out.json(), "parse");
    assert_eq!(fails[0]["pointer"], "/metadata/licensePolicy/allowAGPL", "{fails:?}");
    assert!(fails[0]["message"].as_str().unwrap().contains("duplicate key `allowAGPL`"), "{fails:?}");
}

#[test]
fn a_missing_max_run_seconds_fails() {
    let r = Root::new();
    r.bundle("nomax", "#!/bin/sh\n", |v| {
        v["spec"]["policy"].as_object_mut().unwrap().remove("maxRunSeconds");
    });
    let out = run_bounded(&r, &["--format", "json", "validate", "--check", "bundles/nomax"]);
    assert_eq!(out.code, 1);
    assert_eq!(failing(&out.json(), "max-run-seconds")[0]["pointer"], "/spec/policy");
}

#[test]
fn a_top_level_array_is_a_schema_failure() {
    let r = Root::new();
    r.write("bundles/arr/bundle.json", "[1, 2, 3]\n");
    let out = run_bounded(&r, &["--format", "json", "validate", "--check", "bundles/arr"]);
    assert_eq!(out.code, 1);
    let doc = out.json();
    assert!(failing(&doc, "parse").is_empty(), "{doc:#}");
    assert!(failing(&doc, "schema")[0]["message"].as_str().unwrap().contains("an array"));
}

#[test]
fn a_torn_chain_tail_says_how_to_recover() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    let chain = r.join("artifacts/example-agent/evidence.jsonl");
    let mut bytes = std::fs::read(&chain).unwrap();
    bytes.extend_from_slice(b"{\"payloadType\":\"application/vnd.in-toto+json\",\"payl");
    std::fs::write(&chain, bytes).unwrap();
    let out = run_bounded(&r, &["place", "bundles/example-agent"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "ends in a partial line (a write was interrupted): start a new chain with `agentplane validate BUNDLE`"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not a DSSE envelope"), "{}", out.stderr);
    // The advice works: validate keeps the torn chain and starts a new one.
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.cmd(&["place", "bundles/example-agent"]).ok();
}

/// An executor's alias resolves through `~/.ssh/config`; an `Include` there
/// of a FIFO is exit 2 at once, naming the file, with a hint about the
/// config (not the inventory's shape).
#[test]
fn an_ssh_config_include_of_a_fifo_is_exit_2_not_a_hang() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    let home = r.join("home");
    mkfifo(&r.join("fifo"));
    r.write("home/.ssh/config", format!("Host builder\n  HostName 127.0.0.1\nInclude {}\n", r.join("fifo").display()));
    r.write("inv.json", r#"{"executors": [{"name": "b", "sshRef": "builder", "caps": {}}]}"#);
    let mut c = Command::new(BIN);
    c.args(["--root", ".", "place", "--inventory", "inv.json", "bundles/example-agent"]).current_dir(r.path());
    c.env("HOME", &home).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("place hung on a FIFO (killed after 20 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("includes `") && stderr.contains("is a FIFO"), "{stderr}");
    assert!(stderr.contains("hint: the sshRef is resolved through ~/.ssh/config"), "{stderr}");
}

/// A lane pointer damaged (here a FIFO where `current-prod` was) is exit 2
/// naming it, in `status`, `promote` and `rollback`, and nothing is written:
/// taken as unset, a promotion would have dropped the prod it held instead
/// of keeping it as previous-good.
#[test]
fn a_damaged_lane_pointer_stops_promote_rollback_and_status() {
    let r = Root::with_example();
    r.up("bundles/example-agent");
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    let prod = r.join("state/pointers/current-prod");
    std::fs::remove_file(&prod).unwrap();
    mkfifo(&prod);
    let chain = r.read("artifacts/example-agent/evidence.jsonl");
    for args in [&["status"][..], &["promote", "bundles/example-agent"], &["rollback"]] {
        let out = run_bounded(&r, args);
        assert_eq!(out.code, 2, "{args:?}\n{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("lane pointer `current-prod` cannot be read") && out.stderr.contains("FIFO"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    }
    assert_eq!(r.read("artifacts/example-agent/evidence.jsonl"), chain, "a refused promotion wrote to the chain");
    assert!(!r.join("state/pointers/previous-good").exists());
}

#[test]
fn an_inventory_with_a_duplicate_key_is_exit_2_naming_it() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r.write("inv.json", "{\"executors\": [{\"name\": \"a\", \"name\": \"b\", \"transport\": \"local\"}]}");
    let out = run_bounded(&r, &["place", "--inventory", "inv.json", "bundles/example-agent"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("inv.json") && out.stderr.contains("/executors/0/name"), "{}", out.stderr);
}

#[test]
fn an_inventory_that_is_a_fifo_is_exit_2_not_a_hang() {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    mkfifo(&r.join("inv.json"));
    let out = run_bounded(&r, &["place", "--inventory", "inv.json", "bundles/example-agent"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("FIFO"), "{}", out.stderr);
}

mod properties {
    //! Arbitrary input never panics the strict parser or the gates.

    use agentplane::bundle::digest::Want;
    use agentplane::bundle::gates;
    use agentplane::bundle::schema::SchemaChecker;
    use proptest::prelude::*;

    /// Bytes that are often almost JSON: fragments glued together.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b","[..]),
            Just(&b":"[..]),
            Just(&b"\"spec\""[..]),
            Just(&b"\"a\""[..]),
            Just(&b"\"\\u00"[..]),
            Just(&b"1e400"[..]),
            Just(&b"-0.5"[..]),
            Just(&b"null"[..]),
            Just(&b"\xff"[..]),
            Just(&b" \n"[..]),
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            proptest::collection::vec(piece, 0..64).prop_map(|v| v.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_strict_never_panics_and_agrees_with_serde_json(bytes in jsonish()) {
            match agentplane::json::parse_strict(&bytes) {
                // Whatever it accepts, serde_json reads as the same value.
                Ok(v) => prop_assert_eq!(v, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()),
                // Whatever it refuses is a duplicate key (which serde_json would
                // take last-wins) or something serde_json refuses too.
                Err(e) => prop_assert!(
                    e.is_duplicate_key() || serde_json::from_slice::<serde_json::Value>(&bytes).is_err(),
                    "{}", e
                ),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_gates_never_panic_and_always_fail_junk(bytes in jsonish()) {
            let d = tempfile::tempdir().unwrap();
            let root = d.path().canonicalize().unwrap();
            std::fs::create_dir_all(root.join("bundles/x")).unwrap();
            let manifest = root.join("bundles/x/bundle.json");
            std::fs::write(&manifest, &bytes).unwrap();
            let checker = SchemaChecker::new();
            let report = gates::validate(&root, &manifest, &checker, Want::DigestAndFiles);
            // Junk is never a valid bundle, and it always says why.
            prop_assert!(!report.valid);
            prop_assert!(report.checks.iter().any(|c| c.status == gates::Status::Fail));
        }
    }

    /// Any JSON value.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("../../etc/passwd")),
            Just(serde_json::Value::from("/dev/zero")),
            Just(serde_json::Value::from(".git")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS: &[&str] = &[
        "/apiVersion",
        "/metadata",
        "/metadata/licensePolicy/allowAGPL",
        "/spec/policy/maxRunSeconds",
        "/spec/artifacts/outDir",
        "/spec/smoke/script",
        "/spec/vm",
        "/spec/vm/mounts",
        "/spec/vm/backendIntent",
        "/spec/secrets/required",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn the_gates_never_panic_on_a_bundle_with_any_field_replaced(
            field in proptest::sample::select(FIELDS),
            replacement in value(),
        ) {
            let d = tempfile::tempdir().unwrap();
            let root = d.path().canonicalize().unwrap();
            let mut v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(crate::util::repo().join("bundles/example-agent/bundle.json")).unwrap(),
            )
            .unwrap();
            let (parent, key) = field.rsplit_once('/').unwrap();
            if let Some(serde_json::Value::Object(m)) = v.pointer_mut(parent) {
                m.insert(key.to_string(), replacement);
            }
            std::fs::create_dir_all(root.join("bundles/example-agent")).unwrap();
            let manifest = root.join("bundles/example-agent/bundle.json");
            std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
            let checker = SchemaChecker::new();
            let report = gates::validate(&root, &manifest, &checker, Want::DigestAndFiles);
            prop_assert_eq!(report.valid, !report.checks.iter().any(|c| c.status == gates::Status::Fail));
        }
    }
}

#[test]
fn a_bundle_cannot_hide_from_a_tree_validation() {
    // A manifest beside an evidence.jsonl, or in a folder named like one
    // validate skips, is still found and checked.
    let r = Root::new();
    for name in ["hidden", "target", "node_modules", "artifacts"] {
        r.bundle(name, "#!/bin/sh\n", |v| v["metadata"]["licensePolicy"]["allowAGPL"] = true.into());
    }
    r.write("bundles/hidden/evidence.jsonl", "");
    let doc = run_bounded(&r, &["--format", "json", "validate", "--check", "bundles/"]).json();
    let mut paths: Vec<&str> = doc["bundles"].as_array().unwrap().iter().map(|b| b["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "bundles/artifacts/bundle.json",
            "bundles/hidden/bundle.json",
            "bundles/node_modules/bundle.json",
            "bundles/target/bundle.json"
        ]
    );
    assert_eq!(doc["valid"], false);
}
