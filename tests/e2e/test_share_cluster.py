"""Share groups on a real 3-broker cluster (strom.Cluster): the share state is replicated with
``__share_group_state``, so when the leader of a partition is killed (kill -9) the new leader
loads it: no accepted record is delivered again, and every record not accepted is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from strom.cluster.etcd_server import EtcdNotFound
from strom.testing.cluster import Cluster

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(3, session_timeout_ms=3000, config={
        "group.share.min.heartbeat.interval.ms": 100, "group.share.heartbeat.interval.ms": 300,
        "group.share.min.session.timeout.ms": 1000, "group.share.session.timeout.ms": 6000})
    try:
        cluster.start()
    except EtcdNotFound:
        pytest.skip("etcd is not installed")
    try:
        yield cluster
    finally:
        cluster.stop()


def consume(cluster: Cluster, group: str, topic: str, act: Any, until: Any, timeout: float = 60.0) -> None:
    consumer = ShareConsumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group,
                              "share.acknowledgement.mode": "explicit", "max.poll.records": 20})
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert time.monotonic() < deadline, "timed out"
            for message in consumer.poll(0.5):
                if message.error() is None:
                    act(consumer, message)
        consumer.commit_sync()
    finally:
        consumer.close()


def test_the_share_state_survives_the_leaders_death(cluster: Cluster) -> None:
    topic, group = f"jobs-{uuid.uuid4().hex[:6]}", f"workers-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(30)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
    for i in range(20):
        producer.produce(topic, value=f"job-{i}")
    assert producer.flush(30) == 0

    accepted: set[str] = set()

    def accept_first_half(consumer: ShareConsumer, message: Any) -> None:
        value = message.value().decode()
        if int(value.split("-")[1]) < 10:
            consumer.acknowledge(message, AcknowledgeType.ACCEPT)
            accepted.add(value)
        else:
            consumer.acknowledge(message, AcknowledgeType.RELEASE)

    consume(cluster, group, topic, accept_first_half, lambda: len(accepted) == 10)

    leader = cluster.leader(topic)
    cluster.kill(leader)
    deadline = time.monotonic() + 60
    while cluster.leader(topic) in (leader, -1):
        assert time.monotonic() < deadline, "no new leader"
        time.sleep(0.2)

    seen: list[str] = []

    def accept_all(consumer: ShareConsumer, message: Any) -> None:
        seen.append(message.value().decode())
        consumer.acknowledge(message, AcknowledgeType.ACCEPT)

    consume(cluster, group, topic, accept_all, lambda: len(seen) >= 10)
    assert sorted(seen) == sorted(f"job-{i}" for i in range(10, 20))
