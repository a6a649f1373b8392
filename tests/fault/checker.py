"""A Jepsen-style checker for strom's cluster mode, its load generator, and cluster probes.

Shared by the fault tests (tests/fault/test_cluster_faults.py) and the long run
(``python -m benchmarks.fault_soak``).

``Load``: one confluent-kafka producer (``acks=all``, ``enable.idempotence=true``) in a thread
of its own, sending unique values ``<run>-<seq>`` round-robin over a topic's partitions at a
bounded rate until told to stop (or until ``max_records`` / ``max_seconds``). Its delivery
callback records every *acknowledged* record's partition and offset, and counts the failed ones
by error name. A fatal producer error (librdkafka's idempotence gives up) is recorded and the
load goes on with a new producer under a new run id, as an application would. Loopback only:
it talks to the cluster it is given.

confluent-kafka (2.x) raises a fatal error from ``poll``/``flush`` by leaving the exception set
while the rest of that poll's callbacks run, so any C call in a delivery callback may fail
after doing its work: a lock acquired there stays held forever. The delivery callback
therefore takes no lock; it appends to a deque that readers drain under the lock. On Python
3.11 what a fatal poll raises may even be a ``KafkaError``, which is no exception class: the
load catches whatever it raises.

``read_log``: every partition read from its log start to its high watermark by a plain
consumer (assign, read_uncommitted, no group membership).

``check``: the history checks. Every acknowledged value must be found at its acknowledged
partition and offset (else *lost*, or *inconsistent offset* when it is elsewhere); no value may
appear twice (*duplicate*; idempotence makes retries safe); per partition the values of one
producer run must appear in increasing sequence order (*reorder*). A record acknowledged
without an offset (librdkafka reports some retried batches so) is checked for presence only.
Records that failed or were never reported may be there or not (``unacked_present``).

``compare_replicas``: after a clean stop (every broker writes ``replication-offset-checkpoint``),
every replica's batches below its checkpointed high watermark must be byte-identical to the
replica with the highest one (a follower appends the leader's batches verbatim, so they are).
It parses the segment files itself (``<data>/broker-<id>/<topic>-<p>/<20-digit base>.log``:
``base_offset`` int64, ``batch_length`` int32, ..., ``last_offset_delta`` int32 at byte 23),
independently of strom's log code.

``Report`` gathers the counts; ``Report.ok`` is the verdict, ``Report.summary()`` one line of
figures and ``Report.problems()`` the examples.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from strom.log.checkpoint import REPLICATION_OFFSET_CHECKPOINT, read_offsets

T = TypeVar("T")

# librdkafka logs every refused connection to a killed broker: the checker's clients keep quiet.
QUIET = logging.getLogger("tests.fault.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
QUIET.setLevel(logging.CRITICAL + 1)

# Broker settings that make failures play out in seconds: a killed broker's lease expires after
# 2 s, a stalled follower leaves the ISR after 3 s, a follower retries its leader every 0.2 s.
FAST_FAILOVER = {
    "broker.session.timeout.ms": 2000,
    "replica.lag.time.max.ms": 3000,
    "replica.fetch.backoff.ms": 200,
    "replica.fetch.wait.max.ms": 200,
    "offsets.topic.num.partitions": 3,
    "transaction.state.log.num.partitions": 3,
    "group.initial.rebalance.delay.ms": 0,
    "log.flush.offset.checkpoint.interval.ms": 1000,
}

# The load's producer: retries are safe (idempotence); a stalled connection is given up after
# a few seconds so that the partition's queue moves to the new leader.
PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "retry.backoff.ms": 100,
    "retry.backoff.max.ms": 500,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
    "socket.connection.setup.timeout.ms": 2000,
    "request.timeout.ms": 5000,
    "socket.timeout.ms": 6000,
    "message.timeout.ms": 60000,
    "topic.metadata.refresh.interval.ms": 1000,
}


def wait_until(probe: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = 0.05) -> T:
    """``probe()``'s first value other than None and False (so a node id 0 counts), polled
    every ``interval`` s; TimeoutError naming ``what`` (or what it returns) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f}s: {what if isinstance(what, str) else what()}")
        time.sleep(interval)


# --- the load --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    partition: int
    offset: int
    seq: int
    at: float  # time.monotonic() of the delivery report


