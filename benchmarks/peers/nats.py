"""NATS 2.9 JetStream (Debian's nats-server), file storage, every publish acknowledged.

Clients: ``nats bench`` is not packaged, so produce and consume use benchmarks/natsperf.go, built
on first use against the official Go client nats.go from Debian's packages (golang-go,
golang-github-nats-io-go-nats-dev; GOPATH mode, nothing downloaded); where it cannot be built,
nats-py (asyncio) with 2 producer processes:
* produce: ``PublishAsync`` (pipelined, each message acknowledged by the server once stored in
  the stream's file); a stream with one subject (= one partition);
* consume: a pull consumer (ack policy none, deliver all) fetching 1,000 at a time;
* latency (nats-py): paced ``publish_async``; the consumer a push subscription on new messages.

Run as a module, this file is its own client: ``python -m benchmarks.peers.nats MODE ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

STAMP = struct.Struct(">q")
PRODUCERS = 2


def build_natsperf() -> Path | None:
    """Compile natsperf.go with Debian's Go and nats.go (installed on request)."""
    import hashlib
    import os
    import shutil

    from benchmarks.clients import CACHE
    from benchmarks.peers import apt_install

    source = Path(__file__).resolve().parent.parent / "natsperf.go"
    binary = CACHE / f"natsperf-{hashlib.sha256(source.read_bytes()).hexdigest()[:16]}"
    if binary.exists():
        return binary
    try:
        apt_install(["golang-go", "golang-github-nats-io-go-nats-dev"],
                    ["go", "/usr/share/gocode/src/github.com/nats-io/nats.go"])
        CACHE.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
               "GOCACHE": str(CACHE / "go-build"), "GOFLAGS": ""}
        go = shutil.which("go") or "/usr/lib/go/bin/go"
        subprocess.run([go, "build", "-o", str(binary), str(source)], check=True, env=env, timeout=600,
                       capture_output=True)
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        print(f"  nats: cannot build natsperf ({exc}); using nats-py", file=sys.stderr, flush=True)
        return None
    return binary


def run(client: object, sizes: object, workloads: set[str]) -> list:
    import tempfile

    from benchmarks.brokers import ServerProcess, free_port, wait_port
    from benchmarks.model import Row
    from benchmarks.peers import apt_install
    from benchmarks.peers.common import command_row, latency_rows
    from benchmarks.procstat import ProcTree

    apt_install(["nats-server"], ["/usr/sbin/nats-server"])
    out = subprocess.run(["/usr/sbin/nats-server", "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"v(\d[\w.]*)", out.stdout + out.stderr)
    system = f"nats {m.group(1) if m else '?'}"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        port = free_port()
        server = ServerProcess(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port), "-js",
                                "-sd", tmp])
        try:
            wait_port(port, time.monotonic() + 30, server.proc)
            proc = ProcTree(server.pid)
            time.sleep(0.5)
            idle = proc.sample()
            rows.append(Row(system=system, workload="idle", client="-", broker_rss=idle.rss,
                            broker_cpu_s=idle.cpu_s, note="RSS after start; CPU: start-up"))
            name = "nats-py (asyncio)"
            args = ["--port", str(port)]
            me = [sys.executable, "-m", __name__]
            gobin = build_natsperf()
            url = f"nats://127.0.0.1:{port}"
            for size, n in ((100, sizes.peer_records_100), (1024, sizes.peer_records_1k)):  # type: ignore[attr-defined]
                key = f"bench{size}"
                subprocess.run([*me, "create", *args, "--key", key], check=True, timeout=60, capture_output=True)
                if workloads & {"produce", "consume"}:
                    if gobin is not None:
                        cmds = [[str(gobin), "produce", "-url", url, "-stream", key, "-n", str(n), "-s", str(size)]]
                        who = "natsperf (Go, nats.go 1.22), 1 process"
                    else:
                        share = n // PRODUCERS
                        n = share * PRODUCERS
                        cmds = [[*me, "produce", *args, "--key", key, "-n", str(share), "-s", str(size)]
                                for _ in range(PRODUCERS)]
                        who = f"{name}, {PRODUCERS} processes"
                    rows.append(command_row(proc, system, "produce", cmds, size, who, acks="JetStream ack",
                                            note="PublishAsync, max 4,096 pending; file storage; one subject"))
                if "consume" in workloads:
                    if gobin is not None:
                        cmd = [str(gobin), "consume", "-url", url, "-stream", key, "-n", str(n)]
                        who = "natsperf (Go, nats.go 1.22)"
                    else:
                        cmd, who = [*me, "consume", *args, "--key", key, "-n", str(n)], name
                    rows.append(command_row(proc, system, "consume", [cmd], size, who,
                                            note="pull consumer, batches of 1,000, from the start"))
            if "latency" in workloads:
                for rate in sizes.latency_rates:  # type: ignore[attr-defined]
                    subprocess.run([*me, "create", *args, "--key", f"lat{rate}"], check=True, timeout=60, capture_output=True)
                rows += latency_rows(proc, system, __name__, args, sizes.latency_rates,  # type: ignore[attr-defined]
                                     sizes.latency_seconds, name, "publish_async paced; push consumer",  # type: ignore[attr-defined]
                                     acks="JetStream ack")
        finally:
            server.stop()
    return rows


