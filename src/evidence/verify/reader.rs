//! Step 1's reading half: `evidence.jsonl` as a stream of windows of whole
//! lines, so no more than a window of the chain is ever in memory.

use std::io::{BufRead, BufReader, Read};
use std::ops::Range;

use crate::evidence::CHAIN_FILE;

/// Lines per window: enough to keep both cores busy between the serial
/// steps, few enough that a window's work (~3 KB an entry) stays small.
pub const WINDOW: usize = 1024;

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

/// Reads the chain window by window.
pub struct ChainReader<'a> {
    r: BufReader<Box<dyn Read + Send + 'a>>,
    next: usize,
    offset: u64,
    done: bool,
    /// Buffers of windows done with, for the next ones ([`ChainReader::recycle`]).
    spare: Vec<Window>,
}

impl<'a> ChainReader<'a> {
    pub fn new(r: Box<dyn Read + Send + 'a>) -> ChainReader<'a> {
        ChainReader { r: BufReader::with_capacity(256 * 1024, r), next: 0, offset: 0, done: false, spare: Vec::new() }
    }

    /// Hand back a window that is done with: its buffers hold the next
    /// window's lines. A window's bytes are a large block (~700 KB); a fresh
    /// one for each window, grown by doubling, made the allocator map and
    /// zero new pages for every window and give them back after.
    pub fn recycle(&mut self, mut w: Window) {
        w.bytes.clear();
        w.lines.clear();
        self.spare.push(w);
    }

    /// The next window of at most `max` lines; an empty one at the end.
    pub fn next_window(&mut self, max: usize) -> Result<Window, String> {
        let mut w = self.spare.pop().unwrap_or_default();
        (w.first, w.offset, w.torn) = (self.next, self.offset, false);
        while !self.done && w.lines.len() < max {
            let start = w.bytes.len();
            let n = self.r.read_until(b'\n', &mut w.bytes).map_err(|e| {
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
