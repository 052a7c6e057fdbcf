//! The QEMU runner through the real binary: a real `qemu-system-x86_64` boot
//! of the host's kernel with the initramfs agentplane builds (TCG unless KVM
//! really works). `scripts/test` installs qemu-system-x86, busybox-static and
//! linux-image-amd64 when they are missing; these tests do not skip.

use crate::util::Root;
use sha2::{Digest, Sha256};

/// QEMU processes whose agentplane temp dir is gone: a VM that outlived its
/// run. (VMs of tests running in parallel still have their dir.)
fn leaked_vms() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if !args.first().is_some_and(|a| a.contains("qemu-system")) {
            continue;
        }
        let orphaned = args.iter().filter_map(|a| a.split("path=").last()).any(|a| {
            let p = std::path::Path::new(a);
            let ours = p.components().any(|c| c.as_os_str().to_string_lossy().starts_with("agentplane-"));
            ours && p.parent().is_some_and(|d| !d.exists())
        });
        if orphaned {
            out.push(args.join(" "));
        }
    }
    out
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn example_vm_runs_in_a_vm_and_its_evidence_verifies() {
    let r = Root::new();
    r.copy_bundle("example-vm");
    r.keygen();
    let b = "bundles/example-vm";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    let run = r.cmd(&["--format", "json", "run", b]).ok().json();
    assert_eq!(run["status"], "success");
    let isolation = run["isolation"].as_str().unwrap();
    assert!(["vm-tcg", "vm-kvm"].contains(&isolation), "{isolation}");

    let artifact = r.json("artifacts/example-vm/run-artifact.json");
    assert_eq!(artifact["isolation"], isolation);
    assert_eq!(artifact["backendIntent"], "qemu");
    assert_eq!(artifact["environment"]["hostname"], "agentplane-vm");
    assert_eq!(artifact["environment"]["arch"], "x86_64");
    let kernel = artifact["environment"]["kernel"].as_str().unwrap().to_string();
    assert!(!kernel.is_empty());

    // The product came back from the guest and says so.
    assert_eq!(artifact["products"][0]["path"], "products/vm-report.txt");
    let report = r.read("artifacts/example-vm/products/vm-report.txt");
    assert!(report.contains("hostname: agentplane-vm"), "{report}");
    assert!(report.contains(&format!("kernel: {kernel}")), "{report}");
    assert!(report.contains("pid1: init"), "{report}");
    // stdout and stderr kept apart, and no kernel console in either.
    let stdout = r.read("artifacts/example-vm/run.stdout.log");
    let stderr = r.read("artifacts/example-vm/run.stderr.log");
    assert_eq!(stdout, format!("example-vm: smoke test ran in agentplane-vm on kernel {kernel}\n"));
    assert_eq!(stderr, "example-vm: this line goes to stderr\n");

    // The receipt: the VM held the run and powered itself off; nothing of it is left.
    assert_eq!(
        artifact["containment"],
        serde_json::json!({"mechanism": "vm", "killedAtEnd": 0, "survivors": 0, "checked": true}),
        "{artifact:#}"
    );

    r.cmd(&["emit", b]).ok();
    r.cmd(&["verify", "artifacts/example-vm", "--trusted-key", &r.pubkey()]).ok();
    assert!(leaked_vms().is_empty(), "{:?}", leaked_vms());
}

