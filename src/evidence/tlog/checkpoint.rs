//! C2SP `tlog-checkpoint` (<https://c2sp.org/tlog-checkpoint>): the signed
//! note a log publishes for its tree head, `<origin>\n<size>\n<base64 root>\n`
//! plus optional extension lines. Parsing is strict (decimal size without
//! leading zeros, a 32-byte root in canonical base64, a non-empty origin);
//! opening verifies the note signature first and parses only verified text.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::merkle::Hash;
use super::note::{self, NoteKey, NoteSigner};

/// A parsed checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Unique log identity, e.g. `agentplane.socioprophet.org/evidence/<runId>`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Hash,
    /// Opaque extension lines (without newlines); agentplane writes none.
    pub extensions: Vec<String>,
}

/// Origins agentplane writes: non-empty, no spaces, control characters or `+`.
pub fn check_origin(origin: &str) -> Result<()> {
    if origin.is_empty() {
        bail!("a checkpoint origin must not be empty");
    }
    if let Some(c) = origin.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '+') {
        bail!("checkpoint origin {origin:?} contains {c:?} (no spaces, control characters or `+` allowed)");
    }
    Ok(())
}

/// A decimal with no sign and no leading zeros (`0` itself is fine).
pub fn parse_decimal(s: &str, what: &str) -> Result<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{what} {s:?} is not a decimal number");
    }
    if s.len() > 1 && s.starts_with('0') {
        bail!("{what} {s:?} has a leading zero");
    }
    s.parse::<u64>().with_context(|| format!("{what} {s:?} does not fit in 64 bits"))
}

/// A 32-byte hash in canonical standard base64.
pub fn parse_hash_b64(s: &str, what: &str) -> Result<Hash> {
    let raw = B64.decode(s).with_context(|| format!("{what} {s:?} is not valid base64"))?;
    raw.as_slice().try_into().map_err(|_| anyhow::anyhow!("{what} is {} bytes, not 32", raw.len()))
}

