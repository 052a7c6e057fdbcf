//! What the host makes of a running VM, wherever it runs: the output and
//! control bytes read from its ports go in ([`Watch::absorb`]), and the
//! host's deadlines come out ([`Watch::verdict`]). The local and the remote
//! QEMU runner differ only in how they read the ports and stop the VM.

use anyhow::{Context, Result};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::channel::{ControlState, LineSplitter, Record};
use super::{BOOT_TIMEOUT, HOST_SLACK, REPORT_STALL};
use crate::runner::{Event, Exit, Job};

/// What the host must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Keep watching.
    Running,
    /// Canceled or past the script's deadline (set on the exit): the VM goes.
    Stop,
    /// The VM did not start the script within [`BOOT_TIMEOUT`].
    BootTimeout,
    /// The script ended but the products stopped coming for [`REPORT_STALL`].
    Stalled,
}

pub(super) struct Watch {
    spawned_at: Instant,
    /// The job's deadline as counted from the VM's start.
    deadline: Instant,
    lines: LineSplitter,
    /// The script's deadline, once it has started: the boot does not count.
    script_deadline: Option<Instant>,
    last_report: Instant,
}

impl Watch {
    pub(super) fn new(spawned_at: Instant, deadline: Instant) -> Watch {
        Watch {
            spawned_at,
            deadline,
            lines: LineSplitter::default(),
            script_deadline: None,
            last_report: Instant::now(),
        }
    }

    /// Pass on what the script wrote (`out`, `err`) and feed the control
    /// bytes `ctl` to `state`. `on`: where the VM runs, for the progress line.
    pub(super) fn absorb(
        &mut self,
        state: &mut ControlState,
        (out, err, ctl): (Vec<u8>, Vec<u8>, &[u8]),
        on: Option<&str>,
        events: &mut dyn FnMut(Event),
    ) -> Result<()> {
        if !out.is_empty() {
            events(Event::Stdout(out));
        }
        if !err.is_empty() {
            events(Event::Stderr(err));
        }
        if !ctl.is_empty() {
            self.last_report = Instant::now();
        }
        for line in self.lines.push(ctl) {
            match state.feed(&line).context("the guest's control stream is garbled")? {
                Some(Record::Started) => {
                    let now = Instant::now();
                    self.script_deadline = Some(self.deadline + now.duration_since(self.spawned_at));
                    let secs = now.duration_since(self.spawned_at).as_secs_f64();
                    let on = on.map(|w| format!(" on {w}")).unwrap_or_default();
                    events(Event::Status(format!("VM up{on} after {secs:.1} s; running the smoke script")));
                }
                Some(Record::Warn(w)) => events(Event::Status(format!("guest: {w}"))),
                _ => {}
            }
        }
        Ok(())
    }

    /// The host's deadlines: cancel, boot, the script's own (after the
    /// guest's grace and some slack: the guest enforces it first), and a
    /// stall while products come. Marks `exit` canceled or timed out on
    /// [`Verdict::Stop`].
    pub(super) fn verdict(&self, state: &ControlState, job: &Job, exit: &mut Exit) -> Verdict {
        let now = Instant::now();
        if job.cancel.load(Ordering::SeqCst) {
            exit.canceled = true;
            Verdict::Stop
        } else if !state.started && now >= self.spawned_at + BOOT_TIMEOUT {
            Verdict::BootTimeout
        } else if state.exit.is_none() && self.script_deadline.is_some_and(|d| now >= d + job.grace + HOST_SLACK) {
            exit.timed_out = true;
            Verdict::Stop
        } else if state.exit.is_some() && now >= self.last_report + REPORT_STALL {
            Verdict::Stalled
        } else {
            Verdict::Running
        }
    }
}

/// The exit of a VM the host stopped: killed, with the script's code if the
/// guest had reported one.
pub(super) fn stopped(state: &ControlState, mut exit: Exit) -> Exit {
    exit.signal = Some("SIGKILL".into());
    if let Some(g) = &state.exit {
        exit.code = g.code;
    }
    exit
}

/// The exit of a VM that powered off by itself: what the guest reported,
/// `None` when it never reported the script's end.
pub(super) fn powered_off(state: &ControlState, mut exit: Exit) -> Option<Exit> {
    let g = state.exit.as_ref()?;
    exit.code = g.code;
    exit.signal = g.signal.clone();
    exit.timed_out = g.timed_out;
    Some(exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ago(d: Duration) -> Instant {
        Instant::now().checked_sub(d).expect("the clock is past boot")
    }

    #[test]
    fn the_host_deadlines_in_order() {
        let job = Job::for_test("/b", "/p");
        let state = ControlState::default();
        let mut exit = Exit::default();
        // Just started: keep watching.
        assert_eq!(Watch::new(Instant::now(), Instant::now()).verdict(&state, &job, &mut exit), Verdict::Running);
        // Not booted within the boot timeout.
        let slow = Watch::new(ago(BOOT_TIMEOUT + Duration::from_secs(1)), Instant::now());
        assert_eq!(slow.verdict(&state, &job, &mut exit), Verdict::BootTimeout);
        assert!(!exit.timed_out && !exit.canceled);
        // Ctrl-C wins over everything.
        job.cancel.store(true, Ordering::SeqCst);
        assert_eq!(slow.verdict(&state, &job, &mut exit), Verdict::Stop);
        assert!(exit.canceled);
    }

    #[test]
    fn the_script_deadline_counts_from_its_start_not_from_power_on() {
        let job = Job::for_test("/b", "/p");
        let mut state = ControlState::default();
        let spawned = ago(Duration::from_secs(30));
        // The job's deadline passed long ago, counted from power-on …
        let mut w = Watch::new(spawned, ago(Duration::from_secs(29)));
        let mut events = |_| {};
        // … but the script starts only now.
        w.absorb(&mut state, (Vec::new(), Vec::new(), b"@started\n"), None, &mut events).unwrap();
        let mut exit = Exit::default();
        assert!(state.started);
        assert_eq!(w.verdict(&state, &job, &mut exit), Verdict::Running, "the boot did not count");
        w.script_deadline = Some(ago(job.grace + HOST_SLACK + Duration::from_secs(1)));
        assert_eq!(w.verdict(&state, &job, &mut exit), Verdict::Stop);
        assert!(exit.timed_out);
        assert!(powered_off(&state, Exit::default()).is_none(), "no exit reported: no clean power-off");
    }
}
