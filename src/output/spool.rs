//! Results held in order until they can be rendered: in memory up to a
//! budget, beyond it appended to an unlinked temporary file. An outcome whose
//! first byte depends on its last result (`validate`'s json starts with
//! `"valid"`; a shared outDir fails both bundles) is then rendered in bounded
//! memory however many results there are. The file is a [`SpillFile`].

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::BufRead;

use crate::spill::{SpillFile, Spilled};

/// What the file holds, for its errors.
const WHAT: &str = "the results";

/// Results being added; [`Spool::seal`] makes them readable.
pub struct Spool<T> {
    budget: usize,
    held: Vec<T>,
    held_bytes: usize,
    spill: Option<SpillFile>,
    spilled: usize,
}

/// Results in the order they were added, to be read as often as needed.
pub struct Spooled<T> {
    /// The first results, one JSON document a line, when there were too many to hold.
    spill: Option<(Spilled, usize)>,
    held: Vec<T>,
}

impl<T: Serialize + DeserializeOwned> Spool<T> {
    /// Hold results in memory while their weights add up to at most `budget` bytes.
    pub fn new(budget: usize) -> Spool<T> {
        Spool { budget, held: Vec::new(), held_bytes: 0, spill: None, spilled: 0 }
    }

    /// Add one result; `weight` is about the bytes it holds in memory.
    pub fn push(&mut self, item: T, weight: usize) -> Result<()> {
        self.held.push(item);
        self.held_bytes += weight;
        if self.held_bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.spilled + self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spill(&mut self) -> Result<()> {
        let out = match &mut self.spill {
            Some(out) => out,
            None => self.spill.insert(SpillFile::create(WHAT)?),
        };
        let mut line = Vec::new();
        for item in self.held.drain(..) {
            line.clear();
            serde_json::to_writer(&mut line, &item).context("cannot encode a result to keep it")?;
            line.push(b'\n');
            out.write_all(&line)?;
            self.spilled += 1;
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// No more results: make them readable.
    pub fn seal(self) -> Result<Spooled<T>> {
        let spill = match self.spill {
            Some(out) => Some((out.finish()?, self.spilled)),
            None => None,
        };
        Ok(Spooled { spill, held: self.held })
    }
}

impl<T: DeserializeOwned> Spooled<T> {
    pub fn len(&self) -> usize {
        self.spill.as_ref().map_or(0, |(_, n)| *n) + self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `f` on every result, in order.
    pub fn for_each(&self, mut f: impl FnMut(&T) -> Result<()>) -> Result<()> {
        if let Some((file, n)) = &self.spill {
            let mut lines = file.read_all();
            let mut line = Vec::new();
            for i in 0..*n {
                line.clear();
                lines.read_until(b'\n', &mut line).context("cannot read back the results kept in a temporary file")?;
                let item: T = serde_json::from_slice(&line)
                    .with_context(|| format!("result {} kept in a temporary file cannot be read back", i + 1))?;
                f(&item)?;
            }
        }
        self.held.iter().try_for_each(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &Spooled<(u32, String)>) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        s.for_each(|x| {
            out.push(x.clone());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn results_come_back_in_order_held_or_spilled() {
        let want: Vec<(u32, String)> = (0..1000).map(|i| (i, format!("line\n{i}\t\"q\""))).collect();
        for budget in [0, 1, 100, 1 << 30] {
            let mut spool = Spool::new(budget);
            for w in &want {
                spool.push(w.clone(), 10).unwrap();
            }
            assert_eq!(spool.len(), 1000);
            let sealed = spool.seal().unwrap();
            assert_eq!(sealed.len(), 1000);
            assert_eq!(sealed.spill.is_some(), budget < 10_000, "budget {budget}");
            // Read twice: reading does not consume.
            assert_eq!(all(&sealed), want, "budget {budget}");
            assert_eq!(all(&sealed), want, "budget {budget}");
        }
    }

    #[test]
    fn memory_holds_at_most_the_budget() {
        let mut spool = Spool::new(50);
        for i in 0..100u32 {
            spool.push((i, String::new()), 10).unwrap();
            assert!(spool.held.len() <= 5, "{} held", spool.held.len());
        }
    }

    #[test]
    fn an_error_from_the_reader_stops_the_walk() {
        let mut spool = Spool::new(0);
        for i in 0..10u32 {
            spool.push((i, String::new()), 1).unwrap();
        }
        let sealed = spool.seal().unwrap();
        let mut seen = 0;
        let r = sealed.for_each(|(i, _)| {
            seen += 1;
            if *i == 4 { anyhow::bail!("stop at 4") } else { Ok(()) }
        });
        assert_eq!(r.unwrap_err().to_string(), "stop at 4");
        assert_eq!(seen, 5);
    }
}
