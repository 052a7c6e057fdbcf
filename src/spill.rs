//! Data too large to hold in memory, moved to an unlinked temporary file in
//! the system temp dir (`TMPDIR`): written front to back once, then read back
//! from any offset, as often as needed, through small buffers. The file has
//! no name, so it goes away with the process however it ends.
//!
//! Used past a memory budget only (small outcomes never touch the disk):
//! `validate`'s results ([`crate::output::spool`]), `verify`'s report lines
//! and its sorted runs of names. A temp file that cannot be created or
//! written is an error naming what it was for: the command could not do its
//! work, which is never a pass.

use anyhow::Result;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes buffered on the way to the file, and on the way back per reader.
const BUF: usize = 64 * 1024;

/// A temporary file being written.
pub struct SpillFile {
    out: BufWriter<File>,
    len: u64,
    /// What is kept in it, for errors ("the report's lines").
    what: &'static str,
}

/// A temporary file written in full, to be read from any offset.
#[derive(Debug, Clone)]
pub struct Spilled {
    file: Arc<File>,
    len: u64,
    what: &'static str,
}

impl SpillFile {
    /// A new, empty, unlinked temporary file for `what`.
    pub fn create(what: &'static str) -> Result<SpillFile> {
        let f = tempfile::tempfile().map_err(|e| spill_error(what, &e))?;
        Ok(SpillFile { out: BufWriter::with_capacity(BUF, f), len: 0, what })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| spill_error(self.what, &e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far: where the next write lands.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No more writes: make it readable.
    pub fn finish(self) -> Result<Spilled> {
        let what = self.what;
        let file = self.out.into_inner().map_err(|e| spill_error(what, e.error()))?;
        Ok(Spilled { file: Arc::new(file), len: self.len, what })
    }
}

impl Spilled {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `from..to`, buffered `capacity` bytes at a time (many readers
    /// may read one file at once: each has its own position).
    pub fn reader(&self, from: u64, to: u64, capacity: usize) -> BufReader<At> {
        BufReader::with_capacity(capacity, At { file: Arc::clone(&self.file), pos: from, end: to.min(self.len) })
    }

    /// Every byte, buffered.
    pub fn read_all(&self) -> BufReader<At> {
        self.reader(0, self.len, BUF)
    }

    /// An error reading it back, naming what it holds.
    pub fn read_error(&self, e: &std::io::Error) -> anyhow::Error {
        anyhow::anyhow!("cannot read back {} kept in a temporary file: {e}", self.what)
    }
}

fn spill_error(what: &'static str, e: &std::io::Error) -> anyhow::Error {
    anyhow::Error::new(
        crate::error::Problem::error(format!("cannot keep {what} in a temporary file: {e}"))
            .hint("set TMPDIR to a writable directory with free space"),
    )
}

/// Reads part of a shared file from a position of its own.
pub struct At {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes appended in order: held in memory up to a budget, then moved to a
/// [`SpillFile`] (the held bytes, and every later batch past the budget).
pub struct ByteSpool {
    budget: usize,
    held: Vec<u8>,
    file: Option<SpillFile>,
    what: &'static str,
}

/// A [`ByteSpool`]'s bytes, to be read in order as often as needed.
#[derive(Debug, Clone, Default)]
pub struct SpooledBytes {
    /// The first bytes, when there were too many to hold.
    file: Option<Spilled>,
    held: Arc<Vec<u8>>,
}

impl ByteSpool {
    pub fn new(budget: usize, what: &'static str) -> ByteSpool {
        ByteSpool { budget, held: Vec::new(), file: None, what }
    }

    /// Where the next bytes go: append to it, then call [`ByteSpool::pushed`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.held
    }

    /// Bytes were appended to [`ByteSpool::buffer`]: past the budget, they move to the file.
    pub fn pushed(&mut self) -> Result<()> {
        if self.held.len() > self.budget {
            let file = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(SpillFile::create(self.what)?),
            };
            file.write_all(&self.held)?;
            self.held.clear();
        }
        Ok(())
    }

    pub fn finish(self) -> Result<SpooledBytes> {
        let file = self.file.map(SpillFile::finish).transpose()?;
        Ok(SpooledBytes { file, held: Arc::new(self.held) })
    }
}

impl SpooledBytes {
    /// Every byte in order: the file's, then the held ones.
    pub fn reader(&self) -> impl std::io::BufRead + '_ {
        let file = self.file.as_ref().map(Spilled::read_all);
        let held: &[u8] = &self.held;
        Either { file, held }
    }

    /// An error reading back, naming what was kept.
    pub fn read_error(&self, e: &std::io::Error) -> anyhow::Error {
        match &self.file {
            Some(f) => f.read_error(e),
            None => anyhow::anyhow!("cannot read back data held in memory: {e}"),
        }
    }

    /// Whether any of it went to a temporary file.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }
}

/// The file's bytes, then the held ones, as one buffered stream.
struct Either<'a> {
    file: Option<BufReader<At>>,
    held: &'a [u8],
}

impl Read for Either<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let b = std::io::BufRead::fill_buf(self)?;
            let n = b.len().min(buf.len());
            buf[..n].copy_from_slice(&b[..n]);
            n
        };
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl std::io::BufRead for Either<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if let Some(f) = &mut self.file {
            if !f.fill_buf()?.is_empty() {
                return self.file.as_mut().map_or(Ok(&[][..]), |f| f.fill_buf());
            }
            self.file = None;
        }
        Ok(self.held)
    }

    fn consume(&mut self, n: usize) {
        match &mut self.file {
            Some(f) => f.consume(n),
            None => self.held = &self.held[n.min(self.held.len())..],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_back_in_order_held_or_spilled() {
        let want: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        for budget in [0, 10, 1000, usize::MAX] {
            let mut s = ByteSpool::new(budget, "test bytes");
            for chunk in want.chunks(37) {
                s.buffer().extend_from_slice(chunk);
                s.pushed().unwrap();
                assert!(s.held.len() <= budget.max(37), "budget {budget}: {} held", s.held.len());
            }
            let done = s.finish().unwrap();
            assert_eq!(done.spilled(), budget < want.len(), "budget {budget}");
            for _ in 0..2 {
                let mut got = Vec::new();
                done.reader().read_to_end(&mut got).unwrap();
                assert_eq!(got, want, "budget {budget}");
            }
        }
    }

    /// `validate` leaves its outcome unfreed at exit (`Render::only_memory`)
    /// because a spill file has no name: nothing of it outlives the process.
    #[test]
    fn a_spill_file_has_no_name_to_leave_behind() {
        use std::os::unix::fs::MetadataExt;
        let mut f = SpillFile::create("test bytes").unwrap();
        f.write_all(b"held on disk").unwrap();
        let s = f.finish().unwrap();
        assert_eq!(s.file.metadata().unwrap().nlink(), 0, "a spill file must be unlinked from the start");
    }

    #[test]
    fn a_reader_reads_its_range_only() {
        let mut f = SpillFile::create("test bytes").unwrap();
        f.write_all(b"0123456789").unwrap();
        assert_eq!(f.len(), 10);
        let s = f.finish().unwrap();
        let mut got = String::new();
        s.reader(3, 7, 2).read_to_string(&mut got).unwrap();
        assert_eq!(got, "3456");
        got.clear();
        s.reader(8, 100, 2).read_to_string(&mut got).unwrap();
        assert_eq!(got, "89");
    }
}
