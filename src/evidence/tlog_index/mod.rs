//! `tlog-index`: what `prove` needs to answer without reading the chain.
//!
//! Every seal writes it beside `checkpoint` (atomically, [`fsx::write_atomic`]),
//! for the log that seal's checkpoint signs: its `n` entries, the lines of
//! `evidence.jsonl` before the seal. `prove` then reads a few hundred hashes
//! from it and two lines of the chain (the entry, found by byte offset, and the
//! seal after the `n` entries), instead of parsing and hashing every line:
//! a proof on a million-entry chain costs milliseconds, not seconds.
//!
//! It is a cache, not evidence: nothing in it is trusted. `prove` recomputes the
//! checkpoint's root from the stored hashes, checks the entry's line against
//! its leaf hash and the proof it built against the root before printing it,
//! so a wrong index can only make `prove` fail (exit 2, naming it), never print
//! a proof for something false; and `verify-proof` checks every proof against
//! the signed checkpoint anyway. `verify` checks that it is exactly the index
//! of the last seal's log (step 10), so it is no unexplained file either.
//!
//! Layout (integers big-endian `u64`):
//!
//! ```text
//! header   16-byte magic "ap-tlog-index/1\n", n (entries), m (names)
//! hashes   the stored hashes of the RFC 6962 tree of the n lines, level-major
//!          (tlog::stored): 2n − popcount(n) × 32 bytes; level 0 = leaf hashes
//! offsets  n + 1 byte offsets into evidence.jsonl: where line i starts; the
//!          last is where the seal's line starts (the bytes the log covers)
//! names    m × (first 16 bytes of sha256(name), entry): every subject name of
//!          the n entries with the first entry naming it, sorted by key
//! ```
//!
//! The file's length must be exactly what n and m say.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::TLOG_INDEX_FILE;
use super::tlog::merkle::Hash;
use super::tlog::stored::{self, StoredHashes};
use crate::fsx;

/// First bytes of every index.
pub const MAGIC: &[u8; 16] = b"ap-tlog-index/1\n";
/// Largest index read (bytes): ≈ 100 bytes per entry, so ten million entries,
/// beyond the chain's own cap ([`fsx::caps::CHAIN`]).
pub const MAX_INDEX: u64 = 1 << 30;
pub(crate) const HEADER: u64 = 32;
pub(crate) const KEY: usize = 16;
pub(crate) const NAME_RECORD: u64 = KEY as u64 + 8;

/// The lookup key of a subject name: the first 16 bytes of its sha256.
pub(crate) fn name_key(name: &str) -> [u8; KEY] {
    let d = Sha256::digest(name.as_bytes());
    let mut k = [0u8; KEY];
    k.copy_from_slice(&d[..KEY]);
    k
}

/// The index of a log of `leaves` (leaf hashes of its lines), whose lines
/// start at `offsets` (one more: where the line after the log starts), and
/// whose entries name `names` (name, entry; in any order, repeats allowed).
pub fn encode<'a>(leaves: &[Hash], offsets: &[u64], names: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<u8> {
    assert_eq!(offsets.len(), leaves.len() + 1, "one offset per line and one after the last");
    let n = leaves.len() as u64;
    let mut keys: Vec<([u8; KEY], u64)> = names.into_iter().map(|(s, i)| (name_key(s), i)).collect();
    keys.sort_unstable();
    keys.dedup_by_key(|(k, _)| *k); // sorted by (key, entry): the first entry naming it stays
    let hashes = stored::build(leaves);
    let mut out = Vec::with_capacity(
        (HEADER + 32 * hashes.len() as u64 + 8 * (n + 1) + NAME_RECORD * keys.len() as u64) as usize,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&(keys.len() as u64).to_be_bytes());
    for h in &hashes {
        out.extend_from_slice(h);
    }
    for o in offsets {
        out.extend_from_slice(&o.to_be_bytes());
    }
    for (k, i) in &keys {
        out.extend_from_slice(k);
        out.extend_from_slice(&i.to_be_bytes());
    }
    out
}

