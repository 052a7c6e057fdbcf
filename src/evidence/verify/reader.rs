//! Step 1's reading half: `evidence.jsonl` as a stream of windows of whole
//! lines, so no more than a window of the chain is ever in memory.

use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use crate::evidence::CHAIN_FILE;
use crate::fsx;

/// Lines per window: enough to keep both cores busy between the serial
/// steps, few enough that a window's work (~3 KB an entry) stays small.
pub const WINDOW: usize = 1024;

/// A window ends early once it holds this many bytes: a chain of large lines
/// is read in smaller windows, never 1,024 lines of up to [`LINE_CAP`].
const WINDOW_BYTES: usize = 8 * 1024 * 1024;

/// What a fresh window's bytes start with: 1,024 entries of ~1 KB each.
const FIRST_RESERVE: usize = 1024 * 1024;

/// The longest line an entry can be: an envelope is a document like any
/// other agentplane reads ([`fsx::caps::DOCUMENT`]). Entries agentplane
/// writes are a few KB; a longer line is refused, not held whole.
pub const LINE_CAP: u64 = fsx::caps::DOCUMENT;

/// A run of consecutive lines of the chain.
#[derive(Debug, Default)]
pub struct Window {
    /// The index (from 0) of its first line in the chain.
    pub first: usize,
    /// Where its first line starts in `evidence.jsonl`.
    pub offset: u64,
    bytes: Vec<u8>,
    /// Each line's bytes in `bytes`, without its newline.
    lines: Vec<Range<usize>>,
    /// Its last line is the chain's last and has no newline (torn or truncated).
    pub torn: bool,
}

impl Window {
    pub fn line(&self, k: usize) -> &[u8] {
        &self.bytes[self.lines[k].clone()]
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether line `k` (in this window) is the torn last line.
    pub fn is_torn(&self, k: usize) -> bool {
        self.torn && k + 1 == self.lines.len()
    }

    /// The chain index of each line, with its bytes.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> {
        (0..self.len()).map(|k| (self.first + k, self.line(k)))
    }
}

/// Windows done with, for the next ones. A window's bytes are a large block
/// (~1 MB for 1,024 entries); a fresh one for each window, grown by doubling,
/// made the allocator map and zero new pages for every window. Whoever lets
/// go of a window last (the reader, or a worker still holding its job) puts
/// it here, so it comes back however the threads interleave.
#[derive(Debug, Clone, Default)]
pub struct Spares(Arc<Mutex<Vec<Window>>>);

impl Spares {
    pub fn put(&self, mut w: Window) {
        w.bytes.clear();
        w.lines.clear();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(w);
    }

    fn take(&self) -> Option<Window> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }
}

/// Reads the chain window by window.
pub struct ChainReader<'a> {
    r: BufReader<Box<dyn Read + Send + 'a>>,
    next: usize,
    offset: u64,
    done: bool,
    /// Windows done with, for the next ones.
    spares: Spares,
    line_cap: u64,
    /// Why the stream stopped, told once the lines before it were handed out.
    stopped: Option<String>,
}

