//! SSH executors against a real OpenSSH server on loopback: placement probes
//! (every rejection code, parallel and bounded), runs over SSH (products back,
//! remote directory gone, remote timeout kills the group), and hosts that
//! vanish mid-run (killed, or silent) failing the run instead of hanging.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::{FreezeProxy, Sshd};
use crate::util::{BIN, Root, Run};

/// A root with a key and a validated bundle `name` running `smoke`.
fn validated(name: &str, smoke: &str, max_run_seconds: u64) -> Root {
    let r = Root::new();
    r.keygen();
    r.bundle(name, smoke, |v| v["spec"]["policy"]["maxRunSeconds"] = max_run_seconds.into());
    r.cmd(&["validate", &format!("bundles/{name}")]).ok();
    r
}

fn place_json(r: &Root, bundle: &str, inv: &str, timeout: &str) -> Run {
    r.cmd(&["--format", "json", "place", bundle, "--inventory", inv, "--probe-timeout", timeout])
}

/// The rejection code recorded for executor `name`.
pub(crate) fn code_of(decision: &serde_json::Value, name: &str) -> String {
    decision["rejected"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .and_then(|x| x["code"].as_str())
        .unwrap_or_else(|| panic!("no rejection for {name} in {decision:#}"))
        .to_string()
}

/// A listener that accepts connections and never says a word.
fn silent_listener() -> (u16, std::thread::JoinHandle<()>) {
    greeting_listener(Some(Vec::new()))
}

/// A listener that sends `greeting` to each connection and holds it open
/// without another word; with `None`, it closes each connection at once.
fn greeting_listener(greeting: Option<Vec<u8>>) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            match (l.accept(), &greeting) {
                (Ok((mut s, _)), Some(g)) => {
                    // What fits in the socket buffers: the prober may never read it all.
                    s.set_nonblocking(true).unwrap();
                    let _ = s.write(g);
                    held.push(s);
                }
                (Ok((s, _)), None) => drop(s),
                (Err(_), _) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, h)
}

#[test]
fn placement_probes_a_real_sshd_and_chooses_it() {
    let sshd = Sshd::start();
    let r = validated("over-ssh", "#!/bin/sh\necho hi\n", 20);
    // A known_hosts like real ones (markers, other key types, hashed entries)
    // must still match.
    let noisy = sshd.noisy_known_hosts();
    let exec = sshd.executor_json_with("ssh1", sshd.port, &sshd.client_key, &noisy);
    let inv = r.inventory(&[exec], "ssh1");
    let d = place_json(&r, "bundles/over-ssh", &inv, "5").ok().json();
    assert_eq!(d["chosenExecutor"], "ssh1", "{d:#}\n{}", sshd.log());
    assert_eq!(d["transport"], "ssh");
    assert_eq!(d["ssh"]["port"], sshd.port);
    assert_eq!(d["ssh"]["knownHostsFile"], noisy.display().to_string());
    assert_eq!(d["observedPlatform"], format!("linux/{}", std::env::consts::ARCH));
    assert_eq!(d["isolation"], "process");
}

