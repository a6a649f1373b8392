"""kafka-python (pure Python client) against a real strom broker."""

from __future__ import annotations

import time

import kafka.errors as Errors
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    yield a
    a.close()


def make_producer(broker, **kw) -> KafkaProducer:
    # kafka-python's defaults: an idempotent producer with acks=all.
    conf = {"bootstrap_servers": broker.bootstrap, "linger_ms": 5, "request_timeout_ms": 30000}
    conf.update(kw)
    return KafkaProducer(**conf)


def make_consumer(broker, **kw) -> KafkaConsumer:
    conf = {
        "bootstrap_servers": broker.bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": 100,
        "request_timeout_ms": 30000,
    }
    conf.update(kw)
    return KafkaConsumer(**conf)


def create(kadmin, topic: str, partitions: int = 1, configs: dict | None = None) -> None:
    spec = {"num_partitions": partitions, "replication_factor": 1}
    if configs:
        spec["configs"] = configs
    kadmin.create_topics({topic: spec}, wait_for_metadata=True)


def read(broker, topic: str, partitions: dict[int, int], count: int, timeout: float = 30, **kw) -> list:
    """assign() + seek() and poll until `count` records arrived (bounded)."""
    c = make_consumer(broker, **kw)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, partitions[tp.partition])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(out)} of {count} records after {timeout}s")
            for recs in c.poll(timeout_ms=200, max_records=10000).values():
                out.extend(recs)
        # nothing beyond what was expected shows up
        extra = c.poll(timeout_ms=200)
        assert not any(extra.values()), extra
        return out
    finally:
        c.close()


def test_produce_consume_roundtrip(broker, kadmin, unique_topic):
    topic = unique_topic()
    create(kadmin, topic)
    p = make_producer(broker)
    sent = [
        (b"k1", b"v1", []),
        (None, b"null key", []),
        (b"tombstone", None, []),
        (b"h", b"with headers", [("h1", b"a"), ("h2", b"")]),
        (b"", b"", []),
    ]
    metas = [p.send(topic, key=k, value=v, headers=h).get(timeout=30) for k, v, h in sent]
    assert [m.offset for m in metas] == list(range(len(sent)))
    assert all(m.partition == 0 and m.topic == topic for m in metas)
    p.close()
    recs = read(broker, topic, {0: 0}, len(sent))
    assert [(r.key, r.value, list(r.headers)) for r in recs] == sent
    assert [r.offset for r in recs] == list(range(len(sent)))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, kadmin, unique_topic, codec):
    topic = unique_topic()
    create(kadmin, topic)
    p = make_producer(broker, compression_type=codec, linger_ms=20, batch_size=256 * 1024)
    n = 1000
    values = [(f"{codec} record {i} " + "x" * (i % 100)).encode() for i in range(n)]
    futs = [p.send(topic, key=str(i).encode(), value=v) for i, v in enumerate(values)]
    p.flush(timeout=30)
    assert sorted(f.get(timeout=30).offset for f in futs) == list(range(n))
    p.close()
    recs = read(broker, topic, {0: 0}, n)
    assert [r.value for r in recs] == values
    assert [r.key for r in recs] == [str(i).encode() for i in range(n)]
    # start in the middle of a compressed batch
    tail = read(broker, topic, {0: 777}, n - 777)
    assert [r.offset for r in tail] == list(range(777, n))


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(broker, kadmin, unique_topic, acks):
    topic = unique_topic()
    create(kadmin, topic)
    # Idempotence needs acks=all; the weaker acks need it switched off, as with Kafka.
    p = make_producer(broker, acks=acks, **({} if acks == "all" else {"enable_idempotence": False}))
    futs = [p.send(topic, value=f"v{i}".encode()) for i in range(100)]
    p.flush(timeout=30)
    metas = [f.get(timeout=30) for f in futs]
    if acks != 0:
        assert [m.offset for m in metas] == list(range(100))
    p.close()
    recs = read(broker, topic, {0: 0}, 100)
    assert [r.value for r in recs] == [f"v{i}".encode() for i in range(100)]


def test_multi_partition_and_offsets(broker, kadmin, unique_topic):
    topic = unique_topic()
    create(kadmin, topic, partitions=4)
    p = make_producer(broker)
    for i in range(400):
        p.send(topic, value=f"{i % 4}:{i // 4}".encode(), partition=i % 4)
    p.flush(timeout=30)
    p.close()
    c = make_consumer(broker)
    try:
        tps = [TopicPartition(topic, i) for i in range(4)]
        assert c.end_offsets(tps) == {tp: 100 for tp in tps}
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert c.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        c.close()
    recs = read(broker, topic, {i: 50 for i in range(4)}, 200)
    by_part: dict[int, list] = {}
    for r in recs:
        by_part.setdefault(r.partition, []).append(r)
    for part, rs in by_part.items():
        assert [r.offset for r in rs] == list(range(50, 100))
        assert [r.value for r in rs] == [f"{part}:{i}".encode() for i in range(50, 100)]


def test_offsets_for_times(broker, kadmin, unique_topic):
    topic = unique_topic()
    create(kadmin, topic)
    base = 1_650_000_000_000
    p = make_producer(broker)
    for i in range(10):
        p.send(topic, value=b"x", timestamp_ms=base + i * 100)
    p.flush(timeout=30)
    p.close()
    c = make_consumer(broker)
    try:
        tp = TopicPartition(topic, 0)
        res = c.offsets_for_times({tp: base + 450})
        assert res[tp].offset == 5 and res[tp].timestamp == base + 500
        assert c.offsets_for_times({tp: base + 10_000})[tp] is None
    finally:
        c.close()


def test_admin_create_and_delete_topics(broker, kadmin, unique_topic):
    topic = unique_topic()
    kadmin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}}, wait_for_metadata=True)
    assert topic in kadmin.list_topics()
    (desc,) = kadmin.describe_topics([topic])
    assert desc["error_code"] == 0
    assert len(desc["partitions"]) == 3
    with pytest.raises(Errors.TopicAlreadyExistsError):
        kadmin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(Errors.InvalidReplicationFactorError):
        kadmin.create_topics({unique_topic("rf3"): {"num_partitions": 1, "replication_factor": 3}})
    kadmin.delete_topics([topic])
    deadline = time.monotonic() + 15
    while topic in kadmin.list_topics():
        assert time.monotonic() < deadline, "topic still listed after delete"
        time.sleep(0.05)
    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        kadmin.delete_topics([topic])


def test_admin_validate_only(kadmin, unique_topic):
    topic = unique_topic()
    kadmin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}}, validate_only=True)
    assert topic not in kadmin.list_topics()


def test_auto_create_on_send(broker, kadmin, unique_topic):
    topic = unique_topic()
    p = make_producer(broker)
    meta = p.send(topic, value=b"auto").get(timeout=30)
    assert meta.offset == 0
    p.close()
    assert topic in kadmin.list_topics()
    recs = read(broker, topic, {meta.partition: 0}, 1)
    assert recs[0].value == b"auto"


def test_large_record(broker, kadmin, unique_topic):
    topic = unique_topic()
    create(kadmin, topic)
    big = bytes(range(256)) * (900 * 4)  # 900 KiB
    p = make_producer(broker, max_request_size=2_000_000)
    meta = p.send(topic, value=big).get(timeout=30)
    assert meta.offset == 0
    p.close()
    recs = read(broker, topic, {0: 0}, 1, max_partition_fetch_bytes=2_000_000, fetch_max_bytes=4_000_000)
    assert recs[0].value == big
