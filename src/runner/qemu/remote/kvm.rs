//! KVM on the executor: used only when a test boot there proves it works,
//! as on this host ([`super::super::kvm`]), but probed once per run (no cache
//! on the executor).

use anyhow::{Context, Result};
use ssh2::Sftp;
use std::path::{Path, PathBuf};

use super::super::{Accel, BootArgs, initramfs};
use super::{RemoteQemuRunner, quote_args};
use crate::runner::contract::shell_quote;
use crate::runner::ssh as ssh_runner;
use crate::ssh;

/// How long a remote KVM test boot may take (as the local probe).
const KVM_PROBE_SECS: u64 = 3;

impl RemoteQemuRunner {
    /// Whether KVM really works on the executor: a test boot of the probe
    /// image under KVM there must reach userspace within the probe timeout.
    pub(super) fn kvm_works(&self, sftp: &Sftp, qemu: &str, kernel: &str, busybox: &Path) -> Result<(bool, String)> {
        match std::env::var("AGENTPLANE_QEMU_ACCEL").ok().as_deref() {
            Some("tcg") => return Ok((false, "AGENTPLANE_QEMU_ACCEL=tcg".into())),
            Some("kvm") => return Ok((true, "AGENTPLANE_QEMU_ACCEL=kvm (not probed)".into())),
            _ => {}
        }
        let local = self.local.as_ref().context("the VM was not prepared")?;
        let probe = local.path().join("probe.cpio");
        initramfs::write(&probe, busybox, None)?;
        let dir = self.remote.dir()?;
        ssh::upload_file(sftp, &probe, Path::new(&format!("{dir}/probe.cpio")))?;
        let p = |n: &str| PathBuf::from(format!("{dir}/probe-{n}"));
        let serial = [p("console"), p("stdout"), p("stderr"), p("control")];
        let (initrd, kernel) = (PathBuf::from(format!("{dir}/probe.cpio")), PathBuf::from(kernel));
        let args = BootArgs {
            accel: Accel::Kvm,
            mem_mib: 128,
            vcpu: 1,
            kernel: &kernel,
            initrd: &initrd,
            extra_append: "agentplane.probe=1",
            serial: [&serial[0], &serial[1], &serial[2], &serial[3]],
            network: false,
        };
        let cmd = format!(
            "cd {d} && : > probe-console && : > probe-stdout && : > probe-stderr && : > probe-control && \
             timeout -s KILL {KVM_PROBE_SECS} {q} {args} >/dev/null 2>&1; grep -qx @probe-ok probe-control && echo ok; \
             rm -f probe-* probe.cpio",
            d = shell_quote(dir),
            q = shell_quote(qemu),
            args = quote_args(&args.to_args()),
        );
        let out = ssh::exec(self.remote.session()?, &cmd, ssh_runner::STEP_TIMEOUT)?;
        Ok(if out.stdout_str().trim() == "ok" {
            (true, format!("a test boot under KVM on {} reached userspace", self.executor))
        } else {
            (
                false,
                format!("a test boot under KVM on {} did not reach userspace within {KVM_PROBE_SECS} s", self.executor),
            )
        })
    }
}
