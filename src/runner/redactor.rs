//! Redaction of secret values (DESIGN §6): whole values and, for multi-line
//! values (a PEM key), every line of 8 bytes or more on its own; longest match
//! first, so a secret that is a prefix of another never leaves the rest of the
//! longer one visible. Matching is aho-corasick leftmost-longest: linear time,
//! no hand-rolled matcher.
//!
//! [`StreamRedactor`] does the same for live output, holding back just enough
//! bytes that a secret split across two reads is still caught: `--watch`
//! never shows one, not even one character at a time.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Values shorter than this are not redacted: redacting them would shred the log.
pub const MIN_SECRET: usize = 3;
/// Lines of a multi-line secret at least this long are redacted on their own.
pub const MIN_LINE: usize = 8;

/// The patterns of a set of secrets and what replaces each.
#[derive(Clone)]
pub struct Redactor {
    ac: Option<AhoCorasick>,
    marks: Vec<Vec<u8>>,
    /// The longest pattern's length (how much a stream must hold back).
    longest: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} patterns)", self.marks.len())
    }
}

impl Redactor {
    /// `secrets`: (name, value) pairs. Values are never kept anywhere else.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Redactor {
        let mut pats: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (name, value) in secrets {
            let mark = format!("[redacted:{name}]").into_bytes();
            if value.len() >= MIN_SECRET {
                pats.push((value.to_vec(), mark.clone()));
            }
            if value.contains(&b'\n') {
                for line in value.split(|b| *b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() >= MIN_LINE {
                        pats.push((line.to_vec(), mark.clone()));
                    }
                }
            }
        }
        // Longest first (leftmost-longest also prefers them; sorting keeps the
        // pattern order, and so the result, independent of declaration order).
        pats.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        pats.dedup_by(|a, b| a.0 == b.0);
        let longest = pats.first().map_or(0, |p| p.0.len());
        let ac = if pats.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new().match_kind(MatchKind::LeftmostLongest).build(pats.iter().map(|p| &p.0)).ok()
        };
        Redactor { ac, marks: pats.into_iter().map(|p| p.1).collect(), longest }
    }

    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// `data` with every secret replaced; whether anything was.
    pub fn redact(&self, data: &[u8]) -> (Vec<u8>, bool) {
        let Some(ac) = &self.ac else {
            return (data.to_vec(), false);
        };
        let mut out = Vec::with_capacity(data.len());
        let mut last = 0;
        let mut hit = false;
        for m in ac.find_iter(data) {
            out.extend_from_slice(&data[last..m.start()]);
            out.extend_from_slice(&self.marks[m.pattern().as_usize()]);
            last = m.end();
            hit = true;
        }
        out.extend_from_slice(&data[last..]);
        (out, hit)
    }

    /// Whether `data` holds any secret (the leak gate's exact-value scan).
    pub fn finds_in(&self, data: &[u8]) -> bool {
        self.ac.as_ref().is_some_and(|ac| ac.is_match(data))
    }

    /// A streaming redactor over these secrets.
    pub fn stream(&self) -> StreamRedactor<'_> {
        StreamRedactor { r: self, held: Vec::new() }
    }
}

/// Redacts a stream chunk by chunk, holding back the bytes that could still
/// be the start of a secret.
pub struct StreamRedactor<'r> {
    r: &'r Redactor,
    held: Vec<u8>,
}

impl StreamRedactor<'_> {
    /// Take a chunk; return what can be shown now (redacted).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(ac) = &self.r.ac else {
            return chunk.to_vec();
        };
        self.held.extend_from_slice(chunk);
        let len = self.held.len();
        // Bytes before `safe` cannot begin a secret that is still incomplete:
        // any match starting there fits within what we hold, so it is final.
        let safe = len.saturating_sub(self.r.longest.saturating_sub(1));
        let mut cut = safe;
        for m in ac.find_iter(&self.held) {
            if m.start() >= safe {
                break;
            }
            cut = cut.max(m.end());
        }
        let rest = self.held.split_off(cut);
        let ready = std::mem::replace(&mut self.held, rest);
        self.r.redact(&ready).0
    }

    /// The end of the stream: everything still held, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        self.r.redact(&rest).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(secrets: &[(&str, &str)]) -> Redactor {
        Redactor::new(secrets.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn every_occurrence_is_replaced() {
        let red = r(&[("TOK", "s3cret")]);
        let (out, hit) = red.redact(b"a s3cret b s3crets3cret");
        assert!(hit);
        assert_eq!(out, b"a [redacted:TOK] b [redacted:TOK][redacted:TOK]".to_vec());
        assert_eq!(red.redact(b"nothing here"), (b"nothing here".to_vec(), false));
    }

    #[test]
    fn a_prefix_secret_never_leaves_the_longer_one_half_visible() {
        // Declared shorter first: the longer must still win where it occurs.
        let red = r(&[("SHORT", "abc123"), ("LONG", "abc123-and-more")]);
        let (out, _) = red.redact(b"x abc123-and-more y abc123 z");
        assert_eq!(String::from_utf8(out).unwrap(), "x [redacted:LONG] y [redacted:SHORT] z");
    }

    #[test]
    fn each_line_of_a_multiline_secret_is_redacted_on_its_own() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGx1\n-----END PRIVATE KEY-----";
        let red = r(&[("KEY", pem)]);
        let (out, hit) = red.redact(b"line: MC4CAQAwBQYDK2VwBCIEIGx1\n");
        assert!(hit);
        assert_eq!(String::from_utf8(out).unwrap(), "line: [redacted:KEY]\n");
        let (out, _) = red.redact(pem.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), "[redacted:KEY]");
    }

    #[test]
    fn short_values_are_left_alone() {
        let red = r(&[("X", "ab")]);
        assert!(red.is_empty());
        assert_eq!(red.redact(b"ab"), (b"ab".to_vec(), false));
    }

    /// A secret written one byte at a time never appears in what is shown.
    #[test]
    fn a_secret_split_across_reads_is_caught() {
        let red = r(&[("TOK", "hunter2-secret"), ("K2", "zzz")]);
        let text = b"start hunter2-secret mid zzz end hunter2-secre";
        for size in 1..=text.len() {
            let mut s = red.stream();
            let mut shown = Vec::new();
            for chunk in text.chunks(size) {
                shown.extend(s.push(chunk));
            }
            shown.extend(s.finish());
            let shown = String::from_utf8(shown).unwrap();
            assert_eq!(shown, "start [redacted:TOK] mid [redacted:K2] end hunter2-secre", "chunk size {size}");
        }
    }

    #[test]
    fn the_leak_scan_finds_exact_values() {
        let red = r(&[("TOK", "s3cret-value")]);
        assert!(red.finds_in(b"..s3cret-value.."));
        assert!(!red.finds_in(b"..s3cret-valu.."));
    }
}
