//! The remote side of the SSH runner: shell that the executor's login shell
//! (`/bin/sh -c …`) runs. Nothing here runs on this host except in tests.
//!
//! The wrapper (see [`wrapper_command`]) owns one run directory `DIR`:
//!
//! | file | written by | holds |
//! | --- | --- | --- |
//! | `pid` | wrapper, first | the wrapper's pid (a later `prepare` sweeps the dir once it is dead) |
//! | `marker` | wrapper, first | `AGENTPLANE_RUN_ID=<id>`, for that sweep |
//! | `mechanism` | wrapper | `pid-namespace` or `process-group+sweep` |
//! | `pgid` | wrapper | the pid it started: `unshare` (namespace) or the script's group leader |
//! | `ns` | wrapper | the inode of the run's PID namespace |
//! | `seen` | looker | processes in the namespace besides its init, at the last look |
//! | `ended` | wrapper | the script has ended: no pid of the run is signalled any more |
//! | `lost` | watcher | the SSH channel closed before the script ended |
//! | `expired` | backstop | the wrapper's own deadline passed (agentplane never stopped it) |
//! | `containment` | wrapper, last | the receipt: `MECHANISM KILLED SURVIVORS`, then a note line |
//!
//! **Containment.** When `setpriv` and `unshare` work, the script runs as the
//! init of a new PID namespace (`setpriv --pdeathsig KILL unshare --pid --fork
//! --kill-child`, inside a user namespace when not root): when the script ends,
//! or `unshare` is killed, or the wrapper dies, the kernel kills everything in
//! it. Otherwise the script gets its own session (`setsid`) and everything
//! carrying the run's marker (`AGENTPLANE_RUN_ID=<id>` in `/proc/PID/environ`)
//! is swept at the end: the recorded fallback. `AGENTPLANE_CONTAINMENT=sweep`
//! in the wrapper's environment forces it.
//!
//! **Dying with the channel.** A watcher reads the channel's stdin (agentplane
//! never writes to it nor sends EOF on it); EOF means the channel is gone
//! (agentplane was killed, the connection dropped) and the watcher KILLs the
//! run. The script's own stdin is `/dev/null`.

use super::HOST_SPECIFIC;
use crate::runner::contract::shell_quote;
use crate::types::{Containment, Mechanism};

/// Where remote run directories live, and the prefix that marks them as ours
/// (distinct from every other `agentplane-*` name in `/tmp`).
pub const RUN_DIR_PREFIX: &str = "/tmp/agentplane-remote-";