impl Checkpoint {
    /// A checkpoint with no extension lines; refuses an origin agentplane would
    /// not write (see [`check_origin`]).
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Checkpoint> {
        check_origin(origin)?;
        Ok(Checkpoint { origin: origin.to_string(), size, root, extensions: Vec::new() })
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n[extension lines]`.
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a checkpoint body (the note text, final newline included). Only
    /// call this on text a trusted signature vouched for; see [`Checkpoint::open`].
    pub fn parse_body(text: &str) -> Result<Checkpoint> {
        let Some(body) = text.strip_suffix('\n') else {
            bail!("checkpoint text does not end with a newline");
        };
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            bail!("a checkpoint needs at least three lines: origin, size, root hash");
        };
        if origin.is_empty() {
            bail!("checkpoint origin (line 1) is empty");
        }
        if let Some(c) = origin.chars().find(|c| c.is_control()) {
            bail!("checkpoint origin contains the control character {c:?}");
        }
        let size = parse_decimal(size, "checkpoint size (line 2)")?;
        let root = parse_hash_b64(root, "checkpoint root hash (line 3)")?;
        let mut extensions = Vec::new();
        for (i, e) in lines.enumerate() {
            if e.is_empty() {
                bail!("checkpoint extension line {} is empty", i + 4);
            }
            extensions.push(e.to_string());
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root, extensions })
    }

    /// Sign this checkpoint as `key_name`: the full signed note text.
    pub fn to_signed_note(&self, key_name: &str, signer: &dyn NoteSigner) -> Result<String> {
        note::sign(&self.body(), key_name, signer).context("cannot sign the checkpoint")
    }

    /// Build and sign `<origin>\n<size>\n<base64 root>\n` as `key_name` (e.g.
    /// the origin itself, or `agentplane/<key id prefix>`).
    pub fn sign(origin: &str, size: u64, root: &Hash, key_name: &str, signer: &dyn NoteSigner) -> Result<String> {
        Checkpoint::new(origin, size, *root)?.to_signed_note(key_name, signer)
    }

    /// Verify the signed note against `trusted` (see [`note::open`]), then
    /// parse its text. The caller checks the origin (see [`Checkpoint::expect_origin`]).
    pub fn open(text: &str, trusted: &[NoteKey]) -> Result<Checkpoint> {
        let opened = note::open(text, trusted).context("checkpoint signature")?;
        Checkpoint::parse_body(&opened.text)
    }

    /// `verify --since`: check that this checkpoint (already opened) is the
    /// head of `leaves` (all leaf hashes of the log) and that `older`, a
    /// checkpoint seen earlier, is a prefix of it, through an RFC 6962
    /// consistency proof. Refuses another origin, a shrunken log, and a
    /// rewritten prefix (a fork).
    pub fn check_extends(&self, older: &Checkpoint, leaves: &[Hash]) -> Result<()> {
        if older.origin != self.origin {
            bail!("the earlier checkpoint is for the log {:?}, this one for {:?}", older.origin, self.origin);
        }
        if self.size != leaves.len() as u64 {
            bail!("the checkpoint says {} entries, the log has {}", self.size, leaves.len());
        }
        if self.root != super::merkle::root(leaves) {
            bail!("the checkpoint root does not match the log's {} entries", leaves.len());
        }
        if older.size > self.size {
            bail!("the log shrank: {} entries now, {} at the earlier checkpoint", self.size, older.size);
        }
        let proof = super::merkle::consistency_proof(leaves, older.size)?;
        super::merkle::verify_consistency(older.size, self.size, &older.root, &self.root, &proof)
            .with_context(|| format!("the log is not an extension of its earlier checkpoint at size {}", older.size))
    }

    /// Refuse a checkpoint of another log.
    pub fn expect_origin(&self, origin: &str) -> Result<()> {
        if self.origin != origin {
            bail!("checkpoint is for the log {:?}, not {:?}", self.origin, origin);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::tlog::merkle;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "agentplane.socioprophet.org/evidence/run-1";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42; 32])
    }

    fn trusted(name: &str) -> Vec<NoteKey> {
        vec![NoteKey::new(name, key().verifying_key()).unwrap()]
    }

    #[test]
    fn spec_example_body_parses() {
        let cp = Checkpoint::parse_body(
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        )
        .unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(B64.encode(cp.root), "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
        assert!(cp.extensions.is_empty());
    }

    #[test]
    fn sign_and_open_round_trip() {
        let leaves: Vec<_> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let root = merkle::root(&leaves);
        for name in [ORIGIN, "agentplane/3f2a9c01"] {
            let signed = Checkpoint::sign(ORIGIN, 5, &root, name, &key()).unwrap();
            assert!(signed.starts_with(&format!("{ORIGIN}\n5\n{}\n\n\u{2014} {name} ", B64.encode(root))));
            let cp = Checkpoint::open(&signed, &trusted(name)).unwrap();
            assert_eq!(cp, Checkpoint::new(ORIGIN, 5, root).unwrap());
            cp.expect_origin(ORIGIN).unwrap();
            assert!(cp.expect_origin("agentplane.socioprophet.org/evidence/run-2").is_err());
        }
        let empty = Checkpoint::sign(ORIGIN, 0, &merkle::empty_root(), ORIGIN, &key()).unwrap();
        assert!(empty.starts_with(&format!("{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")));
        assert_eq!(Checkpoint::open(&empty, &trusted(ORIGIN)).unwrap().size, 0);
    }

    #[test]
    fn tampering_is_caught() {
        let root = merkle::root(&[merkle::leaf_hash(b"x"), merkle::leaf_hash(b"y")]);
        let signed = Checkpoint::sign(ORIGIN, 2, &root, ORIGIN, &key()).unwrap();
        let t = trusted(ORIGIN);
        let root_b64 = B64.encode(root);
        let mut other_root = root;
        other_root[0] ^= 1;
        let sig_line = signed.lines().last().unwrap();
        let cases = [
            ("size", signed.replacen("\n2\n", "\n3\n", 1)),
            ("root", signed.replace(&root_b64, &B64.encode(other_root))),
            ("origin", signed.replace("run-1", "run-2")),
            ("extension line added", signed.replacen(&format!("{root_b64}\n"), &format!("{root_b64}\nextra\n"), 1)),
            ("duplicated size line", signed.replacen("\n2\n", "\n2\n2\n", 1)),
            ("truncated signature", format!("{}\n", &signed[..signed.len() - 10])),
            ("signature removed", signed[..signed.len() - sig_line.len() - 1].to_string()),
            ("wrong key", Checkpoint::sign(ORIGIN, 2, &root, ORIGIN, &SigningKey::from_bytes(&[7; 32])).unwrap()),
        ];
        for (what, text) in cases {
            assert!(Checkpoint::open(&text, &t).is_err(), "{what} accepted:\n{text}");
        }
        // Same key under another name is not trusted.
        assert!(Checkpoint::open(&signed, &trusted("agentplane/other")).is_err());
        // An extra unknown signature line keeps it valid.
        let other = SigningKey::from_bytes(&[8; 32]);
        let body = Checkpoint::new(ORIGIN, 2, root).unwrap().body();
        let extra = format!("{signed}{}", note::signature_line(&body, "witness.example/w1", &other).unwrap());
        assert_eq!(Checkpoint::open(&extra, &t).unwrap().size, 2);
    }

    #[test]
    fn extension_of_an_earlier_checkpoint() {
        let leaves: Vec<_> = (0..10u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let at = |n: usize| Checkpoint::new(ORIGIN, n as u64, merkle::root(&leaves[..n])).unwrap();
        let now = at(10);
        for m in 0..=10 {
            now.check_extends(&at(m), &leaves).unwrap();
        }
        let mut forked = leaves.clone();
        forked[3][0] ^= 1;
        let old_fork = Checkpoint::new(ORIGIN, 6, merkle::root(&forked[..6])).unwrap();
        let err = format!("{:#}", now.check_extends(&old_fork, &leaves).unwrap_err());
        assert!(err.contains("not an extension"), "{err}");
        assert!(at(6).check_extends(&now, &leaves[..6]).is_err(), "shrunk");
        assert!(now.check_extends(&at(4), &leaves[..9]).is_err(), "checkpoint is not of these leaves");
        let other = Checkpoint::new("agentplane.socioprophet.org/evidence/run-2", 4, at(4).root).unwrap();
        assert!(now.check_extends(&other, &leaves).is_err(), "another origin");
    }

    #[test]
    fn strict_body_parsing() {
        let r = B64.encode([1u8; 32]);
        let ok = format!("o\n12\n{r}\n");
        Checkpoint::parse_body(&ok).unwrap();
        let with_ext = Checkpoint::parse_body(&format!("o\n12\n{r}\next one\next two\n")).unwrap();
        assert_eq!(with_ext.extensions, vec!["ext one", "ext two"]);
        assert_eq!(with_ext.body(), format!("o\n12\n{r}\next one\next two\n"));
        let bad = [
            format!("\n12\n{r}\n"),
            format!("o\n012\n{r}\n"),
            format!("o\n+12\n{r}\n"),
            format!("o\n-1\n{r}\n"),
            format!("o\n 12\n{r}\n"),
            format!("o\n18446744073709551616\n{r}\n"),
            format!("o\n12\n{}\n", B64.encode([1u8; 31])),
            format!("o\n12\n{}\n", r.trim_end_matches('=')),
            "o\n12\nnot-base64!\n".to_string(),
            "o\n12\n".to_string(),
            format!("o\n12\n{r}"),
            format!("o\n12\n{r}\n\next\n"),
        ];
        for text in bad {
            assert!(Checkpoint::parse_body(&text).is_err(), "accepted {text:?}");
        }
        assert_eq!(Checkpoint::parse_body(&format!("o\n0\n{r}\n")).unwrap().size, 0);
        assert_eq!(Checkpoint::parse_body(&format!("o\n18446744073709551615\n{r}\n")).unwrap().size, u64::MAX);
        for origin in ["", "a b", "a+b", "a\nb"] {
            assert!(Checkpoint::new(origin, 1, [0; 32]).is_err(), "{origin:?}");
        }
    }
}
