"""Rows for the non-Kafka peers: their clients print the same JSON as benchmarks.pyclient."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.clients import run_parallel
from benchmarks.model import Row
from benchmarks.procstat import ProcTree
from benchmarks.workloads import log, run_latency

TIMEOUT = 300.0


def command_row(proc: ProcTree, system: str, workload: str, commands: list[list[str]], size: int,
                client: str, acks: str = "", note: str = "", records_key: str = "records") -> Row:
    before = proc.sample()
    done = run_parallel(commands, TIMEOUT)
    after = proc.sample()
    results = [d.json() for d in done]
    records = sum(r[records_key] for r in results)
    row = Row(system=system, workload=workload, client=client, record_size=size, acks=acks, partitions=1,
              records=records, bytes=records * size, seconds=max(r["seconds"] for r in results),
              broker_cpu_s=after.cpu_s - before.cpu_s, client_cpu_s=sum(d.cpu_s for d in done),
              broker_rss=after.rss, note=note)
    failed = [r.get("error") for r in results if r.get("error") or r.get("timed_out")]
    if failed:
        row.note += f"; errors: {failed[0]}"
    log(f"{system}: {workload} {size}B: {row.records_per_s:,.0f} rec/s {row.mb_per_s:,.0f} MB/s "
        f"broker {row.broker_cpu_s:.2f}s client {row.client_cpu_s:.2f}s")
    return row


def latency_rows(proc: ProcTree, system: str, module: str, args: list[str], rates: tuple[int, ...],
                 seconds: float, client: str, note: str = "", acks: str = "") -> list[Row]:
    rows = []
    for rate in rates:
        n = int(rate * seconds)
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "ready"
            key = ["--key", f"lat{rate}"]
            cons = [sys.executable, "-m", module, "latency-consume", *args, *key, "-n", str(n),
                    "--ready", str(ready), "-d", str(seconds + 60)]
            prod = [sys.executable, "-m", module, "latency-produce", *args, *key, "-n", str(n),
                    "--rate", str(rate), "-d", str(seconds + 30)]
            row = run_latency(proc, system, cons, prod, ready, rate, seconds, client, note)
            row.acks = acks or row.acks
        log(f"{system}: latency at {rate}/s: p50 {row.p50_ms:.2f} p99 {row.p99_ms:.2f} "
            f"p99.9 {row.p999_ms:.2f} ms")
        rows.append(row)
    return rows


class Pacer:
    """A fixed rate schedule: how many of ``n`` records are due now, and how long to wait
    before the next, until all were due or ``deadline_s`` passed."""

    def __init__(self, n: int, rate: float, deadline_s: float) -> None:
        self.n, self.rate, self.deadline_s = n, rate, deadline_s
        self.t0 = time.monotonic()
        self.sent = 0

    def running(self) -> bool:
        return self.sent < self.n and time.monotonic() - self.t0 < self.deadline_s

    def take(self) -> int:
        due = min(self.n, int((time.monotonic() - self.t0) * self.rate) + 1)
        taken, self.sent = due - self.sent, due  # due never falls: the clock is monotonic
        return taken

    def pause(self) -> float:
        return max(0.0, min(self.t0 + self.sent / self.rate - time.monotonic(), 0.001))


def paced(n: int, rate: float, deadline_s: float) -> Iterator[int]:
    """Yield how many records are due now, keeping ``rate`` records/s, until ``n`` were yielded."""
    pacer = Pacer(n, rate, deadline_s)
    while pacer.running():
        if taken := pacer.take():
            yield taken
        time.sleep(pacer.pause())


async def paced_async(n: int, rate: float, deadline_s: float) -> AsyncIterator[int]:
    """``paced`` for asyncio clients: the wait lets the client's own tasks run."""
    pacer = Pacer(n, rate, deadline_s)
    while pacer.running():
        if taken := pacer.take():
            yield taken
        await asyncio.sleep(pacer.pause())


def client_main(modes: dict[str, Callable[[argparse.Namespace], Any]]) -> int:
    """A peer's client process: ``MODE --port P [--key K] [-n N] [-s SIZE] [-d SECONDS] [--rate R]
    [--ready FILE]``; the mode's result (a dict, or a coroutine giving one) is printed as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=list(modes))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", default="bench")
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("-s", type=int, default=100)
    p.add_argument("-d", type=float, default=120.0)
    p.add_argument("--rate", type=float, default=5000)
    p.add_argument("--ready", default="")
    a = p.parse_args()
    result = modes[a.mode](a)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    print(json.dumps(result), flush=True)
    return 0
