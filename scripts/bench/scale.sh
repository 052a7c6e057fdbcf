#!/usr/bin/env bash
# scale.sh: how each stage's cost grows with its input, at three sizes each.
#
#   validate --check   over gen-bundles.py trees of V1, V2, V3 bundles (default 10,000 / 30,000 / 100,000)
#   verify             of synth_chain chains of C1, C2, C3 entries (default 10,000 / 100,000 / 1,000,000)
#   place              over H1, H2, H3 silent SSH hosts (default 1,000 / 3,000 / 10,000), via place.sh
#
# Each validate and verify run is one whole process under /usr/bin/time -v:
# wall time and peak RSS (maximum resident set size) are recorded, with the
# per-item cost, so linear growth shows as a flat per-item column. place is
# timed by place.sh (hyperfine, --runs 3) against its target: probe timeout + 2 s.
#
# Building the chains: synth_chain appends with an fsync per entry (as
# agentplane does), ~9 ms each here; under `eatmydata` (if installed) the
# fsyncs are skipped, which makes a 1,000,000-entry chain a matter of minutes.
# The chain's content is the same either way.
#
# Usage: scripts/bench/scale.sh [--stages validate,verify,place] [--validate "10000 30000 100000"]
#                               [--verify "10000 100000 1000000"] [--place "1000 3000 10000"]
#                               [--work DIR] [--keep]
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
# Needs ~6 GB of disk for the 1,000,000-entry chain (one artifact file per entry).
# Results: $RESULTS/scale.tsv (stage, size, wall s, peak RSS KiB, per-item µs, exit;
# validate exits 1: a tenth of the generated bundles are invalid by design).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

STAGES="validate,verify,place" VSIZES="10000 30000 100000" CSIZES="10000 100000 1000000" PSIZES="1000 3000 10000"
WORK="" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --stages) STAGES="$2"; shift 2 ;;
    --validate) VSIZES="$2"; shift 2 ;;
    --verify) CSIZES="$2"; shift 2 ;;
    --place) PSIZES="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
require_agentplane
require_schema
[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is needed for peak RSS: apt-get install time"
mkdir -p "$RESULTS"
if [ -z "$WORK" ]; then
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-scale.XXXXXX")"
  [ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
fi
OUT="$RESULTS/scale.tsv"
printf 'stage\tsize\twall_s\tpeak_rss_kib\tper_item_us\texit\n' >"$OUT"

# measure STAGE SIZE CMD...: one run under GNU time; a row in scale.tsv.
measure() {
  local stage="$1" size="$2"; shift 2
  local t="$WORK/time.txt" rc=0
  /usr/bin/time -v -o "$t" "$@" >/dev/null 2>"$WORK/stderr.txt" || rc=$?
  local wall rss
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$t")"
  rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$t")"
  local per; per="$(python3 -c "print(f'{$wall / $size * 1e6:.1f}')")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$stage" "$size" "$wall" "$rss" "$per" "$rc" | tee -a "$OUT"
}

if [[ ",$STAGES," == *,validate,* ]]; then
  for n in $VSIZES; do
    d="$WORK/validate-$n"
    [ -d "$d/bundles" ] || "$BENCH_PY" "$HERE/gen-bundles.py" "$n" "$d" --schema "$SCHEMA" >/dev/null
    measure validate "$n" "$AGENTPLANE" validate --check --root "$d" "$d/bundles"
    measure validate-json "$n" "$AGENTPLANE" --format json validate --check --root "$d" "$d/bundles"
    [ "$KEEP" = 1 ] || rm -rf "$d"
  done
fi

if [[ ",$STAGES," == *,verify,* ]]; then
  echo "== building benches/synth_chain.rs (cargo bench --no-run)" >&2
  (cd "$REPO" && cargo bench -q --no-run --bench synth_chain) || die "cargo bench --no-run failed"
  EMD=""; command -v eatmydata >/dev/null && EMD=eatmydata
  for n in $CSIZES; do
    d="$WORK/chain-$n"
    if [ ! -s "$d/evidence/evidence.jsonl" ]; then
      (cd "$REPO" && $EMD cargo bench -q --bench synth_chain -- "$d" "$n" >/dev/null) || die "synth_chain $n failed"
    fi
    measure verify "$n" "$AGENTPLANE" verify -q "$d/evidence" --trusted-key "$d/keys/signing.pub"
    [ "$KEEP" = 1 ] || rm -rf "$d"
  done
fi

if [[ ",$STAGES," == *,place,* ]]; then
  for n in $PSIZES; do
    "$HERE/place.sh" --hosts "$n" --runs 3 || echo "scale.sh: place over $n hosts missed its target" >&2
    cp "$RESULTS/place-summary.json" "$RESULTS/place-$n-summary.json" 2>/dev/null || true
  done
fi
echo "results: $OUT" >&2
