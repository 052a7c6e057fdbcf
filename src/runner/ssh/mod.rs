//! The SSH process runner (the `lima-process` backend on an SSH executor).
//!
//! One `ssh2` session per run (each connection costs the server ~100–170 ms):
//! `prepare` first removes run directories a killed agentplane left on the
//! executor (their wrapper is gone), creates `/tmp/agentplane-remote-<run id>`
//! (mode 700), uploads the bundle over SFTP and writes the governed
//! environment to a mode-600 file there (never on a command line, where `ps`
//! would show secrets to every user of the host); `start` runs the remote
//! wrapper ([`wrapper`]), which runs the smoke script with its `#!`
//! interpreter (read here, before upload) inside a PID namespace (or the
//! recorded process-group + sweep fallback), cwd the uploaded bundle, the
//! remote products directory as `$1` and `AGENTPLANE_PRODUCTS_DIR`; `wait`
//! streams output, enforces the deadline remotely (TERM every process of the
//! run, KILL after the grace period, over a second channel) and reads the
//! wrapper's containment receipt; `collect` downloads the products; `cleanup`
//! kills whatever may be left and removes the remote directory.
//!
//! The wrapper dies with its channel: it watches the channel's stdin, on
//! which agentplane never writes nor sends EOF (`Channel::send_eof` is never
//! called; the channel is only closed or dropped once the wrapper has ended
//! or agentplane gives up on it), so EOF there means agentplane is gone and
//! the run is killed on the spot.
//!
//! A host that vanishes mid-run is noticed either by the transport failing or,
//! when the network just goes silent, by a liveness round-trip (opening a
//! channel) after a few idle seconds; `wait` then returns an [`Exit`] whose
//! `error` says the connection was lost instead of hanging.

mod remote_run;
pub(crate) mod wrapper;

pub(crate) use remote_run::RemoteRun;

use anyhow::{Context, Result, bail};
use ssh2::{Channel, Session};
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::contract::{self, StopSequence, shell_quote};
use super::{Event, Exit, Job, Runner};
use crate::ssh::{self, platform};
use crate::types::{Containment, Environment, Isolation, SshTarget};

