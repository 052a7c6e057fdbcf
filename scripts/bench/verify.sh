#!/usr/bin/env bash
# verify.sh: chain verification throughput: agentplane verify beside the raw
# ed25519 rate of this machine and securesystemslib, in one run.
#
# The chain: 10,000 entries (9,999 SessionArtifact entries + the seal) built by
# agentplane's own library (benches/synth_chain.rs: keys::generate,
# ChainWriter::start / write_artifact / seal), so it is exactly what
# `agentplane verify` checks; the script stops unless agentplane verifies it (exit 0).
#
# Measures, in this order, on the same machine state:
#   1. raw ed25519-dalek rate (benches/ed25519_rate.rs, single thread, ~600-byte
#      messages): verify_strict one by one, and verify_batch by 64;
#   2. securesystemslib in-process (verify.py --links, best of 3; imports and
#      file reading excluded), for reference;
#   3. whole process (hyperfine, warmup 1, --runs):
#        agentplane        agentplane verify EVID --trusted-key PUB
#        agentplane-1cpu   taskset -c 0 agentplane verify ...   (informational: one core)
#        securesystemslib  python verify.py EVID/evidence.jsonl PUB --links
#      (the same DSSE envelopes; verify.py checks signatures, seq and previous
#      links; agentplane also re-hashes and schema-checks every artifact file,
#      checks the seal and that no file is unnamed);
#   4. the raw ed25519 rate again (the target uses the higher of the two runs);
#   5. the checkpoint step's cost (benches/checkpoint_cost.rs, in-process,
#      median of 15): verify_dir beside the work step 10 (checkpoints and
#      tlog-index) adds, redone with the same library calls.
# Entries/s = entries / median wall time.
#
# Targets (issue #17): agentplane entries/s >= 70% of the raw verify_strict
# rate on every core (single-core rate x nproc: the strict policy's rate on
# this machine), and >= 5x securesystemslib's (whole process, medians);
# (issue #16) step 10 makes verify at most 10% slower than it is without it.
#
# Usage: scripts/bench/verify.sh [--n 10000] [--runs 10] [--evidence DIR --pub PEM] [--keep]
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
#   --evidence DIR --pub PEM   use an existing chain instead of building one
# Builds the two bench programs with `cargo bench` (into $CARGO_TARGET_DIR when set).
# Results: $RESULTS/verify.{json,md}, verify-peer.json, ed25519-rate.json,
# checkpoint-cost.json, verify-summary.json. Exit 0 when every target passes.
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
require_agentplane
mkdir -p "$RESULTS"

echo "== building benches/ed25519_rate.rs and benches/synth_chain.rs (cargo bench --no-run)" >&2
(cd "$REPO" && cargo bench -q --no-run --bench ed25519_rate --bench synth_chain --bench checkpoint_cost) \
  || die "cargo bench --no-run failed"
bench_prog() { (cd "$REPO" && cargo bench -q --bench "$1" -- "${@:2}"); }

if [ -z "$EVID" ]; then
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-verify.XXXXXX")"
  [ "$KEEP" = 1 ] && echo "verify.sh: chain kept in $WORK" >&2 || trap 'rm -rf "$WORK"' EXIT
  echo "== building a $N-entry chain with agentplane's library (synth_chain)" >&2
  bench_prog synth_chain "$WORK/chain" "$N" >/dev/null
  EVID="$WORK/chain/evidence"
  PUB="$WORK/chain/keys/signing.pub"
else
  [ -f "$EVID/evidence.jsonl" ] || die "no evidence.jsonl in $EVID"
  [ -n "$PUB" ] && [ -f "$PUB" ] || die "--evidence needs --pub PUBLIC_KEY_PEM"
fi
EVID="$(cd "$EVID" && pwd)"
PUB="$(cd "$(dirname "$PUB")" && pwd)/$(basename "$PUB")"
LINES="$(wc -l <"$EVID/evidence.jsonl")"

AP="'$AGENTPLANE' verify '$EVID' --trusted-key '$PUB'"
AP1="taskset -c 0 $AP"
PEER="'$BENCH_PY' '$HERE/verify.py' '$EVID/evidence.jsonl' '$PUB' --links"

# --- verdicts (untimed) --------------------------------------------------------
set +e; eval "$AP" >"$RESULTS/verify-agentplane.out" 2>&1; rc=$?; set -e
if [ "$rc" != 0 ]; then
  tail -n 5 "$RESULTS/verify-agentplane.out" >&2
  die "agentplane verify exited $rc on a chain its own library wrote (full output: $RESULTS/verify-agentplane.out)"
fi
tail -n 1 "$RESULTS/verify-agentplane.out" >&2

echo "== 1. raw ed25519 rate (before)"
bench_prog ed25519_rate --n 10000 --size 600 | tee "$RESULTS/ed25519-rate.out"
RAW0="$(tail -n 1 "$RESULTS/ed25519-rate.out")"