#[test]
fn products_cross_the_serial_channel_byte_exact_and_the_exit_code_is_kept() {
    let r = Root::new();
    r.keygen();
    // A file with every byte value travels host → initramfs → guest → control port → host.
    let mut every_byte: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
    every_byte.extend(b"\r\n\n@end\n@done\n");
    // `#!/usr/bin/env sh`: busybox's sh, found in the guest's PATH.
    let smoke = r#"#!/usr/bin/env sh
set -eu
cp data.bin "$1/copied.bin"
head -c 300000 /dev/urandom > "$1/random.bin"
sha256sum "$1/random.bin" | cut -d' ' -f1 > "$1/random.sha256"
mkdir -p "$1/sub dir"
printf 'x' > "$1/sub dir/name with spaces"
echo "bundle=$AGENTPLANE_BUNDLE_NAME products=$AGENTPLANE_PRODUCTS_DIR cwd=$(pwd)"
printf 'no newline at the end' >&2
exit 3
"#;
    r.bundle("vm-bytes", smoke, |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["policy"]["maxRunSeconds"] = 60.into();
    });
    r.write("bundles/vm-bytes/data.bin", &every_byte);
    let b = "bundles/vm-bytes";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    r.cmd_env(&["run", b], &[("AGENTPLANE_QEMU_ACCEL", "tcg")]).failed();

    let artifact = r.json("artifacts/vm-bytes/run-artifact.json");
    assert_eq!(artifact["exitCode"], 3);
    assert_eq!(artifact["timedOut"], false);
    assert_eq!(artifact["isolation"], "vm-tcg", "AGENTPLANE_QEMU_ACCEL=tcg must not claim KVM");
    let products = r.join("artifacts/vm-bytes/products");
    assert_eq!(std::fs::read(products.join("copied.bin")).unwrap(), every_byte);
    let random = std::fs::read(products.join("random.bin")).unwrap();
    assert_eq!(random.len(), 300_000);
    let guest_sum = std::fs::read_to_string(products.join("random.sha256")).unwrap();
    assert_eq!(guest_sum.trim(), sha256_hex(&random), "the guest's digest of what it sent");
    assert_eq!(std::fs::read_to_string(products.join("sub dir/name with spaces")).unwrap(), "x");
    let recorded: Vec<&str> =
        artifact["products"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert!(recorded.contains(&"products/random.bin"), "{recorded:?}");

    assert_eq!(
        r.read("artifacts/vm-bytes/run.stdout.log"),
        "bundle=vm-bytes products=/agentplane/products cwd=/agentplane/bundle\n"
    );
    assert_eq!(r.read("artifacts/vm-bytes/run.stderr.log"), "no newline at the end");
}

#[test]
fn a_vm_smoke_past_max_run_seconds_is_stopped_and_no_qemu_survives() {
    let r = Root::new();
    r.keygen();
    let smoke = "echo started\necho partial > \"$1/partial.txt\"\nsleep 60\necho never\n";
    r.bundle("vm-slow", smoke, |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["policy"]["maxRunSeconds"] = 5.into();
    });
    let b = "bundles/vm-slow";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    let t0 = std::time::Instant::now();
    r.cmd(&["run", b]).failed();
    let took = t0.elapsed();

    let artifact = r.json("artifacts/vm-slow/run-artifact.json");
    assert_eq!(artifact["timedOut"], true);
    assert_eq!(artifact["status"], "failure");
    assert_eq!(artifact["signal"], "SIGTERM", "the guest stops the script with TERM first");
    // The guest kept the deadline and powered off by itself: the VM was not killed.
    let c = &artifact["containment"];
    assert_eq!((c["mechanism"].as_str(), c["killedAtEnd"].as_u64()), (Some("vm"), Some(0)), "{c}");
    assert_eq!((c["survivors"].as_u64(), c["checked"].as_bool()), (Some(0), Some(true)), "{c}");
    // The guest enforces the deadline itself, so what the script wrote still comes back.
    assert_eq!(r.read("artifacts/vm-slow/products/partial.txt"), "partial\n");
    assert_eq!(r.read("artifacts/vm-slow/run.stdout.log"), "started\n");
    // Boot (not counted) + 5 s + grace, well short of the script's 60 s.
    assert!(took.as_secs() < 45, "took {took:?}");
    assert!(leaked_vms().is_empty(), "{:?}", leaked_vms());
}

