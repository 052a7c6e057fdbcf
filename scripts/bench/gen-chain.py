#!/usr/bin/env python3
"""gen-chain.py: generate a synthetic signed evidence chain for the verify benchmark.

    !!  The format here MUST follow src/evidence/ in the repository (DESIGN.md §7:
    !!  statement.rs, dsse.rs, chain.rs). It was written from the design and
    !!  checked against src/evidence/ as of 2026-11-22; when src/evidence/
    !!  changes (field names, kinds, genesis value, serialization, seal
    !!  entry), change this generator to match, or better, produce the chain
    !!  with agentplane itself and use this only for scale.

Usage: gen-chain.py OUTDIR [--n 10000] [--key PKCS8_PEM] [--seed-key HEX32]
                           [--run-id ID] [--bundle NAME@VERSION]
                           [--kinds K1,K2,...] [--seal] [--no-subjects]

Writes:
  OUTDIR/evidence.jsonl      N lines, each a DSSE envelope (compact JSON):
      {"payloadType":"application/vnd.in-toto+json","payload":"<base64 std>",
       "signatures":[{"keyid":"<hex sha256 of raw 32-byte ed25519 pubkey>","sig":"<base64 std>"}]}
    signing PAE(payloadType, payload) =
      "DSSEv1 " + len(type) + " " + type + " " + len(body) + " " + body
    with pure Ed25519. Each payload is an in-toto Statement v1:
      {"_type":"https://in-toto.io/Statement/v1",
       "subject":[{"name":"<file>","digest":{"sha256":"<hex>"}}],
       "predicateType":"https://agentplane.socioprophet.org/evidence/<Kind>/v0.1",
       "predicate":{"kind":"<Kind>","seq":N,"runId":"<id>","bundle":"name@version",
                    "bundleDigest":"sha256:<hex>",
                    "previous":"sha256:<hex sha256 of the previous line's exact bytes, no newline>"}}
    previous at seq 0 is "sha256:" + 64 zeros.
  OUTDIR/entries/<seq>-<kind>.json   the subject file of each entry (small JSON),
                                     so subject digests are real (--no-subjects: skip)
  OUTDIR/keys/signing.key.pem        PKCS#8 PEM private key (when generated here)
  OUTDIR/keys/signing.pub.pem        SPKI PEM public key
Prints the key id and paths on stderr.

--seal appends one more entry of kind "Seal" as src/evidence/chain.rs writes it
(checked against the source on 2026-11-22): its only subject is
{"name":"evidence.jsonl","digest":{"sha256":"<hex of head>"}} and its predicate
also carries "length" (entries before it, == seq) and "head" (== previous).
Key order follows the Rust structs (serde): Statement _type, subject,
predicateType, predicate; predicate kind, seq, runId, bundle, bundleDigest,
previous[, length, head]; envelope payloadType, payload, signatures.

Known gaps: the subject files are not real agentplane artifacts, so
`agentplane verify` is expected to reject this chain on its artifact/schema
checks; it is for timing signature + link verification at scale
(verify.py), and for agentplane once it can be told to skip those checks or
once the chain is produced by agentplane itself.

Key: a fresh ed25519 key by default; --key uses an existing PKCS#8 PEM (e.g.
one from `agentplane keygen`); --seed-key HEX makes the key (and so the whole
chain: ed25519 signatures are deterministic) reproducible.
Idempotent: OUTDIR/evidence.jsonl and OUTDIR/entries are rewritten.
Needs the python `cryptography` package (in the bench venv: setup-peers.sh).
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
GENESIS = "sha256:" + "0" * 64
DEFAULT_KINDS = "ValidationArtifact,PlacementDecision,RunArtifact,ReplayArtifact,SessionArtifact"


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(body), body)


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_or_make_key(a, keydir):
    os.makedirs(keydir, exist_ok=True)
    if a.key:
        with open(a.key, "rb") as f:
            sk = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(sk, Ed25519PrivateKey):
            sys.exit(f"gen-chain: {a.key} is not an ed25519 key")
        priv_path = os.path.abspath(a.key)
    else:
        sk = (Ed25519PrivateKey.from_private_bytes(bytes.fromhex(a.seed_key))
              if a.seed_key else Ed25519PrivateKey.generate())
        priv_path = os.path.join(keydir, "signing.key.pem")
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    pk = sk.public_key()
    pub_path = os.path.join(keydir, "signing.pub.pem")
    with open(pub_path, "wb") as f:
        f.write(pk.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sk, hashlib.sha256(raw).hexdigest(), priv_path, pub_path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--key", help="existing PKCS#8 PEM ed25519 private key")
    ap.add_argument("--seed-key", help="64 hex chars: derive the key from this seed (reproducible)")
    ap.add_argument("--run-id", default="run-bench-0001")
    ap.add_argument("--bundle", default="bench-chain@0.1.0")
    ap.add_argument("--bundle-digest", default="sha256:" + hashlib.sha256(b"bench-chain").hexdigest())
    ap.add_argument("--kinds", default=DEFAULT_KINDS, help="comma-separated kinds, cycled")
    ap.add_argument("--seal", action="store_true", help="append a Seal entry (format is a guess)")
    ap.add_argument("--no-subjects", action="store_true", help="do not write subject files")
    a = ap.parse_args()
    if a.n < 1:
        ap.error("--n must be >= 1")

    out = os.path.abspath(a.outdir)
    os.makedirs(out, exist_ok=True)
    sk, keyid, priv_path, pub_path = load_or_make_key(a, os.path.join(out, "keys"))
    kinds = [k for k in a.kinds.split(",") if k]
    entries_dir = os.path.join(out, "entries")
    if os.path.isdir(entries_dir):
        shutil.rmtree(entries_dir)
    if not a.no_subjects:
        os.makedirs(entries_dir)

    previous = GENESIS
    total = a.n + (1 if a.seal else 0)
    tmp = os.path.join(out, "evidence.jsonl.tmp")
    with open(tmp, "wb") as chain:
        for seq in range(total):
            kind = "Seal" if (a.seal and seq == a.n) else kinds[seq % len(kinds)]
            if kind == "Seal":
                subject = [{"name": "evidence.jsonl", "digest": {"sha256": previous.split(":", 1)[1]}}]
            else:
                name = f"entries/{seq:06d}-{kind}.json"
                content = compact({"kind": kind, "seq": seq, "runId": a.run_id, "bundle": a.bundle}) + b"\n"
                if not a.no_subjects:
                    with open(os.path.join(out, name), "wb") as f:
                        f.write(content)
                subject = [{"name": name, "digest": {"sha256": hashlib.sha256(content).hexdigest()}}]
            predicate = {"kind": kind, "seq": seq, "runId": a.run_id, "bundle": a.bundle,
                         "bundleDigest": a.bundle_digest, "previous": previous}
            if kind == "Seal":
                predicate["length"] = seq
                predicate["head"] = previous
            stmt = {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": subject,
                "predicateType": f"https://agentplane.socioprophet.org/evidence/{kind}/v0.1",
                "predicate": predicate,
            }
            body = compact(stmt)
            sig = sk.sign(pae(PAYLOAD_TYPE, body))
            line = compact({
                "payloadType": PAYLOAD_TYPE,
                "payload": base64.b64encode(body).decode("ascii"),
                "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode("ascii")}],
            })
            chain.write(line + b"\n")
            previous = "sha256:" + hashlib.sha256(line).hexdigest()
        chain.flush()
        os.fsync(chain.fileno())
    os.replace(tmp, os.path.join(out, "evidence.jsonl"))
    print(f"gen-chain: {total} entries in {out}/evidence.jsonl\n"
          f"  keyid {keyid}\n  private key {priv_path}\n  public key  {pub_path}\n"
          f"  head {previous}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
