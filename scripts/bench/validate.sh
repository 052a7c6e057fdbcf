#!/usr/bin/env bash
# validate.sh: whole-process schema validation of 2,000 bundles, agentplane beside its peers.
#
# Measures (hyperfine, one run, same files, same machine, warmup 1):
#   agentplane        agentplane validate --check --root DIR DIR/bundles
#   check-jsonschema  check-jsonschema --schemafile SCHEMA bundles/*/bundle.json
#   ajv               ajv validate --spec=draft2020 -s SCHEMA -d 'bundles/*/bundle.json'
# over N (default 2,000) bundles from gen-bundles.py, 10% of them invalid, so
# every tool exits 1: hyperfine runs with -i. Before timing, each tool's verdict
# is checked once (agentplane must exit 1; each peer must report exactly the
# number of invalid bundles the generator made).
# agentplane does more than the peers (named gates, file checks, digests), all
# in one process; the peers only check the schema.
#
# Targets: agentplane >= 20x faster than check-jsonschema, >= 8x faster than ajv
# (median wall time). Prints medians and ratios peer/agentplane and PASS/FAIL.
#
# Usage: scripts/bench/validate.sh [--n 2000] [--runs 10] [--schema PATH]
#                                  [--peers-only] [--keep]
#   AGENTPLANE=path/to/binary (default target/release/agentplane)
#   --peers-only   time only the peers (before agentplane is built)
#   --keep         keep the generated bundle dir (printed) instead of removing it
# Results: target/bench/validate.{json,md} (AGENTPLANE_BENCH_RESULTS to change).
# Needs: scripts/bench/setup-peers.sh run once.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

N=2000 RUNS=10 PEERS_ONLY=0 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --schema) SCHEMA="$2"; shift 2 ;;
    --peers-only) PEERS_ONLY=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

require_hyperfine
require_peers
require_schema
[ "$PEERS_ONLY" = 1 ] || require_agentplane

DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-validate.XXXXXX")"
[ "$KEEP" = 1 ] && echo "validate.sh: bundles kept in $DIR" >&2 || trap 'rm -rf "$DIR"' EXIT
"$BENCH_PY" "$HERE/gen-bundles.py" "$N" "$DIR" --schema "$SCHEMA"
INVALID="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["invalid"])' "$DIR/bundles.manifest.json")"
cd "$DIR"

CJ="check-jsonschema --schemafile '$SCHEMA' bundles/*/bundle.json"
AJV="ajv validate --spec=draft2020 -s '$SCHEMA' -d 'bundles/*/bundle.json'"
AP="'$AGENTPLANE' validate --check --root '$DIR' '$DIR/bundles'"

# --- verdict checks (untimed) -------------------------------------------------
set +e
n_cj="$(eval "$CJ" 2>&1 | grep -o 'bundles/[^:]*/bundle.json::' | sort -u | wc -l)"
n_ajv="$(eval "$AJV" 2>&1 | grep -c ' invalid$')"
set -e
[ "$n_cj" = "$INVALID" ] || die "check-jsonschema reported $n_cj invalid, expected $INVALID"
[ "$n_ajv" = "$INVALID" ] || die "ajv reported $n_ajv invalid, expected $INVALID"
if [ "$PEERS_ONLY" = 0 ]; then
  set +e; eval "$AP" >/dev/null 2>&1; rc=$?; set -e
  [ "$rc" = 1 ] || die "agentplane validate --check exited $rc on $N bundles with $INVALID invalid (expected 1)"
fi

# --- timing -------------------------------------------------------------------
mkdir -p "$RESULTS"
cmds=()
[ "$PEERS_ONLY" = 1 ] || cmds+=(--command-name agentplane "$AP")
cmds+=(--command-name check-jsonschema "$CJ" --command-name ajv "$AJV")
hyperfine -i --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/validate.json" --export-markdown "$RESULTS/validate.md" \
  "${cmds[@]}"

echo
echo "validate.sh: $N bundles ($INVALID invalid), $RUNS runs, $(nproc) cores; medians:"
report_medians "$RESULTS/validate.json" agentplane
if [ "$PEERS_ONLY" = 0 ]; then
  python3 - "$RESULTS/validate.json" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
ok = True
for peer, target in (("check-jsonschema", 20), ("ajv", 8)):
    ratio = r[peer] / r["agentplane"]
    verdict = "PASS" if ratio >= target else "FAIL"
    ok &= ratio >= target
    print(f"target: agentplane >= {target}x faster than {peer}: {ratio:.1f}x  {verdict}")
sys.exit(0 if ok else 1)
EOF
fi
echo "results: $RESULTS/validate.json, $RESULTS/validate.md"
