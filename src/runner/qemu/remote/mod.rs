//! The remote QEMU runner: a `qemu`/`microvm` bundle placed on an SSH
//! executor boots its VM *there* (DESIGN §6), never on this host.
//!
//! - `prepare`: one `ssh2` session. One round trip sweeps run directories a
//!   killed agentplane left, creates the private (0700) run directory
//!   `/tmp/agentplane-remote-<run id>` with empty serial-port files (0600),
//!   reads `uname` and asks the host for its VM pieces ([`host`]: QEMU,
//!   kernel, `/dev/kvm`). The initramfs is assembled **here**, from the staged
//!   copy whose digest was checked (so the bytes that boot are the bytes the
//!   evidence names) with agentplane's own static busybox, written 0600 in a
//!   private local dir and uploaded over SFTP. KVM is used only when
//!   `/dev/kvm` is open to the login *and* a test boot there reaches
//!   userspace within the probe timeout; TCG otherwise (`vm-tcg`).
//! - `start`: the SSH runner's remote wrapper ([`crate::runner::ssh`]) runs
//!   `boot.sh`, which `exec`s QEMU with the local runner's arguments: QEMU is
//!   the init of a PID namespace on the executor, and the wrapper kills it
//!   when the SSH channel closes (agentplane died, even by `kill -9`) or when
//!   its own backstop deadline passes.
//! - `wait`: follows the stdout, stderr and control port files over SFTP
//!   (output streams live with `--watch`), keeps a local copy of the control
//!   stream, and enforces the same deadlines as the local runner: the boot
//!   gets [`super::BOOT_TIMEOUT`], the script its `maxRunSeconds` from when
//!   the guest starts it; past them the VM is KILLed on the executor.
//! - `collect`: products come out of the control stream, as locally.
//! - `cleanup`: kills whatever may be left and removes the run directory.

pub mod host;
mod kvm;
mod tail;

use anyhow::{Context, Result, bail};
use ssh2::{Channel, Sftp};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::channel::{self, ControlState};
use super::watch::{self, Verdict, Watch};
use super::{Accel, BOOT_TIMEOUT, BootArgs, HOST_SLACK, initramfs, workdir};
use crate::runner::contract::shell_quote;
use crate::runner::ssh::{self as ssh_runner, RemoteRun, wrapper};
use crate::runner::{Event, Exit, Job, Runner};
use crate::ssh::{self, platform};
use crate::types::{Containment, Environment, Isolation, SshTarget};
use host::{KvmDevice, VmHost, VmHostConfig};
use tail::RemoteTail;

/// How long the remote wrapper may take, once QEMU has ended, to tear the
/// run down and write its receipt.
const WRAPPER_END: Duration = Duration::from_secs(15);
/// Between two looks at the port files.
const POLL: Duration = Duration::from_millis(100);
/// How long one SFTP look may take before the host counts as gone.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The port files in the run directory, in serial-port order, then QEMU's log.
const PORTS: [&str; 4] = ["console.log", "stdout.log", "stderr.log", "control.log"];
const QEMU_LOG: &str = "qemu.log";

/// Runs smoke scripts in a QEMU VM on an SSH executor. See the module docs.
pub struct RemoteQemuRunner {
    executor: String,
    target: SshTarget,
    config: VmHostConfig,
    /// The session and the run directory, once `prepare` made them.
    remote: RemoteRun,
    marker: String,
    /// Private local dir: the initramfs before upload, the control stream's copy.
    local: Option<workdir::WorkDir>,
    host: Option<VmHost>,
    host_env: Option<Environment>,
    accel: Option<Accel>,
    release: Option<String>,
    channel: Option<Channel>,
    spawned_at: Option<Instant>,
    state: ControlState,
    host_stopped: bool,
    /// The VM was started and its end (with the wrapper's teardown) not seen.
    needs_kill: bool,
    receipt: Option<Containment>,
    lost: Option<String>,
}

impl RemoteQemuRunner {
    pub fn new(executor: &str, target: SshTarget, config: VmHostConfig) -> RemoteQemuRunner {
        RemoteQemuRunner {
            executor: executor.to_string(),
            target,
            config,
            remote: RemoteRun::default(),
            marker: String::new(),
            local: None,
            host: None,
            host_env: None,
            accel: None,
            release: None,
            channel: None,
            spawned_at: None,
            state: ControlState::default(),
            host_stopped: false,
            needs_kill: false,
            receipt: None,
            lost: None,
        }
    }

