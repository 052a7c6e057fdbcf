//! Runners: where a smoke script actually runs. One trait, three
//! implementations: the local process (the embedded default), a process on an
//! SSH host, and a QEMU virtual machine.
//!
//! The runner is chosen from the placement [`Target`] (transport × backend,
//! [`for_target`]); placement asks [`supports`] first, so it never chooses an
//! executor no runner can serve. What every runner must do the same way is
//! in [`contract`]. [`execute`] drives a runner through its steps and always
//! cleans up; it is the only caller of the trait's methods.

pub mod contain;
pub mod contract;
pub mod local;
pub mod qemu;
pub mod redactor;
pub mod ssh;

use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::error::Problem;
use crate::types::{Backend, Containment, Environment, Isolation, SshTarget, Transport};
pub use qemu::remote::host::VmHostConfig;

/// How an executor is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    Local,
    Ssh(SshTarget),
}

impl Reach {
    pub fn transport(&self) -> Transport {
        match self {
            Reach::Local => Transport::Local,
            Reach::Ssh(_) => Transport::Ssh,
        }
    }
}

/// Where a run goes: the executor named in evidence, how it is reached, and
/// the backend the bundle asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub executor: String,
    pub reach: Reach,
    pub backend: Backend,
    /// Where QEMU and the kernel are on an SSH executor, when its inventory
    /// entry names them (`capabilities.vm`); found by probing otherwise.
    pub vm_host: VmHostConfig,
}

/// The three runners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    Ssh,
    Qemu,
    /// QEMU on an SSH executor.
    RemoteQemu,
}

/// The runner for `backend` over `transport`, the one table of DESIGN §6:
///
/// | transport | backend | runner |
/// | --- | --- | --- |
/// | local | process (`lima-process`, `fleet`, `agent-machine`) | [`Kind::Local`] |
/// | ssh | process | [`Kind::Ssh`] |
/// | local | VM (`qemu`, `microvm`) | [`Kind::Qemu`] |
/// | ssh | VM | [`Kind::RemoteQemu`]: the VM boots on the executor |
///
/// A VM backend over SSH never falls back to QEMU on this host: the
/// evidence would name the SSH executor for a VM that ran here.
pub fn kind(transport: Transport, backend: Backend) -> Option<Kind> {
    match (transport, backend.is_vm()) {
        (Transport::Local, false) => Some(Kind::Local),
        (Transport::Ssh, false) => Some(Kind::Ssh),
        (Transport::Local, true) => Some(Kind::Qemu),
        (Transport::Ssh, true) => Some(Kind::RemoteQemu),
    }
}

/// Whether some runner runs `backend` over `transport` (placement asks).
pub fn supports(transport: Transport, backend: Backend) -> bool {
    kind(transport, backend).is_some()
}

/// Why [`supports`] says no.
pub fn unsupported_detail(transport: Transport, backend: Backend) -> String {
    format!("no runner runs backend `{}` over {} yet", backend.as_str(), transport.as_str())
}

/// The runner for `target` (see [`kind`]); an error when there is none.
pub fn for_target(target: &Target) -> Result<Box<dyn Runner>> {
    let name = target.executor.as_str();
    let transport = target.reach.transport();
    Ok(match (kind(transport, target.backend), &target.reach) {
        (Some(Kind::Local), _) => Box::new(local::LocalRunner::new(name)),
        (Some(Kind::Ssh), Reach::Ssh(t)) => Box::new(ssh::SshRunner::new(name, t.clone())),
        (Some(Kind::Qemu), _) => Box::new(qemu::QemuRunner::new(name)),
        (Some(Kind::RemoteQemu), Reach::Ssh(t)) => {
            Box::new(qemu::remote::RemoteQemuRunner::new(name, t.clone(), target.vm_host.clone()))
        }
        (Some(Kind::Ssh | Kind::RemoteQemu), Reach::Local) | (None, _) => {
            return Err(Problem::error(format!(
                "executor `{name}`: {}",
                unsupported_detail(transport, target.backend)
            ))
            .hint("place the bundle on an executor reached locally, or use a process backend")
            .into());
        }
    })
}

