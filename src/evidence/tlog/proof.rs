//! C2SP `tlog-proof@v1` (<https://c2sp.org/tlog-proof>): an offline proof that
//! one entry is in a checkpointed log. Text format:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>          (optional, unauthenticated)
//! index <N>
//! <base64 hash>           (inclusion path, leaf's sibling first; zero or more)
//!
//! <signed checkpoint note, verbatim>
//! ```
//!
//! Verifying checks the checkpoint's signature against trusted keys, then the
//! entry's leaf hash against the checkpoint root through the path.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::checkpoint::{Checkpoint, parse_decimal, parse_hash_b64};
use super::merkle::{self, Hash, MAX_PROOF_LEN};
use super::note::{self, NoteKey};

/// First line of every proof.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Largest proof accepted (bytes): a note plus 64 path lines and some extra data.
pub const MAX_PROOF_SIZE: usize = note::MAX_NOTE_SIZE + 64 * 1024;

/// A parsed (not yet verified) proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data; agentplane writes none.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry.
    pub index: u64,
    /// Inclusion path in the checkpointed tree, leaf's sibling first.
    pub path: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// What a verified proof establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    pub index: u64,
    pub checkpoint: Checkpoint,
}

impl TlogProof {
    /// Build the proof for leaf `index` of `leaves` (leaf hashes) under
    /// `signed_checkpoint`, which must be the checkpoint of exactly these
    /// leaves (its size and root are checked here, not its signature).
    pub fn new(leaves: &[Hash], index: u64, signed_checkpoint: &str) -> Result<TlogProof> {
        let parsed = note::parse(signed_checkpoint).context("the checkpoint to embed is not a signed note")?;
        let cp = Checkpoint::parse_body(&parsed.text)?;
        if cp.size != leaves.len() as u64 {
            bail!("the checkpoint is for {} entries, the log has {}", cp.size, leaves.len());
        }
        if cp.root != merkle::root(leaves) {
            bail!("the checkpoint root does not match the log's entries");
        }
        let path = merkle::inclusion_proof(leaves, index)?;
        Ok(TlogProof { extra: None, index, path, checkpoint: signed_checkpoint.to_string() })
    }

    /// The text form (see the module doc).
    pub fn format(&self) -> String {
        let mut s = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parse the text form; the checkpoint is kept verbatim, unverified.
    pub fn parse(text: &str) -> Result<TlogProof> {
        if text.len() > MAX_PROOF_SIZE {
            bail!("tlog proof is larger than {MAX_PROOF_SIZE} bytes");
        }
        let mut rest = text;
        let mut next_line = |what: &str| -> Result<&str> {
            let Some((line, after)) = rest.split_once('\n') else {
                bail!("tlog proof ends before its {what}");
            };
            rest = after;
            Ok(line)
        };
        let header = next_line("header")?;
        if header != PROOF_HEADER {
            bail!("not a tlog proof: the first line is {header:?}, not {PROOF_HEADER:?}");
        }
        let mut line = next_line("index line")?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(b64).context("tlog proof: the extra data is not valid base64")?);
            line = next_line("index line")?;
        }
        let Some(index) = line.strip_prefix("index ") else {
            bail!("tlog proof: expected `index N`, found {line:?}");
        };
        let index = parse_decimal(index, "tlog proof index")?;
        let mut path = Vec::new();
        loop {
            let line = next_line("blank line before the checkpoint")?;
            if line.is_empty() {
                break;
            }
            if path.len() == MAX_PROOF_LEN {
                bail!("tlog proof: more than {MAX_PROOF_LEN} inclusion path hashes");
            }
            path.push(parse_hash_b64(line, "tlog proof inclusion path hash")?);
        }
        if rest.is_empty() {
            bail!("tlog proof has no checkpoint after the blank line");
        }
        Ok(TlogProof { extra, index, path, checkpoint: rest.to_string() })
    }

    /// Verify the checkpoint against `trusted`, then `leaf` (a leaf hash, see
    /// [`merkle::leaf_hash`]) at `self.index` against its root. The caller
    /// checks the checkpoint's origin.
    pub fn verify(&self, leaf: &Hash, trusted: &[NoteKey]) -> Result<VerifiedProof> {
        let cp = Checkpoint::open(&self.checkpoint, trusted).context("tlog proof checkpoint")?;
        merkle::verify_inclusion(leaf, self.index, cp.size, &self.path, &cp.root).with_context(|| {
            format!("the entry is not at index {} of the log {:?} of {} entries", self.index, cp.origin, cp.size)
        })?;
        Ok(VerifiedProof { index: self.index, checkpoint: cp })
    }
}

