#!/bin/sh
# example-agent smoke: proves the agent's entry point works and leaves a
# small, deterministic product in the directory agentplane passes as $1.
set -eu
out="${1:?agentplane passes the products directory as \$1}"
echo "example-agent: smoke test starting (bundle ${AGENTPLANE_BUNDLE:-?})"
printf '{"agent":"example-agent","check":"smoke","result":"ok"}\n' > "$out/smoke-result.json"
echo "example-agent: wrote smoke-result.json"
