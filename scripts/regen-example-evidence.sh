#!/usr/bin/env bash
# Regenerate examples/evidence/example-agent and examples/keys/demo.pub after an
# intended change of the evidence format: a demo on a fresh root with a fresh
# key, whose private half is thrown away.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bundles"
cp -r bundles/example-agent "$tmp/bundles/"
target/debug/agentplane --root "$tmp" demo >/dev/null
rm -rf examples/evidence/example-agent
mkdir -p examples/evidence examples/keys
cp -r "$tmp/artifacts/example-agent" examples/evidence/example-agent
rm -f examples/evidence/example-agent/.agentplane.lock
cp "$tmp/.agentplane/keys/signing.pub" examples/keys/demo.pub
target/debug/agentplane verify examples/evidence/example-agent --trusted-key examples/keys/demo.pub
