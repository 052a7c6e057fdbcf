//! Tests of the parent module.

use super::*;
use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A fake run directory (on this host) holding `smoke` and the env file.
struct RunDir {
    _tmp: tempfile::TempDir,
    dir: String,
    run_id: String,
    backstop: u64,
}

impl RunDir {
    fn new(smoke: &str, extra_env: &[(&str, &str)]) -> RunDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run dir 'q'");
        std::fs::create_dir_all(dir.join("bundle")).unwrap();
        std::fs::create_dir_all(dir.join("products")).unwrap();
        let dir = dir.to_string_lossy().into_owned();
        std::fs::write(format!("{dir}/bundle/smoke.sh"), smoke).unwrap();
        let run_id = format!("wrapper-test-{}-{}", std::process::id(), unique());
        let mut env = vec![
            ("AGENTPLANE_RUN_ID".to_string(), run_id.clone()),
            ("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_string()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let file = super::super::env_file(&env, &format!("{dir}/products"));
        std::fs::write(format!("{dir}/env"), file.text).unwrap();
        RunDir { _tmp: tmp, dir, run_id, backstop: 60 }
    }

    fn script(&self) -> String {
        format!("{}/bundle/smoke.sh", self.dir)
    }

    /// Start the wrapper with `/bin/sh -c`, stdin a pipe held open (the
    /// channel), as sshd would.
    fn start(&self, interpreter: &[&str], env: &[(&str, &str)]) -> (Child, ChildStdin) {
        self.start_as(&[], interpreter, env)
    }

    /// [`RunDir::start`] under `prefix` (e.g. `setpriv` to another user).
    fn start_as(&self, prefix: &[&str], interpreter: &[&str], env: &[(&str, &str)]) -> (Child, ChildStdin) {
        let interpreter: Vec<String> = interpreter.iter().map(|s| s.to_string()).collect();
        let cmd = wrapper_command(&self.dir, &self.script(), &interpreter, &marker(&self.run_id), self.backstop);
        let mut c = Command::new(prefix.first().copied().unwrap_or(login_shell()));
        if !prefix.is_empty() {
            c.args(&prefix[1..]).arg("/bin/sh");
        }
        c.arg("-c").arg(cmd).env("HOME", "/remote/home").env_remove("AGENTPLANE_CONTAINMENT");
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        (child, stdin)
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(format!("{}/{name}", self.dir)).ok()
    }

    fn receipt(&self) -> Containment {
        let text = self.file("containment").expect("the wrapper wrote no receipt");
        parse_receipt(&text, "ex").unwrap_or_else(|| panic!("bad receipt {text:?}"))
    }

    /// Run `sh -c cmd` (a signal command) against this run dir.
    fn sh(&self, cmd: &str) {
        let st = Command::new("/bin/sh").arg("-c").arg(cmd).status().unwrap();
        assert!(st.success());
    }
}

/// The login shell the wrapper runs under: `/bin/sh`, or what
/// `AGENTPLANE_TEST_LOGIN_SHELL` names (`/bin/bash` is a common login).
fn login_shell() -> &'static str {
    static SHELL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| std::env::var("AGENTPLANE_TEST_LOGIN_SHELL").unwrap_or_else(|_| "/bin/sh".into()))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Wait (bounded) for the wrapper, then close its stdin.
fn finish(mut child: Child, stdin: ChildStdin, within: Duration) -> Ended {
    let end = Instant::now() + within;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the wrapper did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    Ended { code: st.code(), stdout: out, stderr: err }
}

/// Live (non-zombie) processes whose command line holds `tag`.
fn alive(tag: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(tag))
                && std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')))
        })
        .count()
}

fn wait_gone(tag: &str, within: Duration) -> usize {
    let end = Instant::now() + within;
    while alive(tag) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    alive(tag)
}

