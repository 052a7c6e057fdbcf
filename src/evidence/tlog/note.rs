//! C2SP `signed-note` (<https://c2sp.org/signed-note>) with Ed25519 keys: a
//! UTF-8 text ending in a newline, a blank line, then signature lines
//! `— <key name> <base64(4-byte key id || signature)>`.
//!
//! Opening a note verifies it against a set of trusted `(name, key)` pairs:
//! lines from unknown keys (another name, or another key id, such as a
//! `tlog-cosignature` line with key type 0x04) are ignored, a trusted line that
//! fails to verify rejects the whole note, and at least one trusted line must
//! verify. Notes are size- and line-capped before anything is parsed.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature as EdSignature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::evidence::keys::Signer;

/// Largest note accepted (bytes).
pub const MAX_NOTE_SIZE: usize = 1 << 20;
/// Most signature lines accepted in one note (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 64;
/// Signature type byte of plain Ed25519 note signatures.
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 cosignatures (tlog-cosignature).
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;

const SIG_PREFIX: &str = "\u{2014} ";

/// Something that signs note text with Ed25519: agentplane's [`Signer`], or a
/// bare [`SigningKey`] (tests, other tools).
pub trait NoteSigner {
    fn public_key(&self) -> VerifyingKey;
    fn sign_note_text(&self, msg: &[u8]) -> [u8; 64];
}

impl NoteSigner for Signer {
    fn public_key(&self) -> VerifyingKey {
        self.verifying_key()
    }
    fn sign_note_text(&self, msg: &[u8]) -> [u8; 64] {
        self.sign(msg)
    }
}

impl NoteSigner for SigningKey {
    fn public_key(&self) -> VerifyingKey {
        self.verifying_key()
    }
    fn sign_note_text(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.sign(msg).to_bytes()
    }
}

/// Key names are non-empty and hold no Unicode space and no `+`.
pub fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("a note key name must not be empty");
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || *c == '+' || c.is_control()) {
        bail!("note key name {name:?} contains {c:?} (no spaces, control characters or `+` allowed)");
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, the Ed25519 key id.
pub fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', SIG_TYPE_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A trusted Ed25519 note key: the name it signs under and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteKey {
    pub name: String,
    pub key: VerifyingKey,
}

impl NoteKey {
    /// Refuses a malformed name and a weak (small-order) key.
    pub fn new(name: &str, key: VerifyingKey) -> Result<NoteKey> {
        check_key_name(name)?;
        if key.is_weak() {
            bail!("refusing note key {name:?}: the public key has small order");
        }
        Ok(NoteKey { name: name.to_string(), key })
    }

    pub fn key_hash(&self) -> [u8; 4] {
        key_hash(&self.name, &self.key)
    }

    /// The verifier key string other tools use: `<name>+<hex key id>+<base64(0x01 || key)>`.
    pub fn vkey(&self) -> String {
        let mut material = vec![SIG_TYPE_ED25519];
        material.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_hash()), B64.encode(material))
    }

    /// Parse a verifier key string (`<name>+<hex key id>+<base64(0x01 || key)>`).
    pub fn from_vkey(vkey: &str) -> Result<NoteKey> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("verifier key {vkey:?} is not <name>+<key id>+<key>");
        };
        let material = B64.decode(material).with_context(|| format!("verifier key {vkey:?}: key is not base64"))?;
        let Some((&SIG_TYPE_ED25519, raw)) = material.split_first() else {
            bail!("verifier key {vkey:?} is not an Ed25519 (type 0x01) key");
        };
        let raw: [u8; 32] = raw.try_into().map_err(|_| anyhow::anyhow!("verifier key {vkey:?}: not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw).with_context(|| format!("verifier key {vkey:?}: bad Ed25519 key"))?;
        let k = NoteKey::new(name, key)?;
        if id.len() != 8 || hex::encode(k.key_hash()) != id {
            bail!("verifier key {vkey:?}: key id {id:?} does not match the key");
        }
        Ok(k)
    }
}

