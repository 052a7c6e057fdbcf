//! `agentplane place` without SSH: inventories, filters, choices.

use crate::util::{Root, compat};

fn node(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut n = serde_json::json!({
        "name": name, "sshRef": "local", "enabled": true,
        "supportedBackends": ["lima-process"], "capabilities": {"kvm": false},
        "health": {"state": "ready"}, "trustZone": "test"
    });
    edit(&mut n);
    n
}

fn validated() -> Root {
    let r = Root::with_example();
    r.cmd(&["validate", "bundles/example-agent"]).ok();
    r
}

#[test]
fn every_rejection_is_explained() {
    let r = validated();
    let inv = r.inventory(
        &[
            node("off", |n| n["enabled"] = false.into()),
            node("drained", |n| n["health"]["state"] = "drained".into()),
            node("vm-only", |n| n["supportedBackends"] = serde_json::json!(["qemu"])),
            node("riscv", |n| n["platform"] = serde_json::json!({"os": "linux", "arch": "riscv64"})),
            node("good", |_| {}),
            node("also-good", |_| {}),
        ],
        "off",
    );
    let d = r.cmd(&["--format", "json", "place", "bundles/example-agent", "--inventory", &inv]).ok().json();
    assert_eq!(d["chosenExecutor"], "good");
    let reason = |name: &str| {
        d["rejected"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason("off"), "disabled");
    assert_eq!(reason("drained"), "health-not-ready");
    assert_eq!(reason("vm-only"), "backend-unsupported");
    assert_eq!(reason("riscv"), "platform-mismatch");
    assert_eq!(reason("also-good"), "not-preferred");
    r.cmd(&["verify", "artifacts/example-agent", "--trusted-key", &r.pubkey(), "--allow-unsealed"]).ok();
}

#[test]
fn nothing_qualifies_is_exit_1_listing_why() {
    let r = validated();
    let inv = r.inventory(&[node("off", |n| n["enabled"] = false.into())], "off");
    let out = r.cmd(&["place", "bundles/example-agent", "--inventory", &inv]).failed();
    assert!(
        out.stdout.contains("off") && out.stdout.contains("disabled") && out.stdout.contains("no executor qualifies"),
        "{}",
        out.stdout
    );
    assert!(!r.join("artifacts/example-agent/placement-decision.json").exists());
}

#[test]
fn isolation_and_kvm_policies_filter() {
    let r = Root::new();
    r.keygen();
    r.bundle("strict", "#!/bin/sh\n", |v| {
        v["spec"]["policy"]["acceptableIsolation"] = serde_json::json!(["vm-kvm", "vm-tcg"]);
    });
    r.cmd(&["validate", "bundles/strict"]).ok();
    let inv = r.inventory(&[node("proc", |_| {})], "proc");
    let d = r.cmd(&["--format", "json", "place", "bundles/strict", "--inventory", &inv]).failed().json();
    assert_eq!(d["rejected"][0]["code"], "isolation-too-weak");
}

/// A `qemu` bundle and an inventory whose only executor is an SSH host that
/// lists `qemu`: the VM would boot *there*, so the host is probed (QEMU,
/// kernel, KVM: tests/integration/remote_vm.rs) and, being unreachable, is
/// rejected as such; nothing boots on this host under its name.
#[test]
fn a_vm_backend_over_ssh_is_probed_on_the_executor() {
    let r = Root::new();
    r.keygen();
    r.bundle("vm", "#!/bin/sh\n", |v| v["spec"]["vm"]["backendIntent"] = "qemu".into());
    r.cmd(&["validate", "bundles/vm"]).ok();
    let inv = r.inventory(
        &[node("remote-vm", |n| {
            n["sshRef"] = "agentplane@remote-vm.invalid:22".into();
            n["supportedBackends"] = serde_json::json!(["qemu", "lima-process"]);
            n["ssh"] = serde_json::json!({
                "host": "remote-vm.invalid", "port": 22, "user": "agentplane",
                "identityFile": "/nonexistent/id", "knownHostsFile": "/nonexistent/known_hosts"
            });
        })],
        "remote-vm",
    );
    let d = r.cmd(&["--format", "json", "place", "bundles/vm", "--inventory", &inv]).failed().json();
    assert!(d["chosenExecutor"].is_null(), "{d}");
    let rejected = &d["rejected"][0];
    assert_eq!(rejected["name"], "remote-vm", "{d}");
    assert_eq!(rejected["code"], "ssh-unreachable", "{d}");

    let out = r.cmd(&["place", "bundles/vm", "--inventory", &inv]).failed();
    assert!(out.stdout.contains("remote-vm") && out.stdout.contains("ssh-unreachable"), "{}", out.stdout);
    assert!(!r.join("artifacts/vm/placement-decision.json").exists(), "nothing was placed");
}

#[test]
fn pinning_by_flag_and_unknown_pins() {
    let r = validated();
    let inv = r.inventory(&[node("a", |_| {}), node("b", |_| {})], "a");
    r.cmd(&["place", "bundles/example-agent", "--inventory", &inv, "--executor", "zzz"])
        .failed()
        .stderr_has("known executors: a, b");
    let d = r
        .cmd(&["--format", "json", "place", "bundles/example-agent", "--inventory", &inv, "--executor", "b"])
        .ok()
        .json();
    assert_eq!(d["chosenExecutor"], "b");
}

#[test]
fn the_upstream_legacy_inventory_shape_loads() {
    let Some(compat) = compat("the_upstream_legacy_inventory_shape_loads") else { return };
    let r = validated();
    let mut legacy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(compat.join("upstream-inventory.json")).unwrap()).unwrap();
    // Add a local executor in the legacy shape beside upstream's (unreachable) Lima node.
    legacy["executors"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "here", "sshRef": "local", "caps": {"os": "linux", "kvm": false}}));
    r.write("legacy.json", legacy.to_string());
    let d = r
        .cmd(&[
            "--format",
            "json",
            "place",
            "bundles/example-agent",
            "--inventory",
            "legacy.json",
            "--probe-timeout",
            "1",
        ])
        .ok()
        .json();
    assert_eq!(d["chosenExecutor"], "here");
    let lima = d["rejected"].as_array().unwrap().iter().find(|x| x["name"] == "lima-nixbuilder").unwrap();
    assert_eq!(lima["code"], "ssh-unreachable", "{lima}");
}

