//! An external sort: records are added in any order and come back sorted,
//! in memory bounded by a budget however many there are.
//!
//! Records are held in memory while their weights add up to at most the
//! budget; past it, the held records are sorted and written as one sorted
//! run to an unlinked temporary file ([`crate::spill`]). At the end, the
//! runs and the last held records are merged, each run read back through a
//! small buffer of its own. A chain whose records fit the budget never
//! touches the disk (and is sorted once, as before).
//!
//! Memory is the budget plus [`RUN_BUF`] bytes per run: the runs number
//! `total / budget`, a few for a chain of a million entries (with the
//! default budget), so a single merge pass is enough.

use anyhow::Result;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufRead;

use crate::spill::{SpillFile, Spilled};

/// Bytes read at a time from each run when merging.
pub const RUN_BUF: usize = 16 * 1024;

/// A record that can be sorted outside memory.
pub trait Record: Ord + Sized {
    /// About the bytes one record holds in memory.
    fn weight(&self) -> usize;
    /// Append its encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Read one back (as [`Record::encode`] wrote it).
    fn decode(r: &mut dyn BufRead) -> std::io::Result<Self>;
}

/// Records being added; [`Sorter::finish`] gives them back sorted.
pub struct Sorter<T: Record> {
    budget: usize,
    held: Vec<T>,
    held_bytes: usize,
    file: Option<SpillFile>,
    /// The runs written: where each starts in the file, and its record count.
    runs: Vec<(u64, usize)>,
    what: &'static str,
}

impl<T: Record> Sorter<T> {
    /// Hold records while their weights add up to at most `budget` bytes;
    /// `what` names them in errors ("the names the chain gives").
    pub fn new(budget: usize, what: &'static str) -> Sorter<T> {
        Sorter { budget, held: Vec::new(), held_bytes: 0, file: None, runs: Vec::new(), what }
    }

    pub fn push(&mut self, x: T) -> Result<()> {
        self.held_bytes += x.weight();
        self.held.push(x);
        if self.held_bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Write the held records as one sorted run.
    fn spill(&mut self) -> Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(SpillFile::create(self.what)?),
        };
        self.held.sort_unstable();
        let start = file.len();
        let mut buf = Vec::new();
        for x in &self.held {
            x.encode(&mut buf);
            if buf.len() >= RUN_BUF {
                file.write_all(&buf)?;
                buf.clear();
            }
        }
        file.write_all(&buf)?;
        self.runs.push((start, self.held.len()));
        self.held.clear(); // (its room is reused for the next run)
        self.held_bytes = 0;
        Ok(())
    }

    /// Every record, sorted.
    pub fn finish(mut self) -> Result<Merge<T>> {
        self.held.sort_unstable();
        let file = self.file.map(SpillFile::finish).transpose()?;
        let mut sources: Vec<Source<T>> = Vec::with_capacity(self.runs.len() + 1);
        if let Some(file) = &file {
            let ends = self.runs.iter().skip(1).map(|r| r.0).chain([file.len()]);
            for (&(start, count), end) in self.runs.iter().zip(ends) {
                sources.push(Source::Run { reader: Box::new(file.reader(start, end, RUN_BUF)), left: count });
            }
        }
        sources.push(Source::Held(self.held.into_iter()));
        let mut m = Merge { sources, heap: BinaryHeap::new(), file, failed: false };
        for k in 0..m.sources.len() {
            m.refill(k)?;
        }
        Ok(m)
    }
}

/// Where merged records come from: a run on disk, or the records still held.
enum Source<T> {
    Run { reader: Box<dyn BufRead + Send>, left: usize },
    Held(std::vec::IntoIter<T>),
}

/// The records of a [`Sorter`], in order: an iterator of `Result`s (a run
/// that cannot be read back is an error, after which it ends).
pub struct Merge<T: Record> {
    sources: Vec<Source<T>>,
    /// The next record of each source that has one (ties go to the lower source).
    heap: BinaryHeap<Reverse<(T, usize)>>,
    file: Option<Spilled>,
    failed: bool,
}

impl<T: Record> Merge<T> {
    /// Put source `k`'s next record on the heap.
    fn refill(&mut self, k: usize) -> Result<()> {
        let next = match &mut self.sources[k] {
            Source::Held(it) => it.next(),
            Source::Run { left: 0, .. } => None,
            Source::Run { reader, left } => {
                *left -= 1;
                match T::decode(reader.as_mut()) {
                    Ok(x) => Some(x),
                    Err(e) => {
                        let f = self.file.as_ref().map(|f| f.read_error(&e));
                        return Err(f.unwrap_or_else(|| e.into()));
                    }
                }
            }
        };
        if let Some(x) = next {
            self.heap.push(Reverse((x, k)));
        }
        Ok(())
    }
}

impl<T: Record> Iterator for Merge<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.failed {
            return None;
        }
        let Reverse((x, k)) = self.heap.pop()?;
        if let Err(e) = self.refill(k) {
            self.failed = true;
            return Some(Err(e));
        }
        Some(Ok(x))
    }
}

/// Read exactly `N` bytes.
pub fn read_array<const N: usize>(r: &mut dyn BufRead) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with a payload, so that equal keys sort by what they carry.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Rec(u32, String);

    impl Record for Rec {
        fn weight(&self) -> usize {
            8 + self.1.len()
        }

        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
            out.extend_from_slice(&(self.1.len() as u32).to_be_bytes());
            out.extend_from_slice(self.1.as_bytes());
        }

        fn decode(r: &mut dyn BufRead) -> std::io::Result<Rec> {
            let k = u32::from_be_bytes(read_array(r)?);
            let n = u32::from_be_bytes(read_array(r)?) as usize;
            let mut s = vec![0u8; n];
            r.read_exact(&mut s)?;
            Ok(Rec(k, String::from_utf8(s).map_err(std::io::Error::other)?))
        }
    }

    fn sorted(budget: usize, input: &[Rec]) -> (Vec<Rec>, usize) {
        let mut s = Sorter::new(budget, "test records");
        for x in input {
            s.push(x.clone()).unwrap();
        }
        let runs = s.runs.len();
        (s.finish().unwrap().collect::<Result<Vec<_>>>().unwrap(), runs)
    }

    #[test]
    fn records_come_back_sorted_held_or_in_runs_with_duplicates_across_runs() {
        // Keys repeat (every key 7 times, far apart: in different runs).
        let input: Vec<Rec> = (0..700u32).map(|i| Rec((i * 37) % 100, format!("p{}", i % 3))).collect();
        let mut want = input.clone();
        want.sort();
        for budget in [0, 1, 50, 1000, usize::MAX] {
            let (got, runs) = sorted(budget, &input);
            assert_eq!(got, want, "budget {budget}");
            // Weights are 10: a budget under the total spills.
            assert_eq!(runs > 0, budget < 7000, "budget {budget}: {runs} runs");
        }
        assert_eq!(sorted(0, &input).1, 700, "a zero budget writes a run per record");
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert_eq!(sorted(0, &[]).0, []);
        assert_eq!(sorted(100, &[]).0, []);
    }

    #[test]
    fn memory_holds_at_most_the_budget() {
        let mut s = Sorter::new(50, "test records");
        for i in 0..100u32 {
            s.push(Rec(i, String::new())).unwrap();
            assert!(s.held.len() <= 6, "{} held", s.held.len());
        }
        assert_eq!(s.runs.len(), 100 / 7, "a run every 7 records of weight 8");
    }
}
