"""KIP-848 with a real client: confluent-kafka (librdkafka 2.12+) with ``group.protocol=consumer``
against a real broker process: subscribe and commit, a second member joining and leaving
without stopping the first, a static member's restart, regex subscriptions, the group seen by
admin clients and ``strom group``; kafka-python and aiokafka keep the classic protocol in the
same run. Session and heartbeat settings are the broker's with this protocol (librdkafka
refuses client-side ones), so the broker's are lowered here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import Broker

PARTITIONS, RECORDS = 4, 200


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    broker = Broker(tmp_path_factory.mktemp("kip848") / "data", extra_args=[
        "-o", "group.consumer.min.session.timeout.ms=1000", "-o", "group.consumer.session.timeout.ms=6000",
        "-o", "group.consumer.min.heartbeat.interval.ms=100", "-o", "group.consumer.heartbeat.interval.ms=300"])
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def topic(broker: Broker) -> str:
    name = f"kip848-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(RECORDS):
        producer.produce(name, key=str(i), value=f"v{i}", partition=i % PARTITIONS)
    assert producer.flush(10) == 0
    return name


def consumer(broker: Broker, group: str, **conf: Any) -> Consumer:
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})


def poll_until(consumers: list[Consumer], done: Callable[[], bool], timeout: float = 20.0,
               seen: list[Any] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            message = c.poll(0.1)
            if message is not None and message.error() is None and seen is not None:
                seen.append((message.partition(), message.offset()))
        if done():
            return True
    return False


def partitions(c: Consumer) -> list[int]:
    return sorted(tp.partition for tp in c.assignment())


def test_subscribe_consume_and_commit(broker: Broker, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = consumer(broker, group)
    c.subscribe([topic])
    seen: list[Any] = []
    assert poll_until([c], lambda: len(seen) >= RECORDS, seen=seen)
    assert len(set(seen)) == RECORDS
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    assert [tp.offset for tp in committed] == [RECORDS // PARTITIONS] * PARTITIONS
    c.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    [listed] = [g for g in admin.list_consumer_groups().result(10).valid if g.group_id == group]
    assert listed.type.name == "CONSUMER" and listed.state.name == "EMPTY"


def test_a_second_member_joins_and_leaves_without_stopping_the_first(broker: Broker, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:6]}"
    first = consumer(broker, group, **{"client.id": "first"})
    first.subscribe([topic])
    assert poll_until([first], lambda: partitions(first) == list(range(PARTITIONS)))
    history: list[list[int]] = []

    def record() -> bool:
        history.append(partitions(first))
        return False

    second = consumer(broker, group, **{"client.id": "second"})
    second.subscribe([topic])
    assert poll_until([first, second], lambda: record() or (len(partitions(first)) == 2 and len(partitions(second)) == 2))
    # incremental: the first member gave up two partitions and never stopped holding the others
    assert all(len(h) >= 2 for h in history), history
    assert set(partitions(first)).isdisjoint(partitions(second))

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(10)
    assert described.type.name == "CONSUMER" and described.state.name == "STABLE"
    assert sorted((m.client_id, len(m.assignment.topic_partitions)) for m in described.members) == [("first", 2), ("second", 2)]

    second.close()
    assert poll_until([first], lambda: record() or partitions(first) == list(range(PARTITIONS)))
    assert all(len(h) >= 2 for h in history), history
    first.close()


def test_a_static_member_restarts_with_its_partitions(broker: Broker, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:6]}"
    a = consumer(broker, group, **{"group.instance.id": "static-a"})
    b = consumer(broker, group, **{"group.instance.id": "static-b"})
    a.subscribe([topic])
    b.subscribe([topic])
    assert poll_until([a, b], lambda: len(partitions(a)) == 2 and len(partitions(b)) == 2)
    mine, others = partitions(a), partitions(b)
    a.close()  # leaves with epoch -2: its partitions wait for it
    a2 = consumer(broker, group, **{"group.instance.id": "static-a"})
    a2.subscribe([topic])
    assert poll_until([a2, b], lambda: partitions(a2) == mine)
    assert partitions(b) == others
    a2.close()
    b.close()


def test_commits_with_member_epochs_and_offsets_seen_after_rejoin(broker: Broker, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = consumer(broker, group)
    c.subscribe([topic])
    seen: list[Any] = []
    assert poll_until([c], lambda: len(seen) >= 20, seen=seen)
    c.commit(offsets=[TopicPartition(topic, p, 10) for p in range(PARTITIONS)], asynchronous=False)
    c.close()
    again = consumer(broker, group)
    again.subscribe([topic])
    seen = []
    assert poll_until([again], lambda: len(seen) >= RECORDS - 10 * PARTITIONS, seen=seen)
    assert min(offset for _, offset in seen) == 10
    again.close()


def test_regex_subscription(broker: Broker) -> None:
    prefix = f"rx{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(f"{prefix}-a", 1, 1), NewTopic(f"{prefix}-b", 1, 1),
                                       NewTopic(f"x{prefix}-c", 1, 1)]).values():
        future.result(10)
    c = consumer(broker, f"g-{prefix}")
    c.subscribe([f"^{prefix}-.*"])
    assert poll_until([c], lambda: sorted(tp.topic for tp in c.assignment()) == [f"{prefix}-a", f"{prefix}-b"])
    c.close()


def test_classic_clients_in_the_same_run(broker: Broker, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer
    from kafka import KafkaConsumer

    kp = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="classic-kp", auto_offset_reset="earliest",
                       consumer_timeout_ms=10_000)
    assert len({(m.partition, m.offset) for _, m in zip(range(RECORDS), kp, strict=False)}) == RECORDS
    kp.close()

    async def aio() -> int:
        c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="classic-aio", auto_offset_reset="earliest")
        await c.start()
        try:
            got: set[tuple[int, int]] = set()
            while len(got) < RECORDS:
                for records in (await c.getmany(timeout_ms=1000)).values():
                    got.update((r.partition, r.offset) for r in records)
            return len(got)
        finally:
            await c.stop()

    assert asyncio.run(asyncio.wait_for(aio(), 30)) == RECORDS
    listed = subprocess.run([sys.executable, "-m", "strom", "group", "list", "-b", broker.bootstrap, "--output", "json"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    types = {g["group"]: g["type"] for g in json.loads(listed.stdout)}
    assert types["classic-kp"] == "classic" and types["classic-aio"] == "classic"
    assert "consumer" in types.values()


def test_a_mixed_group_serves_both_protocols(broker: Broker, topic: str) -> None:
    """A kafka-python member (the classic protocol) runs; a confluent-kafka member of KIP-848's
    joins: the classic group becomes a consumer group serving both (an online upgrade), the
    partitions split between them, and every record is read once; when the consumer-protocol
    member leaves, the group is a classic group again (the online downgrade)."""
    import threading

    from kafka import KafkaConsumer

    group = f"mixed-{uuid.uuid4().hex[:6]}"
    classic = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False, heartbeat_interval_ms=200, session_timeout_ms=6000)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def run_classic() -> None:
        while not stop.is_set():
            for records in classic.poll(timeout_ms=100).values():
                seen.extend((r.partition, r.offset) for r in records)
                classic.commit()

    thread = threading.Thread(target=run_classic)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(classic.assignment()) < PARTITIONS:
            assert time.monotonic() < deadline, "the classic member got no partitions"
            time.sleep(0.1)
        modern = consumer(broker, group, **{"client.id": "modern"})
        modern.subscribe([topic])
        assert poll_until([modern], lambda: len(partitions(modern)) > 0 and
                          len(partitions(modern)) + len(classic.assignment()) == PARTITIONS, timeout=30, seen=seen)
        assert set(partitions(modern)).isdisjoint(tp.partition for tp in classic.assignment())
        assert poll_until([modern], lambda: len(set(seen)) >= RECORDS, timeout=30, seen=seen)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        [listed] = [g for g in admin.list_consumer_groups().result(10).valid if g.group_id == group]
        assert listed.type.name == "CONSUMER"
        modern.close()  # only the classic member is left: a classic group again, which gets everything back
        deadline = time.monotonic() + 30
        while len(classic.assignment()) < PARTITIONS:
            assert time.monotonic() < deadline, "the classic member did not get every partition back"
            time.sleep(0.1)
        [listed] = [g for g in admin.list_consumer_groups().result(10).valid if g.group_id == group]
        assert listed.type.name == "CLASSIC"
    finally:
        stop.set()
        thread.join(10)
        classic.close()
    assert len(set(seen)) == RECORDS
