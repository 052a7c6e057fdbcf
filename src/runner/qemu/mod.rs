//! The QEMU runner: the smoke script runs in a throwaway Linux VM.
//!
//! `prepare` finds `qemu-system-x86_64`, a static busybox and a kernel,
//! assembles an initramfs in a temp dir ([`initramfs`]: busybox, the bundle,
//! the guest `/init` from `runners/qemu/init`) and decides between KVM and
//! TCG ([`kvm`]: KVM only when a test boot proves it works). `start` boots
//! it. The guest talks back over four serial ports, each a file on the host
//! ([`channel`]): console, the script's stdout, its stderr, and a control
//! stream carrying the guest's kernel and arch, the exit status and the
//! products (base64, with size and sha256). `wait` follows those files while
//! QEMU runs, so output streams live.
//!
//! Deadlines: `job.timeout` counts from when the guest starts the script, not
//! from power-on, so a slow TCG boot does not eat the script's time (the boot
//! itself gets [`BOOT_TIMEOUT`]). The guest enforces the timeout itself (TERM,
//! grace, KILL, then it still sends the products back); the host stops the VM
//! if the guest has not reported shortly after, and at once on cancel.
//! Containment: QEMU runs under `setpriv --pdeathsig KILL`, so it dies with
//! agentplane (even a `kill -9` of it); the temp dir is private (0700, files
//! 0600: the initramfs carries the secrets) and names its owner, so the next
//! run sweeps a dir whose owner died ([`workdir`]). The receipt
//! ([`Runner::containment`]) says whether the VM had to be killed and what
//! was found alive after it was waited for.
//!
//! `runners/README.md` is the user-facing contract.

mod channel;
mod cpio;
mod initramfs;
mod kernel;
mod kvm;
pub mod remote;
mod watch;
pub(crate) mod workdir;

pub use kvm::KvmVerdict;

use anyhow::{Context, Result, bail};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::contract::{self, Stop};
use super::{Event, Exit, Job, Runner};
use crate::types::{Containment, Environment, Isolation, Mechanism};
use channel::{ControlState, Tail};
use kernel::BootImage;
use watch::{Verdict, Watch};

/// What to install when a piece is missing (Debian/Ubuntu package names).
pub(crate) const INSTALL_HINT: &str = "install with `apt-get install qemu-system-x86 busybox-static linux-image-amd64`";

/// How long the VM may take from power-on to starting the script.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// After the guest's own deadline and grace, how long the host waits for it
/// to report before it stops the VM.
const HOST_SLACK: Duration = Duration::from_secs(5);
/// Once the script has ended, how long the control stream may stay silent
/// (products still coming) before the VM counts as hung.
const REPORT_STALL: Duration = Duration::from_secs(30);
/// Between SIGTERM and SIGKILL when stopping QEMU itself.
const QEMU_STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);
const DEFAULT_MEM_MIB: u64 = 256;
const DEFAULT_VCPU: u64 = 1;
const QEMU: &str = "qemu-system-x86_64";

/// The accelerator a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The host files behind the guest's serial ports, plus QEMU's own output.
struct Ports {
    console: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    control: PathBuf,
    qemu_log: PathBuf,
}

impl Ports {
    /// Create the (empty) files in `dir`. QEMU appends to them, so the host
    /// can open them first and follow them from byte zero.
    fn create(dir: &Path) -> Result<Ports> {
        let p = Ports {
            console: dir.join("console.log"),
            stdout: dir.join("stdout.log"),
            stderr: dir.join("stderr.log"),
            control: dir.join("control.log"),
            qemu_log: dir.join("qemu.log"),
        };
        // Private (0600) like everything in the temp dir: QEMU opens them
        // with O_APPEND|O_CREAT, which keeps the mode they were made with.
        for f in [&p.console, &p.stdout, &p.stderr, &p.control, &p.qemu_log] {
            workdir::private_file(f)?;
        }
        Ok(p)
    }
}

/// QEMU's arguments for one boot, wherever it runs (here or on an SSH
/// executor). `serial` are the files behind ttyS0..ttyS3, in order: the
/// console, stdout, stderr and control ports.
pub(crate) struct BootArgs<'a> {
    pub accel: Accel,
    pub mem_mib: u64,
    pub vcpu: u64,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub extra_append: &'a str,
    pub serial: [&'a Path; 4],
    pub network: bool,
}

