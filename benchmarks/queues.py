"""Queues (KIP-932 share groups) and the two group protocols (``python -m benchmarks run --only
queues``), on one ``strom serve`` per part:

* share-group consumption: ``queue_records`` records of 100 B (each value starts with its index,
  8 bytes big-endian) are produced first into ONE partition by a confluent-kafka producer
  (linger.ms=5, ``batch.num.messages=500``: log batches of up to 500 records, ~55 kB). Then, on
  the same records, one classic ``Consumer`` in a fresh group (auto commit off, ``consume(500)``
  then an asynchronous commit per batch, a synchronous one at the end) and 1, 2 and 4
  ``ShareConsumer`` processes in a fresh share group each (``share.auto.offset.reset=earliest``,
  ``max.poll.records=500``, implicit acknowledgement: the records of a poll are accepted by the
  next poll, the last ones by ``commit_sync()``), the four configurations taking turns,
  ``queue_repeats`` times (the order reversed every other time). Timed from the first record any
  consumer got to the last consumer's final acknowledgement (commit). Every value is checked
  (each index received exactly once over all consumers), and for share groups the broker's
  share-partition start offset must be the partition's end (every record acknowledged). Broker
  CPU seconds (/proc, the process tree) from before the consumers start to after they are done,
  joins included, per million records; the ratios share / classic are taken within each
  repetition and the median reported.
  Why 500-record batches: a share fetch acquires whole log batches (as in Kafka), so with 1 MiB
  batches (~9,500 records) a fetch takes ~9,500 records whatever max.poll.records says, and a
  batch larger than group.share.partition.max.record.locks (2,000) leaves room for no other
  batch in flight: the consumers take turns instead of sharing the work.
* rebalance time: 10 members of one group on a 20-partition topic, each a confluent-kafka
  ``Consumer`` polling in its own thread (``poll(0.05)``, then ``assignment()``); then an 11th
  member subscribes, and later leaves (``close()``), each after a random wait of up to one
  heartbeat interval (the members' heartbeats keep the phase of the previous rebalance). Timed
  from the subscribe (the close) to the last assignment change any member saw, once every
  partition is held by exactly one member, every member holds one at least and nothing changed
  for ``QUIET_S``. Protocols (``Sizes.rebalance_protocols``): classic with ``range`` (librdkafka's
  default assignor; eager: every member gives up everything and rejoins), classic with
  ``cooperative-sticky`` (incremental, two rounds for a join), both with librdkafka's default
  session.timeout.ms (45000) and heartbeat.interval.ms (3000); and ``group.protocol=consumer``
  (KIP-848, the broker's default ``uniform`` assignor) with the broker's
  ``group.consumer.heartbeat.interval.ms=500`` (``group.consumer.min.heartbeat.interval.ms=100``
  allows it) and default session timeout (45000). The broker's
  ``group.initial.rebalance.delay.ms=500`` shortens the forming of the classic groups (not timed).
  The median over ``rebalance_repeats`` joins and leaves of the same group.

The consumer workers run as ``multiprocessing`` processes (spawn), so the share consumers really
run in parallel; each reports its own CPU seconds (getrusage).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import queue
import random
import resource
import statistics
import struct
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.brokers import KafkaBroker, StromBroker
from benchmarks.model import CONSUMER_CONF, Sizes
from benchmarks.workloads import log

RECORD_SIZE = 100
INDEX = struct.Struct(">Q")
MAX_POLL_RECORDS = 500
SHARE_CONSUMERS = (1, 2, 4)
# the pre-produced records: librdkafka batching as the produce rows (model.PRODUCER_CONF) but
# for log batches of max.poll.records records (a share fetch acquires whole log batches)
PRODUCE_CONF = {"linger.ms": 5, "batch.size": 1 << 20, "batch.num.messages": MAX_POLL_RECORDS, "message.max.bytes": 2 << 20,
                "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 2097151,
                "compression.type": "none", "acks": "all"}
WORKER_TIMEOUT = 240.0
# The classic consumer: a deep prefetch queue as the consume rows (model.CONSUMER_CONF), and
# fetch.queue.backoff.ms=10: librdkafka waits 1000 ms (its default) before fetching again once its
# queue holds queued.min.messages (100,000) records, which a consumer draining 500 at a time
# meets every ~0.1 s, so without it the classic runs stall for 0.5-1 s at random (half of them).
CLASSIC_CONF = {**CONSUMER_CONF, "fetch.queue.backoff.ms": "10"}
# the classic consumer's group join is not timed: no 3 s wait for more members before it
SHARE_PART_BROKER = {"group.initial.rebalance.delay.ms": "0"}

REBALANCE_MEMBERS = 10
REBALANCE_PARTITIONS = 20
POLL_S = 0.05
QUIET_S = 1.5  # no assignment change for this long after the condition holds: settled
CONSUMER_PROTOCOL_BROKER = {"group.consumer.min.heartbeat.interval.ms": "100", "group.initial.rebalance.delay.ms": "500",
                            "group.consumer.heartbeat.interval.ms": "500"}
# Sizes.rebalance_protocols names them: (row label, consumer settings)
PROTOCOLS: dict[str, tuple[str, dict[str, str]]] = {
    "range": ("classic, range (eager)", {"partition.assignment.strategy": "range"}),
    "cooperative-sticky": ("classic, cooperative-sticky", {"partition.assignment.strategy": "cooperative-sticky"}),
    "consumer": ("consumer (KIP-848), uniform", {"group.protocol": "consumer"}),
}


# ---------------------------------------------------------------- share-group consumption


def produce_indexed(bootstrap: str, topic: str, records: int) -> float:
    """``records`` values of 100 B, value i starting with i; returns the seconds it took."""
    from confluent_kafka import Producer

    failed: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 3, **PRODUCE_CONF})
    pad = b"x" * (RECORD_SIZE - INDEX.size)
    started = time.monotonic()

    def report(err: Any, _msg: Any) -> None:
        if err is not None and len(failed) < 10:
            failed.append(str(err))

    for i in range(records):
        while True:
            try:
                producer.produce(topic, INDEX.pack(i) + pad, partition=0, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) or failed:
        raise RuntimeError(f"pre-produced records not delivered: {failed[:3]}")
    return time.monotonic() - started


def set_share_earliest(bootstrap: str, group: str) -> None:
    """Kafka's default share.auto.offset.reset is latest; these groups read from the start."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    resource_ = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource_])[resource_].result(30)


