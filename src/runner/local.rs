//! The local process runner, the embedded default: the smoke script runs on
//! this host with the interpreter its `#!` line names, in the staged copy of
//! the bundle whose digest was checked before the run ([`Job::bundle_dir`],
//! [`contract::stage_bundle`]), never in the bundle directory itself, with
//! only the governed environment, contained as `contain.rs`
//! describes (a PID namespace the kernel tears down as a whole, or the
//! recorded fallback). When the deadline passes or the run is canceled every
//! process of the run gets TERM, then KILL after the grace period; when the
//! script exits, anything it left running is killed too, and a scan confirms
//! that nothing survived before any log or product is collected.

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::contain::{self, Held};
use super::contract::{self, Stop};
use super::{Event, Exit, Job, Runner};
use crate::types::{Containment, Environment, Isolation};

/// How often the stop sequence checks whether the script has ended.
const STOP_POLL: Duration = Duration::from_millis(5);
/// How often the run's processes are counted while it runs.
const LOOK_EVERY: Duration = Duration::from_millis(50);

pub struct LocalRunner {
    executor: String,
    held: Option<Held>,
    receipt: Option<Containment>,
    script: PathBuf,
    cwd: PathBuf,
    child: Option<Child>,
    rx: Option<Receiver<Option<Event>>>,
}

impl LocalRunner {
    /// A runner for a script about to run here: how it will be contained is
    /// probed at once, on its own thread ([`contain::warm_up`]), while the
    /// run is staged.
    pub fn new(executor: &str) -> LocalRunner {
        contain::warm_up();
        LocalRunner {
            executor: executor.to_string(),
            held: None,
            receipt: None,
            script: PathBuf::new(),
            cwd: PathBuf::new(),
            child: None,
            rx: None,
        }
    }

    fn pgid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Signal the script's whole process group.
    fn signal_group(&self, sig: Signal) {
        signal_group(self.pgid(), sig);
    }
}

/// Signal a process group, if there is one (ignoring "no such group").
fn signal_group(group: Option<Pid>, sig: Signal) {
    if let Some(pg) = group {
        let _ = killpg(pg, sig);
    }
}

fn reader(mut r: impl Read + Send + 'static, tx: mpsc::Sender<Option<Event>>, stdout: bool) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf[..n].to_vec();
                    let ev = if stdout { Event::Stdout(chunk) } else { Event::Stderr(chunk) };
                    if tx.send(Some(ev)).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(None);
    });
}

fn signal_name(st: &ExitStatus) -> Option<String> {
    st.signal().map(contract::signal_name)
}

impl Runner for LocalRunner {
    fn executor(&self) -> &str {
        &self.executor
    }

    fn prepare(&mut self, job: &Job, _events: &mut dyn FnMut(Event)) -> Result<()> {
        // The job's bundle is already the staged, checked copy: run it where
        // it is, so that nothing is copied (and could change) after the check.
        self.script = match &job.script_in_bundle {
            Some(rel) => job.bundle_dir.join(rel),
            None => job.script.clone(),
        };
        self.cwd = job.bundle_dir.clone();
        Ok(())
    }

    fn start(&mut self, job: &Job) -> Result<()> {
        let plan = contain::local_plan();
        let interpreter = contract::interpreter_of(&self.script);
        let argv: Vec<&str> = plan.prefix.iter().chain(&interpreter).map(String::as_str).collect();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .arg(&self.script)
            .arg(&job.products_dir)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child =
            cmd.spawn().with_context(|| format!("cannot start `{}` for the smoke script", argv.join(" ")))?;
        self.held = Some(Held::new(plan, child.id(), &format!("AGENTPLANE_RUN_ID={}", job.run_id)));
        let (tx, rx) = mpsc::channel();
        reader(child.stdout.take().expect("piped"), tx.clone(), true);
        reader(child.stderr.take().expect("piped"), tx, false);
        self.child = Some(child);
        self.rx = Some(rx);
        Ok(())
    }

    fn wait(&mut self, job: &Job, deadline: Instant, events: &mut dyn FnMut(Event)) -> Result<Exit> {
        let rx = self.rx.take().expect("started");
        let mut open = 2;
        let mut exit = Exit::default();
        let mut last_look = Instant::now();
        let status = loop {
            if let Some(st) = self.child.as_mut().expect("started").try_wait()? {
                break st;
            }
            // Who is in the run, now and then: in a namespace, what the
            // kernel kills when the script ends can only be counted before.
            if last_look.elapsed() >= LOOK_EVERY {
                if let Some(h) = self.held.as_mut() {
                    h.look();
                }
                last_look = Instant::now();
            }
            let canceled = job.cancel.load(Ordering::SeqCst);
            if canceled || Instant::now() >= deadline {
                exit.canceled = canceled;
                exit.timed_out = !canceled;
                if let Some(h) = self.held.as_mut() {
                    h.look();
                }
                let held = self.held.as_ref();
                let child = self.child.as_mut().expect("started");
                let send = |step: Stop| {
                    if let Some(h) = held {
                        h.signal_all(step.signal());
                    }
                };
                match contract::stop(job.grace, STOP_POLL, send, || Ok(child.try_wait()?))? {
                    Some(st) => break st,
                    None => break child.wait()?,
                }
            }
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
            match rx.recv_timeout(slice.max(Duration::from_millis(1))) {
                Ok(Some(ev)) => events(ev),
                Ok(None) => open -= 1,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        // Whatever the script left behind dies with the run, and a scan
        // confirms it before anything is collected.
        if let Some(mut h) = self.held.take() {
            h.count_leftovers();
            self.receipt = Some(h.teardown());
        }
        self.signal_group(Signal::SIGKILL);
        // Drain the pipes: they close once the group is gone.
        let drain_end = Instant::now() + Duration::from_secs(2);
        while open > 0 {
            match rx.recv_timeout(drain_end.saturating_duration_since(Instant::now())) {
                Ok(Some(ev)) => events(ev),
                Ok(None) => open -= 1,
                Err(_) => break,
            }
        }
        exit.code = status.code();
        exit.signal = signal_name(&status);
        Ok(exit)
    }

    fn collect(&mut self, _job: &Job) -> Result<()> {
        Ok(()) // products were written straight into job.products_dir
    }

    fn cleanup(&mut self, _job: &Job) -> Result<()> {
        if self.child.is_some() {
            self.signal_group(Signal::SIGKILL);
        }
        Ok(())
    }

    fn isolation(&self) -> Isolation {
        Isolation::Process
    }

    fn environment(&self) -> Environment {
        super::host_environment()
    }

    fn containment(&self) -> Option<Containment> {
        self.receipt.clone()
    }
}
