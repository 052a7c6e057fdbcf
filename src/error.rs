//! Errors and refusals.
//!
//! Library code returns `anyhow::Result`. A [`Problem`] is agentplane failing
//! to do its job (exit 2) with a `hint:`; the CLI finds it anywhere in the
//! cause chain. A [`Refusal`] is different: the *subject* failed before the
//! stage could finish (a bundle that changed since validation, evidence that
//! does not verify, a promotion without a good run). It travels up from deep
//! inside a stage as a typed error, and the command layer turns it back into
//! data: an outcome rendered like any other (exit 1, one JSON document).

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

/// Why a stage refused its subject: stable kebab-case codes (documented in docs/output.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalCode {
    /// `validate` found no bundle.json under the paths it was given.
    NoBundles,
    /// The bundle does not pass validation.
    BundleInvalid,
    /// The bundle's digest differs from the one its chain (or the evidence) recorded.
    BundleChanged,
    /// A pinned executor is not in the inventory.
    UnknownExecutor,
    /// The evidence does not verify against the trusted keys.
    EvidenceUnverified,
    /// The evidence has no ReplayArtifact (the run was never emitted).
    NotEmitted,
    /// Promotion needs a verified, sealed, successful run of this exact bundle.
    PromotionRefused,
    /// The bundle requires a second person's approval to promote.
    ApprovalRequired,
    /// Nothing to roll back to, or prod was moved by hand.
    RollbackRefused,
    /// `prove`: no entry before the last checkpoint names the file.
    NotProvable,
}

/// The subject failed before the stage could finish (exit 1).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Files that differ, when the refusal is about a changed bundle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_files: Vec<String>,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into(), hint: None, changed_files: Vec::new() }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn changed(mut self, files: Vec<String>) -> Self {
        self.changed_files = files;
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// The refusal in an error's cause chain, if any.
pub fn refusal_of(err: &anyhow::Error) -> Option<&Refusal> {
    err.chain().find_map(|e| e.downcast_ref::<Refusal>())
}

impl Problem {
    /// The subject failed (exit 1). Prefer a typed [`Refusal`]; this remains
    /// for the bundle loader's messages, rendered as `bundle-invalid`.
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

/// The exit code an error maps to: a [`Refusal`] is 1; else the first [`Problem`] in its chain decides, else 2.
pub fn exit_of(err: &anyhow::Error) -> Exit {
    if refusal_of(err).is_some() {
        return Exit::Failed;
    }
    err.chain().find_map(|e| e.downcast_ref::<Problem>()).map_or(Exit::Error, |p| p.exit)
}

/// The hint attached to an error, if any link of its chain has one.
pub fn hint_of(err: &anyhow::Error) -> Option<&str> {
    if let Some(r) = refusal_of(err) {
        return r.hint.as_deref();
    }
    err.chain().filter_map(|e| e.downcast_ref::<Problem>()).find_map(|p| p.hint.as_deref())
}

/// Shorthand for a [`Problem`] with exit 2.
#[macro_export]
macro_rules! tool_error {
    ($($arg:tt)*) => { $crate::error::Problem::error(format!($($arg)*)) };
}