/// Connecting (TCP, handshake, host key, auth).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Any one blocking step of staging or collecting (an SFTP call, a short command).
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Sending a signal to the remote group over a fresh channel.
pub(crate) const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// After KILL, how long to wait for the channel to close before giving up.
pub(crate) const AFTER_KILL: Duration = Duration::from_secs(5);
/// Silence (no output) after which a liveness round-trip checks the connection.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(5);
/// How long a liveness round-trip may take before the host counts as gone.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past the deadline (and grace) the remote wrapper waits for
/// agentplane's stop before it KILLs the run itself (a silent network).
pub(crate) const BACKSTOP_MARGIN: Duration = Duration::from_secs(30);
/// Reconnecting to clean up after the connection was lost.
pub(crate) const RECONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Variables whose value belongs to the host the script runs on: the remote
/// login's value wins over this host's when the governed environment has them.
const HOST_SPECIFIC: &[&str] = &["HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "PATH"];

pub struct SshRunner {
    executor: String,
    target: SshTarget,
    /// The session and the run directory, once `prepare` made them.
    remote: RemoteRun,
    /// The smoke script on the remote host (absolute).
    remote_script: String,
    /// Its `#!` interpreter, read from the script on this host before upload.
    interpreter: Vec<String>,
    /// `AGENTPLANE_RUN_ID=<id>`: what every process of the run carries.
    marker: String,
    /// The wrapper's containment receipt, read after the script ended.
    receipt: Option<Containment>,
    channel: Option<Channel>,
    environment: Option<Environment>,
    /// Set when the connection died: later steps do not wait on it.
    lost: Option<String>,
    /// The script was started and its end (with the wrapper's own teardown)
    /// was not seen: cleanup must kill the run.
    needs_kill: bool,
}

impl SshRunner {
    pub fn new(executor: &str, target: SshTarget) -> SshRunner {
        SshRunner {
            executor: executor.to_string(),
            target,
            remote: RemoteRun::default(),
            remote_script: String::new(),
            interpreter: Vec::new(),
            marker: String::new(),
            receipt: None,
            channel: None,
            environment: None,
            lost: None,
            needs_kill: false,
        }
    }

    /// `lost connection to NAME (user@host:port): why`.
    fn lost_message(&self, why: &str) -> String {
        format!("lost connection to {} ({}): {why}", self.executor, ssh::display_target(&self.target))
    }

    /// Send `sig` to every process of the run over a new channel (see
    /// [`wrapper::signal_command`]).
    fn signal_group(&self, sig: &str) -> Result<()> {
        let session = self.remote.session()?;
        let dir = self.remote.dir()?;
        session.set_blocking(true);
        let res = ssh::exec(session, &wrapper::signal_command(dir, &self.marker, sig), SIGNAL_TIMEOUT);
        session.set_blocking(false);
        res.map(|_| ())
    }

    /// A round-trip proving the server still answers: open and close a channel.
    fn ping(&self) -> Result<()> {
        let session = self.remote.session()?;
        session.set_blocking(true);
        session.set_timeout(ssh::millis(PING_TIMEOUT));
        let res = session.channel_session().and_then(|mut ch| ch.close());
        session.set_blocking(false);
        res.map_err(|e| anyhow::anyhow!("no answer within {}s ({})", PING_TIMEOUT.as_secs(), e.message()))
    }
}

/// Kill the run in `dir` if it may still go on, and remove the directory.
pub(crate) fn remove_run_dir(session: &Session, dir: &str, marker: &str, kill: bool) -> Result<()> {
    let rm = format!("rm -rf -- {}", shell_quote(dir));
    let cmd = if kill { format!("{}{rm}", wrapper::signal_command(dir, marker, "KILL")) } else { rm };
    ssh::exec_ok(session, &cmd, STEP_TIMEOUT).map(|_| ())
}

/// The end of a remote run, for every runner that keeps a run directory on
/// an SSH host: kill what may still run there (`kill`) and remove `dir`, over
/// `session` while it is alive, else over one short new connection (`lost`:
/// the old one died); then disconnect.
pub(crate) fn end_remote_run(
    session: Option<Session>,
    lost: bool,
    target: &SshTarget,
    dir: Option<String>,
    marker: &str,
    kill: bool,
    executor: &str,
) -> Result<()> {
    let Some(dir) = dir else {
        if let Some(s) = session {
            ssh::disconnect(&s, Duration::from_secs(1));
        }
        return Ok(());
    };
    let session = match (session, lost) {
        (Some(s), false) => Ok(s),
        _ => ssh::connect(target, RECONNECT_TIMEOUT).map_err(anyhow::Error::new),
    };
    session
        .and_then(|s| {
            s.set_blocking(true);
            let r = remove_run_dir(&s, &dir, marker, kill);
            ssh::disconnect(&s, Duration::from_secs(1));
            r
        })
        .with_context(|| format!("cannot remove `{dir}` on {executor}"))
}

/// The remote wrapper's containment receipt for the run in `dir` (blocking
/// session). An error says why there is none: without a receipt nothing
/// vouches for the teardown.
pub(crate) fn fetch_receipt(session: &Session, dir: &str, executor: &str) -> std::result::Result<Containment, String> {
    let read = || -> Result<String> {
        let out = ssh::exec(session, &format!("cat {}", shell_quote(&format!("{dir}/containment"))), STEP_TIMEOUT)?;
        if out.status != 0 {
            bail!("{}", out.stderr_str().trim());
        }
        Ok(out.stdout_str())
    };
    let text = read().map_err(|e| format!("no containment receipt from {executor}: {e:#}"))?;
    wrapper::parse_receipt(&text, executor)
        .ok_or_else(|| format!("unreadable containment receipt from {executor}: {:?}", text.trim()))
}

/// A run id as a file-name component (it is ours, but never trust a path).
pub(crate) fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') { "run".into() } else { cleaned }
}