impl BootArgs<'_> {
    pub(crate) fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut arg = |a: &str| args.push(a.into());
        for a in ["-accel", self.accel.as_str(), "-m", &self.mem_mib.to_string(), "-smp", &self.vcpu.to_string()] {
            arg(a);
        }
        // No default devices, no display, no monitor: only what is listed here.
        for a in ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"] {
            arg(a);
        }
        arg("-nic");
        arg(if self.network { "user,model=e1000" } else { "none" });
        // quiet + loglevel: keep kernel chatter off even the console; panic=-1
        // turns a guest panic into a reboot, which -no-reboot turns into an exit.
        arg("-append");
        arg(format!("console=ttyS0 quiet loglevel=3 panic=-1 8250.nr_uarts=4 {}", self.extra_append).trim_end());
        for (i, p) in self.serial.iter().enumerate() {
            let mut spec = OsString::from(format!("file,id=ser{i},append=on,path="));
            spec.push(p.as_os_str());
            args.push("-chardev".into());
            args.push(spec);
            args.push("-serial".into());
            args.push(format!("chardev:ser{i}").into());
        }
        args.extend(["-kernel".into(), self.kernel.into(), "-initrd".into(), self.initrd.into()]);
        args
    }
}

/// The QEMU command line for one boot on this host. ttyS0..ttyS3 are, in
/// order, the console, stdout, stderr and control ports.
#[allow(clippy::too_many_arguments)]
fn qemu_command(
    qemu: &Path,
    accel: Accel,
    mem_mib: u64,
    vcpu: u64,
    boot: &BootImage,
    initrd: &Path,
    extra_append: &str,
    ports: &Ports,
    network: bool,
) -> Command {
    // Under `setpriv --pdeathsig KILL` (util-linux; it sets the death signal,
    // then execs QEMU, so the child's pid is QEMU's): when agentplane dies,
    // even by `kill -9`, the kernel kills the VM. The death signal fires when
    // the *thread* that spawned the process exits, so the spawn must happen
    // on a thread that lives as long as the VM: `QemuRunner::start` runs on
    // the thread that then waits for the VM and tears it down (`execute`
    // drives every step from its caller's thread), and the KVM probe spawns
    // and waits on one thread too.
    let mut cmd = match setpriv() {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL"]).arg(qemu);
            c
        }
        None => Command::new(qemu),
    };
    let serial = [ports.console.as_path(), &ports.stdout, &ports.stderr, &ports.control];
    let args = BootArgs { accel, mem_mib, vcpu, kernel: &boot.path, initrd, extra_append, serial, network };
    cmd.args(args.to_args());
    let log = File::options().append(true).open(&ports.qemu_log);
    let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
        Err(_) => (Stdio::null(), Stdio::null()),
    };
    // Its own process group: a Ctrl-C at the terminal reaches agentplane,
    // which then stops the VM in order, rather than QEMU directly.
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    cmd
}

/// `setpriv` (util-linux), found once; `None` where it is missing, and
/// then the receipt says the VM would not die with agentplane.
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SETPRIV.get_or_init(|| contract::which("setpriv")).as_deref()
}

/// `qemu-system-x86_64`: `$AGENTPLANE_QEMU`, else from `PATH`.
fn find_qemu() -> Result<PathBuf> {
    if let Some(q) = std::env::var_os("AGENTPLANE_QEMU").filter(|q| !q.is_empty()) {
        let q = PathBuf::from(q);
        if !q.is_file() {
            bail!("`{}` (from AGENTPLANE_QEMU) does not exist; {INSTALL_HINT}", q.display());
        }
        return Ok(q);
    }
    contract::which(QEMU).with_context(|| format!("`{QEMU}` is not on PATH; {INSTALL_HINT}"))
}

/// A statically linked busybox: `$AGENTPLANE_BUSYBOX`, else `/bin/busybox`
/// or `/usr/bin/busybox`. A dynamic one cannot run in the initramfs.
fn find_busybox() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("AGENTPLANE_BUSYBOX").filter(|b| !b.is_empty()) {
        Some(b) => vec![b.into()],
        None => vec!["/bin/busybox".into(), "/usr/bin/busybox".into()],
    };
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        bail!("no busybox at `{}`; {INSTALL_HINT}", candidates[0].display());
    };
    let data = std::fs::read(found).with_context(|| format!("cannot read `{}`", found.display()))?;
    if !is_static_elf(&data) {
        bail!("`{}` is not a statically linked x86-64 busybox; {INSTALL_HINT}", found.display());
    }
    Ok(found.clone())
}

