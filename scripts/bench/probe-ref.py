#!/usr/bin/env python3
"""probe-ref.py: reference parallel SSH-banner prober for the placement benchmark.

Usage: probe-ref.py INVENTORY_JSON [--timeout 3]

Not a peer tool, a yardstick: what "probes in parallel with a bounded timeout"
costs at best in one process. For every executor whose sshRef is
[user@]host[:port], opens a TCP connection and waits for the SSH server banner
("SSH-"), all at once (asyncio), each bounded by --timeout; then chooses the
first executor that answered or is `local`. Prints counts and exits 0 if
something qualified. Against listeners.py it takes ~one timeout by design.
"""
import argparse
import asyncio
import json
import resource
import sys


def parse_ref(ref):
    if "@" in ref:
        ref = ref.split("@", 1)[1]
    host, _, port = ref.rpartition(":") if ":" in ref else (ref, "", "22")
    return host, int(port or 22)


async def probe(host, port, timeout):
    try:
        async def go():
            r, w = await asyncio.open_connection(host, port)
            try:
                line = await r.readline()
                return line.startswith(b"SSH-")
            finally:
                w.close()
        return await asyncio.wait_for(go(), timeout)
    except (asyncio.TimeoutError, OSError):
        return False


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inventory")
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    inv = json.load(open(a.inventory))
    execs = inv["executors"]
    remote = [e for e in execs if e.get("sshRef") not in (None, "local") and e["name"] != "local"]
    results = await asyncio.gather(*(probe(*parse_ref(e["sshRef"]), a.timeout) for e in remote))
    ok = {e["name"] for e, r in zip(remote, results) if r}
    chosen = next((e["name"] for e in execs
                   if e["name"] in ok or e.get("sshRef") == "local" or e["name"] == "local"), None)
    print(f"probe-ref: {len(remote)} probed, {len(ok)} answered, chosen: {chosen}")
    return 0 if chosen else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
