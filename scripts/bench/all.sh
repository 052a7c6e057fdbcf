#!/usr/bin/env bash
# all.sh: run every benchmark in scripts/bench/ in turn (setup-peers first).
#
# Usage: scripts/bench/all.sh [--peers-only]
#   --peers-only   time only the peer tools (agentplane not built yet)
#   AGENTPLANE=path/to/binary (default target/release/agentplane)
# Each script writes target/bench/<name>.{json,md}; a bench that fails does not
# stop the others; the exit code is the number of benches that failed.
# Takes ~3-5 minutes on the 2-core machine (place.sh alone ~1 minute).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS=()
[ "${1:-}" = "--peers-only" ] && PEERS=(--peers-only)

"$HERE/setup-peers.sh" || exit 2
failed=0
for b in validate verify run up place; do
  echo; echo "================ $b ================"
  args=("${PEERS[@]}")
  [ "$b" = verify ] && args=()   # verify.sh times agentplane only when it is built and accepts the chain
  "$HERE/$b.sh" "${args[@]}" || { echo "all.sh: $b failed" >&2; failed=$((failed + 1)); }
done
exit "$failed"
