//! The runner contract (DESIGN §6), written once for every runner: what is
//! shipped with the bundle and where the smoke script is staged, the governed
//! environment and the file that carries it to a shell, secrets and their
//! redaction, the stop sequence, shell quoting and tool discovery.
//!
//! The local, SSH and QEMU runners differ in *how* they copy, start and stop;
//! *what* they copy, which variables the script sees, how long the grace is
//! and how a value is quoted are decided here.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::redactor::{Redactor, StreamRedactor};
use super::{Event, Job};
use crate::bundle::LoadedBundle;
use crate::error::Problem;

/// Host variables a smoke script may see; everything else is dropped.
pub const ENV_ALLOWLIST: &[&str] =
    &["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "USER", "LOGNAME", "TMPDIR", "SHELL"];

/// `PATH` when the host has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Between TERM and KILL at the deadline or on cancel.
pub const GRACE: Duration = Duration::from_secs(2);

/// Where a runner stages the bundle copy, inside its run directory.
pub const STAGED_BUNDLE: &str = "bundle";
/// Where a runner stages a smoke script that lives outside the bundle.
pub const STAGED_SCRIPT: &str = "smoke-script";

// ---------------------------------------------------------------------------
// What is shipped, and where the script lands

/// The part of the bundle directory that is never shipped to where the
/// script runs: the run's own evidence. That is the products' parent (the
/// bundle's `outDir`) when it lies inside the bundle; when the outDir is the
/// bundle directory itself, only the products directory (the rest of the
/// bundle must still go). A path outside the bundle excludes nothing.
pub fn not_shipped(job: &Job) -> &Path {
    match job.products_dir.parent() {
        Some(out) if out != job.bundle_dir && out.starts_with(&job.bundle_dir) => out,
        _ => &job.products_dir,
    }
}

/// Whether `path` (under `job.bundle_dir`) goes with the bundle.
pub fn ships(job: &Job, path: &Path) -> bool {
    !path.starts_with(not_shipped(job))
}

/// Where the smoke script is once the bundle is staged at
/// `run_dir/`[`STAGED_BUNDLE`]: inside the copy when it lives in the bundle,
/// else at `run_dir/`[`STAGED_SCRIPT`], put there by `copy(host script, staged path)`.
pub fn stage_script(job: &Job, run_dir: &Path, copy: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<PathBuf> {
    match &job.script_in_bundle {
        Some(rel) => Ok(run_dir.join(STAGED_BUNDLE).join(rel)),
        None => {
            let staged = run_dir.join(STAGED_SCRIPT);
            copy(&job.script, &staged)?;
            Ok(staged)
        }
    }
}

// ---------------------------------------------------------------------------
// The governed environment

/// A secret given to the run: its name and value (never written anywhere).
#[derive(Clone)]
pub struct Secret {
    pub name: String,
    pub env_name: String,
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.name)
    }
}

/// Resolve every required secret from the environment before anything runs.
/// `NAME` is taken from `$NAME`; `NAME_FILE` names a file whose contents are
/// the secret, given to the script as `$NAME` (without `_FILE`).
pub fn resolve_secrets(names: &[String]) -> Result<Vec<Secret>> {
    let mut out = Vec::new();
    for name in names {
        let raw = std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(raw) = raw else {
            return Err(Problem::error(format!("required secret `{name}` is not set"))
                .hint(if name.ends_with("_FILE") {
                    format!("export {name}=/path/to/file holding the secret, then run again")
                } else {
                    format!("export {name}=… in the environment agentplane runs in, then run again")
                })
                .into());
        };
        let (env_name, value) = match name.strip_suffix("_FILE") {
            Some(base) if !base.is_empty() => {
                let v = crate::fsx::read_secret_file(Path::new(&raw)).map_err(|e| {
                    Problem::error(format!("secret `{name}`: cannot read `{raw}`: {e}"))
                        .hint(format!("{name} must name a readable file holding the secret"))
                })?;
                (base.to_string(), v.trim_end_matches(['\n', '\r']).to_string())
            }
            _ => (name.clone(), raw),
        };
        out.push(Secret { name: name.clone(), env_name, value });
    }
    Ok(out)
}

