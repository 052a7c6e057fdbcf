#!/usr/bin/env python3
"""verify.py: the peer side of the chain-verification benchmark (securesystemslib).

Usage: verify.py EVIDENCE_JSONL PUBKEY_SPKI_PEM [--links] [--repeat R] [--json]

Verifies every line of an agentplane evidence.jsonl (DSSE envelopes, ed25519,
payloadType application/vnd.in-toto+json; format: DESIGN.md §7 and
src/evidence/) with securesystemslib's DSSE API:
    securesystemslib.dsse.Envelope.from_dict(line).verify([SSlibKey], threshold=1)
where the SSlibKey is built from the SPKI PEM with SSlibKey.from_crypto and
key id = lowercase hex sha256 of the raw 32-byte public key (agentplane's key id).

--links also checks the hash chain the way agentplane does: each payload's
predicate.previous == "sha256:" + sha256(previous line's bytes without the
newline), "sha256:" + 64 zeros at the first line, and predicate.seq == line number.

Prints envelopes/s (in-process, file already read; interpreter start-up and
imports excluded) and exits 1 on the first envelope that does not verify.
NOTES.md measured securesystemslib at ~3,400 envelopes/s on this machine kind.
Target (issue): `agentplane verify` >= 5x securesystemslib's entries/s, whole
process (scripts/bench/verify.sh times both on the same chain).

Run with the bench venv's python (scripts/bench/setup-peers.sh):
    ~/.cache/agentplane-bench/venv/bin/python scripts/bench/verify.py DIR/evidence.jsonl PUB.pem
"""
import argparse
import hashlib
import json
import sys
import time

from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

GENESIS = "sha256:" + "0" * 64


def load_key(path):
    with open(path, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SSlibKey.from_crypto(pub, keyid=hashlib.sha256(raw).hexdigest())


def verify_all(lines, key, links):
    previous = GENESIS
    for i, line in enumerate(lines):
        env = Envelope.from_dict(json.loads(line))
        try:
            env.verify([key], 1)
        except Exception as e:  # VerificationError, ValueError
            raise SystemExit(f"verify.py: line {i + 1}: signature does not verify: {e}")
        if links:
            pred = json.loads(env.payload)["predicate"]
            if pred.get("previous") != previous:
                raise SystemExit(f"verify.py: line {i + 1}: previous {pred.get('previous')} != {previous}")
            if pred.get("seq") != i:
                raise SystemExit(f"verify.py: line {i + 1}: seq {pred.get('seq')} != {i}")
            previous = "sha256:" + hashlib.sha256(line).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evidence")
    ap.add_argument("pubkey")
    ap.add_argument("--links", action="store_true", help="also check seq and previous links")
    ap.add_argument("--repeat", type=int, default=1, help="verify the whole chain R times, report the best")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    a = ap.parse_args()

    key = load_key(a.pubkey)
    with open(a.evidence, "rb") as f:
        lines = [l[:-1] if l.endswith(b"\n") else l for l in f.read().split(b"\n") if l]
    if not lines:
        raise SystemExit("verify.py: empty evidence file")

    best = float("inf")
    for _ in range(max(1, a.repeat)):
        t0 = time.perf_counter()
        verify_all(lines, key, a.links)
        best = min(best, time.perf_counter() - t0)
    rate = len(lines) / best
    if a.json:
        print(json.dumps({"tool": "securesystemslib", "envelopes": len(lines), "seconds": best,
                          "envelopesPerSecond": rate, "links": a.links}))
    else:
        print(f"securesystemslib: verified {len(lines)} envelopes in {best:.3f} s: "
              f"{rate:,.0f} envelopes/s{' (with links)' if a.links else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
