//! The placement probe for SSH executors: connect (strict host key, public
//! key auth) and ask the host what it is, all within one deadline.
//!
//! Placement calls [`probe`] from one thread per executor; nothing here takes
//! a process-wide lock (libssh2 is initialised once by `ssh2`), so probing a
//! large fleet costs about one timeout, not one per host.

use std::time::{Duration, Instant};

use crate::ssh::platform::{ObservedPlatform, observe};
use crate::ssh::{self, SshFailure};
use crate::types::SshTarget;

/// Probe `target`: connect and run `uname`, everything within `timeout`.
pub fn probe(target: &SshTarget, timeout: Duration) -> Result<ObservedPlatform, SshFailure> {
    let deadline = Instant::now() + timeout;
    let session = ssh::connect_until(target, deadline)?;
    let observed = observe(&session, deadline).map_err(|e| SshFailure {
        code: ssh::UNREACHABLE,
        detail: format!("{}: connected, but cannot run `uname`: {e:#}", ssh::display_target(target)),
    });
    // A polite goodbye is one packet; do not let it stretch the budget much.
    ssh::disconnect(&session, Duration::from_millis(200));
    observed.map(|(platform, _hostname)| platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_port_is_reported_within_the_timeout() {
        // A port nobody listens on: bind, learn it, drop the listener.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "nobody".into(),
            identity_file: "/nonexistent".into(),
            known_hosts_file: "/nonexistent".into(),
        };
        let t0 = Instant::now();
        let err = probe(&target, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.code, ssh::UNREACHABLE, "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn silent_listener_times_out() {
        // Accepts (the kernel does, via the backlog) and never speaks.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port: l.local_addr().unwrap().port(),
            user: "nobody".into(),
            identity_file: "/nonexistent".into(),
            known_hosts_file: "/nonexistent".into(),
        };
        let t0 = Instant::now();
        let err = probe(&target, Duration::from_millis(700)).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(err.code, ssh::UNREACHABLE, "{err}");
        assert!(took >= Duration::from_millis(600) && took < Duration::from_millis(1500), "{took:?}");
    }
}
