#!/usr/bin/env bash
# vm.sh: `agentplane run` of bundles/example-vm beside a bare QEMU boot of the
# same kernel with a hand-made busybox initramfs that runs the same smoke script.
#
# Measures (hyperfine, warmup 1), whole process, all under TCG
# (AGENTPLANE_QEMU_ACCEL=tcg, so the KVM probe is not part of the numbers):
#   raw-bzimage     qemu-system-x86_64 -kernel /boot/vmlinuz-* -initrd RAW.cpio ...
#                   (the NOTES.md recipe: the kernel decompresses itself in the guest)
#   raw-elf         the same, booting the pre-decompressed ELF agentplane caches
#   agentplane      agentplane --root DIR run bundles/example-vm  (ELF boot, the default)
#   agentplane-bz   the same with AGENTPLANE_QEMU_NO_ELF=1        (bzImage boot)
#                   validate + place run untimed before every timed run (--prepare).
# RAW.cpio is busybox + an /init that mounts proc/sys/dev, runs smoke.sh from
# the bundle with a products dir, prints the product and powers off: the least a
# VM smoke runner can do. agentplane additionally builds its initramfs, carries
# stdout/stderr/products over serial ports, digests them and signs evidence.
#
# Remote rows (issue #15; skipped with --no-remote or without /usr/sbin/sshd):
# a throwaway sshd on loopback (root login with a fresh key, strict known_hosts)
# is the SSH executor.
#   raw-ssh         ssh -p PORT root@127.0.0.1 qemu-system-x86_64 ... -kernel
#                   /boot/vmlinuz-* -initrd RAW.cpio (the initramfs already there)
#   agentplane-ssh  agentplane run bundles/example-vm placed on that executor:
#                   the VM boots there (compressed kernel: no remote ELF cache),
#                   the initramfs is built here and uploaded every run, the
#                   ports are followed over SFTP.
#
# Target (issue): agentplane <= 1.2x the raw boot it corresponds to
# (agentplane vs raw-elf, agentplane-bz vs raw-bzimage, agentplane-ssh vs raw-ssh).
#
# Usage: scripts/bench/vm.sh [--runs 5] [--keep] [--no-remote]
#   AGENTPLANE=path/to/binary (default target/release/agentplane)
# Needs qemu-system-x86_64, /bin/busybox (static), /boot/vmlinuz-*, cpio, hyperfine.
# Results: target/bench/vm.{json,md}
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

