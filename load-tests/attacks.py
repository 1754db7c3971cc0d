#!/usr/bin/env python3
"""Hostile-client attacks on a Portcullis binary, measured from outside (issue 10's table).

    python3 load-tests/attacks.py NAME=BINARY [NAME=BINARY ...] [--quick] [--only=ATTACK]...

Each attack starts a fresh gateway (pinned to CPU 0, one worker thread) in front of a small
upstream, runs the attack from this process (pinned to CPU 1) while a separate probe process
sends one normal request every 100 ms from another loopback address, and prints one markdown
row per attack and binary: connections the attacker still holds at checkpoints, the gateway's
RSS (start, peak), and the probe's latency (p50, p99, max) and failures.

Attacks (all bounded in count and time; traffic goes to 127.0.0.0/8 only):

- slowloris: 2,000 connections from four addresses each send a request line, then one header
  line every 2 s, for 40 s.
- idle keep-alive: 8,000 connections from eight addresses each make one request and then stay
  idle, for 65 s (the shipped keep-alive timeout is 60 s).
- one-client hog: 3,000 idle keep-alive connections from one address.
- descriptors: the gateway starts with a soft descriptor limit of 1,024 (a common inherited
  default); 1,500 idle connections from two addresses, then the probe.

Compare binaries built from different commits, e.g. before and after a change:

    git worktree add --detach /tmp/before <commit> && (cd /tmp/before && cargo build --release)
    python3 load-tests/attacks.py before=/tmp/before/target/release/portcullis \\
        after=target/release/portcullis
"""
import asyncio
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

KEY = "attack-test-key"
REQUEST_PATH = "/r/x"
HERE = os.path.abspath(__file__)


# --- the upstream and the probe run as their own processes (`attacks.py upstream|probe`) ---


async def upstream_main(port_file):
    """A keep-alive HTTP/1.1 upstream answering every request with a small 200."""

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    await asyncio.sleep(3600)


def probe_main(port, seconds, out):
    """One request every 100 ms on a fresh connection from 127.0.0.99; latencies to `out`."""
    deadline = time.monotonic() + float(seconds)
    latencies, failures = [], 0
    request = (
        f"GET {REQUEST_PATH} HTTP/1.1\r\nHost: gw\r\nx-portcullis-key: {KEY}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            with socket.create_connection(
                ("127.0.0.1", int(port)), timeout=5, source_address=("127.0.0.99", 0)
            ) as s:
                s.sendall(request)
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                latencies.append((time.monotonic() - started) * 1000)
            else:
                failures += 1
        except OSError:
            failures += 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
    with open(out, "w") as f:
        json.dump({"latencies_ms": latencies, "failures": failures}, f)


# --- the gateway under test ---


class Gateway:
    def __init__(self, binary, upstream_port, soft_nofile=None):
        self.dir = tempfile.mkdtemp(prefix="portcullis-attack-")
        config = os.path.join(self.dir, "portcullis.toml")
        with open(config, "w") as f:
            f.write(
                f"""
[server]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"

[[tenants]]
id = "acme"
key_sha256 = ["{hashlib.sha256(KEY.encode()).hexdigest()}"]

[[routes]]
name = "r"
tenant = "acme"
path = "/r"
target = "http://127.0.0.1:{upstream_port}"
allow_destinations = ["127.0.0.0/8"]
"""
            )
        ready = os.path.join(self.dir, "ready.json")
        command = [binary, "run", "--config", config, "--threads", "1", "--ready-file", ready]
        if soft_nofile:
            command = ["sh", "-c", f'ulimit -S -n {soft_nofile} && exec "$@"', "sh"] + command
        self.log = open(os.path.join(self.dir, "gateway.log"), "w")
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0"] + command, stdout=self.log, stderr=self.log, env=env
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gateway did not start; see {self.log.name}")
            time.sleep(0.05)
        with open(ready) as f:
            self.port = int(json.load(f)["http"][0].rsplit(":", 1)[1])

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


# --- attack connections ---


