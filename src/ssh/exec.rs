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

/// Run `command` over a new channel and capture its output, every blocking
/// step bounded by `timeout`. Meant for short commands with small output
/// (stdout is drained before stderr).
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
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    step("reading its output")?;
    channel.read_to_end(&mut stdout).context("cannot read the remote command's output")?;
    step("reading its errors")?;
    channel.stderr().read_to_end(&mut stderr).context("cannot read the remote command's errors")?;
    step("the command closed")?;
    channel.wait_close().context("the remote command did not finish")?;
    let status = match channel.exit_signal() {
        Ok(sig) if sig.exit_signal.is_some() => -1,
        _ => channel.exit_status().context("no exit status from the remote command")?,
    };
    Ok(ExecOutput { status, stdout, stderr })
}

/// [`exec`] that fails unless the command exits 0, naming its stderr.
pub fn exec_ok(session: &Session, command: &str, timeout: Duration) -> Result<ExecOutput> {
    let out = exec(session, command, timeout)?;
    if out.status != 0 {
        bail!("remote command exited {}: {}", out.status, out.stderr_str().trim());
    }
    Ok(out)
}