RUNS=5 KEEP=0 REMOTE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-remote) REMOTE=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
require_hyperfine
require_agentplane
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
command -v cpio >/dev/null || die "cpio missing: apt-get install cpio"
[ -x /bin/busybox ] || die "/bin/busybox missing: apt-get install busybox-static"
KERNEL="$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)"
[ -n "$KERNEL" ] || die "no /boot/vmlinuz-*: apt-get install linux-image-amd64"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentplane-bench-vm.XXXXXX")"
SSHD_PID=
cleanup() { [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null; [ "$KEEP" = 1 ] || rm -rf "$DIR"; }
trap cleanup EXIT
[ "$KEEP" = 1 ] && echo "vm.sh: work dir kept: $DIR" >&2
export AGENTPLANE_QEMU_ACCEL=tcg
export AGENTPLANE_CACHE_DIR="$DIR/cache"

# The project: the repo's example-vm bundle and a key.
mkdir -p "$DIR/root/bundles"
cp -r "$REPO/bundles/example-vm" "$DIR/root/bundles/"
"$AGENTPLANE" --root "$DIR/root" keygen >/dev/null 2>&1 || die "agentplane keygen failed"
AP="'$AGENTPLANE' --root '$DIR/root'"
PREP="$AP validate -q bundles/example-vm >/dev/null && $AP place bundles/example-vm >/dev/null"
# One untimed run fills the cache (the decompressed kernel) the ELF rows use.
try_untimed agentplane "$PREP && $AP run bundles/example-vm"
ELF="$(ls -1t "$DIR"/cache/kernels/*.elf 2>/dev/null | head -n 1 || true)"
[ -n "$ELF" ] || die "agentplane did not cache a decompressed kernel (is xz installed?)"

# The raw initramfs.
R="$DIR/raw"
mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/bundle"
cp /bin/busybox "$R/bin/"
cp -r "$REPO/bundles/example-vm/." "$R/bundle/"
cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
hostname agentplane-vm
mkdir -p /tmp/products
cd /bundle && sh smoke.sh /tmp/products
cat /tmp/products/*
poweroff -f
EOF
chmod 755 "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet >"$DIR/raw.cpio")
RAW="qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot -nic none -serial stdio -initrd '$DIR/raw.cpio' -append 'console=ttyS0 quiet loglevel=3 panic=-1'"
try_untimed raw-bzimage "$RAW -kernel '$KERNEL' >'$DIR/raw.out' && grep -q 'hostname: agentplane-vm' '$DIR/raw.out'"

# The SSH executor: a loopback sshd as root, strict host keys.
REMOTE_ROWS=()
if [ "$REMOTE" = 1 ] && [ -x /usr/sbin/sshd ]; then
  S="$DIR/sshd"; mkdir -p "$S" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$S/host" && ssh-keygen -q -t ed25519 -N '' -f "$S/client"
  cp "$S/client.pub" "$S/authorized_keys"
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  /usr/sbin/sshd -D -e -f /dev/null -p "$PORT" -o ListenAddress=127.0.0.1 -h "$S/host" \
    -o "AuthorizedKeysFile=$S/authorized_keys" -o StrictModes=no -o "Subsystem=sftp internal-sftp" \
    -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no 2>"$S/sshd.log" &
  SSHD_PID=$!
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$S/host.pub")" >"$S/known_hosts"
  for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.1; done
  cat >"$DIR/root/inv.json" <<EOF
{"apiVersion": "agentplane.socioprophet.org/v0.1", "kind": "FleetInventory",
 "metadata": {"name": "bench", "version": "0.1.0", "createdAt": "2026-11-23T00:00:00Z"},
 "builders": [], "defaultExecutor": "loopback", "selectionPolicy": {"preferHealthy": true, "requireEnabled": true},
 "executors": [{"name": "loopback", "sshRef": "root@127.0.0.1:$PORT", "enabled": true,
   "platform": {"os": "linux", "arch": "x86_64"}, "supportedBackends": ["qemu"], "capabilities": {"kvm": false},
   "health": {"state": "ready"}, "trustZone": "bench",
   "ssh": {"host": "127.0.0.1", "port": $PORT, "user": "root", "identityFile": "$S/client", "knownHostsFile": "$S/known_hosts"}}]}
EOF
  SSH="ssh -q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='$S/known_hosts' -i '$S/client' -p $PORT root@127.0.0.1"
  PREP_SSH="$AP validate -q bundles/example-vm >/dev/null && $AP place bundles/example-vm --inventory '$DIR/root/inv.json' >/dev/null"
  try_untimed agentplane-ssh "$PREP_SSH && $AP --format json run bundles/example-vm | grep -q '\"isolation\": \"vm-tcg\"'"
  try_untimed raw-ssh "$SSH \"$RAW -kernel '$KERNEL'\" >'$DIR/raw-ssh.out' && grep -q 'hostname: agentplane-vm' '$DIR/raw-ssh.out'"
  REMOTE_ROWS=(--command-name raw-ssh --prepare true "$SSH \"$RAW -kernel '$KERNEL'\" >/dev/null"
    --command-name agentplane-ssh --prepare "$PREP_SSH" "$AP run bundles/example-vm >/dev/null")
fi

mkdir -p "$RESULTS"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$RESULTS/vm.json" --export-markdown "$RESULTS/vm.md" \
  --command-name raw-bzimage --prepare true "$RAW -kernel '$KERNEL' >/dev/null" \
  --command-name raw-elf --prepare true "$RAW -kernel '$ELF' >/dev/null" \
  --command-name agentplane --prepare "$PREP" "$AP run bundles/example-vm >/dev/null" \
  --command-name agentplane-bz --prepare "$PREP" "AGENTPLANE_QEMU_NO_ELF=1 $AP run bundles/example-vm >/dev/null" \
  "${REMOTE_ROWS[@]}"

report_medians "$RESULTS/vm.json"
python3 - "$RESULTS/vm.json" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
pairs = [("agentplane", "raw-elf"), ("agentplane-bz", "raw-bzimage"), ("agentplane", "raw-bzimage"), ("agentplane-ssh", "raw-ssh")]
for mine, raw in pairs:
    if mine not in r or raw not in r:
        continue
    ratio = r[mine] / r[raw]
    verdict = "ok" if ratio <= 1.2 else "over the 1.2x target"
    print(f"{mine:<14} / {raw:<12} = {ratio:.2f}x  ({verdict})")
EOF
