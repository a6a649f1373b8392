"""The cluster workloads: a 3-broker strom cluster side by side with one strom broker, same run.

A throwaway etcd and three ``strom serve --etcd`` processes (``strom.Cluster``), and one plain
``strom serve`` (``StromBroker``), started together and measured turn by turn (single, cluster,
single, cluster, ...), so a burst of other work on the machine hits both alike:

* produce: 100 B and 1 KiB records, acks=all, one partition, the batching producer of the
  single-broker rows (model.PRODUCER_CONF, rdkperf); on the cluster the topic has replication
  factor 3 and ``min.insync.replicas=2``. Broker CPU is summed over the three broker processes
  (their process trees, /proc), etcd's CPU is reported apart; median of
  ``Sizes.cluster_repeats`` repetitions, each into a fresh topic;
* latency: end to end at 5,000 records/s, 100 B (workloads.latency: the Python producer and
  consumer), same topic settings;
* idle: CPU of the idle brokers (and etcd) over a few seconds, and their RSS;
* the floor: the produce rows' data movement done by a minimal program on one "broker" and on
  a leader with two followers (benchmarks.replication_floor), so the report shows what any
  replication costs per byte on this machine beside what strom's costs;
* failover: an idempotent acks=all producer sends one 100 B record every 2 ms to a partition
  (replication factor 3, ``min.insync.replicas=2``); the partition's leader (from Metadata) is
  killed with SIGKILL, and the failover time is from the kill to the first acknowledgement of a
  record handed to the producer after the kill (an acknowledgement the dead leader had already
  sent cannot count). The killed broker is then started again and the next kill waits until it
  is back in the partition's ISR. Done with the default ``broker.session.timeout.ms`` (full
  runs) and with a shorter one (``Sizes.cluster_short_timeout_ms``, always), each on a cluster
  of its own.

Everything comes back as one JSON-able dict (report.cluster_markdown prints it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import replication_floor
from benchmarks.brokers import KafkaBroker, StromBroker
from benchmarks.clients import KafkaClient
from benchmarks.model import Row, Sizes, median_row
from benchmarks.procstat import ProcTree, Sample
from benchmarks.workloads import latency, log, produce

CLUSTER_NAME = "strom x3"
REPLICATION_FACTOR = 3
MIN_INSYNC = 2
DEFAULT_SESSION_TIMEOUT_MS = 9000  # broker.session.timeout.ms's default (docs/cluster.md)
FAILOVER_INTERVAL_S = 0.002  # one record every 2 ms
STAMP = struct.Struct(">q")

# librdkafka reports every refused connection to a killed broker: the failover clients keep quiet
_QUIET = logging.getLogger("benchmarks.cluster.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class _Brokers:
    """``sample()`` over every running broker of a cluster (the pids are read at each sample,
    so a restarted broker counts from its new process)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def sample(self) -> Sample:
        total = Sample(0.0, 0)
        for node in self.cluster.nodes:
            pid = self.cluster.pid(node)
            if pid is not None:
                s = ProcTree(pid).sample()
                total = Sample(total.cpu_s + s.cpu_s, total.rss + s.rss)
        return total


class ClusterBroker(KafkaBroker):
    """A strom.Cluster (etcd + N brokers) behind KafkaBroker's interface, so the produce and
    latency workloads run on it unchanged: ``proc`` sums the brokers, ``etcd`` is apart."""

    name = CLUSTER_NAME

    def __init__(self, brokers: int = 3, session_timeout_ms: int | None = None) -> None:
        super().__init__()
        from strom.testing.cluster import Cluster

        self.session_timeout_ms = session_timeout_ms or DEFAULT_SESSION_TIMEOUT_MS
        self.cluster = Cluster(brokers=brokers, session_timeout_ms=session_timeout_ms, startup_timeout=90.0)

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap_servers

    @property
    def proc(self) -> ProcTree:
        return _Brokers(self.cluster)  # type: ignore[return-value]  # duck-typed: sample()

    @property
    def etcd(self) -> ProcTree:
        return ProcTree(self.cluster.etcd.pid)

    def start(self) -> ClusterBroker:
        self.cluster.start()
        return self

    def stop(self) -> None:
        try:
            self.cluster.stop()
        finally:
            super().stop()

    def admin(self):  # noqa: ANN201 - confluent_kafka.admin.AdminClient
        return self.cluster.admin()

    def create_topic(self, name: str, partitions: int, timeout: float = 60.0) -> None:
        self.cluster.create_topic(name, partitions, replication_factor=REPLICATION_FACTOR,
                                  config={"min.insync.replicas": MIN_INSYNC}, timeout=timeout)
        wait_isr(self, name, timeout=timeout)

    def metadata(self, topic: str, timeout: float = 5.0) -> Any:
        """ClusterMetadata of ``topic`` from the live brokers, or None when none answers."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        live = [self.cluster.address(n) for n in self.cluster.nodes
                if self.cluster.alive(n) and not self.cluster.paused(n)]
        admin = AdminClient({"bootstrap.servers": ",".join(live), "logger": _QUIET,
                             "socket.connection.setup.timeout.ms": 1000})
        try:
            return admin.list_topics(topic=topic, timeout=timeout)
        except KafkaException:
            return None


def wait_isr(broker: ClusterBroker, topic: str, partition: int = 0, size: int = REPLICATION_FACTOR,
             timeout: float = 60.0) -> Any:
    """Wait until the partition has a leader and ``size`` in-sync replicas; its metadata."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        md = broker.metadata(topic)
        t = None if md is None else md.topics.get(topic)
        p = None if t is None or t.error is not None else t.partitions.get(partition)
        if p is not None:
            seen = (p.leader, list(p.isrs))
            if p.leader >= 0 and len(p.isrs) >= size:
                return md
        time.sleep(0.05)
    raise TimeoutError(f"{topic}-{partition}: not {size} in-sync replicas after {timeout:.0f}s "
                       f"(leader, isr: {seen})")


