"""Consumer groups with confluent-kafka (librdkafka) against a real broker: three consumers
share six partitions with each assignor, partitions move when a member dies (after its
session timeout) or leaves (at once), a static member restarts without a rebalance, committed
offsets survive a broker restart, nothing is lost across rebalances, and lag is visible
through the AdminClient.

kafka-python and aiokafka groups are in test_groups_python.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from conftest import Broker

from .helpers import admin, create_topic, produce_many, producer

pytestmark = pytest.mark.timeout(120)

# Short rebalances for tests: no initial delay, sessions down to a second.
GROUP_SETTINGS = ("-o", "group.initial.rebalance.delay.ms=0", "-o", "group.min.session.timeout.ms=1000")
SESSION_MS = 3000
HEARTBEAT_MS = 250


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("groups")
    b = Broker(base / "data", log_dir=base, extra_args=GROUP_SETTINGS)
    b.start()
    yield b
    b.stop()


def group_consumer(bootstrap: str, group: str, **conf) -> Consumer:
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(c)


def new_group() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


def poll_until(consumers: Iterable[Consumer], done: Callable[[], bool], timeout: float = 30, what: str = "condition",
               sink: list | None = None) -> None:
    """Poll every consumer (rebalance callbacks run inside poll) until ``done()``."""
    consumers = list(consumers)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s: {[sorted(p.partition for p in c.assignment()) for c in consumers]}")
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and m.error() is None and sink is not None:
                sink.append(m)


def partitions(c: Consumer) -> list[int]:
    return sorted(tp.partition for tp in c.assignment())


def shares(consumers: list[Consumer], each: int) -> Callable[[], bool]:
    def check() -> bool:
        owned = [partitions(c) for c in consumers]
        return all(len(p) == each for p in owned) and len({p for ps in owned for p in ps}) == each * len(consumers)

    return check


def describe(b: Broker, group: str):
    a = admin(b.bootstrap)  # the client must outlive its futures
    return a.describe_consumer_groups([group])[group].result(10)


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_three_consumers_share_six_partitions(group_broker, unique_topic, assignor):
    topic = unique_topic(assignor)
    create_topic(group_broker.bootstrap, topic, partitions=6)
    produce_many(producer(group_broker.bootstrap), topic, [{"value": f"v{i}".encode(), "partition": i % 6} for i in range(60)])
    group = new_group()
    consumers = [group_consumer(group_broker.bootstrap, group, partition_assignment_strategy=assignor) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic])
        got: list = []
        poll_until(consumers, shares(consumers, 2), what="two partitions each", sink=got)
        poll_until(consumers, lambda: len({m.value() for m in got}) == 60, what="every record", sink=got)
        assert {m.value() for m in got} == {f"v{i}".encode() for i in range(60)}
        description = describe(group_broker, group)
        assert description.state == ConsumerGroupState.STABLE
        assert description.partition_assignor == assignor
        assigned = sorted(tp.partition for m in description.members for tp in m.assignment.topic_partitions)
        assert assigned == list(range(6)) and len(description.members) == 3
    finally:
        for c in consumers:
            c.close()
    a = admin(group_broker.bootstrap)
    listed = a.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(10)
    assert group in {g.group_id for g in listed.valid}


_CHILD = """
import sys, time
from confluent_kafka import Consumer
bootstrap, group, topic, session_ms, heartbeat_ms = sys.argv[1:6]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": int(session_ms),
              "heartbeat.interval.ms": int(heartbeat_ms), "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic])
last = None
while True:
    c.poll(0.05)
    owned = len(c.assignment())
    if owned != last:
        print("assigned", owned, flush=True)
        last = owned
