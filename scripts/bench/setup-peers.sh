#!/usr/bin/env bash
# setup-peers.sh: install the peer tools the benchmarks compare agentplane with.
#
# What it installs (only when missing; safe to run again):
#   PyPI, into a venv at $BENCH_DIR/venv:
#     check-jsonschema            JSON Schema CLI (validate.sh)
#     securesystemslib[crypto]    DSSE envelope verification, ed25519 (verify.py)
#     in-toto                     provides in-toto-run (run.sh, up.sh)
#     cryptography                keys (verify.py, the in-toto-run key)
#   npm, into a prefix at $BENCH_DIR/npm:
#     ajv-cli, ajv-formats        `ajv validate --spec=draft2020` (validate.sh)
#   apt (system, only if missing):  hyperfine
#
# Nothing goes into the system Python or the global npm prefix.
# BENCH_DIR = ${AGENTPLANE_BENCH_DIR:-$HOME/.cache/agentplane-bench}
#
# Usage: scripts/bench/setup-peers.sh          # install what is missing, check each tool
#        scripts/bench/setup-peers.sh --check  # only check, exit 1 if something is missing
# Other scripts source scripts/bench/lib.sh, which puts $BENCH_DIR/venv/bin and
# $BENCH_DIR/npm/bin on PATH.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

mkdir -p "$BENCH_DIR"
PY="${PYTHON:-python3}"
VENV="$BENCH_DIR/venv"
NPM_PREFIX="$BENCH_DIR/npm"

# Pinned so runs on different days compare like with like. Bump deliberately.
PIP_PKGS=(
  "check-jsonschema==0.39.0"
  "securesystemslib[crypto]==1.6.0"
  "in-toto==3.1.0"
  "cryptography>=42"
)
NPM_PKGS=("ajv-cli@5.0.0" "ajv-formats@3.0.1")

missing=0
need() { echo "setup-peers: missing: $*" >&2; missing=1; }

# --- hyperfine ------------------------------------------------------------
if ! command -v hyperfine >/dev/null 2>&1; then
  if [ "$CHECK_ONLY" = 1 ]; then need hyperfine
  else
    echo "setup-peers: installing hyperfine (apt)" >&2
    apt-get update -qq && apt-get install -y -qq hyperfine
  fi
fi

# --- python venv -----------------------------------------------------------
py_ok() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib, sys
for m in ("check_jsonschema", "securesystemslib", "in_toto", "cryptography"):
    importlib.import_module(m)
from securesystemslib.signer import CryptoSigner, SSlibKey  # needs the crypto extra
from securesystemslib.dsse import Envelope
EOF
}
if ! py_ok; then
  if [ "$CHECK_ONLY" = 1 ]; then need "python venv $VENV"
  else
    echo "setup-peers: creating venv $VENV and installing ${PIP_PKGS[*]}" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PKGS[@]}"
    py_ok || { echo "setup-peers: python packages still not importable" >&2; exit 2; }
  fi
fi

# --- npm prefix --------------------------------------------------------------
npm_ok() {
  [ -x "$NPM_PREFIX/bin/ajv" ] && [ -d "$NPM_PREFIX/lib/node_modules/ajv-formats" ]
}
if ! npm_ok; then
  if [ "$CHECK_ONLY" = 1 ]; then need "ajv-cli in $NPM_PREFIX"
  else
    command -v npm >/dev/null || { echo "setup-peers: npm not found (apt-get install -y npm)" >&2; exit 2; }
    echo "setup-peers: installing ${NPM_PKGS[*]} into $NPM_PREFIX" >&2
    npm install --silent --no-audit --no-fund -g --prefix "$NPM_PREFIX" "${NPM_PKGS[@]}" 2>&1 \
      | grep -v 'Unknown user config' >&2 || true
    npm_ok || { echo "setup-peers: ajv-cli install failed" >&2; exit 2; }
  fi
fi

[ "$missing" = 0 ] || exit 1

# --- verify each tool runs --------------------------------------------------
echo "setup-peers: tools in $BENCH_DIR" >&2
printf '  %-18s %s\n' hyperfine "$(hyperfine --version)"
printf '  %-18s %s\n' check-jsonschema "$(check-jsonschema --version 2>&1 | tail -n1)"
printf '  %-18s %s\n' ajv "$(cd "$NPM_PREFIX/lib/node_modules/ajv-cli" && node -p 'require("./package.json").version') ($(command -v ajv))"
printf '  %-18s %s\n' in-toto-run "$(in-toto-run --version 2>&1 | tail -n1)"
printf '  %-18s %s\n' securesystemslib "$("$VENV/bin/python" -c 'import securesystemslib; print(securesystemslib.__version__)')"
printf '  %-18s %s\n' cryptography "$("$VENV/bin/python" -c 'import cryptography; print(cryptography.__version__)')"

# Smoke-test: ajv with draft 2020-12 on a trivial schema; check-jsonschema likewise.
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
printf '%s' '{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":["a"]}' >"$tmp/s.json"
printf '%s' '{"a":1}' >"$tmp/d.json"
ajv validate --spec=draft2020 -s "$tmp/s.json" -d "$tmp/d.json" >/dev/null 2>&1 \
  || { echo "setup-peers: ajv smoke test failed" >&2; exit 2; }
check-jsonschema --schemafile "$tmp/s.json" "$tmp/d.json" >/dev/null \
  || { echo "setup-peers: check-jsonschema smoke test failed" >&2; exit 2; }
echo "setup-peers: ok" >&2