#[test]
fn malformed_inventories_are_exit_2_with_file_and_pointer() {
    let r = validated();
    for (body, needle) in [
        ("{not json", "not valid JSON"),
        (
            r#"{"apiVersion":"agentplane.socioprophet.org/v0.1","kind":"FleetInventory","metadata":{"name":"x"},"executors":[{"name":"a","sshRef":"local","enabled":"yes"}]}"#,
            "/executors/0/enabled",
        ),
        (r#"{"executors":[{"name":"a"}]}"#, "/executors/0"),
        (r#"{"executors":[{"name":"a","sshRef":"local"}],"defaultExecutor":"b"}"#, "/defaultExecutor"),
        (r#"{"executors":[{"name":"a","sshRef":"x@h:notaport"}]}"#, "bad port"),
    ] {
        r.write("bad-inv.json", body);
        r.cmd(&["place", "bundles/example-agent", "--inventory", "bad-inv.json"])
            .error()
            .stderr_has("bad-inv.json")
            .stderr_has(needle);
    }
    r.cmd(&["place", "bundles/example-agent", "--inventory", "missing.json"]).error().stderr_has("missing.json");
}

#[test]
fn the_projects_default_inventory_places_on_local() {
    let r = validated();
    std::fs::create_dir_all(r.join("fleet")).unwrap();
    std::fs::copy(crate::util::repo().join("fleet/inventory.json"), r.join("fleet/inventory.json")).unwrap();
    let d = r.cmd(&["--format", "json", "place", "bundles/example-agent"]).ok().json();
    assert_eq!(d["chosenExecutor"], "local");
    assert_eq!(d["rejected"][0]["code"], "disabled");
}

#[test]
fn place_human_output_snapshot() {
    let r = validated();
    let inv = r.inventory(
        &[
            node("off", |n| n["enabled"] = false.into()),
            node("vm-only", |n| n["supportedBackends"] = serde_json::json!(["qemu"])),
            node("good", |_| {}),
        ],
        "good",
    );
    let out = r.cmd(&["place", "bundles/example-agent", "--inventory", &inv]).ok();
    insta::assert_snapshot!(
        "place_human",
        format!("exit {}\n{}", out.code, crate::util::redact(&out.stdout, r.path()))
    );
}

#[test]
fn a_fleet_larger_than_the_fd_limit_is_probed_in_waves_and_no_host_is_blamed() {
    let r = validated();
    // Silent SSH hosts: the kernel completes the handshake, nobody ever speaks.
    let listeners: Vec<std::net::TcpListener> =
        (0..100).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let mut execs: Vec<serde_json::Value> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            node(&format!("silent{i}"), |n| {
                n["sshRef"] = format!("root@127.0.0.1:{}", l.local_addr().unwrap().port()).into();
            })
        })
        .collect();
    execs.push(node("here", |_| {}));
    let inv = r.inventory(&execs, "silent0");
    // A hard limit the process cannot raise, far below one socket per host:
    // the probes go in waves, each host is judged by its own silence, and
    // none is blamed for a socket agentplane could not open.
    let cmd = format!(
        "ulimit -n 48 && exec {} --format json --root {} place bundles/example-agent --inventory {inv} --probe-timeout 1",
        crate::util::BIN,
        r.path().display()
    );
    let out = std::process::Command::new("sh").args(["-c", &cmd]).current_dir(r.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["chosenExecutor"], "here", "{d}");
    let rejected = d["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 100, "{d}");
    for x in rejected {
        assert_eq!(x["code"], "ssh-unreachable", "{x}");
        let why = x.to_string();
        assert!(!why.contains("os error 24") && !why.contains("not probed"), "{x}");
    }
    drop(listeners);
}
