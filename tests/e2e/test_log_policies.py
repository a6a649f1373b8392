"""Retention, compaction and segment rolling through a live broker, with topic configs set at
creation and changed at run time (no restart)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from conftest import Broker

from .helpers import admin, consume, create_topic, produce_many, producer, watermarks

pytestmark = pytest.mark.timeout(120)

FAST = ("-o", "log.retention.check.interval.ms=200", "-o", "log.cleaner.backoff.ms=200")


@pytest.fixture(scope="module")
def fast_broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("policies")
    b = Broker(base / "data", log_dir=base, extra_args=FAST)
    b.start()
    yield b
    b.stop()


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s")


def segment_files(b: Broker, topic: str, partition: int = 0) -> list[str]:
    return sorted(p.name for p in (b.data_dir / f"{topic}-{partition}").glob("*.log"))


def test_segments_roll_by_segment_ms(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic, config={"segment.ms": "100"})
    p = producer(fast_broker.bootstrap)
    for round_ in range(3):
        produce_many(p, topic, [{"value": f"{round_}-{i}".encode()} for i in range(10)])
        time.sleep(0.15)
    assert len(segment_files(fast_broker, topic)) >= 3
    assert [m.offset() for m in consume(fast_broker.bootstrap, topic)] == list(range(30))


def test_time_retention_deletes_old_segments(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic, config={"retention.ms": "60000", "segment.ms": "1000"})
    p = producer(fast_broker.bootstrap)
    old = int(time.time() * 1000) - 3_600_000
    produce_many(p, topic, [{"value": b"old", "timestamp": old + i} for i in range(20)])
    produce_many(p, topic, [{"value": b"new"} for _ in range(5)])  # rolls: an hour later
    wait_until(lambda: watermarks(fast_broker.bootstrap, topic) == (20, 25), what="log start at 20")
    assert [m.value() for m in consume(fast_broker.bootstrap, topic)] == [b"new"] * 5


def test_retention_change_takes_effect_without_restart(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic, config={"segment.ms": "1000"})
    p = producer(fast_broker.bootstrap)
    old = int(time.time() * 1000) - 3_600_000
    produce_many(p, topic, [{"value": b"old", "timestamp": old}])
    produce_many(p, topic, [{"value": b"new"}])
    time.sleep(0.6)
    assert watermarks(fast_broker.bootstrap, topic) == (0, 2)  # default retention: 7 days
    res = ConfigResource(
        ResourceType.TOPIC, topic,
        incremental_configs=[ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)],
    )
    adm = admin(fast_broker.bootstrap)  # keep a reference: a collected client fails its futures
    adm.incremental_alter_configs([res])[res].result(30)
    wait_until(lambda: watermarks(fast_broker.bootstrap, topic)[0] == 1, what="retention after alter")


def test_size_retention(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(
        fast_broker.bootstrap, topic,
        config={"segment.bytes": str(1024 * 1024), "retention.bytes": str(1024 * 1024)},
    )
    p = producer(fast_broker.bootstrap, **{"compression.type": "none", "batch.size": 65536})
    produce_many(p, topic, [{"value": bytes(1000)} for _ in range(4000)])  # about 4 MiB
    low, high = wait_until(
        lambda: (w := watermarks(fast_broker.bootstrap, topic))[0] > 0 and w, what="size retention"
    )
    assert high == 4000 and low >= 1000
    assert len(segment_files(fast_broker, topic)) <= 3


def test_compaction_keeps_the_latest_value_per_key(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(
        fast_broker.bootstrap, topic,
        config={"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
                "delete.retention.ms": "100"},
    )
    p = producer(fast_broker.bootstrap)
    latest = {}
    for round_ in range(5):
        records = [{"key": f"k{i}".encode(), "value": f"r{round_}-k{i}".encode()} for i in range(20)]
        produce_many(p, topic, records)
        latest.update({r["key"]: r["value"] for r in records})
        time.sleep(0.15)
    produce_many(p, topic, [{"key": b"k0", "value": None}])  # a tombstone for k0
    del latest[b"k0"]
    time.sleep(0.15)
    produce_many(p, topic, [{"key": b"other", "value": b"rolls the tombstone's segment"}])
    latest[b"other"] = b"rolls the tombstone's segment"

    def compacted():
        msgs = consume(fast_broker.bootstrap, topic)
        seen = {m.key(): m.value() for m in msgs}
        return len(msgs) <= len(latest) + 1 and seen.get(b"k0") is None and msgs

    msgs = wait_until(compacted, timeout=60, what="compaction")
    seen = {m.key(): m.value() for m in msgs}
    assert {k: v for k, v in seen.items() if v is not None} == latest
    offsets = [m.offset() for m in msgs]
    assert offsets == sorted(offsets) and offsets[-1] == 101  # offsets never change
    assert watermarks(fast_broker.bootstrap, topic)[1] == 102


def test_compacted_topic_refuses_records_without_keys(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    p = producer(fast_broker.bootstrap, **{"message.timeout.ms": 5000, "retries": 0})
    errors = []
    p.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() == 87 or "INVALID_RECORD" in errors[0].name()


def test_only_the_keyless_records_of_a_batch_fail_as_invalid(fast_broker, unique_topic):
    """librdkafka's test 0011: one batch of 100 records, every tenth without a key, to a
    compacted topic. Kafka names the ten in record_errors (KIP-467): those fail with
    INVALID_RECORD, the other 90 with _INVALID_DIFFERENT_RECORD (refused with their batch)."""
    from confluent_kafka import KafkaError

    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    p = producer(fast_broker.bootstrap, **{"message.timeout.ms": 10000, "retries": 0, "linger.ms": 200})
    errors = []
    for i in range(100):
        p.produce(topic, key=None if i % 10 == 0 else f"k{i}".encode(), value=b"v", partition=0,
                  on_delivery=lambda err, msg: errors.append(err.code() if err else None))
    p.flush(20)
    assert errors.count(KafkaError.INVALID_RECORD) == 10
    assert errors.count(KafkaError._INVALID_DIFFERENT_RECORD) == 90


def test_topic_compression_type_converts_batches(fast_broker, unique_topic):
    from strom.protocol.records import COMPRESSION_GZIP, read_header

    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic, config={"compression.type": "gzip"})
    p = producer(fast_broker.bootstrap, **{"compression.type": "none"})
    produce_many(p, topic, [{"key": f"{i}".encode(), "value": b"abc" * 100} for i in range(50)])
    data = (fast_broker.data_dir / f"{topic}-0" / "00000000000000000000.log").read_bytes()
    assert read_header(data).compression == COMPRESSION_GZIP
    assert len(data) < 50 * 300  # stored compressed
    msgs = consume(fast_broker.bootstrap, topic)
    assert [m.key() for m in msgs] == [f"{i}".encode() for i in range(50)]


def test_timestamp_far_in_the_future_is_refused(fast_broker, unique_topic):
    topic = unique_topic()
    create_topic(fast_broker.bootstrap, topic)
    p = producer(fast_broker.bootstrap, **{"message.timeout.ms": 5000, "retries": 0})
    errors = []
    future = int(time.time() * 1000) + 2 * 3_600_000
    p.produce(topic, value=b"later", timestamp=future, on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None and errors[0].code() == 32  # INVALID_TIMESTAMP
