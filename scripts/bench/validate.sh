#!/usr/bin/env bash
# validate.sh: whole-process schema validation of 2,000 bundles, agentplane beside its peers.
#
# Measures (hyperfine, one invocation, same files, warmup 1), whole process:
#   agentplane        agentplane validate --check --root DIR DIR/bundles
#                     (human output; skips the bundle digests, which it does not show)
#   agentplane-json   agentplane --format json validate --check --root DIR DIR/bundles
#                     (json output; computes every bundle's digest, as it shows them)
#   check-jsonschema  check-jsonschema --schemafile SCHEMA bundles/*/bundle.json
#   ajv               ajv validate --spec=draft2020 -s SCHEMA -d 'bundles/*/bundle.json'
# over N (default 2,000) bundles from gen-bundles.py, 10% of them invalid, so
# every tool exits 1: hyperfine runs with -i. Before timing, each tool's verdict
# is checked once, untimed: agentplane must exit 1 and its json report must mark
# exactly the generator's invalid bundles invalid; each peer must report exactly
# that many invalid files. agentplane does more than the peers (named gates,
# file checks, digests with json), all in one process; the peers check the schema only.
#
# Targets (issue): agentplane >= 20x faster than check-jsonschema and >= 8x
# faster than ajv (median wall time). Judged for both agentplane rows.
#
# Usage: scripts/bench/validate.sh [--n 2000] [--runs 10] [--schema PATH]
#                                  [--peers-only] [--keep]
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
#   --peers-only   time only the peers (before agentplane is built)
#   --keep         keep the generated bundle dir (printed) instead of removing it
# Results: $RESULTS/validate.{json,md}, validate-summary.json (RESULTS: see lib.sh).
# Needs: scripts/bench/setup-peers.sh run once. Exit 0 when every target passes.
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
APJ="'$AGENTPLANE' --format json validate --check --root '$DIR' '$DIR/bundles'"

# --- verdict checks (untimed) -------------------------------------------------
set +e
n_cj="$(eval "$CJ" 2>&1 | grep -o 'bundles/[^:]*/bundle.json::' | sort -u | wc -l)"
n_ajv="$(eval "$AJV" 2>&1 | grep -c ' invalid$')"
set -e
[ "$n_cj" = "$INVALID" ] || die "check-jsonschema reported $n_cj invalid, expected $INVALID"
[ "$n_ajv" = "$INVALID" ] || die "ajv reported $n_ajv invalid, expected $INVALID"
if [ "$PEERS_ONLY" = 0 ]; then
  set +e; eval "$AP" >"$DIR/ap.out" 2>&1; rc=$?; set -e
  [ "$rc" = 1 ] || { tail -n 5 "$DIR/ap.out" >&2; die "agentplane validate --check exited $rc on $N bundles with $INVALID invalid (expected 1)"; }
  grep -q "$N bundles: $((N - INVALID)) valid, $INVALID invalid" "$DIR/ap.out" \
    || { tail -n 3 "$DIR/ap.out" >&2; die "agentplane validate --check did not report $INVALID of $N invalid"; }
  set +e; eval "$APJ" >"$DIR/ap.json" 2>"$DIR/ap.err"; rc=$?; set -e
  [ "$rc" = 1 ] || { tail -n 5 "$DIR/ap.err" >&2; die "agentplane --format json validate --check exited $rc (expected 1)"; }
  python3 - "$DIR/ap.json" "$DIR/bundles.manifest.json" <<'EOF' || die "agentplane's json verdicts differ from the generator's"
import json, sys
rep = json.load(open(sys.argv[1]))
man = {m["path"]: m["valid"] for m in json.load(open(sys.argv[2]))["bundles"]}
got = {}
for b in rep["bundles"]:
    p = b["path"]
    key = next((k for k in man if p.endswith(k)), None)
    if key is None:
        sys.exit(f"validate.sh: agentplane reported an unknown path {p}")
    got[key] = b["valid"]
    if b["valid"] and not (b.get("digest") or "").startswith("sha256:"):
        sys.exit(f"validate.sh: no digest for {p} in json output")
wrong = [k for k in man if got.get(k) != man[k]]
if wrong:
    sys.exit(f"validate.sh: {len(wrong)} verdicts differ, e.g. {wrong[:3]}")
print(f"validate.sh: agentplane's json verdicts match all {len(man)} bundles; digests present", file=sys.stderr)
EOF
fi

# --- timing -------------------------------------------------------------------
mkdir -p "$RESULTS"
LOAD0="$(loadavg)"
cmds=()
[ "$PEERS_ONLY" = 1 ] || cmds+=(--command-name agentplane "$AP" --command-name agentplane-json "$APJ")
cmds+=(--command-name check-jsonschema "$CJ" --command-name ajv "$AJV")
hyperfine -i --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$RESULTS/validate.json" --export-markdown "$RESULTS/validate.md" \
  "${cmds[@]}"
LOAD1="$(loadavg)"

echo
echo "validate.sh: $N bundles ($INVALID invalid), $RUNS runs, $(nproc) cores; load before $LOAD0, after $LOAD1; medians:"
report_medians "$RESULTS/validate.json" agentplane
set +e
python3 - "$RESULTS/validate.json" "$LOAD0" "$LOAD1" "$N" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
rows, ok = [], True
for mine in ("agentplane", "agentplane-json"):
    if mine not in r:
        continue
    for peer, target in (("check-jsonschema", 20), ("ajv", 8)):
        ratio = r[peer] / r[mine]
        passed = ratio >= target
        ok &= passed
        rows.append({"agentplane": mine, "peer": peer, "ratio": ratio, "target": target, "pass": passed})
        print(f"target: {mine} >= {target}x faster than {peer}: {ratio:.1f}x  {'PASS' if passed else 'FAIL'}"
              + ("" if passed else f" (needs median <= {r[peer] / target * 1e3:.1f} ms, has {r[mine] * 1e3:.1f} ms)"))
summary = {"bench": "validate", "n": int(sys.argv[4]), "mediansSeconds": r, "targets": rows,
           "load": {"before": sys.argv[2], "after": sys.argv[3]}, "pass": ok if rows else None}
open(sys.argv[1].replace("validate.json", "validate-summary.json"), "w").write(json.dumps(summary) + "\n")
sys.exit(0 if ok else 1)
EOF
rc=$?
set -e
echo "results: $RESULTS/validate.json, $RESULTS/validate.md, $RESULTS/validate-summary.json"
exit "$rc"
