//! Tests of the parent module.

use super::secrets::{is_secret_key, is_secret_ref, token_shape};
use super::*;
use proptest::strategy::Strategy as _;

#[test]
fn secret_refs_and_literals() {
    assert!(is_secret_ref("EXAMPLE_AGENT_TOKEN_FILE"));
    assert!(is_secret_ref("secrets://user/token"));
    assert!(!is_secret_ref("hunter2 is my password"));
    assert!(is_secret_key("apiToken"));
    assert!(is_secret_key("db_password"));
    assert!(!is_secret_key("secretRefRoot"));
    assert!(!is_secret_key("tokenRef"));
    // Long keys (past the stack buffer) are judged the same way.
    let long = format!("{}_api_Token", "x".repeat(100));
    assert!(is_secret_key(&long));
    assert!(!is_secret_key(&format!("{long}_ref")));
    assert!(is_secret_key("Client-Secret"));
    assert!(!is_secret_key("ünïcode"));
}

#[test]
fn misplaced_out_dirs() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    let bundle = root.join("bundles/a");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::create_dir_all(root.join("bundles/b")).unwrap();
    std::fs::write(root.join("bundles/b/bundle.json"), "{}").unwrap();
    let why = |rel: &str| out_dir_misplaced(&root, &bundle, &root.join(rel));
    for bad in ["bundles", "bundles/a", ".git", "src/x", "state/pointers", "vendor/dep/.git/x", "bundles/b"] {
        assert!(why(bad).is_some(), "{bad}");
    }
    assert!(out_dir_misplaced(&root, &bundle, &root).is_some());
    assert!(why(".agentplane/keys").unwrap().contains("is inside `.agentplane/`"));
    assert!(why("fleet").unwrap().contains("is `fleet/`"));
    for good in ["artifacts/a", "bundles/a/out", "out/src"] {
        assert_eq!(why(good), None, "{good}");
    }
    // Split on bytes (normal form) or by components (the root spelled `root/`): the same verdicts.
    let spelled = PathBuf::from(format!("{}/", root.display()));
    for p in ["bundles", ".git", "src/x", "vendor/dep/.git/x", ".agentplane/keys", "fleet", "artifacts/a", "out/src"] {
        let p = root.join(p);
        assert_eq!(misplaced_by_name(&root, &bundle, &p), misplaced_by_name(&spelled, &bundle, &p), "{}", p.display());
    }
    let outside = Path::new("/elsewhere/.git/x");
    assert_eq!(misplaced_by_name(&root, &bundle, outside), misplaced_by_name(&spelled, &bundle, outside));
}

#[test]
fn bundle_paths_resolve_from_the_root_then_the_bundle_directory() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    for f in ["bundles/a/bundle.json", "bundles/a/smoke.sh", "bundles/b/bundle.json", "bundles/b/smoke.sh", "top.sh"] {
        std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        std::fs::write(root.join(f), "").unwrap();
    }
    std::fs::write(root.join("bundles/a/top.sh"), "").unwrap();
    let dir = root.join("bundles/a");
    let cache = fsx::LstatCache::default();
    let r = Resolver::new(&root, &dir, &cache);
    let ok = |rel: &str, want: &str| assert_eq!(r.resolve_bundle(rel), (root.join(want), true), "{rel}");
    ok("smoke.sh", "bundles/a/smoke.sh");
    ok("./smoke.sh", "bundles/a/smoke.sh");
    ok("bundles/a/smoke.sh", "bundles/a/smoke.sh");
    ok("bundles/b/smoke.sh", "bundles/b/smoke.sh");
    ok("../b/smoke.sh", "bundles/b/smoke.sh");
    // The root is tried first; `./` means the bundle directory only.
    ok("top.sh", "top.sh");
    ok("./top.sh", "bundles/a/top.sh");
    // Found nowhere: the root form, for the message.
    ok("missing.sh", "missing.sh");
    assert!(!r.resolve_bundle("../../../etc/passwd").1);
    assert!(!r.resolve_bundle("/etc/passwd").1);
    // outDir stays root-relative.
    assert_eq!(r.resolve("smoke.sh").0, root.join("smoke.sh"));
    assert_eq!(r.other_bundle_holding(&root.join("bundles/a/smoke.sh")), None);
    assert_eq!(r.other_bundle_holding(&root.join("top.sh")), None);
    assert_eq!(r.other_bundle_holding(&root.join("bundles/b/smoke.sh")), Some(root.join("bundles/b")));
}