#[test]
fn requiring_kvm_fails_clearly_where_kvm_does_not_work() {
    let r = Root::new();
    r.keygen();
    r.bundle("vm-kvm", "uname -r > \"$1/k\"\n", |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["vm"]["requiresKvm"] = true.into();
    });
    // The repo's inventory with `local` claiming KVM, so placement lets the run try.
    let mut inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(crate::util::repo().join("fleet/inventory.json")).unwrap()).unwrap();
    for e in inv["executors"].as_array_mut().unwrap() {
        e["capabilities"]["kvm"] = true.into();
    }
    r.write("fleet/inventory.json", serde_json::to_vec_pretty(&inv).unwrap());
    let b = "bundles/vm-kvm";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    let run = r.cmd(&["run", b]);
    let artifact = r.json("artifacts/vm-kvm/run-artifact.json");
    if run.code == 0 {
        assert_eq!(artifact["isolation"], "vm-kvm");
    } else {
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(artifact["isolation"], "vm-tcg");
        let error = artifact["error"].as_str().unwrap_or_default();
        assert!(error.contains("KVM required but not usable"), "{artifact:#}");
    }
}

#[test]
fn a_missing_qemu_or_a_dynamic_busybox_is_a_failed_run_that_says_what_to_install() {
    let r = Root::new();
    r.keygen();
    r.bundle("vm-missing", "true\n", |v| v["spec"]["vm"]["backendIntent"] = "qemu".into());
    let b = "bundles/vm-missing";
    for (var, value, says) in [
        ("AGENTPLANE_QEMU", "/nonexistent/qemu-system-x86_64", "does not exist"),
        ("AGENTPLANE_BUSYBOX", "/bin/sh", "not a statically linked"),
    ] {
        r.cmd(&["validate", b]).ok();
        r.cmd(&["place", b]).ok();
        r.cmd_env(&["run", b], &[(var, value)]).failed();
        let artifact = r.json("artifacts/vm-missing/run-artifact.json");
        let error = artifact["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{var}: {error}");
        assert!(error.contains("apt-get install qemu-system-x86 busybox-static linux-image-amd64"), "{error}");
    }
}

#[test]
fn a_guest_that_stops_answering_is_killed_by_the_host_deadline() {
    let r = Root::new();
    r.keygen();
    // Kill the guest's own watchdog (a child of /init, also named `init`), so
    // only the host's deadline is left to end the run.
    let smoke = "for p in $(pidof init); do [ \"$p\" != 1 ] && kill -9 \"$p\"; done\necho unguarded\nsleep 600\n";
    r.bundle("vm-rogue", smoke, |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["policy"]["maxRunSeconds"] = 5.into();
    });
    let b = "bundles/vm-rogue";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    let t0 = std::time::Instant::now();
    r.cmd(&["run", b]).failed();
    let took = t0.elapsed();
    let artifact = r.json("artifacts/vm-rogue/run-artifact.json");
    assert_eq!(artifact["timedOut"], true);
    assert_eq!(artifact["signal"], "SIGKILL", "the host stopped the VM");
    // The host had to kill the VM, and found nothing of it afterwards.
    let c = &artifact["containment"];
    assert_eq!((c["mechanism"].as_str(), c["killedAtEnd"].as_u64()), (Some("vm"), Some(1)), "{c}");
    assert_eq!((c["survivors"].as_u64(), c["checked"].as_bool()), (Some(0), Some(true)), "{c}");
    assert_eq!(r.read("artifacts/vm-rogue/run.stdout.log"), "unguarded\n");
    assert!(took.as_secs() < 60, "took {took:?}");
    assert!(leaked_vms().is_empty(), "{:?}", leaked_vms());
}

/// The mode bits of `p`.
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0)
}

/// `pgrep -f PATTERN`: the pids of processes whose command line matches.
fn pgrep(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep").arg("-f").arg(pattern).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

/// An owner marker naming this (live) test process: pid, start time (field
/// 22 of `/proc/self/stat`) and PID namespace inode.
fn my_owner_marker() -> String {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let started = s[s.rfind(')').unwrap() + 2..].split(' ').nth(19).unwrap().to_string();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']').to_string();
    format!("{} {started} {ns}\n", std::process::id())
}

