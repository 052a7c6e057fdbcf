//! SSH sessions to executors, shared by the placement probe and the SSH runner.
//!
//! [`connect`] opens an authenticated `ssh2` session with every step bounded by
//! one deadline, and checks the host key strictly against the target's
//! known_hosts file (`known_hosts.rs`): no trust on first use, and known_hosts is
//! never written. Failures carry a stable code ([`SshFailure`]) that placement
//! records as the rejection reason.
//!
//! The rest runs a command ([`exec`]), moves directory trees over SFTP
//! (`sftp.rs`) and asks a host what it is ([`platform`]).

pub mod config;
mod connect;
mod exec;
mod known_hosts;
pub mod platform;
mod sftp;

pub(crate) use connect::{
    WAIT_TIMED_OUT, check_host_name, connect_failed, connect_timed_out, ip_literal, lookup, no_banner_in_time,
    resolve_timed_out, unreachable,
};
pub use connect::{connect, connect_over, connect_until, disconnect, millis};
pub use exec::{ExecOutput, exec, exec_ok, exec_until};
pub use sftp::{TransferReport, download_dir, upload_dir, upload_file};

use ssh2::ErrorCode;
use std::fmt;

use crate::types::{RejectCode, SshTarget};

/// The executor cannot be reached: DNS, refused, no route, connect timed out,
/// no SSH banner, handshake failed or timed out.
pub const UNREACHABLE: RejectCode = RejectCode::SshUnreachable;
/// known_hosts has no key for this host (or cannot be read).
pub const HOST_KEY_UNKNOWN: RejectCode = RejectCode::SshHostKeyUnknown;
/// known_hosts has a different key for this host (possible man in the middle),
/// or the presented key is marked `@revoked`.
pub const HOST_KEY_CHANGED: RejectCode = RejectCode::SshHostKeyChanged;
/// The identity file is missing or unreadable, or the server rejected it.
pub const AUTH_FAILED: RejectCode = RejectCode::SshAuthFailed;

// libssh2 error codes we tell apart (see libssh2.h).
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;

/// Why an SSH connection could not be used, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshFailure {
    /// One of [`UNREACHABLE`], [`HOST_KEY_UNKNOWN`], [`HOST_KEY_CHANGED`], [`AUTH_FAILED`].
    pub code: RejectCode,
    /// What happened, for a person.
    pub detail: String,
}

impl SshFailure {
    pub(crate) fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        SshFailure { code, detail: detail.into() }
    }
}

impl fmt::Display for SshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for SshFailure {}

/// `user@host:port`, as inventories and messages name an SSH target.
pub fn display_target(target: &SshTarget) -> String {
    format!("{}@{}:{}", target.user, target.host, target.port)
}

/// Whether an `ssh2` error is libssh2's EAGAIN (a non-blocking call would block).
pub fn is_would_block(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

pub(crate) fn is_timeout(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT)
}

/// Whether an `ssh2` error means the transport is gone (or stalled), as
/// opposed to the server refusing a request.
pub fn is_connection_error(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Session(
            LIBSSH2_ERROR_TIMEOUT
                | LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_SOCKET_RECV
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
        )
    )
}
