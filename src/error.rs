//! Errors that carry an exit code and a hint for the person reading them.
//!
//! Library code returns `anyhow::Result`. An error that should end the process
//! with something other than exit 2, or that has advice attached, wraps a
//! [`Problem`]; the CLI finds it anywhere in the cause chain.

use crate::exit::Exit;
use std::fmt;

/// A user-facing problem: what went wrong, the exit code it maps to, and what to do.
#[derive(Debug)]
pub struct Problem {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Problem {
    /// The subject failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Problem { exit: Exit::Failed, message: message.into(), hint: None }
    }

    /// The tool could not do its job (exit 2).
    pub fn error(message: impl Into<String>) -> Self {
        Problem { exit: Exit::Error, message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The exit code an error maps to: the first [`Problem`] in its chain decides, else 2.
pub fn exit_of(err: &anyhow::Error) -> Exit {
    err.chain().find_map(|e| e.downcast_ref::<Problem>()).map_or(Exit::Error, |p| p.exit)
}

/// The hint attached to an error, if any link of its chain has one.
pub fn hint_of(err: &anyhow::Error) -> Option<&str> {
    err.chain().filter_map(|e| e.downcast_ref::<Problem>()).find_map(|p| p.hint.as_deref())
}

/// Shorthand for `Err(Problem::failed(..).into())`.
#[macro_export]
macro_rules! failed {
    ($($arg:tt)*) => { $crate::error::Problem::failed(format!($($arg)*)) };
}

/// Shorthand for a [`Problem`] with exit 2.
#[macro_export]
macro_rules! tool_error {
    ($($arg:tt)*) => { $crate::error::Problem::error(format!($($arg)*)) };
}
