//! Opening an authenticated session: resolve, connect, handshake, check the
//! host key, authenticate, all within one deadline.

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
    let who = display_target(target);
    let unreachable = |detail: String| SshFailure::new(UNREACHABLE, format!("{who}: {detail}"));

    // ssh2 turns names into C strings with `unwrap`: refuse what would panic.
    if target.host.is_empty() || target.host.contains(['\0', ' ', '\t', '\n']) {
        return Err(unreachable(format!("invalid host name {:?}", target.host)));
    }
    let addrs = resolve(&target.host, target.port, deadline).map_err(&unreachable)?;
    let tcp = tcp_connect(&addrs, deadline).map_err(&unreachable)?;

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
            unreachable(format!("no SSH banner or handshake within the timeout ({})", e.message()))
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
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = bare.to_string();
    std::thread::Builder::new()
        .name("ssh-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match rx.recv_timeout(remaining(deadline)) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("`{bare}` resolves to no address")),
        Ok(Err(e)) => Err(format!("cannot resolve `{bare}`: {e}")),
        Err(_) => Err(format!("resolving `{bare}` timed out")),
    }
}

/// Connect to the first address that accepts before the deadline.
fn tcp_connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(format!("connecting to {addr} timed out"));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                // libssh2 polls the socket itself; these only guard any direct use.
                let _ = s.set_read_timeout(Some(left));
                let _ = s.set_write_timeout(Some(left));
                // SSH exchanges many small packets: do not let Nagle delay them.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("connecting to {addr} timed out");
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
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
