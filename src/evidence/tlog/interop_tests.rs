//! Cross-checks with an independent implementation: a few lines of Python
//! (`hashlib` and the `cryptography` package) re-derive the note key id,
//! verify the Ed25519 signature over the checkpoint text, recompute the
//! RFC 6962 root from the leaves and the inclusion path of one entry, and
//! compare them with what this module wrote. Skipped, with a notice, when
//! `python3` or `cryptography` is not installed.

use std::path::Path;
use std::process::Command;

use ed25519_dalek::SigningKey;

use super::checkpoint::Checkpoint;
use super::merkle::{self, Hash};
use super::note::{self, NoteKey};
use super::proof::TlogProof;

const CHECK: &str = r#"
import sys, base64, hashlib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

d = sys.argv[1]
name = open(d + "/name").read()
pub = bytes.fromhex(open(d + "/pub.hex").read().strip())
leaves = [bytes.fromhex(x) for x in open(d + "/leaves.hex").read().split("\n")[:-1]]
note = open(d + "/checkpoint", "rb").read().decode("utf-8")

text, sigs = note.rsplit("\n\n", 1)
text += "\n"
key_id = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
verified = 0
for line in sigs.split("\n")[:-1]:
    assert line.startswith("\u2014 "), line
    n, b64 = line[2:].split(" ")
    blob = base64.b64decode(b64, validate=True)
    if n != name or blob[:4] != key_id:
        continue
    Ed25519PublicKey.from_public_bytes(pub).verify(blob[4:], text.encode())
    verified += 1
assert verified == 1, verified

def mth(d):
    if len(d) == 0:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()

def path(m, d):
    if len(d) <= 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]

origin, size, root = text.split("\n")[:3]
assert origin == open(d + "/origin").read(), origin
assert int(size) == len(leaves), (size, len(leaves))
assert base64.b64decode(root, validate=True) == mth(leaves)

proof = open(d + "/proof").read()
head, cp = proof.split("\n\n", 1)
lines = head.split("\n")
assert lines[0] == "c2sp.org/tlog-proof@v1"
index = int(lines[1][len("index "):])
got = [base64.b64decode(x, validate=True) for x in lines[2:]]
assert got == path(index, leaves), "inclusion path differs"
assert cp == note
print("python: verified", origin, size, "index", index)
"#;

fn python_with_cryptography() -> bool {
    Command::new("python3").args(["-c", "import cryptography"]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

#[test]
#[allow(clippy::print_stderr)]
fn python_verifies_checkpoint_note_and_inclusion_path() {
    if !python_with_cryptography() {
        eprintln!("SKIPPED python_verifies_checkpoint_note_and_inclusion_path: python3 with `cryptography` not found");
        return;
    }
    let origin = "agentplane.socioprophet.org/evidence/run-interop";
    let sk = SigningKey::from_bytes(&[0x5a; 32]);
    let vk = sk.verifying_key();
    for (n, index, key_name) in [(1usize, 0u64, origin), (7, 3, "agentplane/5a5a5a5a"), (100, 64, origin)] {
        let data: Vec<Vec<u8>> = (0..n).map(|i| format!("{{\"seq\":{i},\"k\":\"v\"}}").into_bytes()).collect();
        let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
        let mut signed = Checkpoint::sign(origin, n as u64, &merkle::root(&leaves), key_name, &sk).unwrap();
        // An unknown witness line must not disturb either implementation.
        let body = Checkpoint::new(origin, n as u64, merkle::root(&leaves)).unwrap().body();
        signed.push_str(&note::signature_line(&body, "witness.example/w", &SigningKey::from_bytes(&[1; 32])).unwrap());
        Checkpoint::open(&signed, &[NoteKey::new(key_name, vk).unwrap()]).unwrap();
        let proof = TlogProof::new(&leaves, index, &signed).unwrap().format();

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "name", key_name);
        write(dir.path(), "origin", origin);
        write(dir.path(), "pub.hex", &hex::encode(vk.as_bytes()));
        let hexes: String = data.iter().map(|d| format!("{}\n", hex::encode(d))).collect();
        write(dir.path(), "leaves.hex", &hexes);
        write(dir.path(), "checkpoint", &signed);
        write(dir.path(), "proof", &proof);
        let out = Command::new("python3").args(["-c", CHECK]).arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "python rejected size {n}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("python: verified"));

        // And Python refuses a tampered note (sanity check that it checks anything).
        write(dir.path(), "checkpoint", &signed.replacen(&format!("\n{n}\n"), &format!("\n{}\n", n + 1), 1));
        let out = Command::new("python3").args(["-c", CHECK]).arg(dir.path()).output().unwrap();
        assert!(!out.status.success(), "python accepted a tampered checkpoint");
    }
}
