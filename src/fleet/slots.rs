//! A bound on the probes in flight. Each SSH probe holds a socket, so a
//! fleet larger than the file descriptors this process may open is probed in
//! waves instead of running out of them (which would be agentplane's failure,
//! never the hosts'). A fleet that fits is probed all at once: about one
//! probe timeout in all.

use std::sync::{Condvar, Mutex};

/// Descriptors kept back for everything else (the inventory, keys, output):
/// a quarter of the limit, at most this many.
const RESERVE: usize = 64;

/// Descriptors one probe holds while it waits: its socket. (A host that
/// speaks is also read `known_hosts` for, for a moment; a probe that meets
/// `EMFILE` then waits and retries, see `placement::probe_all`.)
const PER_PROBE: usize = 1;

/// A counting semaphore.
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One probe's place; given back when dropped.
pub struct Slot<'s>(&'s Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), freed: Condvar::new() }
    }

    /// A free place, if there is one now.
    pub fn try_take(&self) -> Option<Slot<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Slot(self))
    }

    /// Wait for a free place.
    pub fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// How many probes may be in flight at once: the soft `RLIMIT_NOFILE` less
/// the descriptors already open and a reserve, over what one probe holds.
pub fn fd_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(s, _)| s).min(1 << 20) as usize;
    let open = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count());
    (soft.saturating_sub(open).saturating_sub(RESERVE.min(soft / 4)) / PER_PROBE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_n_at_once() {
        let slots = Slots::new(3);
        let busy = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..20 {
                let slot = slots.take();
                let (busy, most) = (&busy, &most);
                s.spawn(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = busy.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    std::thread::yield_now();
                    busy.fetch_sub(1, SeqCst);
                    drop(slot);
                });
            }
        });
        assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    }

    #[test]
    fn try_take_never_waits() {
        let slots = Slots::new(1);
        let one = slots.try_take();
        assert!(one.is_some());
        assert!(slots.try_take().is_none());
        drop(one);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn the_budget_leaves_room() {
        let b = fd_budget();
        assert!(b >= 1);
    }
}
