"""Kafka load from Python with confluent-kafka (librdkafka): run as ``python -m benchmarks.pyclient``.

Modes ``produce`` and ``consume`` take rdkperf's options and print the same JSON (the fallback
when rdkperf cannot be compiled). ``latency-consume`` and ``latency-produce`` are the two halves
of the end-to-end latency workload: the producer sends at a fixed rate, each record carrying the
CLOCK_MONOTONIC time it was handed to the client (the clock is one for all processes), and the
consumer, already positioned at the end of the partition, records arrival minus that time.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

STAMP = struct.Struct(">q")


def _conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for kv in pairs:
        key, _, value = kv.partition("=")
        conf[key] = value
    return conf


def produce(a: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    delivered = failed = 0
    first_error = ""
    last = 0.0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered, failed, first_error, last
        if err is None:
            delivered += 1
        else:
            failed += 1
            first_error = first_error or str(err)
        last = time.monotonic()

    p = Producer({"bootstrap.servers": a.b, **_conf(a.X)})
    payload = bytes(97 + i % 26 for i in range(a.s))
    deadline = time.monotonic() + a.d
    timed_out = False
    t0 = time.monotonic()
    produce_ = p.produce
    sent = 0
    while sent < a.n:
        part = sent % a.P if a.P > 0 else a.p
        try:
            if part >= 0:
                produce_(a.t, payload, partition=part, on_delivery=on_delivery)
            else:
                produce_(a.t, payload, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.001)
            if time.monotonic() > deadline:
                timed_out = True
                break
            continue
        sent += 1
        if sent & 1023 == 0:
            p.poll(0)
            if time.monotonic() > deadline:
                timed_out = True
                break
    while delivered + failed < sent and time.monotonic() < deadline:
        p.poll(0.005)
    timed_out = timed_out or delivered + failed < sent
    print(json.dumps({"mode": "produce", "records": delivered, "failed": failed,
                      "bytes": delivered * a.s, "seconds": (last or time.monotonic()) - t0,
                      "timed_out": int(timed_out), "error": first_error}), flush=True)
    return 1 if failed or timed_out else 0


def consume(a: argparse.Namespace) -> int:
    from confluent_kafka import Consumer

    t_start = time.monotonic()
    # Python drains the local queue more slowly than librdkafka fills it; past queued.min.messages
    # librdkafka would pause fetching for fetch.queue.backoff.ms (1 s by default): keep it short.
    c = Consumer({"bootstrap.servers": a.b, "group.id": a.g, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.queue.backoff.ms": 10, **_conf(a.X)})
    c.subscribe([a.t])
    deadline = t_start + a.d
    got = nbytes = errors = in_first = 0
    first = last = 0.0
    timed_out = False
    while got < a.n:
        msgs = c.consume(10000, 0.1)
        t = time.monotonic()
        for m in msgs:
            if m.error() is not None:
                errors += 1
                continue
            if not got:
                first = t
            if first == t:
                in_first += 1
            got += 1
            nbytes += len(m.value() or b"")
        if msgs:
            last = t
        if t > deadline:
            timed_out = True
            break
    print(json.dumps({"mode": "consume", "records": got, "bytes": nbytes, "seconds": last - first,
                      "join_s": first - t_start if first else 0.0, "timed_records": got - in_first,
                      "errors": errors, "timed_out": int(timed_out)}), flush=True)
    c.close()
    return 1 if timed_out else 0


def latency_summary(lat: list[int], wanted: int) -> dict[str, Any]:
    """Percentiles (ms) of latencies in ns, the first 5% (warm-up) left out."""
    skip = len(lat) // 20
    kept = sorted(lat[skip:])

    def pct(q: float) -> float:
        return kept[min(len(kept) - 1, int(q * len(kept)))] / 1e6 if kept else float("nan")

    return {"mode": "latency", "records": len(lat), "kept": len(kept), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": kept[-1] / 1e6 if kept else float("nan"),
            "timed_out": int(len(lat) < wanted)}


def latency_consume(a: argparse.Namespace) -> int:
    """Wait at the end of partition 0 for ``-n`` records; print latency percentiles."""
    from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": a.b, "group.id": f"lat-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True, **_conf(a.X)})
    c.assign([TopicPartition(a.t, 0, OFFSET_END)])
    deadline = time.monotonic() + a.d
    ready = False
    lat: list[int] = []
    while len(lat) < a.n and time.monotonic() < deadline:
        m = c.poll(0.05)
        if m is None:
            continue
        now = time.monotonic_ns()
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF and not ready:
                ready = True
                Path(a.ready).touch()
            continue
        lat.append(now - STAMP.unpack_from(m.value())[0])
    c.close()
    print(json.dumps(latency_summary(lat, a.n)), flush=True)
    return 0 if len(lat) >= a.n else 1


def latency_produce(a: argparse.Namespace) -> int:
    """Send ``-n`` records to partition 0 at ``--rate`` records/s, each stamped with its send time."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": a.b, **_conf(a.X)})
    pad = b"x" * max(0, a.s - STAMP.size)
    interval = 1.0 / a.rate
    t0 = time.monotonic()
    deadline = t0 + a.d
    sent = 0
    while sent < a.n:
        now = time.monotonic()
        if now > deadline:
            break
        due = min(a.n, int((now - t0) / interval) + 1)
        while sent < due:
            try:
                p.produce(a.t, STAMP.pack(time.monotonic_ns()) + pad, partition=0)
            except BufferError:
                break
            sent += 1
        p.poll(0)
        next_at = t0 + sent * interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.001))
    p.flush(10)
    elapsed = time.monotonic() - t0
    print(json.dumps({"mode": "latency-produce", "records": sent, "seconds": elapsed,
                      "rate": sent / elapsed if elapsed else 0.0}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pyclient")
    parser.add_argument("mode", choices=["produce", "consume", "latency-consume", "latency-produce"])
    parser.add_argument("-b", default="127.0.0.1:9092")
    parser.add_argument("-t", required=True)
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("-s", type=int, default=100)
    parser.add_argument("-P", type=int, default=0)
    parser.add_argument("-p", type=int, default=-1)
    parser.add_argument("-g", default="pyclient")
    parser.add_argument("-d", type=float, default=120.0)
    parser.add_argument("-X", action="append", default=[])
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--ready", default="")
    a = parser.parse_args(argv)
    return {"produce": produce, "consume": consume, "latency-consume": latency_consume,
            "latency-produce": latency_produce}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