#[test]
fn every_bad_ssh_executor_is_rejected_with_its_code_in_parallel() {
    let sshd = Sshd::start();
    let r = validated("bad-ssh", "#!/bin/sh\necho hi\n", 20);
    let key = sshd.client_key.clone();
    let kh = sshd.known_hosts.clone();
    let silent: Vec<_> = (0..4).map(|_| silent_listener()).collect();
    // Hosts that speak, badly: an identification line begun and never
    // ended, a first line that never ends, a connection closed at once.
    let partial = greeting_listener(Some(b"SSH-2.0-OpenSSH_9".to_vec()));
    let endless = greeting_listener(Some(vec![b'x'; 100_000]));
    let hangup = greeting_listener(None);
    // A free port, taken after the listeners so that none of them gets it.
    let closed = crate::sshd::free_port();
    let mut bad = vec![
        sshd.executor_json_with("changed", sshd.port, &key, &sshd.wrong_known_hosts()),
        sshd.executor_json_with("unknown", sshd.port, &key, &sshd.empty_known_hosts()),
        sshd.executor_json_with("stranger", sshd.port, &sshd.bad_client_key(), &kh),
        sshd.executor_json_with("no-key", sshd.port, Path::new("/nonexistent/id_ed25519"), &kh),
        sshd.executor_json_with("revoked", sshd.port, &key, &sshd.revoked_known_hosts()),
        sshd.executor_json_with("closed", closed, &key, &kh),
    ];
    let mut nowhere = sshd.executor_json("nowhere");
    nowhere["ssh"]["host"] = "no-such-host.invalid".into();
    nowhere["sshRef"] = format!("{}@no-such-host.invalid:22", sshd.user).into();
    bad.push(nowhere);
    for (i, (port, _)) in silent.iter().enumerate() {
        bad.push(sshd.executor_json_with(&format!("silent{i}"), *port, &key, &kh));
    }
    for (name, (port, _)) in [("partial", &partial), ("endless", &endless), ("hangup", &hangup)] {
        bad.push(sshd.executor_json_with(name, *port, &key, &kh));
    }

    // Nothing qualifies: exit 1, each executor named with its reason. Four
    // silent hosts at 2 s each would take 8 s one after another.
    let inv = r.inventory(&bad, "changed");
    let t0 = Instant::now();
    let d = place_json(&r, "bundles/bad-ssh", &inv, "2").failed().json();
    let took = t0.elapsed();
    assert!(d["chosenExecutor"].is_null(), "{d:#}");
    let expect = [
        ("changed", "ssh-host-key-changed"),
        ("unknown", "ssh-host-key-unknown"),
        ("stranger", "ssh-auth-failed"),
        ("no-key", "ssh-auth-failed"),
        ("revoked", "ssh-host-key-changed"),
        ("closed", "ssh-unreachable"),
        ("nowhere", "ssh-unreachable"),
        ("silent0", "ssh-unreachable"),
        ("silent3", "ssh-unreachable"),
        ("partial", "ssh-unreachable"),
        ("endless", "ssh-unreachable"),
        ("hangup", "ssh-unreachable"),
    ];
    for (name, code) in expect {
        assert_eq!(code_of(&d, name), code, "{name}: {d:#}");
    }
    let reason_of = |name: &str| {
        d["rejected"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for name in ["silent0", "partial"] {
        assert!(reason_of(name).contains("no SSH banner or handshake within the timeout"), "{name}: {d:#}");
    }
    assert!(reason_of("endless").contains("not an SSH server"), "{d:#}");
    assert!(reason_of("hangup").contains("SSH handshake failed"), "{d:#}");
    assert!(reason_of("closed").contains("cannot connect to 127.0.0.1:"), "{d:#}");
    assert!(took >= Duration::from_millis(1900), "the silent hosts were not waited for: {took:?}");
    assert!(took < Duration::from_secs(6), "probes did not run in parallel within the timeout: {took:?}");

    // With a good executor among them it is chosen and the rest keep their reasons.
    let mut all = bad;
    all.push(sshd.executor_json("good"));
    let inv = r.inventory(&all, "changed");
    let d = place_json(&r, "bundles/bad-ssh", &inv, "2").ok().json();
    assert_eq!(d["chosenExecutor"], "good", "{d:#}");
    for (name, code) in expect {
        assert_eq!(code_of(&d, name), code, "{name}: {d:#}");
    }
    let reason = d["rejected"].as_array().unwrap().iter().find(|x| x["name"] == "changed").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("man-in-the-middle"), "{reason}");
}

/// A host that authenticates, then answers every command with output that
/// never ends: as fast as it can, or a byte at a time. The probe refuses the
/// flood at its cap and the trickle at its deadline, in bounded memory.
#[test]
fn a_host_whose_commands_print_without_end_is_rejected_promptly() {
    let flood = Sshd::start_with(&["ForceCommand=exec yes"]);
    let trickle = Sshd::start_with(&["ForceCommand=while :; do printf y; sleep 0.1; done"]);
    let r = validated("floods", "#!/bin/sh\necho hi\n", 20);
    let inv = r.inventory(&[flood.executor_json("flood"), trickle.executor_json("trickle")], "flood");
    let t0 = Instant::now();
    let d = place_json(&r, "bundles/floods", &inv, "3").failed().json();
    let took = t0.elapsed();
    let reason_of = |name: &str| {
        d["rejected"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason_of("flood").contains("went past 1048576 bytes"), "{d:#}\n{}", flood.log());
    assert!(reason_of("trickle").to_lowercase().contains("timed out"), "{d:#}\n{}", trickle.log());
    assert_eq!(code_of(&d, "flood"), "ssh-unreachable", "{d:#}");
    assert!(took < Duration::from_secs(6), "the probes outlived their 3 s timeout: {took:?}");
}

/// The remote run directory a smoke reported (it prints its cwd, `…/bundle`).
fn remote_dir_from(log: &str) -> PathBuf {
    let line = log.lines().find(|l| l.starts_with("cwd=")).unwrap_or_else(|| panic!("no cwd in:\n{log}"));
    let cwd = PathBuf::from(line.trim_start_matches("cwd="));
    cwd.parent().expect("cwd has a parent").to_path_buf()
}

#[test]
fn a_run_over_ssh_brings_products_back_and_leaves_nothing_remote() {
    let sshd = Sshd::start();
    let smoke = "#!/bin/sh\nset -eu\necho \"cwd=$(pwd)\"\necho to-stderr >&2\n\
                 mkdir -p \"$1/nested\"\nprintf 'ok\\n' > \"$1/result.txt\"\n\
                 printf 'deep\\n' > \"$AGENTPLANE_PRODUCTS_DIR/nested/deep.txt\"\n";
    let r = validated("ssh-run", smoke, 20);
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    place_json(&r, "bundles/ssh-run", &inv, "5").ok();
    let run = r.cmd(&["--format", "json", "run", "bundles/ssh-run"]).ok().json();
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["executor"], "ssh1");
    assert_eq!(run["exitCode"], 0);
    assert_eq!(run["isolation"], "process");
    assert_eq!(run["environment"]["os"], "linux");
    let products: Vec<_> = run["products"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert!(products.contains(&"products/result.txt"), "{products:?}");
    assert!(products.contains(&"products/nested/deep.txt"), "{products:?}");
    assert_eq!(r.read("artifacts/ssh-run/products/result.txt"), "ok\n");
    assert!(r.read("artifacts/ssh-run/run.stderr.log").contains("to-stderr"));
    let stdout = r.read("artifacts/ssh-run/run.stdout.log");
    let remote = remote_dir_from(&stdout);
    assert!(remote.starts_with("/tmp") && remote.to_string_lossy().contains("agentplane-"), "{remote:?}");
    assert!(!remote.exists(), "the remote run directory {remote:?} was left behind");
    r.cmd(&["emit", "bundles/ssh-run"]).ok();
    r.cmd(&["verify", "artifacts/ssh-run", "--trusted-key", &r.pubkey()]).ok();
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("sleep"))
}

#[test]
fn an_ssh_run_past_its_deadline_is_killed_remotely() {
    let sshd = Sshd::start();
    let r = Root::new();
    let marker = r.join("pids");
    // A background sleep and one that ignores TERM: KILL after the grace period.
    let smoke = format!(
        "#!/bin/sh\ntrap '' TERM\nsleep 120 &\necho $! > {m}\nsleep 121 &\necho $! >> {m}\nwait\n",
        m = marker.display()
    );
    r.keygen();
    r.bundle("ssh-slow", &smoke, |v| v["spec"]["policy"]["maxRunSeconds"] = 5.into());
    r.cmd(&["validate", "bundles/ssh-slow"]).ok();
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    place_json(&r, "bundles/ssh-slow", &inv, "5").ok();
    let t0 = Instant::now();
    let run = r.cmd(&["--format", "json", "run", "bundles/ssh-slow"]).failed().json();
    let took = t0.elapsed();
    assert_eq!(run["status"], "failure");
    assert_eq!(run["timedOut"], true, "{run:#}");
    // 5 s limit, 2 s grace, then the evidence: nowhere near the 120 s sleeps.
    assert!(took < Duration::from_secs(20), "the remote deadline was not enforced: {took:?}");
    assert_eq!(run["signal"], "SIGKILL", "TERM was ignored, so KILL ended it: {run:#}");
    std::thread::sleep(Duration::from_millis(300));
    for pid in std::fs::read_to_string(&marker).unwrap().split_whitespace() {
        assert!(!alive(pid), "remote process {pid} survived the run");
    }
}

/// Start `agentplane run` in the background; returns the child.
fn spawn_run(r: &Root, bundle: &str) -> std::process::Child {
    Command::new(BIN)
        .arg("--root")
        .arg(r.path())
        .args(["--format", "json", "run", bundle])
        .current_dir(r.path())
        .env_remove("AGENTPLANE_SIGNING_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentplane run")
}

fn wait_for_file(p: &Path, within: Duration) {
    let end = Instant::now() + within;
    while !p.exists() {
        assert!(Instant::now() < end, "{p:?} did not appear within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The smoke's sleep pid and its run directory, from the marker file.
fn marker_contents(marker: &Path) -> (String, Option<PathBuf>) {
    let text = std::fs::read_to_string(marker).unwrap_or_default();
    let mut lines = text.lines();
    let pid = lines.next().unwrap_or_default().trim().to_string();
    let dir = lines.next().map(|l| PathBuf::from(l.trim()));
    (pid, dir)
}

/// After a host vanished, nothing could clean up on it. Here the "remote" is
/// this machine: kill the smoke's sleep and remove the run directory, so
/// nothing outlives the test.
fn clean_up_after_vanished_host(marker: &Path) {
    let (pid, dir) = marker_contents(marker);
    if let Ok(pid) = pid.parse::<i32>() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    if let Some(dir) = dir.filter(|d| d.to_string_lossy().starts_with("/tmp/agentplane-")) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A bundle whose smoke records the pid of a long sleep in `marker` and waits on it.
fn long_running(name: &str) -> (Root, PathBuf) {
    let r = Root::new();
    let marker = r.join("started");
    // The pid of the sleep, then the run directory (here the "remote" host is
    // this one, so a test whose host vanished can clean up after it).
    let smoke = format!(
        "#!/bin/sh\necho started\nsleep 30 &\n\
         printf '%s\\n%s\\n' $! \"$(dirname \"$PWD\")\" > {m}.tmp && mv {m}.tmp {m}\nwait\n",
        m = marker.display()
    );
    r.keygen();
    r.bundle(name, &smoke, |v| v["spec"]["policy"]["maxRunSeconds"] = 120.into());
    r.cmd(&["validate", &format!("bundles/{name}")]).ok();
    (r, marker)
}

fn finish(child: std::process::Child, within: Duration) -> (Run, Duration) {
    let t0 = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "agentplane run hung for {within:?} after the host vanished:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    (Run::from(child.wait_with_output().unwrap()), took)
}

#[test]
fn a_host_killed_mid_run_fails_the_run_promptly() {
    let mut sshd = Sshd::start();
    let (r, marker) = long_running("ssh-vanish");
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    place_json(&r, "bundles/ssh-vanish", &inv, "5").ok();
    let child = spawn_run(&r, "bundles/ssh-vanish");
    wait_for_file(&marker, Duration::from_secs(20));
    sshd.kill_all();
    let (out, took) = finish(child, Duration::from_secs(20));
    clean_up_after_vanished_host(&marker);
    assert_eq!(out.code, 1, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?} to notice the host was gone");
    let run = r.json("artifacts/ssh-vanish/run-artifact.json");
    assert_eq!(run["status"], "failure");
    let err = run["error"].as_str().unwrap_or_default();
    assert!(err.contains("lost connection to ssh1"), "{run:#}");
    // No receipt could be read: the artifact claims nothing about containment.
    assert!(run.get("containment").is_none_or(|c| c.is_null()), "{run:#}");
    assert!(err.contains("no containment receipt"), "{run:#}");
    r.cmd(&["verify", "artifacts/ssh-vanish", "--trusted-key", &r.pubkey(), "--allow-unsealed"]).ok();
}

#[test]
fn a_host_gone_silent_mid_run_fails_the_run_promptly() {
    let sshd = Sshd::start();
    let proxy = FreezeProxy::start(sshd.port);
    let (r, marker) = long_running("ssh-silent");
    let via_proxy =
        sshd.executor_json_with("ssh1", proxy.port, &sshd.client_key, &sshd.known_hosts_for_port(proxy.port));
    let inv = r.inventory(&[via_proxy], "ssh1");
    place_json(&r, "bundles/ssh-silent", &inv, "5").ok();
    let child = spawn_run(&r, "bundles/ssh-silent");
    wait_for_file(&marker, Duration::from_secs(20));
    // No FIN, no RST: the network simply stops carrying anything.
    proxy.freeze();
    let (out, took) = finish(child, Duration::from_secs(30));
    clean_up_after_vanished_host(&marker);
    assert_eq!(out.code, 1, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(took < Duration::from_secs(20), "took {took:?} to notice the host was gone");
    let run = r.json("artifacts/ssh-silent/run-artifact.json");
    assert_eq!(run["status"], "failure");
    assert!(run["error"].as_str().unwrap_or_default().contains("lost connection to ssh1"), "{run:#}");
}

#[test]
fn ctrl_c_during_an_ssh_run_stops_the_remote_script() {
    let sshd = Sshd::start();
    let (r, marker) = long_running("ssh-cancel");
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    place_json(&r, "bundles/ssh-cancel", &inv, "5").ok();
    let child = spawn_run(&r, "bundles/ssh-cancel");
    wait_for_file(&marker, Duration::from_secs(20));
    let pid = i32::try_from(child.id()).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT).unwrap();
    let (out, took) = finish(child, Duration::from_secs(20));
    assert_eq!(out.code, 1, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?} to stop after Ctrl-C");
    let run = r.json("artifacts/ssh-cancel/run-artifact.json");
    assert_eq!(run["canceled"], true, "{run:#}");
    std::thread::sleep(Duration::from_millis(300));
    let (pid, dir) = marker_contents(&marker);
    assert!(!alive(&pid), "the remote sleep survived Ctrl-C");
    let dir = dir.expect("the smoke recorded its run directory");
    assert!(!dir.exists(), "the remote run directory {dir:?} was left behind");
}

// ---------------------------------------------------------------------------
// What ran, ran alone: containment on the remote host (here, this machine).

/// Processes whose command line holds `tag` (`pgrep -f`; zombies have none).
fn tagged(tag: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-f", tag]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// `tagged(tag)` once it is empty, or what is still there after `within`.
fn tagged_after(tag: &str, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    loop {
        let left = tagged(tag);
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kill what a failed test left (by pid, found by its unique tag).
fn kill_tagged(tag: &str) {
    for p in tagged(tag) {
        if let Ok(p) = p.parse::<i32>() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Escapers, each tagged: a `setsid` sleep, a double-forked `setsid` daemon,
/// a TERM-ignoring loop in its own session.
fn escapers(tag: &str) -> String {
    format!(
        "setsid sh -c 'sleep 600; : {tag}' &\n\
         sh -c '(setsid sh -c \"sleep 601; : {tag}\" &); exit 0'\n\
         setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done; : {tag}' &\n"
    )
}

/// Validate, place on `sshd` and run `smoke` over SSH; the run artifact.
fn run_over_ssh(sshd: &Sshd, name: &str, smoke: &str, max: u64, env: &[(&str, &str)]) -> (Root, serde_json::Value) {
    let r = validated(name, smoke, max);
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    place_json(&r, &format!("bundles/{name}"), &inv, "5").ok();
    let _ = r.cmd_env(&["--format", "json", "run", &format!("bundles/{name}")], env);
    let run = r.json(&format!("artifacts/{name}/run-artifact.json"));
    (r, run)
}

#[test]
fn escapers_at_exit_and_at_the_deadline_leave_nothing_over_ssh() {
    let sshd = Sshd::start();
    // At exit: the script leaves them running and succeeds.
    let tag = format!("ap-ssh-esc-exit-{}", std::process::id());
    let smoke = format!("#!/bin/sh\n{}sleep 1\necho done\n", escapers(&tag));
    let (_r, run) = run_over_ssh(&sshd, "ssh-esc-exit", &smoke, 30, &[]);
    let left = tagged_after(&tag, Duration::from_secs(3));
    kill_tagged(&tag);
    assert!(left.is_empty(), "escapers outlived the run: {left:?}");
    assert_eq!(run["status"], "success", "{run:#}");
    let c = &run["containment"];
    assert_eq!(c["mechanism"], "pid-namespace", "{run:#}");
    assert_eq!(c["survivors"], 0, "{run:#}");
    assert_eq!(c["checked"], true, "{run:#}");
    assert!(c["killedAtEnd"].as_u64().unwrap_or(0) >= 3, "the escapers were counted: {run:#}");

    // At the deadline: the script itself ignores TERM and never ends.
    let tag = format!("ap-ssh-esc-deadline-{}", std::process::id());
    let smoke = format!("#!/bin/sh\n{}trap '' TERM\nwhile :; do sleep 1; done\n", escapers(&tag));
    let t0 = Instant::now();
    let (_r, run) = run_over_ssh(&sshd, "ssh-esc-deadline", &smoke, 5, &[]);
    let left = tagged_after(&tag, Duration::from_secs(3));
    kill_tagged(&tag);
    assert!(left.is_empty(), "escapers outlived the deadline: {left:?}");
    assert!(t0.elapsed() < Duration::from_secs(30), "the deadline was not enforced");
    assert_eq!(run["timedOut"], true, "{run:#}");
    assert_eq!(run["signal"], "SIGKILL", "{run:#}");
    assert_eq!(run["containment"]["mechanism"], "pid-namespace", "{run:#}");
    assert_eq!(run["containment"]["survivors"], 0, "{run:#}");
}

#[test]
fn the_forced_fallback_is_recorded_and_still_sweeps_over_ssh() {
    let sshd = Sshd::start();
    let tag = format!("ap-ssh-esc-sweep-{}", std::process::id());
    let smoke = format!("#!/bin/sh\n{}sleep 1\n", escapers(&tag));
    let (r, run) = run_over_ssh(&sshd, "ssh-sweep", &smoke, 30, &[("AGENTPLANE_CONTAINMENT", "sweep")]);
    let left = tagged_after(&tag, Duration::from_secs(3));
    kill_tagged(&tag);
    assert!(left.is_empty(), "escapers outlived the sweep: {left:?}");
    assert_eq!(run["status"], "success", "{run:#}");
    let c = &run["containment"];
    assert_eq!(c["mechanism"], "process-group+sweep", "{run:#}");
    assert_eq!(c["survivors"], 0, "{run:#}");
    let note = c["note"].as_str().unwrap_or_default();
    assert!(note.contains("ssh1") && note.contains("AGENTPLANE_CONTAINMENT=sweep"), "{note}");
    r.cmd(&["emit", "bundles/ssh-sweep"]).ok();
    r.cmd(&["verify", "artifacts/ssh-sweep", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn a_bash_script_runs_over_ssh_with_its_interpreter() {
    let sshd = Sshd::start();
    let smoke = "#!/usr/bin/env bash\nset -euo pipefail\nparts=(alpha beta gamma)\n\
                 if [[ ${#parts[@]} -eq 3 && ${parts[1]} == beta ]]; then echo \"n=${#parts[@]}\" > \"$1/bash.txt\"; fi\n\
                 echo \"${BASH_VERSION:+bash}\"\n";
    let (r, run) = run_over_ssh(&sshd, "ssh-bash", smoke, 20, &[]);
    assert_eq!(run["status"], "success", "{run:#}\n{}", r.read("artifacts/ssh-bash/run.stderr.log"));
    assert_eq!(r.read("artifacts/ssh-bash/products/bash.txt"), "n=3\n");
    assert_eq!(r.read("artifacts/ssh-bash/run.stdout.log"), "bash\n");
    assert_eq!(run["containment"]["mechanism"], "pid-namespace", "{run:#}");

    // An interpreter the host lacks is named, not a syntax error.
    let smoke = "#!/usr/bin/env agentplane-no-such-shell\necho hi\n";
    let (r, run) = run_over_ssh(&sshd, "ssh-noshell", smoke, 20, &[]);
    assert_eq!(run["status"], "failure", "{run:#}");
    assert_eq!(run["exitCode"], 127, "{run:#}");
    let err = r.read("artifacts/ssh-noshell/run.stderr.log");
    assert!(err.contains("the smoke script needs `agentplane-no-such-shell`, which is not on this host"), "{err}");
}

#[test]
fn kill_9_of_agentplane_mid_run_leaves_nothing_on_the_host() {
    let sshd = Sshd::start();
    let tag = format!("ap-ssh-kill9-{}", std::process::id());
    let r = Root::new();
    let started = r.join("started");
    let smoke = format!(
        "#!/bin/sh\n{}sh -c 'sleep 300; : {tag}' &\necho \"$(dirname \"$PWD\")\" > {m}.tmp && mv {m}.tmp {m}\nwait\n",
        escapers(&tag),
        m = started.display()
    );
    r.keygen();
    r.bundle("ssh-kill9", &smoke, |v| v["spec"]["policy"]["maxRunSeconds"] = 120.into());
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(r.path())
        .args(["--format", "json", "up", "bundles/ssh-kill9", "--inventory", &inv])
        .current_dir(r.path())
        .env_remove("AGENTPLANE_SIGNING_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agentplane up");
    wait_for_file(&started, Duration::from_secs(30));
    let end = Instant::now() + Duration::from_secs(5);
    while tagged(&tag).len() < 4 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(tagged(&tag).len() >= 4, "the run's processes did not start: the test would prove nothing");
    let dir = PathBuf::from(std::fs::read_to_string(&started).unwrap().trim());
    assert!(dir.to_string_lossy().starts_with("/tmp/agentplane-remote-"), "{dir:?}");
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind on this side
    child.wait().unwrap();
    let left = tagged_after(&tag, Duration::from_secs(5));
    kill_tagged(&tag);
    assert!(left.is_empty(), "processes of the run outlived agentplane: {left:?}");

    // A run dir a killed agentplane left (its wrapper long gone) is swept by
    // the next run to that host, as is this run's, whatever happened to it.
    let planted = PathBuf::from(format!("/tmp/agentplane-remote-planted-{}", std::process::id()));
    std::fs::create_dir_all(planted.join("products")).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::write(planted.join("pid"), gone.id().to_string()).unwrap();
    // Untouched for longer than the sweep's grace (a just-ended run is still being collected).
    let old = Command::new("touch").args(["-d", "20 minutes ago"]).arg(&planted).status().unwrap();
    assert!(old.success());
    let (_r2, run) = run_over_ssh(&sshd, "ssh-after-kill9", "#!/bin/sh\necho next\n", 20, &[]);
    let planted_left = planted.exists();
    let _ = std::fs::remove_dir_all(&planted);
    assert_eq!(run["status"], "success", "{run:#}");
    assert!(!planted_left, "a stale run dir was not swept by the next run");
    assert!(!dir.exists(), "the killed run's directory {dir:?} remains");
}

/// Upstream's own inventory names its executor by an ssh_config alias
/// (`sshRef: lima-nixbuilder`): with Lima's per-instance file in a test
/// `$HOME/.lima`, placement reaches the real loopback sshd through it, and the
/// decision records which file resolved the alias.
#[test]
fn upstreams_lima_alias_reaches_the_loopback_sshd_through_lima_ssh_config() {
    let Some(compat) = crate::util::compat("upstreams_lima_alias_reaches_the_loopback_sshd_through_lima_ssh_config")
    else {
        return;
    };
    let sshd = Sshd::start();
    let r = validated("lima-alias", "#!/bin/sh\necho via-lima > \"$1/out.txt\"\n", 20);
    let home = r.join("home");
    let instance = home.join(".lima/nixbuilder");
    std::fs::create_dir_all(&instance).unwrap();
    std::fs::write(
        instance.join("ssh.config"),
        format!(
            "Host lima-nixbuilder\n  IdentityFile \"{}\"\n  User {}\n  Hostname {}\n  Port {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking no\n",
            sshd.client_key.display(),
            sshd.user,
            sshd.host,
            sshd.port,
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    let mut inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(compat.join("upstream-inventory.json")).unwrap()).unwrap();
    // Upstream declares an aarch64 builder; this sshd is this host.
    inv["executors"][0]["caps"]["arch"] = std::env::consts::ARCH.into();
    r.write("upstream-inventory.json", inv.to_string());
    let home_s = home.display().to_string();
    let out = r.cmd_env(
        &["--format", "json", "place", "bundles/lima-alias", "--inventory", "upstream-inventory.json"],
        &[("HOME", &home_s)],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let d = out.json();
    assert_eq!(d["chosenExecutor"], "lima-nixbuilder", "{d}");
    assert_eq!(d["transport"], "ssh");
    assert_eq!(d["ssh"]["port"], sshd.port);
    assert!(d["sshConfig"].as_str().unwrap().ends_with(".lima/nixbuilder/ssh.config"), "{d}");
    // StrictHostKeyChecking no in the file never weakens agentplane: the known_hosts it names is checked.
    let run = r.cmd_env(&["--format", "json", "run", "bundles/lima-alias"], &[("HOME", &home_s)]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(r.read("artifacts/lima-alias/products/out.txt"), "via-lima\n");
}

/// A relative entry in the host login's `PATH` (`bin:…`) would find the
/// bundle's own `bin/setpriv`, `readlink` or `cat` once the wrapper works in
/// the run's copy of the bundle: the wrapper drops relative entries first.
#[test]
fn a_relative_path_entry_on_the_host_never_runs_the_bundles_own_tools() {
    use std::os::unix::fs::PermissionsExt as _;
    let sshd = Sshd::start_with(&["SetEnv=PATH=bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    let name = "ssh-relpath";
    let r = Root::new();
    r.keygen();
    r.bundle(name, "#!/bin/sh\necho \"$PATH\" > \"$1/path.txt\"\n", |v| {
        v["spec"]["policy"]["maxRunSeconds"] = 20.into()
    });
    let marker = r.join("the-bundles-tool-ran");
    for tool in ["setpriv", "unshare", "setsid", "env", "readlink", "cat", "sh", "id", "sleep"] {
        let fake = r.write(
            &format!("bundles/{name}/bin/{tool}"),
            format!("#!/bin/sh\necho {tool} >> '{}'\nexit 0\n", marker.display()),
        );
        std::fs::set_permissions(fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    r.cmd(&["validate", &format!("bundles/{name}")]).ok();
    let inv = r.inventory(&[sshd.executor_json("ssh1")], "ssh1");
    place_json(&r, &format!("bundles/{name}"), &inv, "5").ok();
    let _ = r.cmd(&["--format", "json", "run", &format!("bundles/{name}")]);
    let run = r.json(&format!("artifacts/{name}/run-artifact.json"));
    assert!(!marker.exists(), "the bundle's own tools ran: {}", r.read("the-bundles-tool-ran"));
    assert_eq!(run["status"], "success", "{run:#}");
    assert_eq!(run["containment"]["mechanism"], "pid-namespace", "{run:#}");
    // The login's PATH did hold the relative entry; the script's has it no more.
    let path = r.read(&format!("artifacts/{name}/products/path.txt"));
    assert!(path.contains("/usr/bin") && !path.split(':').any(|e| e.trim() == "bin"), "{path}");
}
