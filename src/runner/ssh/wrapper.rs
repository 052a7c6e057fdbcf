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
//! **`PATH`.** The wrapper works in the run's copy of the bundle, and finds
//! `setpriv`, `unshare`, `setsid`, `env` and its shell tools by name: a
//! relative `PATH` entry (`bin:…`) would find the bundle's own files there.
//! It drops relative entries first (the script's `PATH` is the result too).
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
/// names a process that is gone or no longer runs that directory's wrapper,
/// and either its channel was lost (`lost`: its agentplane is gone) or the
/// directory has not changed for 10 minutes (a run whose wrapper just
/// ended is still being collected by its agentplane: another run to the same
/// host must not take its products away).
/// A directory without `pid` (its run never started) goes after an hour.
/// Whatever still carries such a run's marker (a fallback run whose wrapper
/// was killed) is killed first; a namespace died with its wrapper.
pub fn sweep_stale_command() -> String {
    format!(
        "{FUNCS}for ap_x in {prefix}*; do\n\
         [ -d \"$ap_x\" ] && [ -O \"$ap_x\" ] || continue\n\
         ap_p=$(cat \"$ap_x/pid\" 2>/dev/null)\n\
         if [ -n \"$ap_p\" ]; then grep -qaF -e \"$ap_x\" \"/proc/$ap_p/cmdline\" 2>/dev/null && continue\n\
         [ -e \"$ap_x/lost\" ] || [ -n \"$(find \"$ap_x\" -maxdepth 0 -mmin +10 2>/dev/null)\" ] || continue\n\
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
ap_p=; IFS=:; set -f; for ap_e in ${{PATH-}}; do case $ap_e in /*) ap_p=${{ap_p:+$ap_p:}}$ap_e ;; esac; done; set +f; unset IFS; PATH=$ap_p; export PATH
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
# From here on the wrapper writes to the channel no more (only the script
# does): a killed agentplane closes the channel, and a shell message such as
# "Killed" would then end the wrapper by SIGPIPE before its teardown, leaving
# its helpers behind without a receipt.
exec >/dev/null 2>&1
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
mod tests;
