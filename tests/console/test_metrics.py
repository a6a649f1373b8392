"""/metrics, /healthz and /readyz: values after known traffic from real clients, against a real
broker process; the metric names and labels of docs/metrics.md."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from strom.console.metrics import BrokerMetrics, api_name
from tests.conftest import Broker


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text, by name and labels (parsed with prometheus-client)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no {name}{labels} in\n{text}")


def test_api_names_are_kafkas():
    assert [api_name(k) for k in (0, 1, 17, 36, 60)] == ["Produce", "Fetch", "SaslHandshake", "SaslAuthenticate",
                                                         "DescribeCluster"]


def test_registries_stay_apart():
    a, b = BrokerMetrics(), BrokerMetrics()
    a.produced("t", 5, 100)
    assert a.registry.get_sample_value("strom_topic_messages_in_total", {"topic": "t"}) == 5
    assert b.registry.get_sample_value("strom_topic_messages_in_total", {"topic": "t"}) is None


@pytest.fixture
def metered(tmp_path):
    broker = Broker(tmp_path / "data", http=True)
    broker.start()
    broker.http = broker.http_port
    yield broker
    broker.stop()


def test_metrics_after_known_traffic(metered):
    topic = f"m-{uuid.uuid4().hex[:6]}"
    p = Producer({"bootstrap.servers": metered.bootstrap, "linger.ms": 5})
    for i in range(100):
        p.produce(topic, f"{i:010d}".encode(), partition=0)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": metered.bootstrap, "group.id": "m", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    while got < 100:
        msg = c.poll(5)
        assert msg is not None
        if msg.error() is None:
            got += 1
    c.close()
    status, text = get(metered.http, "/metrics")
    assert status == 200
    assert sample(text, "strom_topic_messages_in_total", topic=topic) == 100
    assert sample(text, "strom_topic_bytes_in_total", topic=topic) >= 100 * 10  # the record batches' bytes
    assert sample(text, "strom_topic_bytes_out_total", topic=topic) >= 100 * 10
    assert sample(text, "strom_partition_log_end_offset", topic=topic, partition="0") == 100
    assert sample(text, "strom_partition_size_bytes", topic=topic, partition="0") > 1000
    produced = sample(text, "strom_requests_total", api="Produce", error="NONE")
    assert produced >= 1
    assert sample(text, "strom_request_duration_seconds_count", api="Produce") == produced
    assert sample(text, "strom_requests_total", api="Metadata", error="NONE") >= 1
    assert sample(text, "strom_connections", listener="PLAINTEXT") >= 0
    assert "strom_under_replicated_partitions" not in text  # cluster mode only


def eventually(port: int, name: str, value: float, **labels: str) -> str:
    """Scrape until the sample has the value (a LeaveGroup or a marker lands a moment after
    the client call returns); the matching scrape's text."""
    deadline = time.monotonic() + 15
    while True:
        text = get(port, "/metrics")[1]
        try:
            if sample(text, name, **labels) == value:
                return text
        except AssertionError:
            pass  # no such sample yet
        assert time.monotonic() < deadline, f"{name}{labels} never became {value} in\n{text}"
        time.sleep(0.1)


def test_consumer_group_lag_and_members(metered):
    """N records per partition, a group commits k and leaves: lag N-k, 0 members, still
    reported; a group with a live member: 1 member."""
    topic = f"lag-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": metered.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2)])[topic].result(15)
    p = Producer({"bootstrap.servers": metered.bootstrap, "linger.ms": 5})
    for i in range(100):
        p.produce(topic, b"x", partition=i % 2)  # 50 per partition
    assert p.flush(30) == 0
    conf = {"bootstrap.servers": metered.bootstrap, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000}
    lagging = Consumer({**conf, "group.id": f"lagging-{topic}"})
    live = Consumer({**conf, "group.id": f"live-{topic}"})
    try:
        for c in (lagging, live):
            c.subscribe([topic])
            deadline = time.monotonic() + 30
            while len(c.assignment()) < 2:
                assert time.monotonic() < deadline, "no assignment"
                c.poll(0.2)
        lagging.commit(offsets=[TopicPartition(topic, 0, 20), TopicPartition(topic, 1, 45)], asynchronous=False)
        text = get(metered.http, "/metrics")[1]
        assert sample(text, "strom_consumer_group_members", group=f"lagging-{topic}") == 1
        assert sample(text, "strom_consumer_group_lag", group=f"lagging-{topic}", topic=topic, partition="0") == 30
        lagging.close()
        text = eventually(metered.http, "strom_consumer_group_members", 0, group=f"lagging-{topic}")
        assert sample(text, "strom_consumer_group_lag", group=f"lagging-{topic}", topic=topic, partition="0") == 30
        assert sample(text, "strom_consumer_group_lag", group=f"lagging-{topic}", topic=topic, partition="1") == 5
        assert sample(text, "strom_consumer_group_members", group=f"live-{topic}") == 1
        assert f'group="live-{topic}",' not in text  # no committed offsets: no lag series
    finally:
        live.close()


def test_lag_counts_committed_transactional_offsets_only(metered):
    topic = f"txl-{uuid.uuid4().hex[:6]}"
    group = f"txg-{topic}"
    p = Producer({"bootstrap.servers": metered.bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    p.begin_transaction()
    for _ in range(10):
        p.produce(topic, b"x", partition=0)
    p.commit_transaction(30)  # 10 records and a marker: the high watermark is 11
    c = Consumer({"bootstrap.servers": metered.bootstrap, "group.id": group})
    try:
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 4)], c.consumer_group_metadata(), 30)
        assert f'group="{group}",' not in get(metered.http, "/metrics")[1]  # pending until the marker
        p.commit_transaction(30)
        eventually(metered.http, "strom_consumer_group_lag", 7, group=group, topic=topic, partition="0")
    finally:
        c.close()


def test_health_checks(metered):
    assert get(metered.http, "/healthz") == (200, "ok\n")
    assert get(metered.http, "/readyz") == (200, "ready\n")
    assert get(metered.http, "/nothing")[0] == 404


def test_http_off_and_a_busy_default(tmp_path):
    broker = Broker(tmp_path / "data", extra_args=["--http", "off"])
    broker.start()
    try:
        assert "HTTP" not in broker.log_text(0)
    finally:
        broker.stop()


def test_a_broker_whose_http_port_was_taken_meanwhile_starts_on_another(tmp_path):
    """The harness's free ports race with other test processes (seen in CI): it picks again."""
    broker = Broker(tmp_path / "data", http=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker.http_port = taken.getsockname()[1]
        broker.start()
        try:
            assert broker.http_port != taken.getsockname()[1]
            assert get(broker.http_port, "/healthz") == (200, "ok\n")
        finally:
            broker.stop()