/// An x86-64 ELF executable without a PT_INTERP program header.
fn is_static_elf(d: &[u8]) -> bool {
    let u16_at = |o: usize| d.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| d.get(o..o + 8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok());
    if d.get(..6) != Some(b"\x7fELF\x02\x01") || u16_at(0x12) != Some(62) {
        return false;
    }
    let (Some(phoff), Some(size), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..num).all(|i| d.get(phoff + i * size..phoff + i * size + 4).is_some_and(|t| t != 3u32.to_le_bytes()))
}

/// Where agentplane keeps what it can rebuild (decompressed kernels, the KVM
/// verdict): `$AGENTPLANE_CACHE_DIR`, else `$XDG_CACHE_HOME/agentplane`, else
/// `~/.cache/agentplane`.
fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("AGENTPLANE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).map(|p| p.join("agentplane")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/agentplane")))
}

/// Whether KVM really works on this host, probing if needed: for placement,
/// which must not promise `vm-kvm` on the strength of `/dev/kvm` alone.
pub fn kvm_verdict(kernel: Option<&Path>) -> Result<KvmVerdict> {
    let qemu = find_qemu()?;
    let busybox = find_busybox()?;
    let kernel = kernel::locate(kernel)?;
    let scratch = workdir::WorkDir::create("agentplane-kvm-")?;
    let cache = cache_dir();
    let boot = kernel::boot_image(&kernel, cache.as_deref(), scratch.path());
    Ok(kvm::verdict(&qemu, &boot, &busybox, cache.as_deref()))
}

/// The e1000 driver for `release`, which a guest with a network needs:
/// Debian builds every NIC driver as a module.
fn nic_module(release: Option<&str>) -> Result<PathBuf> {
    let Some(release) = release else {
        bail!("the bundle asks for a network, but the kernel's release (and so its modules) is unknown");
    };
    let path = Path::new("/lib/modules").join(release).join("kernel/drivers/net/ethernet/intel/e1000/e1000.ko");
    if !path.is_file() {
        bail!(
            "the bundle asks for a network, which needs the e1000 driver of kernel {release}: `{}` does not exist (compressed modules are not supported)",
            path.display()
        );
    }
    Ok(path)
}

/// The isolation a VM had: never more than was used, so TCG unless KVM
/// actually ran it.
fn isolation_of(accel: Option<Accel>) -> Isolation {
    match accel {
        Some(Accel::Kvm) => Isolation::VmKvm,
        _ => Isolation::VmTcg,
    }
}

/// Where a VM's script ran, as its guest reported (kernel, arch, hostname);
/// `arch` and `release` (the booted kernel's) stand in for what it did not.
fn guest_environment(state: &ControlState, arch: &str, release: Option<&str>) -> Environment {
    let get = |k: &str| state.env.get(k).filter(|v| !v.is_empty()).cloned();
    Environment {
        os: "linux".into(),
        arch: get("arch").unwrap_or_else(|| arch.to_string()),
        kernel: get("kernel").or_else(|| release.map(str::to_string)).unwrap_or_default(),
        hostname: get("hostname").unwrap_or_else(|| "agentplane-vm".into()),
    }
}

/// Runs smoke scripts in a QEMU VM on this host. See the module docs.
pub struct QemuRunner {
    executor: String,
    work: Option<workdir::WorkDir>,
    ports: Option<Ports>,
    command: Option<Command>,
    child: Option<Child>,
    accel: Option<Accel>,
    release: Option<String>,
    spawned_at: Option<Instant>,
    state: ControlState,
    /// The host stopped the VM on its own deadline or on cancel: products may be partial.
    host_stopped: bool,
    /// QEMU's pid and start time, once spawned.
    qemu_pid: Option<(i32, Option<u64>)>,
    /// QEMU had to be killed (it had not powered off by itself).
    killed: bool,
    receipt: Option<Containment>,
}

impl QemuRunner {
    /// A runner for the executor named `executor` (used in progress and evidence).
    pub fn new(executor: &str) -> QemuRunner {
        QemuRunner {
            executor: executor.to_string(),
            work: None,
            ports: None,
            command: None,
            child: None,
            accel: None,
            release: None,
            spawned_at: None,
            state: ControlState::default(),
            host_stopped: false,
            qemu_pid: None,
            killed: false,
            receipt: None,
        }
    }

