//! The placement probe for SSH executors: connect (strict host key, public
//! key auth) and ask the host what it is, all within one deadline.
//!
//! Placement waits for every host's identification line in a few loops
//! (`fleet::banners`) and calls [`probe_over`] from one thread per host that
//! spoke; nothing here takes a process-wide lock (libssh2 is initialised once
//! by `ssh2`), so probing a large fleet costs about one timeout, not one per
//! host. [`probe`] does all of it on the calling thread.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::runner::qemu::remote::host::{self, VmHost, VmHostConfig};
use crate::ssh::platform::{ObservedPlatform, UNAME_COMMAND, parse_uname};
use crate::ssh::{self, SshFailure};
use crate::types::SshTarget;

/// Probe `target`: connect and run `uname` and, for a VM bundle (`vm`), ask
/// what QEMU, kernel and KVM the host has ([`host`]), all in one round trip
/// and within `timeout`.
pub fn probe(
    target: &SshTarget,
    timeout: Duration,
    vm: Option<&VmHostConfig>,
) -> Result<(ObservedPlatform, Option<VmHost>), SshFailure> {
    let deadline = Instant::now() + timeout;
    let session = ssh::connect_until(target, deadline)?;
    ask(&session, target, deadline, vm)
}

/// [`probe`] over a connection to `target` that the caller opened (and heard
/// the host's identification line on, unread), within the host's `deadline`.
pub fn probe_over(
    tcp: TcpStream,
    target: &SshTarget,
    deadline: Instant,
    vm: Option<&VmHostConfig>,
) -> Result<(ObservedPlatform, Option<VmHost>), SshFailure> {
    let session = ssh::connect_over(tcp, target, deadline)?;
    ask(&session, target, deadline, vm)
}

/// Run `uname` (and the VM probe) in one round trip, then say goodbye.
fn ask(
    session: &ssh2::Session,
    target: &SshTarget,
    deadline: Instant,
    vm: Option<&VmHostConfig>,
) -> Result<(ObservedPlatform, Option<VmHost>), SshFailure> {
    let command = match vm {
        Some(cfg) => format!("{UNAME_COMMAND}\n{}", host::command(cfg)),
        None => UNAME_COMMAND.to_string(),
    };
    let observed = (|| -> anyhow::Result<_> {
        let out = ssh::exec_until(session, &command, deadline)?;
        let text = out.stdout_str();
        let (uname, _) = text.split_once(host::BEGIN).unwrap_or((&text, ""));
        if out.status != 0 {
            anyhow::bail!("exited {}: {}", out.status, out.stderr_str().trim());
        }
        let (platform, _hostname) = parse_uname(uname)?;
        let found = match vm {
            Some(cfg) => Some(host::parse(&text, cfg).ok_or_else(|| anyhow::anyhow!("no answer to the VM probe"))?),
            None => None,
        };
        Ok((platform, found))
    })()
    .map_err(|e| SshFailure {
        code: ssh::UNREACHABLE,
        detail: format!("{}: connected, but cannot run `uname`: {e:#}", ssh::display_target(target)),
    });
    // A polite goodbye is one packet; do not let it stretch the budget much.
    ssh::disconnect(session, Duration::from_millis(200));
    observed
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
        let err = probe(&target, Duration::from_secs(2), None).unwrap_err();
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
        let err = probe(&target, Duration::from_millis(700), None).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(err.code, ssh::UNREACHABLE, "{err}");
        assert!(took >= Duration::from_millis(600) && took < Duration::from_millis(1500), "{took:?}");
    }
}
