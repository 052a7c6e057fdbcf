//! Step 10's `tlog-index` check, in place: the file is compared with the
//! index of the log as the stream goes ([`crate::evidence::tlog_index`] gives
//! the layout), instead of building the whole expected index (~230 bytes an
//! entry) and hashing it at the end.
//!
//! The log the index must describe ends at the last checkpointed seal, known
//! only at the end: the stream is compared with the log the file's header
//! claims (`n` entries, `m` names), and at the end that `n` must be the one
//! the last seal gives. Each stored hash is compared as the tree completes
//! it: level `l`'s hashes are produced in order, so each level reads its part
//! of the file through its own small buffer. The names (20 bytes each) are
//! sorted outside memory past a budget ([`super::extsort`]): the file lists
//! them sorted by key, the chain in entry order.

use super::extsort::{Record, Sorter, read_array};
use super::files::ReadAt;
use crate::evidence::TLOG_INDEX_FILE;
use crate::evidence::tlog::merkle::{Hash, node_hash};
use crate::evidence::tlog::stored;
use crate::evidence::tlog_index::{HEADER, KEY, MAGIC, NAME_RECORD, name_key};

/// Bytes read at a time by each cursor.
const CHUNK: usize = 8 * 1024;

/// Reads a run of fixed-size records from one place of the file on.
struct Cursor {
    at: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Cursor {
    fn new(at: u64) -> Cursor {
        Cursor { at, buf: Vec::new(), pos: 0 }
    }

    /// The next `N` bytes (the file's layout keeps every record inside it).
    fn next<const N: usize>(&mut self, file: &dyn ReadAt) -> std::io::Result<[u8; N]> {
        if self.pos + N > self.buf.len() {
            // Whole records only: none is ever split across two reads.
            let left = file.len().saturating_sub(self.at) as usize;
            let n = ((CHUNK / N).min(left / N)).max(1) * N;
            self.buf.resize(n, 0);
            file.read_exact_at(&mut self.buf, self.at)?;
            self.at += n as u64;
            self.pos = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }
}

/// One subject name of the log: its key and the entry naming it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct NameRec {
    key: [u8; KEY],
    entry: u32,
}

impl Record for NameRec {
    fn weight(&self) -> usize {
        size_of::<NameRec>()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.entry.to_be_bytes());
    }

    fn decode(r: &mut dyn std::io::BufRead) -> std::io::Result<NameRec> {
        Ok(NameRec { key: read_array(r)?, entry: u32::from_be_bytes(read_array(r)?) })
    }
}

/// The comparison so far.
pub struct IndexCheck<'a> {
    file: Box<dyn ReadAt + 'a>,
    /// Entries and names the header claims.
    n: u64,
    m: u64,
    /// Whether everything compared so far matched (and the layout is whole).
    same: bool,
    /// Why the file could not be read: the finding, in place of a mismatch.
    error: Option<String>,
    /// Per level, the cursor on its stored hashes.
    levels: Vec<Cursor>,
    offsets: Cursor,
    /// The perfect subtrees completed so far (level, root), as a stack.
    stack: Vec<(u32, Hash)>,
    leaves: u64,
    names: Sorter<NameRec>,
    /// The first error keeping the names (reported by [`IndexCheck::matches`]).
    kept: anyhow::Result<()>,
    names_at: u64,
}