    /// Stop QEMU: SIGTERM (it exits at once, as on a power cut), then SIGKILL.
    fn stop_vm(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("QEMU's pid does not fit a pid_t")?);
        if child.try_wait()?.is_some() {
            return Ok(()); // it powered off by itself (and is reaped)
        }
        self.killed = true;
        let send = |step: Stop| {
            let _ = kill(pid, step.signal());
        };
        if contract::stop(QEMU_STOP_GRACE, POLL, send, || Ok(child.try_wait()?))?.is_none() {
            child.wait().context("cannot reap QEMU")?;
        }
        Ok(())
    }

    /// The receipt, once QEMU has been waited for: whether it had to be
    /// killed, and whether anything of the VM is still alive (QEMU's pid, or
    /// any QEMU naming the run's temp dir), looked up in `/proc`.
    fn teardown_receipt(&self, pid: i32, started: Option<u64>) -> Containment {
        let mut left = self.work.as_ref().map(|w| workdir::vms_using(w.path())).unwrap_or_default();
        if workdir::alive(pid, started) && !left.contains(&pid) {
            left.push(pid);
        }
        Containment {
            mechanism: Mechanism::Vm,
            killed_at_end: u32::from(self.killed),
            survivors: left.len() as u32,
            checked: true,
            note: setpriv()
                .is_none()
                .then(|| "`setpriv` was not found: the VM would not have died with agentplane".to_string()),
        }
    }

    /// The last lines of the console and of QEMU's own output, for errors.
    fn diagnostics(&self) -> String {
        let Some(p) = &self.ports else {
            return String::new();
        };
        let tail = |path: &Path| {
            let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let mut shown: Vec<&str> = lines[lines.len().saturating_sub(8)..].to_vec();
            // A panic's register dump buries its reason: put the reason first.
            if let Some(panic) = lines.iter().find(|l| l.contains("Kernel panic"))
                && !shown.contains(panic)
            {
                shown.insert(0, panic);
                shown.insert(1, "...");
            }
            shown.join("\n    ")
        };
        let mut s = String::new();
        for (what, path) in [("console", &p.console), ("qemu", &p.qemu_log)] {
            let t = tail(path);
            if !t.is_empty() {
                s.push_str(&format!("\n  {what}:\n    {t}"));
            }
        }
        s
    }
}

