#!/usr/bin/env bash
# up.sh: `agentplane up` (validate -> place -> run -> emit: four signed entries
# and a seal) on a trivial bundle, beside in-toto-run signing one link for the
# same script; and `agentplane demo` on a fresh copy of bundles/example-agent.
#
# Measures (hyperfine, one invocation, warmup 1), whole process:
#   bare          ROOT/bundles/trivial/smoke.sh OUT              (for scale)
#   in-toto-run   in-toto-run --step-name x --signing-key KEY --products out.txt -q -d meta \
#                   -- ROOT/bundles/trivial/smoke.sh .
#   agentplane    agentplane --root ROOT up bundles/trivial --key KEY
#                 (--prepare removes ROOT/artifacts/trivial: one chain per run)
#   demo-key      agentplane --root D demo   D = a fresh temp root holding a copy of the
#                 repo's bundles/example-agent and a signing key made beforehand by
#                 `agentplane keygen` (at D/.agentplane/keys/signing.key)
#   demo-nokey    agentplane --root D demo   the same root without a key: demo creates one
#                 (--prepare rebuilds D from a template each run, untimed)
# demo = up + verify + replay (a second run of the smoke script, compared).
# The trivial bundle is lib.sh's make_trivial_project (smoke: echo hi > "$1/out.txt").
#
# Targets (issue): agentplane up <= 1/4 of in-toto-run's median wall time;
# agentplane demo <= 1 s (judged for both demo rows).
#
# Usage: scripts/bench/up.sh [--runs 20] [--peers-only] [--keep]
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
# Results: $RESULTS/up.{json,md}, up-summary.json. Exit 0 when every target passes.
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
[ -f "$REPO/bundles/example-agent/bundle.json" ] || die "no bundles/example-agent in $REPO"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-up.XXXXXX")"
[ "$KEEP" = 1 ] && echo "up.sh: work dir kept: $DIR" >&2 || trap 'rm -rf "$DIR"' EXIT
make_trivial_project "$DIR"
SMOKE="$DIR/bundles/trivial/smoke.sh"
mkdir -p "$DIR/peer/meta" "$DIR/bare"
IKEY="$(intoto_key)"
cd "$DIR/peer"

BARE="'$SMOKE' '$DIR/bare'"
ITR="in-toto-run --step-name x --signing-key '$IKEY' --products out.txt -q -d meta -- '$SMOKE' ."
try_untimed in-toto-run "cd '$DIR/peer' && $ITR && ls meta/x.*.link >/dev/null"

cmds=(--command-name bare --prepare "rm -f '$DIR/bare/out.txt'" "$BARE"
      --command-name in-toto-run --prepare "rm -f out.txt meta/*" "$ITR")
if [ "$PEERS_ONLY" = 0 ]; then
  KEY="$(agentplane_keygen "$DIR")"
  UP="'$AGENTPLANE' --root '$DIR' up bundles/trivial --key '$KEY'"
  PREP="rm -rf '$DIR/artifacts/trivial'"
  try_untimed "agentplane up" "$PREP && $UP && [ \$(wc -l <'$DIR/artifacts/trivial/evidence.jsonl') -ge 5 ]"

  # demo templates: a fresh root with a copy of example-agent, with and without a key.
  mkdir -p "$DIR/tpl-nokey/bundles"
  cp -r "$REPO/bundles/example-agent" "$DIR/tpl-nokey/bundles/"
  cp -r "$DIR/tpl-nokey" "$DIR/tpl-key"
  agentplane_keygen "$DIR/tpl-key" >/dev/null
  D="$DIR/demo"
  DEMO="'$AGENTPLANE' --root '$D' demo"
  PREP_K="rm -rf '$D' && cp -a '$DIR/tpl-key' '$D'"
  PREP_N="rm -rf '$D' && cp -a '$DIR/tpl-nokey' '$D'"
  try_untimed "agentplane demo (key made beforehand)" "$PREP_K && $DEMO"
  try_untimed "agentplane demo (no key)" "$PREP_N && $DEMO && [ -f '$D/.agentplane/keys/signing.key' ]"
  cmds=(--command-name agentplane --prepare "$PREP" "$UP" "${cmds[@]}"
        --command-name demo-key --prepare "$PREP_K" "$DEMO"
        --command-name demo-nokey --prepare "$PREP_N" "$DEMO")
fi

mkdir -p "$RESULTS"
LOAD0="$(loadavg)"
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/up.json" --export-markdown "$RESULTS/up.md" "${cmds[@]}"
LOAD1="$(loadavg)"
echo
echo "up.sh: $RUNS runs, $(nproc) cores; load before $LOAD0, after $LOAD1; medians:"
report_medians "$RESULTS/up.json" agentplane
set +e
python3 - "$RESULTS/up.json" "$LOAD0" "$LOAD1" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
rows = []
if "agentplane" in r:
    ratio = r["in-toto-run"] / r["agentplane"]
    ok = ratio >= 4
    rows.append({"what": "agentplane up <= 1/4 of in-toto-run", "ratio": ratio, "target": 4, "pass": ok})
    print(f"target: agentplane up <= 1/4 of in-toto-run: in-toto-run/up = {ratio:.2f}x  {'PASS' if ok else 'FAIL'}"
          + ("" if ok else f" (needs up <= {r['in-toto-run'] / 4 * 1e3:.1f} ms, has {r['agentplane'] * 1e3:.1f} ms)"))
for d in ("demo-key", "demo-nokey"):
    if d in r:
        ok = r[d] <= 1.0
        rows.append({"what": f"agentplane demo ({d}) <= 1 s", "median": r[d], "limit": 1.0, "pass": ok})
        print(f"target: agentplane demo ({d}) <= 1 s: {r[d] * 1e3:.0f} ms  {'PASS' if ok else 'FAIL'}")
summary = {"bench": "up", "mediansSeconds": r, "targets": rows,
           "load": {"before": sys.argv[2], "after": sys.argv[3]}, "pass": all(x["pass"] for x in rows) if rows else None}
open(sys.argv[1].replace("up.json", "up-summary.json"), "w").write(json.dumps(summary) + "\n")
sys.exit(0 if summary["pass"] is not False else 1)
EOF
rc=$?
set -e
exit "$rc"