echo "== 2. in-process: securesystemslib, $LINES envelopes"
"$BENCH_PY" "$HERE/verify.py" "$EVID/evidence.jsonl" "$PUB" --links --repeat 3 --json \
  | tee "$RESULTS/verify-peer.json"

echo "== 3. whole process"
LOAD0="$(loadavg)"
cmds=(--command-name agentplane "$AP" --command-name securesystemslib "$PEER")
command -v taskset >/dev/null && cmds+=(--command-name agentplane-1cpu "$AP1")
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/verify.json" --export-markdown "$RESULTS/verify.md" "${cmds[@]}"
LOAD1="$(loadavg)"

echo "== 4. raw ed25519 rate (after)"
bench_prog ed25519_rate --n 10000 --size 600 | tee -a "$RESULTS/ed25519-rate.out"
RAW1="$(tail -n 1 "$RESULTS/ed25519-rate.out")"
printf '[%s,%s]\n' "$RAW0" "$RAW1" >"$RESULTS/ed25519-rate.json"

echo "== 5. the checkpoint step (step 10) beside the whole verify, in-process"
bench_prog checkpoint_cost "$EVID" "$PUB" 15 | tee "$RESULTS/checkpoint-cost.json"

echo
echo "verify.sh: $LINES entries, $RUNS runs, $(nproc) cores; load before $LOAD0, after $LOAD1; medians:"
report_medians "$RESULTS/verify.json" agentplane
set +e
python3 - "$RESULTS" "$LINES" "$LOAD0" "$LOAD1" <<'EOF'
import json, sys
res, n = sys.argv[1], int(sys.argv[2])
r = {x["command"]: x["median"] for x in json.load(open(f"{res}/verify.json"))["results"]}
raw = json.load(open(f"{res}/ed25519-rate.json"))
peer_inproc = json.load(open(f"{res}/verify-peer.json"))["envelopesPerSecond"]
cc = json.load(open(f"{res}/checkpoint-cost.json"))
strict = max(x["verifyStrictPerSec"] for x in raw)
batch = max(x["verifyBatch64PerSec"] for x in raw)
rate = {k: n / v for k, v in r.items()}
for k, v in rate.items():
    print(f"  {k:<18} {r[k]*1e3:8.1f} ms  {v:>10,.0f} entries/s")
fmt = lambda key: ", ".join(format(x[key], ",.0f") for x in raw)
print(f"  raw verify_strict  {fmt('verifyStrictPerSec')} /s (before, after); "
      f"verify_batch(64) {fmt('verifyBatch64PerSec')} /s")
print(f"  securesystemslib in-process: {peer_inproc:,.0f} envelopes/s")
import os
cores = os.cpu_count() or 1
strict_all = strict * cores  # the rate of the strict policy on every core
t1 = rate["agentplane"] / strict_all
t2 = rate["agentplane"] / rate["securesystemslib"]
rows = [
    {"what": f"agentplane entries/s vs raw verify_strict on {cores} cores", "ratio": t1, "target": 0.70, "pass": t1 >= 0.70},
    {"what": "agentplane vs securesystemslib (whole process)", "ratio": t2, "target": 5.0, "pass": t2 >= 5.0},
    {"what": "verify with step 10 vs without (in-process; 1.10 = 10% slower)", "ratio": 1 + cc["share"],
     "target": 1.10, "pass": cc["share"] <= 0.10},
]
print(f"target: agentplane >= 70% of raw verify_strict on {cores} cores ({strict:,.0f}/s x {cores}): "
      f"{t1 * 100:.0f}%  {'PASS' if t1 >= 0.7 else 'FAIL'}")
print(f"target: agentplane >= 5x securesystemslib: {t2:.1f}x  {'PASS' if t2 >= 5 else 'FAIL'}")
print(f"target: step 10 (checkpoints, tlog-index) {cc['step10Seconds'] * 1e3:.1f} ms of verify's "
      f"{cc['verifySeconds'] * 1e3:.1f} ms in-process: {cc['share'] * 100:.1f}% slower than without it (<= 10%)  "
      f"{'PASS' if cc['share'] <= 0.10 else 'FAIL'}")
summary = {"bench": "verify", "entries": n, "mediansSeconds": r, "entriesPerSecond": rate,
           "rawEd25519": raw, "securesystemslibInProcessPerSecond": peer_inproc, "checkpointStep": cc, "targets": rows,
           "load": {"before": sys.argv[3], "after": sys.argv[4]}, "pass": all(x["pass"] for x in rows)}
open(f"{res}/verify-summary.json", "w").write(json.dumps(summary) + "\n")
sys.exit(0 if summary["pass"] else 1)
EOF
rc=$?
set -e
echo "results: $RESULTS/verify.json, verify.md, ed25519-rate.json, verify-peer.json, checkpoint-cost.json, verify-summary.json"
exit "$rc"
