"""Durability across broker restarts (SIGTERM, and SIGKILL) with the same data dir and port."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    ResourceType,
)

from .helpers import (
    DeliveryLog,
    admin,
    consume,
    consumer,
    create_topic,
    flush,
    produce_many,
    producer,
    wait_for_topic,
    watermarks,
)

pytestmark = pytest.mark.timeout(180)


def produce_acked(p, topic: str, start: int, n: int, partitions: int) -> DeliveryLog:
    return produce_many(
        p, topic, [{"key": str(i).encode(), "value": f"value-{i}".encode(), "partition": i % partitions} for i in range(start, start + n)]
    )


def check_all(bootstrap: str, topic: str, partitions: int, acked: list) -> None:
    """Everything in `acked` (delivery reports) is readable at its offset with its value."""
    msgs = consume(bootstrap, topic, list(range(partitions)), timeout=60)
    got = {(m.partition(), m.offset()): m.value() for m in msgs}
    missing = [(r.partition, r.offset) for r in acked if got.get((r.partition, r.offset)) != r.value]
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {missing[:5]}"
    for part in range(partitions):
        offs = sorted(o for (p, o) in got if p == part)
        assert offs == list(range(len(offs))), f"partition {part}: offsets not contiguous"


def test_sigterm_restart_keeps_acknowledged_records(fresh_broker, unique_topic):
    b = fresh_broker
    topic = unique_topic()
    parts = 3
    create_topic(b.bootstrap, topic, partitions=parts)
    p = producer(b.bootstrap, acks="all", **{"linger.ms": 10})
    log1 = produce_acked(p, topic, 0, 3000, parts)
    assert len(log1.reports) == 3000

    t0 = time.monotonic()
    b.restart()  # SIGTERM, must exit 0, then start on the same port and data dir
    print(f"restart took {time.monotonic() - t0:.2f}s")

    check_all(b.bootstrap, topic, parts, log1.reports)
    # the same producer instance reconnects and offsets continue where they were
    log2 = produce_acked(p, topic, 3000, 600, parts)
    for part in range(parts):
        offs = [r.offset for r in log2.reports if r.partition == part]
        assert offs == list(range(1000, 1200)), (part, offs[:5])
    check_all(b.bootstrap, topic, parts, log1.reports + log2.reports)
    for part in range(parts):
        assert watermarks(b.bootstrap, topic, part) == (0, 1200)


def test_restart_twice_and_new_producer(fresh_broker, unique_topic):
    b = fresh_broker
    topic = unique_topic()
    create_topic(b.bootstrap, topic)
    acked = []
    for round_ in range(3):
        p = producer(b.bootstrap, acks="all")
        log = produce_many(p, topic, [{"value": f"r{round_}-{i}".encode()} for i in range(100)])
        assert [r.offset for r in log.reports] == list(range(round_ * 100, round_ * 100 + 100))
        acked += log.reports
        b.restart()
    check_all(b.bootstrap, topic, 1, acked)


def test_consumer_survives_restart(fresh_broker, unique_topic):
    """An assigned consumer keeps its position across a broker restart and gets new records."""
    b = fresh_broker
    topic = unique_topic()
    create_topic(b.bootstrap, topic)
    p = producer(b.bootstrap, acks="all")
    produce_many(p, topic, [{"value": f"a{i}".encode()} for i in range(10)])
    c = consumer(b.bootstrap, **{"reconnect.backoff.max.ms": 200})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            got += [m for m in c.consume(100, timeout=0.2) if m.error() is None]
        assert [m.value() for m in got] == [f"a{i}".encode() for i in range(10)]
        b.restart()
        produce_many(p, topic, [{"value": f"b{i}".encode()} for i in range(10)])
        more = []
        deadline = time.monotonic() + 30
        while len(more) < 10 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.2):
                if m.error() is None:
                    more.append(m)
                elif m.error().code() not in (KafkaError._PARTITION_EOF, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                    raise AssertionError(m.error())
        assert [(m.offset(), m.value()) for m in more] == [(10 + i, f"b{i}".encode()) for i in range(10)]
    finally:
        c.close()


def test_restart_keeps_topic_metadata(fresh_broker, unique_topic):
    b = fresh_broker
    a = admin(b.bootstrap)
    kept, deleted = unique_topic("kept"), unique_topic("deleted")
    create_topic(b.bootstrap, kept, partitions=2, config={"retention.ms": "86400000"})
    create_topic(b.bootstrap, deleted)
    a.create_partitions([NewPartitions(kept, 4)])[kept].result(30)
    res = ConfigResource(
        ResourceType.TOPIC,
        kept,
        incremental_configs=[ConfigEntry("segment.bytes", "2097152", incremental_operation=AlterConfigOpType.SET)],
    )
    a.incremental_alter_configs([res])[res].result(30)
    a.delete_topics([deleted])[deleted].result(30)
    p = producer(b.bootstrap, acks="all")
    produce_many(p, kept, [{"value": f"{i}".encode(), "partition": 3} for i in range(50)])
    (fut,) = a.delete_records([TopicPartition(kept, 3, 20)]).values()
    assert fut.result(30).low_watermark == 20

    b.restart()

    a = admin(b.bootstrap)
    t = wait_for_topic(a, kept, 4)
    assert sorted(t.partitions) == [0, 1, 2, 3]
    md = a.list_topics(timeout=10)
    assert deleted not in md.topics
    cr = ConfigResource(ResourceType.TOPIC, kept)
    cfg = a.describe_configs([cr])[cr].result(30)
    assert cfg["retention.ms"].value == "86400000"
    assert ConfigSource(cfg["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert cfg["segment.bytes"].value == "2097152"
    assert watermarks(b.bootstrap, kept, 3) == (20, 50)
    msgs = consume(b.bootstrap, kept, [3])
    assert [m.offset() for m in msgs] == list(range(20, 50))


def test_kill9_keeps_acknowledged_records(fresh_broker, unique_topic):
    """SIGKILL (no clean shutdown): every record acknowledged with acks=all is still there."""
    b = fresh_broker
    topic = unique_topic()
    create_topic(b.bootstrap, topic, partitions=2)
    p = producer(b.bootstrap, acks="all", **{"linger.ms": 2})
    log = produce_acked(p, topic, 0, 2000, 2)
    b.kill9()
    b.start()
    check_all(b.bootstrap, topic, 2, log.reports)
    # and it keeps going
    log2 = produce_acked(p, topic, 2000, 20, 2)
    for part in range(2):
        offs = [r.offset for r in log2.reports if r.partition == part]
        assert offs == list(range(1000, 1010))


def test_kill9_during_produce_recovers(fresh_broker, unique_topic):
    """SIGKILL while records are in flight: the broker restarts, acked records are intact,
    offsets stay contiguous, and producing continues."""
    b = fresh_broker
    topic = unique_topic()
    create_topic(b.bootstrap, topic)
    p = producer(b.bootstrap, acks="all", **{"linger.ms": 1, "message.timeout.ms": 30000, "retries": 0})
    log = DeliveryLog()
    for i in range(20000):
        while True:
            try:
                p.produce(topic, value=f"v{i}".encode(), on_delivery=log)
                break
            except BufferError:
                p.poll(0.01)
        if i == 10000:
            # let some be acknowledged, then kill while the rest are in flight
            p.poll(0.05)
            b.kill9()
            break
    b.start()
    flush(p, 60)
    acked = [r for r in log.reports if r.error is None]
    assert acked, "nothing was acknowledged"
    check_all(b.bootstrap, topic, 1, acked)
    lo, hi = watermarks(b.bootstrap, topic)
    log2 = produce_many(producer(b.bootstrap, acks="all"), topic, [{"value": b"after"}])
    assert log2.reports[0].offset == hi
