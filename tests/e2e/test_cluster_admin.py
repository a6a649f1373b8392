"""Partition reassignment and preferred leader election on a real 3-broker cluster
(strom.Cluster: etcd and three ``strom serve`` processes), driven by real admin clients:
kafka-python's KafkaAdminClient for AlterPartitionReassignments / ListPartitionReassignments
(confluent-kafka has no call for them), confluent-kafka's AdminClient.elect_leaders."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from confluent_kafka import ElectionType
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaPartition

from strom.cluster.etcd_server import EtcdNotFound
from strom.protocol.errors import ErrorCode
from strom.testing.cluster import Cluster

from .helpers import consume, produce_many, producer

pytestmark = pytest.mark.timeout(180)

SESSION_MS = 3000
T = TypeVar("T")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # No automatic leader rebalancing: leadership moves back only because the test asks.
    cluster = Cluster(3, session_timeout_ms=SESSION_MS, config={"auto.leader.rebalance.enable": False})
    try:
        cluster.start()
    except EtcdNotFound:
        pytest.skip("etcd is not installed")
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # a broker restarting, a metadata answer in flux
            last = exc
        else:
            if last is not None and last is not False:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def create_assigned_topic(cluster: Cluster, name: str, assignment: list[list[int]]) -> None:
    admin = cluster.admin()
    admin.create_topics([NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment)], request_timeout=30)[name].result(30)
    wait_for(f"{name} led", lambda: all(cluster.leader(name, p) >= 0 for p in range(len(assignment))))


def partition_metadata(cluster: Cluster, topic: str, partition: int = 0) -> Any:
    md = cluster.admin().list_topics(topic, timeout=5)
    return md.topics[topic].partitions[partition]


def values(cluster: Cluster, topic: str, count: int) -> list[bytes]:
    return [m.value() for m in consume(cluster.bootstrap_servers, topic, [0], count=count)]


def produce(cluster: Cluster, topic: str, batch: str, count: int = 50) -> list[bytes]:
    sent = [f"{batch}-{i}".encode() for i in range(count)]
    p = producer(cluster.bootstrap_servers, acks="all", retries=100)
    produce_many(p, topic, [{"value": v, "partition": 0} for v in sent])
    return sent


def test_reassignment_moves_the_partition(cluster: Cluster) -> None:
    topic = "moving"
    create_assigned_topic(cluster, topic, [[0, 1]])
    before = produce(cluster, topic, "before")
    assert cluster.data_dir is not None
    log_dir = cluster.data_dir / "broker-0" / f"{topic}-0"
    assert log_dir.is_dir()

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=30_000)
    try:
        tp = KafkaPartition(topic, 0)
        assert admin.list_partition_reassignments() == {}
        assert admin.alter_partition_reassignments({tp: [1, 2]}) == {tp: None}

        def done() -> bool:
            if admin.list_partition_reassignments():
                return False
            md = partition_metadata(cluster, topic)
            return list(md.replicas) == [1, 2] and set(md.isrs) <= {1, 2}

        wait_for("the reassignment to complete", done)
        assert admin.list_partition_reassignments([tp]) == {}
        # Nothing runs any more: a cancel is refused.
        errors = admin.alter_partition_reassignments({tp: None})
        assert errors[tp] is not None and errors[tp].errno == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    finally:
        admin.close()

    after = produce(cluster, topic, "after")
    assert values(cluster, topic, len(before) + len(after)) == before + after
    # Broker 0 is no replica any more: its log is gone; broker 2 has one now.
    broker0 = cluster.data_dir / "broker-0"
    wait_for("broker 0 to delete its log", lambda: not any(p.name.startswith(f"{topic}-0") for p in broker0.iterdir()))
    assert (cluster.data_dir / "broker-2" / f"{topic}-0").is_dir()
    # The new replica holds every record: with broker 1 stopped, broker 2 leads and serves them.
    cluster.stop_broker(1)
    wait_for("broker 2 to lead", lambda: cluster.leader(topic) == 2)
    assert values(cluster, topic, len(before) + len(after)) == before + after


def test_preferred_election_after_a_restart(cluster: Cluster) -> None:
    topic = "preferred"
    create_assigned_topic(cluster, topic, [[0, 1, 2]])
    assert cluster.leader(topic) == 0
    before = produce(cluster, topic, "before")

    cluster.stop_broker(0)  # SIGTERM: a clean stop
    failed_over = wait_for("a failover", lambda: cluster.leader(topic) in (1, 2) and cluster.leader(topic))
    during = produce(cluster, topic, "during")
    cluster.start_broker(0)
    wait_for("broker 0 back in the ISR", lambda: 0 in partition_metadata(cluster, topic).isrs)
    assert cluster.leader(topic) == failed_over  # nothing moved it back by itself

    admin = cluster.admin()
    tp = ConfluentPartition(topic, 0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(30)
    assert [(p.topic, p.partition) for p in result] == [(topic, 0)]
    assert list(result.values()) == [None]
    wait_for("broker 0 to lead", lambda: partition_metadata(cluster, topic).leader == 0)
    # Leading already: nothing to elect.
    again = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(30)
    [error] = again.values()
    assert error is not None and error.code() == ErrorCode.ELECTION_NOT_NEEDED

    after = produce(cluster, topic, "after")
    assert values(cluster, topic, len(before) + len(during) + len(after)) == before + during + after

