//! What a VM needs on an SSH executor, asked of the host in one round trip:
//! `qemu-system-x86_64` (on the remote `PATH`, or the path the executor
//! names), a kernel QEMU can read (the executor's, else the newest
//! `/boot/vmlinuz-*`), and whether `/dev/kvm` is there and open to the login.
//! Placement runs it to accept or reject the executor (`qemu-missing`,
//! `kernel-missing`, `kvm-required`); the runner runs it again before it
//! boots, since the host may have changed in between.
//!
//! The guest's busybox is agentplane's own (the static one the local runner
//! uses), so the executor must be x86_64 like the guests this runner boots.

use crate::runner::contract::shell_quote;
use crate::types::RejectCode;
pub use crate::types::{KvmDevice, VmHost, VmHostConfig};

/// The QEMU binary the runner boots (x86_64 guests).
pub const QEMU: &str = "qemu-system-x86_64";
/// The architecture an executor must have: the guest's, and the busybox's.
pub const GUEST_ARCH: &str = "x86_64";

impl VmHostConfig {
    /// From an executor's capabilities (`capabilities.vm`); empty when absent.
    pub fn from_caps(caps: &serde_json::Value) -> VmHostConfig {
        let s = |k: &str| caps.get("vm").and_then(|v| v.get(k)).and_then(|v| v.as_str()).map(str::to_string);
        VmHostConfig { qemu: s("qemu"), kernel: s("kernel") }
    }
}

/// Marks where the probe's output starts when it follows other commands.
pub const BEGIN: &str = "@@agentplane-vm-host";

/// The shell that asks the host (POSIX sh; prints `key=value` lines).
pub fn command(cfg: &VmHostConfig) -> String {
    let q = cfg.qemu.as_deref().map(shell_quote).unwrap_or_else(|| "''".into());
    let k = cfg.kernel.as_deref().map(shell_quote).unwrap_or_else(|| "''".into());
    format!(
        "echo {BEGIN}; q={q}; k={k}\n\
         [ -n \"$q\" ] || q=$(command -v {QEMU} 2>/dev/null)\n\
         if [ -n \"$q\" ] && [ -f \"$q\" ] && [ -x \"$q\" ]; then echo \"qemu=$q\"; else echo \"no-qemu=$q\"; fi\n\
         if [ -n \"$k\" ]; then set -- \"$k\"; else set -- /boot/vmlinuz-*; fi\n\
         for f in \"$@\"; do [ -e \"$f\" ] || continue; if [ -f \"$f\" ] && [ -r \"$f\" ]; then echo \"kernel=$f\"; else echo \"unreadable=$f\"; fi; done\n\
         if [ -e /dev/kvm ]; then if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo kvm=usable; else echo kvm=denied; fi; else echo kvm=absent; fi\n\
         echo \"arch=$(uname -m)\"\n"
    )
}

/// Read the probe's output (everything after [`BEGIN`]).
pub fn parse(text: &str, cfg: &VmHostConfig) -> Option<VmHost> {
    let body = text.split_once(BEGIN)?.1;
    let mut host =
        VmHost { qemu: None, kernel: None, kvm: KvmDevice::Absent, arch: String::new(), problems: Vec::new() };
    let mut kernels = Vec::new();
    let mut unreadable = Vec::new();
    let mut no_qemu = None;
    for line in body.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "qemu" => host.qemu = Some(v.to_string()),
            "no-qemu" => no_qemu = Some(v.to_string()),
            "kernel" => kernels.push(v.to_string()),
            "unreadable" => unreadable.push(v.to_string()),
            "kvm" => {
                host.kvm = match v {
                    "usable" => KvmDevice::Usable,
                    "denied" => KvmDevice::Denied,
                    _ => KvmDevice::Absent,
                }
            }
            "arch" => host.arch = v.to_string(),
            _ => {}
        }
    }
    if let Some(q) = no_qemu.filter(|_| host.qemu.is_none()) {
        host.problems.push(match (q.is_empty(), &cfg.qemu) {
            (_, Some(named)) => format!("`{named}` (capabilities.vm.qemu) is not an executable file there"),
            (true, None) => format!("`{QEMU}` is not on its PATH"),
            (false, None) => format!("`{q}` is not an executable file"),
        });
    }
    kernels.sort_by(|a, b| super::super::kernel::natural_cmp(a, b));
    host.kernel = kernels.pop();
    if host.kernel.is_none() {
        host.problems.push(match (&cfg.kernel, unreadable.first()) {
            (Some(named), _) => format!("the kernel `{named}` (capabilities.vm.kernel) is not a readable file there"),
            (None, Some(u)) => format!("its kernel `{u}` is not readable by the login"),
            (None, None) => "it has no `/boot/vmlinuz-*`".into(),
        });
    }
    Some(host)
}

