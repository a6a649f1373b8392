"""Consumer groups with the pure-Python clients: kafka-python (KafkaConsumer with group_id,
JoinGroup v7 / OffsetCommit v8 / OffsetFetch v8) and aiokafka (AIOKafkaConsumer with group_id,
JoinGroup v5 / OffsetCommit v3 / OffsetFetch v3, non-flexible encodings)."""

from __future__ import annotations

import asyncio
import time
import uuid

import kafka.errors
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from conftest import Broker
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from .helpers import create_topic

pytestmark = pytest.mark.timeout(120)

GROUP_SETTINGS = ("-o", "group.initial.rebalance.delay.ms=0", "-o", "group.min.session.timeout.ms=1000")


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("pygroups")
    b = Broker(base / "data", log_dir=base, extra_args=GROUP_SETTINGS)
    b.start()
    yield b
    b.stop()


def new_group() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


# --- kafka-python --------------------------------------------------------------------------


def kp_consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
    )


def kp_poll_until(consumers: list[KafkaConsumer], done, timeout: float = 30, sink: list | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {[sorted(tp.partition for tp in c.assignment()) for c in consumers]}")
        for c in consumers:
            for records in c.poll(timeout_ms=50).values():
                if sink is not None:
                    sink.extend(records)


def test_kafka_python_group_shares_commits_and_resumes(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=4)
    p = KafkaProducer(bootstrap_servers=group_broker.bootstrap, enable_idempotence=False, linger_ms=5)
    for i in range(40):
        p.send(topic, f"v{i}".encode(), partition=i % 4)
    p.flush()
    p.close()
    group = new_group()
    a = kp_consumer(group_broker.bootstrap, group, topic)
    got: list = []
    try:
        kp_poll_until([a], lambda: len(got) >= 40, sink=got)
        assert {r.value for r in got} == {f"v{i}".encode() for i in range(40)}
        a.commit()
        b = kp_consumer(group_broker.bootstrap, group, topic)
        try:
            kp_poll_until([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
            assert {tp.partition for tp in a.assignment()} | {tp.partition for tp in b.assignment()} == {0, 1, 2, 3}
            assert b.committed(KpTopicPartition(topic, 0)) == 10
        finally:
            b.close()
    finally:
        a.close()
    admin = KafkaAdminClient(bootstrap_servers=group_broker.bootstrap, request_timeout_ms=30000)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 10, 1: 10, 2: 10, 3: 10}
        described = admin.describe_groups([group])[group]
        assert (described["group_state"], described["protocol_type"], described["members"]) == ("Empty", "consumer", [])
        assert {"group_id": group, "protocol_type": "consumer", "group_state": "Empty", "group_type": "classic"} in admin.list_groups()
        # OffsetDelete, then DeleteGroups.
        assert set(admin.delete_group_offsets(group, [KpTopicPartition(topic, 0)]).values()) == {kafka.errors.NoError}
        assert {tp.partition for tp in admin.list_group_offsets({group: None})[group]} == {1, 2, 3}
        assert admin.delete_groups([group]) == {group: "OK"}
        assert admin.list_group_offsets({group: None})[group] == {}
    finally:
        admin.close()


# --- aiokafka --------------------------------------------------------------------------------


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_aiokafka_group_shares_commits_and_resumes(group_broker, unique_topic):
    topic = unique_topic()
    create_topic(group_broker.bootstrap, topic, partitions=4)
    group = new_group()

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=group_broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=3000,
            heartbeat_interval_ms=300,
            fetch_max_wait_ms=100,
        )

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=group_broker.bootstrap, enable_idempotence=False)
        await p.start()
        try:
            for i in range(40):
                await p.send(topic, f"v{i}".encode(), partition=i % 4)
            await p.flush()
        finally:
            await p.stop()
        a = consumer()
        await a.start()
        try:
            got: list = []
            while len(got) < 40:
                for records in (await a.getmany(timeout_ms=200)).values():
                    got.extend(records)
            assert {r.value for r in got} == {f"v{i}".encode() for i in range(40)}
            await a.commit()
            assert await a.committed(AioTopicPartition(topic, 3)) == 10
            b = consumer()
            await b.start()
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while not (len(a.assignment()) == 2 and len(b.assignment()) == 2):
                    assert loop.time() < deadline, (a.assignment(), b.assignment())
                    await asyncio.gather(a.getmany(timeout_ms=100), b.getmany(timeout_ms=100))
                assert {tp.partition for tp in a.assignment() | b.assignment()} == {0, 1, 2, 3}
                # b starts from the committed offsets: nothing left to read.
                assert sum(len(v) for v in (await b.getmany(timeout_ms=300)).values()) == 0
            finally:
                await b.stop()
        finally:
            await a.stop()

    run(main())