/// The governed environment of DESIGN §6: the allowlisted host variables,
/// `AGENTPLANE_*` and the bundle's secrets.
pub fn governed_env(
    b: &LoadedBundle,
    run_id: &str,
    executor: &str,
    products: &Path,
    secrets: &[Secret],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        ENV_ALLOWLIST.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env.extend([
        ("AGENTPLANE_RUN_ID".to_string(), run_id.to_string()),
        ("AGENTPLANE_BUNDLE".into(), b.identity()),
        ("AGENTPLANE_BUNDLE_NAME".into(), b.bundle.metadata.name.clone()),
        ("AGENTPLANE_LANE".into(), b.bundle.lane().as_str().into()),
        ("AGENTPLANE_EXECUTOR".into(), executor.into()),
        ("AGENTPLANE_PRODUCTS_DIR".into(), products.display().to_string()),
    ]);
    for s in secrets {
        env.push((s.env_name.clone(), s.value.clone()));
    }
    env
}

/// Whether `name` can be a shell variable: `[A-Za-z_][A-Za-z0-9_]*`. A
/// variable the shell cannot name cannot be carried by an [`env_file`].
pub fn is_env_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c == b'_' || c.is_ascii_alphabetic()) && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// The governed environment as a file the script's shell sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    /// `export NAME=VALUE` lines.
    pub text: String,
    /// Variables left out: names the shell cannot name, or values holding NUL.
    pub skipped: Vec<String>,
}

/// Write `env` as `export NAME=VALUE` lines after `header`, for a runner whose
/// script gets its environment from a shell rather than from `execve`.
///
/// The variables in `fixed` are where the script runs, not where agentplane
/// does (the products directory, a guest's `PATH`): the job's values for them
/// are dropped and the fixed ones written last. `value` writes the right-hand
/// side of every other line; [`shell_quote`] is the plain literal.
pub fn env_file(
    header: &str,
    env: &[(String, String)],
    fixed: &[(&str, &str)],
    value: impl Fn(&str, &str) -> String,
) -> EnvFile {
    let mut out = EnvFile { text: header.to_string(), skipped: Vec::new() };
    for (k, v) in env {
        if fixed.iter().any(|(f, _)| f == k) {
            continue;
        }
        if !is_env_name(k) || v.contains('\0') {
            out.skipped.push(k.clone());
            continue;
        }
        out.text.push_str(&format!("export {k}={}\n", value(k, v)));
    }
    for (k, v) in fixed {
        out.text.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    out
}

/// A word the POSIX `sh` reads back literally: single-quoted, each `'`
/// written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// Redaction

/// The redactor for a run's secrets (whole values and each line of a
/// multi-line value, longest first: see `redactor.rs`).
pub fn redactor(secrets: &[Secret]) -> Redactor {
    Redactor::new(secrets.iter().map(|s| (s.name.as_str(), s.value.as_bytes())))
}

/// Replace every secret value in `data` with `[redacted:NAME]`. Values shorter
/// than 3 bytes are left alone: redacting them would shred the log.
pub fn redact(data: &[u8], secrets: &[Secret]) -> (Vec<u8>, bool) {
    redactor(secrets).redact(data)
}

/// Live output, redacted as it streams: a secret split across reads (or
/// written one byte at a time) is held back until it can be replaced, so it
/// never reaches a terminal.
pub struct LiveRedactor<'r> {
    out: StreamRedactor<'r>,
    err: StreamRedactor<'r>,
}

impl<'r> LiveRedactor<'r> {
    pub fn new(r: &'r Redactor) -> Self {
        LiveRedactor { out: r.stream(), err: r.stream() }
    }

    /// The event as it may be shown now (output may be held back).
    pub fn event(&mut self, ev: Event) -> Event {
        match ev {
            Event::Stdout(d) => Event::Stdout(self.out.push(&d)),
            Event::Stderr(d) => Event::Stderr(self.err.push(&d)),
            s => s,
        }
    }

    /// What is still held back, at the end of the run.
    pub fn finish(&mut self) -> [Event; 2] {
        [Event::Stdout(self.out.finish()), Event::Stderr(self.err.finish())]
    }
}