def _strom_src(src: str | None) -> contextlib.AbstractContextManager[None]:
    """The cluster's brokers inherit the environment: put ``--strom-src`` on their PYTHONPATH."""

    @contextlib.contextmanager
    def env() -> Any:
        old = os.environ.get("PYTHONPATH")
        if src:
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), old or "") if p)
        try:
            yield
        finally:
            if src:
                if old is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = old

    return env()


# --- produce, latency, idle -----------------------------------------------------------------


Measured = tuple[Row, float, dict[str, Any]]


def _with_etcd(broker: KafkaBroker, topic: str, body: Any) -> Measured:
    """Run a workload; also the etcd CPU seconds it took (NaN for a single broker) and, on a
    cluster, the leader's and each follower's CPU seconds (the row has their sum)."""
    if not isinstance(broker, ClusterBroker):
        return body(), math.nan, {}
    md = broker.metadata(topic)
    leader = md.topics[topic].partitions[0].leader if md is not None else -1
    nodes = {n: broker.cluster.pid(n) for n in broker.cluster.nodes}
    before = broker.etcd.sample()
    per_node = {n: ProcTree(pid).sample().cpu_s for n, pid in nodes.items() if pid is not None}
    row = body()
    etcd = broker.etcd.sample().cpu_s - before.cpu_s
    split = {n: ProcTree(nodes[n]).sample().cpu_s - cpu for n, cpu in per_node.items()}  # type: ignore[arg-type]
    return row, etcd, {"leader": split.get(leader), "followers": [c for n, c in split.items() if n != leader]}


def _pair(label: str, single: Measured, cluster: Measured) -> dict[str, Any]:
    return {"workload": label, "single": single[0].as_dict(), "cluster": cluster[0].as_dict(),
            "etcd_cpu_s": None if math.isnan(cluster[1]) else cluster[1], "cluster_cpu_s_by_role": cluster[2]}


def touch_page_cache(nbytes: int, directory: str | None = None) -> None:
    """Write and delete a scratch file of ``nbytes``, so that the page cache the next workload
    fills comes from memory the machine has used before. On this VM the host backs guest RAM
    lazily: the first write into never-used memory cost 12x the CPU of a write into reused
    memory (1.3 s against 0.1 s per 512 MiB, measured), charged to whichever process wrote it.
    A cluster writes each record three times and deleted topics keep their files for
    file.delete.delay.ms, so without this the cluster paid that toll more than the single
    broker did, and by chance: its ratio swung from 4.6x to 8.5x between runs. The guest also
    hands free memory back to the host (free page reporting, in 2 MiB blocks) seconds after it
    is freed, so this runs right before the workload: run before the topic's creation and ISR
    wait, which take the cluster longer than the single broker, it left the cluster colder
    memory."""
    chunk = os.urandom(1 << 20)
    fd, path = tempfile.mkstemp(prefix="strom-touch-", dir=directory)
    try:
        for position in range(0, nbytes, len(chunk)):
            os.pwrite(fd, chunk, position)
    finally:
        os.close(fd)
        os.unlink(path)  # the pages go back to the free lists, touched