async def open_from(source, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def is_closed(sock):
    """Whether the peer closed `sock`: reads what is there (a 408, say) without waiting."""
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not data:
            return True


async def count_open(socks):
    """Attack connections still open; closes the ones the peer closed."""
    alive = 0
    for sock in socks:
        if sock.fileno() < 0:
            continue
        if is_closed(sock):
            sock.close()
        else:
            alive += 1
    return alive


async def keepalive_request(sock):
    """One request on `sock`; True when its whole 200 response came back."""
    loop = asyncio.get_running_loop()
    request = f"GET {REQUEST_PATH} HTTP/1.1\r\nHost: gw\r\nx-portcullis-key: {KEY}\r\n\r\n"
    try:
        await loop.sock_sendall(sock, request.encode())
        data = b""
        while b"\r\n\r\nok" not in data:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            if not chunk:
                return False
            data += chunk
        return data.startswith(b"HTTP/1.1 200")
    except (OSError, asyncio.TimeoutError):
        return False


async def open_idle(port, sources, per_source):
    socks = []
    for source in sources:
        for batch in range(0, per_source, 200):
            opened = await asyncio.gather(
                *(open_from(source, port) for _ in range(min(200, per_source - batch)))
            )
            opened = [s for s in opened if s is not None]
            served = await asyncio.gather(*(keepalive_request(s) for s in opened))
            for sock, ok in zip(opened, served):
                if ok:
                    socks.append(sock)
                else:
                    sock.close()
    return socks


# --- attacks: each returns (checkpoints, notes) ---


async def slowloris(gw, quick):
    n, seconds = (400, 12) if quick else (2000, 40)
    sources = [f"127.0.0.{i}" for i in range(11, 15)]
    socks = []
    for source in sources:
        opened = await asyncio.gather(*(open_from(source, gw.port) for _ in range(n // 4)))
        socks += [s for s in opened if s is not None]
    loop = asyncio.get_running_loop()
    for sock in socks:
        try:
            await loop.sock_sendall(sock, f"GET {REQUEST_PATH} HTTP/1.1\r\n".encode())
        except OSError:
            pass
    started, checkpoints, line = time.monotonic(), [], 0
    marks = [5, 15, seconds] if not quick else [5, seconds]
    while marks:
        await asyncio.sleep(2)
        line += 1
        for sock in socks:
            if sock.fileno() >= 0:
                try:
                    await asyncio.wait_for(loop.sock_sendall(sock, f"X-{line}: a\r\n".encode()), 0.01)
                except (OSError, asyncio.TimeoutError):
                    pass
        if time.monotonic() - started >= marks[0]:
            checkpoints.append((marks.pop(0), await count_open(socks)))
    for sock in socks:
        sock.close()
    return checkpoints, f"{len(socks)} connected"


async def idle_keepalive(gw, quick):
    per, seconds = (250, 20) if quick else (1000, 65)
    sources = [f"127.0.0.{i}" for i in range(21, 29)]
    before = gw.rss_kib()
    socks = await open_idle(gw.port, sources, per)
    held = gw.rss_kib()
    started, checkpoints = time.monotonic(), [(0, len(socks))]
    for mark in ([10, seconds] if not quick else [seconds]):
        await asyncio.sleep(max(0.0, mark - (time.monotonic() - started)))
        checkpoints.append((mark, await count_open(socks)))
    per_conn = (held - before) / max(1, len(socks))
    for sock in socks:
        sock.close()
    return checkpoints, f"{len(socks)} idle after one request; {per_conn:.0f} KiB RSS each"


async def one_client_hog(gw, quick):
    n = 1200 if quick else 3000
    socks = await open_idle(gw.port, ["127.0.0.31"], n)
    checkpoints = [(0, await count_open(socks))]
    for sock in socks:
        sock.close()
    return checkpoints, f"{n} attempted from one address"


async def descriptors(gw, quick):
    per = 750
    socks = await open_idle(gw.port, ["127.0.0.41", "127.0.0.42"], per)
    checkpoints = [(0, await count_open(socks))]
    # The probe runs meanwhile; give it a few seconds with the connections held.
    await asyncio.sleep(5)
    for sock in socks:
        sock.close()
    return checkpoints, f"{2 * per} attempted; soft descriptor limit 1024 at start"


ATTACKS = [
    ("slowloris", slowloris, None),
    ("idle keep-alive", idle_keepalive, None),
    ("one-client hog", one_client_hog, None),
    ("descriptors", descriptors, 1024),
]


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]
    if not args:
        raise SystemExit(__doc__)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    work = tempfile.mkdtemp(prefix="portcullis-attacks-")
    port_file = os.path.join(work, "upstream.port")
    upstream = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, HERE, "upstream", port_file]
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(port_file) as f:
            upstream_port = int(f.read())
        print("| attack | binary | attacker's connections open (at s: count) | RSS start → peak (MiB) | probe p50 / p99 / max (ms) | probe failures | notes |")
        print("|---|---|---|---|---|---|---|")
        for name, attack, soft_nofile in ATTACKS:
            if only and name not in only:
                continue
            for spec in args:
                label, binary = spec.split("=", 1)
                gw = Gateway(binary, upstream_port, soft_nofile)
                try:
                    start_rss = gw.rss_kib()
                    out = os.path.join(work, "probe.json")
                    probe_seconds = {"slowloris": 40, "idle keep-alive": 80}.get(name, 25)
                    if quick:
                        probe_seconds = 15 if name != "idle keep-alive" else 25
                    probe = subprocess.Popen(
                        ["taskset", "-c", "1", sys.executable, HERE, "probe", str(gw.port), str(probe_seconds), out]
                    )
                    checkpoints, notes = asyncio.run(attack(gw, quick))
                    probe.wait(timeout=probe_seconds + 30)
                    peak = gw.rss_kib("VmHWM")
                    with open(out) as f:
                        probe_result = json.load(f)
                    lat = probe_result["latencies_ms"]
                    opened = ", ".join(f"{t} s: {c}" for t, c in checkpoints)
                    print(
                        f"| {name} | {label} | {opened} | {start_rss / 1024:.0f} → {peak / 1024:.0f} "
                        f"| {percentile(lat, 50):.1f} / {percentile(lat, 99):.1f} / {max(lat, default=float('nan')):.1f} "
                        f"| {probe_result['failures']} of {probe_result['failures'] + len(lat)} | {notes} |",
                        flush=True,
                    )
                finally:
                    gw.stop()
    finally:
        upstream.kill()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "upstream":
        asyncio.run(upstream_main(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "probe":
        probe_main(*sys.argv[2:5])
    else:
        main()
