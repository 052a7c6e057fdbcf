#!/bin/sh
# example-vm smoke: runs inside the QEMU guest that agentplane boots (see
# runners/README.md) and leaves a product showing where it ran: the guest's
# kernel, CPU and hostname, none of which a host process would report.
set -eu
out="${1:?agentplane passes the products directory as \$1}"
{
    echo "kernel: $(uname -r)"
    echo "arch: $(uname -m)"
    echo "hostname: $(hostname)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "pid1: $(cat /proc/1/comm)"
} > "$out/vm-report.txt"
echo "example-vm: smoke test ran in $(hostname) on kernel $(uname -r)"
echo "example-vm: this line goes to stderr" >&2