impl VmHost {
    /// Why a VM cannot run there (the first missing piece), as placement
    /// reports it; `None` when everything is there. `requires_kvm`: the
    /// bundle refuses TCG.
    pub fn rejection(&self, requires_kvm: bool) -> Option<(RejectCode, String)> {
        if crate::types::norm_arch(&self.arch) != GUEST_ARCH {
            return Some((
                RejectCode::RunnerUnsupported,
                format!(
                    "the VM runner boots {GUEST_ARCH} guests with agentplane's own busybox; the host is {}",
                    self.arch
                ),
            ));
        }
        if self.qemu.is_none() {
            return Some((RejectCode::QemuMissing, self.problem("QEMU")));
        }
        if self.kernel.is_none() {
            return Some((RejectCode::KernelMissing, self.problem("kernel")));
        }
        if requires_kvm && self.kvm != KvmDevice::Usable {
            let why = match self.kvm {
                KvmDevice::Denied => "/dev/kvm is there but the login may not open it (not in the `kvm` group?)",
                _ => "it has no /dev/kvm",
            };
            return Some((RejectCode::KvmRequired, format!("the bundle requires KVM and {why}")));
        }
        None
    }

    fn problem(&self, what: &str) -> String {
        let p = self.problems.iter().find(|p| p.contains(if what == "QEMU" { QEMU } else { "kernel" }));
        p.or(self.problems.first()).cloned().unwrap_or_else(|| format!("no {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_probe(cfg: &VmHostConfig) -> VmHost {
        let out = std::process::Command::new("/bin/sh").arg("-c").arg(command(cfg)).output().unwrap();
        parse(&String::from_utf8_lossy(&out.stdout), cfg).expect("the probe prints its marker")
    }

    #[test]
    fn named_paths_that_do_not_exist_are_missing_pieces() {
        let cfg = VmHostConfig { qemu: Some("/nonexistent/qemu".into()), kernel: Some("/nonexistent/vmlinuz".into()) };
        let host = run_probe(&cfg);
        assert_eq!(host.qemu, None);
        assert_eq!(host.kernel, None);
        let (code, detail) = host.rejection(false).unwrap();
        if host.arch == GUEST_ARCH {
            assert_eq!(code, RejectCode::QemuMissing, "{detail}");
            assert!(detail.contains("/nonexistent/qemu"), "{detail}");
        }
        assert!(host.problems.iter().any(|p| p.contains("/nonexistent/vmlinuz")), "{:?}", host.problems);
    }

    #[test]
    fn a_named_kernel_that_is_a_directory_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let cfg = VmHostConfig { qemu: Some("/bin/sh".into()), kernel: Some(d.path().display().to_string()) };
        let host = run_probe(&cfg);
        assert_eq!(host.qemu.as_deref(), Some("/bin/sh"));
        assert_eq!(host.kernel, None, "a directory is not a kernel");
    }

    #[test]
    fn parse_picks_the_newest_kernel_and_reads_kvm() {
        let text = format!(
            "junk\n{BEGIN}\nqemu=/usr/bin/{QEMU}\nkernel=/boot/vmlinuz-6.9.0\nkernel=/boot/vmlinuz-6.10.1\nkvm=denied\narch=x86_64\n"
        );
        let host = parse(&text, &VmHostConfig::default()).unwrap();
        assert_eq!(host.kernel.as_deref(), Some("/boot/vmlinuz-6.10.1"));
        assert_eq!(host.kvm, KvmDevice::Denied);
        assert_eq!(host.rejection(false), None);
        assert_eq!(host.rejection(true).unwrap().0, RejectCode::KvmRequired);
        let arm = VmHost { arch: "aarch64".into(), ..host };
        assert_eq!(arm.rejection(false).unwrap().0, RejectCode::RunnerUnsupported);
        assert!(parse("no marker", &VmHostConfig::default()).is_none());
    }

    #[test]
    fn hostile_paths_are_quoted() {
        let cfg = VmHostConfig { qemu: Some("/x'; touch /tmp/pwned-ap; '".into()), kernel: None };
        let host = run_probe(&cfg);
        assert!(!std::path::Path::new("/tmp/pwned-ap").exists());
        assert_eq!(host.qemu, None);
    }
}