/// A script that leaves escapers behind, each tagged: a `setsid` sleep,
/// a double-forked `setsid` daemon, a TERM-ignoring loop.
fn escapers(tag: &str) -> String {
    format!(
        "setsid sh -c 'sleep 600; : {tag}' &\n\
         sh -c '(setsid sh -c \"sleep 601; : {tag}\" &); exit 0'\n\
         setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done; : {tag}' &\n\
         sleep 1; exit 0\n"
    )
}

fn ns_possible() -> bool {
    Command::new("unshare").args(["--pid", "--fork", "--kill-child", "true"]).status().is_ok_and(|s| s.success())
        || Command::new("unshare")
            .args(["--user", "--map-root-user", "--pid", "--fork", "--kill-child", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// Quoting, the products override, host-specific variables, `$1`, stdin
/// `/dev/null` and the env file removed once read.
#[test]
fn the_wrapper_runs_the_script_with_the_governed_environment() {
    let d = RunDir::new(
        "echo \"arg=$1\"; echo \"pd=$AGENTPLANE_PRODUCTS_DIR\"; echo \"secret=$SECRET\"; \
         echo \"home=$HOME\"; echo \"cwd=$(pwd)\"; echo \"in=$(cat)\"; env | grep -c '^AP_R_' ; exit 4\n",
        &[("SECRET", "a 'b' \"c\" $d `e`"), ("HOME", "/local/home"), ("AGENTPLANE_PRODUCTS_DIR", "/local/p")],
    );
    let (child, stdin) = d.start(&["/bin/sh"], &[]);
    let out = finish(child, stdin, Duration::from_secs(20));
    let text = &out.stdout;
    assert_eq!((out.code, out.stderr.as_str()), (Some(4), ""), "{text}");
    let dir = &d.dir;
    assert!(text.contains(&format!("arg={dir}/products\n")), "{text}");
    assert!(text.contains(&format!("pd={dir}/products\n")), "{text}");
    assert!(text.contains("secret=a 'b' \"c\" $d `e`\n"), "{text}");
    assert!(text.contains("home=/remote/home\n"), "{text}");
    assert!(text.contains(&format!("cwd={dir}/bundle\n")), "{text}");
    assert!(text.contains("in=\n"), "the script's stdin is not /dev/null: {text}");
    assert!(text.ends_with("0\n"), "helper variables leaked: {text}");
    assert!(d.file("env").is_none(), "the env file was not removed");
    assert!(d.file("pid").is_some() && d.file("pgid").is_some());
    let r = d.receipt();
    assert_eq!((r.survivors, r.checked), (0, true), "{r:?}");
}

/// In its fallback (forced), the receipt says so, and the sweep still
/// leaves no escaper alive.
/// `ap_z=no` makes the sweep read each environment with `tr`, as on a
/// host whose `grep` has no `-z`.
#[test]
fn the_forced_fallback_sweeps_escapers_and_says_so() {
    for grep_z in ["", "no"] {
        let tag = format!("ap-wrap-sweep-{}-{grep_z}", std::process::id());
        fallback_sweeps(&tag, grep_z);
    }
}

fn fallback_sweeps(tag: &str, grep_z: &str) {
    let d = RunDir::new(&escapers(tag), &[]);
    let (child, stdin) = d.start(&["/bin/sh"], &[("AGENTPLANE_CONTAINMENT", "sweep"), ("ap_z", grep_z)]);
    let out = finish(child, stdin, Duration::from_secs(20));
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let r = d.receipt();
    assert_eq!(r.mechanism, Mechanism::ProcessGroupSweep, "{r:?}");
    assert!(r.note.as_deref().is_some_and(|n| n.contains("AGENTPLANE_CONTAINMENT=sweep")), "{r:?}");
    assert!(r.killed_at_end >= 3, "the escapers were found: {r:?}");
    assert_eq!(r.survivors, 0, "{r:?}");
    assert_eq!(wait_gone(tag, Duration::from_secs(2)), 0, "an escaper outlived the run");
}

#[test]
#[allow(clippy::print_stderr)] // the skip notice
fn a_pid_namespace_leaves_no_escaper_alive() {
    if !ns_possible() {
        eprintln!("skipped: no PID namespace can be made here");
        return;
    }
    let tag = format!("ap-wrap-ns-{}", std::process::id());
    let d = RunDir::new(&escapers(&tag), &[]);
    let (child, stdin) = d.start(&["/bin/sh"], &[]);
    let out = finish(child, stdin, Duration::from_secs(20));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let r = d.receipt();
    assert_eq!(r.mechanism, Mechanism::PidNamespace, "{r:?}");
    assert!(r.killed_at_end >= 3, "the escapers were counted before the kernel killed them: {r:?}");
    assert_eq!((r.survivors, r.note.as_deref()), (0, None), "{r:?}");
    assert_eq!(wait_gone(&tag, Duration::from_secs(2)), 0, "an escaper outlived the run");
}

/// Not root: the namespace is made inside a user namespace, and the
/// receipt and the outcome are the same.
#[test]
#[allow(clippy::print_stderr)] // the skip notice
fn a_login_that_is_not_root_gets_a_user_and_pid_namespace() {
    use std::os::unix::fs::PermissionsExt;
    const NOBODY: &str = "65534";
    let as_nobody = ["setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"];
    let probe = Command::new(as_nobody[0])
        .args(&as_nobody[1..])
        .args(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "true"])
        .output();
    if !nix::unistd::geteuid().is_root() || !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: needs root to become nobody, and unprivileged user namespaces");
        return;
    }
    let tag = format!("ap-wrap-userns-{}", std::process::id());
    let d = RunDir::new(&escapers(&tag), &[]);
    // The run dir belongs to the login (nobody), as `prepare` makes it.
    let top = std::path::Path::new(&d.dir).parent().unwrap();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in walkdir::WalkDir::new(&d.dir) {
        let p = e.unwrap().into_path();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let (child, stdin) = d.start_as(&as_nobody, &["/bin/sh"], &[]);
    let out = finish(child, stdin, Duration::from_secs(20));
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let r = d.receipt();
    assert_eq!(r.mechanism, Mechanism::PidNamespace, "{r:?}");
    assert!(r.killed_at_end >= 3, "{r:?}");
    assert_eq!(r.survivors, 0, "{r:?}");
    assert_eq!(wait_gone(&tag, Duration::from_secs(2)), 0, "an escaper outlived the run");
}

/// The deadline stop: TERM reaches every process (a TERM-trapping script
/// prints that it got it), KILL ends the rest, in both mechanisms.
#[test]
fn term_then_kill_reach_every_process_of_the_run() {
    for force in [None, Some("sweep")] {
        let tag = format!("ap-wrap-stop-{}-{}", std::process::id(), force.unwrap_or("ns"));
        let smoke = format!(
            "setsid sh -c 'trap \"echo child-got-term >&2; exit 0\" TERM; sleep 300 & wait; : {tag}' &\n\
             setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done; : {tag}' &\n\
             trap '' TERM\necho started\nwhile :; do sleep 1; done\n"
        );
        let d = RunDir::new(&smoke, &[]);
        let env: Vec<(&str, &str)> = force.map(|f| ("AGENTPLANE_CONTAINMENT", f)).into_iter().collect();
        let (child, stdin) = d.start(&["/bin/sh"], &env);
        let end = Instant::now() + Duration::from_secs(10);
        while alive(&tag) < 2 {
            assert!(Instant::now() < end, "the script did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        d.sh(&signal_command(&d.dir, &marker(&d.run_id), "TERM"));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(alive(&tag), 1, "TERM ended the trapping child, not the TERM-ignoring loop ({force:?})");
        d.sh(&signal_command(&d.dir, &marker(&d.run_id), "KILL"));
        let out = finish(child, stdin, Duration::from_secs(10));
        assert_eq!(out.code, Some(137), "{force:?}: {}", out.stderr);
        assert!(out.stderr.contains("child-got-term"), "{force:?}: {}", out.stderr);
        assert_eq!(wait_gone(&tag, Duration::from_secs(2)), 0, "{force:?}: a process survived KILL");
        let r = d.receipt();
        assert_eq!(r.survivors, 0, "{r:?}");
        // Once ended, the signal command touches nothing (pids may be reused).
        d.sh(&signal_command(&d.dir, &marker(&d.run_id), "KILL"));
    }
}

/// Past its own deadline the wrapper KILLs the run even though nobody
/// told it to (a silent network), and the trapping script is no obstacle.
#[test]
fn the_wrappers_own_deadline_is_a_backstop() {
    let tag = format!("ap-wrap-backstop-{}", std::process::id());
    let mut d = RunDir::new(&format!("trap '' TERM\nsetsid sh -c 'sleep 300; : {tag}' &\nsleep 299\n"), &[]);
    d.backstop = 1;
    let t0 = Instant::now();
    let (child, stdin) = d.start(&["/bin/sh"], &[]);
    let out = finish(child, stdin, Duration::from_secs(15));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(out.code, Some(137), "{}", out.stderr);
    assert!(d.file("expired").is_some());
    assert_eq!(d.receipt().survivors, 0);
    assert_eq!(wait_gone(&tag, Duration::from_secs(2)), 0, "a process outlived the backstop");
}

/// The channel closing (agentplane killed) kills the run, and the wrapper
/// removes its directory; a normal run is never killed by it.
#[test]
fn the_run_dies_with_its_channel() {
    for force in [None, Some("sweep")] {
        let tag = format!("ap-wrap-chan-{}-{}", std::process::id(), force.unwrap_or("ns"));
        let d = RunDir::new(&format!("setsid sh -c 'sleep 300; : {tag}' &\nsleep 299\n"), &[]);
        let env: Vec<(&str, &str)> = force.map(|f| ("AGENTPLANE_CONTAINMENT", f)).into_iter().collect();
        let (child, stdin) = d.start(&["/bin/sh"], &env);
        let end = Instant::now() + Duration::from_secs(10);
        while alive(&tag) < 1 {
            assert!(Instant::now() < end, "the script did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stdin);
        let mut child = child;
        let end = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "{force:?}: the wrapper outlived its channel");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(wait_gone(&tag, Duration::from_secs(2)), 0, "{force:?}: the run outlived its channel");
        assert!(!std::path::Path::new(&d.dir).exists(), "{force:?}: the run dir was left behind");
    }
}

#[test]
fn a_missing_interpreter_is_named_not_a_syntax_error() {
    let d = RunDir::new("#!/usr/bin/env agentplane-no-such-shell\necho hi\n", &[]);
    let (child, stdin) = d.start(&["/usr/bin/env", "agentplane-no-such-shell"], &[]);
    let out = finish(child, stdin, Duration::from_secs(20));
    assert_eq!(out.code, Some(127), "{}", out.stderr);
    assert!(
        out.stderr.contains("the smoke script needs `agentplane-no-such-shell`, which is not on this host"),
        "{}",
        out.stderr
    );
    let d = RunDir::new("#!/opt/none/bash\necho hi\n", &[]);
    let (child, stdin) = d.start(&["/opt/none/bash"], &[]);
    let out = finish(child, stdin, Duration::from_secs(20));
    assert_eq!(out.code, Some(127), "{}", out.stderr);
    assert!(out.stderr.contains("needs `/opt/none/bash`, which is not on this host"), "{}", out.stderr);
}

#[test]
fn a_bash_script_runs_with_bash() {
    let d = RunDir::new("#!/usr/bin/env bash\nset -euo pipefail\na=(x y)\n[[ ${#a[@]} == 2 ]] && echo bash-ok\n", &[]);
    let (child, stdin) = d.start(&["/usr/bin/env", "bash"], &[]);
    let out = finish(child, stdin, Duration::from_secs(20));
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "bash-ok\n"), "{}", out.stderr);
}

#[test]
fn stale_run_dirs_are_swept_but_live_ones_kept() {
    let n = format!("{}-{}", std::process::id(), unique());
    let dead = format!("{RUN_DIR_PREFIX}test-dead-{n}");
    let live = format!("{RUN_DIR_PREFIX}test-live-{n}");
    let fresh = format!("{RUN_DIR_PREFIX}test-fresh-{n}");
    let ended = format!("{RUN_DIR_PREFIX}test-ended-{n}");
    for d in [&dead, &live, &fresh, &ended] {
        std::fs::create_dir_all(format!("{d}/products")).unwrap();
    }
    // A pid that is certainly gone, and one alive whose command line names its dir.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::write(format!("{dead}/pid"), gone.id().to_string()).unwrap();
    // What a fallback run whose wrapper was killed left running.
    let mark = format!("stale-{n}");
    std::fs::write(format!("{dead}/marker"), format!("{}\n", marker(&mark))).unwrap();
    // The dead run ended long ago; `ended` just now (its agentplane may still be collecting).
    assert!(Command::new("touch").args(["-d", "20 minutes ago", &dead]).status().unwrap().success());
    std::fs::write(format!("{ended}/pid"), gone.id().to_string()).unwrap();
    let mut orphan = Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 31; : {mark}"))
        .env("AGENTPLANE_RUN_ID", &mark)
        .spawn()
        .unwrap();
    let mut holder = Command::new("sh").arg("-c").arg(format!("sleep 30; : {live}")).spawn().unwrap();
    std::fs::write(format!("{live}/pid"), holder.id().to_string()).unwrap();
    let st = Command::new("/bin/sh").arg("-c").arg(sweep_stale_command()).status().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let end = Instant::now() + Duration::from_secs(2);
    let orphan_killed = loop {
        match orphan.try_wait().unwrap() {
            Some(_) => break true,
            None if Instant::now() > end => break false,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = orphan.kill();
    let _ = orphan.wait();
    let (dead_left, live_left, fresh_left, ended_left) = (
        std::path::Path::new(&dead).exists(),
        std::path::Path::new(&live).exists(),
        std::path::Path::new(&fresh).exists(),
        std::path::Path::new(&ended).exists(),
    );
    let _ = std::fs::remove_dir_all(&live);
    let _ = std::fs::remove_dir_all(&fresh);
    let _ = std::fs::remove_dir_all(&ended);
    assert!(st.success());
    assert!(!dead_left, "a dead run's directory was kept");
    assert!(orphan_killed, "a process carrying the dead run's marker was left running");
    assert!(live_left, "a live run's directory was removed");
    assert!(fresh_left, "a run still being prepared (no pid yet) was removed");
    assert!(ended_left, "a run whose wrapper just ended (still being collected) was removed");
}

#[test]
fn receipts_parse_and_explain_the_fallback() {
    let r = parse_receipt("pid-namespace 3 0\n\n", "ex").unwrap();
    assert_eq!(
        (r.mechanism, r.killed_at_end, r.survivors, r.checked, r.note),
        (Mechanism::PidNamespace, 3, 0, true, None)
    );
    let r =
        parse_receipt("process-group+sweep 1 2\nsetpriv or unshare (util-linux) is not on this host\n", "ex").unwrap();
    assert_eq!((r.mechanism, r.killed_at_end, r.survivors), (Mechanism::ProcessGroupSweep, 1, 2));
    assert!(r.note.unwrap().contains("on ex: setpriv or unshare"));
    assert!(parse_receipt("", "ex").is_none());
    assert!(parse_receipt("cgroup 1 0\n", "ex").is_none());
    assert!(parse_receipt("pid-namespace x 0\n", "ex").is_none());
}