/// One signature line, parsed but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_hash: [u8; 4],
    /// The signature bytes after the key id (64 for Ed25519, 72 for a v1 cosignature).
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, with its newline.
    pub fn line(&self) -> String {
        let mut blob = self.key_hash.to_vec();
        blob.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// A parsed (not yet verified) note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// A note whose text a trusted key vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub text: String,
    /// Names of the trusted keys whose signatures verified.
    pub verified_by: Vec<String>,
    /// Signature lines from keys not among the trusted ones (ignored).
    pub unknown: usize,
}

/// Check text to be signed: non-empty, ends in a newline, no control characters
/// but newlines. (Empty lines are allowed by the spec; they are not signature
/// separators because signature lines never are empty.)
pub fn check_text(text: &str) -> Result<()> {
    if text.is_empty() || !text.ends_with('\n') {
        bail!("note text must be non-empty and end with a newline");
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        bail!("note text contains the control character {c:?}");
    }
    if text.len() > MAX_NOTE_SIZE {
        bail!("note text is larger than {MAX_NOTE_SIZE} bytes");
    }
    Ok(())
}

/// The signature line `— <name> <base64(key id || signature)>\n` over `text`.
pub fn signature_line(text: &str, name: &str, signer: &dyn NoteSigner) -> Result<String> {
    check_text(text)?;
    check_key_name(name)?;
    let sig = NoteSignature {
        name: name.to_string(),
        key_hash: key_hash(name, &signer.public_key()),
        sig: signer.sign_note_text(text.as_bytes()).to_vec(),
    };
    Ok(sig.line())
}

/// Sign `text` as `name`: the full note (text, blank line, one signature line).
pub fn sign(text: &str, name: &str, signer: &dyn NoteSigner) -> Result<String> {
    let line = signature_line(text, name, signer)?;
    Ok(format!("{text}\n{line}"))
}

/// Parse a note's structure (no verification): the text is everything up to
/// the last blank line, each following line a signature line.
pub fn parse(note: &str) -> Result<Note> {
    if note.len() > MAX_NOTE_SIZE {
        bail!("note is larger than {MAX_NOTE_SIZE} bytes");
    }
    if let Some(c) = note.chars().find(|c| c.is_control() && *c != '\n') {
        bail!("note contains the control character {c:?}");
    }
    if !note.ends_with('\n') {
        bail!("note does not end with a newline (truncated?)");
    }
    let Some(split) = note.rfind("\n\n") else {
        bail!("note has no blank line between its text and its signatures");
    };
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    if sigs.is_empty() {
        bail!("note has no signature lines");
    }
    check_text(text)?;
    let mut signatures = Vec::new();
    for line in sigs.split_terminator('\n') {
        if signatures.len() == MAX_SIGNATURES {
            bail!("note has more than {MAX_SIGNATURES} signature lines");
        }
        signatures.push(parse_signature_line(line)?);
    }
    Ok(Note { text: text.to_string(), signatures })
}

fn parse_signature_line(line: &str) -> Result<NoteSignature> {
    let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
        bail!("malformed note signature line {line:?}: must start with an em dash and a space");
    };
    let Some((name, b64)) = rest.split_once(' ') else {
        bail!("malformed note signature line {line:?}: no space between key name and signature");
    };
    check_key_name(name).with_context(|| format!("malformed note signature line {line:?}"))?;
    let blob = B64.decode(b64).with_context(|| format!("note signature by {name:?} is not valid base64"))?;
    if blob.len() < 5 {
        bail!("note signature by {name:?} is too short ({} bytes)", blob.len());
    }
    Ok(NoteSignature {
        name: name.to_string(),
        key_hash: [blob[0], blob[1], blob[2], blob[3]],
        sig: blob[4..].to_vec(),
    })
}

