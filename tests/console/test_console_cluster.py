"""The console of one broker of a real 3-broker cluster (strom.Cluster: etcd and three
``strom serve`` processes) shows the whole cluster: partitions led elsewhere (offsets, sizes,
messages, a produce from the form), a group coordinated elsewhere (lag, offset reset), other
brokers' pages."""

from __future__ import annotations

import html
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.cluster.etcd_server import EtcdNotFound
from strom.testing.cluster import Cluster

pytestmark = pytest.mark.timeout(180)

TOPIC = "spread"
PER_PARTITION = 30


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(3, config={"console.sample.interval.ms": 500})
    try:
        cluster.start()
    except EtcdNotFound:
        pytest.skip("etcd is not installed")
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        # one partition on each broker, so broker 0 holds only partition 2
        admin.create_topics([NewTopic(TOPIC, num_partitions=3, replica_assignment=[[1], [2], [0]])])[TOPIC].result()
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
        for partition in range(3):
            for i in range(PER_PARTITION):
                producer.produce(TOPIC, key=f"k{i}", value=f"p{partition}-v{i}", partition=partition)
        assert producer.flush(30) == 0
        yield cluster
    finally:
        cluster.stop()


def page(cluster: Cluster, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(f"http://{cluster.http_address(0)}{path}", data=data, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def rows(text: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">(.*?)</table>', text, re.S)
    assert body is not None, text
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S) if "<td" in row]


def test_partitions_led_elsewhere_are_shown(cluster):
    status, text = page(cluster, "/")
    assert status == 200
    assert [r[0] for r in rows(text, "brokers")] == ["0", "1", "2"]
    spread = next(r for r in rows(text, "topics") if r[0] == TOPIC)
    assert spread[1:4] == ["3", "1", str(3 * PER_PARTITION)]
    assert "?" not in spread[5]  # sizes of remote partitions from their leaders

    status, text = page(cluster, f"/topics/{TOPIC}")
    partitions = rows(text, "partitions")
    assert [(p[0], p[2], p[5]) for p in partitions] == [("0", "30", "1"), ("1", "30", "2"), ("2", "30", "0")]
    assert all(not p[4].startswith("?") for p in partitions)
    status, text = page(cluster, f"/topics/{TOPIC}?q=-v{PER_PARTITION - 1}")  # searches every leader
    assert sorted(m[4] for m in rows(text, "messages")) == [f"p{p}-v{PER_PARTITION - 1}" for p in range(3)]

    status, text = page(cluster, f"/topics/{TOPIC}?partition=1&offset=10&limit=3")  # led by broker 2
    assert [(m[1], m[4]) for m in rows(text, "messages")] == [("10", "p1-v10"), ("11", "p1-v11"), ("12", "p1-v12")]


def test_produce_to_a_partition_led_elsewhere(cluster):
    status, text = page(cluster, f"/topics/{TOPIC}/produce", {"partition": "0", "key": "web", "value": "hello"})
    assert status == 200
    assert f"Produced to partition 0 at offset {PER_PARTITION}." in text
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "check"})
    consumer.assign([TopicPartition(TOPIC, 0, PER_PARTITION)])
    message = None
    deadline = time.monotonic() + 20
    while message is None and time.monotonic() < deadline:
        message = consumer.poll(1)
    consumer.close()
    assert message is not None and (message.key(), message.value()) == (b"web", b"hello")


def test_a_group_coordinated_elsewhere(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    committed = 5
    remote = None
    for i in range(12):
        group = f"g{i}"
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
        consumer.commit(offsets=[TopicPartition(TOPIC, p, committed) for p in range(3)], asynchronous=False)
        consumer.close()
        if admin.describe_consumer_groups([group])[group].result().coordinator.id != 0:
            remote = group
            break
    assert remote is not None, "every group landed on broker 0"

    status, text = page(cluster, f"/groups/{remote}")
    assert status == 200, text
    offsets = rows(text, "offsets")
    assert [(o[1], o[2]) for o in offsets] == [("0", "5"), ("1", "5"), ("2", "5")]
    assert sum(int(o[4]) for o in offsets) >= 3 * (PER_PARTITION - committed)

    status, text = page(cluster, f"/groups/{remote}/reset", {"to": "earliest"})
    assert "Reset 3 partitions to the earliest offsets." in text
    assert [o[2] for o in rows(text, "offsets")] == ["0", "0", "0"]

    status, text = page(cluster, "/")
    assert remote in [g[0] for g in rows(text, "groups")]


def test_broker_pages(cluster):
    status, text = page(cluster, "/brokers/1")
    assert status == 200
    assert [(r[0], r[1], r[2]) for r in rows(text, "replicas") if r[0] == TOPIC] == [(TOPIC, "0", "leader")]
    status, text = page(cluster, "/brokers/9")
    assert status == 404 and "Broker 9 is not in the cluster" in text
