#!/usr/bin/env bash
# prove.sh: `agentplane prove` on a 1,000,000-entry chain (issue #16: "answers
# in well under a second without reading every artifact").
#
# The chain: N entries (default 1,000,000: N-2 SessionArtifact entries after a
# first one, and the seal) built by benches/synth_chain.rs --bulk: the entries
# with the library's own types (as ChainWriter writes them, without an fsync
# per line), then ChainWriter::open + seal(): the product's seal, checkpoint
# and tlog-index. ~1 GB of evidence.jsonl; only the first and last artifact
# files are written (prove reads none).
#
# Before timing, untimed:
#   0. a small bulk chain with every artifact file (--all-files) must pass
#      `agentplane verify`: the bulk writer makes what the product makes;
#   1. every timed proof must pass `agentplane verify-proof`, and the proof from
#      the tlog-index must be byte for byte the proof from the whole chain.
# Timed (hyperfine, warmup 1, --runs; the page cache is warm: the chain was
# just written, as on the machine that holds the evidence):
#   prove-end     agentplane prove EVID session-artifact-<N-3>.json
#   prove-start   agentplane prove EVID session-artifact-1.json
#   prove-entry   agentplane prove EVID --entry <N-2>
#   prove-chain   the same as prove-end on a directory without tlog-index (the
#                 fallback: reads and hashes the whole chain; --chain-runs runs)
#
# Target: prove-end and prove-start medians < 1 s ("well under": reported as is).
#
# Usage: scripts/bench/prove.sh [--n 1000000] [--runs 20] [--chain-runs 3]
#                               [--evidence DIR --pub PEM] [--keep]
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
# Results: $RESULTS/prove.{json,md}, prove-chain.json, prove-summary.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

N=1000000 RUNS=20 CHAIN_RUNS=3 EVID="" PUB="" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --chain-runs) CHAIN_RUNS="$2"; shift 2 ;;
    --evidence) EVID="$2"; shift 2 ;;
    --pub) PUB="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --peers-only) echo "prove.sh: nothing to do with --peers-only (no peer)"; exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ "$N" -ge 6 ] || die "--n must be at least 6"
require_hyperfine
require_agentplane
mkdir -p "$RESULTS"

echo "== building benches/synth_chain.rs (cargo bench --no-run)" >&2
(cd "$REPO" && cargo bench -q --no-run --bench synth_chain) || die "cargo bench --no-run failed"
synth() { (cd "$REPO" && cargo bench -q --bench synth_chain -- "$@"); }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-prove.XXXXXX")"
[ "$KEEP" = 1 ] && echo "prove.sh: chains kept in $WORK" >&2 || trap 'rm -rf "$WORK"' EXIT

echo "== 0. format check: a 50-entry bulk chain with every file must verify" >&2
synth "$WORK/small" 50 --bulk --all-files >/dev/null
"$AGENTPLANE" verify "$WORK/small/evidence" --trusted-key "$WORK/small/keys/signing.pub" >/dev/null \
  || die "agentplane verify refused a bulk chain: benches/synth_chain.rs --bulk no longer writes what the product writes"

if [ -z "$EVID" ]; then
  echo "== building a $N-entry chain (synth_chain --bulk)" >&2
  synth "$WORK/chain" "$N" --bulk >/dev/null
  EVID="$WORK/chain/evidence" PUB="$WORK/chain/keys/signing.pub"
else
  [ -f "$EVID/tlog-index" ] && [ -n "$PUB" ] || die "--evidence needs a sealed chain with tlog-index, and --pub"
fi
EVID="$(cd "$EVID" && pwd)"
LINES="$(wc -l <"$EVID/evidence.jsonl")"
[ "$LINES" = "$N" ] || N="$LINES"
END="session-artifact-$((N - 3)).json" START="session-artifact-1.json"
# The fallback's directory: the same chain (hard link), no tlog-index.
FB="$WORK/no-index"; mkdir -p "$FB"; ln -f "$EVID/evidence.jsonl" "$FB/evidence.jsonl"

echo "== 1. verdicts (untimed)" >&2
for f in "$END" "$START"; do
  "$AGENTPLANE" prove "$EVID" "$f" >"$WORK/$f.proof" 2>/dev/null
  "$AGENTPLANE" -q verify-proof "$WORK/$f.proof" "$EVID/$f" --trusted-key "$PUB" >&2 \
    || die "verify-proof refused the proof of $f"
done
"$AGENTPLANE" prove "$FB" "$END" >"$WORK/fallback.proof" 2>"$WORK/fallback.err"
cmp -s "$WORK/fallback.proof" "$WORK/$END.proof" || die "the proof from tlog-index differs from the proof from the chain"
"$AGENTPLANE" prove "$EVID" --entry "$((N - 2))" >/dev/null

echo "== 2. timed: prove on $N entries ($(du -h "$EVID/evidence.jsonl" | cut -f1) chain, $(du -h "$EVID/tlog-index" | cut -f1) index)"
LOAD0="$(loadavg)"
hyperfine --warmup 1 --runs "$RUNS" --style basic -N \
  --export-json "$RESULTS/prove.json" --export-markdown "$RESULTS/prove.md" \
  --command-name prove-end "'$AGENTPLANE' prove '$EVID' $END" \
  --command-name prove-start "'$AGENTPLANE' prove '$EVID' $START" \
  --command-name prove-entry "'$AGENTPLANE' prove '$EVID' --entry $((N - 2))"
hyperfine --warmup 1 --runs "$CHAIN_RUNS" --style basic -N --export-json "$RESULTS/prove-chain.json" \
  --command-name prove-chain "'$AGENTPLANE' prove '$FB' $END"
LOAD1="$(loadavg)"

echo
echo "prove.sh: $N entries, $(nproc) cores; load before $LOAD0, after $LOAD1; medians:"
python3 - "$RESULTS" "$N" "$LOAD0" "$LOAD1" <<'PY'
import json, sys
res, n = sys.argv[1], int(sys.argv[2])
r = {x["command"]: x["median"] for x in json.load(open(f"{res}/prove.json"))["results"]}
r.update({x["command"]: x["median"] for x in json.load(open(f"{res}/prove-chain.json"))["results"]})
for k, v in r.items():
    print(f"  {k:<12} {v * 1e3:9.1f} ms")
rows = [{"what": f"prove {k[6:]} of {n:,} entries", "median": r[k], "limit": 1.0, "pass": r[k] < 1.0}
        for k in ("prove-end", "prove-start")]
for t in rows:
    print(f"target: {t['what']} < 1 s: {t['median'] * 1e3:.1f} ms  {'PASS' if t['pass'] else 'FAIL'}")
print(f"  the fallback (whole chain) is {r['prove-chain'] / r['prove-end']:.0f}x slower")
s = {"bench": "prove", "entries": n, "mediansSeconds": r, "targets": rows,
     "load": {"before": sys.argv[3], "after": sys.argv[4]}, "pass": all(t["pass"] for t in rows)}
open(f"{res}/prove-summary.json", "w").write(json.dumps(s) + "\n")
sys.exit(0 if s["pass"] else 1)
PY