def consume_worker(kind: str, bootstrap: str, topic: str, group: str, total: int, counter: Any,
                   values_path: str, results: Any, extra: dict[str, Any] | None = None) -> None:
    """One consumer process: poll until ``counter`` (all workers' records) reaches ``total``,
    writing the 8-byte index of every record it got to ``values_path``; its figures go to
    ``results``."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {"values_path": values_path, "records": 0, "errors": [], "first": None}
    try:
        from confluent_kafka import Consumer, ShareConsumer

        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3, **(extra or {})}
        consumer: Any
        if kind == "share":
            consumer = ShareConsumer({**conf, "max.poll.records": MAX_POLL_RECORDS})
        else:
            consumer = Consumer({**CLASSIC_CONF, **conf, "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        out["subscribed"] = time.monotonic()
        deadline = out["subscribed"] + WORKER_TIMEOUT
        values: list[bytes] = []
        polls = 0
        while True:
            if kind == "share":
                batch = consumer.poll(0.1)
            else:
                batch = consumer.consume(MAX_POLL_RECORDS, 0.1)
            polled = time.monotonic()
            polls += 1
            got = 0
            for m in batch:
                if m.error() is None:
                    values.append(m.value()[:8])
                    got += 1
                elif len(out["errors"]) < 5:
                    out["errors"].append(str(m.error()))
            if got:
                if out["first"] is None:
                    out["first"] = polled
                if kind == "classic":
                    consumer.commit(asynchronous=True)
                with counter.get_lock():
                    counter.value += got
                    done = counter.value >= total
            else:
                done = counter.value >= total
            if done:
                break
            if time.monotonic() > deadline:
                out["errors"].append(f"timed out with {counter.value} of {total} records")
                break
        # the last records: implicit acknowledgement sends them with commit_sync (share), the
        # classic consumer commits its position
        if kind == "share":
            consumer.commit_sync()
        elif values:
            consumer.commit(asynchronous=False)
        out["end"] = time.monotonic()
        out["records"] = len(values)
        out["polls"] = polls
        Path(values_path).write_bytes(b"".join(values))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_s"] = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        consumer.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(out)


def share_group_offset(broker: KafkaBroker, group: str, topic: str) -> int | None:
    """The share group's start offset on partition 0 (DescribeShareGroupOffsets naming the
    topic: with no topic named, strom answers only for the topics its members subscribe to, and
    the group is empty by now)."""
    from strom.cli.wire import call
    from strom.protocol.api import ApiKey

    answer = call(broker.bootstrap, 30, {}, ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, 1, {"groups": [
        {"group_id": group, "topics": [{"topic_name": topic, "partitions": [0]}]}]}).groups[0]
    for t in answer.topics:
        for p in t.partitions:
            return int(p.start_offset) if p.start_offset >= 0 else None
    return None


def consume_run(broker: KafkaBroker, topic: str, records: int, kind: str, consumers: int,
                workdir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One configuration once: ``consumers`` processes in a fresh group, all records once."""
    ctx = mp.get_context("spawn")
    group = f"bench-{kind}-{consumers}-{uuid.uuid4().hex[:8]}"
    if kind == "share":
        set_share_earliest(broker.bootstrap, group)
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    paths = [str(workdir / f"{group}-{i}.bin") for i in range(consumers)]
    procs = [ctx.Process(target=consume_worker, args=(kind, broker.bootstrap, topic, group, records, counter,
                                                      path, results, extra), daemon=True) for path in paths]
    proc = broker.proc
    before = proc.sample()
    for p in procs:
        p.start()
    outs: list[dict[str, Any]] = []
    deadline = time.monotonic() + WORKER_TIMEOUT + 60
    try:
        while len(outs) < len(procs):
            try:
                outs.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} consumer processes failed (exit codes {dead}) or timed out") from None
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    after = proc.sample()
    errors = [e for o in outs for e in o["errors"]]
    firsts = [o["first"] for o in outs if o["first"] is not None]
    ends = [o["end"] for o in outs if o.get("end") is not None]
    seconds = max(ends) - min(firsts) if firsts and ends else math.nan
    # every value once
    blob = b"".join(Path(o["values_path"]).read_bytes() for o in outs if Path(o["values_path"]).exists())
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    indexes = [v for (v,) in INDEX.iter_unpack(blob)]
    unique = len(set(indexes))
    complete = unique == records and len(indexes) == records and (not indexes or max(indexes) < records)
    committed = share_group_offset(broker, group, topic) if kind == "share" else None
    if kind == "share" and committed != records:
        errors.append(f"share group committed offset {committed}, {records} expected")
    if not complete:
        errors.append(f"{len(indexes)} records received, {unique} distinct, {records} produced")
    return {"kind": kind, "consumers": consumers, "group": group, "records": len(indexes), "distinct": unique,
            "complete": complete, "committed_offset": committed, "seconds": seconds,
            "records_per_s": len(indexes) / seconds if seconds and seconds > 0 else math.nan,
            "broker_cpu_s": after.cpu_s - before.cpu_s, "broker_rss": after.rss,
            "broker_cpu_s_per_million": (after.cpu_s - before.cpu_s) / len(indexes) * 1e6 if indexes else math.nan,
            "client_cpu_s": sum(o.get("cpu_s", 0.0) for o in outs),
            "per_consumer": sorted((o["records"] for o in outs), reverse=True),
            "workers": [{"records": o["records"], "polls": o.get("polls", 0), "cpu_s": o.get("cpu_s"),
                         "first_after_s": o["first"] - min(firsts) if o["first"] is not None else None,
                         "joined_s": o["first"] - o["subscribed"] if o["first"] is not None else None,
                         "end_after_s": o["end"] - min(firsts) if o.get("end") and firsts else None} for o in outs],
            "polls": sum(o.get("polls", 0) for o in outs),
            "first_record_spread_s": max(firsts) - min(firsts) if firsts else math.nan,
            "join_s": min(firsts) - min(o["subscribed"] for o in outs if "subscribed" in o) if firsts else math.nan,
            "errors": errors}