/// Everything a runner needs to run one smoke script.
#[derive(Debug, Clone)]
pub struct Job {
    pub run_id: String,
    /// The staged project root ([`contract::StagedBundle::root`]).
    pub root: PathBuf,
    /// The staged bundle directory: the private copy whose digest was checked
    /// against the validated one ([`contract::stage_bundle`]), never the
    /// bundle directory itself. The local runner runs in it; the SSH and QEMU
    /// runners upload or pack it.
    pub bundle_dir: PathBuf,
    /// The staged smoke script, inside `root`.
    pub script: PathBuf,
    /// The smoke script relative to `bundle_dir` when it lives inside it.
    pub script_in_bundle: Option<PathBuf>,
    /// The validated bundle digest the staged copy matched (`sha256:<hex>`).
    pub bundle_digest: String,
    /// Where products must end up on this host (empty, created by the caller).
    pub products_dir: PathBuf,
    /// The governed environment: allowlisted host variables, `AGENTPLANE_*`, secrets.
    pub env: Vec<(String, String)>,
    /// How long the script may run.
    pub timeout: Duration,
    /// Between TERM and KILL when the deadline passes or the run is canceled.
    pub grace: Duration,
    /// Set by Ctrl-C (SIGINT/SIGTERM): stop the work as on a timeout.
    pub cancel: Arc<AtomicBool>,
    /// VM settings (memory, vCPUs, kernel, networking) for the QEMU runner.
    pub vm: VmSettings,
}