/// Parse and verify a proof for the entry whose leaf data is `leaf_data`.
pub fn verify(text: &str, leaf_data: &[u8], trusted: &[NoteKey]) -> Result<VerifiedProof> {
    TlogProof::parse(text)?.verify(&merkle::leaf_hash(leaf_data), trusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "agentplane.socioprophet.org/evidence/run-7";

    fn setup(n: usize) -> (Vec<Vec<u8>>, Vec<Hash>, String, Vec<NoteKey>) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let data: Vec<Vec<u8>> = (0..n).map(|i| format!("{{\"seq\":{i}}}").into_bytes()).collect();
        let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
        let signed = Checkpoint::sign(ORIGIN, n as u64, &merkle::root(&leaves), ORIGIN, &key).unwrap();
        (data, leaves, signed, vec![NoteKey::new(ORIGIN, key.verifying_key()).unwrap()])
    }

    #[test]
    fn every_entry_proves_and_round_trips() {
        let (data, leaves, signed, trusted) = setup(13);
        for i in 0..13u64 {
            let p = TlogProof::new(&leaves, i, &signed).unwrap();
            let text = p.format();
            assert!(text.starts_with(&format!("{PROOF_HEADER}\nindex {i}\n")));
            assert!(text.ends_with(&signed));
            assert_eq!(TlogProof::parse(&text).unwrap(), p);
            let v = verify(&text, &data[i as usize], &trusted).unwrap();
            assert_eq!((v.index, v.checkpoint.size, v.checkpoint.origin.as_str()), (i, 13, ORIGIN));
            // Another entry's data does not verify at this index.
            let other = &data[(i as usize + 1) % 13];
            assert!(verify(&text, other, &trusted).is_err());
        }
    }

    #[test]
    fn extra_data_and_single_entry() {
        let (data, leaves, signed, trusted) = setup(1);
        let mut p = TlogProof::new(&leaves, 0, &signed).unwrap();
        assert!(p.path.is_empty());
        p.extra = Some(b"evidence.jsonl line 1".to_vec());
        let text = p.format();
        assert!(text.starts_with(&format!("{PROOF_HEADER}\nextra ZXZpZGVuY2UuanNvbmwgbGluZSAx\nindex 0\n\n")));
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        verify(&text, &data[0], &trusted).unwrap();
    }

    #[test]
    fn wrong_checkpoint_is_refused_at_build() {
        let (_, leaves, signed, _) = setup(6);
        assert!(TlogProof::new(&leaves[..5], 0, &signed).is_err());
        let mut other = leaves.clone();
        other[2][0] ^= 1;
        assert!(TlogProof::new(&other, 0, &signed).is_err());
        assert!(TlogProof::new(&leaves, 6, &signed).is_err());
    }

    #[test]
    fn tampered_proofs_fail() {
        let (data, leaves, signed, trusted) = setup(9);
        let text = TlogProof::new(&leaves, 4, &signed).unwrap().format();
        verify(&text, &data[4], &trusted).unwrap();
        let first_hash = text.lines().nth(2).unwrap().to_string();
        let mut flipped = parse_hash_b64(&first_hash, "h").unwrap();
        flipped[5] ^= 4;
        let cases = [
            ("index", text.replacen("index 4\n", "index 5\n", 1)),
            ("leading zero index", text.replacen("index 4\n", "index 04\n", 1)),
            ("flipped path bit", text.replacen(&first_hash, &B64.encode(flipped), 1)),
            ("dropped path hash", text.replacen(&format!("{first_hash}\n"), "", 1)),
            ("duplicated path hash", text.replacen(&first_hash, &format!("{first_hash}\n{first_hash}"), 1)),
            ("size", text.replacen("\n9\n", "\n10\n", 1)),
            ("header", text.replacen("@v1", "@v2", 1)),
            ("no blank line", text.replacen("\n\n", "\n", 1)),
            ("no checkpoint", text[..text.find("\n\n").unwrap() + 2].to_string()),
            ("bad extra", text.replacen("index", "extra !!\nindex", 1)),
        ];
        for (what, t) in cases {
            assert!(verify(&t, &data[4], &trusted).is_err(), "{what} accepted:\n{t}");
        }
        let stranger = vec![NoteKey::new(ORIGIN, SigningKey::from_bytes(&[4; 32]).verifying_key()).unwrap()];
        assert!(verify(&text, &data[4], &stranger).is_err());
    }
}