/// Shell functions shared by the wrapper and the commands that signal a run.
/// They read `ap_d` (the run directory) and `ap_m` (the run's marker).
const FUNCS: &str = r#"ap_ns() { ap_l=$(readlink "/proc/$1/ns/pid_for_children" 2>/dev/null) && [ -n "$ap_l" ] && [ "$ap_l" != "$(readlink /proc/$$/ns/pid 2>/dev/null)" ] && printf '%s\n' "$ap_l" | tr -cd 0-9; }
ap_in_ns() { ls -l /proc/[0-9]*/ns/pid 2>/dev/null | sed -n "s|^.* /proc/\([0-9]*\)/ns/pid -> pid:\[$1\]\$|\1|p" | ap_live; }
ap_live() { while read -r ap_q; do { read -r ap_st < "/proc/$ap_q/stat"; } 2>/dev/null || continue; case ${ap_st##*") "} in Z*|X*) ;; *) echo "$ap_q" ;; esac; done; }
ap_marked() {
  [ -n "$ap_m" ] || return 0
  if [ -z "${ap_z-}" ]; then ap_z=no; printf 'a\000' | grep -qzxF a 2>/dev/null && ap_z=yes; fi
  if [ "$ap_z" = yes ]; then
    grep -lzxF -e "$ap_m" /proc/[0-9]*/environ 2>/dev/null | sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p'
  else
    for ap_e in /proc/[0-9]*/environ; do
      tr '\000' '\n' 2>/dev/null <"$ap_e" | grep -qxF -e "$ap_m" && { ap_e=${ap_e#/proc/}; echo "${ap_e%/environ}"; }
    done
  fi
}
ap_stop() {
  [ -e "$ap_d/ended" ] && return 0
  ap_pg=$(cat "$ap_d/pgid" 2>/dev/null); [ -n "$ap_pg" ] || return 0
  if [ "$(cat "$ap_d/mechanism" 2>/dev/null)" = pid-namespace ]; then
    ap_n=$(cat "$ap_d/ns" 2>/dev/null); [ -n "$ap_n" ] || ap_n=$(ap_ns "$ap_pg")
    [ "$1" = KILL ] && kill -KILL "$ap_pg" 2>/dev/null
    if [ -n "$ap_n" ]; then for ap_p in $(ap_in_ns "$ap_n"); do kill -"$1" "$ap_p" 2>/dev/null; done; fi
  else
    kill -"$1" -- "-$ap_pg" 2>/dev/null || kill -"$1" "$ap_pg" 2>/dev/null
    for ap_p in $(ap_marked); do kill -"$1" "$ap_p" 2>/dev/null; done
  fi
  return 0
}
"#;

/// `ap_d=DIR; ap_m=MARKER` and the functions.
fn prelude(dir: &str, marker: &str) -> String {
    format!("ap_d={}; ap_m={}\n{FUNCS}", shell_quote(dir), shell_quote(marker))
}

/// The marker every process of a run carries in its environment.
pub fn marker(run_id: &str) -> String {
    format!("AGENTPLANE_RUN_ID={run_id}")
}

/// Signal every process of the run in `dir` (`TERM` or `KILL`): in a
/// namespace, TERM goes to each process in it (not to `unshare`, whose death
/// would KILL them all at once and skip the grace) and KILL to `unshare` (the
/// kernel then kills the namespace) and to each member; in the fallback, to
/// the script's group and every process carrying `marker`. Nothing is
/// signalled once the wrapper has seen the script end (its pids may be
/// reused). Always exits 0.
pub fn signal_command(dir: &str, marker: &str, sig: &str) -> String {
    format!("{}ap_stop {sig}\ntrue\n", prelude(dir, marker))
}

/// Remove run directories left behind on this host by runs whose wrapper is
/// no longer alive (agentplane was killed, the connection dropped): `pid`
/// names a process that is gone or no longer runs that directory's wrapper.
/// A directory without `pid` (its run never started) goes after an hour.
/// Whatever still carries such a run's marker (a fallback run whose wrapper
/// was killed) is killed first; a namespace died with its wrapper.
pub fn sweep_stale_command() -> String {
    format!(
        "{FUNCS}for ap_x in {prefix}*; do\n\
         [ -d \"$ap_x\" ] && [ -O \"$ap_x\" ] || continue\n\
         ap_p=$(cat \"$ap_x/pid\" 2>/dev/null)\n\
         if [ -n \"$ap_p\" ]; then grep -qaF -e \"$ap_x\" \"/proc/$ap_p/cmdline\" 2>/dev/null && continue\n\
         else [ -n \"$(find \"$ap_x\" -maxdepth 0 -mmin +60 2>/dev/null)\" ] || continue; fi\n\
         ap_m=$(cat \"$ap_x/marker\" 2>/dev/null)\n\
         for ap_p in $(ap_marked); do kill -KILL \"$ap_p\" 2>/dev/null; done\n\
         rm -rf -- \"$ap_x\"\n\
         done; true\n",
        prefix = shell_quote(RUN_DIR_PREFIX),
    )
}

/// The interpreter check that runs before the script: a missing interpreter
/// fails with 127 (126: not executable) and a line naming it, not with a
/// shell's syntax error.
fn interpreter_check(interpreter: &[String]) -> String {
    let missing = |name: &str, code: u8, why: &str| {
        let msg = format!("agentplane: the smoke script needs `{name}`, which {why}");
        format!("{{ printf '%s\\n' {} >&2; exit {code}; }}", shell_quote(&msg))
    };
    let Some(prog) = interpreter.first() else {
        return String::new();
    };
    let q = shell_quote(prog);
    let mut check = if prog.contains('/') {
        format!(
            "[ -e {q} ] || {}; [ -x {q} ] || {}; ",
            missing(prog, 127, "is not on this host"),
            missing(prog, 126, "is not executable on this host")
        )
    } else {
        format!("command -v {q} >/dev/null 2>&1 || {}; ", missing(prog, 127, "is not on this host"))
    };
    let is_env = prog.rsplit('/').next() == Some("env");
    if let (true, Some(target)) = (is_env, interpreter.get(1))
        && !target.starts_with('-')
    {
        check.push_str(&format!(
            "command -v {} >/dev/null 2>&1 || {}; ",
            shell_quote(target),
            missing(target, 127, "is not on this host")
        ));
    }
    check
}

/// The command the SSH server runs for the smoke script (see the module doc).
///
/// `script` runs with `interpreter` (its `#!` line), cwd the uploaded bundle,
/// `DIR/products` as `$1`, stdin `/dev/null`, and only the environment in
/// `DIR/env` (sourced, then removed; host-specific variables come from the
/// login). The wrapper exits with the script's status (128 + signal when it
/// was killed) after tearing the run down and writing the receipt.
///
/// `backstop` (seconds) is the wrapper's own deadline, for when agentplane
/// can no longer send the stop (the network went silent and the channel
/// never closed): past it the run is KILLed on the spot.
pub fn wrapper_command(dir: &str, script: &str, interpreter: &[String], marker: &str, backstop: u64) -> String {
    let q = |p: &str| shell_quote(&format!("{dir}/{p}"));
    let keep = HOST_SPECIFIC.iter().map(|k| format!("${{{k}+\"AP_R_{k}=${k}\"}}")).collect::<Vec<_>>().join(" ");
    let unset = HOST_SPECIFIC.iter().map(|k| format!("AP_R_{k}")).collect::<Vec<_>>().join(" ");
    // Runs under `env -i` (as the namespace's init, when there is one):
    // $1 = env file, then the interpreter's argv, the script and the products.
    let inner = format!(
        "set -a; . \"$1\" || exit 126; set +a; rm -f \"$1\"; unset {unset}; shift; {}exec \"$@\"",
        interpreter_check(interpreter)
    );
    let argv = interpreter.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    let args = format!("{} {argv} {} {}", q("env"), shell_quote(script), q("products"));
    format!(
        r#"{prelude}echo $$ > "$ap_d/pid"; printf '%s\n' "$ap_m" > "$ap_d/marker"
cd "$ap_d/bundle" || exit 126
ap_pre=; ap_note=
if [ "${{AGENTPLANE_CONTAINMENT-}}" = sweep ]; then ap_note='AGENTPLANE_CONTAINMENT=sweep forced the fallback'
elif ! command -v setpriv >/dev/null 2>&1 || ! command -v unshare >/dev/null 2>&1; then ap_note='setpriv or unshare (util-linux) is not on this host'
else
  for ap_u in root user; do
    if [ "$ap_u" = root ]; then [ "$(id -u)" = 0 ] || continue; ap_x=; else ap_x='--user --map-root-user'; fi
    if setpriv --pdeathsig KILL unshare $ap_x --pid --fork --kill-child true </dev/null >/dev/null 2>&1; then
      ap_pre="setpriv --pdeathsig KILL unshare $ap_x --pid --fork --kill-child"; break
    fi
  done
  [ -n "$ap_pre" ] || ap_note='no PID namespace could be made on this host (unshare --pid failed)'
fi
if [ -n "$ap_pre" ]; then ap_mech=pid-namespace; else ap_mech=process-group+sweep; fi
echo "$ap_mech" > "$ap_d/mechanism"
ap_ss=; command -v setsid >/dev/null 2>&1 && ap_ss=setsid
exec 3<&0
( exec 0<&3 3<&- >/dev/null 2>&1; while read -r ap_x; do :; done; [ -e "$ap_d/ended" ] || {{ : > "$ap_d/lost"; ap_stop KILL; }} ) &
ap_w=$!
exec 3<&-
$ap_ss $ap_pre env -i {keep} /bin/sh -c {inner} sh {args} </dev/null &
ap_s=$!
echo "$ap_s" > "$ap_d/pgid"
ap_nsv=; ap_l=
if [ -n "$ap_pre" ]; then
  ap_i=0
  while [ "$ap_i" -lt 300 ]; do
    ap_nsv=$(ap_ns "$ap_s") && [ -n "$ap_nsv" ] && break
    ap_nsv=; kill -0 "$ap_s" 2>/dev/null || break; sleep 0.01; ap_i=$((ap_i + 1))
  done
  echo "$ap_nsv" > "$ap_d/ns"
  if [ -n "$ap_nsv" ]; then
    ( exec >/dev/null 2>&1 </dev/null
      while kill -0 "$ap_s"; do
        set -- $(ap_in_ns "$ap_nsv")
        [ $# -gt 0 ] && echo $(($# - 1)) > "$ap_d/seen.t" && mv -f "$ap_d/seen.t" "$ap_d/seen"
        sleep 0.2
      done ) &
    ap_l=$!
  fi
fi
( exec </dev/null >/dev/null 2>&1; ap_i=0
  while [ "$ap_i" -lt {backstop} ]; do sleep 1; [ -e "$ap_d/ended" ] || [ ! -d "$ap_d" ] && exit 0; ap_i=$((ap_i + 1)); done
  : > "$ap_d/expired"; ap_stop KILL ) &
ap_b=$!
wait "$ap_s"; ap_rc=$?
: > "$ap_d/ended"
kill "$ap_w" "$ap_b" $ap_l 2>/dev/null
if [ -n "$ap_pre" ]; then
  ap_k=$(cat "$ap_d/seen" 2>/dev/null); ap_k=${{ap_k:-0}}
  ap_list() {{ [ -n "$ap_nsv" ] && ap_in_ns "$ap_nsv"; }}
else
  set -- $(ap_marked); ap_k=$#
  kill -KILL -- "-$ap_s" 2>/dev/null
  ap_list() {{ ap_marked; }}
fi
ap_i=0
while :; do
  set -- $(ap_list)
  [ $# -eq 0 ] || [ "$ap_i" -ge 30 ] && break
  kill -KILL "$@" 2>/dev/null; sleep 0.1; ap_i=$((ap_i + 1))
done
printf '%s %s %s\n%s\n' "$ap_mech" "$ap_k" "$#" "$ap_note" > "$ap_d/containment"
[ -e "$ap_d/lost" ] && rm -rf -- "$ap_d"
exit "$ap_rc"
"#,
        prelude = prelude(dir, marker),
        inner = shell_quote(&inner),
    )
}

/// The receipt the wrapper wrote (`MECHANISM KILLED SURVIVORS`, then a note),
/// as evidence records it; `None` when it cannot be read.
pub fn parse_receipt(text: &str, executor: &str) -> Option<Containment> {
    let mut lines = text.lines();
    let mut head = lines.next()?.split_whitespace();
    let mechanism = match head.next()? {
        "pid-namespace" => Mechanism::PidNamespace,
        "process-group+sweep" => Mechanism::ProcessGroupSweep,
        _ => return None,
    };
    let killed_at_end = head.next()?.parse().ok()?;
    let survivors = head.next()?.parse().ok()?;
    let why = lines.next().map(str::trim).filter(|s| !s.is_empty());
    let note = match mechanism {
        Mechanism::ProcessGroupSweep => Some(format!(
            "on {executor}: {}; used the script's session and a sweep of every process carrying the run id",
            why.unwrap_or("no PID namespace")
        )),
        _ => None,
    };
    Some(Containment { mechanism, killed_at_end, survivors, checked: true, note })
}

#[cfg(test)]
mod tests {
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
        let d =
            RunDir::new("#!/usr/bin/env bash\nset -euo pipefail\na=(x y)\n[[ ${#a[@]} == 2 ]] && echo bash-ok\n", &[]);
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
        for d in [&dead, &live, &fresh] {
            std::fs::create_dir_all(format!("{d}/products")).unwrap();
        }
        // A pid that is certainly gone, and one alive whose command line names its dir.
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        std::fs::write(format!("{dead}/pid"), gone.id().to_string()).unwrap();
        // What a fallback run whose wrapper was killed left running.
        let mark = format!("stale-{n}");
        std::fs::write(format!("{dead}/marker"), format!("{}\n", marker(&mark))).unwrap();
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
        let (dead_left, live_left, fresh_left) = (
            std::path::Path::new(&dead).exists(),
            std::path::Path::new(&live).exists(),
            std::path::Path::new(&fresh).exists(),
        );
        let _ = std::fs::remove_dir_all(&live);
        let _ = std::fs::remove_dir_all(&fresh);
        assert!(st.success());
        assert!(!dead_left, "a dead run's directory was kept");
        assert!(orphan_killed, "a process carrying the dead run's marker was left running");
        assert!(live_left, "a live run's directory was removed");
        assert!(fresh_left, "a run still being prepared (no pid yet) was removed");
    }

    #[test]
    fn receipts_parse_and_explain_the_fallback() {
        let r = parse_receipt("pid-namespace 3 0\n\n", "ex").unwrap();
        assert_eq!(
            (r.mechanism, r.killed_at_end, r.survivors, r.checked, r.note),
            (Mechanism::PidNamespace, 3, 0, true, None)
        );
        let r = parse_receipt("process-group+sweep 1 2\nsetpriv or unshare (util-linux) is not on this host\n", "ex")
            .unwrap();
        assert_eq!((r.mechanism, r.killed_at_end, r.survivors), (Mechanism::ProcessGroupSweep, 1, 2));
        assert!(r.note.unwrap().contains("on ex: setpriv or unshare"));
        assert!(parse_receipt("", "ex").is_none());
        assert!(parse_receipt("cgroup 1 0\n", "ex").is_none());
        assert!(parse_receipt("pid-namespace x 0\n", "ex").is_none());
    }
}
