//! VMs on SSH executors (issue #15): a `qemu` bundle placed on an SSH
//! executor boots *there*. The executor is the real loopback sshd, logged
//! into as a throwaway local account (`agentplane-vmtest`, created here when
//! missing), so "there" is observably another user's VM: real QEMU under TCG
//! (the account is not in the `kvm` group).

use crate::ssh::code_of;
use crate::sshd::Sshd;
use crate::util::{BIN, Root};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The throwaway login the VMs run as.
const USER: &str = "agentplane-vmtest";

/// The tests that boot a VM take turns, so "QEMU processes of [`USER`]" are
/// always the running test's own.
static VM_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn vm_turn() -> std::sync::MutexGuard<'static, ()> {
    VM_TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Create [`USER`] if missing (the tests run as root: `scripts/test` and CI do).
fn ensure_user() {
    let exists = Command::new("id").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success();
    if !exists {
        let st = Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]).status().expect("useradd");
        // Another test may have created it in between.
        let again = Command::new("id").arg(USER).stdout(Stdio::null()).status().unwrap().success();
        assert!(st.success() || again, "cannot create the test account {USER}");
    }
    // No password, but not locked (`!`): sshd without PAM refuses a locked
    // account even with a good key.
    let st = Command::new("usermod").args(["-p", "*", USER]).status().expect("usermod");
    assert!(st.success(), "cannot unlock the test account {USER}");
}

