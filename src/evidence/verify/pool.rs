//! The workers that do each window's per-entry work (steps 2, 3, 4 and the
//! file halves of 6 and 7), started once for the whole chain.
//!
//! Why a pool and not threads per window: a fresh thread starts with a fresh
//! allocator heap and cold caches, and the cores sat idle while the next
//! window was handed out. Here the reader queues the next window before it
//! waits for the current one ([`Pool::submit`] returns at once), so the
//! workers go from one window to the next without a pause while the calling
//! thread records findings in order.
//!
//! A window's entries are taken [`BATCH`] at a time from a shared counter,
//! so a slow entry (a large log to hash) does not hold up the others. Each
//! entry's work runs under `catch_unwind`: an entry whose check panicked is
//! failed ("could not be checked"), never passed, and never leaves the
//! reader waiting for a result that will not come.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::Scope;

use super::reader::{Spares, Window};
use super::steps::Work;

/// Entries a worker takes at a time from a window.
const BATCH: usize = 16;

/// One window's work: handed to every worker, done when every entry is.
pub struct Job {
    window: Window,
    /// Where the window goes when the last holder of the job lets go.
    spares: Spares,
    /// The next entry (index in the window) not yet taken by a worker.
    next: AtomicUsize,
    results: Mutex<Results>,
    finished: Condvar,
}

struct Results {
    work: Vec<Option<Work>>,
    /// Entries whose work is not stored yet.
    left: usize,
}

impl Job {
    fn new(window: Window, spares: Spares) -> Job {
        let n = window.len();
        Job {
            window,
            spares,
            next: AtomicUsize::new(0),
            results: Mutex::new(Results { work: (0..n).map(|_| None).collect(), left: n }),
            finished: Condvar::new(),
        }
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Block until every entry's work is stored, and take it, in entry order.
    pub fn wait(&self) -> Vec<Work> {
        let mut r = self.results.lock().unwrap_or_else(PoisonError::into_inner);
        while r.left > 0 {
            r = self.finished.wait(r).unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut r.work).into_iter().map(|w| w.unwrap_or_else(unchecked)).collect()
    }

    /// Take batches of this window until none are left.
    fn help(&self, work: &(impl Fn(&[u8], bool) -> Work + Sync)) {
        let w = &self.window;
        loop {
            let at = self.next.fetch_add(BATCH, Ordering::Relaxed);
            if at >= w.len() {
                return;
            }
            let end = (at + BATCH).min(w.len());
            let done: Vec<Work> = (at..end)
                .map(|k| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(w.line(k), w.is_torn(k))))
                        .unwrap_or_else(|_| unchecked())
                })
                .collect();
            let mut r = self.results.lock().unwrap_or_else(PoisonError::into_inner);
            for (k, x) in (at..end).zip(done) {
                r.work[k] = Some(x);
            }
            r.left -= end - at;
            if r.left == 0 {
                self.finished.notify_all();
            }
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.spares.put(std::mem::take(&mut self.window));
    }
}

/// The result of an entry that could not be checked: a failure of step 2.
fn unchecked() -> Work {
    Work { envelope: Some(Err("this entry could not be checked".into())), ..Work::default() }
}

/// Worker threads living as long as the scope they were started in.
pub struct Pool {
    workers: Vec<mpsc::Sender<Arc<Job>>>,
    spares: Spares,
}

impl Pool {
    /// Start one worker per core (at most 8), each doing `work` for an entry
    /// (its line, and whether it is the torn last line). Windows done with
    /// go back to `spares`.
    pub fn start<'scope, 'env, F>(scope: &'scope Scope<'scope, 'env>, work: &'env F, spares: Spares) -> Pool
    where
        F: Fn(&[u8], bool) -> Work + Sync,
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let workers = (0..threads)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Arc<Job>>();
                scope.spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job.help(work);
                    }
                });
                tx
            })
            .collect();
        Pool { workers, spares }
    }

    /// Queue a window; its work starts as soon as a worker is free.
    pub fn submit(&self, window: Window) -> Arc<Job> {
        let job = Arc::new(Job::new(window, self.spares.clone()));
        let mut sent = false;
        for w in &self.workers {
            sent |= w.send(Arc::clone(&job)).is_ok();
        }
        if !sent {
            // No worker is left to take it: the caller does it.
            job.help(&|_: &[u8], _: bool| unchecked());
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::verify::reader::ChainReader;

    /// Windows of `per` lines over `lines`.
    fn windows(lines: &[&str], per: usize) -> Vec<Window> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut r = ChainReader::new(Box::new(std::io::Cursor::new(text.into_bytes())));
        std::iter::from_fn(|| r.next_window(per).ok().filter(|w| !w.is_empty())).collect()
    }

    #[test]
    fn every_entry_comes_back_in_order_and_a_panic_fails_only_its_entry() {
        let lines: Vec<String> = (0..100).map(|i| if i == 37 { "boom".into() } else { format!("line {i}") }).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let work = |line: &[u8], _torn: bool| {
            assert_ne!(line, b"boom", "a check that panics");
            Work { digest: String::from_utf8(line.to_vec()).unwrap(), ..Work::default() }
        };
        let got: Vec<Work> = std::thread::scope(|sc| {
            let pool = Pool::start(sc, &work, Spares::default());
            // Every window queued before any is waited for: the workers go on alone.
            let jobs: Vec<_> = windows(&lines, 7).into_iter().map(|w| pool.submit(w)).collect();
            jobs.iter().flat_map(|j| j.wait()).collect()
        });
        assert_eq!(got.len(), 100);
        for (i, w) in got.iter().enumerate() {
            if i == 37 {
                assert_eq!(w.envelope, Some(Err("this entry could not be checked".into())));
                assert!(w.signature.is_none() && w.statement.is_none(), "never passed");
            } else {
                assert_eq!(w.digest, format!("line {i}"));
                assert!(w.envelope.is_none());
            }
        }
    }
}
