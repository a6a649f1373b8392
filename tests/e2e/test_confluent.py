"""confluent-kafka (librdkafka) producer/consumer against a real strom broker.

Consumers use assign() with explicit offsets and enable.auto.commit=False: no consumer groups.
"""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
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

pytestmark = pytest.mark.timeout(120)


def test_keys_values_headers_null_key_tombstone(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    ts0 = int(time.time() * 1000)
    records = [
        {"key": b"k1", "value": b"v1"},
        {"key": b"k2", "value": b"v2", "headers": [("h1", b"x"), ("h2", b"")]},
        {"key": None, "value": b"null-key"},
        {"key": b"tombstone", "value": None},
        {"key": None, "value": None},
        {"key": b"", "value": b""},
        {"key": b"dup-headers", "value": b"v", "headers": [("a", b"1"), ("a", b"2"), ("n", None)]},
        {"key": "unicode-ключ".encode(), "value": "ünïcødé ✓".encode(), "headers": [("ü", "é".encode())]},
        {"key": bytes(range(256)), "value": bytes(range(256)) * 4},
        {"key": b"ts", "value": b"explicit-ts", "timestamp": 1_600_000_000_123},
    ]
    p = producer(broker.bootstrap)
    log = produce_many(p, topic, records)
    assert [r.offset for r in log.reports] == list(range(len(records)))
    assert all(r.partition == 0 for r in log.reports)

    msgs = consume(broker.bootstrap, topic, [0])
    assert len(msgs) == len(records)
    for i, (m, rec) in enumerate(zip(msgs, records, strict=True)):
        assert m.offset() == i
        assert m.key() == rec["key"], i
        assert m.value() == rec["value"], i
        want_headers = rec.get("headers")
        got = m.headers()
        if want_headers:
            assert [(k, v) for k, v in got] == want_headers, i
        else:
            assert not got, (i, got)
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_CREATE_TIME
        if "timestamp" in rec:
            assert ts == rec["timestamp"]
        else:
            assert ts0 - 60_000 <= ts <= int(time.time() * 1000) + 60_000


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_roundtrip(broker, unique_topic, codec):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    n = 2000
    records = [
        {
            "key": f"key-{i % 17}".encode(),
            "value": (f"value {i} " + "compressible " * (i % 50)).encode(),
            "headers": [("i", str(i).encode())],
        }
        for i in range(n)
    ]
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 20})
    log = produce_many(p, topic, records)
    assert sorted(r.offset for r in log.reports) == list(range(n))
    msgs = consume(broker.bootstrap, topic, [0])
    assert [m.offset() for m in msgs] == list(range(n))
    assert [m.value() for m in msgs] == [r["value"] for r in records]
    assert [m.key() for m in msgs] == [r["key"] for r in records]
    assert [m.headers() for m in msgs] == [r["headers"] for r in records]
    # replay from the middle of a compressed batch: the consumer must skip the earlier records
    mid = consume(broker.bootstrap, topic, {0: 1234})
    assert [m.offset() for m in mid] == list(range(1234, n))
    assert mid[0].value() == records[1234]["value"]