/// The env file sourced (with `set -a`) by the remote wrapper: the governed
/// environment with the products dir pointed at the remote one, and
/// host-specific variables taken from the remote login when it has them.
fn env_file(env: &[(String, String)], remote_products: &str) -> contract::EnvFile {
    // `AP_R_*` carry the login's values through the wrapper's `env -i`.
    let env: Vec<(String, String)> = env.iter().filter(|(k, _)| !k.starts_with("AP_R_")).cloned().collect();
    contract::env_file(
        "# agentplane governed environment (removed once read)\n",
        &env,
        &[("AGENTPLANE_PRODUCTS_DIR", remote_products)],
        |k, v| {
            if HOST_SPECIFIC.contains(&k) { format!("${{AP_R_{k}-{}}}", shell_quote(v)) } else { shell_quote(v) }
        },
    )
}

impl Runner for SshRunner {
    fn executor(&self) -> &str {
        &self.executor
    }

    fn prepare(&mut self, job: &Job, events: &mut dyn FnMut(Event)) -> Result<()> {
        let who = ssh::display_target(&self.target);
        events(Event::Status(format!("connecting to {} ({who})", self.executor)));
        let session = ssh::connect(&self.target, CONNECT_TIMEOUT).map_err(anyhow::Error::new)?;
        session.set_timeout(ssh::millis(STEP_TIMEOUT));
        // `Session` is a shared handle: keep one in `self` for later steps.
        self.remote.connected(session.clone());
        let session = &session;

        // One round trip: create the run directory (fails if it exists, so a
        // planted symlink cannot redirect us) and learn where we are.
        // Runs a killed agentplane left behind on this host go first.
        let dir = format!("{}{}", wrapper::RUN_DIR_PREFIX, safe_component(&job.run_id));
        let setup = format!(
            "{}umask 077 && mkdir {d} && mkdir {d}/products && {}",
            wrapper::sweep_stale_command(),
            platform::UNAME_COMMAND,
            d = shell_quote(&dir)
        );
        let out = ssh::exec(session, &setup, STEP_TIMEOUT).context("cannot set up the remote run directory")?;
        if out.status != 0 {
            bail!("cannot create `{dir}` on {}: {}", self.executor, out.stderr_str().trim());
        }
        self.remote.created(dir.clone());
        let (platform, hostname) = platform::parse_uname(&out.stdout_str()).context("unexpected `uname` output")?;
        self.environment =
            Some(Environment { os: platform.os, arch: platform.arch, kernel: platform.kernel, hostname });

        self.interpreter = contract::interpreter_of(&job.script);
        self.marker = wrapper::marker(&job.run_id);
        events(Event::Status(format!("uploading bundle to {}:{dir}", self.executor)));
        let sftp = session.sftp().context("cannot start SFTP")?;
        // Never upload evidence: the outDir may sit inside the bundle.
        let skip = |rel: &Path| !contract::ships(job, &job.bundle_dir.join(rel));
        let staged = Path::new(&dir).join(contract::STAGED_BUNDLE);
        let report =
            ssh::upload_dir(session, &sftp, &job.bundle_dir, &staged, &skip).context("cannot upload the bundle")?;
        events(Event::Status(format!("uploaded {} files ({} bytes)", report.files, report.bytes)));

        let script = contract::stage_script(job, Path::new(&dir), |from, to| {
            ssh::upload_file(&sftp, from, to).context("cannot upload the smoke script").map(|_| ())
        })?;
        self.remote_script = script.to_string_lossy().into_owned();

        let env = env_file(&job.env, &format!("{dir}/products"));
        if !env.skipped.is_empty() {
            events(Event::Status(format!(
                "environment variables not passed to {} (not shell names): {}",
                self.executor,
                env.skipped.join(", ")
            )));
        }
        let mut f = sftp
            .open_mode(
                Path::new(&format!("{dir}/env")),
                ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::EXCLUSIVE,
                0o600,
                ssh2::OpenType::File,
            )
            .context("cannot write the remote environment file")?;
        std::io::Write::write_all(&mut f, env.text.as_bytes()).context("cannot write the remote environment file")?;
        f.close().context("cannot write the remote environment file")?;
        Ok(())
    }

