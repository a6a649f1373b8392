"""Redis 7 Streams (Debian's redis-server), append-only file with ``appendfsync everysec``.

* produce: ``redis-benchmark`` (C, shipped with Redis) running ``XADD bench * v <value>``,
  8 connections, pipeline 64: the fastest client there is for it, one stream (= one partition);
* consume: redis-py with the hiredis parser, ``XRANGE`` 10,000 entries at a time from the start;
* latency: redis-py, one ``XADD`` per record at a fixed rate, the consumer blocked in ``XREAD``.

Durability differs from Kafka's acks: a reply means the entry is in memory and in the AOF
buffer, written and fsynced within a second. Run as a module, this file is its own client:
``python -m benchmarks.peers.redis consume|latency-consume|latency-produce ...``.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
import time
from pathlib import Path

STAMP = struct.Struct(">q")


def _version(binary: str) -> str:
    import subprocess

    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "?"


def run(client: object, sizes: object, workloads: set[str]) -> list:
    from benchmarks.brokers import ServerProcess, free_port, wait_port
    from benchmarks.clients import run_parallel
    from benchmarks.model import Row
    from benchmarks.peers import apt_install
    from benchmarks.peers.common import command_row, latency_rows
    from benchmarks.procstat import ProcTree

    apt_install(["redis-server", "redis-tools"], ["redis-server", "redis-benchmark"])
    import tempfile

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        port = free_port()
        server = ServerProcess(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                                "--protected-mode", "no", "--daemonize", "no"])
        try:
            wait_port(port, time.monotonic() + 30, server.proc)
            system = f"redis {_version('redis-server')}"
            proc = ProcTree(server.pid)
            time.sleep(0.5)
            idle = proc.sample()
            rows.append(Row(system=system, workload="idle", client="-", broker_rss=idle.rss,
                            broker_cpu_s=idle.cpu_s, note="RSS after start; CPU: start-up"))
            bench_client = "redis-benchmark (C), 8 connections, pipeline 64"
            py_client = "redis-py 5+ with hiredis"
            args = ["--port", str(port)]
            for size, n in ((100, sizes.peer_records_100), (1024, sizes.peer_records_1k)):  # type: ignore[attr-defined]
                key = f"bench{size}"
                if workloads & {"produce", "consume"}:
                    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(n), "-c", "8",
                           "-P", "64", "-q", "XADD", key, "*", "v", "x" * size]
                    before = proc.sample()
                    done = run_parallel([cmd], 600)[0]
                    after = proc.sample()
                    m = re.findall(r"([\d.]+) requests per second", done.stdout.replace("\r", "\n"))
                    rps = float(m[-1]) if m else 0.0
                    rows.append(Row(system=system, workload="produce", client=bench_client,
                                    record_size=size, acks="AOF everysec", partitions=1, records=n,
                                    bytes=n * size, seconds=n / rps if rps else 0.0,
                                    broker_cpu_s=after.cpu_s - before.cpu_s, client_cpu_s=done.cpu_s,
                                    broker_rss=after.rss, note="XADD; one stream"))
                    print(f"  {system}: produce {size}B: {rps:,.0f} rec/s", file=sys.stderr, flush=True)
                if "consume" in workloads:
                    rows.append(command_row(proc, system, "consume", [[sys.executable, "-m", __name__, "consume",
                                            *args, "--key", key, "-n", str(n)]], size, py_client,
                                            note="XRANGE 10,000 at a time from the start"))
            if "latency" in workloads:
                rows += latency_rows(proc, system, __name__, args, sizes.latency_rates,  # type: ignore[attr-defined]
                                     sizes.latency_seconds, py_client, "XADDs due pipelined, XREAD BLOCK",
                                     acks="AOF everysec")  # type: ignore[attr-defined]
        finally:
            server.stop()
    return rows


# --- the client side ------------------------------------------------------------------------


def _redis(port: int):  # noqa: ANN202
    import redis

    return redis.Redis(host="127.0.0.1", port=port)


def consume(a: argparse.Namespace) -> dict:
    r = _redis(a.port)
    got = nbytes = 0
    start = "-"
    t0 = time.monotonic()
    while got < a.n and time.monotonic() - t0 < a.d:
        entries = r.xrange(a.key, min=start, max="+", count=10000)
        if not entries:
            break
        for _id, fields in entries:
            nbytes += len(fields[b"v"])
        got += len(entries)
        start = "(" + entries[-1][0].decode()
    return {"records": got, "bytes": nbytes, "seconds": time.monotonic() - t0, "timed_out": int(got < a.n)}


def latency_consume(a: argparse.Namespace) -> dict:
    from benchmarks.pyclient import latency_summary

    r = _redis(a.port)
    last = "0-0"
    Path(a.ready).touch()
    lat: list[int] = []
    deadline = time.monotonic() + a.d
    while len(lat) < a.n and time.monotonic() < deadline:
        res = r.xread({a.key: last}, count=1000, block=100)
        now = time.monotonic_ns()
        for _stream, entries in res or ():
            for entry_id, fields in entries:
                lat.append(now - STAMP.unpack_from(fields[b"v"])[0])
                last = entry_id
    return latency_summary(lat, a.n)


def latency_produce(a: argparse.Namespace) -> dict:
    from benchmarks.peers.common import paced

    r = _redis(a.port)
    pad = b"x" * 92
    sent = 0
    t0 = time.monotonic()
    for k in paced(a.n, a.rate, a.d):
        pipe = r.pipeline(transaction=False)  # the records due now go in one round trip
        for _ in range(k):
            pipe.xadd(a.key, {"v": STAMP.pack(time.monotonic_ns()) + pad})
        pipe.execute()
        sent += k
    elapsed = time.monotonic() - t0
    return {"records": sent, "seconds": elapsed, "rate": sent / elapsed}


def main() -> int:
    from benchmarks.peers.common import client_main

    return client_main({"consume": consume, "latency-consume": latency_consume, "latency-produce": latency_produce})


if __name__ == "__main__":
    sys.exit(main())
