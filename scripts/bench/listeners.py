#!/usr/bin/env python3
"""listeners.py: N silent TCP listeners on 127.0.0.1 for the placement benchmark.

Usage: listeners.py N PORTS_FILE [--lifetime 120]

Binds N sockets on 127.0.0.1 (port 0: the kernel picks free ports), accepts
every connection and never sends a byte (an SSH client waiting for the server
banner hangs until its own timeout), and keeps each connection open until the
client closes it. Loopback only; exits by itself after --lifetime seconds
(also on SIGTERM/SIGINT). When all N listen, writes their ports, one per line,
to PORTS_FILE (atomically: PORTS_FILE.tmp then rename), so a caller can wait
for the file. Needs about N + (concurrent connections) file descriptors; raises
its own soft RLIMIT_NOFILE to the hard limit, and when that is still too few
(4 per listener are asked for), runs the listeners in several processes.
"""
import argparse
import asyncio
import os
import resource
import signal
import socket
import sys
import time


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("ports_file")
    ap.add_argument("--lifetime", type=float, default=120.0)
    return ap.parse_args()


def backstop(lifetime):
    """Whatever the event loop is doing, this process is gone a little after
    its lifetime (SIGALRM's default action ends it), and at once when the
    process that started it dies (PR_SET_PDEATHSIG): a listener left behind
    holds thousands of ports and descriptors and spoils the next run."""
    signal.alarm(int(lifetime) + 10)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass


async def main(a):
    backstop(a.lifetime)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 4 * a.n + 256)) if hard != resource.RLIM_INFINITY else max(soft, 4 * a.n + 256)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    conns = set()

    async def silent(reader, writer):
        conns.add(writer)
        try:
            while await reader.read(4096):
                pass  # discard whatever the client sends; never answer
        except (ConnectionError, OSError):
            pass
        finally:
            conns.discard(writer)
            writer.close()

    servers, ports = [], []
    for _ in range(a.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        ports.append(s.getsockname()[1])
        servers.append(await asyncio.start_server(silent, sock=s))

    tmp = a.ports_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(map(str, ports)) + "\n")
    os.replace(tmp, a.ports_file)
    print(f"listeners: {a.n} silent listeners on 127.0.0.1, pid {os.getpid()}, "
          f"exiting in {a.lifetime:.0f} s", file=sys.stderr)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), a.lifetime)
    except asyncio.TimeoutError:
        pass
    for s in servers:
        s.close()
    for w in list(conns):
        w.close()


def split(a, per):
    """More listeners than one process has descriptors for (each listener and
    each accepted connection is one): fork processes of `per` listeners each,
    then write their ports as one file. SIGTERM/SIGINT reach every child."""
    children, parts = [], []
    for i, start in enumerate(range(0, a.n, per)):
        part = argparse.Namespace(n=min(per, a.n - start), ports_file=f"{a.ports_file}.part{i}", lifetime=a.lifetime)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                asyncio.run(main(part))
            finally:
                os._exit(0)
        children.append(pid)
        parts.append(part.ports_file)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not all(os.path.exists(p) for p in parts):
        if any(os.waitpid(pid, os.WNOHANG) != (0, 0) for pid in children):
            stop()
        time.sleep(0.1)
    tmp = a.ports_file + ".tmp"
    with open(tmp, "w") as f:
        for p in parts:
            f.write(open(p).read())
    os.replace(tmp, a.ports_file)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    a = parse()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per = a.n if hard == resource.RLIM_INFINITY else max(1, (hard - 256) // 4)
    if a.n <= per:
        asyncio.run(main(a))
    else:
        split(a, per)
