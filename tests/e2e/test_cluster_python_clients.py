"""The pure-Python clients on a 3-broker cluster (the ``strom_cluster`` fixture: a throwaway
etcd and three ``strom serve`` processes), each client given one broker's address only:
kafka-python (an idempotent acks=all producer, a consumer group, its admin client) and aiokafka
(an acks=all producer, a consumer group).

confluent-kafka and kcat are in test_cluster.py.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from .helpers import running_in_ci

HAVE_ETCD = shutil.which("etcd") is not None or Path("/usr/bin/etcd").exists()
CLUSTER_CONFIG = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 1000,
    "offsets.topic.num.partitions": 6,
    "transaction.state.log.num.partitions": 6,
}

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.strom_cluster(brokers=3, session_timeout_ms=3000, config=CLUSTER_CONFIG),
    pytest.mark.skipif(not HAVE_ETCD and not running_in_ci(), reason="etcd is not installed (apt-get install etcd-server)"),
]

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- kafka-python -------------------------------------------------------------------------------


def kp_consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
        # A member whose first metadata lacked the partitions (a busy machine) sees them at
        # the next refresh, which makes the group rebalance: refresh often.
        metadata_max_age_ms=1000,
    )


def test_kafka_python_producer_and_group_through_single_brokers(strom_cluster):
    topic = strom_cluster.create_topic(new_name("kp"), partitions=6, replication_factor=3)
    group = new_name("kpgroup")
    consumers = [kp_consumer(strom_cluster.address(0), group, topic), kp_consumer(strom_cluster.address(2), group, topic)]
    got: list[Any] = []
    try:
        # kafka-python may join before its first metadata has the topic's partitions, and with
        # group.initial.rebalance.delay.ms=0 its range assignor then hands out nothing (a
        # client race that Kafka's default 3 s delay hides): make each member fetch them first.
        for c in consumers:
            assert c.partitions_for_topic(topic) == set(range(6))

        # Each member polls in a thread of its own, as applications do. kafka-python 3.0 finishes
        # a join only inside a poll that awaits it: polled in turn from one thread, a member whose
        # JoinGroup/SyncGroup round trip outlasts its short poll (a busy machine) finds the join
        # done at its next poll, drops it and joins again, and the group rebalances forever.
        stop = threading.Event()

        def pump(c: KafkaConsumer) -> None:
            while not stop.is_set():
                for records in c.poll(timeout_ms=100).values():
                    got.extend(records)

        def settled() -> bool:
            owned = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
            return [len(o) for o in owned] == [3, 3] and sorted(p for o in owned for p in o) == list(range(6))

        pumps = [threading.Thread(target=pump, args=(c,), daemon=True) for c in consumers]
        for t in pumps:
            t.start()
        try:
            wait_for("two consumers owning three partitions each", settled, timeout=60)
        finally:
            stop.set()
            for t in pumps:
                t.join(10)
        assert got == []  # nothing produced yet

        # kafka-python's default producer: idempotent, acks=all
        p = KafkaProducer(bootstrap_servers=strom_cluster.address(1), acks="all", linger_ms=5, request_timeout_ms=30000)
        try:
            futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 6) for i in range(120)]
            p.flush(30)
            metas = [f.get(timeout=30) for f in futures]
        finally:
            p.close()
        assert sorted((m.partition, m.offset) for m in metas) == sorted((part, o) for part in range(6) for o in range(20))

        def drained() -> bool:
            for c in consumers:
                polled = c.poll(timeout_ms=50)
                for records in polled.values():
                    got.extend(records)
                if polled:
                    c.commit()
            return len(got) >= 120

        wait_for("120 records consumed", drained, timeout=60)
        for c in consumers:
            assert not any(c.poll(timeout_ms=300).values())
        assert len({(r.partition, r.offset) for r in got}) == 120  # each record once
        for part in range(6):
            mine = [r for r in got if r.partition == part]
            assert [r.offset for r in mine] == list(range(20))
            assert [r.value for r in mine] == [f"v{i}".encode() for i in range(part, 120, 6)]
    finally:
        for c in consumers:
            c.close()

    admin = KafkaAdminClient(bootstrap_servers=strom_cluster.address(1), request_timeout_ms=30000)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        assert {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()} == {(topic, p): 20 for p in range(6)}
        cluster = admin.describe_cluster()
        assert sorted((b["broker_id"], f"{b['host']}:{b['port']}") for b in cluster["brokers"]) == [
            (n, strom_cluster.address(n)) for n in strom_cluster.nodes
        ]
        assert not any(b["is_fenced"] for b in cluster["brokers"])
        assert cluster["controller_id"] in (0, 1, 2)
    finally:
        admin.close()


def test_kafka_python_describe_log_dirs_per_broker(strom_cluster):
    topic = new_name("kpdirs")
    adm = strom_cluster.admin()
    futs = adm.create_topics([NewTopic(topic, num_partitions=3, replica_assignment=[[0, 1], [1, 2], [2, 0]])],
                             request_timeout=30)
    futs[topic].result(30)
    wait_for("the topic led", lambda: all(strom_cluster.leader(topic, p) >= 0 for p in range(3)))
    admin = KafkaAdminClient(bootstrap_servers=strom_cluster.address(2), request_timeout_ms=30000)
    try:
        expected = {0: [0, 2], 1: [0, 1], 2: [1, 2]}
        for node in strom_cluster.nodes:
            (answer,) = admin.describe_log_dirs({topic: [0, 1, 2]}, brokers=[node])
            assert answer["broker"] == node
            (log_dir,) = answer["log_dirs"]  # one data directory per broker
            assert log_dir["error_code"] == 0
            assert Path(log_dir["log_dir"]) == (Path(strom_cluster.data_dir) / f"broker-{node}").resolve()
            held = sorted((t["name"], p["partition_index"]) for t in log_dir["topics"] for p in t["partitions"])
            assert held == [(topic, p) for p in expected[node]], node
    finally:
        admin.close()


# --- aiokafka -----------------------------------------------------------------------------------


def test_aiokafka_producer_and_group_through_single_brokers(strom_cluster):
    topic = strom_cluster.create_topic(new_name("aio"), partitions=3, replication_factor=3)
    group = new_name("aiogroup")

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=strom_cluster.address(2), acks="all", linger_ms=5)
        await p.start()
        try:
            metas = [await fut for fut in [await p.send(topic, f"a{i}".encode(), key=f"k{i}".encode(), partition=i % 3)
                                           for i in range(90)]]
        finally:
            await p.stop()
        assert sorted((m.partition, m.offset) for m in metas) == sorted((part, o) for part in range(3) for o in range(30))

        c = AIOKafkaConsumer(topic, bootstrap_servers=strom_cluster.address(0), group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
                             session_timeout_ms=6000, heartbeat_interval_ms=300)
        await c.start()
        got: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while len(got) < 90:
                assert loop.time() < deadline, f"got {len(got)} of 90 records"
                batches = await c.getmany(timeout_ms=200)
                for records in batches.values():
                    got.extend(records)
                if batches:
                    await c.commit()
            tps = [AioTopicPartition(topic, part) for part in range(3)]
            assert [await c.committed(tp) for tp in tps] == [30, 30, 30]
        finally:
            await c.stop()
        assert len({(r.partition, r.offset) for r in got}) == 90
        for part in range(3):
            assert [r.value for r in got if r.partition == part] == [f"a{i}".encode() for i in range(part, 90, 3)]

        # A new member of the group, through another broker, resumes at the commits.
        p = AIOKafkaProducer(bootstrap_servers=strom_cluster.address(1), acks="all")
        await p.start()
        try:
            await p.send_and_wait(topic, b"later", partition=1)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=strom_cluster.address(1), group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
                             session_timeout_ms=6000, heartbeat_interval_ms=300)
        await c.start()
        try:
            more: list[Any] = []
            deadline = asyncio.get_running_loop().time() + 30
            while not more and asyncio.get_running_loop().time() < deadline:
                for records in (await c.getmany(timeout_ms=200)).values():
                    more.extend(records)
            more.extend(r for records in (await c.getmany(timeout_ms=500)).values() for r in records)
            assert [(r.partition, r.offset, r.value) for r in more] == [(1, 30, b"later")]
        finally:
            await c.stop()

    asyncio.run(asyncio.wait_for(main(), 150))