def test_mixed_codecs_in_one_partition(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    expected = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd", "none"]:
        p = producer(broker.bootstrap, **{"compression.type": codec})
        recs = [{"value": f"{codec}-{i}".encode() * 10} for i in range(100)]
        produce_many(p, topic, recs)
        expected += [r["value"] for r in recs]
    msgs = consume(broker.bootstrap, topic, [0])
    assert [m.value() for m in msgs] == expected
    assert [m.offset() for m in msgs] == list(range(len(expected)))


def test_large_record_900kib(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    big = os.urandom(900 * 1024)  # incompressible
    p = producer(broker.bootstrap, **{"message.max.bytes": 2_000_000})
    log = produce_many(p, topic, [{"key": b"small", "value": b"before"}, {"key": b"big", "value": big}, {"value": b"after"}])
    assert [r.offset for r in log.reports] == [0, 1, 2]
    msgs = consume(
        broker.bootstrap,
        topic,
        [0],
        **{"fetch.max.bytes": 4_000_000, "max.partition.fetch.bytes": 2_000_000, "receive.message.max.bytes": 5_000_000},
    )
    assert [m.value() for m in msgs] == [b"before", big, b"after"]


def test_record_larger_than_max_message_bytes_is_rejected(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "100000"})
    p = producer(broker.bootstrap, **{"message.max.bytes": 2_000_000, "compression.type": "none"})
    log = DeliveryLog()
    p.produce(topic, value=os.urandom(200_000), on_delivery=log)
    flush(p)
    assert len(log.reports) == 1
    err = log.reports[0].error
    assert err is not None, "a 200 kB record was accepted by a topic with max.message.bytes=100000"
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # the topic still works afterwards
    produce_many(p, topic, [{"value": b"ok"}])
    assert [m.value() for m in consume(broker.bootstrap, topic, [0])] == [b"ok"]


@pytest.mark.timeout(240)
def test_100k_records_six_partitions_order(broker, unique_topic):
    topic = unique_topic()
    parts = 6
    n = 100_000
    create_topic(broker.bootstrap, topic, partitions=parts)
    p = producer(
        broker.bootstrap,
        **{
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 200_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "none",
            "acks": "all",
            "message.timeout.ms": 60_000,
        },
    )
    t0 = time.monotonic()
    counts = [0] * parts
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    for i in range(n):
        part = i % parts
        value = f"{part}:{i // parts}".encode()
        while True:
            try:
                p.produce(topic, value=value, key=str(i).encode(), partition=part, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        counts[part] += 1
        if i % 5000 == 0:
            p.poll(0)
    flush(p, 120)
    produce_secs = time.monotonic() - t0
    assert not errors, errors[:5]

    for part in range(parts):
        assert watermarks(broker.bootstrap, topic, part) == (0, counts[part])

    t1 = time.monotonic()
    msgs = consume(
        broker.bootstrap,
        topic,
        list(range(parts)),
        timeout=120,
        **{
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.min.messages": 200_000,
            "fetch.wait.max.ms": 50,
        },
    )
    consume_secs = time.monotonic() - t1
    assert len(msgs) == n
    next_seq = [0] * parts
    for m in msgs:
        part = m.partition()
        want = f"{part}:{next_seq[part]}".encode()
        assert m.value() == want, (part, m.offset(), m.value(), want)
        assert m.offset() == next_seq[part]
        next_seq[part] += 1
    assert next_seq == counts
    print(f"100k records: produce {produce_secs:.2f}s, consume {consume_secs:.2f}s")


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, unique_topic, acks):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, acks=acks)
    n = 300
    log = produce_many(p, topic, [{"key": str(i).encode(), "value": f"v{i}".encode()} for i in range(n)])
    assert len(log.reports) == n
    if acks == "0":
        # no response, so the client cannot know the offsets
        assert all(r.offset is None or r.offset < 0 for r in log.reports)
    else:
        assert [r.offset for r in log.reports] == list(range(n))
    # with acks=0 nothing confirms arrival: poll until the records are visible
    msgs = consume(broker.bootstrap, topic, [0], count=n, timeout=20)
    assert [m.value() for m in msgs] == [f"v{i}".encode() for i in range(n)]
    # the connection stays usable after acks=0 produce (no stray responses confuse the client)
    log2 = produce_many(p, topic, [{"value": b"again"}])
    assert len(log2.reports) == 1
    assert watermarks(broker.bootstrap, topic) == (0, n + 1)


def test_delivery_report_offsets_continue(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=3)
    p = producer(broker.bootstrap)
    for round_ in range(3):
        log = produce_many(p, topic, [{"value": f"{round_}-{i}".encode(), "partition": i % 3} for i in range(30)])
        for part in range(3):
            offs = [r.offset for r in log.reports if r.partition == part]
            assert offs == list(range(round_ * 10, round_ * 10 + 10)), (round_, part, offs)


def test_replay_from_arbitrary_offsets(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, **{"linger.ms": 50})
    # several batches of different sizes so some replays start mid-batch
    n = 0
    for size in (1, 7, 50, 3, 200, 39):
        produce_many(p, topic, [{"value": f"m{n + i}".encode()} for i in range(size)])
        n += size
    for start in (0, 1, 5, 8, 57, 58, 59, 100, n - 1):
        msgs = consume(broker.bootstrap, topic, {0: start})
        assert [m.offset() for m in msgs] == list(range(start, n)), start
        assert msgs[0].value() == f"m{start}".encode()
    # OFFSET_END: nothing until a new record arrives
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        got = []
        deadline = time.monotonic() + 15
        produced = False
        while time.monotonic() < deadline and not got:
            for m in c.consume(100, timeout=0.2):
                if m.error() is None:
                    got.append(m)
                elif m.error().code() == KafkaError._PARTITION_EOF and not produced:
                    produce_many(p, topic, [{"value": b"tail"}])
                    produced = True
        assert [(m.offset(), m.value()) for m in got] == [(n, b"tail")]
    finally:
        c.close()


def test_out_of_range_offset_resets(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    produce_many(producer(broker.bootstrap), topic, [{"value": f"{i}".encode()} for i in range(10)])
    msgs = consume(broker.bootstrap, topic, {0: 1000}, **{"auto.offset.reset": "earliest"})
    assert [m.offset() for m in msgs] == list(range(10))
    # auto.offset.reset=error surfaces OFFSET_OUT_OF_RANGE to the application
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        deadline = time.monotonic() + 15
        seen = None
        while time.monotonic() < deadline and seen is None:
            for m in c.consume(10, timeout=0.2):
                if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                    seen = m.error()
        assert seen is not None, "no error for an out-of-range fetch offset"
        assert seen.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), seen
    finally:
        c.close()