// ---------------------------------------------------------------------------
// The interpreter

/// The command that runs a smoke script, as its author wrote it: the
/// interpreter its `#!` line names (`#!/usr/bin/env bash` included, with at
/// most one argument, as the kernel reads it), else `/bin/sh` (DESIGN §6).
pub fn interpreter(script_head: &[u8]) -> Vec<String> {
    let first = script_head.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(rest) = first.strip_prefix(b"#!") else {
        return vec!["/bin/sh".into()];
    };
    let line = String::from_utf8_lossy(rest);
    let mut parts = line.trim().splitn(2, [' ', '\t']);
    let Some(prog) = parts.next().filter(|p| !p.is_empty()) else {
        return vec!["/bin/sh".into()];
    };
    let mut v = vec![prog.to_string()];
    if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
        v.push(arg.to_string());
    }
    v
}

/// [`interpreter`] of a script file (its first 256 bytes; `/bin/sh` when unreadable).
pub fn interpreter_of(script: &Path) -> Vec<String> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(f) = crate::fsx::open_regular(script, None) {
        let _ = f.take(256).read_to_end(&mut head);
    }
    interpreter(&head)
}

// ---------------------------------------------------------------------------
// The stop sequence

/// A step of the stop sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Kill,
}

impl Stop {
    /// The signal this step sends.
    pub fn signal(self) -> nix::sys::signal::Signal {
        match self {
            Stop::Term => nix::sys::signal::Signal::SIGTERM,
            Stop::Kill => nix::sys::signal::Signal::SIGKILL,
        }
    }

    /// The signal's name as `kill -NAME` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Term => "TERM",
            Stop::Kill => "KILL",
        }
    }
}

/// How every runner stops work at the deadline or on cancel: TERM, then the
/// grace period for it to end, then KILL. A runner that must keep reading
/// output meanwhile asks [`StopSequence::due`] on each turn of its loop and
/// reports each step it sent with [`StopSequence::sent`].
#[derive(Debug, Clone)]
pub struct StopSequence {
    grace: Duration,
    termed: Option<Instant>,
    killed: Option<Instant>,
}

impl StopSequence {
    pub fn new(grace: Duration) -> StopSequence {
        StopSequence { grace, termed: None, killed: None }
    }

    /// The step to send now: TERM once stopping is asked for, KILL once the
    /// grace has passed since TERM was sent, then nothing.
    pub fn due(&self, stopping: bool, now: Instant) -> Option<Stop> {
        match (self.termed, self.killed) {
            (None, _) if stopping => Some(Stop::Term),
            (Some(at), None) if now >= at + self.grace => Some(Stop::Kill),
            _ => None,
        }
    }

    /// Record that `step` was just sent (the grace counts from here).
    pub fn sent(&mut self, step: Stop) {
        let now = Instant::now();
        match step {
            Stop::Term => self.termed = Some(now),
            Stop::Kill => self.killed = Some(now),
        }
    }

    /// Whether stopping has begun (TERM was sent).
    pub fn begun(&self) -> bool {
        self.termed.is_some()
    }

    /// When KILL was sent.
    pub fn killed_at(&self) -> Option<Instant> {
        self.killed
    }
}

/// The stop sequence for a caller that can block: send TERM, ask `ended`
/// every `poll` for up to `grace`, then send KILL. Returns what `ended`
/// returned, or `None` once KILL was sent (the caller reaps).
pub fn stop<T>(
    grace: Duration,
    poll: Duration,
    mut send: impl FnMut(Stop),
    mut ended: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut seq = StopSequence::new(grace);
    loop {
        if let Some(done) = ended()? {
            return Ok(Some(done));
        }
        if let Some(step) = seq.due(true, Instant::now()) {
            send(step);
            seq.sent(step);
            if step == Stop::Kill {
                return Ok(None);
            }
        }
        std::thread::sleep(poll);
    }
}

/// `SIGTERM` for 15: how evidence names the signal that ended a script.
pub fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {n}"))
}

// ---------------------------------------------------------------------------
// Tools

