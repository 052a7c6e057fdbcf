//! The report's line per entry, kept compact: one encoded record per entry
//! (a kind byte, the signer's index, the file name and the result, ~35 bytes
//! for a typical entry) instead of an `EntryResult` of ~110 bytes with three
//! allocations, appended to a [`ByteSpool`]: held in memory up to a budget,
//! then moved to an unlinked temporary file, so a chain of any length keeps
//! its lines in bounded memory. Lines are decoded as they are read back, as
//! often as the report is shown (the human table reads them once: its
//! column widths are kept as the lines are written).
//!
//! Nothing else is kept per entry: the first line that failed is kept with
//! its kind (what the first failure names). Steps 9 and 10 judge seals at
//! the end: what they found is kept beside the lines (`late`, one per failing
//! seal) and shown in a seal's line that was otherwise `ok`; the lines
//! written with a finding (a tampered chain's only) are kept to know which.

use anyhow::Result;
use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use super::EntryResult;
use crate::spill::{ByteSpool, SpooledBytes};
use crate::types::ArtifactKind;

/// Every kind, in a fixed order: a line stores its kind's position + 1 (0: none).
const KINDS: [ArtifactKind; 8] = ArtifactKind::ALL;

/// The first line that failed: its seq, kind and result.
type FirstBad = (usize, Option<ArtifactKind>, String);

/// The lines of a report, in entry order.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    len: usize,
    /// Whether the lines were kept (`lines`); without them, [`Entries::each`]
    /// sees nothing and only [`Entries::first_failure`] and `len` answer.
    kept: bool,
    lines: SpooledBytes,
    signers: Arc<Vec<Arc<str>>>,
    first_bad: Option<FirstBad>,
    /// Findings of steps 9 and 10 for seal lines that were `ok` before them.
    late: Arc<BTreeMap<usize, String>>,
    /// See [`Entries::widths`].
    widths: (usize, usize),
}

/// Builds [`Entries`] line by line.
pub struct EntriesWriter {
    len: usize,
    keep: bool,
    lines: ByteSpool,
    signers: Vec<Arc<str>>,
    first_bad: Option<FirstBad>,
    /// The lines written with a result other than `ok`, in order (a
    /// tampered chain's: its findings are kept too).
    failed: Vec<usize>,
    late: BTreeMap<usize, String>,
    widths: (usize, usize),
    /// The first error keeping the lines (reported by [`EntriesWriter::finish`]).
    error: Option<anyhow::Error>,
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    // Length + 1 as a LEB128 varint (0: none), then the bytes.
    let mut n = s.map_or(0, |s| s.len() as u64 + 1);
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    if let Some(s) = s {
        out.extend_from_slice(s.as_bytes());
    }
}

fn get_str(r: &mut dyn BufRead) -> std::io::Result<Option<String>> {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let mut b = [0u8];
        r.read_exact(&mut b)?;
        n |= u64::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 || shift >= 64 {
            break;
        }
    }
    let Some(n) = n.checked_sub(1) else { return Ok(None) };
    let mut s = vec![0u8; usize::try_from(n).map_err(std::io::Error::other)?];
    r.read_exact(&mut s)?;
    // Written from a `&str`: UTF-8 unless the file was changed under us.
    String::from_utf8(s).map(Some).map_err(std::io::Error::other)
}

