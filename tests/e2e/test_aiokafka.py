"""aiokafka (asyncio client) against a real strom broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .helpers import create_topic

pytestmark = pytest.mark.timeout(120)


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def read(bootstrap: str, topic: str, partitions: dict[int, int], count: int, timeout: float = 30) -> list:
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, partitions[tp.partition])
        out = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < count:
            if loop.time() > deadline:
                raise AssertionError(f"got {len(out)} of {count} records after {timeout}s")
            batches = await c.getmany(timeout_ms=200, max_records=10000)
            for recs in batches.values():
                out.extend(recs)
        return out
    finally:
        await c.stop()


def test_send_and_wait_offsets_roundtrip(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=5)
        await p.start()
        try:
            metas = []
            metas.append(await p.send_and_wait(topic, b"v0", key=b"k0"))
            metas.append(await p.send_and_wait(topic, None, key=b"tombstone"))
            metas.append(await p.send_and_wait(topic, b"null-key"))
            metas.append(await p.send_and_wait(topic, b"hdr", key=b"k", headers=[("a", b"1"), ("b", b"")]))
            metas.append(await p.send_and_wait(topic, b"ts", timestamp_ms=1_600_000_000_000))
        finally:
            await p.stop()
        assert [m.offset for m in metas] == [0, 1, 2, 3, 4]
        assert all(m.topic == topic and m.partition == 0 for m in metas)
        recs = await read(broker.bootstrap, topic, {0: 0}, 5)
        assert [(r.key, r.value) for r in recs] == [
            (b"k0", b"v0"),
            (b"tombstone", None),
            (None, b"null-key"),
            (b"k", b"hdr"),
            (None, b"ts"),
        ]
        assert list(recs[3].headers) == [("a", b"1"), ("b", b"")]
        assert recs[4].timestamp == 1_600_000_000_000

    run(main())


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, unique_topic, codec):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    n = 500

    async def main():
        p = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            enable_idempotence=False,
            compression_type=codec,
            linger_ms=20,
            max_batch_size=256 * 1024,
        )
        await p.start()
        try:
            futs = [await p.send(topic, f"{codec}-{i}-".encode() * 20, key=str(i).encode()) for i in range(n)]
            metas = await asyncio.gather(*futs)
        finally:
            await p.stop()
        assert sorted(m.offset for m in metas) == list(range(n))
        recs = await read(broker.bootstrap, topic, {0: 0}, n)
        assert [r.value for r in recs] == [f"{codec}-{i}-".encode() * 20 for i in range(n)]
        mid = await read(broker.bootstrap, topic, {0: 321}, n - 321)
        assert mid[0].offset == 321

    run(main())


def test_multi_partition_batch_send(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=3)

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False, acks="all")
        await p.start()
        try:
            for part in range(3):
                batch = p.create_batch()
                for i in range(50):
                    assert batch.append(key=None, value=f"{part}-{i}".encode(), timestamp=None) is not None
                fut = await p.send_batch(batch, topic, partition=part)
                meta = await fut
                assert meta.offset == 0  # base offset of the batch
        finally:
            await p.stop()
        recs = await read(broker.bootstrap, topic, {0: 0, 1: 0, 2: 0}, 150)
        for part in range(3):
            vals = [r.value for r in recs if r.partition == part]
            assert vals == [f"{part}-{i}".encode() for i in range(50)]

    run(main())


def test_end_offsets_and_offsets_for_times(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
        await p.start()
        try:
            for i in range(20):
                await p.send(topic, b"x", timestamp_ms=1_000_000 + i * 10)
            await p.flush()
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            assert await c.beginning_offsets([tp]) == {tp: 0}
            assert await c.end_offsets([tp]) == {tp: 20}
            res = await c.offsets_for_times({tp: 1_000_000 + 55})
            assert res[tp].offset == 6 and res[tp].timestamp == 1_000_060
        finally:
            await c.stop()

    run(main())
