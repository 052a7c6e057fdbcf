# lib.sh: shared helpers for scripts/bench/*.sh (sourced, not run).
#
# Sets:
#   BENCH_DIR   ${AGENTPLANE_BENCH_DIR:-$HOME/.cache/agentplane-bench}: peer tools live here
#   REPO        the repository root (two levels above this file)
#   SCHEMA      default bundle schema: ../shared/compat/upstream-schemas/bundle.schema.v0.1.json
#               relative to the repo (override with $AGENTPLANE_BUNDLE_SCHEMA or a script flag)
#   AGENTPLANE  the binary under test (default: ${CARGO_TARGET_DIR:-$REPO/target}/release/agentplane)
#   RESULTS     where hyperfine exports go (default: ${CARGO_TARGET_DIR:-$REPO/target}/bench;
#               $AGENTPLANE_BENCH_RESULTS to change)
# and puts the peer tools' venv and npm prefix first on PATH.

BENCH_DIR="${AGENTPLANE_BENCH_DIR:-$HOME/.cache/agentplane-bench}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCHEMA="${AGENTPLANE_BUNDLE_SCHEMA:-$REPO/../shared/compat/upstream-schemas/bundle.schema.v0.1.json}"
AGENTPLANE="${AGENTPLANE:-${CARGO_TARGET_DIR:-$REPO/target}/release/agentplane}"
RESULTS="${AGENTPLANE_BENCH_RESULTS:-${CARGO_TARGET_DIR:-$REPO/target}/bench}"
BENCH_PY="$BENCH_DIR/venv/bin/python"
export PATH="$BENCH_DIR/venv/bin:$BENCH_DIR/npm/bin:$PATH"

die() { echo "bench: $*" >&2; exit 2; }

# loadavg: the 1, 5 and 15-minute load averages now (the machine has 2 cores;
# a 1-minute load near or above 1 means something else is competing).
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# cpu_busy [SECONDS]: percent of all CPUs busy over the next SECONDS (default 2),
# from /proc/stat: what other processes are using right now (unlike loadavg,
# which lags by a minute).
cpu_busy() {
  local a b
  a=($(sed -n 's/^cpu  //p' /proc/stat)); sleep "${1:-2}"; b=($(sed -n 's/^cpu  //p' /proc/stat))
  python3 -c '
import sys
a, b = [list(map(int, x.split())) for x in sys.argv[1:3]]
d = [y - x for x, y in zip(a, b)]
idle = d[3] + d[4]
print(round(100 * (1 - idle / max(sum(d), 1))))' "${a[*]}" "${b[*]}"
}

# wait_quiet [MAX_SECONDS] [MAX_BUSY_PERCENT]: wait (default up to 300 s) until
# other processes use under MAX_BUSY_PERCENT (default 15) of the CPUs; says
# what it saw. Never fails: a bench on a busy machine still runs, and reports its load.
wait_quiet() {
  local max="${1:-300}" lim="${2:-15}" t0=$SECONDS busy
  while :; do
    busy="$(cpu_busy 2)"
    if [ "$busy" -lt "$lim" ]; then echo "bench: machine quiet (${busy}% busy, load $(loadavg))" >&2; return 0; fi
    if [ $((SECONDS - t0)) -ge "$max" ]; then
      echo "bench: WARNING: machine still ${busy}% busy after ${max}s (load $(loadavg)); timing anyway" >&2; return 0
    fi
    sleep 5
  done
}

# DAMON proactive reclaim: a kdamond running a `pageout` scheme pages out the
# memory it samples as cold, page cache included, in whole regions: the
# benches' input files can leave the page cache between (or during) timed
# runs, and each read of one then waits on the disk. On this machine kind
# (docs/performance.md, round 3 session 10) it made a small file's
# open+fstat+read+close ~30 % dearer and the validate bench ~8 % slower.
# It is the host's setting, not agentplane's; all.sh reports it and, with
# AGENTPLANE_BENCH_PAUSE_DAMON=1 (root), turns such kdamonds off for the
# benches and back on when it exits.