impl EntriesWriter {
    /// `keep`: keep every line (else only what the verdict needs), in
    /// memory up to `budget` bytes and in a temporary file beyond.
    pub fn new(signers: Vec<Arc<str>>, keep: bool, budget: usize) -> EntriesWriter {
        EntriesWriter {
            len: 0,
            keep,
            lines: ByteSpool::new(budget, "the report's lines"),
            signers,
            first_bad: None,
            failed: Vec::new(),
            late: BTreeMap::new(),
            widths: (0, 0),
            error: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next line (its seq is its position): `result` is `None` for `ok`.
    pub fn push(
        &mut self,
        kind: Option<ArtifactKind>,
        file: Option<&str>,
        signer: Option<usize>,
        result: Option<&str>,
    ) {
        let i = self.len;
        self.len += 1;
        if self.first_bad.is_none()
            && let Some(r) = result.filter(|r| *r != "ok")
        {
            self.first_bad = Some((i, kind, r.to_string()));
        }
        if result.is_some() {
            self.failed.push(i);
        }
        if self.keep && self.error.is_none() {
            let kind_width = kind.map_or(1, |k| k.as_str().len());
            let file_width = crate::output::escape::untrusted_width(file.unwrap_or("-"));
            self.widths = (self.widths.0.max(kind_width), self.widths.1.max(file_width));
            let code = kind.and_then(|k| KINDS.iter().position(|x| *x == k)).map_or(0, |p| p as u8 + 1);
            let out = self.lines.buffer();
            out.push(code);
            let signer = signer.map_or(0u16, |k| u16::try_from(k + 1).unwrap_or(0));
            out.extend_from_slice(&signer.to_le_bytes());
            put_str(out, file);
            put_str(out, result);
            if let Err(e) = self.lines.pushed() {
                self.error = Some(e);
            }
        }
    }

    /// A finding of steps 9 or 10 for seal line `i`: its result, if nothing came before.
    pub fn late(&mut self, i: usize, why: &str) {
        if self.failed.binary_search(&i).is_err() && !self.late.contains_key(&i) {
            self.late.insert(i, why.to_string());
        }
    }

    pub fn finish(self) -> Result<Entries> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(Entries {
            len: self.len,
            kept: self.keep,
            lines: self.lines.finish()?,
            signers: Arc::new(self.signers),
            first_bad: self.first_bad,
            late: Arc::new(self.late),
            widths: self.widths,
        })
    }
}

impl Entries {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The widest kind name (`?` for none) and file name (`-` for none, as
    /// [`crate::output::escape::untrusted`] shows it) among the kept lines,
    /// in characters: the human table's column widths, known without
    /// reading the lines back.
    pub fn widths(&self) -> (usize, usize) {
        self.widths
    }

    /// Call `f` on every line, decoded, in order (none when the lines were
    /// not kept). `Err`: `f`'s, or the lines could not be read back.
    pub fn each(&self, mut f: impl FnMut(EntryResult) -> Result<()>) -> Result<()> {
        if !self.kept {
            return Ok(());
        }
        let mut r = self.lines.reader();
        for seq in 0..self.len {
            let e = self.decode(&mut r, seq).map_err(|e| self.lines.read_error(&e))?;
            f(e)?;
        }
        Ok(())
    }

    fn decode(&self, r: &mut dyn BufRead, seq: usize) -> std::io::Result<EntryResult> {
        let mut head = [0u8; 3];
        r.read_exact(&mut head)?;
        let code = head[0] as usize;
        let signer = u16::from_le_bytes([head[1], head[2]]) as usize;
        let file = get_str(r)?;
        let result = get_str(r)?.or_else(|| self.late.get(&seq).cloned());
        Ok(EntryResult {
            seq,
            kind: code.checked_sub(1).and_then(|p| KINDS.get(p)).copied(),
            file,
            signer: signer.checked_sub(1).and_then(|k| self.signers.get(k)).cloned(),
            result: result.map_or(std::borrow::Cow::Borrowed("ok"), std::borrow::Cow::Owned),
        })
    }

    /// The first line whose result is not `ok`: its seq, kind and result.
    /// A line's result is what it was written with, else a late finding
    /// (of a seal: steps 9 and 10 judge nothing else).
    pub fn first_failure(&self) -> Option<(usize, Option<ArtifactKind>, String)> {
        let late = self.late.iter().next().map(|(i, why)| (*i, Some(ArtifactKind::Seal), why.clone()));
        // A late finding is kept only for a line written `ok`, so the two
        // never name the same line: the first is the earlier.
        match (self.first_bad.clone(), late) {
            (Some(a), Some(b)) => Some(std::cmp::min_by_key(a, b, |x| x.0)),
            (a, b) => a.or(b),
        }
    }
}

/// As the json list of lines it stands for, read back as it is written.
impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(if self.kept { self.len } else { 0 }))?;
        let mut failed = None;
        let r = self.each(|e| {
            seq.serialize_element(&e).map_err(|e| {
                failed = Some(e);
                anyhow::anyhow!("the serializer failed")
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        r.map_err(|e| S::Error::custom(format!("{e:#}")))?;
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_as_written() {
        for budget in [0, 10, usize::MAX] {
            let mut w = EntriesWriter::new(vec![Arc::from("k0"), Arc::from("k1")], true, budget);
            let long = "x".repeat(300);
            w.push(Some(ArtifactKind::SessionArtifact), Some("a.json"), Some(1), None);
            w.push(None, None, None, Some("not a DSSE envelope"));
            w.push(Some(ArtifactKind::Seal), None, Some(0), None);
            w.push(Some(ArtifactKind::ReversalArtifact), Some(&long), None, Some(""));
            w.late(2, "the seal is wrong");
            w.late(1, "never shown: the line failed already");
            let e = w.finish().unwrap();
            // The widest kind and file shown, as a pass over the lines would find them.
            assert_eq!(e.widths(), ("ReversalArtifact".len(), 300));
            let mut got: Vec<String> = Vec::new();
            e.each(|x| {
                got.push(serde_json::to_string(&x)?);
                Ok(())
            })
            .unwrap();
            assert_eq!(
                got,
                [
                    r#"{"seq":0,"kind":"SessionArtifact","file":"a.json","signer":"k1","result":"ok"}"#.to_string(),
                    r#"{"seq":1,"kind":null,"file":null,"signer":null,"result":"not a DSSE envelope"}"#.to_string(),
                    r#"{"seq":2,"kind":"Seal","file":null,"signer":"k0","result":"the seal is wrong"}"#.to_string(),
                    format!(r#"{{"seq":3,"kind":"ReversalArtifact","file":"{long}","signer":null,"result":""}}"#),
                ]
            );
            assert_eq!(serde_json::to_value(&e).unwrap().as_array().unwrap().len(), 4);
            assert_eq!(e.first_failure(), Some((1, None, "not a DSSE envelope".into())));
        }
    }
}