impl<'a> ChainReader<'a> {
    pub fn new(r: Box<dyn Read + Send + 'a>) -> ChainReader<'a> {
        ChainReader::with_line_cap(r, LINE_CAP)
    }

    /// [`ChainReader::new`] refusing lines over `line_cap` bytes (tests use small ones).
    pub fn with_line_cap(r: Box<dyn Read + Send + 'a>, line_cap: u64) -> ChainReader<'a> {
        ChainReader {
            r: BufReader::with_capacity(256 * 1024, r),
            next: 0,
            offset: 0,
            done: false,
            spares: Spares::default(),
            line_cap,
            stopped: None,
        }
    }

    /// Where windows done with go back to, for the next ones.
    pub fn spares(&self) -> Spares {
        self.spares.clone()
    }

    /// The next window of at most `max` lines; an empty one at the end. A
    /// line over the cap ends the stream: the lines before it come first,
    /// then the next call is the error.
    pub fn next_window(&mut self, max: usize) -> Result<Window, String> {
        if let Some(why) = self.stopped.take() {
            return Err(why);
        }
        let mut w = self.spares.take().unwrap_or_default();
        if w.bytes.capacity() == 0 {
            // Room for a window of typical entries at once: grown by doubling
            // from nothing, each step copied into freshly mapped pages.
            w.bytes.reserve(FIRST_RESERVE);
            w.lines.reserve(max.min(WINDOW));
        }
        (w.first, w.offset, w.torn) = (self.next, self.offset, false);
        while !self.done && w.lines.len() < max && (w.lines.is_empty() || w.bytes.len() < WINDOW_BYTES) {
            let start = w.bytes.len();
            // At most the cap and a newline: a longer line is never held whole.
            let n = (&mut self.r).take(self.line_cap + 1).read_until(b'\n', &mut w.bytes).map_err(|e| {
                if e.kind() == std::io::ErrorKind::Other {
                    e.to_string()
                } else {
                    format!("cannot read `{CHAIN_FILE}`: {e}")
                }
            })?;
            if n == 0 {
                self.done = true;
                break;
            }
            if n as u64 > self.line_cap && w.bytes.last() != Some(&b'\n') {
                w.bytes.truncate(start);
                self.done = true;
                let why = format!(
                    "line {} of `{CHAIN_FILE}` is over {} bytes: no entry is that long, and the chain is not read past it",
                    self.next + w.lines.len() + 1,
                    self.line_cap
                );
                if w.lines.is_empty() {
                    return Err(why);
                }
                self.stopped = Some(why);
                break;
            }
            self.offset += n as u64;
            if w.bytes.last() == Some(&b'\n') {
                w.lines.push(start..w.bytes.len() - 1);
            } else {
                w.lines.push(start..w.bytes.len());
                w.torn = true;
                self.done = true;
            }
        }
        self.next += w.lines.len();
        Ok(w)
    }

    /// Bytes read so far: where the chain ends, once it was read.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &str, cap: u64) -> ChainReader<'static> {
        ChainReader::with_line_cap(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())), cap)
    }

    fn lines(w: &Window) -> Vec<String> {
        (0..w.len()).map(|k| String::from_utf8(w.line(k).to_vec()).unwrap()).collect()
    }

    #[test]
    fn a_line_over_the_cap_ends_the_stream_after_the_lines_before_it() {
        // Lines of exactly the cap pass; one byte more does not.
        let mut r = reader("aaaa\nbbbb\ncccccc\ndd\n", 4);
        let w = r.next_window(10).unwrap();
        assert_eq!(lines(&w), ["aaaa", "bbbb"]);
        let why = r.next_window(10).unwrap_err();
        assert!(why.contains("line 3 of `evidence.jsonl` is over 4 bytes"), "{why}");
        assert_eq!(r.offset(), 10, "the chain ends where the long line starts");
        // First thing in a window: the error at once.
        let mut r = reader("aaaaa\n", 4);
        assert!(r.next_window(10).unwrap_err().contains("line 1 "));
        // A torn last line over the cap is refused too; one within it is torn.
        assert!(reader("aaaaa", 4).next_window(10).is_err());
        let w = reader("aaaa", 4).next_window(10).unwrap();
        assert!(w.torn && lines(&w) == ["aaaa"]);
    }

    #[test]
    fn windows_end_at_their_line_count_or_byte_budget() {
        let line = "x".repeat(1024 * 1024);
        let text: String = (0..20).map(|_| format!("{line}\n")).collect();
        let mut r = reader(&text, 2 * 1024 * 1024);
        let sizes: Vec<usize> =
            std::iter::from_fn(|| r.next_window(1024).ok().filter(|w| !w.is_empty())).map(|w| w.len()).collect();
        assert_eq!(sizes, [8, 8, 4], "8 MiB a window");
        let mut r = reader("a\nb\nc\n", 9);
        assert_eq!(lines(&r.next_window(2).unwrap()), ["a", "b"]);
        assert_eq!(lines(&r.next_window(2).unwrap()), ["c"]);
        assert!(r.next_window(2).unwrap().is_empty());
    }
}
