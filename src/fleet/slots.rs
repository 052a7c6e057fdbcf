//! A bound on the probes in flight. Each SSH probe holds a socket, so a
//! fleet larger than the file descriptors this process may open is probed in
//! waves instead of running out of them (which would be agentplane's failure,
//! never the hosts'). A fleet that fits is probed all at once: about one
//! probe timeout in all.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept back for everything else (the inventory, keys, output):
/// a quarter of the limit, at most this many.
const RESERVE: usize = 64;

/// Descriptors one probe holds while it waits: its socket. (A host that
/// speaks is also read `known_hosts` for, for a moment; a probe that meets
/// `EMFILE` then waits and retries, see `placement::probe_all`.)
const PER_PROBE: usize = 1;

/// A counting semaphore that is never waited on: the loops that take places
/// ([`super::banners`]) look again when they next wake.
pub struct Slots {
    free: AtomicUsize,
}

/// One probe's place; given back when dropped.
pub struct Slot<'s>(&'s Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots { free: AtomicUsize::new(n.max(1)) }
    }

    /// A free place, if there is one now.
    pub fn try_take(&self) -> Option<Slot<'_>> {
        self.free.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).ok().map(|_| Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.free.fetch_add(1, Ordering::AcqRel);
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
    fn no_more_than_n_at_once_across_threads() {
        let slots = Slots::new(3);
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Some(slot) = slots.try_take() {
                            held.lock().unwrap().push(slot);
                        }
                    }
                });
            }
        });
        let mut held = held.into_inner().unwrap();
        assert_eq!(held.len(), 3);
        held.pop();
        assert!(slots.try_take().is_some(), "a place given back is free again");
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