def _describe(raised: object) -> str:
    """A fatal producer error as text (a KafkaException, a SystemError, or a bare KafkaError)."""
    return str(raised) or type(raised).__name__


class Load:
    """An acks=all idempotent producer of unique values in a thread (see the module docstring).

    Fields after ``stop()``: ``acked`` (value -> Ack), ``failed`` (error name -> count),
    ``sent`` (records handed to the producer), ``fatal`` (fatal producer errors: after one,
    the load goes on with a new producer, so a new producer id, under a new run id)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        rate: float = 300.0,
        max_records: int | None = None,
        max_seconds: float = 600.0,
        run: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.run = run or uuid.uuid4().hex[:8]
        self.config = {**PRODUCER_CONFIG, **(config or {})}
        self.runs = [self.run]  # a new run id per producer (after a fatal error)
        self.acked: dict[str, Ack] = {}
        self.failed: Counter[str] = Counter()
        self.failed_values: set[str] = set()
        self.sent = 0
        self.fatal: list[str] = []  # fatal producer errors (each replaced the producer)
        self.unflushed = 0
        self._lock = threading.Lock()  # over the fields above; never taken in a callback
        self._reports: deque[tuple[Any, Any, float]] = deque()  # (error, message, when), see _collect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._producer: Any = None

    # --- what tests look at ----------------------------------------------------------------------

    def acked_count(self) -> int:
        with self._lock:
            self._collect()
            return len(self.acked)

    def acked_since(self, moment: float) -> int:
        with self._lock:
            self._collect()
            return sum(1 for ack in self.acked.values() if ack.at >= moment)

    def wait_acked(self, count: int, timeout: float = 20.0, since: float | None = None) -> None:
        """Until ``count`` more records (than now, or than at ``since``) are acknowledged."""
        base = self.acked_count() if since is None else 0

        def probe() -> bool:
            got = self.acked_since(since) if since is not None else self.acked_count() - base
            return got >= count

        wait_until(probe, timeout, lambda: f"{count} records acknowledged ({self.summary()})")

    def max_acked_offsets(self, before: float | None = None) -> dict[int, int]:
        """The highest acknowledged offset per partition (of acks before ``before``)."""
        with self._lock:
            self._collect()
            acks = list(self.acked.values())
        top: dict[int, int] = {}
        for ack in acks:
            if before is None or ack.at < before:
                top[ack.partition] = max(top.get(ack.partition, -1), ack.offset)
        return top

    def summary(self) -> str:
        with self._lock:
            self._collect()
            failed = ", ".join(f"{k} {v}" for k, v in self.failed.most_common()) or "none"
            return f"sent {self.sent}, acknowledged {len(self.acked)}, failed: {failed}" + (
                f"; {len(self.fatal)} fatal producer error(s), the first: {self.fatal[0]}" if self.fatal else ""
            )

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Load:
        self._producer = self._new_producer()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"fault-load-{self.run}", daemon=True)
        self._thread.start()
        return self

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, "logger": QUIET, **self.config})

    def stop(self, flush_timeout: float = 30.0) -> Load:
        """Stop sending, wait up to ``flush_timeout`` s for the outstanding records' delivery
        reports, then give up the rest (purged: counted as failed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.max_seconds + flush_timeout + 10)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                remaining = producer.flush(flush_timeout)
                if remaining:
                    self.unflushed = remaining
                    producer.purge()
                    producer.flush(5.0)
            except:  # noqa: E722 - a fatal error, maybe not even an exception class (module docstring)
                with self._lock:
                    self.fatal.append(_describe(sys.exc_info()[1]))
        with self._lock:
            self._collect()
        return self

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_delivery(self, error: Any, message: Any) -> None:
        self._reports.append((error, message, time.monotonic()))  # atomic, no lock: see the module docstring

    def _collect(self) -> None:
        """Take in the delivery reports received so far (under ``_lock``)."""
        while self._reports:
            error, message, at = self._reports.popleft()
            value = message.value().decode()
            if error is None:
                seq = int(value.rsplit("-", 1)[1])
                offset = message.offset()
                self.acked[value] = Ack(message.partition(), -1 if offset is None else offset, seq, at)
            else:
                self.failed[error.name()] += 1
                self.failed_values.add(value)

    def _run(self) -> None:
        while True:
            try:
                self._send()
                return
            except:  # noqa: E722 - a fatal error, maybe not even an exception class (module docstring)
                fatal = _describe(sys.exc_info()[1])
            if not self._replace_producer(fatal):
                return

    def _replace_producer(self, fatal: str) -> bool:
        """After a fatal error: fail what the old producer holds, go on with a new one under a
        new run id (its sequence restarts its own order). False once told to stop."""
        old, self._producer = self._producer, None
        with self._lock:
            self.fatal.append(fatal)
        try:
            old.purge()
            old.flush(5.0)
        except:  # noqa: E722 - the same fatal error again
            pass
        if self._stop.is_set():
            return False
        with self._lock:
            self.run = f"{self.runs[0]}.{len(self.runs)}"
            self.runs.append(self.run)
        self._producer = self._new_producer()
        return True

    def _send(self) -> None:
        """Produce until told to stop (returns), or raise on a fatal error."""
        producer = self._producer
        interval = 1.0 / self.rate
        next_send = time.monotonic()
        deadline = self._started + self.max_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            seq = self.sent
            if now > deadline or (self.max_records is not None and seq >= self.max_records):
                break
            if now < next_send:
                producer.poll(min(next_send - now, 0.05))
                continue
            value = f"{self.run}-{seq}"
            try:
                producer.produce(self.topic, value=value.encode(), partition=seq % self.partitions,
                                 on_delivery=self._on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            with self._lock:
                self.sent = seq + 1
            next_send = max(next_send + interval, now - 1.0)  # no burst after a long stall
            producer.poll(0)


# --- reading the log back ---------------------------------------------------------------------


def read_log(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> dict[int, list[tuple[int, str]]]:
    """Every partition's (offset, value) pairs from its log start up to its high watermark."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"fault-checker-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_uncommitted",
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "logger": QUIET,
    })
    try:
        deadline = time.monotonic() + timeout
        high: dict[int, int] = {}
        for p in range(partitions):
            while True:
                try:
                    high[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5.0)[1]
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        records: dict[int, list[tuple[int, str]]] = {p: [] for p in range(partitions)}
        position = {p: -1 for p in range(partitions)}
        wanted = {p for p in range(partitions) if high[p] > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
        while wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic}: partitions {sorted(wanted)} not read up to their high watermark "
                    f"{ {p: high[p] for p in wanted} } (at { {p: position[p] for p in wanted} })"
                )
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                p = message.partition()
                records[p].append((message.offset(), message.value().decode()))
                position[p] = message.offset() + 1
            for p in [p for p in wanted if position[p] >= high[p]]:
                wanted.discard(p)
            if wanted:
                # Control batches and aborted data have offsets but no messages: the position
                # tells where the consumer really is.
                for tp in consumer.position([TopicPartition(topic, p) for p in wanted]):
                    if tp.offset >= high[tp.partition]:
                        wanted.discard(tp.partition)
        return records
    finally:
        consumer.close()


# --- the history checks -----------------------------------------------------------------------


@dataclass
class Report:
    """The checker's verdict. Counts; ``examples`` holds a few lines per kind of problem."""

    failures: Counter[str] = field(default_factory=Counter)  # injected, by kind
    acknowledged: int = 0
    failed: int = 0  # delivery reports with an error (not acknowledged: may or may not be there)
    records_read: int = 0
    unacked_present: int = 0  # failed or unreported records found in the log (allowed)
    lost: int = 0
    inconsistent: int = 0
    duplicates: int = 0
    reordered: int = 0
    replicas_compared: int = 0
    bytes_compared: int = 0
    replica_mismatches: int = 0
    acked_without_offset: int = 0  # delivery reports without an offset: checked for presence only
    producer_fatal: list[str] = field(default_factory=list)  # reported, not a verdict (see check)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not (self.lost or self.inconsistent or self.duplicates or self.reordered
                    or self.replica_mismatches)

    def note(self, kind: str, example: str, limit: int = 5) -> None:
        if len(self.examples[kind]) < limit:
            self.examples[kind].append(example)

    def merge(self, other: Report) -> None:
        for name in ("acknowledged", "failed", "records_read", "unacked_present", "lost", "inconsistent",
                     "duplicates", "reordered", "replicas_compared", "bytes_compared", "replica_mismatches",
                     "acked_without_offset"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)
        self.producer_fatal.extend(other.producer_fatal)
        for kind, lines in other.examples.items():
            for line in lines:
                self.note(kind, line)

    def summary(self) -> str:
        injected = sum(self.failures.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        return (
            f"failures injected {injected} ({kinds}); records acknowledged {self.acknowledged}, "
            f"failed {self.failed}, read {self.records_read}; lost {self.lost}, inconsistent offsets "
            f"{self.inconsistent}, duplicated {self.duplicates}, reordered {self.reordered}; "
            f"replicas compared {self.replicas_compared} ({self.bytes_compared} bytes), mismatches "
            f"{self.replica_mismatches}"
            + (f"; acknowledged without an offset {self.acked_without_offset}" if self.acked_without_offset else "")
            + (f"; producer fatal errors {len(self.producer_fatal)}" if self.producer_fatal else "")
        )

    def problems(self) -> str:
        lines = [self.summary()]
        for kind, examples in self.examples.items():
            lines.append(f"{kind}:")
            lines.extend(f"  {example}" for example in examples)
        return "\n".join(lines)


def _split(value: str) -> tuple[str, int] | None:
    run, sep, seq = value.rpartition("-")
    return (run, int(seq)) if sep and seq.isdigit() else None


def check(loads: Sequence[Load], log: Mapping[int, Sequence[tuple[int, str]]], report: Report | None = None) -> Report:
    """The history checks of the loads' acknowledgements against the log read back."""
    report = report if report is not None else Report()
    where: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for p, records in log.items():
        report.records_read += len(records)
        for offset, value in records:
            where[value].append((p, offset))
        last_seq: dict[str, tuple[int, int]] = {}
        for offset, value in records:
            parsed = _split(value)
            if parsed is None:
                continue
            run, seq = parsed
            previous = last_seq.get(run)
            if previous is not None and seq < previous[0]:
                report.reordered += 1
                report.note("reordered", f"partition {p}: {value} at offset {offset} after seq {previous[0]} at offset {previous[1]}")
            last_seq[run] = (seq, offset)
    for value, places in where.items():
        if len(places) > 1:
            report.duplicates += len(places) - 1
            report.note("duplicates", f"{value} at {places}")
    for load in loads:
        report.acknowledged += len(load.acked)
        report.failed += sum(load.failed.values())
        report.producer_fatal.extend(load.fatal)
        for value, ack in load.acked.items():
            places = where.get(value)
            if not places:
                report.lost += 1
                report.note("lost", f"{value} acknowledged at partition {ack.partition} offset {ack.offset}")
            elif ack.offset < 0:
                report.acked_without_offset += 1
            elif (ack.partition, ack.offset) not in places:
                report.inconsistent += 1
                report.note("inconsistent offsets", f"{value} acknowledged at {ack.partition}/{ack.offset}, found at {places}")
    by_run = {run: load for load in loads for run in load.runs}
    for value in where:
        parsed = _split(value)
        load = by_run.get(parsed[0]) if parsed is not None else None
        if load is not None and value not in load.acked:
            report.unacked_present += 1
    return report


def check_topic(bootstrap: str, loads: Sequence[Load], report: Report | None = None, timeout: float = 30.0) -> Report:
    """Read the loads' topic back and check it (every load writes the same topic)."""
    topic, partitions = loads[0].topic, loads[0].partitions
    return check(loads, read_log(bootstrap, topic, partitions, timeout), report)


# --- replica bytes ----------------------------------------------------------------------------

_HEADER = struct.Struct(">qi")  # base_offset, batch_length
_LAST_DELTA = struct.Struct(">i")  # at byte 23


@dataclass(frozen=True, slots=True)
class Batch:
    base: int
    last: int
    data: bytes


def segment_batches(partition_dir: Path) -> list[Batch]:
    """Every whole batch of the partition's segment files, in offset order."""
    batches: list[Batch] = []
    segments = sorted(p for p in partition_dir.iterdir() if p.name.endswith(".log") and p.name[:-4].isdigit())
    for segment in segments:
        data = segment.read_bytes()
        position = 0
        while position + 61 <= len(data):
            base, length = _HEADER.unpack_from(data, position)
            end = position + 12 + length
            if length < 49 or end > len(data):
                break  # a torn or preallocated tail
            (delta,) = _LAST_DELTA.unpack_from(data, position + 23)
            batches.append(Batch(base, base + delta, data[position:end]))
            position = end
    return batches


def log_end(partition_dir: Path) -> int:
    """The offset after the last whole batch on disk (0 for none)."""
    try:
        batches = segment_batches(partition_dir)
    except OSError:
        return 0
    return batches[-1].last + 1 if batches else 0


def broker_dir(cluster: Any, node: int) -> Path:
    """A strom.Cluster broker's data directory (``<cluster data dir>/broker-<id>``)."""
    return Path(cluster.data_dir) / f"broker-{node}"


def compare_replicas(data_dirs: Mapping[int, Path], topic: str, partitions: int, report: Report | None = None) -> Report:
    """Byte comparison of every replica of the topic's partitions below the high watermarks
    their brokers checkpointed (run it with the brokers stopped cleanly): each replica's
    batches below its own high watermark must equal the replica with the highest one's."""
    report = report if report is not None else Report()
    for p in range(partitions):
        replicas: dict[int, tuple[int, list[Batch]]] = {}
        for node, data_dir in data_dirs.items():
            directory = data_dir / f"{topic}-{p}"
            if not directory.is_dir():
                continue
            hw = read_offsets(data_dir / REPLICATION_OFFSET_CHECKPOINT).get((topic, p))
            if hw is None:
                report.replica_mismatches += 1
                report.note("replica mismatches", f"{topic}-{p} on broker {node}: no high watermark checkpointed")
                continue
            replicas[node] = (hw, segment_batches(directory))
        if not replicas:
            continue
        reference = max(replicas, key=lambda n: replicas[n][0])
        ref_hw, ref_batches = replicas[reference]
        ref_end = ref_batches[-1].last + 1 if ref_batches else 0
        if ref_end < ref_hw:
            report.replica_mismatches += 1
            report.note("replica mismatches", f"{topic}-{p} on broker {reference}: log ends at {ref_end} below its high watermark {ref_hw}")
        for node, (hw, batches) in replicas.items():
            if node == reference:
                continue
            mine = [b for b in batches if b.base < hw]
            theirs = [b for b in ref_batches if b.base < hw]
            report.replicas_compared += 1
            report.bytes_compared += sum(len(b.data) for b in mine)
            if [b.data for b in mine] != [b.data for b in theirs]:
                report.replica_mismatches += 1
                report.note("replica mismatches", f"{topic}-{p}: broker {node} (HW {hw}) differs from broker "
                            f"{reference} (HW {ref_hw}) below {hw}: {_first_difference(mine, theirs)}")
    return report


def _first_difference(mine: Sequence[Batch], theirs: Sequence[Batch]) -> str:
    for a, b in zip(mine, theirs, strict=False):
        if a.data != b.data:
            return f"batch {a.base}..{a.last} ({len(a.data)} B) vs {b.base}..{b.last} ({len(b.data)} B)"
    return f"{len(mine)} batches vs {len(theirs)}"


# --- looking at the cluster -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionView:
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error: str | None


def live_nodes(cluster: Any) -> list[int]:
    """Brokers running and not paused."""
    return [n for n in cluster.nodes if cluster.alive(n) and not cluster.paused(n)]


def admin_for(cluster: Any, nodes: Iterable[int]) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({
        "bootstrap.servers": ",".join(cluster.address(n) for n in nodes),
        "logger": QUIET,
        "socket.connection.setup.timeout.ms": 1000,
        "allow.auto.create.topics": False,
    })


def describe(cluster: Any, topic: str, nodes: Iterable[int] | None = None, timeout: float = 2.0,
             admin: Any = None) -> dict[int, PartitionView] | None:
    """The topic's partitions as the given brokers (default: the live ones) tell them; None
    when none answers or the topic is unknown there."""
    from confluent_kafka import KafkaException

    nodes = list(live_nodes(cluster) if nodes is None else nodes)
    if not nodes and admin is None:
        return None
    client = admin if admin is not None else admin_for(cluster, nodes)
    try:
        md = client.list_topics(topic=topic, timeout=timeout)
    except KafkaException:
        return None
    t = md.topics.get(topic)
    if t is None or (t.error is not None and not t.partitions):
        return None
    return {
        p: PartitionView(int(pm.leader), tuple(pm.replicas), tuple(pm.isrs),
                         None if pm.error is None else pm.error.name())
        for p, pm in t.partitions.items()
    }


def views(cluster: Any, topic: str, timeout: float = 2.0) -> dict[int, dict[int, PartitionView] | None]:
    """Each live broker's own view of the topic (a client bootstrapped from it alone)."""
    return {n: describe(cluster, topic, [n], timeout) for n in live_nodes(cluster)}


def healed(cluster: Any, topic: str, partitions: int, *, full_isr: bool = True) -> bool:
    """Every live broker sees a live leader for every partition, all agree on it, and (with
    ``full_isr``) every live replica is in the ISR."""
    live = set(live_nodes(cluster))
    seen = views(cluster, topic)
    if not seen:
        return False
    leaders: dict[int, int] = {}
    for view in seen.values():
        if view is None or len(view) < partitions:
            return False
        for p, part in view.items():
            if part.leader not in live or leaders.setdefault(p, part.leader) != part.leader:
                return False
            if full_isr and not {r for r in part.replicas if r in live} <= set(part.isr):
                return False
    return True


def wait_healed(cluster: Any, topic: str, partitions: int, timeout: float = 30.0, *, full_isr: bool = True) -> None:
    wait_until(lambda: healed(cluster, topic, partitions, full_isr=full_isr), timeout,
               lambda: f"{topic} not healed: {views(cluster, topic)}", interval=0.2)


def leader_of(cluster: Any, topic: str, partition: int = 0) -> int:
    """The partition's leader as the live brokers tell it (-1: none or no answer)."""
    view = describe(cluster, topic)
    return -1 if view is None or partition not in view else view[partition].leader


def wait_new_leader(cluster: Any, topic: str, partition: int, old: int, timeout: float = 15.0,
                    interval: float = 0.05) -> int:
    """Until a live broker other than ``old`` leads the partition; returns it."""
    def probe() -> int | None:
        leader = leader_of(cluster, topic, partition)
        return leader if leader >= 0 and leader != old and leader in live_nodes(cluster) else None

    return wait_until(probe, timeout, f"{topic}-{partition}: no leader other than {old}", interval)


def wait_new_controller(cluster: Any, old: int | None = None, timeout: float = 15.0) -> int:
    """Until the live brokers name a controller (other than ``old``); returns it."""
    def probe() -> int | None:
        found = controller_id(cluster)
        return found if found >= 0 and found != old else None

    return wait_until(probe, timeout, f"a controller other than {old}", interval=0.1)


def controller_id(cluster: Any, timeout: float = 3.0) -> int:
    """The controller as DescribeCluster from the live brokers tells it (-1: none)."""
    admin = admin_for(cluster, live_nodes(cluster))
    try:
        described = admin.describe_cluster(request_timeout=timeout).result(timeout + 1)
    except Exception:
        return -1
    return -1 if described.controller is None else int(described.controller.id)


def etcd_partitions(cluster: Any, topic: str) -> dict[int, dict[str, Any]]:
    """The topic's partition states as etcd holds them (``leader``, ``leader_epoch``, ``isr``,
    and ``mod_revision``), read with etcdctl."""
    prefix = f"/strom/{cluster.cluster_id}/"
    etcdctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
    out = subprocess.run(
        [etcdctl, "--endpoints", cluster.etcd_endpoint, "get", "--prefix", prefix, "-w", "json"],
        check=True, capture_output=True, text=True, timeout=10,
        env={**os.environ, "ETCDCTL_API": "3"},
    ).stdout
    kvs = json.loads(out).get("kvs", [])
    decoded = {base64.b64decode(kv["key"]).decode()[len(prefix):]: (json.loads(base64.b64decode(kv["value"])), kv)
               for kv in kvs}
    topic_doc = decoded.get(f"topics/{topic}")
    if topic_doc is None:
        return {}
    topic_id = topic_doc[0]["topic_id"]
    states = {}
    for key, (doc, kv) in decoded.items():
        if key.startswith(f"partitions/{topic_id}/"):
            states[int(key.rsplit("/", 1)[1])] = {**doc, "mod_revision": int(kv.get("mod_revision", 0))}
    return states
