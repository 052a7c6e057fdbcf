//! Work on all cores with results handed over in input order, with a bounded
//! number of items in flight: `validate` over 100,000 bundles holds a window
//! of reports, never all of them.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};

/// Why [`map_in_order`] stopped early.
#[derive(Debug)]
pub enum Stopped<E> {
    /// The sink refused a result; nothing after it was handed over.
    Sink(E),
    /// Working on the item at this position (0-based) panicked: a bug.
    Panicked(usize),
}

/// Apply `work` to every item of `items` on `threads` workers and hand each
/// result to `sink` in the items' order. At most `window` items are in
/// flight (taken from `items`, not yet handed over) besides the batch being
/// handed over (at most `window` more), so memory stays bounded whatever the
/// number of items. `items` is advanced by one worker at a time, under a
/// lock of its own (advancing may do work, e.g. a directory walk: finished
/// results are handed in meanwhile), a few items at a time; each worker
/// keeps its own `state` (e.g. a cache).
///
/// The sink runs on the calling thread, a batch at a time while the workers go
/// on. When it returns an error, or `work` panics, no further item is started
/// and that is returned once the workers have stopped.
pub fn map_in_order<T, R, S, E>(
    items: impl Iterator<Item = T> + Send,
    threads: usize,
    window: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&S, T) -> R + Sync,
    mut sink: impl FnMut(R) -> Result<(), E>,
) -> Result<(), Stopped<E>>
where
    T: Send,
    R: Send,
{
    let window = window.max(1);
    let threads = threads.max(1);
    // The sink is woken for a batch this big (or at the end): one wake-up per
    // item would cost more than handing the item over.
    let batch = window.div_ceil(4);
    // Items a worker takes at once: fewer turns at the items' lock, while
    // every worker can still hold a share of the window.
    let take = (window / (2 * threads)).clamp(1, TAKE);
    let shared = Shared {
        source: Mutex::new(Source { items, taken: 0, exhausted: false }),
        state: Mutex::new(Flight {
            first: 0,
            claimed: 0,
            done: VecDeque::with_capacity(window),
            ready: 0,
            workers: threads,
            exhausted: false,
            stop: false,
            panicked: None,
        }),
        for_workers: Condvar::new(),
        for_sink: Condvar::new(),
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            // A panic is a bug; it is reported as [`Stopped::Panicked`] (see
            // [`Leaving`]), not passed on by the scope.
            s.spawn(|| {
                let run = || worker(&shared, window, batch, take, &state, &work);
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
            });
        }
        // However this thread leaves (an error, a panic in the sink), the
        // workers stop: the scope waits for them.
        let _stop = StopOnDrop(&shared);
        loop {
            let (results, finished) = {
                let mut f = shared.lock();
                while f.ready < batch && f.workers > 0 && f.panicked.is_none() {
                    f = shared.for_sink.wait(f).unwrap_or_else(PoisonError::into_inner);
                }
                if let Some(at) = f.panicked {
                    return Err(Stopped::Panicked(at));
                }
                let n = f.ready;
                let results: Vec<R> = f.done.drain(..n).flatten().collect();
                f.first += n;
                f.ready = 0;
                shared.for_workers.notify_all();
                (results, f.workers == 0 && f.done.is_empty())
            };
            results.into_iter().try_for_each(&mut sink).map_err(Stopped::Sink)?;
            if finished {
                return Ok(());
            }
        }
    })
}

/// The most items a worker takes from the source at once.
const TAKE: usize = 8;

struct Shared<I, R> {
    /// The items, advanced under their own lock.
    source: Mutex<Source<I>>,
    state: Mutex<Flight<R>>,
    /// A worker waits here for room in the window.
    for_workers: Condvar,
    /// The sink waits here for a batch of results in order.
    for_sink: Condvar,
}

impl<I, R> Shared<I, R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Flight<R>> {
        // A panic while holding the lock leaves the counts as they were.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The items, and how many were taken (the next one's position).
struct Source<I> {
    items: I,
    taken: usize,
    exhausted: bool,
}

/// The window: `done[k]` is the result of item `first + k` once it is there
/// (`None` while it is being worked on); `claimed` counts the positions
/// workers hold that have no result yet (taken, or about to be). The two
/// together are what the window bounds.
struct Flight<R> {
    first: usize,
    /// Positions held by workers, without a result yet.
    claimed: usize,
    done: VecDeque<Option<R>>,
    /// How many results at the front of `done` are there, in a row.
    ready: usize,
    /// Workers still running.
    workers: usize,
    /// The source has no more items.
    exhausted: bool,
    stop: bool,
    panicked: Option<usize>,
}

/// Tells the workers to stop (and wakes them) when dropped.
struct StopOnDrop<'s, I, R>(&'s Shared<I, R>);

impl<I, R> Drop for StopOnDrop<'_, I, R> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.for_workers.notify_all();
    }
}

/// Counts a worker out (and wakes the sink) however it leaves; a worker that
/// leaves by a panic marks the item it had.
struct Leaving<'s, I, R> {
    shared: &'s Shared<I, R>,
    item: Option<usize>,
}

impl<I, R> Drop for Leaving<'_, I, R> {
    fn drop(&mut self) {
        let mut f = self.shared.lock();
        f.workers -= 1;
        if std::thread::panicking() {
            let at = self.item.unwrap_or(f.first);
            f.panicked = f.panicked.or(Some(at));
        }
        self.shared.for_sink.notify_one();
    }
}

