#!/usr/bin/env bash
# verify.sh: chain verification throughput, agentplane beside securesystemslib.
#
# Measures:
#   1. in-process throughput of securesystemslib DSSE verification (verify.py,
#      best of 3, signatures + seq/previous links), in envelopes/s;
#   2. whole process (hyperfine, warmup 1):
#        agentplane        agentplane verify DIR --trusted-key PUB
#        securesystemslib  python verify.py DIR/evidence.jsonl PUB --links
#      over the same evidence directory.
# The chain is 10,000 entries: by default synthetic, from gen-chain.py (format
# per DESIGN.md §7; must follow src/evidence/). agentplane verify also checks
# artifacts, schemas and the seal, which the synthetic chain does not satisfy;
# agentplane is timed only if it accepts the chain (exit 0), otherwise this
# says so and times the peer alone. Use --evidence DIR --pub PEM with a real
# chain produced by agentplane for the agentplane side.
#
# Proposed target (not from DESIGN.md): agentplane verifies >= 5x as many envelopes/s as securesystemslib
# (NOTES.md: securesystemslib ~3,400/s; ed25519-dalek 20,000/s single,
# 40,000/s batched of 64 on this machine kind).
#
# Usage: scripts/bench/verify.sh [--n 10000] [--runs 10] [--evidence DIR --pub PEM] [--keep]
#   AGENTPLANE=path/to/binary (default target/release/agentplane; optional here)
# Results: target/bench/verify.{json,md}, target/bench/verify-peer.json
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

N=10000 RUNS=10 EVID="" PUB="" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --evidence) EVID="$2"; shift 2 ;;
    --pub) PUB="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
require_hyperfine
require_peers
mkdir -p "$RESULTS"

if [ -z "$EVID" ]; then
  EVID="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-verify.XXXXXX")"
  [ "$KEEP" = 1 ] && echo "verify.sh: chain kept in $EVID" >&2 || trap 'rm -rf "$EVID"' EXIT
  "$BENCH_PY" "$HERE/gen-chain.py" "$EVID" --n "$N" --seal
  PUB="$EVID/keys/signing.pub.pem"
else
  [ -f "$EVID/evidence.jsonl" ] || die "no evidence.jsonl in $EVID"
  [ -n "$PUB" ] && [ -f "$PUB" ] || die "--evidence needs --pub PUBLIC_KEY_PEM"
fi
EVID="$(cd "$EVID" && pwd)"
PUB="$(cd "$(dirname "$PUB")" && pwd)/$(basename "$PUB")"
LINES="$(wc -l <"$EVID/evidence.jsonl")"

echo "== in-process: securesystemslib, $LINES envelopes"
"$BENCH_PY" "$HERE/verify.py" "$EVID/evidence.jsonl" "$PUB" --links --repeat 3 --json \
  | tee "$RESULTS/verify-peer.json"

PEER="'$BENCH_PY' '$HERE/verify.py' '$EVID/evidence.jsonl' '$PUB' --links"
cmds=()
if [ -x "$AGENTPLANE" ]; then
  require_agentplane
  AP="'$AGENTPLANE' verify '$EVID' --trusted-key '$PUB'"
  set +e; eval "$AP" >"$RESULTS/verify-agentplane.out" 2>&1; rc=$?; set -e
  if [ "$rc" = 0 ]; then
    cmds+=(--command-name agentplane "$AP")
  else
    echo "verify.sh: agentplane verify exited $rc on this chain (see $RESULTS/verify-agentplane.out);" >&2
    echo "  timing the peer only. Use --evidence DIR --pub PEM with a chain agentplane produced." >&2
  fi
else
  echo "verify.sh: agentplane not built at $AGENTPLANE: timing the peer only" >&2
fi
cmds+=(--command-name securesystemslib "$PEER")

echo "== whole process"
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/verify.json" --export-markdown "$RESULTS/verify.md" "${cmds[@]}"
echo
echo "verify.sh: $LINES envelopes; medians and envelopes/s (whole process):"
report_medians "$RESULTS/verify.json" agentplane
python3 - "$RESULTS/verify.json" "$LINES" <<'EOF'
import json, sys
n = int(sys.argv[2])
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
for k, v in r.items():
    print(f"  {k:<18} {n / v:>10,.0f} envelopes/s")
if "agentplane" in r:
    ratio = r["securesystemslib"] / r["agentplane"]
    print(f"proposed target: agentplane >= 5x securesystemslib: {ratio:.1f}x  {'PASS' if ratio >= 5 else 'FAIL'}")
EOF