#[test]
fn token_shapes() {
    // Each shape is found when it is the only thing to find (the one-pass
    // filter in front of the rules lets every prefix through).
    for (s, what) in [
        ("xx -----BEGIN RSA PRIVATE KEY----- yy", "a private key block"),
        ("id AKIAABCDEFGHIJKLMNOP", "an AWS access key id"),
        ("gho_0123456789abcdefghijklmnopqrstuvwxyz", "a GitHub token"),
        ("ghs_0123456789abcdefghijklmnopqrstuvwxyz", "a GitHub token"),
        ("github_pat_0123456789abcdefghijklmnopqrstuvwxyz", "a GitHub token"),
        ("glpat-0123456789abcdefghijklmn", "a GitLab token"),
        ("xoxb-0123456789abc", "a Slack token"),
        ("xoxp-0123456789abc", "a Slack token"),
        ("AIza0123456789abcdefghijklmnopqrstuvwxyzAB", "a Google API key"),
        ("sk-0123456789abcdefghijklmnopqrstuvwxyz", "an API secret key"),
        ("sk_live_0123456789abcdefghijkl", "a Stripe secret key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnopqrstuv", "a JSON Web Token"),
    ] {
        assert_eq!(token_shape(s), Some(what), "{s}");
    }
    assert_eq!(token_shape("a perfectly ordinary sentence"), None);
    assert_eq!(token_shape("x.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnopqrstuv"), None);
    assert!(token_shape("ghp_0123456789abcdefghijklmnopqrstuvwxyz").is_some());
    assert!(token_shape("AKIAABCDEFGHIJKLMNOP").is_some());
    assert!(token_shape("-----BEGIN OPENSSH PRIVATE KEY-----\nabc").is_some());
    assert!(token_shape("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_none());
    assert!(token_shape("policy-packs/dev/default").is_none());
}

#[test]
fn a_slimmed_report_gives_its_artifact_the_same_parts_of_the_manifest() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    let dir = root.join("bundles/x");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smoke.sh"), "#!/bin/sh\n").unwrap();
    let manifest = serde_json::json!({
        "apiVersion": "agentplane.socioprophet.org/v0.1",
        "kind": "Bundle",
        "metadata": {"name": "x", "version": "1.0.0", "createdAt": "2026-01-01T00:00:00Z",
                     "licensePolicy": {"allowAGPL": false}},
        "spec": {
            "vm": {"backendIntent": "lima-process"},
            "secrets": {"required": []},
            "policy": {"lane": "prod", "maxRunSeconds": 30},
            "artifacts": {"outDir": "artifacts/x"},
            "smoke": {"script": "./smoke.sh"},
            "governanceContext": {"owner": "team-a", "ticket": ["T-1"]},
            "sourceos": {"image": "a", "deep": {"list": [1, 2, 3]}},
            "outputs": ["report.txt"]
        }
    });
    std::fs::write(dir.join("bundle.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let full = validate(&root, &dir.join("bundle.json"), &SchemaChecker::new(), Want::Check);
    assert!(full.governance_context().is_some() && full.lane().is_some());
    assert_eq!(full.extensions().len(), 2);
    let parts = |r: &Report| (r.governance_context().cloned(), r.lane(), r.metadata().cloned(), r.extensions());
    let before = parts(&full);
    let slim = full.slimmed();
    assert_eq!(parts(&slim), before);
    // Nothing else of the manifest is held.
    let held = slim.manifest_value.as_ref().unwrap();
    assert!(held.get("apiVersion").is_none() && at(held, "/spec/vm").is_none());
    assert!(at(held, "/spec/policy/maxRunSeconds").is_none());
}

/// The plain reading of [`is_secret_key`]: the whole key's letters and
/// digits, lowercased, against each ending.
fn secret_key_plain(key: &str) -> bool {
    let k: String = key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    !secrets::REF_ENDINGS.iter().any(|e| k.ends_with(e)) && secrets::SECRET_ENDINGS.iter().any(|e| k.ends_with(e))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
    /// Keys built from endings, their neighbours' letters, separators and
    /// non-ASCII, short and long: the packed window agrees with the plain reading.
    #[test]
    fn secret_keys_match_the_plain_definition(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(secrets::SECRET_ENDINGS.to_vec()).prop_map(str::to_string),
                proptest::sample::select(secrets::REF_ENDINGS.to_vec()).prop_map(str::to_string),
                "[a-zA-Z0-9_\\-. ]{0,3}",
                proptest::sample::select(["Ü", "é", "\u{0}", "TOKEN", "Pass_Word", "xxxxxxxxxxxxxxxxxxxx"].to_vec())
                    .prop_map(str::to_string),
            ],
            0..6,
        )
    ) {
        let key = parts.concat();
        proptest::prop_assert_eq!(is_secret_key(&key), secret_key_plain(&key), "key {:?}", key);
    }
}

/// A bundle the walk found open is checked from what was found: a directory
/// renamed into its path before the check (a bundle swapped between
/// discovery and validation) is not the one read.
#[test]
fn a_bundle_found_open_is_checked_from_the_directory_found() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    let write = |dir: &Path, name: &str| {
        std::fs::create_dir_all(dir).unwrap();
        let manifest = include_str!("../../../bundles/example-agent/bundle.json").replacen(
            "\"name\": \"example-agent\"",
            &format!("\"name\": \"{name}\""),
            1,
        );
        std::fs::write(dir.join("bundle.json"), manifest).unwrap();
    };
    let b = root.join("bundles/b");
    write(&b, "first");
    let ahead = crate::bundle::discover::OpenAhead::new(4);
    let found = crate::bundle::discover::Walk::opening(&root.join("bundles"), ahead).unwrap().next().unwrap();
    assert!(found.opened.is_some());
    std::fs::rename(&b, root.join("bundles/b.old")).unwrap();
    write(&b, "second");
    let cache = fsx::LstatCache::default();
    let checker = SchemaChecker::new();
    let opened = validate_opened(&root, &found.manifest, found.opened, &checker, Want::Check, &cache);
    assert!(opened.bundle.as_deref().is_some_and(|b| b.starts_with("first@")), "{:?}", opened.bundle);
    // By its path, the directory there now.
    let by_path = validate_opened(&root, &found.manifest, None, &checker, Want::Check, &cache);
    assert!(by_path.bundle.as_deref().is_some_and(|b| b.starts_with("second@")), "{:?}", by_path.bundle);
}