/// A loopback sshd the test account can log into with the client key
/// (sshd reads authorized_keys with the user's rights).
/// `None` (with a notice) when not root: only root can make the account;
/// `scripts/test` and CI run as root.
#[allow(clippy::print_stdout)] // the skip notice
fn sshd_for_user(test: &str) -> Option<Sshd> {
    if !nix::unistd::geteuid().is_root() {
        println!("note: {test} skipped: it logs into a throwaway local account, which only root can create");
        return None;
    }
    ensure_user();
    let sshd = Sshd::start();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sshd.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(sshd.dir().join("authorized_keys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    Some(sshd)
}

/// The inventory entry for the sshd as [`USER`], for VM backends; `vm` goes
/// into `capabilities.vm`.
fn vm_executor(sshd: &Sshd, name: &str, vm: serde_json::Value) -> serde_json::Value {
    let mut e = sshd.executor_json(name);
    e["sshRef"] = format!("{USER}@127.0.0.1:{}", sshd.port).into();
    e["ssh"]["user"] = USER.into();
    e["supportedBackends"] = serde_json::json!(["qemu", "microvm", "lima-process"]);
    e["capabilities"] = serde_json::json!({"kvm": false, "vm": vm});
    e
}

/// QEMU processes running as [`USER`].
/// By process name (`comm`, cut to 15 characters), not command line: the
/// placement probe's shell names `qemu-system-x86_64` in its text too.
fn user_vms() -> Vec<String> {
    let out = Command::new("pgrep").args(["-a", "-u", USER, "-x", "qemu-system-x86"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Every live (not zombie) process of [`USER`].
fn user_processes() -> Vec<String> {
    let out = Command::new("ps").args(["-o", "pid=,stat=,args=", "-u", USER]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|st| !st.starts_with('Z')))
        .map(|l| l.chars().take(160).collect())
        .collect()
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// A Lima-style instance (`$LIMA_HOME/<instance>/ssh.config`, the file Lima
/// writes) pointing at the loopback sshd as the test account.
fn lima_home(r: &Root, sshd: &Sshd, instance: &str) -> String {
    let lima = r.join("lima-home");
    let dir = lima.join(instance);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ssh.config"),
        format!(
            "# This SSH config file can be passed to 'ssh -F'.\nHost lima-{instance}\n  IdentityFile \"{}\"\n  \
             StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  User {USER}\n  Hostname 127.0.0.1\n  Port {}\n  \
             UserKnownHostsFile \"{}\"\n",
            sshd.client_key.display(),
            sshd.port,
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    lima.display().to_string()
}

/// The whole remote path once: placed on a Lima instance by name (reached as
/// the test account), booted there (the VM is that account's process), the
/// product back, the evidence naming the executor and `vm-tcg`, the remote
/// dir gone, then replayed on the same executor with `replay --executor`.
#[test]
fn a_vm_bundle_on_a_lima_instance_boots_there_as_its_login() {
    let _turn = vm_turn();
    let Some(sshd) = sshd_for_user("a_vm_bundle_on_a_lima_instance_boots_there_as_its_login") else { return };
    let r = Root::new();
    r.copy_bundle("example-vm");
    r.keygen();
    let lima = lima_home(&r, &sshd, "vmhost");
    let exec = serde_json::json!({
        "name": "lima-vmhost",
        "sshRef": "lima-vmhost",
        "enabled": true,
        "platform": {"os": "linux", "arch": "x86_64"},
        "supportedBackends": ["qemu", "lima-process"],
        "capabilities": {"kvm": false},
        "health": {"state": "ready"},
        "trustZone": "test"
    });
    let inv = r.inventory(&[exec], "lima-vmhost");
    let env = [("LIMA_HOME", lima.as_str())];
    let b = "bundles/example-vm";
    r.cmd(&["validate", b]).ok();
    let placed = r.cmd_env(&["--format", "json", "place", b, "--inventory", &inv], &env);
    assert_eq!(placed.code, 0, "{}\n{}", placed.stdout, placed.stderr);
    let d = placed.json();
    assert_eq!(d["chosenExecutor"], "lima-vmhost", "{d:#}");
    assert_eq!(d["ssh"]["user"], USER, "{d:#}");
    assert_eq!(d["isolation"], "vm-tcg", "the account cannot open /dev/kvm: {d:#}");
    let host = &d["vmHost"];
    assert!(host["qemu"].as_str().unwrap().ends_with("qemu-system-x86_64"), "{d:#}");
    assert!(host["kernel"].as_str().unwrap().starts_with("/boot/vmlinuz-"), "{d:#}");

    // Run dirs of earlier runs (a killed agentplane's wait for the next sweep).
    let dirs_before = run_dirs_of_user(|_| true);
    // Run in the background and watch for the VM on the executor: it must be
    // the test account's process while it runs.
    let child = Command::new(BIN)
        .arg("--root")
        .arg(r.path())
        .args(["--format", "json", "run", b])
        .current_dir(r.path())
        .env("LIMA_HOME", &lima)
        .env_remove("AGENTPLANE_SIGNING_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentplane run");
    let seen = wait_until(Duration::from_secs(60), || !user_vms().is_empty());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(seen, "no QEMU ran as {USER} during the run");

    let artifact = r.json("artifacts/example-vm/run-artifact.json");
    assert_eq!(artifact["status"], "success", "{artifact:#}");
    assert_eq!(artifact["executor"], "lima-vmhost", "{artifact:#}");
    assert_eq!(artifact["isolation"], "vm-tcg", "{artifact:#}");
    assert_eq!(artifact["environment"]["hostname"], "agentplane-vm", "{artifact:#}");
    let kernel = artifact["environment"]["kernel"].as_str().unwrap();
    assert!(host["kernel"].as_str().unwrap().ends_with(kernel), "the guest ran the executor's kernel: {artifact:#}");
    let report = r.read("artifacts/example-vm/products/vm-report.txt");
    assert!(report.contains("hostname: agentplane-vm"), "{report}");
    assert!(report.contains("pid1: init"), "{report}");
    assert_eq!(r.read("artifacts/example-vm/run.stderr.log"), "example-vm: this line goes to stderr\n");
    assert_eq!(artifact["containment"]["survivors"], 0, "{artifact:#}");
    assert_eq!(artifact["containment"]["checked"], true, "{artifact:#}");
    assert!(wait_until(Duration::from_secs(5), || user_vms().is_empty()), "{:?}", user_vms());
    // The machine QEMU ran on is recorded beside the guest's environment.
    assert_eq!(artifact["vmHost"]["arch"], "x86_64", "{artifact:#}");
    assert_eq!(artifact["vmHost"]["os"], "linux", "{artifact:#}");
    let left = run_dirs_of_user(|d| !dirs_before.iter().any(|b| b == d));
    assert!(left.is_empty(), "remote run dirs left: {left:?}");

    r.cmd(&["emit", b]).ok();
    r.cmd(&["verify", "artifacts/example-vm", "--trusted-key", &r.pubkey()]).ok();
    let replay = r.cmd_env(
        &[
            "--format",
            "json",
            "replay",
            "artifacts/example-vm",
            "--trusted-key",
            &r.pubkey(),
            "--executor",
            "lima-vmhost",
            "--inventory",
            &inv,
        ],
        &env,
    );
    assert_eq!(replay.code, 0, "{}\n{}", replay.stdout, replay.stderr);
    let v = replay.json();
    assert_eq!(v["verdict"], "match", "{v:#}");
    assert_eq!(v["executor"], "lima-vmhost", "{v:#}");
}

/// The test account's remote run directories in `/tmp` that `keep` selects.
fn run_dirs_of_user(keep: impl Fn(&std::path::Path) -> bool) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uid = uid_of(USER);
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("agentplane-remote-"))
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .map(|e| e.path())
        .filter(|p| keep(p))
        .collect()
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A bundle on the sshd-as-test-account executor, validated and placed.
fn placed_vm(sshd: &Sshd, name: &str, smoke: &str, max: u64) -> Root {
    let r = Root::new();
    r.keygen();
    r.bundle(name, smoke, |v| {
        v["spec"]["vm"]["backendIntent"] = "qemu".into();
        v["spec"]["policy"]["maxRunSeconds"] = max.into();
    });
    let inv = r.inventory(&[vm_executor(sshd, "vmssh", serde_json::json!({}))], "vmssh");
    let b = format!("bundles/{name}");
    r.cmd(&["validate", &b]).ok();
    r.cmd(&["place", &b, "--inventory", &inv]).ok();
    r
}

/// A guest that stops answering (its own watchdog killed, so only the host's
/// deadline is left) is killed on the executor by agentplane's deadline.
#[test]
fn a_runaway_vm_on_an_ssh_executor_is_killed_there_at_its_deadline() {
    let _turn = vm_turn();
    let Some(sshd) = sshd_for_user("a_runaway_vm_on_an_ssh_executor_is_killed_there_at_its_deadline") else { return };
    let smoke = "for p in $(pidof init); do [ \"$p\" != 1 ] && kill -9 \"$p\"; done\necho unguarded\nsleep 600\n";
    let r = placed_vm(&sshd, "vm-runaway", smoke, 5);
    let run = r.cmd(&["--format", "json", "run", "bundles/vm-runaway"]).failed().json();
    assert_eq!(run["status"], "failure", "{run:#}");
    let artifact = r.json("artifacts/vm-runaway/run-artifact.json");
    assert_eq!(artifact["timedOut"], true, "{artifact:#}");
    assert_eq!(artifact["signal"], "SIGKILL", "the host stopped the VM: {artifact:#}");
    assert_eq!(artifact["executor"], "vmssh", "{artifact:#}");
    assert_eq!(artifact["isolation"], "vm-tcg", "{artifact:#}");
    let c = &artifact["containment"];
    assert_eq!(c["killedAtEnd"], 1, "{c}");
    assert_eq!((c["survivors"].as_u64(), c["checked"].as_bool()), (Some(0), Some(true)), "{c}");
    assert_eq!(r.read("artifacts/vm-runaway/run.stdout.log"), "unguarded\n");
    assert!(wait_until(Duration::from_secs(5), || user_vms().is_empty()), "VM left on the executor: {:?}", user_vms());
}

#[test]
fn kill_9_of_agentplane_during_a_remote_vm_run_leaves_no_vm_there() {
    let _turn = vm_turn();
    let Some(sshd) = sshd_for_user("kill_9_of_agentplane_during_a_remote_vm_run_leaves_no_vm_there") else { return };
    let r = placed_vm(&sshd, "vm-kill9", "#!/bin/sh\necho started\nsleep 600\n", 300);
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(r.path())
        .args(["--format", "json", "run", "bundles/vm-kill9"])
        .current_dir(r.path())
        .env_remove("AGENTPLANE_SIGNING_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agentplane run");
    assert!(wait_until(Duration::from_secs(60), || !user_vms().is_empty()), "the VM never started on the executor");
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind on this side
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || user_vms().is_empty()),
        "the VM outlived agentplane on the executor: {:?}",
        user_vms()
    );
    // Nothing else of the run either: the remote wrapper and its helpers end
    // too (the login's processes; the VM tests take turns, so they are this run's).
    assert!(
        wait_until(Duration::from_secs(10), || user_processes().is_empty()),
        "processes of the run outlived agentplane on the executor: {:?}",
        user_processes()
    );
}

/// Executors that cannot boot the VM are rejected with their own codes, from
/// what the probe found there (no VM is booted for this).
#[test]
fn vm_executors_without_qemu_kernel_or_kvm_are_rejected_with_their_codes() {
    let _turn = vm_turn();
    let Some(sshd) = sshd_for_user("vm_executors_without_qemu_kernel_or_kvm_are_rejected_with_their_codes") else {
        return;
    };
    let r = Root::new();
    r.keygen();
    let kvm_bundle = |name: &str, requires_kvm: bool| {
        r.bundle(name, "#!/bin/sh\ntrue\n", |v| {
            v["spec"]["vm"]["backendIntent"] = "qemu".into();
            v["spec"]["vm"]["requiresKvm"] = requires_kvm.into();
        });
        r.cmd(&["validate", &format!("bundles/{name}")]).ok();
    };
    kvm_bundle("vm-plain", false);
    kvm_bundle("vm-needs-kvm", true);
    let mut with_kvm = vm_executor(&sshd, "claims-kvm", serde_json::json!({}));
    with_kvm["capabilities"]["kvm"] = true.into();
    let inv = r.inventory(
        &[
            vm_executor(&sshd, "no-qemu", serde_json::json!({"qemu": "/nonexistent/qemu-system-x86_64"})),
            vm_executor(&sshd, "no-kernel", serde_json::json!({"kernel": "/nonexistent/vmlinuz"})),
            with_kvm,
        ],
        "no-qemu",
    );
    let plain = r.cmd(&["--format", "json", "place", "bundles/vm-plain", "--inventory", &inv]);
    let d = plain.json();
    assert_eq!(d["chosenExecutor"], "claims-kvm", "{d:#}");
    assert_eq!(d["isolation"], "vm-tcg", "declared KVM, but /dev/kvm is not the login's: {d:#}");
    assert_eq!(code_of(&d, "no-qemu"), "qemu-missing", "{d:#}");
    assert_eq!(code_of(&d, "no-kernel"), "kernel-missing", "{d:#}");
    let text = d.to_string();
    assert!(text.contains("/nonexistent/qemu-system-x86_64"), "the reason names the path: {d:#}");
    assert!(text.contains("/nonexistent/vmlinuz"), "the reason names the path: {d:#}");

    let needs = r.cmd(&["--format", "json", "place", "bundles/vm-needs-kvm", "--inventory", &inv]).failed();
    let d = needs.json();
    assert_eq!(code_of(&d, "claims-kvm"), "kvm-required", "{d:#}");
    // Declared without KVM: rejected before any probe.
    assert_eq!(code_of(&d, "no-qemu"), "kvm-required", "{d:#}");
    assert!(d.to_string().contains("/dev/kvm is there but the login may not open it"), "{d:#}");
}

/// An executor can name its Lima instance (`capabilities.lima`) instead of
/// using the `lima-<instance>` alias; a name that could leave `$LIMA_HOME`
/// is an inventory error.
#[test]
fn an_executor_naming_its_lima_instance_is_reached_through_lima_ssh_config() {
    let _turn = vm_turn();
    let Some(sshd) = sshd_for_user("an_executor_naming_its_lima_instance_is_reached_through_lima_ssh_config") else {
        return;
    };
    let r = Root::new();
    r.keygen();
    r.bundle("vm-lima-cap", "#!/bin/sh\ntrue\n", |v| v["spec"]["vm"]["backendIntent"] = "qemu".into());
    r.cmd(&["validate", "bundles/vm-lima-cap"]).ok();
    let lima = lima_home(&r, &sshd, "builder");
    let exec = |instance: &str| {
        serde_json::json!({
            "name": "builder",
            "sshRef": "builder",
            "enabled": true,
            "platform": {"os": "linux", "arch": "x86_64"},
            "supportedBackends": ["qemu"],
            "capabilities": {"kvm": false, "lima": instance},
            "health": {"state": "ready"},
            "trustZone": "test"
        })
    };
    let inv = r.inventory(&[exec("builder")], "builder");
    let placed =
        r.cmd_env(&["--format", "json", "place", "bundles/vm-lima-cap", "--inventory", &inv], &[("LIMA_HOME", &lima)]);
    assert_eq!(placed.code, 0, "{}\n{}", placed.stdout, placed.stderr);
    let d = placed.json();
    assert_eq!(d["chosenExecutor"], "builder", "{d:#}");
    assert_eq!(
        (d["ssh"]["port"].as_u64(), d["ssh"]["user"].as_str()),
        (Some(u64::from(sshd.port)), Some(USER)),
        "{d:#}"
    );
    assert!(d["sshConfig"].as_str().unwrap().ends_with("builder/ssh.config"), "{d:#}");
    assert!(d["vmHost"]["kernel"].is_string(), "{d:#}");

    let inv = r.inventory(&[exec("../../etc")], "builder");
    let bad = r.cmd_env(&["place", "bundles/vm-lima-cap", "--inventory", &inv], &[("LIMA_HOME", &lima)]);
    assert_eq!(bad.code, 2, "{}\n{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains("capabilities.lima must be a Lima instance name"), "{}", bad.stderr);
}

/// An executor whose "QEMU" starts and dies at once (here `/bin/false`): a
/// failed run that says the VM never ran the script, with what the executor
/// printed; its run directory is gone.
#[test]
fn a_qemu_that_dies_at_once_on_the_executor_is_a_failed_run_that_says_so() {
    let _turn = vm_turn();
    let Some(sshd) = sshd_for_user("a_qemu_that_dies_at_once_on_the_executor_is_a_failed_run_that_says_so") else {
        return;
    };
    let r = Root::new();
    r.keygen();
    r.bundle("vm-false", "#!/bin/sh\necho never\n", |v| v["spec"]["vm"]["backendIntent"] = "qemu".into());
    let inv = r.inventory(&[vm_executor(&sshd, "fake-qemu", serde_json::json!({"qemu": "/bin/false"}))], "fake-qemu");
    r.cmd(&["validate", "bundles/vm-false"]).ok();
    r.cmd(&["place", "bundles/vm-false", "--inventory", &inv]).ok();
    let run = r.cmd(&["--format", "json", "run", "bundles/vm-false"]).failed().json();
    assert_eq!(run["status"], "failure", "{run:#}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("the VM on fake-qemu powered off before the smoke script finished"), "{run:#}");
    assert_eq!(run["executor"], "fake-qemu");
    assert_eq!(r.read("artifacts/vm-false/run.stdout.log"), "");
    let dirs = run_dirs_of_user(|d| std::fs::read_to_string(d.join("boot.sh")).is_ok_and(|b| b.contains("/bin/false")));
    assert!(dirs.is_empty(), "the run dir was left on the executor");
}
