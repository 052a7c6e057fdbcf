#!/usr/bin/env bash
# all.sh: run the benchmarks of docs/performance.md in turn, then print one
# summary table (from $RESULTS/<bench>-summary.json).
#
# Usage: scripts/bench/all.sh [--peers-only] [BENCH...]
#   BENCH          any of: validate verify prove run up place (default: all six, in that order)
#   --peers-only   time only the peer tools (validate, run, up, place; verify needs agentplane)
#   AGENTPLANE=path/to/binary (default ${CARGO_TARGET_DIR:-target}/release/agentplane)
#   e.g.  CARGO_TARGET_DIR=/work/bench-target scripts/bench/all.sh
# A bench that fails (or misses its target) does not stop the others; the exit
# code is the number of benches that failed or missed a target.
# Takes ~8-12 minutes on the 2-core machine (verify builds its chain, prove a
# 1,000,000-entry one (~1 GB in $TMPDIR), place ~1 min).
# Before each bench it waits (up to $AGENTPLANE_BENCH_WAIT seconds, default 300)
# for other processes to use under 15% of the CPUs, and says what it saw.
# vm.sh (QEMU) is not part of this set: run it by itself.
# AGENTPLANE_BENCH_PAUSE_DAMON=1: pause the host's DAMON proactive reclaim
# (page-out of cold memory, page cache included) while the benches run, and
# resume it at the end (needs root; see lib.sh). Either way the state is
# printed before each bench and in the summary.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

PEERS=() BENCHES=()
for a in "$@"; do
  case "$a" in
    --peers-only) PEERS=(--peers-only) ;;
    validate|verify|prove|run|up|place) BENCHES+=("$a") ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $a (see --help)" ;;
  esac
done
[ "${#BENCHES[@]}" -gt 0 ] || BENCHES=(validate verify prove run up place)

"$HERE/setup-peers.sh" --check || exit 2
[ "${AGENTPLANE_BENCH_PAUSE_DAMON:-0}" = 1 ] && damon_pause
failed=0
for b in "${BENCHES[@]}"; do
  echo; echo "================ $b (load $(loadavg); $(damon_note)) ================"
  if { [ "$b" = verify ] || [ "$b" = prove ]; } && [ "${#PEERS[@]}" -gt 0 ]; then echo "all.sh: $b skipped with --peers-only"; continue; fi
  rm -f "$RESULTS/$b-summary.json"
  wait_quiet "${AGENTPLANE_BENCH_WAIT:-300}"
  "$HERE/$b.sh" "${PEERS[@]}" || { echo "all.sh: $b failed or missed a target" >&2; failed=$((failed + 1)); }
done

echo; echo "================ summary ($(damon_note)) ================"
python3 - "$RESULTS" "${BENCHES[@]}" <<'EOF'
import json, os, sys
res = sys.argv[1]
for b in sys.argv[2:]:
    p = os.path.join(res, f"{b}-summary.json")
    if not os.path.exists(p):
        print(f"{b:<9} no summary (the script stopped before timing; see its output)")
        continue
    s = json.load(open(p))
    med = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in s["mediansSeconds"].items())
    print(f"{b:<9} load {s['load']['before']} -> {s['load']['after']}; medians: {med}")
    for t in s["targets"]:
        val = (f"{t['ratio']:.2f}x (target {t['target']}x)" if "ratio" in t
               else f"{t.get('median', t.get('overheadSeconds', 0)) * 1e3:.1f} ms (limit {t['limit'] * 1e3:.0f} ms)")
        print(f"          {'PASS' if t['pass'] else 'FAIL'}  {t['what'] if 'what' in t else t['agentplane'] + ' vs ' + t['peer']}: {val}")
EOF
exit "$failed"
