//! Opening an authenticated session: resolve, connect, handshake, check the
//! host key, authenticate, all within one deadline.
//!
//! [`connect_until`] does all of it; [`connect_over`] does the part after the
//! TCP connection, for a caller that opened the connection itself (placement
//! waits for many hosts' identification lines at once, `fleet::banners`).
//! The pieces of resolving and connecting that such a caller needs, and the
//! sentences it reports with, are here too, so both paths say the same.

use ssh2::Session;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::known_hosts::{KnownHostsFile, check_host_key, prefer_host_key_types};
use super::{AUTH_FAILED, SshFailure, UNREACHABLE, display_target, is_connection_error, is_timeout};
use crate::types::SshTarget;

/// Open an authenticated session to `target`, everything bounded by `timeout`.
///
/// The session is left in blocking mode with its libssh2 timeout set to what
/// remained of `timeout`; callers set their own with [`Session::set_timeout`].
pub fn connect(target: &SshTarget, timeout: Duration) -> Result<Session, SshFailure> {
    connect_until(target, Instant::now() + timeout)
}

/// [`connect`] with an absolute deadline, so a caller can bound connect plus
/// what follows (the probe's `uname`) by one budget.
pub fn connect_until(target: &SshTarget, deadline: Instant) -> Result<Session, SshFailure> {
    let unreachable = |detail: String| unreachable(target, detail);
    check_host_name(&target.host).map_err(&unreachable)?;
    let addrs = resolve(&target.host, target.port, deadline).map_err(&unreachable)?;
    let tcp = tcp_connect(&addrs, deadline).map_err(&unreachable)?;
    connect_over(tcp, target, deadline)
}

/// `target` cannot be reached, for this reason.
pub(crate) fn unreachable(target: &SshTarget, detail: String) -> SshFailure {
    SshFailure::new(UNREACHABLE, format!("{}: {detail}", display_target(target)))
}

/// ssh2 turns names into C strings with `unwrap`: refuse what would panic.
pub(crate) fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() || host.contains(['\0', ' ', '\t', '\n']) {
        return Err(format!("invalid host name {host:?}"));
    }
    Ok(())
}

/// The rest of [`connect_until`] over a TCP connection to `target` that the
/// caller opened (blocking or not; the host's identification line may be
/// waiting in it unread, for libssh2 to read in the handshake): handshake,
/// host key, authentication, within `deadline`.
pub fn connect_over(tcp: TcpStream, target: &SshTarget, deadline: Instant) -> Result<Session, SshFailure> {
    let who = display_target(target);
    let unreachable = |detail: String| SshFailure::new(UNREACHABLE, format!("{who}: {detail}"));
    let left = remaining(deadline);
    let _ = tcp.set_nonblocking(false);
    // libssh2 polls the socket itself; these only guard any direct use.
    let _ = tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))));
    let _ = tcp.set_write_timeout(Some(left.max(Duration::from_millis(1))));
    // SSH exchanges many small packets: do not let Nagle delay them.
    let _ = tcp.set_nodelay(true);

    let mut session = Session::new().map_err(|e| unreachable(format!("cannot create an SSH session: {e}")))?;
    // Read known_hosts before the handshake so the host key algorithms it
    // lists can be preferred (as OpenSSH does); otherwise the server may offer
    // a key type that known_hosts does not list and a known host looks unknown.
    let known = KnownHostsFile::load(Path::new(&expand_home(&target.known_hosts_file)));
    if let Ok(k) = &known {
        let bare = target.host.trim_start_matches('[').trim_end_matches(']');
        let types = k.key_types_for(bare, target.port);
        if !types.is_empty() {
            prefer_host_key_types(&session, &types);
        }
    }

    session.set_tcp_stream(tcp);
    set_remaining_timeout(&session, deadline).map_err(|()| unreachable("timed out before the SSH handshake".into()))?;
    session.handshake().map_err(|e| {
        if is_timeout(&e) {
            unreachable(no_banner_in_time(e.message()))
        } else {
            unreachable(format!("SSH handshake failed: {}", e.message()))
        }
    })?;

    check_host_key(&session, target, known).map_err(|f| SshFailure::new(f.code, format!("{who}: {}", f.detail)))?;

    let identity = PathBuf::from(expand_home(&target.identity_file));
    if let Err(e) = fs::File::open(&identity) {
        return Err(SshFailure::new(
            AUTH_FAILED,
            format!("{who}: cannot read identity file `{}`: {e}", identity.display()),
        ));
    }
    set_remaining_timeout(&session, deadline).map_err(|()| unreachable("timed out before authentication".into()))?;
    if let Err(e) = session.userauth_pubkey_file(&target.user, None, &identity, None) {
        return Err(if is_connection_error(&e) {
            unreachable(format!("connection failed during authentication: {}", e.message()))
        } else {
            SshFailure::new(
                AUTH_FAILED,
                format!("{who}: public key `{}` was not accepted: {}", identity.display(), e.message()),
            )
        });
    }
    if !session.authenticated() {
        return Err(SshFailure::new(AUTH_FAILED, format!("{who}: not authenticated with `{}`", identity.display())));
    }
    Ok(session)
}