    fn remote(&self, name: &str) -> Result<String> {
        Ok(format!("{}/{name}", self.remote.dir()?))
    }

    fn local_control(&self) -> Result<PathBuf> {
        Ok(self.local.as_ref().context("the VM was not prepared")?.path().join("control.log"))
    }

    /// Where the VM runs, for messages: `executor (user@host:port)`.
    fn who(&self) -> String {
        format!("{} ({})", self.executor, ssh::display_target(&self.target))
    }

    /// KILL the VM on the executor (every process of the run's namespace).
    fn kill_vm(&mut self) -> Result<()> {
        self.host_stopped = true;
        let session = self.remote.session()?;
        session.set_blocking(true);
        let cmd = wrapper::signal_command(self.remote.dir()?, &self.marker, "KILL");
        ssh::exec(session, &cmd, ssh_runner::SIGNAL_TIMEOUT).map(|_| ())
    }

    /// The last lines of the console and of QEMU's output on the executor, for errors.
    fn diagnostics(&self) -> String {
        let Ok(session) = self.remote.session() else { return String::new() };
        let Ok(dir) = self.remote.dir() else { return String::new() };
        session.set_blocking(true);
        let mut s = String::new();
        for (what, file) in [("console", PORTS[0]), ("qemu", QEMU_LOG)] {
            let cmd = format!("tail -n 8 {} 2>/dev/null", shell_quote(&format!("{dir}/{file}")));
            let text = ssh::exec(session, &cmd, ssh_runner::STEP_TIMEOUT).map(|o| o.stdout_str()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if !lines.is_empty() {
                s.push_str(&format!("\n  {what} on {}:\n    {}", self.executor, lines.join("\n    ")));
            }
        }
        s
    }

    /// The kernel module the guest needs for a network (Debian builds e1000
    /// as one), fetched from the executor for the kernel it boots.
    fn fetch_nic_module(&self, sftp: &Sftp, kernel: &str) -> Result<PathBuf> {
        let Some(release) = Path::new(kernel).file_name().and_then(|n| n.to_str()?.strip_prefix("vmlinuz-")) else {
            bail!(
                "the bundle asks for a network, but the release of the executor's kernel `{kernel}` is unknown (its modules cannot be found)"
            );
        };
        let remote = format!("/lib/modules/{release}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko");
        let local = self.local.as_ref().context("the VM was not prepared")?.path().join("e1000.ko");
        let mut src = sftp.open(Path::new(&remote)).with_context(|| {
            format!(
                "the bundle asks for a network, which needs `{remote}` on {} (compressed modules are not supported)",
                self.executor
            )
        })?;
        let mut dst = workdir::private_file(&local)?;
        std::io::copy(&mut src, &mut dst).with_context(|| format!("cannot download `{remote}`"))?;
        Ok(local)
    }
}

/// Shell-quote QEMU's arguments for the remote command line.
fn quote_args(args: &[std::ffi::OsString]) -> String {
    args.iter().map(|a| shell_quote(&a.to_string_lossy())).collect::<Vec<_>>().join(" ")
}

impl Drop for RemoteQemuRunner {
    fn drop(&mut self) {
        // Closing the channel is enough: the remote wrapper then kills the VM.
        self.channel = None;
    }
}

impl Runner for RemoteQemuRunner {
    fn executor(&self) -> &str {
        &self.executor
    }

