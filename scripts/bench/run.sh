#!/usr/bin/env bash
# run.sh: overhead of `agentplane run` around a trivial smoke script, beside the
# bare script and in-toto-run wrapping the same script.
#
# The smoke script is the trivial bundle's (bundles/trivial/smoke.sh in a temp
# root, from lib.sh's make_trivial_project): `echo hi > "$1/out.txt"`.
# Measures (hyperfine, one invocation, warmup 1), whole process:
#   bare          ROOT/bundles/trivial/smoke.sh OUT
#   in-toto-run   in-toto-run --step-name x --signing-key KEY --products out.txt -q -d meta \
#                   -- ROOT/bundles/trivial/smoke.sh .      (one signed in-toto link)
#   in-toto-dsse  the same with --use-dsse                  (informational: a DSSE link)
#   agentplane    agentplane --root ROOT run bundles/trivial
#                 with `rm -rf ROOT/artifacts/trivial && agentplane validate && agentplane place`
#                 as untimed hyperfine --prepare before every timed run: each
#                 stage runs once per evidence chain.
# agentplane run, on the implicit local executor, runs the script in a governed
# environment and process group, captures its logs and products, writes a
# RunArtifact with their digests and appends one signed chain entry. The
# signing key is agentplane keygen's, at ROOT/.agentplane/keys/signing.key
# (found without --key); in-toto-run's is an ed25519 PKCS#8 PEM made once in $BENCH_DIR/keys.
#
# Target (issue): agentplane run's overhead over bare (median minus median) <= 20 ms.
#
# Usage: scripts/bench/run.sh [--runs 20] [--peers-only] [--keep]
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
# Results: $RESULTS/run.{json,md}, run-summary.json. Exit 0 when the target passes.
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

DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-run.XXXXXX")"
[ "$KEEP" = 1 ] && echo "run.sh: work dir kept: $DIR" >&2 || trap 'rm -rf "$DIR"' EXIT
make_trivial_project "$DIR"
SMOKE="$DIR/bundles/trivial/smoke.sh"
mkdir -p "$DIR/peer/meta" "$DIR/bare"
IKEY="$(intoto_key)"
cd "$DIR/peer"

BARE="'$SMOKE' '$DIR/bare'"
ITR="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta -- '$SMOKE' ."
ITD="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta --use-dsse -- '$SMOKE' ."
try_untimed bare "$BARE && grep -q hi '$DIR/bare/out.txt'"
try_untimed in-toto-run "cd '$DIR/peer' && $ITR && ls meta/x.*.link >/dev/null"
try_untimed in-toto-dsse "cd '$DIR/peer' && $ITD"

cmds=(--command-name bare --prepare "rm -f '$DIR/bare/out.txt'" "$BARE"
      --command-name in-toto-run --prepare "rm -f out.txt meta/*" "$ITR"
      --command-name in-toto-dsse --prepare "rm -f out.txt meta/*" "$ITD")
if [ "$PEERS_ONLY" = 0 ]; then
  agentplane_keygen "$DIR" >/dev/null
  A="'$AGENTPLANE' --root '$DIR'"
  PREP="rm -rf '$DIR/artifacts/trivial' && $A validate bundles/trivial >/dev/null && $A place bundles/trivial >/dev/null"
  RUN="$A run bundles/trivial"
  try_untimed "agentplane validate+place" "$PREP"
  try_untimed "agentplane run" "$RUN && grep -q hi '$DIR/artifacts/trivial/products/out.txt'"
  cmds=(--command-name agentplane --prepare "$PREP" "$RUN" "${cmds[@]}")
fi

mkdir -p "$RESULTS"
LOAD0="$(loadavg)"
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/run.json" --export-markdown "$RESULTS/run.md" "${cmds[@]}"
LOAD1="$(loadavg)"
echo
echo "run.sh: $RUNS runs, $(nproc) cores; load before $LOAD0, after $LOAD1; medians:"
report_medians "$RESULTS/run.json" agentplane
set +e
python3 - "$RESULTS/run.json" "$LOAD0" "$LOAD1" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
bare = r["bare"]
for k in r:
    if k != "bare":
        print(f"  overhead over bare: {k:<14} {(r[k] - bare) * 1e3:8.1f} ms")
rows = []
if "agentplane" in r:
    over = r["agentplane"] - bare
    ok = over <= 0.020
    rows.append({"what": "agentplane run overhead over bare <= 20 ms", "overheadSeconds": over, "limit": 0.020, "pass": ok})
    print(f"target: agentplane run overhead over bare <= 20 ms: {over * 1e3:.1f} ms  {'PASS' if ok else 'FAIL'}"
          + ("" if ok else f" (over by {(over - 0.020) * 1e3:.1f} ms)"))
    print(f"  for scale: in-toto-run overhead {(r['in-toto-run'] - bare) * 1e3:.1f} ms = "
          f"{(r['in-toto-run'] - bare) / max(over, 1e-9):.1f}x agentplane's")
summary = {"bench": "run", "mediansSeconds": r, "targets": rows,
           "load": {"before": sys.argv[2], "after": sys.argv[3]}, "pass": all(x["pass"] for x in rows) if rows else None}
open(sys.argv[1].replace("run.json", "run-summary.json"), "w").write(json.dumps(summary) + "\n")
sys.exit(0 if summary["pass"] is not False else 1)
EOF
rc=$?
set -e
exit "$rc"