/// Close a session politely (best effort, at most `timeout`): sshd logs a clean
/// disconnect instead of a reset.
pub fn disconnect(session: &Session, timeout: Duration) {
    session.set_blocking(true);
    session.set_timeout(millis(timeout));
    let _ = session.disconnect(None, "agentplane done", None);
}

/// Resolve `host:port`; a name is resolved on a helper thread so a slow
/// resolver cannot outlive the deadline (the thread finishes on its own).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if let Some(addr) = ip_literal(host, port) {
        return Ok(vec![addr]);
    }
    let (tx, rx) = mpsc::channel();
    let name = bare_host(host).to_string();
    std::thread::Builder::new()
        .name("ssh-resolve".into())
        .spawn(move || {
            let _ = tx.send(lookup(&name, port));
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match rx.recv_timeout(remaining(deadline)) {
        Ok(r) => r,
        Err(_) => Err(resolve_timed_out(host)),
    }
}

/// A host written as an address (`10.0.0.1`, `[::1]`) needs no resolver.
pub(crate) fn ip_literal(host: &str, port: u16) -> Option<SocketAddr> {
    bare_host(host).parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port))
}

fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Ask the system resolver (blocking, as long as it takes) for `host`'s addresses.
pub(crate) fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let bare = bare_host(host);
    match (bare, port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()) {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(format!("`{bare}` resolves to no address")),
        Err(e) => Err(format!("cannot resolve `{bare}`: {e}")),
    }
}

/// The resolver did not answer before the deadline.
pub(crate) fn resolve_timed_out(host: &str) -> String {
    format!("resolving `{}` timed out", bare_host(host))
}

/// A TCP connect to `addr` failed.
pub(crate) fn connect_failed(addr: &SocketAddr, e: &std::io::Error) -> String {
    format!("cannot connect to {addr}: {e}")
}

/// A TCP connect to `addr` did not complete before the deadline.
pub(crate) fn connect_timed_out(addr: &SocketAddr) -> String {
    format!("connecting to {addr} timed out")
}

/// What libssh2 says when its handshake waited out the deadline; a caller
/// that waits for the banner itself reports a silent host in the same words.
pub(crate) const WAIT_TIMED_OUT: &str = "Timed out waiting on socket";

/// The host said nothing that starts an SSH session before the deadline.
pub(crate) fn no_banner_in_time(why: &str) -> String {
    format!("no SSH banner or handshake within the timeout ({why})")
}

/// Connect to the first address that accepts before the deadline.
fn tcp_connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(connect_timed_out(addr));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => last = connect_timed_out(addr),
            Err(e) => last = connect_failed(addr, &e),
        }
    }
    Err(last)
}

/// Set the libssh2 blocking-call timeout to what is left until `deadline`
/// (libssh2 treats 0 as "no timeout", so an expired deadline is an error).
pub(super) fn set_remaining_timeout(session: &Session, deadline: Instant) -> Result<(), ()> {
    let left = remaining(deadline);
    if left.is_zero() {
        return Err(());
    }
    session.set_timeout(millis(left).max(1));
    Ok(())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A duration as libssh2's `u32` milliseconds (saturating).
pub fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest).to_string_lossy().into_owned(),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_that_would_panic_ssh2_is_refused() {
        let t = SshTarget {
            host: "bad\0host".into(),
            port: 22,
            user: "u".into(),
            identity_file: "/x".into(),
            known_hosts_file: "/x".into(),
        };
        let Err(err) = connect(&t, Duration::from_secs(1)) else { panic!("connected") };
        assert_eq!(err.code, UNREACHABLE);
    }
}