def test_offsets_for_times(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    base = 1_700_000_000_000
    p = producer(broker.bootstrap)
    # partition 0: timestamps base+0, base+1000, ...; partition 1: base+500, base+1500, ...
    recs = [{"value": f"{i}".encode(), "partition": 0, "timestamp": base + i * 1000} for i in range(10)]
    recs += [{"value": f"{i}".encode(), "partition": 1, "timestamp": base + 500 + i * 1000} for i in range(10)]
    produce_many(p, topic, recs)
    c = consumer(broker.bootstrap)
    try:
        cases = {
            base - 1: (0, 0),
            base: (0, 0),
            base + 1: (1, 0),
            base + 2500: (3, 2),
            base + 9000: (9, 9),
            base + 9400: (-1, 9),  # past partition 0's last timestamp: no offset (-1)
            base + 9501: (-1, -1),
        }
        for ts, (want0, want1) in cases.items():
            res = c.offsets_for_times([TopicPartition(topic, 0, ts), TopicPartition(topic, 1, ts)], timeout=10)
            got = {tp.partition: tp.offset for tp in res}
            assert all(tp.error is None for tp in res), res
            assert got[0] == want0, (ts, got)
            assert got[1] == want1, (ts, got)
        # after looking the offset up, fetch from it
        (tp,) = c.offsets_for_times([TopicPartition(topic, 1, base + 4200)], timeout=10)
        assert tp.offset == 4
    finally:
        c.close()
    msgs = consume(broker.bootstrap, topic, {1: 4})
    assert [m.timestamp()[1] for m in msgs] == [base + 500 + i * 1000 for i in range(4, 10)]


def test_get_watermark_offsets(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    p = producer(broker.bootstrap)
    produce_many(p, topic, [{"value": b"x", "partition": 0}] * 25 + [{"value": b"y", "partition": 1}] * 4)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 25)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 4)
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        assert (lo, hi) == (0, 25)
    finally:
        c.close()


def test_auto_create_topic_on_produce(broker, unique_topic):
    topic = unique_topic()
    p = producer(broker.bootstrap)
    log = produce_many(p, topic, [{"value": b"first"}, {"value": b"second"}])
    assert [r.offset for r in log.reports] == [0, 1]
    t = wait_for_topic(admin(broker.bootstrap), topic)
    assert len(t.partitions) >= 1
    msgs = consume(broker.bootstrap, topic, list(t.partitions))
    assert sorted(m.value() for m in msgs) == [b"first", b"second"]


def test_auto_create_topic_on_metadata_request(broker, unique_topic):
    topic = unique_topic()
    # a producer's metadata request sets allow_auto_topic_creation=true
    p = producer(broker.bootstrap)
    deadline = time.monotonic() + 15
    t = None
    while time.monotonic() < deadline:
        t = p.list_topics(topic=topic, timeout=5).topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            break
        time.sleep(0.1)
    assert t is not None and t.error is None and t.partitions, t
    assert topic in admin(broker.bootstrap).list_topics(timeout=10).topics


def test_metadata_without_auto_create_does_not_create(broker, unique_topic):
    topic = unique_topic()
    # a consumer's metadata request sets allow_auto_topic_creation=false (allow.auto.create.topics)
    c = consumer(broker.bootstrap)
    try:
        t = c.list_topics(topic=topic, timeout=10).topics.get(topic)
        assert t is not None
        assert t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t.error
    finally:
        c.close()
    assert topic not in admin(broker.bootstrap).list_topics(timeout=10).topics


def test_produce_to_missing_partition_fails(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, **{"message.timeout.ms": 3000})
    log = DeliveryLog()
    p.produce(topic, value=b"x", partition=5, on_delivery=log)
    flush(p)
    assert len(log.reports) == 1 and log.reports[0].error is not None
    assert log.reports[0].error.code() in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)


def test_consumer_error_is_not_raised_for_healthy_topic(broker, unique_topic):
    """A sanity check that an assigned consumer on an empty topic only sees EOF, no errors."""
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 10
        eof = False
        while time.monotonic() < deadline and not eof:
            for m in c.consume(10, timeout=0.2):
                if m.error() is None:
                    raise AssertionError(f"unexpected message {m.value()!r}")
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof = True
                else:
                    raise KafkaException(m.error())
        assert eof
    finally:
        c.close()


def test_auto_create_disabled(broker_factory, unique_topic):
    """With auto.create.topics.enable=false, producing to an unknown topic fails and creates nothing."""
    b = broker_factory("--set", "auto.create.topics.enable=false")
    topic = unique_topic()
    p = producer(b.bootstrap, **{"message.timeout.ms": 3000})
    log = DeliveryLog()
    p.produce(topic, value=b"x", on_delivery=log)
    flush(p, 15)
    assert len(log.reports) == 1 and log.reports[0].error is not None
    assert log.reports[0].error.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._MSG_TIMED_OUT,
    ), log.reports[0].error
    md = admin(b.bootstrap).list_topics(timeout=10)
    assert topic not in md.topics
    # explicit creation still works
    create_topic(b.bootstrap, topic)
    assert [r.offset for r in produce_many(p, topic, [{"value": b"ok"}]).reports] == [0]
