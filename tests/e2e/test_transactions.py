"""Transactions with real clients: confluent-kafka (librdkafka), kafka-python and aiokafka.

Commit and abort as read_committed and read_uncommitted consumers see them, a read_committed
consumer held at an open transaction, consume-transform-produce with
send_offsets_to_transaction, zombie fencing by a second producer with the same
transactional.id, a broker restart (clean, and kill -9) in the middle of a transaction, a
transaction aborted by its timeout, and the admin view (DescribeTransactions,
ListTransactions, DescribeProducers through kafka-python's admin client).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from conftest import Broker

from .helpers import consume, create_topic, produce_many, producer

pytestmark = pytest.mark.timeout(120)

# Small internal topics, no rebalance delay, and a fast timeout check: every test stays quick.
TXN_SETTINGS = (
    "-o", "transaction.state.log.num.partitions=4",
    "-o", "offsets.topic.num.partitions=4",
    "-o", "group.initial.rebalance.delay.ms=0",
    "-o", "group.min.session.timeout.ms=1000",
    "-o", "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
)
COMMITTED = {"isolation.level": "read_committed"}
UNCOMMITTED = {"isolation.level": "read_uncommitted"}


@pytest.fixture(scope="module")
def txn_broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("txn")
    b = Broker(base / "data", log_dir=base, extra_args=TXN_SETTINGS)
    b.start()
    yield b
    b.stop()


def txn_producer(bootstrap: str, transactional_id: str | None = None, **conf) -> Producer:
    c = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id or f"txn-{uuid.uuid4().hex[:8]}",
        "linger.ms": 5,
        "socket.timeout.ms": 10000,
        "retry.backoff.ms": 20,
    }
    c.update(conf)
    return Producer(c)


def values(messages) -> list[bytes]:
    return sorted(m.value() for m in messages)


def send(p: Producer, topic: str, prefix: str, count: int, partitions: int = 1) -> None:
    for i in range(count):
        p.produce(topic, value=f"{prefix}{i}".encode(), key=f"k{i}".encode(), partition=i % partitions)
    p.poll(0)


def expected(prefix: str, count: int) -> list[bytes]:
    return sorted(f"{prefix}{i}".encode() for i in range(count))


# --- confluent-kafka -----------------------------------------------------------------------------


def test_commit_and_abort_as_committed_and_uncommitted_readers_see_them(txn_broker, unique_topic):
    topic = unique_topic()
    create_topic(txn_broker.bootstrap, topic, partitions=3)
    p = txn_producer(txn_broker.bootstrap)
    p.init_transactions(30)
    p.begin_transaction()
    send(p, topic, "c", 30, partitions=3)
    p.commit_transaction(30)
    p.begin_transaction()
    send(p, topic, "a", 30, partitions=3)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    send(p, topic, "d", 6, partitions=3)
    p.commit_transaction(30)

    committed = consume(txn_broker.bootstrap, topic, [0, 1, 2], **COMMITTED)
    assert values(committed) == sorted(expected("c", 30) + expected("d", 6))
    uncommitted = consume(txn_broker.bootstrap, topic, [0, 1, 2], **UNCOMMITTED)
    assert values(uncommitted) == sorted(expected("c", 30) + expected("a", 30) + expected("d", 6))
    # Offsets: 10 records + marker, 10 aborted + marker, 2 + marker per partition.
    assert max(m.offset() for m in committed if m.partition() == 0) == 23


def test_read_committed_consumer_waits_for_the_open_transaction(txn_broker, unique_topic):
    topic = unique_topic()
    create_topic(txn_broker.bootstrap, topic)
    plain = producer(txn_broker.bootstrap)
    produce_many(plain, topic, [{"value": b"before"}])
    p = txn_producer(txn_broker.bootstrap)
    p.init_transactions(30)
    p.begin_transaction()
    send(p, topic, "t", 5)
    p.flush(30)
    produce_many(plain, topic, [{"value": b"after"}])  # behind the open transaction

    c = Consumer({"bootstrap.servers": txn_broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        seen: list[bytes] = []

        def poll_until(count: int, at_least_s: float) -> None:
            start = time.monotonic()
            while time.monotonic() - start < 20 and (len(seen) < count or time.monotonic() - start < at_least_s):
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    seen.append(m.value())

        poll_until(1, at_least_s=1.0)
        assert seen == [b"before"]  # held at the last stable offset
        # read_committed's "latest" is the last stable offset (ListOffsets with isolation 1).
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 1)
        p.commit_transaction(30)
        poll_until(7, at_least_s=0)
        assert seen == [b"before", *(f"t{i}".encode() for i in range(5)), b"after"]
    finally:
        c.close()


def test_consume_transform_produce_with_send_offsets_to_transaction(txn_broker, unique_topic):
    source, sink = unique_topic("in"), unique_topic("out")
    create_topic(txn_broker.bootstrap, source, partitions=2)
    create_topic(txn_broker.bootstrap, sink, partitions=2)
    produce_many(producer(txn_broker.bootstrap), source, [{"value": f"m{i}".encode(), "partition": i % 2} for i in range(40)])
    group = f"ctp-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": txn_broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "isolation.level": "read_committed", "session.timeout.ms": 6000,
                  "fetch.wait.max.ms": 100})
    p = txn_producer(txn_broker.bootstrap)
    p.init_transactions(30)
    try:
        c.subscribe([source])
        done = 0
        aborted_once = False
        deadline = time.monotonic() + 60
        while done < 40 and time.monotonic() < deadline:
            batch = [m for m in c.consume(num_messages=10, timeout=0.5) if m.error() is None]
            if not batch:
                continue
            p.begin_transaction()
            for m in batch:
                p.produce(sink, value=m.value().upper(), partition=m.partition())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            if not aborted_once:
                # The first batch is aborted: its output vanishes and its offsets stay
                # uncommitted, so the consumer reads it again from the last commit.
                p.abort_transaction(30)
                aborted_once = True
                committed = c.committed(c.assignment(), timeout=10)
                c.assign([TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)) for tp in committed])
                continue
            p.commit_transaction(30)
            done += len(batch)
        assert done == 40
        committed = c.committed([TopicPartition(source, 0), TopicPartition(source, 1)], timeout=10)
        assert sorted(tp.offset for tp in committed) == [20, 20]
    finally:
        c.close()
    out = consume(txn_broker.bootstrap, sink, [0, 1], **COMMITTED)
    assert values(out) == sorted(f"M{i}".encode() for i in range(40))


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(txn_broker, unique_topic):
    topic = unique_topic()
    create_topic(txn_broker.bootstrap, topic)
    txn_id = f"zombie-{uuid.uuid4().hex[:8]}"
    zombie = txn_producer(txn_broker.bootstrap, txn_id)
    zombie.init_transactions(30)
    zombie.begin_transaction()
    send(zombie, topic, "z", 5)
    zombie.flush(30)

    successor = txn_producer(txn_broker.bootstrap, txn_id)
    successor.init_transactions(30)  # aborts the zombie's open transaction, bumps the epoch
    successor.begin_transaction()
    send(successor, topic, "s", 5)
    successor.commit_transaction(30)

    with pytest.raises(KafkaException) as failure:
        zombie.produce(topic, value=b"z-late")
        zombie.commit_transaction(30)
    error = failure.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), error

    assert values(consume(txn_broker.bootstrap, topic, [0], **COMMITTED)) == expected("s", 5)
    assert len(consume(txn_broker.bootstrap, topic, [0], **UNCOMMITTED)) == 10


def test_transaction_past_its_timeout_is_aborted(txn_broker, unique_topic):
    topic = unique_topic()
    create_topic(txn_broker.bootstrap, topic)
    short = {"transaction.timeout.ms": 1500, "socket.timeout.ms": 1500, "message.timeout.ms": 1500}
    stalled = txn_producer(txn_broker.bootstrap, **short)
    stalled.init_transactions(30)
    stalled.begin_transaction()
    send(stalled, topic, "x", 5)
    stalled.flush(30)
    other = txn_producer(txn_broker.bootstrap)
    other.init_transactions(30)
    other.begin_transaction()
    send(other, topic, "y", 3)
    other.commit_transaction(30)

    # The coordinator aborts the stalled transaction (checked every 200 ms): the read_committed
    # consumer gets past it without anyone calling abort.
    got = consume(txn_broker.bootstrap, topic, [0], count=3, timeout=20, **COMMITTED)
    assert values(got) == expected("y", 3)
    with pytest.raises(KafkaException):
        stalled.commit_transaction(10)  # it was fenced by the abort's epoch bump


def test_broker_restart_in_the_middle_of_transactions(broker_factory, unique_topic):
    b = broker_factory(*TXN_SETTINGS)
    topic = unique_topic()
    create_topic(b.bootstrap, topic, partitions=2)
    p = txn_producer(b.bootstrap, **{"transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    send(p, topic, "r", 10, partitions=2)
    p.flush(30)
    b.restart()  # clean: the open transaction is in __transaction_state and the snapshots
    p.commit_transaction(60)

    p.begin_transaction()
    send(p, topic, "k", 10, partitions=2)
    p.flush(30)
    b.kill9()
    b.start()  # recovery: the producer state, LSO and transaction state come back from the logs
    p.abort_transaction(60)
    p.begin_transaction()
    send(p, topic, "e", 2, partitions=2)
    p.commit_transaction(60)

    assert values(consume(b.bootstrap, topic, [0, 1], **COMMITTED)) == sorted(expected("r", 10) + expected("e", 2))
    assert len(consume(b.bootstrap, topic, [0, 1], **UNCOMMITTED)) == 22


# --- kafka-python --------------------------------------------------------------------------------


def test_kafka_python_transactional_producer_and_admin_views(txn_broker, unique_topic):
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    topic = unique_topic()
    create_topic(txn_broker.bootstrap, topic)
    txn_id = f"kp-{uuid.uuid4().hex[:8]}"
    p = KafkaProducer(bootstrap_servers=txn_broker.bootstrap, transactional_id=txn_id)
    admin = KafkaAdminClient(bootstrap_servers=txn_broker.bootstrap)
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(5):
            p.send(topic, value=f"kp{i}".encode())
        p.flush()
        described = admin.describe_transactions([txn_id])[txn_id]
        assert str(described.state.value) == "Ongoing"
        assert {(tp.topic, tp.partition) for tp in described.topic_partitions} == {(topic, 0)}
        listed = [t for txns in admin.list_transactions(state_filters=["Ongoing"]).values() for t in txns]
        assert txn_id in {t.transactional_id for t in listed}
        producers = admin.describe_producers([KTopicPartition(topic, 0)])[KTopicPartition(topic, 0)]
        (state,) = [s for s in producers.active_producers if s.producer_id == described.producer_id]
        assert state.current_transaction_start_offset == 0 and state.last_sequence == 4
        p.commit_transaction()
        p.begin_transaction()
        p.send(topic, value=b"kp-aborted")
        p.flush()
        p.abort_transaction()
        assert str(admin.describe_transactions([txn_id])[txn_id].state.value) == "CompleteAbort"
    finally:
        p.close()
        admin.close()
    assert values(consume(txn_broker.bootstrap, topic, [0], **COMMITTED)) == expected("kp", 5)
    assert b"kp-aborted" in values(consume(txn_broker.bootstrap, topic, [0], **UNCOMMITTED))


# --- aiokafka ------------------------------------------------------------------------------------


def test_aiokafka_transactional_producer(txn_broker, unique_topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = unique_topic()
    create_topic(txn_broker.bootstrap, topic)

    async def main() -> list[bytes]:
        p = AIOKafkaProducer(bootstrap_servers=txn_broker.bootstrap, transactional_id=f"aio-{uuid.uuid4().hex[:8]}")
        await p.start()
        try:
            async with p.transaction():
                for i in range(5):
                    await p.send(topic, value=f"aio{i}".encode(), partition=0)
            await p.begin_transaction()
            await p.send_and_wait(topic, value=b"aio-aborted", partition=0)
            await p.abort_transaction()
            async with p.transaction():
                await p.send(topic, value=b"aio-last", partition=0)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=txn_broker.bootstrap, isolation_level="read_committed",
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await c.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(20):
                while len(got) < 6:
                    batch = await c.getmany(timeout_ms=200)
                    got.extend(m.value for messages in batch.values() for m in messages)
            return got
        finally:
            await c.stop()

    assert sorted(asyncio.run(main())) == sorted([*expected("aio", 5), b"aio-last"])
    assert len(consume(txn_broker.bootstrap, topic, [0], **UNCOMMITTED)) == 7