# (name, kind, consumers, extra consumer settings); the first is the baseline of the ratios
CONFIGS: list[tuple[str, str, int, dict[str, Any]]] = [
    ("classic group, 1 Consumer", "classic", 1, {}),
    *((f"share group, {n} ShareConsumer{'s' if n > 1 else ''}", "share", n, {}) for n in SHARE_CONSUMERS),
]


def run_share(sizes: Sizes) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in CONFIGS}
    with StromBroker(overrides=dict(SHARE_PART_BROKER)) as broker, tempfile.TemporaryDirectory(prefix="bench-queues-") as tmp:
        topic = "queue"
        broker.create_topic(topic, 1)
        produced_s = produce_indexed(broker.bootstrap, topic, sizes.queue_records)
        log(f"{sizes.queue_records:,} records of 100 B produced in {produced_s:.1f}s")
        # warm up: the code paths of both group kinds, on a small topic
        broker.create_topic("queue-warmup", 1)
        produce_indexed(broker.bootstrap, "queue-warmup", 20_000)
        for kind in ("classic", "share"):
            consume_run(broker, "queue-warmup", 20_000, kind, 1, Path(tmp))
        broker.delete_topic("queue-warmup")
        for rep in range(sizes.queue_repeats):
            for name, kind, n, extra in CONFIGS if rep % 2 == 0 else CONFIGS[::-1]:
                run = consume_run(broker, topic, sizes.queue_records, kind, n, Path(tmp), extra)
                runs[name].append(run)
                log(f"{name}: {run['records_per_s']:,.0f} rec/s, "
                    f"{run['broker_cpu_s_per_million']:.2f} broker CPU s per M, per consumer {run['per_consumer']}, "
                    f"first records {run['first_record_spread_s']:.2f}s apart"
                    + (f"; ERRORS {run['errors'][:3]}" if run["errors"] else ""))
    medians: dict[str, dict[str, Any]] = {}
    for name, reps in runs.items():  # the repetition with the median rate, its CPU with it
        ordered = sorted(reps, key=lambda r: r["records_per_s"] if r["records_per_s"] == r["records_per_s"] else -1)
        medians[name] = {**ordered[len(ordered) // 2], "rates": [r["records_per_s"] for r in reps],
                         "cpu_per_million": [r["broker_cpu_s_per_million"] for r in reps],
                         "all_complete": all(r["complete"] and not r["errors"] for r in reps)}
    base = CONFIGS[0][0]
    ratios: dict[str, dict[str, Any]] = {}
    for name, *_ in CONFIGS[1:]:  # per repetition against the classic run of the same repetition
        rate = [s["records_per_s"] / c["records_per_s"] for s, c in zip(runs[name], runs[base], strict=True)]
        cpu = [s["broker_cpu_s_per_million"] / c["broker_cpu_s_per_million"]
               for s, c in zip(runs[name], runs[base], strict=True)]
        ratios[name] = {"rate": statistics.median(rate), "rates": rate, "cpu": statistics.median(cpu), "cpus": cpu}
    return {"runs": runs, "median": medians, "ratios": ratios, "produce_s": produced_s,
            "failed": [f"{name}: {e}" for name, reps in runs.items() for r in reps for e in r["errors"]]}


# ---------------------------------------------------------------- rebalance time


class Member:
    """One group member: a confluent-kafka Consumer used only by its own thread, which polls
    and notes every change of its assignment (monotonic time, partitions)."""

    def __init__(self, bootstrap: str, group: str, topic: str, conf: dict[str, str], name: str) -> None:
        self.conf = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                     "enable.auto.commit": "false", "log_level": "3", **conf}
        self.topic = topic
        self.assignment: frozenset[int] = frozenset()
        self.changes: list[tuple[float, frozenset[int]]] = []
        self.subscribed_at = 0.0
        self.closed_at = 0.0
        self.error = ""
        self._leave = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        try:
            consumer = Consumer(self.conf)
            self.subscribed_at = time.monotonic()
            consumer.subscribe([self.topic])
            self._ready.set()
            while not self._leave.is_set():
                consumer.poll(POLL_S)
                now = frozenset(tp.partition for tp in consumer.assignment())
                if now != self.assignment:
                    self.assignment = now
                    self.changes.append((time.monotonic(), now))
            self.closed_at = time.monotonic()
            consumer.close()
        except Exception as exc:  # noqa: BLE001 - the driver sees it
            self.error = f"{type(exc).__name__}: {exc}"
            self._ready.set()
        self.assignment = frozenset()

    def leave(self, wait: bool = True) -> None:
        self._leave.set()
        if wait:
            self._thread.join(60)

    def last_change(self) -> float:
        return self.changes[-1][0] if self.changes else 0.0


