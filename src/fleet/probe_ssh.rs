//! The placement probe for SSH executors: connect (strict host key, public
//! key auth) and ask the host what it is, all within one deadline.
//!
//! Placement calls [`probe`] from one thread per executor; nothing here takes
//! a process-wide lock (libssh2 is initialised once by `ssh2`), so probing a
//! large fleet costs about one timeout, not one per host.

use anyhow::{Context, Result, bail};
use ssh2::Session;
use std::time::{Duration, Instant};

use crate::evidence::artifacts::SshTarget;
use crate::sshx::{self, SshFailure};

/// What the probe saw on the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPlatform {
    /// Lowercase kernel name: `linux`, `darwin`, `freebsd`.
    pub os: String,
    /// Machine as `uname -m` prints it: `x86_64`, `aarch64`, `arm64`.
    pub arch: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
}

impl ObservedPlatform {
    /// `os/arch`, as the placement decision records it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.os, self.arch)
    }
}

/// Probe `target`: connect and run `uname`, everything within `timeout`.
pub fn probe(target: &SshTarget, timeout: Duration) -> Result<ObservedPlatform, SshFailure> {
    let deadline = Instant::now() + timeout;
    let session = sshx::connect_until(target, deadline)?;
    let observed = observe(&session, deadline).map_err(|e| SshFailure {
        code: sshx::UNREACHABLE,
        detail: format!("{}: connected, but cannot run `uname`: {e:#}", sshx::display_target(target)),
    });
    // A polite goodbye is one packet; do not let it stretch the budget much.
    sshx::disconnect(&session, Duration::from_millis(200));
    observed.map(|(platform, _hostname)| platform)
}

/// The command [`observe`] runs: one line each for kernel name, machine,
/// release and node name.
pub const UNAME_COMMAND: &str = "uname -s; uname -m; uname -r; uname -n";

/// Run [`UNAME_COMMAND`] on an open session: the platform and the hostname.
pub fn observe(session: &Session, deadline: Instant) -> Result<(ObservedPlatform, String)> {
    let out = sshx::exec_until(session, UNAME_COMMAND, deadline)?;
    if out.status != 0 {
        bail!("`uname` exited {}: {}", out.status, out.stderr_str().trim());
    }
    parse_uname(&out.stdout_str()).context("unexpected `uname` output")
}

/// Parse the four lines of [`UNAME_COMMAND`].
pub fn parse_uname(text: &str) -> Result<(ObservedPlatform, String)> {
    let mut lines = text.lines().map(str::trim);
    let mut next = |what: &str| -> Result<String> {
        match lines.next() {
            Some(l) if !l.is_empty() => Ok(l.to_string()),
            _ => bail!("no {what} in {text:?}"),
        }
    };
    let os = next("kernel name")?.to_ascii_lowercase();
    let arch = next("machine")?;
    let kernel = next("kernel release")?;
    // Some minimal systems print an empty node name; that is not an error.
    let hostname = next("node name").unwrap_or_default();
    Ok((ObservedPlatform { os, arch, kernel }, hostname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_linux_uname() {
        let (p, host) = parse_uname("Linux\nx86_64\n6.1.0-18-amd64\nbuild-7\n").unwrap();
        assert_eq!(p, ObservedPlatform { os: "linux".into(), arch: "x86_64".into(), kernel: "6.1.0-18-amd64".into() });
        assert_eq!(p.label(), "linux/x86_64");
        assert_eq!(host, "build-7");
    }

    #[test]
    fn rejects_short_output() {
        assert!(parse_uname("Linux\n").is_err());
        assert!(parse_uname("").is_err());
    }

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
        assert_eq!(err.code, sshx::UNREACHABLE, "{err}");
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
        assert_eq!(err.code, sshx::UNREACHABLE, "{err}");
        assert!(took >= Duration::from_millis(600) && took < Duration::from_millis(1500), "{took:?}");
    }
}