impl<'a> IndexCheck<'a> {
    /// Start comparing with `file` (already opened: a regular file),
    /// holding up to `budget` bytes of names in memory.
    pub fn new(file: Box<dyn ReadAt + 'a>, budget: usize) -> IndexCheck<'a> {
        let mut c = IndexCheck {
            file,
            n: 0,
            m: 0,
            same: false,
            error: None,
            levels: Vec::new(),
            offsets: Cursor::new(0),
            stack: Vec::new(),
            leaves: 0,
            names: Sorter::new(budget, "the names `tlog-index` lists"),
            kept: Ok(()),
            names_at: 0,
        };
        let mut header = [0u8; HEADER as usize];
        if c.file.len() < HEADER {
            return c;
        }
        if let Err(e) = c.file.read_exact_at(&mut header, 0) {
            c.error = Some(unreadable(&e));
            return c;
        }
        if &header[..16] != MAGIC {
            return c;
        }
        let n = u64::from_be_bytes(header[16..24].try_into().unwrap_or_default());
        let m = u64::from_be_bytes(header[24..32].try_into().unwrap_or_default());
        // Checked: a hostile header must not overflow into a small length.
        let layout = (|| {
            n.checked_mul(64)?;
            let offsets_at = HEADER.checked_add(32 * stored::count(n))?;
            let names_at = offsets_at.checked_add(n.checked_add(1)?.checked_mul(8)?)?;
            let end = names_at.checked_add(m.checked_mul(NAME_RECORD)?)?;
            Some((offsets_at, names_at, end))
        })();
        let Some((offsets_at, names_at, _)) = layout.filter(|(_, _, end)| *end == c.file.len()) else { return c };
        c.levels =
            (0..64).take_while(|&l| n >> l > 0).map(|l| Cursor::new(HEADER + 32 * stored::position(n, l, 0))).collect();
        (c.n, c.m, c.same, c.offsets, c.names_at) = (n, m, true, Cursor::new(offsets_at), names_at);
        c
    }

    fn read<const N: usize>(&mut self, which: Option<u32>) -> Option<[u8; N]> {
        let file = &*self.file;
        let cursor = match which {
            Some(l) => &mut self.levels[l as usize],
            None => &mut self.offsets,
        };
        match cursor.next::<N>(file) {
            Ok(b) => Some(b),
            Err(e) => {
                self.error.get_or_insert_with(|| unreadable(&e));
                self.same = false;
                None
            }
        }
    }

    /// Line `i` of the chain starts at byte `offset`; `leaf` is its leaf
    /// hash and `names` what it names.
    pub fn line<'n>(&mut self, i: u64, offset: u64, leaf: &Hash, names: impl Iterator<Item = &'n str>) {
        if !self.same || i > self.n {
            return;
        }
        if self.read::<8>(None).is_some_and(|o| u64::from_be_bytes(o) != offset) {
            self.same = false;
        }
        if i == self.n {
            return; // the seal's line: only where it starts is indexed
        }
        let entry = u32::try_from(i).unwrap_or(u32::MAX);
        for s in names {
            if self.kept.is_ok() {
                self.kept = self.names.push(NameRec { key: name_key(s), entry });
            }
        }
        let mut node = (0u32, *leaf);
        loop {
            let at = node.0;
            if self.read::<32>(Some(at)).is_some_and(|h| h != node.1) {
                self.same = false;
                return;
            }
            match self.stack.last() {
                Some(&(l, left)) if l == node.0 => {
                    self.stack.pop();
                    node = (l + 1, node_hash(&left, &node.1));
                }
                _ => break,
            }
        }
        self.stack.push(node);
        self.leaves += 1;
    }

    /// Whether the file is exactly the index of the first `n` lines, whose
    /// end is `end` (where the chain's bytes end, when `n` is every line).
    /// `Ok(Err)`: the file could not be read (a finding); `Err`: the names
    /// could not be kept (the check could not be made).
    pub fn matches(mut self, n: u64, lines: u64, end: u64) -> anyhow::Result<Result<bool, String>> {
        std::mem::replace(&mut self.kept, Ok(()))?;
        if n != self.n || !self.same || self.leaves != n {
            return Ok(self.error.map_or(Ok(false), Err));
        }
        if n == lines && self.read::<8>(None).is_some_and(|o| u64::from_be_bytes(o) != end) {
            return Ok(Ok(false));
        }
        // The names, sorted by (key, entry): the first entry naming a key stays.
        let names = std::mem::replace(&mut self.names, Sorter::new(0, "")).finish()?;
        let mut at = Cursor::new(self.names_at);
        let (mut count, mut last) = (0u64, None);
        let mut same = true;
        for r in names {
            let r = r?;
            if last == Some(r.key) {
                continue;
            }
            last = Some(r.key);
            count += 1;
            if !same || count > self.m {
                same = false;
                continue; // (the count decides; the records are not read past it)
            }
            let rec = match at.next::<{ NAME_RECORD as usize }>(&*self.file) {
                Ok(rec) => rec,
                Err(e) => return Ok(Err(unreadable(&e))),
            };
            if rec[..KEY] != r.key || rec[KEY..] != u64::from(r.entry).to_be_bytes() {
                same = false;
            }
        }
        if count != self.m || !same {
            return Ok(Ok(false));
        }
        Ok(self.error.map_or(Ok(self.same), Err))
    }
}

fn unreadable(e: &std::io::Error) -> String {
    format!("cannot read `{TLOG_INDEX_FILE}`: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_records_of_any_size_across_its_chunks() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let file: &[u8] = &bytes;
        for at in [0u64, 7, 32] {
            let mut c = Cursor::new(at);
            let mut got = Vec::new();
            while (got.len() as u64) + at + 24 <= file.len() as u64 {
                got.extend_from_slice(&c.next::<24>(&file).unwrap());
            }
            assert_eq!(got, bytes[at as usize..at as usize + got.len()], "from {at}");
            assert!(c.next::<24>(&file).is_err(), "past the end");
        }
    }
}
