#!/usr/bin/env bash
# run.sh: overhead of `agentplane run` around a trivial smoke script, beside in-toto-run.
#
# Measures (hyperfine, one run, warmup 1), whole process:
#   bare          sh -c 'echo hi > out.txt'
#   in-toto-run   in-toto-run --step-name x --signing-key KEY --products out.txt -q -d META \
#                   -- sh -c 'echo hi > out.txt'            (signed in-toto link, classic format)
#   in-toto-dsse  the same with --use-dsse                  (DSSE envelope, like agentplane's)
#   agentplane    agentplane --root DIR run bundles/trivial
#                 with `validate` and `place` as untimed setup before every timed run
#                 (hyperfine --prepare), since run needs a validated, placed bundle.
# The trivial bundle (bundles/trivial in a temp root) runs `echo hi > $1/out.txt`
# on the implicit local executor (no inventory). agentplane's run also writes a
# RunArtifact, log and product digests and appends a signed chain entry, which
# in-toto-run's link is the nearest peer to.
#
# Proposed target (not from DESIGN.md): agentplane run's
# overhead (median minus bare) <= 1/5 of in-toto-run's, i.e. under ~30-45 ms here
# (NOTES.md: in-toto-run 219 ms vs 3 ms bare; measured by this script: ~150 ms vs <1 ms).
#
# Usage: scripts/bench/run.sh [--runs 20] [--peers-only] [--stage-key] [--keep]
#   AGENTPLANE=path/to/binary (default target/release/agentplane)
#   --stage-key   also pass --key KEY to validate/place/run (if the CLI needs it there)
# Key: agentplane keygen --out DIR/keys/signing (PKCS#8 PEM); in-toto-run uses its
# own ed25519 PKCS#8 key made once in $BENCH_DIR/keys (setup-peers.sh's venv).
# Results: target/bench/run.{json,md}
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

RUNS=20 PEERS_ONLY=0 STAGE_KEY=0 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --peers-only) PEERS_ONLY=1; shift ;;
    --stage-key) STAGE_KEY=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
require_hyperfine
require_peers
[ "$PEERS_ONLY" = 1 ] || require_agentplane

DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-run.XXXXXX")"
[ "$KEEP" = 1 ] && echo "run.sh: work dir kept: $DIR" >&2 || trap 'rm -rf "$DIR"' EXIT
make_trivial_project "$DIR"
mkdir -p "$DIR/peer/meta"
IKEY="$(intoto_key)"
cd "$DIR/peer"

BARE="sh -c 'echo hi > out.txt'"
ITR="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta -- sh -c 'echo hi > out.txt'"
ITD="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta --use-dsse -- sh -c 'echo hi > out.txt'"
try_untimed in-toto-run "cd '$DIR/peer' && $ITR"
try_untimed in-toto-dsse "cd '$DIR/peer' && $ITD"

cmds=(--command-name bare --prepare "rm -f out.txt" "$BARE"
      --command-name in-toto-run --prepare "rm -f out.txt" "$ITR"
      --command-name in-toto-dsse --prepare "rm -f out.txt" "$ITD")
if [ "$PEERS_ONLY" = 0 ]; then
  KEY="$(agentplane_keygen "$DIR")"
  K=""; [ "$STAGE_KEY" = 1 ] && K=" --key '$KEY'"
  A="'$AGENTPLANE' --root '$DIR'"
  PREP="rm -rf '$DIR/artifacts/trivial' && $A validate bundles/trivial$K >/dev/null && $A place bundles/trivial$K >/dev/null"
  RUN="$A run bundles/trivial$K"
  try_untimed "agentplane validate+place" "$PREP"
  try_untimed "agentplane run" "$RUN"
  cmds=(--command-name agentplane --prepare "$PREP" "$RUN" "${cmds[@]}")
fi

mkdir -p "$RESULTS"
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/run.json" --export-markdown "$RESULTS/run.md" "${cmds[@]}"
echo
echo "run.sh: $RUNS runs, $(nproc) cores; medians:"
report_medians "$RESULTS/run.json" agentplane
python3 - "$RESULTS/run.json" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
bare = r["bare"]
for k in r:
    if k != "bare":
        print(f"  overhead over bare: {k:<14} {(r[k] - bare) * 1e3:8.1f} ms")
if "agentplane" in r:
    ratio = (r["in-toto-run"] - bare) / max(r["agentplane"] - bare, 1e-6)
    print(f"proposed target: agentplane overhead <= 1/5 of in-toto-run's: in-toto-run/agentplane = {ratio:.1f}x  "
          f"{'PASS' if ratio >= 5 else 'FAIL'}")
EOF
