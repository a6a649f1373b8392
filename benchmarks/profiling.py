"""py-spy profiles of the strom broker under load (``python -m benchmarks run --profile``).

While a workload runs, ``py-spy record --format raw`` samples the broker process (all threads,
with native frames off: Python frames, and time in C calls is charged to the Python line that
made them); the collapsed stacks are written next to the results and summarised here: the
share of samples per function as the innermost Python frame (self) and anywhere on the stack
(total). Workloads profiled: produce 100 B acks=all 1 partition, consume of that topic, and
end-to-end latency at 5,000 records/s (one small request at a time: per-request cost).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.brokers import KafkaBroker
from benchmarks.clients import KafkaClient
from benchmarks.model import Sizes
from benchmarks.workloads import consume, latency, log, produce


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _frame(raw: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (to/file.py)'; the event loop's own line is named."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    if name == "Runner.run" and short.endswith("runners.py"):
        return "event loop, native (uvloop: epoll, socket I/O, callbacks' C parts)"
    return f"{name} ({short})"


def summarise(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Self and total sample shares per function from py-spy's collapsed ('raw') output."""
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw = stack.split(";")
        frames = [_frame(f) for f in raw]
        samples += n
        self_c[frames[-1]] += n
        # inclusive time of strom's own functions below the entry points
        for f in {_frame(r) for r in raw if "(strom/" in r and "__main__" not in r and "cli/" not in r}:
            total_c[f] += n
    pct = (lambda c: round(100.0 * c / samples, 1) if samples else 0.0)  # noqa: E731
    return {
        "samples": samples,
        "self": [(f, pct(c)) for f, c in self_c.most_common(top)],
        "total": [(f, pct(c)) for f, c in total_c.most_common(top)],
    }


def _record(broker: KafkaBroker, path: Path, body: Any) -> dict[str, Any]:
    exe = py_spy()
    assert exe is not None
    spy = subprocess.Popen([exe, "record", "-p", str(broker.proc.pid), "-o", str(path), "--format", "raw",
                            "-r", "250", "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        time.sleep(1.0)  # py-spy attaches
        t0 = time.monotonic()
        body()
        busy = time.monotonic() - t0
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    summary = summarise(path) if path.exists() else {"error": (spy.stderr.read() or b"").decode()[-500:]}  # type: ignore[union-attr]
    summary["seconds"] = round(busy, 2)
    return summary


def profile_strom(broker: KafkaBroker, client: KafkaClient, sizes: Sizes, out: Path) -> dict[str, Any]:
    if py_spy() is None:
        log("py-spy not found (pip install py-spy): no profiles")
        return {}
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    records = sizes.produce_100 * 3
    time.sleep(5.0)  # let the suite's topic deletions (files removed in the background) finish
    broker.create_topic("profile", 1)
    result: dict[str, Any] = {}
    rows: dict[str, Any] = {}

    def do_produce() -> None:
        rows["produce"] = produce(broker, client, "profile", 100, "all", 1, records, sizes.producers)

    def do_consume() -> None:
        rows["consume"] = consume(broker, client, "profile", 100, 1, records)

    def do_latency() -> None:
        broker.create_topic("profile-lat", 1)
        rows["latency"] = latency(broker, "profile-lat", 5000, min(5.0, sizes.latency_seconds))

    for name, body in (("produce", do_produce), ("consume", do_consume), ("latency", do_latency)):
        path = out / f"{stamp}-profile-{name}.txt"
        result[name] = _record(broker, path, body)
        row = rows[name]
        result[name]["workload"] = (f"{row.records_per_s:,.0f} rec/s, broker CPU {row.broker_cpu_s:.2f}s"
                                    if name != "latency" else
                                    f"p99 {row.p99_ms:.2f} ms, broker CPU {row.broker_cpu_s:.2f}s")
        result[name]["file"] = str(path)
        log(f"profile {name}: {result[name]['workload']}")
        for f, p in result[name].get("self", [])[:12]:
            log(f"    self {p:5.1f}%  {f}")
    broker.delete_topic("profile")
    broker.delete_topic("profile-lat")
    return result
