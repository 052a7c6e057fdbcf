#!/usr/bin/env bash
# up.sh: `agentplane up` (validate -> place -> run -> emit, sealed, signed) on a
# trivial bundle, beside in-toto-run around the same command.
#
# Measures (hyperfine, one run, warmup 1), whole process:
#   bare          sh -c 'echo hi > out.txt'
#   in-toto-run   in-toto-run --step-name x --signing-key KEY --products out.txt -q -d META \
#                   -- sh -c 'echo hi > out.txt'
#   in-toto-dsse  the same with --use-dsse
#   agentplane    agentplane --root DIR up bundles/trivial --key KEY
#                 (each timed run starts from an empty outDir: --prepare removes
#                  DIR/artifacts/trivial, so evidence history does not pile up)
# agentplane does far more in `up` (schema + gates, bundle digest, placement,
# run with a governed env and process group, four or more artifacts, a signed
# hash chain and a seal) than in-toto-run (one signed link), so this is the
# whole-pipeline cost a developer sees, next to the cheapest signed peer.
#
# Proposed target (not from DESIGN.md): agentplane up <= in-toto-run's median
# (NOTES.md: in-toto-run 219 ms; measured by run.sh here: ~150 ms).
#
# Usage: scripts/bench/up.sh [--runs 20] [--peers-only] [--keep]
#   AGENTPLANE=path/to/binary (default target/release/agentplane)
# Key: agentplane keygen --out DIR/keys/signing (PKCS#8 PEM).
# Results: target/bench/up.{json,md}
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

RUNS=20 PEERS_ONLY=0 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --peers-only) PEERS_ONLY=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
require_hyperfine
require_peers
[ "$PEERS_ONLY" = 1 ] || require_agentplane

DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-up.XXXXXX")"
[ "$KEEP" = 1 ] && echo "up.sh: work dir kept: $DIR" >&2 || trap 'rm -rf "$DIR"' EXIT
make_trivial_project "$DIR"
mkdir -p "$DIR/peer/meta"
IKEY="$(intoto_key)"
cd "$DIR/peer"

BARE="sh -c 'echo hi > out.txt'"
ITR="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta -- sh -c 'echo hi > out.txt'"
ITD="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta --use-dsse -- sh -c 'echo hi > out.txt'"
try_untimed in-toto-run "cd '$DIR/peer' && $ITR"

cmds=(--command-name bare --prepare "rm -f out.txt" "$BARE"
      --command-name in-toto-run --prepare "rm -f out.txt" "$ITR"
      --command-name in-toto-dsse --prepare "rm -f out.txt" "$ITD")
if [ "$PEERS_ONLY" = 0 ]; then
  KEY="$(agentplane_keygen "$DIR")"
  UP="'$AGENTPLANE' --root '$DIR' up bundles/trivial --key '$KEY'"
  PREP="rm -rf '$DIR/artifacts/trivial'"
  try_untimed "agentplane up" "$PREP && $UP"
  cmds=(--command-name agentplane --prepare "$PREP" "$UP" "${cmds[@]}")
fi

mkdir -p "$RESULTS"
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/up.json" --export-markdown "$RESULTS/up.md" "${cmds[@]}"
echo
echo "up.sh: $RUNS runs, $(nproc) cores; medians:"
report_medians "$RESULTS/up.json" agentplane
if [ "$PEERS_ONLY" = 0 ]; then
  python3 - "$RESULTS/up.json" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
ratio = r["in-toto-run"] / r["agentplane"]
print(f"proposed target: agentplane up <= in-toto-run: in-toto-run/agentplane = {ratio:.2f}x  "
      f"{'PASS' if ratio >= 1 else 'FAIL'}")
EOF
fi