def _produce_pairs(pair: list[KafkaBroker], client: KafkaClient, sizes: Sizes) -> list[dict[str, Any]]:
    out = []
    for size, total in ((100, sizes.cluster_records_100), (1024, sizes.cluster_records_1k)):
        reps: dict[str, list[Measured]] = {b.name: [] for b in pair}
        for rep in range(sizes.cluster_repeats):
            for broker in pair:
                topic = f"c{size}-{rep}"
                broker.create_topic(topic, 1)
                # room for every replica's copy plus batch and index overhead, on both sides;
                # after the topic is up, right before the run (see touch_page_cache)
                touch_page_cache(int(total * (size + 100) * REPLICATION_FACTOR * 1.25))
                reps[broker.name].append(_with_etcd(broker, topic, lambda b=broker, t=topic, s=size, n=total:
                                                    produce(b, client, t, s, "all", 1, n, sizes.producers)))
                broker.delete_topic(topic)
        chosen = []
        for broker in pair:
            row = median_row([m[0] for m in reps[broker.name]])
            measured = next(m for m in reps[broker.name] if m[0] is row)
            chosen.append(measured)
            etcd, roles = measured[1], measured[2]
            log(f"{broker.name}: produce {size}B acks=all: {row.records_per_s:,.0f} rec/s, broker CPU "
                f"{row.cpu_per_million:.2f} s per M records" + ("" if math.isnan(etcd) else
                                                               f", etcd {etcd:.2f}s, by role {roles}"))
        size_name = "1 KiB" if size == 1024 else f"{size} B"
        out.append(_pair(f"produce {size_name} acks=all", chosen[0], chosen[1]))
        out[-1]["repetitions"] = {name: [m[0].as_dict() for m in measured] for name, measured in reps.items()}
    return out


def _latency_pairs(pair: list[KafkaBroker], sizes: Sizes) -> list[dict[str, Any]]:
    out = []
    rate = 5000
    for linger in sizes.cluster_latency_lingers:
        got = []
        for broker in pair:
            topic = f"clat-{linger}"
            broker.create_topic(topic, 1)
            got.append(_with_etcd(broker, topic, lambda b=broker, t=topic, lg=linger:
                                  latency(b, t, rate, sizes.cluster_latency_seconds, lg)))
            row = got[-1][0]
            log(f"{broker.name}: latency at {rate}/s linger.ms={linger}: p50 {row.p50_ms:.2f} "
                f"p99 {row.p99_ms:.2f} ms, broker CPU {row.broker_cpu_s:.2f}s")
            broker.delete_topic(topic)
        out.append(_pair(f"latency @{rate:,}/s linger.ms={linger}", got[0], got[1]))
    return out


def _idle(pair: list[KafkaBroker], seconds: float) -> dict[str, Any]:
    """CPU of both systems over ``seconds`` with no client (leases, follower long-polls)."""
    cluster = pair[1]
    assert isinstance(cluster, ClusterBroker)
    procs = [b.proc for b in pair] + [cluster.etcd]
    before = [p.sample() for p in procs]
    time.sleep(seconds)
    after = [p.sample() for p in procs]
    cpu = [a.cpu_s - b.cpu_s for a, b in zip(after, before, strict=True)]
    return {"seconds": seconds, "single_cpu_s": cpu[0], "cluster_cpu_s": cpu[1], "etcd_cpu_s": cpu[2],
            "single_rss": after[0].rss, "cluster_rss": after[1].rss, "etcd_rss": after[2].rss}


# --- failover -------------------------------------------------------------------------------


class _AckWatch(threading.Thread):
    """An idempotent acks=all producer sending one stamped record every ``interval`` seconds to
    partition 0; ``arm(t)`` then ``found.wait()``: the first acknowledgement of a record sent at
    or after monotonic ``t``."""

    def __init__(self, bootstrap: str, topic: str, interval: float = FAILOVER_INTERVAL_S) -> None:
        super().__init__(name="failover-producer", daemon=True)
        self.bootstrap, self.topic, self.interval = bootstrap, topic, interval
        self.conf: dict[str, Any] = {}
        self.stop = threading.Event()
        self.found = threading.Event()
        self.mark_ns: int | None = None
        self.first_ack_ns = 0
        self.sent = self.acked = self.failed = 0
        self.last_ack_ns = 0
        self.first_error = ""
        self.fatal = ""

    def arm(self, t_ns: int) -> None:
        self.found.clear()
        self.first_ack_ns = 0
        self.mark_ns = t_ns

    def _on_delivery(self, err: Any, msg: Any) -> None:
        now = time.monotonic_ns()
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)
            return
        self.acked += 1
        self.last_ack_ns = now
        mark = self.mark_ns
        if mark is not None and not self.found.is_set() and STAMP.unpack_from(msg.value())[0] >= mark:
            self.first_ack_ns = now
            self.found.set()

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self.fatal = str(err)

    def run(self) -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 0, "logger": _QUIET, "error_cb": self._on_error, **self.conf})
        pad = b"f" * (100 - STAMP.size)
        next_at = time.monotonic()
        while not self.stop.is_set() and not self.fatal:
            now = time.monotonic()
            if now >= next_at:
                try:
                    p.produce(self.topic, STAMP.pack(time.monotonic_ns()) + pad, partition=0,
                              on_delivery=self._on_delivery)
                    self.sent += 1
                except BufferError:
                    pass
                next_at = max(next_at + self.interval, now)
            p.poll(max(0.0, min(next_at - time.monotonic(), 0.001)))
        p.flush(30)