/// Parse `note` and verify it against `trusted`. Unknown signatures are
/// ignored; a trusted key's signature that fails, or a trusted key signing
/// twice, rejects the note; at least one trusted signature must verify.
pub fn open(note: &str, trusted: &[NoteKey]) -> Result<Opened> {
    if trusted.is_empty() {
        bail!("cannot open a signed note: no trusted keys given");
    }
    let parsed = parse(note)?;
    let mut verified_by: Vec<String> = Vec::new();
    let mut seen: Vec<(&str, [u8; 4])> = Vec::new();
    let mut unknown = 0;
    for sig in &parsed.signatures {
        let Some(k) = trusted.iter().find(|k| k.name == sig.name && k.key_hash() == sig.key_hash) else {
            unknown += 1;
            continue;
        };
        if seen.contains(&(sig.name.as_str(), sig.key_hash)) {
            bail!("note is signed twice by the trusted key {:?}", k.name);
        }
        seen.push((sig.name.as_str(), sig.key_hash));
        let raw: [u8; 64] = sig
            .sig
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("note signature by {:?} is {} bytes, not 64", k.name, sig.sig.len()))?;
        k.key
            .verify_strict(parsed.text.as_bytes(), &EdSignature::from_bytes(&raw))
            .map_err(|_| anyhow::anyhow!("note signature by the trusted key {:?} does not verify", k.name))?;
        verified_by.push(k.name.clone());
    }
    if verified_by.is_empty() {
        let names: Vec<&str> = trusted.iter().map(|k| k.name.as_str()).collect();
        bail!(
            "note is not signed by any trusted key (trusted: {}; {} signature line(s) from other keys ignored)",
            names.join(", "),
            unknown
        );
    }
    Ok(Opened { text: parsed.text, verified_by, unknown })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of golang.org/x/mod/sumdb/note (the reference implementation).
    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn peter_signing_key() -> SigningKey {
        // The base64 may itself hold a '+': take everything after the fixed prefix.
        let b64 = &PETER_SKEY["PRIVATE+KEY+PeterNeumann+c74f20a3+".len()..];
        let raw = B64.decode(b64).unwrap();
        assert_eq!(raw[0], SIG_TYPE_ED25519);
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    pub(crate) fn test_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn reference_example_signs_and_opens_byte_for_byte() {
        let sk = peter_signing_key();
        let vk = NoteKey::from_vkey(PETER_VKEY).unwrap();
        assert_eq!(vk.key, sk.verifying_key());
        assert_eq!(hex::encode(vk.key_hash()), "c74f20a3");
        assert_eq!(vk.vkey(), PETER_VKEY);
        assert_eq!(sign(PETER_TEXT, "PeterNeumann", &sk).unwrap(), PETER_NOTE);
        let opened = open(PETER_NOTE, std::slice::from_ref(&vk)).unwrap();
        assert_eq!(opened.text, PETER_TEXT);
        assert_eq!(opened.verified_by, vec!["PeterNeumann".to_string()]);
        assert!(open(&PETER_NOTE.replace("cryptography", "cryptographY"), &[vk]).is_err());
    }

    #[test]
    fn vkey_mangling_is_refused() {
        assert!(NoteKey::from_vkey("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteKey::from_vkey("PeterNeumanN+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteKey::from_vkey("PeterNeumann+c74f20a3+BRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteKey::from_vkey("PeterNeumann+c74f20a3").is_err());
    }

    #[test]
    fn unknown_and_cosignature_lines_are_ignored() {
        let (a, b) = (test_key(1), test_key(2));
        let ka = NoteKey::new("log.example/a", a.verifying_key()).unwrap();
        let text = "hello\nworld\n";
        let mut note = sign(text, "log.example/a", &a).unwrap();
        // Another key, a same-name different key, and a cosignature-shaped line (72 bytes).
        note.push_str(&signature_line(text, "witness.example/w", &b).unwrap());
        note.push_str(&signature_line(text, "log.example/a", &b).unwrap());
        let cosig = NoteSignature { name: "witness.example/w1".into(), key_hash: [9, 9, 9, 9], sig: vec![7; 72] };
        note.push_str(&cosig.line());
        let opened = open(&note, std::slice::from_ref(&ka)).unwrap();
        assert_eq!(opened.unknown, 3);
        assert_eq!(opened.text, text);
        // With only untrusted keys it fails.
        let kb = NoteKey::new("other", b.verifying_key()).unwrap();
        let err = open(&note, &[kb]).unwrap_err().to_string();
        assert!(err.contains("not signed by any trusted key"), "{err}");
        // Both trusted: both must verify.
        let kb = NoteKey::new("witness.example/w", b.verifying_key()).unwrap();
        assert_eq!(open(&note, &[ka, kb]).unwrap().verified_by.len(), 2);
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let a = test_key(3);
        let ka = NoteKey::new("k", a.verifying_key()).unwrap();
        let good = sign("a\nb\n", "k", &a).unwrap();
        open(&good, std::slice::from_ref(&ka)).unwrap();
        let line = good.lines().last().unwrap().to_string();
        let cases = [
            ("no signatures", "a\nb\n\n".to_string()),
            ("no blank line", format!("a\nb\n{line}\n")),
            ("no final newline", good.trim_end_matches('\n').to_string()),
            ("truncated signature", format!("a\nb\n\n{}\n", &line[..line.len() - 8])),
            ("hyphen not em dash", good.replace('\u{2014}', "-")),
            ("tab in text", good.replace("a\n", "a\t\n")),
            ("CR in text", good.replace("a\n", "a\r\n")),
            ("garbage line after signature", format!("{good}garbage\n")),
            ("duplicate signature line", format!("{good}{line}\n")),
            ("bad base64", good.replace(&line[line.len() - 4..], "!!!!")),
            ("wrong key signed", sign("a\nb\n", "k", &test_key(4)).unwrap()),
        ];
        for (what, note) in cases {
            assert!(open(&note, std::slice::from_ref(&ka)).is_err(), "{what} was accepted:\n{note}");
        }
        assert!(open(&good, &[]).is_err());
        let huge = format!("{}\n\n{line}\n", "x".repeat(MAX_NOTE_SIZE));
        assert!(parse(&huge).is_err());
        let many = format!("a\nb\n\n{}", format!("{line}\n").repeat(MAX_SIGNATURES + 1));
        assert!(parse(&many).unwrap_err().to_string().contains("more than"));
    }

    #[test]
    fn rotated_keys_under_one_name_and_weak_keys() {
        let (old, new) = (test_key(10), test_key(11));
        let text = "rotating\n";
        let note = format!("{}{}", sign(text, "log", &old).unwrap(), signature_line(text, "log", &new).unwrap());
        let both =
            [NoteKey::new("log", old.verifying_key()).unwrap(), NoteKey::new("log", new.verifying_key()).unwrap()];
        assert_eq!(open(&note, &both).unwrap().verified_by, vec!["log", "log"]);
        assert_eq!(open(&note, &both[1..]).unwrap().unknown, 1);
        // The identity point is a small-order key: never trusted.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(NoteKey::new("log", weak).unwrap_err().to_string().contains("small order"));
    }

    #[test]
    fn key_names_and_texts_are_checked() {
        let a = test_key(5);
        for bad in ["", "a b", "a+b", "a\u{a0}b", "a\nb"] {
            assert!(sign("x\n", bad, &a).is_err(), "{bad:?}");
            assert!(NoteKey::new(bad, a.verifying_key()).is_err(), "{bad:?}");
        }
        for bad in ["", "no newline", "nul\0\n"] {
            assert!(sign(bad, "k", &a).is_err(), "{bad:?}");
        }
        // Text with an empty line inside is fine (the last blank line separates).
        let k = NoteKey::new("k", a.verifying_key()).unwrap();
        let note = sign("a\n\nb\n", "k", &a).unwrap();
        assert_eq!(open(&note, &[k]).unwrap().text, "a\n\nb\n");
    }

    #[test]
    fn signer_from_a_key_file_signs_notes() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key_path, pub_path) = crate::evidence::keys::generate(&dir.path().join("k")).unwrap();
        let signer = Signer::load(&key_path).unwrap();
        let public = crate::evidence::keys::load_public(&pub_path).unwrap();
        let note = sign("hello\n", "agentplane/test", &signer).unwrap();
        let k = NoteKey::new("agentplane/test", public.key).unwrap();
        open(&note, &[k]).unwrap();
    }
}