/// An index opened for look-ups (read with `pread`, never whole).
#[derive(Debug)]
pub struct TlogIndex {
    file: File,
    path: PathBuf,
    /// Entries in the log it indexes (the checkpoint's size).
    pub size: u64,
    names: u64,
    offsets_at: u64,
    names_at: u64,
}

impl TlogIndex {
    /// Open `dir/tlog-index`: `None` when there is none (evidence sealed by an
    /// older agentplane). A FIFO, symlink, device or an oversized file is an
    /// error at once, never a hang ([`fsx::open_regular`]); so is a file
    /// whose length is not the one its header implies.
    pub fn open(dir: &Path) -> Result<Option<TlogIndex>> {
        let path = dir.join(TLOG_INDEX_FILE);
        let file = match fsx::open_regular(&path, Some(MAX_INDEX)) {
            Ok(f) => f,
            Err(e) if e.kind == Some(fsx::NotRegular::Missing) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata().with_context(|| format!("cannot read `{}`", path.display()))?.len();
        let mut header = [0u8; HEADER as usize];
        if len < HEADER {
            bail!("`{}` is malformed: {len} bytes, shorter than its header", path.display());
        }
        file.read_exact_at(&mut header, 0).with_context(|| format!("cannot read `{}`", path.display()))?;
        if &header[..16] != MAGIC {
            bail!("`{}` is not an agentplane tlog index (unknown magic)", path.display());
        }
        let size = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));
        let names = u64::from_be_bytes(header[24..32].try_into().expect("8 bytes"));
        // Checked arithmetic: a hostile header must not overflow into a small length.
        let expected = (|| {
            // 64 · size ≥ 32 · count(size): when it does not overflow, neither does the hashes' length.
            size.checked_mul(64)?;
            let offsets_at = HEADER.checked_add(32 * stored::count(size))?;
            let names_at = offsets_at.checked_add(size.checked_add(1)?.checked_mul(8)?)?;
            let end = names_at.checked_add(names.checked_mul(NAME_RECORD)?)?;
            Some((offsets_at, names_at, end))
        })();
        let Some((offsets_at, names_at, _)) = expected.filter(|(_, _, end)| *end == len) else {
            bail!(
                "`{}` is malformed: {len} bytes, not the length its header gives ({size} entries, {names} names): \
                 truncated or padded",
                path.display()
            );
        };
        Ok(Some(TlogIndex { file, path, size, names, offsets_at, names_at }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, at).with_context(|| format!("cannot read `{}` at byte {at}", self.path.display()))
    }

    fn u64_at(&self, at: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_at(at, &mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Where line `i` of `evidence.jsonl` starts (`i == size`: the seal's line).
    pub fn offset(&self, i: u64) -> Result<u64> {
        if i > self.size {
            bail!("line {i} is outside `{}` ({} entries)", self.path.display(), self.size);
        }
        self.u64_at(self.offsets_at + 8 * i)
    }

    /// The first entry naming `name`, if the index lists it.
    pub fn lookup(&self, name: &str) -> Result<Option<u64>> {
        let key = name_key(name);
        let (mut lo, mut hi) = (0u64, self.names);
        let mut rec = [0u8; NAME_RECORD as usize];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            self.read_at(self.names_at + NAME_RECORD * mid, &mut rec)?;
            match rec[..KEY].cmp(&key[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return Ok(Some(u64::from_be_bytes(rec[KEY..].try_into().expect("8 bytes"))));
                }
            }
        }
        Ok(None)
    }
}

impl StoredHashes for TlogIndex {
    fn stored(&mut self, level: u32, k: u64) -> Result<Hash> {
        if level >= 64 || k >= self.size >> level {
            bail!("stored hash ({level}, {k}) is outside `{}`", self.path.display());
        }
        let mut h = [0u8; 32];
        self.read_at(HEADER + 32 * stored::position(self.size, level, k), &mut h)?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests;