#[cfg(test)]
impl Job {
    /// A job for unit tests that stage or inspect it (nothing runs it).
    pub(crate) fn for_test(bundle_dir: impl Into<PathBuf>, products_dir: impl Into<PathBuf>) -> Job {
        let bundle_dir = bundle_dir.into();
        Job {
            run_id: "r".into(),
            root: bundle_dir.parent().map(PathBuf::from).unwrap_or_default(),
            script: bundle_dir.join("smoke.sh"),
            script_in_bundle: Some("smoke.sh".into()),
            bundle_digest: String::new(),
            bundle_dir,
            products_dir: products_dir.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(1),
            grace: contract::GRACE,
            cancel: Arc::new(AtomicBool::new(false)),
            vm: VmSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VmSettings {
    pub mem_mib: Option<u64>,
    pub vcpu: Option<u64>,
    /// Kernel image to boot, when the bundle or executor names one.
    pub kernel: Option<PathBuf>,
    /// Whether the guest gets a network (`-nic user`); `-nic none` otherwise.
    pub network: bool,
    /// The bundle requires KVM: fail rather than fall back to TCG.
    pub require_kvm: bool,
}

/// Output as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// A runner step (e.g. "uploading bundle", "booting VM (tcg)").
    Status(String),
}

/// How the smoke script ended.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    /// The script's exit code; `None` when it was killed or never ran.
    pub code: Option<i32>,
    /// The signal that ended it (`SIGTERM`, `SIGKILL`, …).
    pub signal: Option<String>,
    pub timed_out: bool,
    pub canceled: bool,
    /// The runner itself failed (lost connection, VM did not boot): why.
    pub error: Option<String>,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit: Exit,
    /// What held the run and what was found after it (`None`: the run never started).
    pub containment: Option<Containment>,
    pub isolation: Isolation,
    pub environment: Environment,
    /// For a VM: the machine QEMU ran on.
    pub vm_host: Option<Environment>,
    pub started: std::time::SystemTime,
    pub duration: Duration,
}

/// The runner contract. Every step may fail with an error that names what
/// went wrong; [`execute`] turns such a failure into a failed run.
pub trait Runner {
    /// The executor's name, for progress and evidence.
    fn executor(&self) -> &str;
    /// Stage the bundle where it will run (scratch copy, SFTP upload, initramfs).
    fn prepare(&mut self, job: &Job, events: &mut dyn FnMut(Event)) -> Result<()>;
    /// Start the smoke script.
    fn start(&mut self, job: &Job) -> Result<()>;
    /// Stream output until the script exits, `deadline` passes or `job.cancel`
    /// is set; on the last two, stop every process the script started
    /// (TERM, `job.grace`, KILL) and say so in the returned [`Exit`].
    fn wait(&mut self, job: &Job, deadline: Instant, events: &mut dyn FnMut(Event)) -> Result<Exit>;
    /// Bring the products into `job.products_dir`.
    fn collect(&mut self, job: &Job) -> Result<()>;
    /// Remove everything the run left behind (scratch dirs, remote dirs, VM files).
    /// Called exactly once, whatever happened before.
    fn cleanup(&mut self, job: &Job) -> Result<()>;
    /// The isolation actually provided (known after `start`).
    fn isolation(&self) -> Isolation;
    /// Kernel, arch and hostname of where the script ran.
    fn environment(&self) -> Environment;
    /// For a VM runner: the machine QEMU ran on (known after `prepare`).
    fn vm_host(&self) -> Option<Environment> {
        None
    }
    /// The containment receipt (known after `wait`): which mechanism held the
    /// run, what had to be killed at its end, and the survivors counted after.
    /// `None` when the run never started or the runner cannot tell.
    fn containment(&self) -> Option<Containment> {
        None
    }
}

/// Run `job` on `runner`: prepare, start, wait, collect, clean up.
pub fn execute(runner: &mut dyn Runner, job: &Job, events: &mut dyn FnMut(Event)) -> Outcome {
    let started = std::time::SystemTime::now();
    let t0 = Instant::now();
    let exit = (|| -> Result<Exit> {
        runner.prepare(job, events)?;
        let deadline = Instant::now() + job.timeout;
        runner.start(job)?;
        let exit = runner.wait(job, deadline, events)?;
        if let Err(e) = runner.collect(job) {
            return Ok(Exit { error: Some(format!("collecting products failed: {e:#}")), ..exit });
        }
        Ok(exit)
    })()
    .unwrap_or_else(|e| Exit { error: Some(format!("{e:#}")), ..Exit::default() });
    let exit = match runner.cleanup(job) {
        Ok(()) => exit,
        Err(e) if exit.error.is_none() => Exit { error: Some(format!("cleanup failed: {e:#}")), ..exit },
        Err(_) => exit,
    };
    // A run whose processes were not all gone afterwards is not a run agentplane
    // can vouch for: it fails, and says so (the receipt records the count).
    let containment = runner.containment();
    let exit = match &containment {
        Some(c) if c.survivors > 0 && exit.error.is_none() => Exit {
            error: Some(format!("{} process(es) of the run survived its teardown ({})", c.survivors, c.mechanism)),
            ..exit
        },
        _ => exit,
    };
    Outcome {
        exit,
        containment,
        isolation: runner.isolation(),
        environment: runner.environment(),
        vm_host: runner.vm_host(),
        started,
        duration: t0.elapsed(),
    }
}

/// This host's environment (for the local runner and as a fallback).
pub fn host_environment() -> Environment {
    let uts = nix::sys::utsname::uname().ok();
    Environment {
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        kernel: uts.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        hostname: uts.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Backend; 5] =
        [Backend::Qemu, Backend::Microvm, Backend::LimaProcess, Backend::Fleet, Backend::AgentMachine];

    fn ssh_target() -> SshTarget {
        SshTarget {
            host: "h".into(),
            port: 22,
            user: "u".into(),
            identity_file: "/k".into(),
            known_hosts_file: "/kh".into(),
        }
    }

    #[test]
    fn the_runner_table() {
        use Backend::*;
        let table = [
            (Transport::Local, LimaProcess, Some(Kind::Local)),
            (Transport::Local, Fleet, Some(Kind::Local)),
            (Transport::Local, AgentMachine, Some(Kind::Local)),
            (Transport::Ssh, LimaProcess, Some(Kind::Ssh)),
            (Transport::Ssh, Fleet, Some(Kind::Ssh)),
            (Transport::Ssh, AgentMachine, Some(Kind::Ssh)),
            (Transport::Local, Qemu, Some(Kind::Qemu)),
            (Transport::Local, Microvm, Some(Kind::Qemu)),
            (Transport::Ssh, Qemu, Some(Kind::RemoteQemu)),
            (Transport::Ssh, Microvm, Some(Kind::RemoteQemu)),
        ];
        assert_eq!(table.len(), 2 * ALL.len(), "every combination is listed");
        for (transport, backend, want) in table {
            assert_eq!(kind(transport, backend), want, "{transport:?} × {backend:?}");
            assert_eq!(supports(transport, backend), want.is_some(), "{transport:?} × {backend:?}");
        }
    }

    #[test]
    fn for_target_builds_the_runner_for_the_executor_or_refuses() {
        for backend in ALL {
            for reach in [Reach::Local, Reach::Ssh(ssh_target())] {
                let target =
                    Target { executor: "ex-1".into(), reach: reach.clone(), backend, vm_host: VmHostConfig::default() };
                match for_target(&target) {
                    Ok(r) => {
                        assert!(supports(reach.transport(), backend));
                        assert_eq!(r.executor(), "ex-1", "evidence names the placed executor");
                        let isolation = r.isolation();
                        assert_eq!(isolation == Isolation::Process, !backend.is_vm(), "{backend:?} {reach:?}");
                    }
                    Err(e) => {
                        assert!(!supports(reach.transport(), backend), "{backend:?} {reach:?}: {e:#}");
                        let msg = format!("{e:#}");
                        assert!(
                            msg.contains(&format!("no runner runs backend `{}` over ssh", backend.as_str())),
                            "{msg}"
                        );
                    }
                }
            }
        }
    }
}