/// Find a tool: a bare name through `PATH`; a path (with a `/`) as it is.
pub fn which(name: impl AsRef<Path>) -> Option<PathBuf> {
    let name = name.as_ref();
    if name.components().count() > 1 {
        return Some(name.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(bundle: &str, products: &str, script_in_bundle: Option<&str>) -> Job {
        Job {
            script: "/p/elsewhere/smoke.sh".into(),
            script_in_bundle: script_in_bundle.map(PathBuf::from),
            ..Job::for_test(bundle, products)
        }
    }

    #[test]
    fn evidence_is_never_shipped_and_the_bundle_always_is() {
        // (bundle, products, path, shipped)
        let cases = [
            // outDir inside the bundle: all of it stays behind.
            ("/p/b", "/p/b/out/products", "/p/b/out/run-artifact.json", false),
            ("/p/b", "/p/b/out/products", "/p/b/out/products/x", false),
            ("/p/b", "/p/b/out/products", "/p/b/smoke.sh", true),
            // outDir is the bundle: only the products stay behind.
            ("/p/b", "/p/b/products", "/p/b/products/x", false),
            ("/p/b", "/p/b/products", "/p/b/smoke.sh", true),
            ("/p/b", "/p/b/products", "/p/b", true),
            // outDir elsewhere (or above the bundle): the whole bundle goes.
            ("/p/b", "/p/artifacts/b/products", "/p/b/out/x", true),
            ("/p/b", "/p/products", "/p/b", true),
            ("/p/b", "/tmp/replay/products", "/p/b/smoke.sh", true),
        ];
        for (bundle, products, path, want) in cases {
            assert_eq!(ships(&job(bundle, products, None), Path::new(path)), want, "{bundle} {products} {path}");
        }
    }

    #[test]
    fn a_script_outside_the_bundle_is_staged_beside_it() {
        let inside = job("/p/b", "/o/products", Some("t/smoke.sh"));
        let staged = stage_script(&inside, Path::new("/run"), |_, _| panic!("nothing to copy")).unwrap();
        assert_eq!(staged, Path::new("/run/bundle/t/smoke.sh"));
        let outside = job("/p/b", "/o/products", None);
        let mut copied = None;
        let staged = stage_script(&outside, Path::new("/run"), |from, to| {
            copied = Some((from.to_path_buf(), to.to_path_buf()));
            Ok(())
        })
        .unwrap();
        assert_eq!(staged, Path::new("/run/smoke-script"));
        assert_eq!(copied, Some((PathBuf::from("/p/elsewhere/smoke.sh"), staged)));
    }

    #[test]
    fn env_names_are_shell_names() {
        for ok in ["A", "_", "_X1", "AGENTPLANE_RUN_ID", "lower_case", "a1"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1X", "BAD-NAME", "A B", "vault:x", "Ä", "X=1", "A\0"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn env_file_fixes_values_and_skips_what_a_shell_cannot_carry() {
        let env = vec![
            ("PATH".to_string(), "/host/bin".to_string()),
            ("TOKEN".to_string(), "a'b\nc".to_string()),
            ("BAD-NAME".to_string(), "x".to_string()),
            ("NUL".to_string(), "a\0b".to_string()),
            ("HOME".to_string(), "/h".to_string()),
        ];
        let f = env_file("# env\n", &env, &[("PATH", "/guest/bin")], |k, v| {
            if k == "HOME" { format!("${{R_HOME-{}}}", shell_quote(v)) } else { shell_quote(v) }
        });
        assert_eq!(f.skipped, ["BAD-NAME", "NUL"]);
        assert_eq!(f.text, "# env\nexport TOKEN='a'\\''b\nc'\nexport HOME=${R_HOME-'/h'}\nexport PATH='/guest/bin'\n");
    }

    #[test]
    fn env_file_round_trips_through_sh() {
        let nasty = "it's \"q\" $HOME `id` \\ \n end";
        let env = vec![("V".to_string(), nasty.to_string())];
        let f = env_file("", &env, &[], |_, v| shell_quote(v));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{}printf %s \"$V\"", f.text))
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }

    #[test]
    fn shell_quote_survives_sh() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's $HOME `x`"), r"'it'\''s $HOME `x`'");
        assert_eq!(shell_quote(""), "''");
        let nasty = "it's \"quoted\" $HOME `id` \\ \n end";
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }

    fn secret(name: &str, value: &str) -> Secret {
        Secret { name: name.into(), env_name: name.into(), value: value.into() }
    }

    #[test]
    fn redaction_replaces_every_occurrence() {
        let s = vec![secret("TOK", "s3cret")];
        let (out, hit) = redact(b"a s3cret b s3crets3cret", &s);
        assert!(hit);
        assert_eq!(out, b"a [redacted:TOK] b [redacted:TOK][redacted:TOK]".to_vec());
        let (out, hit) = redact(b"nothing here", &s);
        assert!(!hit);
        assert_eq!(out, b"nothing here".to_vec());
    }

    #[test]
    fn redaction_leaves_short_values_and_status_events_alone() {
        let s = vec![secret("PIN", "42"), secret("TOK", "s3cret")];
        let (out, hit) = redact(b"42 s3cret", &s);
        assert!(hit);
        assert_eq!(out, b"42 [redacted:TOK]".to_vec());
        let r = redactor(&s);
        let mut live = LiveRedactor::new(&r);
        let Event::Stderr(mut d) = live.event(Event::Stderr(b"x s3cret".to_vec())) else { panic!() };
        let [_, Event::Stderr(rest)] = live.finish() else { panic!() };
        d.extend(rest);
        assert_eq!(d, b"x [redacted:TOK]".to_vec());
        let Event::Status(m) = live.event(Event::Status("s3cret".into())) else { panic!() };
        assert_eq!(m, "s3cret", "status lines are agentplane's own");
        assert_eq!(interpreter(b"#!/usr/bin/env bash\nset -euo pipefail\n"), ["/usr/bin/env", "bash"]);
        assert_eq!(interpreter(b"#! /bin/bash -e  \n"), ["/bin/bash", "-e"]);
        assert_eq!(interpreter(b"echo no shebang\n"), ["/bin/sh"]);
        assert_eq!(interpreter(b"#!\n"), ["/bin/sh"]);
        assert_eq!(format!("{:?}", s[1]), "Secret(TOK)", "Debug never shows a value");
    }

    #[test]
    fn stop_sequence_is_term_grace_kill() {
        let mut seq = StopSequence::new(Duration::from_millis(50));
        let t0 = Instant::now();
        assert_eq!(seq.due(false, t0), None);
        assert_eq!(seq.due(true, t0), Some(Stop::Term));
        seq.sent(Stop::Term);
        assert!(seq.begun());
        assert_eq!(seq.due(true, Instant::now()), None, "grace first");
        let later = Instant::now() + Duration::from_millis(60);
        assert_eq!(seq.due(true, later), Some(Stop::Kill));
        seq.sent(Stop::Kill);
        assert!(seq.killed_at().is_some());
        assert_eq!(seq.due(true, later + Duration::from_secs(9)), None);
        assert_eq!((Stop::Term.name(), Stop::Kill.signal().as_str()), ("TERM", "SIGKILL"));
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(200), "signal 200");
    }

    #[test]
    fn blocking_stop_returns_early_or_kills_after_the_grace() {
        let mut sent = Vec::new();
        let mut polls = 0;
        let r = stop(
            Duration::from_secs(5),
            Duration::from_millis(1),
            |s| sent.push(s),
            || {
                polls += 1;
                Ok((polls == 3).then_some("ended"))
            },
        );
        assert_eq!((r.unwrap(), sent.as_slice()), (Some("ended"), [Stop::Term].as_slice()));

        let mut sent = Vec::new();
        let t0 = Instant::now();
        let r = stop(Duration::from_millis(30), Duration::from_millis(5), |s| sent.push(s), || Ok(None::<()>));
        assert_eq!((r.unwrap(), sent.as_slice()), (None, [Stop::Term, Stop::Kill].as_slice()));
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn which_searches_path_for_bare_names_only() {
        assert!(which("sh").is_some_and(|p| p.is_absolute() && p.ends_with("sh")));
        assert_eq!(which("/no/such/tool"), Some(PathBuf::from("/no/such/tool")));
        assert_eq!(which("agentplane-no-such-tool-xyz"), None);
    }
}
