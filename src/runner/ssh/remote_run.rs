//! What a runner on an SSH executor holds once `prepare` ran: the session
//! and the run's own directory on the host. Both SSH runners (a script, a
//! QEMU VM) keep them the same way; a later step that finds either missing
//! says that `prepare` did not run, never panics.

use anyhow::{Context, Result};
use ssh2::Session;

#[derive(Default)]
pub(crate) struct RemoteRun {
    session: Option<Session>,
    /// `/tmp/agentplane-remote-<run id>` once created.
    dir: Option<String>,
}

impl RemoteRun {
    pub(crate) fn session(&self) -> Result<&Session> {
        self.session.as_ref().context("no SSH session (prepare did not run)")
    }

    pub(crate) fn dir(&self) -> Result<&str> {
        self.dir.as_deref().context("no remote run directory (prepare did not run)")
    }

    /// Keep the session (`Session` is a shared handle: the caller may keep one too).
    pub(crate) fn connected(&mut self, session: Session) {
        self.session = Some(session);
    }

    /// The run directory was created on the host.
    pub(crate) fn created(&mut self, dir: String) {
        self.dir = Some(dir);
    }

    /// Both, for the cleanup that ends the run (later steps find neither).
    pub(crate) fn take(&mut self) -> (Option<Session>, Option<String>) {
        (self.session.take(), self.dir.take())
    }
}
