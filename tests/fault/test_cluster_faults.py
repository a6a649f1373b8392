"""The failures of docs/CLUSTER.md ("Failures that must be survived"), each injected into a
3-broker ``strom.Cluster`` under acks=all idempotent load with unique values, then judged by the
checker (tests/fault/checker.py): no acknowledged record lost or at another offset, no
duplicate, no reordering, and every replica byte-identical below its high watermark.

Short runs for CI (a few seconds of load per failure, broker leases of 2 s); the long run with
random failures is ``python -m benchmarks.fault_soak``. Each test prints one ``FAULT`` line
with its figures (run pytest with ``-s`` or ``-rP`` to see them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import strom
from tests.fault.checker import (
    FAST_FAILOVER,
    QUIET,
    Load,
    Report,
    admin_for,
    broker_dir,
    check_topic,
    compare_replicas,
    describe,
    etcd_partitions,
    healed,
    live_nodes,
    log_end,
    views,
    wait_new_controller,
    wait_new_leader,
    wait_until,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

# Set to a file name to get each test's figures appended to it as a JSON line.
FIGURES = os.environ.get("FAULT_FIGURES_FILE")


def _etcd_missing() -> bool:
    return shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists()


if _etcd_missing():  # pragma: no cover - test.sh installs etcd-server
    pytest.skip("etcd is not installed (apt-get install etcd-server)", allow_module_level=True)

RF3 = {"min.insync.replicas": 2}


# Livelocks seen before, recognised by their signature in the brokers' logs, so that a test
# fails at once with the diagnosis rather than timing out on a cluster that never heals.
LIVELOCKS = [
    (
        re.compile(r"truncating (\d+) -> \1$", re.MULTILINE),
        20,
        "a follower gets DivergingEpoch at its own log end again and again: the epoch cache keeps "
        "an epoch that wrote nothing (a leader deposed before its first append), as before the fix "
        "in PartitionLog.truncate_to (Kafka's UnifiedLog.truncateTo always truncates the epoch cache)",
    ),
]


class Scenario:
    """One test's cluster, loads and report; ``finish`` heals, checks, stops cleanly and
    compares the replicas' bytes, then asserts the verdict (with the brokers' log tails)."""

    def __init__(self, name: str, tmp_path: Path, brokers: int = 3, **config: Any) -> None:
        self.name = name
        self.data_dir = tmp_path / "cluster"
        self.passed = False
        self.cluster: Any = strom.Cluster(brokers, data_dir=self.data_dir, config={**FAST_FAILOVER, **config})
        self.cluster.start()
        self.report = Report()
        self.loads: list[Load] = []
        self.topics: list[tuple[str, int]] = []
        self.extra: list[str] = []
        self.final_logs: dict[int, str] = {}

    def topic(self, partitions: int = 3, replication_factor: int = 3, **config: Any) -> str:
        name = self.cluster.create_topic(partitions=partitions, replication_factor=replication_factor,
                                         config={**RF3, **config})
        self.topics.append((name, partitions))
        return name

    def load(self, topic: str, partitions: int, **options: Any) -> Load:
        load = Load(self.cluster.bootstrap_servers, topic, partitions, **options)
        self.loads.append(load)
        return load.start()

    def livelock(self) -> str | None:
        for node in self.cluster.nodes:
            text = self.cluster.logs(node)
            for pattern, count, reason in LIVELOCKS:
                if len(pattern.findall(text)) >= count:
                    return f"broker {node}: {reason}"
        return None

    def wait_healed(self, topic: str, partitions: int, timeout: float = 30.0, *, full_isr: bool = True) -> None:
        """Until every partition has a live leader all brokers agree on and (``full_isr``)
        every live replica is in its ISR; fails at once on a known livelock's signature."""
        def probe() -> bool:
            livelock = self.livelock()
            if livelock is not None:
                pytest.fail(f"{livelock}\n{self.logs()}")
            return healed(self.cluster, topic, partitions, full_isr=full_isr)

        wait_until(probe, timeout, lambda: f"{topic} not healed: {views(self.cluster, topic)}", interval=0.2)

    def fail(self, kind: str) -> None:
        self.report.failures[kind] += 1

    def logs(self, lines: int = 60) -> str:
        """The brokers' last lines (as they were at the clean stop, once stopped)."""
        parts = []
        for node in self.cluster.nodes:
            text = self.final_logs.get(node) if node in self.final_logs else self.cluster.logs(node)
            parts.append(f"--- broker {node} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def finish(self, heal_timeout: float = 30.0) -> Report:
        for load in self.loads:
            load.stop()
        try:
            for topic, partitions in self.topics:
                self.wait_healed(topic, partitions, heal_timeout)
            for topic, _ in self.topics:
                mine = [load for load in self.loads if load.topic == topic]
                if mine:
                    check_topic(self.cluster.bootstrap_servers, mine, self.report)
            data_dirs = {n: broker_dir(self.cluster, n) for n in self.cluster.nodes}
            self.final_logs = {n: self.cluster.logs(n) for n in self.cluster.nodes}
            self.cluster.stop()
            for topic, partitions in self.topics:
                compare_replicas(data_dirs, topic, partitions, self.report)
        except BaseException:
            print(self.logs())
            raise
        loads = "; ".join(load.summary() for load in self.loads)
        print(f"\nFAULT {self.name}: {self.report.summary()}\n  loads: {loads}" +
              "".join(f"\n  {line}" for line in self.extra))
        if FIGURES:
            r = self.report
            with open(FIGURES, "a") as out:
                out.write(json.dumps({
                    "test": self.name, "injected": sum(r.failures.values()), "failures": dict(r.failures),
                    "acknowledged": r.acknowledged, "failed": r.failed, "read": r.records_read, "lost": r.lost,
                    "inconsistent": r.inconsistent, "duplicated": r.duplicates, "reordered": r.reordered,
                    "replicas_compared": r.replicas_compared, "replica_mismatches": r.replica_mismatches,
                    "producer_fatal": len(r.producer_fatal), "notes": self.extra,
                }) + "\n")
        assert self.report.ok, f"{self.report.problems()}\n{self.logs()}"
        self.passed = True
        return self.report

    def close(self) -> None:
        # Captured: pytest shows it with a failure only.
        print(f"\n{self.cluster!r}\n{self.logs(200)}")
        for load in self.loads:
            if load._producer is not None:
                load.stop(flush_timeout=1)
        self.cluster.stop()
        if self.passed:  # etcd preallocates 64 MB of WAL: keep the data of failed tests only
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    made: list[Scenario] = []

    def make(**config: Any) -> Scenario:
        s = Scenario(request.node.name.removeprefix("test_"), tmp_path, **config)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# --- 1. kill -9 of a leader under acks=all load --------------------------------------------------


def test_kill_leader_then_restart(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(300)
    victim = c.leader(topic, 0)
    c.kill(victim)
    s.fail("kill -9 leader")
    wait_new_leader(c, topic, 0, victim)
    load.wait_acked(300)
    c.start_broker(victim)
    s.wait_healed(topic, 3)
    load.wait_acked(200)
    s.finish()


def test_kill_leader_restart_kill_another_and_group_offsets_survive(scenario: Callable[..., Scenario]) -> None:
    """The issue's "done when": kill -9 the leader under acks=all, min.insync.replicas=2 load,
    restart it, then kill another broker: nothing acknowledged is lost or duplicated; and
    the offsets a group committed survive the kill of its coordinator."""
    from confluent_kafka import Consumer, TopicPartition

    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(300)

    first = c.leader(topic, 0)
    c.kill(first)
    s.fail("kill -9 leader")
    wait_new_leader(c, topic, 0, first)
    load.wait_acked(200)
    c.start_broker(first)
    s.wait_healed(topic, 3)  # the restarted broker is back in every ISR
    load.wait_acked(200)

    second = c.leader(topic, 0)
    if second == first:
        second = next(n for n in c.nodes if n != first)
    c.kill(second)
    s.fail("kill -9 another broker")
    load.wait_acked(300, timeout=30)

    # A group commits offsets; its coordinator is killed; the offsets are still there.
    group = f"fault-group-{topic}"
    committed = [TopicPartition(topic, p, 100 + 7 * p) for p in range(3)]
    consumer = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, "logger": QUIET})
    try:
        consumer.commit(offsets=committed, asynchronous=False)
    finally:
        consumer.close()
    admin = admin_for(c, live_nodes(c))
    coordinator = admin.describe_consumer_groups([group])[group].result(10).coordinator.id
    c.kill(coordinator)
    s.fail("kill -9 group coordinator")
    s.extra.append(f"brokers killed: {first} (leader, restarted), {second}, coordinator {coordinator}")
    fresh = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": group,
                      "enable.auto.commit": False, "logger": QUIET})
    try:
        def read_back() -> list[tuple[int, int]] | None:
            try:
                got = fresh.committed([TopicPartition(topic, p) for p in range(3)], timeout=5)
            except Exception:
                return None
            return [(tp.partition, tp.offset) for tp in got]

        want = [(tp.partition, tp.offset) for tp in committed]
        got = wait_until(lambda: read_back() == want, 30, f"committed offsets {want} after "
                         f"the coordinator {coordinator} died (read {read_back()})", interval=0.5)
        assert got
    finally:
        fresh.close()
    for node in (second, coordinator):
        if not c.alive(node):
            c.start_broker(node)
    load.wait_acked(100, timeout=30)
    s.finish()


