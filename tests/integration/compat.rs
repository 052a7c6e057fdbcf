//! Upstream agentplane compatibility: every artifact agentplane writes is
//! valid under upstream's schema of its kind (`../shared/compat/upstream-schemas/`),
//! and nothing agentplane adds is lost: it is in the signed predicate's details.

use crate::util::{Root, compat};

/// The predicate of the last chain entry of `kind` in `ev`.
pub fn predicate(r: &Root, ev: &str, kind: &str) -> serde_json::Value {
    use base64::Engine;
    let chain = r.read(&format!("{ev}/evidence.jsonl"));
    chain
        .lines()
        .rev()
        .map(|l| {
            let env: serde_json::Value = serde_json::from_str(l).unwrap();
            let body = base64::engine::general_purpose::STANDARD.decode(env["payload"].as_str().unwrap()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["predicate"].clone()
        })
        .find(|p| p["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} entry in {ev}"))
}

#[test]
fn every_artifact_validates_against_upstreams_schema() {
    let Some(compat) = compat("every_artifact_validates_against_upstreams_schema") else { return };
    let r = Root::with_example();
    r.bundle("second", "#!/bin/sh\necho two > \"$1/two.txt\"\n", |_| {});
    r.up("bundles/example-agent");
    r.up("bundles/second");
    r.cmd(&["promote", "bundles/example-agent"]).ok();
    r.cmd(&["promote", "bundles/second"]).ok();
    r.cmd(&["rollback"]).ok();
    let mut checked = 0;
    for (ev, file, schema) in [
        ("artifacts/example-agent", "validation-artifact.json", "validation-artifact"),
        ("artifacts/example-agent", "placement-decision.json", "placement-decision"),
        ("artifacts/example-agent", "run-artifact.json", "run-artifact"),
        ("artifacts/example-agent", "replay-artifact.json", "replay-artifact"),
        ("artifacts/example-agent", "session-artifact.json", "session-artifact"),
        ("artifacts/example-agent", "promotion-artifact.json", "promotion-artifact"),
        ("artifacts/second", "promotion-artifact.json", "promotion-artifact"),
        ("artifacts/second", "reversal-artifact.json", "reversal-artifact"),
    ] {
        let schema_path = compat.join(format!("upstream-schemas/{schema}.schema.v0.1.json"));
        let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&schema_path).unwrap()).unwrap();
        let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).unwrap();
        let doc = r.json(&format!("{ev}/{file}"));
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{ev}/{file} is not valid under upstream's {schema} schema: {errors:#?}");
        checked += 1;
    }
    assert_eq!(checked, 8);
    // Nothing was lost: what upstream's files have no room for is signed in the details.
    let d = &predicate(&r, "artifacts/example-agent", "PlacementDecision")["details"];
    assert_eq!(d["transport"], "local");
    assert_eq!(d["isolation"], "process");
    let d = &predicate(&r, "artifacts/example-agent", "ValidationArtifact")["details"];
    assert!(d["bundleDigest"].as_str().unwrap().starts_with("sha256:"));
    assert!(d["checks"].as_array().unwrap().iter().any(|c| c["name"] == "schema"));
    let d = &predicate(&r, "artifacts/second", "PromotionArtifact")["details"];
    assert_eq!(d["bundlePath"], "bundles/second");
    let replay = r.json("artifacts/example-agent/replay-artifact.json");
    assert!(replay["inputs"].as_object().unwrap().contains_key("bundleRev"), "bundleRev must always be present");
}

#[test]
fn extension_blocks_are_carried_into_the_run_artifact_and_the_details() {
    let r = Root::with_example();
    r.bundle("ext", "exit 0\n", |v| {
        v["spec"]["sourceos"] = serde_json::json!({"imageRef": "sourceos://x"});
        v["spec"]["outputs"] = serde_json::json!({"report": "out/report.json"});
        v["spec"]["nonClaims"] = serde_json::json!(["not a production image"]);
    });
    r.up("bundles/ext");
    let run = r.json("artifacts/ext/run-artifact.json");
    assert_eq!(run["bundleExtensions"]["sourceos"]["imageRef"], "sourceos://x");
    assert_eq!(run["bundleExtensions"]["outputs"]["report"], "out/report.json");
    assert_eq!(run["bundleExtensions"]["nonClaims"][0], "not a production image");
    let d = &predicate(&r, "artifacts/ext", "ValidationArtifact")["details"];
    assert_eq!(d["bundleExtensions"]["sourceos"]["imageRef"], "sourceos://x");
}