# damon_pageout: the state file of each running kdamond with a pageout
# scheme, one per line (nothing where DAMON is absent, off or only watching).
damon_pageout() {
  local k
  for k in /sys/kernel/mm/damon/admin/kdamonds/*; do
    [ -r "$k/state" ] && [ "$(cat "$k/state" 2>/dev/null)" = on ] || continue
    grep -qsx pageout "$k"/contexts/*/schemes/*/action && echo "$k/state"
  done
}

# damon_pause: turn off every kdamond damon_pageout lists and restore each
# on exit (sets an EXIT trap: call it from a script that sets no other).
# Prints what it did; never fails the bench.
DAMON_PAUSED=()
damon_pause() {
  local f
  mapfile -t DAMON_PAUSED < <(damon_pageout)
  if [ "${#DAMON_PAUSED[@]}" -eq 0 ]; then echo "bench: no DAMON reclaim running"; return 0; fi
  for f in "${DAMON_PAUSED[@]}"; do
    if echo off 2>/dev/null >"$f"; then echo "bench: DAMON reclaim paused for the benches (${f%/state})"
    else echo "bench: WARNING: cannot pause DAMON reclaim (${f%/state}); timing with it on"; fi
  done
  trap damon_resume EXIT
}

damon_resume() {
  local f
  for f in "${DAMON_PAUSED[@]}"; do
    echo on 2>/dev/null >"$f" && echo "bench: DAMON reclaim resumed (${f%/state})" >&2
  done
  DAMON_PAUSED=()
}

# damon_note: one line saying whether DAMON reclaim is running now.
damon_note() {
  local n
  n="$(damon_pageout | wc -l)"
  if [ "${#DAMON_PAUSED[@]}" -gt 0 ] && [ "$n" -eq 0 ]; then echo "DAMON reclaim paused by this run"
  elif [ "$n" -gt 0 ]; then echo "DAMON reclaim ON ($n pageout kdamond(s): page cache may be evicted while timing)"
  else echo "DAMON reclaim off or absent"; fi
}

# write_summary NAME JSON: store a bench's verdict as $RESULTS/NAME-summary.json
# (read by all.sh's summary table).
write_summary() { mkdir -p "$RESULTS"; printf '%s\n' "$2" >"$RESULTS/$1-summary.json"; }

# require_agentplane: fail clearly when the binary under test is not built.
require_agentplane() {
  if [ ! -x "$AGENTPLANE" ]; then
    die "agentplane binary not found at $AGENTPLANE
  build it with:  cargo build --release   (or set AGENTPLANE=/path/to/agentplane or CARGO_TARGET_DIR)"
  fi
  AGENTPLANE="$(cd "$(dirname "$AGENTPLANE")" && pwd)/$(basename "$AGENTPLANE")"
}

# require_peers: fail clearly when setup-peers.sh has not been run.
require_peers() {
  "$REPO/scripts/bench/setup-peers.sh" --check >/dev/null 2>&1 \
    || die "peer tools missing under $BENCH_DIR; run scripts/bench/setup-peers.sh first"
}

require_hyperfine() {
  command -v hyperfine >/dev/null 2>&1 || die "hyperfine missing: apt-get install -y hyperfine (or run setup-peers.sh)"
}

require_schema() {
  [ -f "$SCHEMA" ] || die "bundle schema not found: $SCHEMA (pass --schema PATH or set AGENTPLANE_BUNDLE_SCHEMA)"
  SCHEMA="$(cd "$(dirname "$SCHEMA")" && pwd)/$(basename "$SCHEMA")"
}

# report_medians JSON [BASE_NAME]: print each command's median and its ratio to
# the command named BASE_NAME (hyperfine --command-name), from a hyperfine JSON export.
report_medians() {
  python3 - "$1" "${2:-}" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
base = sys.argv[2]
b = next((r for r in res if r["command"] == base), None)
print(f"{'command':<28} {'median':>10} {'mean':>10} {'stddev':>9} {'min':>10}  ratio")
for r in res:
    ratio = ""
    if b is not None and r is not b:
        ratio = f"{r['median'] / b['median']:.1f}x vs {base}"
    sd = r.get("stddev") or 0.0
    print(f"{r['command']:<28} {r['median']*1e3:>8.1f}ms {r['mean']*1e3:>8.1f}ms "
          f"{sd*1e3:>7.1f}ms {r['min']*1e3:>8.1f}ms  {ratio}")
EOF
}

# make_trivial_project DIR: a project root with one valid bundle, bundles/trivial,
# whose smoke script writes "hi" to out.txt in the products dir ($1).
make_trivial_project() {
  local root="$1" b="$1/bundles/trivial"
  mkdir -p "$b"
  cat >"$b/bundle.json" <<'JSON'
{"apiVersion":"agentplane.socioprophet.org/v0.1","kind":"Bundle",
 "metadata":{"name":"trivial","version":"0.1.0","createdAt":"2026-02-10T00:00:00Z","licensePolicy":{"allowAGPL":false}},
 "spec":{"vm":{"backendIntent":"lima-process","modulePath":"bundles/trivial/vm.nix"},
   "secrets":{"required":[]},
   "policy":{"lane":"staging","maxRunSeconds":20,"failOnTimeout":true,"humanGateRequired":false,"policyPackRef":"policy-packs/dev/default","policyPackHash":"UNSET"},
   "artifacts":{"outDir":"artifacts/trivial"},
   "smoke":{"script":"bundles/trivial/smoke.sh"}}}
JSON
  printf '#!/bin/sh\n# trivial smoke: one product file in the products dir\necho hi > "${1:-${AGENTPLANE_PRODUCTS_DIR:?no products dir}}/out.txt"\n' >"$b/smoke.sh"
  chmod 755 "$b/smoke.sh"
  printf '{ ... }: { }\n' >"$b/vm.nix"
}

# intoto_key: path of a PKCS#8 PEM ed25519 key for in-toto-run, made once in $BENCH_DIR/keys.
intoto_key() {
  local k="$BENCH_DIR/keys/in-toto-ed25519.pem"
  if [ ! -s "$k" ]; then
    mkdir -p "$BENCH_DIR/keys"
    "$BENCH_PY" - "$k" <<'PY'
import os, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, pem); os.close(fd)
PY
  fi
  echo "$k"
}

# agentplane_keygen ROOT: `agentplane --root ROOT keygen` once, at the default
# place agentplane looks for the signing key (ROOT/.agentplane/keys/signing.key,
# so no --key is needed); prints the private key path.
agentplane_keygen() {
  local key="$1/.agentplane/keys/signing.key"
  if [ ! -f "$key" ]; then
    "$AGENTPLANE" --root "$1" keygen >&2 || die "agentplane --root $1 keygen failed"
  fi
  [ -f "$key" ] || die "agentplane keygen wrote no $key"
  echo "$key"
}

# try_untimed NAME CMD: run CMD once (untimed) and stop with its output if it fails.
try_untimed() {
  local name="$1" cmd="$2" log
  log="$(mktemp)"
  if ! bash -c "$cmd" >"$log" 2>&1; then
    echo "bench: $name failed before timing: $cmd" >&2
    sed 's/^/  | /' "$log" | tail -n 20 >&2
    rm -f "$log"; exit 2
  fi
  rm -f "$log"
}