    fn start(&mut self, job: &Job) -> Result<()> {
        let backstop = (job.timeout + job.grace + BACKSTOP_MARGIN).as_secs();
        let mut cmd = wrapper::wrapper_command(
            self.remote.dir()?,
            &self.remote_script,
            &self.interpreter,
            &self.marker,
            backstop,
        );
        if std::env::var("AGENTPLANE_CONTAINMENT").is_ok_and(|v| v == "sweep") {
            // Forced here, forced there: the wrapper reads it from its environment.
            cmd = format!("AGENTPLANE_CONTAINMENT=sweep\n{cmd}");
        }
        let session = self.remote.session()?;
        session.set_blocking(true);
        session.set_timeout(ssh::millis(STEP_TIMEOUT));
        let mut channel = session.channel_session().context("cannot open an SSH channel")?;
        self.needs_kill = true;
        // Never `send_eof` on this channel: EOF on its stdin tells the
        // wrapper that agentplane is gone, and it kills the run.
        channel.exec(&cmd).context("cannot start the smoke script")?;
        self.channel = Some(channel);
        Ok(())
    }

    fn wait(&mut self, job: &Job, deadline: Instant, events: &mut dyn FnMut(Event)) -> Result<Exit> {
        let mut channel = self.channel.take().context("the smoke script was not started")?;
        let session = self.remote.session()?.clone();
        // Non-blocking reads so the loop can watch the deadline, Ctrl-C and
        // the connection; keepalives make a dead peer show up on the socket.
        session.set_keepalive(true, 2);
        session.set_blocking(false);

        let mut exit = Exit::default();
        let mut stop = StopSequence::new(job.grace);
        let mut buf = vec![0u8; 32 * 1024];
        let mut last_heard = Instant::now();
        let mut last_ping = Instant::now();
        let mut eof = false;
        let outcome: Result<(), String> = loop {
            let mut got = false;
            for stderr in [false, true] {
                let mut stream = if stderr { channel.stderr() } else { channel.stream(0) };
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            got = true;
                            let chunk = buf[..n].to_vec();
                            events(if stderr { Event::Stderr(chunk) } else { Event::Stdout(chunk) });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            return Ok(self.lost_exit(exit, &format!("the connection failed ({e})")));
                        }
                    }
                }
            }
            let now = Instant::now();
            if got {
                last_heard = now;
            }
            if !eof && channel.eof() {
                eof = true;
            }
            if eof {
                match channel.wait_close() {
                    Ok(()) => break Ok(()),
                    Err(e) if ssh::is_would_block(&e) => {}
                    Err(e) => break Err(e.message().to_string()),
                }
            }

            // Deadline and cancellation: TERM, grace, KILL, then give up waiting.
            let canceled = job.cancel.load(Ordering::SeqCst);
            let stopping = canceled || now >= deadline;
            if stopping && !stop.begun() {
                exit.canceled = canceled;
                exit.timed_out = !canceled;
            }
            if let Some(step) = stop.due(stopping, now) {
                if let Err(e) = self.signal_group(step.name()) {
                    break Err(format!("cannot stop the script: {e:#}"));
                }
                stop.sent(step);
            }
            if stop.killed_at().is_some_and(|at| at.elapsed() >= AFTER_KILL) {
                // Something outside the group holds the output open; the
                // group itself is dead. Stop waiting.
                exit.signal = Some("SIGKILL".into());
                exit.error = Some(format!(
                    "the smoke script's output stayed open {}s after SIGKILL; stopped waiting",
                    AFTER_KILL.as_secs()
                ));
                session.set_blocking(true);
                if let Err(why) = self.read_receipt() {
                    exit.error = exit.error.map(|e| format!("{e}; {why}"));
                }
                return Ok(exit);
            }

            // Silence: make sure the host is still there.
            if now.duration_since(last_heard) >= IDLE_BEFORE_PING && now.duration_since(last_ping) >= IDLE_BEFORE_PING {
                if let Err(e) = self.ping() {
                    break Err(format!("{e:#}"));
                }
                last_ping = Instant::now();
            }
            if let Err(e) = session.keepalive_send()
                && !ssh::is_would_block(&e)
            {
                break Err(e.message().to_string());
            }
            if !got {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        if let Err(why) = outcome {
            return Ok(self.lost_exit(exit, &why));
        }

        // The wrapper has exited, after killing what was left of the group
        // (a group id must not be signalled again: it may have been reused).
        self.needs_kill = false;
        session.set_blocking(true);
        let status = channel.exit_status().unwrap_or(-1);
        let sig = channel.exit_signal().ok().and_then(|s| s.exit_signal);
        let signaled = stop.begun();
        if let Some(sig) = sig {
            // The exec'd script itself was killed (no setsid on the host).
            exit.signal = Some(format!("SIG{sig}"));
        } else if signaled && status > 128 {
            // The wrapper reports a killed script as 128 + signal.
            exit.signal = Some(contract::signal_name(status - 128));
        } else {
            exit.code = Some(status);
        }
        if let Err(why) = self.read_receipt() {
            exit.error = Some(why);
        }
        Ok(exit)
    }

    fn collect(&mut self, job: &Job) -> Result<()> {
        if self.lost.is_some() {
            // The host is gone: there is nothing to fetch, and the lost
            // connection is already the run's error.
            return Ok(());
        }
        let dir = self.remote.dir()?.to_string();
        let session = self.remote.session()?;
        session.set_blocking(true);
        session.set_timeout(ssh::millis(STEP_TIMEOUT));
        let sftp = session.sftp().context("cannot start SFTP")?;
        let report = ssh::download_dir(&sftp, Path::new(&format!("{dir}/products")), &job.products_dir)
            .context("cannot download the products")?;
        if !report.skipped.is_empty() {
            bail!("products that are not files, directories or symlinks: {}", report.skipped.join(", "));
        }
        Ok(())
    }

    fn cleanup(&mut self, _job: &Job) -> Result<()> {
        self.channel = None;
        let (session, dir) = self.remote.take();
        end_remote_run(session, self.lost.is_some(), &self.target, dir, &self.marker, self.needs_kill, &self.executor)
    }

    fn isolation(&self) -> Isolation {
        Isolation::Process
    }

    fn containment(&self) -> Option<Containment> {
        self.receipt.clone()
    }

    fn environment(&self) -> Environment {
        self.environment.clone().unwrap_or_else(|| Environment {
            os: String::new(),
            arch: String::new(),
            kernel: String::new(),
            hostname: self.target.host.clone(),
        })
    }
}

impl SshRunner {
    /// Record that the connection died and say so in the exit.
    fn lost_exit(&mut self, mut exit: Exit, why: &str) -> Exit {
        let msg = self.lost_message(why);
        self.lost = Some(msg.clone());
        exit.error = Some(format!(
            "{msg}; no containment receipt could be read from it, so what still runs there is not known \
             (the remote wrapper kills the run when its channel closes)"
        ));
        exit
    }

    /// Read the wrapper's containment receipt (blocking session). On failure,
    /// the run's error: without a receipt nothing vouches for the teardown.
    fn read_receipt(&mut self) -> std::result::Result<(), String> {
        let receipt = fetch_receipt(
            self.remote.session().map_err(|e| format!("{e:#}"))?,
            self.remote.dir().map_err(|e| format!("{e:#}"))?,
            &self.executor,
        )?;
        self.receipt = Some(receipt);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_become_safe_names() {
        assert_eq!(safe_component("20261122t010203z-abc"), "20261122t010203z-abc");
        assert_eq!(safe_component("../../etc"), ".._.._etc");
        assert_eq!(safe_component(".."), "run");
        assert_eq!(safe_component(""), "run");
    }
}