    fn prepare(&mut self, job: &Job, events: &mut dyn FnMut(Event)) -> Result<()> {
        // The guest runs agentplane's own busybox: find it before going anywhere.
        let busybox = super::find_busybox()?;
        events(Event::Status(format!("connecting to {}", self.who())));
        let session = ssh::connect(&self.target, ssh_runner::CONNECT_TIMEOUT).map_err(anyhow::Error::new)?;
        session.set_timeout(ssh::millis(ssh_runner::STEP_TIMEOUT));
        self.remote.connected(session.clone());

        // One round trip: sweep, a fresh private run dir with its (0600)
        // port files, uname, and the host's VM pieces.
        let dir = format!("{}{}", wrapper::RUN_DIR_PREFIX, ssh_runner::safe_component(&job.run_id));
        let files: Vec<String> =
            PORTS.iter().chain([&QEMU_LOG]).map(|f| format!(": > {}", shell_quote(&format!("{dir}/{f}")))).collect();
        let setup = format!(
            "{}umask 077 && mkdir {d} && mkdir {d}/bundle {d}/products && {} && \
             printf '# the VM gets its environment in its initramfs\\n' > {d}/env && {} && {{\n{}}}",
            wrapper::sweep_stale_command(),
            files.join(" && "),
            platform::UNAME_COMMAND,
            host::command(&self.config),
            d = shell_quote(&dir),
        );
        let out =
            ssh::exec(&session, &setup, ssh_runner::STEP_TIMEOUT).context("cannot set up the remote run directory")?;
        let text = out.stdout_str();
        let (uname, _) = text.split_once(host::BEGIN).unwrap_or((&text, ""));
        if out.status != 0 || !text.contains(host::BEGIN) {
            bail!("cannot create `{dir}` on {}: {}", self.executor, out.stderr_str().trim());
        }
        self.remote.created(dir.clone());
        let (p, hostname) = platform::parse_uname(uname).context("unexpected `uname` output")?;
        self.host_env = Some(Environment { os: p.os, arch: p.arch, kernel: p.kernel, hostname });
        let found = host::parse(&text, &self.config).context("the executor did not answer the VM probe")?;
        if let Some((code, why)) = found.rejection(job.vm.require_kvm) {
            bail!("{} cannot run the VM ({code}): {why}", self.executor, code = code.as_str());
        }
        let (Some(qemu), Some(host_kernel)) = (found.qemu.clone(), found.kernel.clone()) else {
            bail!("{}: the VM probe found no QEMU or kernel", self.executor);
        };
        self.host = Some(found.clone());
        self.marker = wrapper::marker(&job.run_id);
        self.local = Some(workdir::WorkDir::create("agentplane-vm-")?);
        let sftp = session.sftp().context("cannot start SFTP")?;

        // The kernel: the bundle's own file (uploaded: its bytes are the
        // project's), else the executor's.
        let kernel = match &job.vm.kernel {
            Some(k) => {
                crate::fsx::open_regular(k, None)
                    .with_context(|| format!("cannot read the kernel `{}` the bundle names", k.display()))?;
                let remote = format!("{dir}/vmlinuz");
                events(Event::Status(format!("uploading the bundle's kernel to {}", self.executor)));
                ssh::upload_file(&sftp, k, Path::new(&remote))?;
                remote
            }
            None => host_kernel,
        };
        self.release =
            Path::new(&kernel).file_name().and_then(|n| n.to_str()?.strip_prefix("vmlinuz-")).map(str::to_string);
        let modules = if job.vm.network { vec![self.fetch_nic_module(&sftp, &kernel)?] } else { Vec::new() };

        events(Event::Status("building the initramfs".into()));
        let local_initrd = self.local.as_ref().context("no local dir")?.path().join("initramfs.cpio");
        let skipped = initramfs::write(&local_initrd, &busybox, Some(initramfs::JobImage { job, modules: &modules }))?;
        if !skipped.is_empty() {
            events(Event::Status(format!(
                "environment variables not passed to the VM (not shell names): {}",
                skipped.join(", ")
            )));
        }
        File::create(self.local_control()?).context("cannot create the local copy of the control stream")?;
        let initrd = format!("{dir}/initramfs.cpio");
        events(Event::Status(format!("uploading the initramfs to {}:{dir}", self.executor)));
        let bytes =
            ssh::upload_file(&sftp, &local_initrd, Path::new(&initrd)).context("cannot upload the initramfs")?;
        events(Event::Status(format!("uploaded {bytes} bytes")));

        let (kvm, why) = if found.kvm == KvmDevice::Usable {
            self.kvm_works(&sftp, &qemu, &kernel, &busybox)?
        } else if found.kvm == KvmDevice::Denied {
            (false, format!("/dev/kvm on {} is not open to {}", self.executor, self.target.user))
        } else {
            (false, format!("{} has no /dev/kvm", self.executor))
        };
        let accel = if kvm { Accel::Kvm } else { Accel::Tcg };
        if job.vm.require_kvm && accel != Accel::Kvm {
            bail!("KVM required but not usable: {why}");
        }
        let mem = job.vm.mem_mib.filter(|&m| m > 0).unwrap_or(super::DEFAULT_MEM_MIB);
        let vcpu = job.vm.vcpu.filter(|&v| v > 0).unwrap_or(super::DEFAULT_VCPU);
        let serial: Vec<PathBuf> = PORTS.iter().map(|f| PathBuf::from(format!("{dir}/{f}"))).collect();
        let (kernel_path, initrd_path) = (PathBuf::from(&kernel), PathBuf::from(&initrd));
        let args = BootArgs {
            accel,
            mem_mib: mem,
            vcpu,
            kernel: &kernel_path,
            initrd: &initrd_path,
            extra_append: "",
            serial: [&serial[0], &serial[1], &serial[2], &serial[3]],
            network: job.vm.network,
        };
        // QEMU's own output goes to its log; the ports are the guest's.
        let boot = format!(
            "exec {} {} >> {} 2>&1\n",
            shell_quote(&qemu),
            quote_args(&args.to_args()),
            shell_quote(&format!("{dir}/{QEMU_LOG}"))
        );
        let mut f = sftp
            .open_mode(
                Path::new(&format!("{dir}/boot.sh")),
                ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::EXCLUSIVE,
                0o600,
                ssh2::OpenType::File,
            )
            .context("cannot write the remote boot script")?;
        f.write_all(boot.as_bytes()).context("cannot write the remote boot script")?;
        f.close().context("cannot write the remote boot script")?;
        events(Event::Status(format!(
            "booting {kernel} on {} ({}{}; {mem} MiB, {vcpu} vCPU)",
            self.executor,
            accel.as_str(),
            if accel == Accel::Tcg { format!(": {why}") } else { String::new() },
        )));
        self.accel = Some(accel);
        Ok(())
    }

