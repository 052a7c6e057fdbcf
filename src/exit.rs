//! The process exit codes, documented and mapped in one place (DESIGN §3).

use std::fmt;

/// What an `agentplane` invocation ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what was asked and the subject passed.
    Success,
    /// 1: the subject failed: an invalid bundle, no executor qualifies, a run
    /// that failed or timed out, evidence that does not verify, a diverged replay.
    Failed,
    /// 2: the tool could not do its job: bad flags, a missing file, no key,
    /// an unreadable inventory, a locked outDir.
    Error,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Error => 2,
        }
    }

    /// The worse of two outcomes (Error > Failed > Success).
    pub fn worst(self, other: Exit) -> Exit {
        if self.code() >= other.code() { self } else { other }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}