impl Drop for QemuRunner {
    fn drop(&mut self) {
        // However the run ended (even by a panic), no QEMU outlives the runner.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Runner for QemuRunner {
    fn executor(&self) -> &str {
        &self.executor
    }

    fn prepare(&mut self, job: &Job, events: &mut dyn FnMut(Event)) -> Result<()> {
        if std::env::consts::ARCH != "x86_64" {
            bail!("the QEMU runner supports x86_64 hosts only (this one is {})", std::env::consts::ARCH);
        }
        let qemu = find_qemu()?;
        let busybox = find_busybox()?;
        let kernel = kernel::locate(job.vm.kernel.as_deref())?;
        // 0700, files 0600, marked with our pid; dead runs' dirs are swept first.
        let work = workdir::WorkDir::create("agentplane-vm-")?;
        let cache = cache_dir();

        let boot = kernel::boot_image(&kernel, cache.as_deref(), work.path());
        self.release = boot.release.clone();
        let modules = if job.vm.network { vec![nic_module(boot.release.as_deref())?] } else { Vec::new() };

        events(Event::Status("building the initramfs".into()));
        let initrd = work.path().join("initramfs.cpio");
        let image = initramfs::JobImage { job, modules: &modules };
        let skipped = initramfs::write(&initrd, &busybox, Some(image))?;
        if !skipped.is_empty() {
            events(Event::Status(format!(
                "environment variables not passed to the VM (not shell names): {}",
                skipped.join(", ")
            )));
        }

        let verdict = kvm::verdict(&qemu, &boot, &busybox, cache.as_deref());
        let accel = if verdict.usable { Accel::Kvm } else { Accel::Tcg };
        if job.vm.require_kvm && accel != Accel::Kvm {
            bail!("KVM required but not usable: {}", verdict.reason);
        }
        let ports = Ports::create(work.path())?;
        let mem = job.vm.mem_mib.filter(|&m| m > 0).unwrap_or(DEFAULT_MEM_MIB);
        let vcpu = job.vm.vcpu.filter(|&v| v > 0).unwrap_or(DEFAULT_VCPU);
        self.command = Some(qemu_command(&qemu, accel, mem, vcpu, &boot, &initrd, "", &ports, job.vm.network));
        events(Event::Status(format!(
            "booting {} ({}{}; {mem} MiB, {vcpu} vCPU){}",
            kernel.display(),
            accel.as_str(),
            if accel == Accel::Tcg { format!(": {}", verdict.reason) } else { String::new() },
            if boot.uncompressed { ", pre-decompressed" } else { "" },
        )));
        self.accel = Some(accel);
        self.ports = Some(ports);
        self.work = Some(work);
        Ok(())
    }

    fn start(&mut self, _job: &Job) -> Result<()> {
        let mut cmd = self.command.take().context("the VM was not prepared")?;
        // Spawned on the thread that goes on to `wait` and `cleanup` (all of
        // `execute` runs on one thread): QEMU's death signal (see
        // `qemu_command`) fires only when that thread ends, i.e. with agentplane.
        let child = cmd.spawn().with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))?;
        let pid = child.id() as i32;
        self.qemu_pid = Some((pid, workdir::start_time(pid)));
        self.child = Some(child);
        self.spawned_at = Some(Instant::now());
        Ok(())
    }

    fn wait(&mut self, job: &Job, deadline: Instant, events: &mut dyn FnMut(Event)) -> Result<Exit> {
        let ports = self.ports.as_ref().context("the VM was not prepared")?;
        let spawned_at = self.spawned_at.context("the VM was not started")?;
        let (mut out, mut err, mut ctl) =
            (Tail::open(&ports.stdout)?, Tail::open(&ports.stderr)?, Tail::open(&ports.control)?);
        let mut watch = Watch::new(spawned_at, deadline);
        let mut exit = Exit::default();
        loop {
            let exited = self.child.as_mut().context("the VM was not started")?.try_wait()?.is_some();
            // Read after checking for exit, so nothing written before it is missed.
            let c = ctl.read_new()?;
            watch.absorb(&mut self.state, (out.read_new()?, err.read_new()?, &c), None, events)?;
            if exited {
                break;
            }
            match watch.verdict(&self.state, job, &mut exit) {
                Verdict::Running => std::thread::sleep(POLL),
                Verdict::Stop => {
                    // The guest gets no say: the VM goes, and the script with it.
                    self.host_stopped = true;
                    self.stop_vm()?;
                    return Ok(watch::stopped(&self.state, exit));
                }
                Verdict::BootTimeout => {
                    self.stop_vm()?;
                    bail!(
                        "the VM did not start the smoke script within {} s{}",
                        BOOT_TIMEOUT.as_secs(),
                        self.diagnostics()
                    );
                }
                Verdict::Stalled => {
                    self.stop_vm()?;
                    bail!("the VM stopped reporting while sending products{}", self.diagnostics());
                }
            }
        }
        // The VM is off. Products cut short by that are `collect`'s to report.
        watch::powered_off(&self.state, exit)
            .ok_or_else(|| anyhow::anyhow!("the VM powered off before the smoke script finished{}", self.diagnostics()))
    }

    fn collect(&mut self, job: &Job) -> Result<()> {
        let ports = self.ports.as_ref().context("the VM was not prepared")?;
        let complete = self.state.done;
        let got = channel::extract_products(&ports.control, &job.products_dir, complete)
            .context("cannot read the products the VM sent")?;
        if !complete && !self.host_stopped {
            bail!(
                "the VM powered off before it had sent every product ({} received){}",
                got.products.len(),
                self.diagnostics()
            );
        }
        Ok(())
    }

    fn cleanup(&mut self, _job: &Job) -> Result<()> {
        let stopped = self.stop_vm();
        if let Some((pid, started)) = self.qemu_pid {
            self.receipt = Some(self.teardown_receipt(pid, started));
        }
        self.child = None;
        self.command = None;
        self.ports = None;
        let removed = match self.work.take() {
            Some(w) => w.close(),
            None => Ok(()),
        };
        stopped.and(removed)
    }

    fn isolation(&self) -> Isolation {
        isolation_of(self.accel)
    }

    fn environment(&self) -> Environment {
        guest_environment(&self.state, std::env::consts::ARCH, self.release.as_deref())
    }

    fn containment(&self) -> Option<Containment> {
        self.receipt.clone()
    }

    fn vm_host(&self) -> Option<Environment> {
        Some(super::host_environment())
    }
}

#[cfg(test)]
mod tests;