def _failover(cluster: ClusterBroker, kills: int) -> dict[str, Any]:
    timeout_ms = cluster.session_timeout_ms
    topic = f"failover-{timeout_ms}"
    cluster.create_topic(topic, 1)
    watch = _AckWatch(cluster.bootstrap, topic)
    watch.start()
    results: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while watch.acked < 100:
            if time.monotonic() > deadline or watch.fatal:
                raise RuntimeError(f"the failover producer got no acknowledgements: {watch.fatal or watch.first_error}")
            time.sleep(0.01)
        for k in range(kills):
            md = wait_isr(cluster, topic)
            leader = md.topics[topic].partitions[0].leader
            controller = md.controller_id
            # steady: acknowledgements flowing (one within the last 100 ms)
            steady = time.monotonic() + 30
            while time.monotonic_ns() - watch.last_ack_ns > 100_000_000 and time.monotonic() < steady:
                time.sleep(0.005)
            survivors = [cluster.cluster.address(n) for n in cluster.cluster.nodes if n != leader]
            t_kill = time.monotonic_ns()
            watch.arm(t_kill)
            cluster.cluster.kill(leader)
            moved = _LeaderMoved(survivors, topic, leader, t_kill)
            moved.start()
            ok = watch.found.wait(timeout_ms / 1000 + 60)
            seconds = (watch.first_ack_ns - t_kill) / 1e9 if ok else None
            moved.done.wait(5)
            moved.stop.set()
            moved.join(5)
            t_start = time.monotonic()
            cluster.cluster.start_broker(leader)
            wait_isr(cluster, topic, timeout=120)
            rejoin = time.monotonic() - t_start
            results.append({"kill": k + 1, "leader": leader, "controller": controller,
                            "new_leader": moved.new_leader, "leader_moved_s": moved.seconds,
                            "seconds": seconds, "rejoin_s": rejoin,
                            "error": "" if ok else (watch.fatal or "no acknowledgement")})
            log(f"{CLUSTER_NAME} broker.session.timeout.ms={timeout_ms}: kill {k + 1}/{kills} of leader "
                f"{leader}{' (controller)' if leader == controller else ''}: "
                + (f"Metadata names leader {moved.new_leader} after {moved.seconds:.2f}s, "
                   if moved.seconds is not None else "")
                + (f"next ack after {seconds:.2f}s" if seconds is not None else "NO ACK")
                + f"; restarted, back in the ISR after {rejoin:.1f}s")
            if watch.fatal:
                break
    finally:
        watch.stop.set()
        watch.join(40)
    end = _end_offset(cluster, topic)
    cluster.delete_topic(topic)
    done = [r["seconds"] for r in results if r["seconds"] is not None]
    return {"session_timeout_ms": timeout_ms, "default": timeout_ms == DEFAULT_SESSION_TIMEOUT_MS,
            "kills": results, "p50_s": _pct(done, 0.5), "p90_s": _pct(done, 0.9),
            "max_s": max(done) if done else None, "failed_kills": len(results) - len(done),
            "sent": watch.sent, "acked": watch.acked, "delivery_errors": watch.failed,
            "first_error": watch.first_error, "fatal": watch.fatal, "end_offset": end,
            "rejoin_p50_s": _pct([r["rejoin_s"] for r in results], 0.5),
            "leader_moved_p50_s": _pct([r["leader_moved_s"] for r in results if r["leader_moved_s"] is not None], 0.5)}