"""


def test_killed_member_loses_its_partitions_after_the_session_timeout(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=6)
    group = new_group()
    args = [group_broker.bootstrap, group, topic, str(SESSION_MS), str(HEARTBEAT_MS)]
    child = subprocess.Popen([sys.executable, "-c", _CHILD, *args],
                             stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(child.stdout.readline, "")), daemon=True).start()
    survivor = group_consumer(group_broker.bootstrap, group)
    try:
        survivor.subscribe([topic])
        poll_until([survivor], lambda: len(partitions(survivor)) == 3 and lines and lines[-1].strip() == "assigned 3",
                   what="three partitions each")
        child.send_signal(signal.SIGKILL)  # no LeaveGroup: only the session timeout tells
        child.wait(10)
        killed = time.monotonic()
        poll_until([survivor], lambda: len(partitions(survivor)) == 6, what="all six partitions")
        moved_after = time.monotonic() - killed
        assert moved_after >= (SESSION_MS - 2 * HEARTBEAT_MS) / 1000 - 0.5, moved_after
        assert moved_after < SESSION_MS / 1000 + 10, moved_after
    finally:
        if child.poll() is None:
            child.kill()
        survivor.close()


def test_member_that_leaves_hands_over_its_partitions_at_once(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=6)
    group = new_group()
    session_ms = 30_000
    a = group_consumer(group_broker.bootstrap, group, session_timeout_ms=session_ms)
    b = group_consumer(group_broker.bootstrap, group, session_timeout_ms=session_ms)
    try:
        a.subscribe([topic])
        b.subscribe([topic])
        poll_until([a, b], shares([a, b], 3), what="three partitions each")
        b.close()  # LeaveGroup
        left = time.monotonic()
        poll_until([a], lambda: len(partitions(a)) == 6, what="all six partitions")
        assert time.monotonic() - left < session_ms / 1000 / 3
    finally:
        a.close()


def test_static_member_restarts_without_a_rebalance(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=4)
    group = new_group()
    events: list[tuple[str, str, list[int]]] = []

    def static(name: str) -> Consumer:
        c = group_consumer(group_broker.bootstrap, group, group_instance_id=name, session_timeout_ms=10_000)
        c.subscribe(
            [topic],
            on_assign=lambda _c, tps: events.append((name, "assign", sorted(tp.partition for tp in tps))),
            on_revoke=lambda _c, tps: events.append((name, "revoke", sorted(tp.partition for tp in tps))),
        )
        return c

    a, b = static("a"), static("b")
    try:
        poll_until([a, b], shares([a, b], 2), what="two partitions each")
        before = {"a": partitions(a), "b": partitions(b)}
        members_before = {m.group_instance_id: m.member_id for m in describe(group_broker, group).members}
        events.clear()
        a.close()  # a static member does not leave the group on close (KIP-345)
        a = static("a")
        poll_until([a, b], lambda: partitions(a) == before["a"], what="a's partitions back")
        for _ in range(10):  # b keeps polling for a while: no rebalance reaches it
            b.poll(0.1)
        assert partitions(b) == before["b"]
        assert [e for e in events if e[0] == "b"] == []
        description = describe(group_broker, group)
        assert description.state == ConsumerGroupState.STABLE and len(description.members) == 2
        members_after = {m.group_instance_id: m.member_id for m in description.members}
        assert members_after["b"] == members_before["b"] and members_after["a"] != members_before["a"]
    finally:
        a.close()
        b.close()


def test_committed_offsets_survive_a_broker_restart(broker_factory, unique_topic):
    b = broker_factory(*GROUP_SETTINGS)
    topic = unique_topic()
    create_topic(b.bootstrap, topic, partitions=2)
    produce_many(producer(b.bootstrap), topic, [{"value": f"v{i}".encode(), "partition": i % 2} for i in range(40)])
    group = new_group()
    c = group_consumer(b.bootstrap, group)
    c.subscribe([topic])
    got: list = []
    poll_until([c], lambda: len(got) >= 10, what="ten records", sink=got)
    # Commit exactly five records of each partition.
    c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 5)], asynchronous=False)
    c.close()
    b.restart()
    c = group_consumer(b.bootstrap, group)
    try:
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
        assert [tp.offset for tp in committed] == [5, 5]
        c.subscribe([topic])
        resumed: list = []
        poll_until([c], lambda: len(resumed) >= 30, what="the rest", sink=resumed)
        first = {}
        for m in resumed:
            first.setdefault(m.partition(), m.offset())
        assert first == {0: 5, 1: 5}
        assert len(resumed) == 30
    finally:
        c.close()


def test_every_record_is_consumed_at_least_once_across_rebalances(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=6)
    group = new_group()
    total = 900
    produced = threading.Event()

    def produce() -> None:
        p = producer(group_broker.bootstrap)
        for start in range(0, total, 100):
            produce_many(p, topic, [{"value": str(i).encode(), "key": str(i).encode()} for i in range(start, start + 100)])
            time.sleep(0.1)
        produced.set()

    seen: set[bytes] = set()

    def commit(c: Consumer, *_args: object) -> None:
        try:
            c.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing consumed since the last one
                raise

    def consume(c: Consumer, rounds: int) -> None:
        for _ in range(rounds):
            for m in c.consume(500, 0.05):
                if m.error() is None:
                    seen.add(m.value())
            if c.assignment():
                commit(c)  # at least once: commit only what was processed

    def member() -> Consumer:
        c = group_consumer(group_broker.bootstrap, group)
        c.subscribe([topic], on_revoke=commit)
        return c

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    members = [member(), member()]
    try:
        for _ in range(10):
            for c in members:
                consume(c, 2)
        members.pop(0).close()  # leaves mid-stream
        members.append(member())
        for _ in range(10):
            for c in members:
                consume(c, 2)
        writer.join(60)
        assert produced.is_set()
        deadline = time.monotonic() + 60
        while len(seen) < total and time.monotonic() < deadline:
            for c in members:
                consume(c, 1)
        missing = {str(i).encode() for i in range(total)} - seen
        assert not missing, f"{len(missing)} records never consumed, e.g. {sorted(missing)[:5]}"
    finally:
        for c in members:
            c.close()


def test_lag_through_the_admin_client(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=3)
    produce_many(producer(group_broker.bootstrap), topic, [{"value": b"x", "partition": i % 3} for i in range(30)])
    group = new_group()
    c = group_consumer(group_broker.bootstrap, group)
    c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 7), TopicPartition(topic, 2, 10)], asynchronous=False)
    c.close()
    a = admin(group_broker.bootstrap)
    result = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(10)
    committed = {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == topic}
    assert committed == {0: 4, 1: 7, 2: 10}
    ends = a.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(3)})
    end = {tp.partition: f.result(10).offset for tp, f in ends.items()}
    assert {p: end[p] - committed[p] for p in range(3)} == {0: 6, 1: 3, 2: 0}
    # Deleting the group removes its offsets.
    a.delete_consumer_groups([group])[group].result(10)
    result = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])[group].result(10)
    assert [tp.offset for tp in result.topic_partitions] == [-1001]
