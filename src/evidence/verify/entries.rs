//! The report's line per entry, kept compact: one encoded record per entry
//! in one buffer (a kind byte, the signer's index, the file name and the
//! result, ~35 bytes for a typical entry) instead of an `EntryResult` of
//! ~110 bytes with three allocations. Lines are decoded as they are read.
//!
//! Steps 9 and 10 judge seals at the end: what they found is kept beside the
//! lines (`late`, one per failing seal) and shown in a seal's line that was
//! otherwise `ok`.

use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::EntryResult;
use crate::types::ArtifactKind;

/// Every kind, in a fixed order: a line stores its kind's position + 1 (0: none).
const KINDS: [ArtifactKind; 8] = ArtifactKind::ALL;

/// The lines of a report, in entry order.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    len: usize,
    /// Whether the lines were kept (`bytes`); without them, iteration yields
    /// nothing and only [`Entries::first_failure`] and `len` answer.
    kept: bool,
    bytes: Arc<Vec<u8>>,
    signers: Arc<Vec<Arc<str>>>,
    /// Each line's kind code, a byte a line: what the first failure names.
    kinds: Arc<Vec<u8>>,
    /// The first line written with a result other than `ok`.
    first_bad: Option<(usize, String)>,
    /// Findings of steps 9 and 10 for lines that were `ok` before them.
    late: Arc<BTreeMap<usize, String>>,
}

/// Builds [`Entries`] line by line.
#[derive(Debug, Default)]
pub struct EntriesWriter {
    len: usize,
    keep: bool,
    bytes: Vec<u8>,
    signers: Vec<Arc<str>>,
    kinds: Vec<u8>,
    first_bad: Option<(usize, String)>,
    /// `ok[i]`: line `i` said `ok` when written (a bit a line).
    ok: Vec<u64>,
    late: BTreeMap<usize, String>,
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

fn get_str<'b>(bytes: &'b [u8], at: &mut usize) -> Option<&'b str> {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let n = n.checked_sub(1)? as usize;
    let s = &bytes[*at..*at + n];
    *at += n;
    // Written from a `&str`: always UTF-8.
    Some(std::str::from_utf8(s).unwrap_or_default())
}

impl EntriesWriter {
    /// `keep`: keep every line (else only what the verdict needs).
    pub fn new(signers: Vec<Arc<str>>, keep: bool) -> EntriesWriter {
        EntriesWriter { signers, keep, ..EntriesWriter::default() }
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
        let code = kind.and_then(|k| KINDS.iter().position(|x| *x == k)).map_or(0, |p| p as u8 + 1);
        self.kinds.push(code);
        if self.first_bad.is_none()
            && let Some(r) = result.filter(|r| *r != "ok")
        {
            self.first_bad = Some((i, r.to_string()));
        }
        if self.keep {
            self.bytes.push(code);
            let signer = signer.map_or(0u16, |k| u16::try_from(k + 1).unwrap_or(0));
            self.bytes.extend_from_slice(&signer.to_le_bytes());
            put_str(&mut self.bytes, file);
            put_str(&mut self.bytes, result);
        }
        if i / 64 >= self.ok.len() {
            self.ok.push(0);
        }
        if result.is_none() {
            self.ok[i / 64] |= 1 << (i % 64);
        }
        self.len += 1;
    }

    /// A finding of steps 9 or 10 for line `i`: its result, if nothing came before.
    pub fn late(&mut self, i: usize, why: &str) {
        let ok = self.ok.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0);
        if ok && !self.late.contains_key(&i) {
            self.late.insert(i, why.to_string());
        }
    }

    pub fn finish(self) -> Entries {
        Entries {
            len: self.len,
            kept: self.keep,
            bytes: Arc::new(self.bytes),
            signers: Arc::new(self.signers),
            kinds: Arc::new(self.kinds),
            first_bad: self.first_bad,
            late: Arc::new(self.late),
        }
    }
}

impl Entries {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every line, decoded, in order (none when the lines were not kept).
    pub fn iter(&self) -> Iter<'_> {
        Iter { entries: self, seq: if self.kept { 0 } else { self.len }, at: 0 }
    }

    /// The first line whose result is not `ok`: its seq, kind and result.
    /// A line's result is what it was written with, else a late finding.
    pub fn first_failure(&self) -> Option<(usize, Option<ArtifactKind>, String)> {
        let late = self.late.iter().next().map(|(i, why)| (*i, why.clone()));
        // A late finding is kept only for a line written `ok`, so the two
        // never name the same line: the first is the earlier.
        let (seq, why) = match (self.first_bad.clone(), late) {
            (Some(a), Some(b)) => std::cmp::min_by_key(a, b, |x| x.0),
            (a, b) => a.or(b)?,
        };
        let kind = self.kinds.get(seq).and_then(|c| (*c as usize).checked_sub(1)).and_then(|p| KINDS.get(p)).copied();
        Some((seq, kind, why))
    }
}

/// Lines decoded one by one.
pub struct Iter<'a> {
    entries: &'a Entries,
    seq: usize,
    at: usize,
}

impl Iterator for Iter<'_> {
    type Item = EntryResult;

    fn next(&mut self) -> Option<EntryResult> {
        if self.seq >= self.entries.len {
            return None;
        }
        let b = &self.entries.bytes;
        let code = b[self.at] as usize;
        let signer = u16::from_le_bytes([b[self.at + 1], b[self.at + 2]]) as usize;
        self.at += 3;
        let file = get_str(b, &mut self.at).map(str::to_string);
        let result = get_str(b, &mut self.at).map(str::to_string);
        let seq = self.seq;
        self.seq += 1;
        let result = result.or_else(|| self.entries.late.get(&seq).cloned());
        Some(EntryResult {
            seq,
            kind: code.checked_sub(1).and_then(|p| KINDS.get(p)).copied(),
            file,
            signer: signer.checked_sub(1).and_then(|k| self.entries.signers.get(k)).cloned(),
            result: result.map_or(std::borrow::Cow::Borrowed("ok"), std::borrow::Cow::Owned),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.entries.len - self.seq;
        (n, Some(n))
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = EntryResult;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// As the json list of lines it stands for.
impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len))?;
        for e in self {
            seq.serialize_element(&e)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_as_written() {
        let mut w = EntriesWriter::new(vec![Arc::from("k0"), Arc::from("k1")], true);
        let long = "x".repeat(300);
        w.push(Some(ArtifactKind::SessionArtifact), Some("a.json"), Some(1), None);
        w.push(None, None, None, Some("not a DSSE envelope"));
        w.push(Some(ArtifactKind::Seal), None, Some(0), None);
        w.push(Some(ArtifactKind::ReversalArtifact), Some(&long), None, Some(""));
        w.late(2, "the seal is wrong");
        w.late(1, "never shown: the line failed already");
        let e = w.finish();
        let got: Vec<String> = e.iter().map(|x| serde_json::to_string(&x).unwrap()).collect();
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
    }
}