def settled(members: list[Member], partitions: int, since: float, timeout: float) -> float:
    """Wait until every partition is held by exactly one member, each member holds one at
    least, and no member's assignment changed for QUIET_S; the time of the last change after
    ``since`` (seconds after it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [m.assignment for m in members]
        balanced = all(held) and sum(map(len, held)) == partitions and frozenset().union(*held) == set(range(partitions))
        last = max(m.last_change() for m in members)
        if balanced and last > since and time.monotonic() - last >= QUIET_S:
            return last - since
        errors = [m.error for m in members if m.error]
        if errors:
            raise RuntimeError(f"group member failed: {errors[0]}")
        time.sleep(0.01)
    shape = sorted(len(m.assignment) for m in members)
    raise TimeoutError(f"the group did not settle within {timeout:.0f}s: assignment sizes {shape}")


def rebalance_protocol(broker: KafkaBroker, protocol: str, conf: dict[str, str], repeats: int) -> dict[str, Any]:
    topic = f"rebalance-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, REBALANCE_PARTITIONS)
    group = f"bench-rebalance-{uuid.uuid4().hex[:8]}"
    members: list[Member] = []
    joins: list[float] = []
    leaves: list[float] = []
    try:
        started = time.monotonic()
        members = [Member(broker.bootstrap, group, topic, conf, f"m{i}") for i in range(REBALANCE_MEMBERS)]
        settled(members, REBALANCE_PARTITIONS, started, 120)
        formed = time.monotonic() - started
        # the members' heartbeats keep the phase of the last rebalance: a join or leave at a fixed
        # time after it would always fall at the same point of their heartbeat interval
        jitter = random.Random(len(protocol))
        heartbeat_s = 0.5 if conf.get("group.protocol") == "consumer" else 3.0
        for rep in range(repeats):
            time.sleep(jitter.uniform(0, heartbeat_s))
            extra = Member(broker.bootstrap, group, topic, conf, f"extra{rep}")
            joins.append(settled([*members, extra], REBALANCE_PARTITIONS, extra.subscribed_at, 120))
            time.sleep(jitter.uniform(0, heartbeat_s))
            extra.leave()
            leaves.append(settled(members, REBALANCE_PARTITIONS, extra.closed_at, 120))
            log(f"{protocol}: 11th member joins in {joins[-1]:.2f}s, leaves in {leaves[-1]:.2f}s")
    finally:
        for m in members:  # all at once
            m.leave(wait=False)
        for m in members:
            m.leave()
        broker.delete_topic(topic)
    return {"protocol": protocol, "conf": conf, "heartbeat_s": heartbeat_s, "formed_s": formed, "join_s": statistics.median(joins),
            "leave_s": statistics.median(leaves), "joins": joins, "leaves": leaves}


def run_rebalance(sizes: Sizes) -> dict[str, Any]:
    results = []
    with StromBroker(overrides=dict(CONSUMER_PROTOCOL_BROKER)) as broker:
        for name in sizes.rebalance_protocols:
            protocol, conf = PROTOCOLS[name]
            results.append(rebalance_protocol(broker, protocol, conf, sizes.rebalance_repeats))
    return {"members": REBALANCE_MEMBERS, "partitions": REBALANCE_PARTITIONS, "broker": CONSUMER_PROTOCOL_BROKER,
            "quiet_s": QUIET_S, "poll_s": POLL_S, "protocols": results}


def run_queues_suite(sizes: Sizes, into: dict[str, Any]) -> dict[str, Any]:
    """Both parts; ``into`` is filled part by part (a failure keeps the part measured before)."""
    into["settings"] = {"records": sizes.queue_records, "record_size": RECORD_SIZE, "repeats": sizes.queue_repeats,
                        "max_poll_records": MAX_POLL_RECORDS, "share_consumers": list(SHARE_CONSUMERS),
                        "rebalance_repeats": sizes.rebalance_repeats,
                        "client": "confluent-kafka (Python) " + _client_version()}
    into["share"] = run_share(sizes)
    into["rebalance"] = run_rebalance(sizes)
    return into


def _client_version() -> str:
    from benchmarks.clients import librdkafka_version

    return f"librdkafka {librdkafka_version()}"


# ---------------------------------------------------------------- report


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None or v != v else format(v, fmt)


def markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    lines: list[str] = []
    share = data.get("share")
    if share:
        lines += [f"| {s['records']:,} x 100 B on 1 partition, max.poll.records={s['max_poll_records']} "
                  f"(median of {s['repeats']}) | records/s | / classic | broker CPU s per M records | / classic "
                  f"| records per consumer | each record once |", "|---|---|---|---|---|---|---|"]
        for name, m in share["median"].items():
            r = share["ratios"].get(name)
            how = " (commit per poll)" if m["kind"] == "classic" else " (implicit ack)"
            lines.append(f"| {name}{how} | {_f(m['records_per_s'], ',.0f')} | {_f(r['rate'], '.2f') + ' x' if r else '-'} "
                         f"| {_f(m['broker_cpu_s_per_million'], '.2f')} | {_f(r['cpu'], '.2f') + ' x' if r else '-'} "
                         f"| {' / '.join(f'{x:,}' for x in m['per_consumer'])} | {'yes' if m['all_complete'] else 'NO'} |")
    rebalance = data.get("rebalance")
    if rebalance:
        if lines:
            lines.append("")
        lines += [f"| rebalance: {rebalance['members']} members, {rebalance['partitions']} partitions "
                  f"(median of {len(rebalance['protocols'][0]['joins'])}) | heartbeat | an 11th member joins: s "
                  f"| it leaves: s | joins: range | leaves: range |", "|---|---|---|---|---|---|"]
        for p in rebalance["protocols"]:
            lines.append(f"| {p['protocol']} | {p['heartbeat_s'] * 1000:.0f} ms | {p['join_s']:.2f} | {p['leave_s']:.2f} "
                         f"| {min(p['joins']):.2f} to {max(p['joins']):.2f} | {min(p['leaves']):.2f} to {max(p['leaves']):.2f} |")
    return "\n".join(lines)
