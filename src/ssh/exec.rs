//! Running a short command on an open session.

use anyhow::{Context, Result, bail};
use ssh2::Session;
use std::io::Read;
use std::time::{Duration, Instant};

use super::connect::set_remaining_timeout;

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit status (`-1` when the command was killed by a signal).
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The most a short command may print on each of stdout and stderr. A probe
/// or a set-up step answers in a few hundred bytes; a host that sends more
/// (a hostile or broken one, streaming without end) is refused, never buffered.
pub const OUTPUT_CAP: usize = 1024 * 1024;

/// Run `command` over a new channel and capture its output, every blocking
/// step bounded by `timeout`, each stream by [`OUTPUT_CAP`]. Meant for short
/// commands with small output (stdout is drained before stderr).
pub fn exec(session: &Session, command: &str, timeout: Duration) -> Result<ExecOutput> {
    exec_until(session, command, Instant::now() + timeout)
}

/// [`exec`] with an absolute deadline.
pub fn exec_until(session: &Session, command: &str, deadline: Instant) -> Result<ExecOutput> {
    session.set_blocking(true);
    let step = |what: &str| -> Result<()> {
        if set_remaining_timeout(session, deadline).is_err() {
            bail!("timed out before {what}");
        }
        Ok(())
    };
    step("opening a channel")?;
    let mut channel = session.channel_session().context("cannot open an SSH channel")?;
    step("running the command")?;
    channel.exec(command).context("cannot start the remote command")?;
    let stdout = read_bounded(&mut channel, session, deadline, "output")?;
    let stderr = read_bounded(&mut channel.stderr(), session, deadline, "errors")?;
    step("the command closed")?;
    channel.wait_close().context("the remote command did not finish")?;
    let status = match channel.exit_signal() {
        Ok(sig) if sig.exit_signal.is_some() => -1,
        _ => channel.exit_status().context("no exit status from the remote command")?,
    };
    Ok(ExecOutput { status, stdout, stderr })
}

/// One stream of a remote command, read to its end by `deadline` (checked
/// before every read, so a host that trickles a byte at a time cannot hold
/// the caller past it) and at most [`OUTPUT_CAP`] bytes.
fn read_bounded(r: &mut impl Read, session: &Session, deadline: Instant, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if set_remaining_timeout(session, deadline).is_err() {
            bail!("timed out while reading the remote command's {what}");
        }
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read the remote command's {what}")),
        };
        if out.len() + n > OUTPUT_CAP {
            bail!(
                "the remote command's {what} went past {OUTPUT_CAP} bytes (a short command prints far less): refused"
            );
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// [`exec`] that fails unless the command exits 0, naming its stderr.
pub fn exec_ok(session: &Session, command: &str, timeout: Duration) -> Result<ExecOutput> {
    let out = exec(session, command, timeout)?;
    if out.status != 0 {
        bail!("remote command exited {}: {}", out.status, out.stderr_str().trim());
    }
    Ok(out)
}
