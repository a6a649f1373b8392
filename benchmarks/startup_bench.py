"""How fast strom starts: medians over N runs, each in a fresh Python process.

1. In-process: from ``strom.Broker()`` (before strom's server modules are imported) to the
   first successful produce-and-consume round trip with confluent-kafka (the client library
   is imported before the clock starts: it is the user's, not strom's).
2. ``strom serve`` (``python -m strom serve``): from the spawn to the port accepting
   connections, and to a Metadata request answered.

    python benchmarks/startup_bench.py [--runs 10]

Target (issue 6): under 0.5 s for the in-process case.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

IN_PROCESS = textwrap.dedent(
    """
    import json, time
    from confluent_kafka import Consumer, Producer, TopicPartition
    import strom
    t0 = time.perf_counter()
    broker = strom.Broker().start()
    t_started = time.perf_counter()
    p = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 0})
    p.produce("startup", b"hello")
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "startup-bench",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    c.assign([TopicPartition("startup", 0, 0)])
    while True:
        m = c.poll(0.01)
        if m is not None and m.error() is None:
            break
    t_round_trip = time.perf_counter()
    c.close()
    broker.stop()
    print(json.dumps({"started": t_started - t0, "round_trip": t_round_trip - t0}))
    """
)


def in_process_run() -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", IN_PROCESS], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metadata_v1_frame() -> bytes:
    # Metadata v1, header v1: api_key 3, version 1, correlation id 7, client id "bench";
    # body: topics = [] (none; v1 treats an empty array as "no topics").
    header = struct.pack(">hhih", 3, 1, 7, 5) + b"bench"
    body = struct.pack(">i", 0)
    return struct.pack(">i", len(header) + len(body)) + header + body


def serve_run() -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "strom", "serve", "--data-dir", str(Path(tmp) / "data"),
                   "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                    break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - t0 > 20:
                        raise RuntimeError("strom serve did not start") from None
                    time.sleep(0.002)
            t_open = time.perf_counter()
            with sock:
                sock.sendall(metadata_v1_frame())
                size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
                sock.recv(size, socket.MSG_WAITALL)
            t_metadata = time.perf_counter()
        finally:
            proc.terminate()
            proc.wait(15)
    return {"port_open": t_open - t0, "metadata": t_metadata - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name, value in {**in_process_run(), **serve_run()}.items():
            rows.setdefault(name, []).append(value)
    labels = {
        "started": "strom.Broker().start() returns (in-process)",
        "round_trip": "first produce + consume round trip (in-process)",
        "port_open": "strom serve: port open",
        "metadata": "strom serve: Metadata answered",
    }
    print(f"startup on {os.cpu_count()} cores, Python {sys.version.split()[0]}, median of {args.runs} runs\n")
    print("| measurement | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for name, label in labels.items():
        values = rows[name]
        print(f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