class _LeaderMoved(threading.Thread):
    """Polls Metadata from the surviving brokers every 50 ms until it names a new leader: the
    broker side of a failover (lease expiry, controller), apart from the client's discovery."""

    def __init__(self, survivors: list[str], topic: str, killed: int, t_kill_ns: int) -> None:
        super().__init__(name="leader-moved", daemon=True)
        self.survivors, self.topic, self.killed, self.t_kill_ns = survivors, topic, killed, t_kill_ns
        self.stop = threading.Event()
        self.done = threading.Event()
        self.seconds: float | None = None
        self.new_leader = -1

    def run(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": ",".join(self.survivors), "logger": _QUIET})
        try:
            while not self.stop.is_set():
                with contextlib.suppress(KafkaException):
                    t = admin.list_topics(topic=self.topic, timeout=1).topics.get(self.topic)
                    p = None if t is None else t.partitions.get(0)
                    if p is not None and p.leader >= 0 and p.leader != self.killed:
                        self.seconds = (time.monotonic_ns() - self.t_kill_ns) / 1e9
                        self.new_leader = p.leader
                        return
                self.stop.wait(0.05)
        finally:
            self.done.set()


def _end_offset(cluster: ClusterBroker, topic: str) -> int | None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "failover-check", "logger": _QUIET})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    except Exception:  # noqa: BLE001 - a sanity figure only
        return None
    finally:
        c.close()


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the median of an even count is the mean of the middle two)."""
    if not values:
        return None
    if q == 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- the group ------------------------------------------------------------------------------


def run_cluster_suite(client: KafkaClient, sizes: Sizes, strom_src: str | None = None,
                      result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Produce, latency and idle on one broker and on a 3-broker cluster (taking turns), then
    the failovers. The first cluster has the default session timeout when default-timeout kills
    are asked for (full runs), else the short one (--quick: one cluster for everything).
    ``result`` is filled as the parts finish, so a failure keeps what was measured before it."""
    short = sizes.cluster_short_timeout_ms
    first_timeout = None if sizes.cluster_kills_default else short
    result = {} if result is None else result
    result.update({
        "settings": {
            "brokers": 3, "replication_factor": REPLICATION_FACTOR, "min_insync_replicas": MIN_INSYNC,
            "acks": "all", "records_100": sizes.cluster_records_100, "records_1k": sizes.cluster_records_1k,
            "repeats": sizes.cluster_repeats, "latency_seconds": sizes.cluster_latency_seconds,
            "latency_lingers": list(sizes.cluster_latency_lingers), "client": client.name,
            "session_timeout_ms_of_measurement_cluster": first_timeout or DEFAULT_SESSION_TIMEOUT_MS,
            "kills_default": sizes.cluster_kills_default, "kills_short": sizes.cluster_kills_short,
            "short_session_timeout_ms": short, "failover_interval_ms": FAILOVER_INTERVAL_S * 1000,
        },
        "pairs": [], "floor": {}, "idle": {}, "failover": [],
    })
    with _strom_src(strom_src), contextlib.ExitStack() as stack:
        single = stack.enter_context(StromBroker(src=Path(strom_src) if strom_src else None))
        cluster = stack.enter_context(ClusterBroker(session_timeout_ms=first_timeout))
        pair: list[KafkaBroker] = [single, cluster]
        log(f"strom (1 broker) and {CLUSTER_NAME} ({cluster.bootstrap}, broker.session.timeout.ms="
            f"{cluster.session_timeout_ms}) started")
        time.sleep(1.0)
        result["idle"] = _idle(pair, sizes.cluster_idle_seconds)
        # warm up with both record sizes: connections, code paths, the allocator's large blocks
        # (the first 1 KiB repetition on a fresh cluster cost up to twice the CPU per record of
        # the later ones; it still costs the most)
        for broker in pair:
            for size, total in ((100, sizes.cluster_records_100), (1024, sizes.cluster_records_1k)):
                broker.create_topic(f"cwarmup-{size}", 1)
                produce(broker, client, f"cwarmup-{size}", size, "all", 1, max(total // 2, 1000), 1)
                broker.delete_topic(f"cwarmup-{size}")
        result["pairs"] += _produce_pairs(pair, client, sizes)
        result["floor"] = replication_floor.measure(sizes.floor_bytes, sizes.floor_repeats, touch_page_cache)
        log(f"floor: {json.dumps({k: v for k, v in result['floor'].items() if k != 'runs'})}")
        result["pairs"] += _latency_pairs(pair, sizes)
        single.stop()
        kills = sizes.cluster_kills_default if first_timeout is None else sizes.cluster_kills_short
        if kills:
            result["failover"].append(_failover(cluster, kills))
    if first_timeout is None and sizes.cluster_kills_short:
        with _strom_src(strom_src), ClusterBroker(session_timeout_ms=short) as fast:
            result["failover"].append(_failover(fast, sizes.cluster_kills_short))
    return result
