"""The Kafka workloads, run identically against every Kafka-protocol broker (strom, Tansu).

* produce: 100 B and 1 KiB records x acks=1 / acks=all x 1 / 6 partitions, batching producers
  (model.PRODUCER_CONF), each repeated ``Sizes.repeats`` times into a fresh topic (median kept);
* consume: the acks=all topic of each size and partition count read back from the beginning by
  a consumer in a fresh group;
* latency: end to end at fixed rates (5,000 and 20,000 records/s), 100 B, 1 partition;
* 1,000 partitions: produce round robin over all of them, fetch everything back, RSS after;
* idle: broker RSS right after start, before any load.

For every row the broker's CPU seconds (process tree, /proc) are read before and after the
client processes, and the clients' own CPU seconds come from the kernel when they are reaped.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.brokers import KafkaBroker
from benchmarks.clients import KafkaClient, kill_group, run_parallel, spawn, wait_all
from benchmarks.model import (
    CONSUMER_CONF,
    LATENCY_CONSUMER_CONF,
    LATENCY_PRODUCER_CONF,
    PRODUCER_CONF,
    Row,
    Sizes,
    median_row,
)
from benchmarks.procstat import ProcTree

CLIENT_TIMEOUT = 300.0


def log(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _x(conf: dict[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in conf.items():
        out += ["-X", f"{k}={v}"]
    return out


def measure(broker: KafkaBroker, body: Callable[[], object]) -> tuple[object, float, int]:
    proc = broker.proc
    before = proc.sample()
    result = body()
    after = proc.sample()
    return result, after.cpu_s - before.cpu_s, after.rss


def produce(broker: KafkaBroker, client: KafkaClient, topic: str, size: int, acks: str,
            partitions: int, records: int, producers: int, extra: dict[str, str] | None = None) -> Row:
    """``extra``: more client settings (security.protocol and the like)."""
    share = [records // producers + (1 if i < records % producers else 0) for i in range(producers)]
    conf = {**PRODUCER_CONF, "acks": acks, **(extra or {})}
    commands = []
    for n in share:
        where = ["-P", str(partitions)] if partitions > 1 else ["-p", "0"]
        commands.append(client.command("produce", ["-b", broker.bootstrap, "-t", topic, "-n", str(n),
                                                   "-s", str(size), *where, "-d", "240", *_x(conf)]))
    done, cpu, rss = measure(broker, lambda: run_parallel(commands, CLIENT_TIMEOUT))
    results = [d.json() for d in done]  # type: ignore[attr-defined]
    errors = [r["error"] for r in results if r.get("failed") or r.get("timed_out")]
    return Row(system=broker.name, workload="produce", client=client.name, record_size=size,
               acks=acks, partitions=partitions, records=sum(r["records"] for r in results),
               bytes=sum(r["bytes"] for r in results), seconds=max(r["seconds"] for r in results),
               broker_cpu_s=cpu, client_cpu_s=sum(d.cpu_s for d in done), broker_rss=rss,  # type: ignore[attr-defined]
               note=f"{producers} producer process(es)" + (f"; errors: {errors[0]}" if errors else ""))


def consume(broker: KafkaBroker, client: KafkaClient, topic: str, size: int, partitions: int,
            records: int, extra: dict[str, str] | None = None) -> Row:
    group = f"bench-{uuid.uuid4().hex[:10]}"
    command = client.command("consume", ["-b", broker.bootstrap, "-t", topic, "-n", str(records),
                                         "-g", group, "-d", "240", *_x({**CONSUMER_CONF, **(extra or {})})])
    done, cpu, rss = measure(broker, lambda: run_parallel([command], CLIENT_TIMEOUT))
    d = done[0]  # type: ignore[index]
    r = d.json()
    timed = r.get("timed_records", r["records"])
    return Row(system=broker.name, workload="consume", client=client.name, record_size=size,
               partitions=partitions, records=timed, bytes=timed * size, seconds=r["seconds"],
               broker_cpu_s=cpu, client_cpu_s=d.cpu_s, broker_rss=rss,
               note=f"fresh group, from the beginning; group join {r['join_s']:.2f}s not timed"
               + ("; TIMED OUT" if r.get("timed_out") else ""))


def run_latency(proc: ProcTree, system: str, cons_cmd: list[str], prod_cmd: list[str], ready: Path,
                rate: int, seconds: float, client: str, note: str = "") -> Row:
    """Start the consumer, wait for it to touch ``ready``, start the paced producer, collect."""

    def body() -> object:
        started = time.monotonic()
        consumer = spawn(cons_cmd)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if time.monotonic() > deadline or consumer.poll() is not None:
                    err = consumer.stderr.read().decode() if consumer.poll() is not None else ""  # type: ignore[union-attr]
                    raise RuntimeError(f"the latency consumer did not get ready {err[-1000:]}")
                time.sleep(0.01)
            producer = spawn(prod_cmd)
            return wait_all([consumer, producer], [cons_cmd, prod_cmd], started, seconds + 120)
        except BaseException:
            kill_group(consumer)
            raise

    before = proc.sample()
    done = body()
    after = proc.sample()
    res = done[0].json()  # type: ignore[index]
    sent = done[1].json()  # type: ignore[index]
    return Row(system=system, workload="latency", client=client, record_size=100, acks="all",
               partitions=1, records=res["records"], bytes=res["records"] * 100,
               seconds=sent["seconds"], rate=rate, broker_cpu_s=after.cpu_s - before.cpu_s,
               client_cpu_s=done[0].cpu_s + done[1].cpu_s, broker_rss=after.rss,  # type: ignore[index]
               p50_ms=res["p50_ms"], p99_ms=res["p99_ms"], p999_ms=res["p999_ms"],
               note="; ".join(x for x in (f"offered {rate}/s, achieved {sent['rate']:.0f}/s", note) if x))


def latency(broker: KafkaBroker, topic: str, rate: int, seconds: float, linger_ms: int = 0) -> Row:
    records = int(rate * seconds)
    py = [sys.executable, "-m", "benchmarks.pyclient"]
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        cons_cmd = [*py, "latency-consume", "-b", broker.bootstrap, "-t", topic, "-n", str(records),
                    "-d", str(seconds + 60), "--ready", str(ready), *_x(LATENCY_CONSUMER_CONF)]
        prod_cmd = [*py, "latency-produce", "-b", broker.bootstrap, "-t", topic, "-n", str(records),
                    "-s", "100", "--rate", str(rate), "-d", str(seconds + 30),
                    *_x({**LATENCY_PRODUCER_CONF, "linger.ms": str(linger_ms)})]
        row = run_latency(broker.proc, broker.name, cons_cmd, prod_cmd, ready, rate, seconds,
                          "confluent-kafka (Python)")
        row.linger_ms = linger_ms
        return row


def run_kafka_suite(brokers: list[KafkaBroker], client: KafkaClient, sizes: Sizes,
                    only: set[str] | None = None) -> list[Row]:
    """Every workload against every broker, the brokers taking turns repetition by repetition
    (strom, Tansu, strom, Tansu, ...), so a burst of other work on the machine hits both alike.
    Rows come back grouped by broker, in workload order."""
    rows: dict[str, list[Row]] = {b.name: [] for b in brokers}

    def want(w: str) -> bool:
        return only is None or w in only

    time.sleep(1.0)
    for broker in brokers:
        idle = broker.proc.sample()
        rows[broker.name].append(Row(system=broker.name, workload="idle", client="-", broker_rss=idle.rss,
                                     broker_cpu_s=idle.cpu_s, note="RSS after start, before any load; CPU: start-up"))
        log(f"{broker.name}: idle RSS {idle.rss / 1e6:.1f} MB")
        # warm up: a topic, a produce and a consume (connections, code paths, page cache)
        broker.create_topic("warmup", 1)
        produce(broker, client, "warmup", 100, "all", 1, 50_000, 1)
        consume(broker, client, "warmup", 100, 1, 50_000)

    if want("produce") or want("consume"):
        for size, total in ((100, sizes.produce_100), (1024, sizes.produce_1k)):
            for partitions in (1, 6):
                kept: dict[str, str] = {}
                for acks in ("1", "all"):
                    reps: dict[str, list[Row]] = {b.name: [] for b in brokers}
                    for rep in range(sizes.repeats):
                        for broker in brokers:
                            topic = f"p{size}-{partitions}-{acks}-{rep}"
                            broker.create_topic(topic, partitions)
                            reps[broker.name].append(produce(broker, client, topic, size, acks, partitions,
                                                             total, sizes.producers))
                            if acks == "all" and rep == sizes.repeats - 1:
                                kept[broker.name] = topic
                            else:
                                broker.delete_topic(topic)
                    for broker in brokers:
                        row = median_row(reps[broker.name])
                        log(f"{broker.name}: produce {size}B acks={acks} p={partitions}: "
                            f"{row.records_per_s:,.0f} rec/s {row.mb_per_s:,.0f} MB/s "
                            f"broker {row.broker_cpu_s:.2f}s client {row.client_cpu_s:.2f}s")
                        if want("produce"):
                            rows[broker.name].append(row)
                if want("consume"):
                    reps = {b.name: [] for b in brokers}
                    for _ in range(sizes.repeats):
                        for broker in brokers:
                            reps[broker.name].append(consume(broker, client, kept[broker.name], size,
                                                             partitions, total))
                    for broker in brokers:
                        row = median_row(reps[broker.name])
                        log(f"{broker.name}: consume {size}B p={partitions}: {row.records_per_s:,.0f} rec/s "
                            f"{row.mb_per_s:,.0f} MB/s broker {row.broker_cpu_s:.2f}s "
                            f"client {row.client_cpu_s:.2f}s")
                        rows[broker.name].append(row)
                for broker in brokers:
                    broker.delete_topic(kept[broker.name])

    if want("latency"):
        for rate in sizes.latency_rates:
            for linger in sizes.latency_lingers:
                for broker in brokers:
                    topic = f"lat-{rate}-{linger}"
                    broker.create_topic(topic, 1)
                    row = latency(broker, topic, rate, sizes.latency_seconds, linger)
                    log(f"{broker.name}: latency at {rate}/s linger.ms={linger}: p50 {row.p50_ms:.2f} "
                        f"p99 {row.p99_ms:.2f} p99.9 {row.p999_ms:.2f} ms, broker CPU {row.broker_cpu_s:.2f}s")
                    rows[broker.name].append(row)
                    broker.delete_topic(topic)

    if want("partitions"):
        n = sizes.many_partitions
        topic = f"many-{n}"
        for broker in brokers:
            t0 = time.monotonic()
            broker.create_topic(topic, n, timeout=120)
            created = time.monotonic() - t0
            row = produce(broker, client, topic, 100, "all", n, sizes.many_records, sizes.producers)
            row.workload = f"produce-{n}p"
            row.note += f"; topic created in {created:.2f}s"
            rows[broker.name].append(row)
            log(f"{broker.name}: produce to {n} partitions: {row.records_per_s:,.0f} rec/s, "
                f"RSS {row.broker_rss / 1e6:.0f} MB")
            row = consume(broker, client, topic, 100, n, sizes.many_records)
            row.workload = f"consume-{n}p"
            rows[broker.name].append(row)
            log(f"{broker.name}: fetch from {n} partitions: {row.records_per_s:,.0f} rec/s, "
                f"RSS {row.broker_rss / 1e6:.0f} MB")
            broker.delete_topic(topic)
    return [r for b in brokers for r in rows[b.name]]
