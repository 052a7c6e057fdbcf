//! The runner contract (DESIGN §6), written once for every runner: what is
//! shipped with the bundle and where the smoke script is staged, the governed
//! environment and the file that carries it to a shell, secrets and their
//! redaction, the stop sequence, shell quoting and tool discovery.
//!
//! The local, SSH and QEMU runners differ in *how* they copy, start and stop;
//! *what* they copy, which variables the script sees, how long the grace is
//! and how a value is quoted are decided here.

use anyhow::{Context, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::qemu::workdir::WorkDir;
use super::redactor::{Redactor, StreamRedactor};
use super::{Event, Job};
use crate::bundle::LoadedBundle;
use crate::bundle::digest::{self, BundleDigest};
use crate::error::{Problem, Refusal, RefusalCode};
use crate::fsx;

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
// The staged bundle: the bytes that run are the bytes the digest covers

/// A bundle copied into a private scratch directory (0700) and checked
/// against the validated digest: every runner runs, uploads or packs this
/// copy, never the bundle directory, which anyone who can write to it could
/// change after the check (DESIGN §6, last paragraph).
///
/// The copy is laid out as the project is, `scratch/root/<root-relative
/// name>` for every file the digest covers (a smoke script outside the
/// bundle directory included), so it digests with the very same
/// [`digest::compute`] and names as validation, with `scratch/root` as the
/// root. The scratch directory goes when this value is dropped or closed.
pub struct StagedBundle {
    scratch: WorkDir,
    /// `scratch/root`: the staged project root.
    pub root: PathBuf,
    /// The staged bundle directory (the script's working directory).
    pub bundle_dir: PathBuf,
    /// The staged smoke script.
    pub script: PathBuf,
    /// The digest of the staged copy (equal to the validated one).
    pub digest: BundleDigest,
}

impl StagedBundle {
    /// Remove the staged copy, saying so when that fails.
    pub fn close(self) -> Result<()> {
        self.scratch.close().context("cannot remove the staged bundle")
    }
}

impl std::fmt::Debug for StagedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedBundle").field("root", &self.root).field("digest", &self.digest.digest).finish()
    }
}

/// The name of a staged bundle's scratch directory, in the temp dir.
pub const STAGE_PREFIX: &str = "agentplane-stage-";

/// [`stage_bundle`] for a loaded bundle: its root, directory, outDir and script.
pub fn stage(b: &LoadedBundle, expected: &BundleDigest) -> Result<StagedBundle> {
    stage_bundle(&b.root, &b.dir, Some(&b.out_dir), &b.script, expected)
}

/// Copy the files the bundle digest covers (the bundle directory `dir`
/// without `exclude`, and `script` when it lies outside `dir`; all canonical,
/// under `root`) into a new private scratch directory, digest the copy and
/// compare it with `expected`, the validated digest.
///
/// Only what the digest's own walk lists is copied: regular files, opened
/// without following a symlink ([`fsx::open_regular`]), and symlinks that stay
/// inside the bundle, recreated as links. A link with an absolute target is
/// refused: in the copy it would still lead to the original, whose bytes were
/// never checked.
///
/// A copy that differs from `expected` is a [`Refusal`] with
/// [`RefusalCode::BundleChanged`] naming the files that differ
/// ([`digest::changed_files`]), returned before anything runs. A refusal
/// rather than a failed run: nothing of the bundle ran, so evidence that
/// "bundle D ran and failed" would be false, and the chain is left as it
/// was, as when `ensure_unchanged` refuses, for the bundle to be validated
/// again.
pub fn stage_bundle(
    root: &Path,
    dir: &Path,
    exclude: Option<&Path>,
    script: &Path,
    expected: &BundleDigest,
) -> Result<StagedBundle> {
    let inside = |p: &Path| -> Result<PathBuf> {
        let rel = p.strip_prefix(root).map_err(|_| {
            Problem::error(format!("`{}` is not under the project root `{}`", p.display(), root.display()))
        })?;
        Ok(rel.to_path_buf())
    };
    let rel_dir = inside(dir)?;
    let rel_script = inside(script)?;
    let listed = digest::files(root, dir, exclude, std::slice::from_ref(&script.to_path_buf()))?;

    // Private (0700) before anything is copied in, and owned: a copy left by
    // a killed agentplane is swept by the next run, as the VM's temp dirs are.
    let scratch = WorkDir::create(STAGE_PREFIX)?;
    let staged_root = scratch.path().join("root");
    let staged_dir = staged_root.join(&rel_dir);
    std::fs::create_dir_all(&staged_dir).with_context(|| format!("cannot create `{}`", staged_dir.display()))?;
    for (name, path, is_link) in listed {
        let rel = Path::new(OsStr::from_bytes(&name));
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            anyhow::bail!("`{}` is not a plain root-relative name", fsx::escape_bytes(&name));
        }
        let dest = staged_root.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        if is_link {
            let target = std::fs::read_link(&path).with_context(|| format!("cannot read link `{}`", path.display()))?;
            if target.is_absolute() {
                return Err(Problem::error(format!(
                    "`{}` is a symbolic link to the absolute path `{}`: a staged copy of the bundle would \
                     still read the original there, not the bytes that were checked",
                    fsx::escape_bytes(&name),
                    fsx::escape_bytes(target.as_os_str().as_bytes())
                ))
                .hint("make the link relative (it must stay inside the bundle), then validate again")
                .into());
            }
            std::os::unix::fs::symlink(&target, &dest)
                .with_context(|| format!("cannot stage link `{}`", fsx::escape_bytes(&name)))?;
            continue;
        }
        let mut from = fsx::open_regular(&path, None)
            .map_err(|e| anyhow::anyhow!("cannot stage `{}`: {e}", fsx::escape_bytes(&name)))?;
        let exec = from.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .with_context(|| format!("cannot create `{}`", dest.display()))?;
        std::io::copy(&mut from, &mut to).with_context(|| format!("cannot stage `{}`", fsx::escape_bytes(&name)))?;
        // The digest knows two mode classes: executable or not.
        to.set_permissions(std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))?;
    }

    let staged_script = staged_root.join(&rel_script);
    let now = digest::compute(&staged_root, &staged_dir, None, std::slice::from_ref(&staged_script))?;
    if now.digest != expected.digest {
        let changed = digest::changed_files(&expected.files, &now.files);
        let list = if changed.is_empty() { "the digest differs".to_string() } else { changed.join(", ") };
        return Err(Refusal::new(
            RefusalCode::BundleChanged,
            format!(
                "bundle `{}` changed while it was staged to run, nothing ran: {list}",
                fsx::escape_bytes(rel_dir.as_os_str().as_bytes())
            ),
        )
        .hint("find out what changes the bundle, then validate it again to start a new evidence chain")
        .changed(changed)
        .into());
    }
    Ok(StagedBundle { scratch, root: staged_root, bundle_dir: staged_dir, script: staged_script, digest: now })
}

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

/// Find a tool: a bare name on the absolute entries of `PATH`; a path (with
/// a `/`) as it is. A relative entry is skipped: it would name files of
/// wherever the tool is started from later, such as a bundle's directory.
pub fn which(name: impl AsRef<Path>) -> Option<PathBuf> {
    let name = name.as_ref();
    if name.components().count() > 1 {
        return Some(name.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests;
