"""RabbitMQ 3.10 streams (Debian's rabbitmq-server with the rabbitmq_stream plugin), publisher
confirms.

Client: rstream (asyncio, the stream protocol's Python client; RabbitMQ's own stream PerfTool is
Java and not packaged):
* produce: ``send_batch`` of 1,000 messages, every message confirmed by the server (confirms
  come once the stream's chunk is written), at most 50,000 unconfirmed, 2 producer processes;
  one stream (= one partition);
* consume: a subscription from the first offset;
* latency: paced ``send_batch`` of the records due, a subscription from the next offset.

The node runs from a temporary directory (its own HOME, Mnesia dir, logs, an epmd of its own on
a free port started first in the benchmark's process group), listening on 127.0.0.1 only.
Run as a module, this file is its own client: ``python -m benchmarks.peers.rabbitmq MODE ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

STAMP = struct.Struct(">q")
PRODUCERS = 2
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def run(client: object, sizes: object, workloads: set[str]) -> list:
    import tempfile

    from benchmarks.brokers import ServerProcess, free_port, wait_port
    from benchmarks.model import Row
    from benchmarks.peers import apt_install
    from benchmarks.peers.common import command_row, latency_rows
    from benchmarks.procstat import ProcTree

    apt_install(["rabbitmq-server"], [SERVER])
    version = next((p.name.split("-")[-1] for p in Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*")), "?")
    system = f"rabbitmq {version}"
    rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-rabbitmq-"))
    epmd = server = None
    try:
        amqp, stream, dist, epmd_port = free_port(), free_port(), free_port(), free_port()
        (tmp / "enabled_plugins").write_text("[rabbitmq_stream].\n")
        (tmp / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{amqp}\nstream.listeners.tcp.1 = 127.0.0.1:{stream}\n"
            "loopback_users = none\n")
        cookie = tmp / ".erlang.cookie"
        cookie.write_text("STROMBENCHMARKCOOKIE")
        cookie.chmod(0o400)
        env = {**os.environ, "HOME": str(tmp), "RABBITMQ_NODENAME": f"bench{amqp}@localhost",
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(amqp),
               "RABBITMQ_DIST_PORT": str(dist), "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
               "RABBITMQ_LOG_BASE": str(tmp / "log"), "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
               "RABBITMQ_PID_FILE": str(tmp / "pid"), "ERL_EPMD_ADDRESS": "127.0.0.1",
               "ERL_EPMD_PORT": str(epmd_port), "RABBITMQ_USE_LONGNAME": "false",
               "RABBITMQ_LOGS": "-"}
        epmd_bin = shutil.which("epmd") or next(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
        epmd = ServerProcess([str(epmd_bin), "-port", str(epmd_port), "-address", "127.0.0.1"], env=env)
        wait_port(epmd_port, time.monotonic() + 30, epmd.proc)
        server = ServerProcess([SERVER], env=env, cwd=str(tmp))
        wait_port(stream, time.monotonic() + 120, server.proc)
        proc = ProcTree(server.pid)
        time.sleep(1.0)
        idle = proc.sample()
        rows.append(Row(system=system, workload="idle", client="-", broker_rss=idle.rss,
                        broker_cpu_s=idle.cpu_s, note="RSS after start (Erlang VM); CPU: start-up"))
        name = "rstream (asyncio)"
        args = ["--port", str(stream)]
        me = [sys.executable, "-m", __name__]
        for size, n in ((100, sizes.peer_records_100), (1024, sizes.peer_records_1k)):  # type: ignore[attr-defined]
            key = f"bench{size}"
            subprocess.run([*me, "create", *args, "--key", key], check=True, timeout=60, capture_output=True)
            if workloads & {"produce", "consume"}:
                share = n // PRODUCERS
                rows.append(command_row(proc, system, "produce", [
                    [*me, "produce", *args, "--key", key, "-n", str(share), "-s", str(size)]
                    for _ in range(PRODUCERS)], size, f"{name}, {PRODUCERS} processes",
                    acks="publisher confirms", note="stream queue; send_batch of 1,000"))
                n = share * PRODUCERS
            if "consume" in workloads:
                rows.append(command_row(proc, system, "consume", [
                    [*me, "consume", *args, "--key", key, "-n", str(n)]], size, name,
                    note="subscription from the first offset"))
        if "latency" in workloads:
            for rate in sizes.latency_rates:  # type: ignore[attr-defined]
                subprocess.run([*me, "create", *args, "--key", f"lat{rate}"], check=True, timeout=60, capture_output=True)
            rows += latency_rows(proc, system, __name__, args, sizes.latency_rates,  # type: ignore[attr-defined]
                                 sizes.latency_seconds, name, "paced send_batch; subscription at next",  # type: ignore[attr-defined]
                                 acks="publisher confirms")
    finally:
        if server is not None:
            server.stop(30)
        if epmd is not None:
            epmd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# --- the client side ------------------------------------------------------------------------


def _producer(port: int):  # noqa: ANN202
    from rstream import Producer

    return Producer("127.0.0.1", port=port, username="guest", password="guest")


async def create(a: argparse.Namespace) -> dict:
    async with _producer(a.port) as producer:
        await producer.create_stream(a.key, exists_ok=True)
    return {"records": 0, "seconds": 0}


async def produce(a: argparse.Namespace) -> dict:
    confirmed = failed = 0
    done = asyncio.Event()

    def on_confirm(status) -> None:  # noqa: ANN001
        nonlocal confirmed, failed
        if status.is_confirmed:
            confirmed += 1
        else:
            failed += 1
        if confirmed + failed >= a.n:
            done.set()

    payload = b"x" * a.s
    batch = [payload] * 1000
    async with _producer(a.port) as producer:
        t0 = time.monotonic()
        sent = 0
        while sent < a.n and time.monotonic() - t0 < a.d:
            k = min(1000, a.n - sent)
            await producer.send_batch(a.key, batch[:k], on_publish_confirm=on_confirm)
            sent += k
            while sent - confirmed - failed > 50_000 and time.monotonic() - t0 < a.d:
                await asyncio.sleep(0.001)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(1.0, a.d - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
    return {"records": confirmed, "seconds": elapsed, "timed_out": int(confirmed + failed < a.n),
            "error": f"{failed} failed" if failed else ""}


async def _consume(a: argparse.Namespace, first: bool, on_message, ready: str = ""):  # noqa: ANN001, ANN202
    from rstream import Consumer, ConsumerOffsetSpecification, OffsetType

    consumer = Consumer("127.0.0.1", port=a.port, username="guest", password="guest")
    await consumer.start()
    spec = ConsumerOffsetSpecification(OffsetType.FIRST if first else OffsetType.NEXT, None)
    await consumer.subscribe(a.key, on_message, offset_specification=spec)
    if ready:
        Path(ready).touch()
    return consumer


async def consume(a: argparse.Namespace) -> dict:
    got = 0
    done = asyncio.Event()
    t0 = time.monotonic()

    async def on_message(msg, ctx) -> None:  # noqa: ANN001
        nonlocal got
        got += 1
        if got >= a.n:
            done.set()

    consumer = await _consume(a, True, on_message)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), a.d)
    elapsed = time.monotonic() - t0
    await consumer.close()
    return {"records": got, "seconds": elapsed, "timed_out": int(got < a.n)}


async def latency_consume(a: argparse.Namespace) -> dict:
    from benchmarks.pyclient import latency_summary

    lat: list[int] = []
    done = asyncio.Event()

    async def on_message(msg, ctx) -> None:  # noqa: ANN001
        lat.append(time.monotonic_ns() - STAMP.unpack_from(bytes(msg))[0])
        if len(lat) >= a.n:
            done.set()

    consumer = await _consume(a, False, on_message, a.ready)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), a.d)
    await consumer.close()
    return latency_summary(lat, a.n)


async def latency_produce(a: argparse.Namespace) -> dict:
    from benchmarks.peers.common import paced_async

    pad = b"x" * 92
    async with _producer(a.port) as producer:
        t0 = time.monotonic()
        sent = 0
        async for due in paced_async(a.n, a.rate, a.d):
            await producer.send_batch(a.key, [STAMP.pack(time.monotonic_ns()) + pad] * due)
            sent += due
        elapsed = time.monotonic() - t0
    return {"records": sent, "seconds": elapsed, "rate": sent / elapsed}


def main() -> int:
    from benchmarks.peers.common import client_main

    return client_main({"create": create, "produce": produce, "consume": consume,
                        "latency-consume": latency_consume, "latency-produce": latency_produce})


if __name__ == "__main__":
    sys.exit(main())