fn worker<T, R, S, I: Iterator<Item = T>>(
    shared: &Shared<I, R>,
    window: usize,
    batch: usize,
    take: usize,
    state: &(impl Fn() -> S + Sync),
    work: &(impl Fn(&S, T) -> R + Sync),
) {
    let mut leaving = Leaving { shared, item: None };
    let mine = state();
    let mut finished: Option<(usize, R)> = None;
    let mut local: VecDeque<(usize, T)> = VecDeque::with_capacity(take);
    loop {
        {
            let mut f = shared.lock();
            if let Some((at, r)) = finished.take() {
                f.claimed -= 1;
                let k = at - f.first;
                while f.done.len() <= k {
                    f.done.push_back(None);
                }
                f.done[k] = Some(r);
                while f.done.get(f.ready).is_some_and(Option::is_some) {
                    f.ready += 1;
                }
                if f.ready >= batch {
                    shared.for_sink.notify_one();
                }
            }
            if f.stop || f.panicked.is_some() {
                return;
            }
            if local.is_empty() {
                loop {
                    if f.stop || f.exhausted || f.panicked.is_some() {
                        return;
                    }
                    // In flight: results waiting for the sink (and the
                    // places of those before them still being worked on)
                    // and the positions claimed.
                    if f.done.len() + f.claimed + take <= window {
                        f.claimed += take;
                        break;
                    }
                    // The window is full: what is ready goes to the sink first.
                    shared.for_sink.notify_one();
                    f = shared.for_workers.wait(f).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        if local.is_empty() {
            // The items may do work of their own (a directory walk): only
            // the source is locked meanwhile.
            let mut src = shared.source.lock().unwrap_or_else(PoisonError::into_inner);
            while local.len() < take && !src.exhausted {
                // Should the walk panic, this is the position it was finding.
                leaving.item = Some(src.taken);
                match src.items.next() {
                    Some(item) => {
                        local.push_back((src.taken, item));
                        src.taken += 1;
                    }
                    None => src.exhausted = true,
                }
            }
            let exhausted = src.exhausted;
            drop(src);
            if local.len() < take {
                let mut f = shared.lock();
                f.claimed -= take - local.len();
                f.exhausted |= exhausted;
                shared.for_workers.notify_all();
            }
        }
        let Some((at, item)) = local.pop_front() else { return };
        leaving.item = Some(at);
        finished = Some((at, work(&mine, item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squares(n: usize, threads: usize, window: usize) -> Vec<usize> {
        let mut out = Vec::new();
        map_in_order(
            0..n,
            threads,
            window,
            || (),
            |(), i| {
                // Later items finish first now and then: order must not depend on timing.
                if i % 7 == 0 {
                    std::thread::yield_now();
                }
                i * i
            },
            |r| {
                out.push(r);
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn results_come_in_input_order_across_window_boundaries() {
        for (n, threads, window) in [(0, 2, 4), (1, 2, 4), (10, 1, 1), (100, 2, 3), (1000, 3, 8), (257, 2, 256)] {
            let want: Vec<usize> = (0..n).map(|i| i * i).collect();
            assert_eq!(squares(n, threads, window), want, "n {n}, threads {threads}, window {window}");
        }
    }

    #[test]
    fn items_taken_several_at_a_time_come_back_in_order() {
        // Windows big enough that each worker takes up to TAKE items at once.
        for (n, threads, window) in [(10_000, 2, 256), (1001, 3, 64), (17, 2, 256), (5000, 4, 40)] {
            let want: Vec<usize> = (0..n).map(|i| i * i).collect();
            assert_eq!(squares(n, threads, window), want, "n {n}, threads {threads}, window {window}");
        }
    }

    #[test]
    fn a_panic_while_taking_an_item_is_named_at_its_position() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let items = (0..1000).inspect(|&i| assert!(i != 300, "the walk failed at 300"));
        let r = map_in_order(items, 2, 256, || (), |(), i| i, |_| Ok::<(), ()>(()));
        std::panic::set_hook(prev);
        assert!(matches!(r, Err(Stopped::Panicked(300))), "{r:?}");
    }

    #[test]
    fn no_more_than_the_window_is_in_flight() {
        for window in [5, 64] {
            in_flight_at_most(window);
        }
    }

    fn in_flight_at_most(window: usize) {
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let items = (0..500).inspect(|_| {
            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut handed = 0;
        let mut most = 0;
        map_in_order(
            items,
            2,
            window,
            || (),
            |(), i| i,
            |_| {
                handed += 1;
                most = most.max(taken.load(std::sync::atomic::Ordering::SeqCst) - handed);
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert_eq!(handed, 500);
        // The window in flight plus the rest of the batch being handed over.
        assert!(most < 2 * window, "{most} items taken beyond those handed over (window {window})");
    }

    #[test]
    fn a_sink_error_in_the_middle_of_a_window_stops_the_work() {
        let started = std::sync::atomic::AtomicUsize::new(0);
        let mut seen = Vec::new();
        let r = map_in_order(
            0..10_000,
            2,
            16,
            || (),
            |(), i| {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                i
            },
            |i| {
                if i == 21 {
                    return Err(format!("refused {i}"));
                }
                seen.push(i);
                Ok(())
            },
        );
        assert!(matches!(r, Err(Stopped::Sink(ref e)) if e == "refused 21"), "{r:?}");
        assert_eq!(seen, (0..21).collect::<Vec<_>>());
        assert!(started.load(std::sync::atomic::Ordering::SeqCst) <= 21 + 2 * 16);
    }

    #[test]
    fn a_panicking_item_is_named_not_a_hang() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let mut seen = Vec::new();
        let r = map_in_order(
            0..1000,
            2,
            8,
            || (),
            |(), i| {
                assert!(i != 13, "item 13");
                i
            },
            |i| {
                seen.push(i);
                Ok::<(), ()>(())
            },
        );
        std::panic::set_hook(prev);
        assert!(matches!(r, Err(Stopped::Panicked(13))), "{r:?}");
        assert!(seen.iter().all(|&i| i < 13), "{seen:?}");
    }
}