# --- the client side ------------------------------------------------------------------------


async def _connect(port: int):  # noqa: ANN202
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{port}", pending_size=256 * 1024 * 1024)
    return nc, nc.jetstream(publish_async_max_pending=10_000)


async def create(a: argparse.Namespace) -> dict:
    from nats.js.api import StorageType, StreamConfig

    nc, js = await _connect(a.port)
    await js.add_stream(StreamConfig(name=a.key, subjects=[a.key], storage=StorageType.FILE))
    await nc.close()
    return {"records": 0, "seconds": 0}


async def produce(a: argparse.Namespace) -> dict:
    nc, js = await _connect(a.port)
    payload = b"x" * a.s
    futures = []
    t0 = time.monotonic()
    for _ in range(a.n):
        futures.append(await js.publish_async(a.key, payload))
    await asyncio.wait_for(js.publish_async_completed(), a.d)
    elapsed = time.monotonic() - t0
    errors = sum(1 for f in futures if f.exception() is not None)
    await nc.close()
    return {"records": a.n - errors, "seconds": elapsed, "error": f"{errors} failed" if errors else ""}


async def consume(a: argparse.Namespace) -> dict:
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc, js = await _connect(a.port)
    sub = await js.pull_subscribe(a.key, config=ConsumerConfig(ack_policy=AckPolicy.NONE,
                                                               deliver_policy=DeliverPolicy.ALL))
    got = 0
    t0 = time.monotonic()
    while got < a.n and time.monotonic() - t0 < a.d:
        try:
            msgs = await sub.fetch(1000, timeout=2)
        except NatsTimeout:
            continue
        got += len(msgs)
    elapsed = time.monotonic() - t0
    await nc.close()
    return {"records": got, "seconds": elapsed, "timed_out": int(got < a.n)}


async def latency_consume(a: argparse.Namespace) -> dict:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from benchmarks.pyclient import latency_summary

    nc, js = await _connect(a.port)
    lat: list[int] = []
    done = asyncio.Event()

    async def on_msg(msg) -> None:  # noqa: ANN001
        lat.append(time.monotonic_ns() - STAMP.unpack_from(msg.data)[0])
        if len(lat) >= a.n:
            done.set()

    await js.subscribe(a.key, cb=on_msg, config=ConsumerConfig(ack_policy=AckPolicy.NONE,
                                                               deliver_policy=DeliverPolicy.NEW))
    Path(a.ready).touch()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), a.d)
    await nc.close()
    return latency_summary(lat, a.n)


async def latency_produce(a: argparse.Namespace) -> dict:
    from benchmarks.peers.common import paced_async

    nc, js = await _connect(a.port)
    pad = b"x" * 92
    t0 = time.monotonic()
    sent = 0
    async for due in paced_async(a.n, a.rate, a.d):
        for _ in range(due):
            await js.publish_async(a.key, STAMP.pack(time.monotonic_ns()) + pad)
        sent += due
    await asyncio.wait_for(js.publish_async_completed(), 30)
    elapsed = time.monotonic() - t0
    await nc.close()
    return {"records": sent, "seconds": elapsed, "rate": sent / elapsed}


def main() -> int:
    from benchmarks.peers.common import client_main

    return client_main({"create": create, "produce": produce, "consume": consume,
                        "latency-consume": latency_consume, "latency-produce": latency_produce})


if __name__ == "__main__":
    sys.exit(main())