/// Keys interoperate: `keygen` writes PKCS#8 v1, which OpenSSL reads; keys in
/// the v2 form (public key attached) that earlier versions wrote still load.
#[test]
#[allow(clippy::print_stdout)] // the skip notice
fn keys_are_pkcs8_v1_that_openssl_reads_and_v2_keys_still_load() {
    let r = Root::with_example();
    let key = r.join(".agentplane/keys/signing.key");
    if std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        let out = std::process::Command::new("openssl").args(["pkey", "-noout", "-in"]).arg(&key).output().unwrap();
        assert!(out.status.success(), "openssl cannot read the key: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        println!("note: openssl not installed: the OpenSSL read check is skipped");
    }
    // A v2 key (what ed25519-dalek writes by itself) is still accepted.
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use std::os::unix::fs::PermissionsExt;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let v2 = sk.to_pkcs8_pem(Default::default()).unwrap();
    r.write("v2.key", v2.as_bytes());
    std::fs::set_permissions(r.join("v2.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    r.cmd(&["validate", "bundles/example-agent", "--key", "v2.key"]).ok();
    // Another key type is named, an encrypted key gets the way out.
    r.write("enc.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n");
    std::fs::set_permissions(r.join("enc.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    r.cmd(&["validate", "bundles/example-agent", "--key", "enc.key"]).error().stderr_has("openssl pkey");
}

/// The project's own `fleet/inventory.json` is valid under upstream's fleet schema.
#[test]
fn the_projects_inventory_is_valid_under_upstreams_fleet_schema() {
    let Some(compat) = compat("the_projects_inventory_is_valid_under_upstreams_fleet_schema") else { return };
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(compat.join("upstream-schemas/fleet-inventory.schema.v0.1.json")).unwrap(),
    )
    .unwrap();
    let inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(crate::util::repo().join("fleet/inventory.json")).unwrap()).unwrap();
    let v = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&inv).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// An executor named by an ssh_config alias (and a Lima instance's
/// `lima-<name>`) resolves through the config file, and the decision records it.
#[test]
fn ssh_aliases_resolve_through_ssh_config_and_lima() {
    let r = Root::with_example();
    let home = r.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/config"), "Host builder\n  HostName 127.0.0.1\n  Port 1\n  User someone\n").unwrap();
    let lima = home.join(".lima/nixbuilder");
    std::fs::create_dir_all(&lima).unwrap();
    std::fs::write(lima.join("ssh.config"), "Host lima-nixbuilder\n  Hostname 127.0.0.1\n  Port 2\n").unwrap();
    let node = |name: &str, ssh_ref: &str| {
        serde_json::json!({"name": name, "sshRef": ssh_ref, "enabled": true,
            "platform": {"os": "linux", "arch": "x86_64"}, "supportedBackends": ["lima-process"],
            "health": {"state": "ready"}, "trustZone": "lab"})
    };
    r.inventory(&[node("a", "builder"), node("b", "lima-nixbuilder")], "a");
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    let home_s = home.display().to_string();
    let out = r.cmd_env(
        &["--format", "json", "place", "bundles/example-agent", "--inventory", "inv.json", "--probe-timeout", "1"],
        &[("HOME", &home_s)],
    );
    // Nothing listens on ports 1 and 2: both are unreachable, at the resolved address.
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let d = out.json();
    let rejected = d["rejected"].as_array().unwrap();
    assert!(rejected.iter().all(|x| x["code"] == "ssh-unreachable"), "{d}");
    assert!(rejected.iter().any(|x| x["reason"].as_str().unwrap().contains("127.0.0.1:1")), "{d}");
    assert!(rejected.iter().any(|x| x["reason"].as_str().unwrap().contains("127.0.0.1:2")), "{d}");
}

/// Absolute host mounts (upstream's `sourceos-asahi-stage` declares virtiofs
/// mounts of `/srv/sourceos/…`) are a warning at validation and a placement
/// rule: only an executor whose capabilities.hostPaths allow them qualifies.
#[test]
fn absolute_host_mounts_warn_and_need_an_executor_that_allows_them() {
    let r = Root::with_example();
    r.bundle("mounts", "exit 0\n", |v| {
        v["spec"]["vm"]["mounts"] =
            serde_json::json!([{"type": "virtiofs", "source": "/srv/sourceos/cache", "target": "/cache", "ro": true}])
    });
    let out = r.cmd(&["--format", "json", "validate", "bundles/mounts"]).ok().json();
    let checks = out["bundles"][0]["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["name"] == "paths-inside-root"
            && c["status"] == "warn"
            && c["message"].as_str().unwrap().contains("/srv/sourceos/cache")),
        "{out}"
    );
    let node = |name: &str, caps: serde_json::Value| {
        serde_json::json!({"name": name, "sshRef": "local", "enabled": true, "platform": {"os": "any", "arch": "any"},
            "supportedBackends": ["lima-process"], "capabilities": caps, "health": {"state": "ready"}, "trustZone": "t"})
    };
    r.inventory(
        &[node("plain", serde_json::json!({})), node("cache", serde_json::json!({"hostPaths": ["/srv/sourceos/**"]}))],
        "plain",
    );
    let d = r.cmd(&["--format", "json", "place", "bundles/mounts", "--inventory", "inv.json"]).ok().json();
    assert_eq!(d["chosenExecutor"], "cache", "{d}");
    assert_eq!(d["rejected"][0]["code"], "host-path-not-allowed", "{d}");
    // Upstream's bundle that declares such mounts no longer fails paths-inside-root.
    if let Some(compat) = compat("absolute_host_mounts_warn_and_need_an_executor_that_allows_them") {
        r.write(
            "bundles/asahi/bundle.json",
            std::fs::read(compat.join("upstream-bundles/sourceos-asahi-stage.json")).unwrap(),
        );
        let out = r.cmd(&["--format", "json", "validate", "--check", "bundles/asahi"]).json();
        let fails: Vec<_> = out["bundles"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == "paths-inside-root" && c["status"] == "fail")
            .map(|c| c["message"].clone())
            .collect();
        assert!(fails.iter().all(|m| !m.as_str().unwrap().contains("/srv/")), "{fails:?}");
    }
}

/// Upstream's smoke scripts are bash (`#!/usr/bin/env bash`, `set -euo
/// pipefail`, arrays, `[[ ]]`): they run as their authors wrote them.
#[test]
fn a_bash_only_smoke_script_runs_locally_with_its_interpreter() {
    let r = Root::with_example();
    r.bundle(
        "bashy",
        "#!/usr/bin/env bash\nset -euo pipefail\nparts=(a b c)\nif [[ ${#parts[@]} -eq 3 ]]; then echo \"n=${#parts[@]}\" > \"$1/n.txt\"; fi\n",
        |_| {},
    );
    r.up("bundles/bashy");
    assert_eq!(r.read("artifacts/bashy/products/n.txt"), "n=3\n");
}