# --- 2. a paused leader past its lease ------------------------------------------------------------


def test_paused_leader_is_deposed_and_truncates(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(300)
    victim = c.leader(topic, 0)
    c.pause(victim)
    s.fail("SIGSTOP leader past its lease")
    paused_at = time.monotonic()
    wait_new_leader(c, topic, 0, victim)
    load.wait_acked(300)
    time.sleep(max(0.0, paused_at + 3.0 - time.monotonic()))  # well past the 2 s lease
    lines_before = len(c.logs(victim).splitlines())
    c.resume(victim)
    s.wait_healed(topic, 3)  # back as a follower, in every ISR again
    load.wait_acked(200)
    after = c.logs(victim).splitlines()[lines_before:]
    truncations = [line for line in after if "truncating" in line]
    s.extra.append(f"resumed broker {victim}: {len(truncations)} truncation(s) logged"
                   + (f", e.g. {truncations[0].split(': ', 1)[-1]}" if truncations else ""))
    s.finish()


# --- 3. fast double failover (KIP-279) ---------------------------------------------------------------


def test_fast_double_failover(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=1)
    load = s.load(topic, 1, rate=400)
    load.wait_acked(400)
    first = c.leader(topic, 0)
    c.kill(first)
    s.fail("kill -9 leader")
    second = wait_new_leader(c, topic, 0, first, interval=0.02)
    c.kill(second)  # as soon as it is elected
    s.fail("kill -9 new leader")
    third = wait_new_leader(c, topic, 0, second)
    s.extra.append(f"leaders: {first} (killed) -> {second} (killed) -> {third}")
    c.start_broker(first)
    c.start_broker(second)
    s.wait_healed(topic, 1)
    load.wait_acked(200)
    s.finish()


# --- 4. a slow follower ---------------------------------------------------------------------------------


def test_slow_follower_leaves_isr_then_not_enough_replicas_then_rejoins(scenario: Callable[..., Scenario]) -> None:
    from confluent_kafka import KafkaError, Producer

    # A lease longer than replica.lag.time.max.ms: the ISR shrinks for the lag, not the lease.
    s = scenario(**{"broker.session.timeout.ms": 15000})
    c = s.cluster
    topic = s.topic(partitions=1, replication_factor=2)  # min.insync.replicas 2
    load = s.load(topic, 1)
    load.wait_acked(300)
    view = describe(c, topic)
    assert view is not None
    leader = view[0].leader
    follower = next(r for r in view[0].replicas if r != leader)
    c.pause(follower)
    s.fail("SIGSTOP follower")
    paused_at = time.monotonic()

    def isr() -> tuple[int, ...]:
        current = describe(c, topic, [leader])
        return () if current is None else current[0].isr

    wait_until(lambda: isr() == (leader,), 15, lambda: f"the ISR to lose the paused follower {follower} (ISR {isr()})")
    shrunk_after = time.monotonic() - paused_at

    errors: list[Any] = []
    probe = Producer({"bootstrap.servers": c.address(leader), "acks": "all", "enable.idempotence": False,
                      "retries": 0, "message.timeout.ms": 5000, "logger": QUIET})
    probe.produce(topic, b"probe", partition=0, on_delivery=lambda err, msg: errors.append(err))
    probe.flush(10)
    assert len(errors) == 1 and errors[0] is not None, f"an acks=all write with ISR {isr()} was acknowledged"
    assert errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors[0]

    c.resume(follower)
    wait_until(lambda: set(isr()) == {leader, follower}, 20, lambda: f"follower {follower} back in the ISR ({isr()})")
    rejoined_after = time.monotonic() - paused_at
    s.extra.append(f"ISR lost follower {follower} {shrunk_after:.1f}s after SIGSTOP; probe got "
                   f"{errors[0].name()}; back in the ISR {rejoined_after:.1f}s after SIGSTOP")
    load.wait_acked(200)
    s.finish()


# --- 5. the controller: killed, and paused (a zombie) ---------------------------------------------------


def test_controller_kill(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(300)
    old = wait_new_controller(c)
    c.kill(old)
    s.fail("kill -9 controller")
    new = wait_new_controller(c, old)
    s.wait_healed(topic, 3, 15, full_isr=False)
    load.wait_acked(300)
    c.start_broker(old)
    s.wait_healed(topic, 3)
    load.wait_acked(200)
    s.extra.append(f"controller {old} killed, {new} took over")
    s.finish()


def test_paused_controller_cannot_write(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(300)
    old = wait_new_controller(c)
    c.pause(old)
    s.fail("SIGSTOP controller past its lease")
    new = wait_new_controller(c, old)
    # The new controller moves the zombie's leaderships (it led one partition of three).
    s.wait_healed(topic, 3, 15, full_isr=False)
    load.wait_acked(300)
    before = etcd_partitions(c, topic)
    lines_before = len(c.logs(old).splitlines())
    c.resume(old)
    s.wait_healed(topic, 3)
    load.wait_acked(200)
    after = etcd_partitions(c, topic)
    for p, state in after.items():
        assert state["leader"] in state["isr"], f"partition {p}: leader outside the ISR: {state}"
        assert state["leader_epoch"] >= before[p]["leader_epoch"], f"partition {p}: epoch went back {before[p]} -> {state}"
    # Whatever the zombie tried as controller after SIGCONT must not have been stored.
    resumed = c.logs(old).splitlines()[lines_before:]
    stored = []
    for line in resumed:
        if f"node {old} is the controller" in line:
            break  # elected again, legitimately (not expected here)
        if "controller: " in line and " leader " in line and " epoch " in line:
            stored.append(line)
    assert not stored, "the deposed controller's writes took effect:\n" + "\n".join(stored)
    s.extra.append(f"controller {old} paused, {new} took over; after SIGCONT the old one logged "
                   f"{sum('not written' in line for line in resumed)} refused write(s)")
    s.finish()


# --- 6. etcd down ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGSTOP", "kill -9"])
def test_etcd_down_then_back(scenario: Callable[..., Scenario], how: str) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(300)
    down_at = time.monotonic()
    if how == "SIGSTOP":
        c.etcd.pause()
    else:
        c.etcd.kill()
    s.fail(f"etcd {how}")
    time.sleep(5.0)
    acked_while_down = load.acked_since(down_at)
    if how == "SIGSTOP":
        c.etcd.resume()
    else:
        c.etcd.restart()
    s.wait_healed(topic, 3)
    # The brokers follow etcd again: a new topic is created and every broker knows it.
    fresh = c.create_topic(partitions=2, config=RF3)

    def known_everywhere() -> bool:
        # A view is None also when the probing client timed out (a busy machine): ask again.
        return all(view is not None and all(part.leader >= 0 for part in view.values())
                   for view in views(c, fresh).values())

    wait_until(known_everywhere, 20, lambda: f"every broker knows {fresh} with leaders: {views(c, fresh)}")
    load.wait_acked(300, timeout=30)
    s.extra.append(f"etcd down 5 s ({how}): {acked_while_down} records acknowledged meanwhile")
    s.finish()


# --- 7. a broker back with an empty data directory ------------------------------------------------------------


class IsrMonitor:
    """Polls the other brokers' Metadata every 50 ms while a wiped broker comes back and
    records whether it is listed as leader or in the ISR, with its log end on disk then."""

    def __init__(self, cluster: Any, topic: str, partitions: int, node: int, load: Load) -> None:
        self.cluster, self.topic, self.partitions, self.node, self.load = cluster, topic, partitions, node, load
        self.others = [n for n in cluster.nodes if n != node]
        self.admin = admin_for(cluster, self.others)
        self.stop_flag = threading.Event()
        self.samples = 0
        self.violations: list[str] = []
        self.first_in_isr: dict[int, float] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> IsrMonitor:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.thread.join(10)

    def _run(self) -> None:
        data = broker_dir(self.cluster, self.node)
        for _ in range(4000):  # bounded: 200 s at most
            if self.stop_flag.wait(0.05):
                return
            asked = time.monotonic()
            view = describe(self.cluster, self.topic, timeout=1.0, admin=self.admin)
            if view is None:
                continue
            self.samples += 1
            acked = self.load.max_acked_offsets(before=asked)
            for p, part in view.items():
                if self.node not in part.isr and part.leader != self.node:
                    continue
                end = log_end(data / f"{self.topic}-{p}")
                needed = acked.get(p, -1) + 1
                if end < needed:
                    role = "leader" if part.leader == self.node else "in the ISR"
                    self.violations.append(f"{self.topic}-{p}: broker {self.node} {role} {asked - self.started:.2f}s "
                                           f"after its restart began, with {end} records on disk; {needed} acknowledged")
                if self.node in part.isr:
                    self.first_in_isr.setdefault(p, asked - self.started)


def test_wiped_broker_not_in_isr_until_caught_up(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3, rate=600)
    load.wait_acked(1500)
    victim = c.leader(topic, 0)
    c.stop_broker(victim)
    s.fail("restart with an empty data dir")

    def gone() -> bool:  # the cluster noticed: out of every ISR, leading nothing
        view = describe(c, topic)
        return view is not None and all(victim not in part.isr and part.leader != victim for part in view.values())

    wait_until(gone, 15, lambda: f"broker {victim} out of every ISR of {topic} ({describe(c, topic)})")
    # From the wipe on, the monitor flags any listing of the broker as leader or ISR member
    # while its log on disk lacks an acknowledged record.
    with IsrMonitor(c, topic, 3, victim, load) as monitor:
        c.restart(victim, wipe=True)  # it is stopped: wipe the data directory, start it
        s.wait_healed(topic, 3)
        load.wait_acked(200)
    assert monitor.samples >= 5  # it watched the comeback (a fast one takes ~10 samples)
    assert not monitor.violations, "\n".join(monitor.violations[:10])
    s.extra.append(f"wiped broker {victim}: first seen in the ISR after "
                   + ", ".join(f"p{p} {t:.2f}s" for p, t in sorted(monitor.first_in_isr.items()))
                   + f" ({monitor.samples} Metadata samples)")

    # It has everything: kill the other replicas, it alone serves every acknowledged record.
    load.stop()
    others = [n for n in c.nodes if n != victim]
    for node in others:
        c.kill(node)
        s.fail("kill -9 (other replicas)")

    def led_alone() -> bool:
        view = describe(c, topic, [victim])
        return view is not None and all(part.leader == victim for part in view.values())

    wait_until(led_alone, 20, lambda: f"broker {victim} leading {topic} alone ({describe(c, topic, [victim])})",
               interval=0.2)
    alone = check_topic(c.address(victim), [load])
    assert alone.ok and alone.lost == 0, f"served by the wiped broker alone: {alone.problems()}\n{s.logs()}"
    s.extra.append(f"served by the wiped broker alone: {alone.summary()}")
    for node in others:
        c.start_broker(node)
    s.finish()


# --- 8. every ISR member dead, no unclean election ---------------------------------------------------------------


def test_all_isr_dead_partition_offline_no_loss(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=1, replication_factor=2,
                    **{"min.insync.replicas": 1, "unclean.leader.election.enable": False})
    view = describe(c, topic)
    assert view is not None
    leader = view[0].leader
    follower = next(r for r in view[0].replicas if r != leader)
    bystander = next(n for n in c.nodes if n not in view[0].replicas)
    load = s.load(topic, 1)
    load.wait_acked(300)

    c.kill(follower)
    s.fail("kill -9 follower")
    def isr() -> tuple[int, ...] | None:
        current = describe(c, topic, [bystander])
        return None if current is None else current[0].isr

    wait_until(lambda: isr() == (leader,), 15, lambda: f"the ISR {isr()} to lose the dead follower {follower}")
    load.wait_acked(300)  # acknowledged by the leader alone (min.insync.replicas 1)
    c.kill(leader)
    s.fail("kill -9 last ISR member")

    def offline() -> Any:
        current = describe(c, topic, [bystander])
        return current is not None and current[0].leader == -1 and current[0]

    part = wait_until(offline, 15, f"{topic}-0 offline after its whole ISR died")
    state = etcd_partitions(c, topic)[0]
    assert state["leader"] == -1 and state["isr"] == [leader], state
    # The out-of-sync follower comes back: without unclean election it must not lead.
    c.start_broker(follower)
    for _ in range(30):  # 3 s
        current = describe(c, topic, [bystander])
        assert current is None or current[0].leader in (-1, leader), \
            f"the out-of-sync replica {follower} was elected: {current}"
        time.sleep(0.1)
    c.start_broker(leader)
    s.wait_healed(topic, 1)
    load.wait_acked(200, timeout=30)
    s.extra.append(f"offline partition: leader -1, error {part.error}, etcd ISR {state['isr']}")
    s.finish()


# --- 9. full cluster restart ---------------------------------------------------------------------------------------


def test_full_cluster_restart(scenario: Callable[..., Scenario]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    s = scenario()
    c = s.cluster
    topic = s.topic(partitions=3)
    load = s.load(topic, 3)
    load.wait_acked(600)
    group = f"fault-group-{topic}"
    committed = [TopicPartition(topic, p, 50 + p) for p in range(3)]
    consumer = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, "logger": QUIET})
    try:
        consumer.commit(offsets=committed, asynchronous=False)
    finally:
        consumer.close()

    stopping = time.monotonic()
    for node in c.nodes:
        c.stop_broker(node)
    s.fail("full cluster restart")
    acked_before = load.max_acked_offsets(before=stopping)
    down = etcd_partitions(c, topic)
    for p, state in down.items():
        assert state["isr"], f"partition {p}: the ISR was emptied: {state}"
    c.etcd.restart()
    for node in c.nodes:
        c.start_broker(node, ready=False)
    c.wait_ready()
    restarted = time.monotonic()

    # The first leader of each partition comes from the ISR kept in etcd; epochs go on.
    s.wait_healed(topic, 3, 20, full_isr=False)
    up = etcd_partitions(c, topic)
    for p, state in up.items():
        assert state["leader_epoch"] > down[p]["leader_epoch"], f"partition {p}: epoch {down[p]} -> {state}"
    # High watermarks were checkpointed: nothing acknowledged is hidden from consumers.
    from confluent_kafka import Consumer as Reader

    reader = Reader({"bootstrap.servers": c.bootstrap_servers, "group.id": group, "logger": QUIET})
    try:
        for p, top in acked_before.items():
            hw = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            assert hw > top, f"partition {p}: high watermark {hw} after the restart, {top} acknowledged before"
        want = [(tp.partition, tp.offset) for tp in committed]
        seen: list[Any] = []

        def read_back() -> bool:
            try:
                got = reader.committed([TopicPartition(topic, p) for p in range(3)], timeout=5)
            except Exception as exc:
                seen.append(exc)
                return False
            seen.append([(tp.partition, tp.offset) for tp in got])
            return seen[-1] == want

        wait_until(read_back, 15, lambda: f"committed offsets {want} after the restart; read {seen[-3:]}", interval=0.2)
    finally:
        reader.close()
    s.extra.append(f"committed offsets read back after {len(seen)} attempt(s): {seen[:2]}")
    s.wait_healed(topic, 3)
    load.wait_acked(300, since=restarted, timeout=30)  # the same producer goes on
    s.extra.append("epochs " + ", ".join(f"p{p} {down[p]['leader_epoch']}->{up[p]['leader_epoch']}" for p in sorted(up))
                   + "; ISR while down " + ", ".join(f"p{p} {down[p]['isr']}" for p in sorted(down)))
    s.finish()


# --- the long run, briefly -------------------------------------------------------------------------------------


def test_fault_soak_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m benchmarks.fault_soak`` for a few seconds of random failures (the long run
    is not for CI): it prints the summary table and finds nothing lost."""
    from benchmarks import fault_soak

    code = fault_soak.main(["--minutes", "0.15", "--seed", "2", "--etcd-down", "3",
                            "--only", "kill-leader", "pause-leader", "slow-follower", "etcd-down"])
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\nFAULT soak (0.15 min): " + out.strip().splitlines()[-1])
    assert "| **total** |" in out and "| lost | 0 |" in out, out
    assert code == 0, out