/// `kill -9` of `agentplane up` while its VM runs: the VM dies with it (no
/// `qemu-system` naming the run's temp dir is left), the temp dir and its
/// files were private while it ran, and the next VM run sweeps the dir the
/// killed run left (but not a live owner's). That next run's script needs
/// bash, which the busybox guest lacks: it fails with 127 and says so.
#[test]
fn a_killed_agentplane_takes_its_vm_along_and_the_next_run_sweeps_its_temp_dir() {
    use std::time::{Duration, Instant};
    let r = Root::new();
    r.keygen();
    // Our own temp dir, so the runs' VM dirs are found (and no other test's swept).
    let tmp = r.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    r.bundle("vm-kill", "echo ready\nsleep 600\n", |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["policy"]["maxRunSeconds"] = 300.into();
    });
    let mut up = std::process::Command::new(crate::util::BIN)
        .arg("--root")
        .arg(r.path())
        .args(["up", "bundles/vm-kill"])
        .current_dir(r.path())
        .env("TMPDIR", &tmp)
        .env("AGENTPLANE_QEMU_ACCEL", "tcg")
        .env_remove("AGENTPLANE_SIGNING_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let vm_dir = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("agentplane-vm-"))
    };
    // Wait until the guest runs the script (its stdout reaches the port file).
    let until = Instant::now() + Duration::from_secs(150);
    let dir = loop {
        if let Some(d) = vm_dir()
            && std::fs::read_to_string(d.join("stdout.log")).is_ok_and(|s| s.contains("ready"))
        {
            break d;
        }
        if let Some(st) = up.try_wait().unwrap() {
            panic!("agentplane up ended ({st}) before the VM ran the script");
        }
        assert!(Instant::now() < until, "the VM never started the script");
        std::thread::sleep(Duration::from_millis(100));
    };
    // While the VM runs: the dir is 0700 and every file in it 0600 (the
    // initramfs holds the governed environment).
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    assert!(files.iter().any(|f| f.ends_with("initramfs.cpio")), "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let pattern = dir.display().to_string();
    assert!(!pgrep(&pattern).is_empty(), "no qemu-system with the run's temp dir is running");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    up.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !pgrep(&pattern).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pgrep(&pattern).is_empty(), "the VM outlived agentplane: {:?}", pgrep(&pattern));
    assert!(dir.exists(), "a killed agentplane cannot clean up: the dir is left");

    // A dir whose owner is alive (this test process) is not swept.
    let live = tmp.join("agentplane-vm-live-owner");
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("agentplane.owner"), my_owner_marker()).unwrap();

    // The next VM run sweeps the dead run's dir; its script needs bash.
    r.bundle("vm-bash", "#!/usr/bin/env bash\nset -euo pipefail\n[[ -n x ]] && echo never\n", |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["policy"]["maxRunSeconds"] = 60.into();
    });
    let b = "bundles/vm-bash";
    r.cmd(&["validate", b]).ok();
    r.cmd(&["place", b]).ok();
    r.cmd_env(&["run", b], &[("TMPDIR", tmp.to_str().unwrap()), ("AGENTPLANE_QEMU_ACCEL", "tcg")]).failed();
    assert!(!dir.exists(), "the killed run's temp dir was not swept");
    assert!(live.exists(), "a live owner's dir was swept");
    let artifact = r.json("artifacts/vm-bash/run-artifact.json");
    assert_eq!(artifact["exitCode"], 127, "{artifact:#}");
    let stderr = r.read("artifacts/vm-bash/run.stderr.log");
    assert!(stderr.contains("the smoke script needs `bash`, which the VM guest does not have"), "{stderr:?}");
    assert!(!stderr.contains("syntax error"), "{stderr:?}");
    assert_eq!(r.read("artifacts/vm-bash/run.stdout.log"), "");
    // Only the live owner's dir is left: the run removed its own.
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("agentplane-vm-live-owner")], "{left:?}");
    assert!(leaked_vms().is_empty(), "{:?}", leaked_vms());
}