    fn start(&mut self, job: &Job) -> Result<()> {
        let backstop = (BOOT_TIMEOUT + job.timeout + job.grace + HOST_SLACK + ssh_runner::BACKSTOP_MARGIN).as_secs();
        let boot = self.remote("boot.sh")?;
        let mut cmd =
            wrapper::wrapper_command(self.remote.dir()?, &boot, &["/bin/sh".to_string()], &self.marker, backstop);
        if std::env::var("AGENTPLANE_CONTAINMENT").is_ok_and(|v| v == "sweep") {
            cmd = format!("AGENTPLANE_CONTAINMENT=sweep\n{cmd}");
        }
        let session = self.remote.session()?;
        session.set_blocking(true);
        let mut channel = session.channel_session().context("cannot open an SSH channel")?;
        self.needs_kill = true;
        // Never `send_eof` on this channel: EOF on its stdin tells the
        // wrapper that agentplane is gone, and it kills the VM.
        channel.exec(&cmd).context("cannot boot the VM")?;
        self.channel = Some(channel);
        self.spawned_at = Some(Instant::now());
        Ok(())
    }

    fn wait(&mut self, job: &Job, deadline: Instant, events: &mut dyn FnMut(Event)) -> Result<Exit> {
        let session = self.remote.session()?.clone();
        session.set_blocking(true);
        session.set_timeout(ssh::millis(LOOK_TIMEOUT));
        let sftp = session.sftp().context("cannot start SFTP")?;
        let open = |name: &str| -> Result<RemoteTail> { RemoteTail::open(&sftp, &self.remote(name)?) };
        let (mut out, mut err, mut ctl) = (open(PORTS[1])?, open(PORTS[2])?, open(PORTS[3])?);
        let mut copy = File::options().append(true).open(self.local_control()?)?;
        let spawned_at = self.spawned_at.context("the VM was not started")?;
        let mut watch = Watch::new(spawned_at, deadline);
        let mut wrapper_said = Vec::new();
        let mut exit = Exit::default();
        let mut channel = self.channel.take().context("the VM was not started")?;
        let result: Result<()> = loop {
            // What the wrapper itself said (QEMU's output goes to its log).
            session.set_blocking(false);
            let mut buf = [0u8; 4096];
            for stderr in [false, true] {
                let mut s = if stderr { channel.stderr() } else { channel.stream(0) };
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => wrapper_said.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            session.set_blocking(true);
                            return Ok(self.lost_exit(exit, &format!("the connection failed ({e})")));
                        }
                    }
                }
            }
            let exited = channel.eof();
            session.set_blocking(true);
            // Read after checking for the end, so nothing written before it is missed.
            let looked = (|| -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
                Ok((out.read_new()?, err.read_new()?, ctl.read_new()?))
            })();
            let (o, e, c) = match looked {
                Ok(t) => t,
                Err(e) => return Ok(self.lost_exit(exit, &format!("cannot read the VM's output: {e:#}"))),
            };
            if !c.is_empty() {
                copy.write_all(&c).context("cannot keep the control stream")?;
            }
            let executor = self.executor.clone();
            watch.absorb(&mut self.state, (o, e, &c), Some(&executor), events)?;
            if exited {
                break Ok(());
            }
            match watch.verdict(&self.state, job, &mut exit) {
                Verdict::Running => std::thread::sleep(POLL),
                Verdict::Stop => {
                    // The guest gets no say: the VM goes, and the script with it.
                    self.kill_vm()?;
                    exit = watch::stopped(&self.state, exit);
                    break Ok(());
                }
                Verdict::BootTimeout => {
                    self.kill_vm()?;
                    break Err(anyhow::anyhow!(
                        "the VM on {} did not start the smoke script within {} s{}",
                        self.executor,
                        BOOT_TIMEOUT.as_secs(),
                        self.diagnostics()
                    ));
                }
                Verdict::Stalled => {
                    self.kill_vm()?;
                    break Err(anyhow::anyhow!(
                        "the VM on {} stopped reporting while sending products{}",
                        self.executor,
                        self.diagnostics()
                    ));
                }
            }
        };
        // The wrapper ends once QEMU has (after its own teardown and receipt).
        // Its teardown scans /proc, which a busy host can make slow.
        // `wait_eof` reads the session until the wrapper's EOF arrives
        // (`wait_close` alone refuses a channel not yet at EOF, and reads nothing).
        session.set_blocking(true);
        session.set_timeout(ssh::millis(WRAPPER_END));
        let closed = channel.wait_eof().and_then(|()| channel.wait_close()).is_ok();
        session.set_timeout(ssh::millis(ssh_runner::STEP_TIMEOUT));
        if closed {
            self.needs_kill = false;
            match ssh_runner::fetch_receipt(&session, self.remote.dir()?, &self.executor) {
                Ok(r) => self.receipt = Some(r),
                Err(why) if exit.error.is_none() => exit.error = Some(why),
                Err(_) => {}
            }
        }
        result?;
        if exit.canceled || exit.timed_out {
            return Ok(exit);
        }
        watch::powered_off(&self.state, exit).ok_or_else(|| {
            let said = String::from_utf8_lossy(&wrapper_said);
            let said = said.trim();
            anyhow::anyhow!(
                "the VM on {} powered off before the smoke script finished{}{}",
                self.executor,
                if said.is_empty() { String::new() } else { format!("\n  wrapper: {said}") },
                self.diagnostics()
            )
        })
    }

    fn collect(&mut self, job: &Job) -> Result<()> {
        if self.lost.is_some() {
            return Ok(());
        }
        let complete = self.state.done;
        let got = channel::extract_products(&self.local_control()?, &job.products_dir, complete)
            .context("cannot read the products the VM sent")?;
        if !complete && !self.host_stopped {
            bail!(
                "the VM on {} powered off before it had sent every product ({} received)",
                self.executor,
                got.products.len()
            );
        }
        Ok(())
    }

    fn cleanup(&mut self, _job: &Job) -> Result<()> {
        self.channel = None;
        let local = self.local.take().map(workdir::WorkDir::close).unwrap_or(Ok(()));
        let (session, dir) = self.remote.take();
        let removed = ssh_runner::end_remote_run(
            session,
            self.lost.is_some(),
            &self.target,
            dir,
            &self.marker,
            self.needs_kill,
            &self.executor,
        );
        removed.and(local)
    }

    fn isolation(&self) -> Isolation {
        super::isolation_of(self.accel)
    }

    fn environment(&self) -> Environment {
        // The guest's view (its kernel is the executor's image).
        let host_arch = self.host.as_ref().map(|h| h.arch.as_str()).unwrap_or_default();
        super::guest_environment(&self.state, host_arch, self.release.as_deref())
    }

    fn vm_host(&self) -> Option<Environment> {
        self.host_env.clone()
    }

    fn containment(&self) -> Option<Containment> {
        self.receipt.clone().map(|mut c| {
            if self.host_stopped {
                // agentplane killed the VM (the wrapper then found it gone).
                c.killed_at_end = c.killed_at_end.max(1);
            }
            let what = format!("QEMU ran on {} as the run's only process, held by the remote wrapper", self.who());
            c.note = Some(match c.note {
                Some(n) => format!("{what}; {n}"),
                None => what,
            });
            c
        })
    }
}

impl RemoteQemuRunner {
    /// Record that the connection died and say so in the exit.
    fn lost_exit(&mut self, mut exit: Exit, why: &str) -> Exit {
        let msg = format!("lost connection to {}: {why}", self.who());
        self.lost = Some(msg.clone());
        exit.error = Some(format!(
            "{msg}; no containment receipt could be read, so whether the VM still runs there is not known \
             (the remote wrapper kills it when its channel closes)"
        ));
        exit
    }
}
