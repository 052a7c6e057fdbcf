//! What a remote host is: one `uname` round trip for its kernel name,
//! machine, release and node name (the placement probe and the SSH runner).

use anyhow::{Context, Result, bail};
use ssh2::Session;
use std::time::Instant;

use super::exec_until;

/// What the host reported about itself.
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

/// The command [`observe`] runs: one line each for kernel name, machine,
/// release and node name.
pub const UNAME_COMMAND: &str = "uname -s; uname -m; uname -r; uname -n";

/// Run [`UNAME_COMMAND`] on an open session: the platform and the hostname.
pub fn observe(session: &Session, deadline: Instant) -> Result<(ObservedPlatform, String)> {
    let out = exec_until(session, UNAME_COMMAND, deadline)?;
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
}
