"""LocalMetadataStore: topics, partition states and dynamic configs survive a reopen; Kafka's
name rules; producer id blocks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from strom.metadata.configs import ConfigError
from strom.metadata.image import BrokerRegistration
from strom.metadata.store import LocalMetadataStore, validate_topic_name
from strom.protocol.errors import ErrorCode

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(awaitable, 10)

    return asyncio.run(main())


def started(tmp_path, node_id: int = 0) -> LocalMetadataStore:
    """A store with its node registered, as the broker opens it."""
    store = LocalMetadataStore(tmp_path, node_id)
    run(store.start(BrokerRegistration(node_id, "127.0.0.1", 9092)))
    return store


def test_topics_and_configs_survive_reopen(tmp_path):
    store = started(tmp_path)

    async def change() -> object:
        topic = await store.create_topic("orders", [[0]] * 3, {"retention.ms": "1000"})
        await store.create_partitions("orders", [[0]] * 2)
        await store.set_topic_configs("orders", {"cleanup.policy": "compact"})
        await store.set_broker_configs(None, {"log.retention.ms": "5000"})
        await store.set_broker_configs(0, {"log.cleaner.backoff.ms": "100"})
        await store.create_topic("gone", [[0]], {})
        await store.delete_topic("gone")
        return topic

    topic = run(change())
    again = LocalMetadataStore(tmp_path)
    assert again.cluster_id == store.cluster_id
    assert list(again.topics()) == ["orders"]
    orders = again.topic("orders")
    assert (orders.topic_id, orders.partitions, dict(orders.configs)) == (topic.topic_id, 5, {"cleanup.policy": "compact"})
    assert again.broker_configs() == {"log.retention.ms": "5000"}
    assert again.node_configs(0) == {"log.cleaner.backoff.ms": "100"}
    assert dict(again.image.partitions) == dict(store.image.partitions)
    assert {(t, p) for t, p in again.image.partitions} == {("orders", p) for p in range(5)}
    assert (tmp_path / "meta.properties").read_text().startswith("version=1\ncluster.id=")


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 250, "bad name", "bad/name", "ü"])
def test_illegal_topic_names(name):
    with pytest.raises(ConfigError) as info:
        validate_topic_name(name)
    assert info.value.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_existing_and_colliding_names(tmp_path):
    store = started(tmp_path)
    run(store.create_topic("a.b", [[0]], {}))
    with pytest.raises(ConfigError) as info:
        run(store.create_topic("a.b", [[0]], {}))
    assert info.value.error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    with pytest.raises(ConfigError) as info:
        run(store.create_topic("a_b", [[0]], {}))  # '.' and '_' collide in Kafka's metric names
    assert info.value.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_partitions_only_grow(tmp_path):
    # Shrinking is the CreatePartitions handler's INVALID_PARTITIONS (tests/e2e/test_admin.py);
    # the store can only add partitions after the existing ones, which it leaves alone.
    store = started(tmp_path)
    run(store.create_topic("t", [[0]] * 3, {}))
    before = {p: store.image.partition("t", p) for p in range(3)}
    grown = run(store.create_partitions("t", [[0]] * 2))
    assert grown.partitions == 5 and store.topic("t").partitions == 5
    assert {p: store.image.partition("t", p) for p in range(3)} == before
    assert [store.image.partition("t", p).replicas for p in range(5)] == [(0,)] * 5
    with pytest.raises(ConfigError) as info:
        run(store.create_partitions("nope", [[0]]))
    assert info.value.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_damaged_metadata_refuses_to_start(tmp_path):
    LocalMetadataStore(tmp_path)
    (tmp_path / "strom-metadata.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot read cluster metadata"):
        LocalMetadataStore(tmp_path)


def test_producer_ids_are_never_reused_across_restarts(tmp_path):
    store = started(tmp_path)

    async def allocate(s: LocalMetadataStore, counts: list[int]) -> list[range]:
        blocks = []
        for n in counts:
            first = await s.allocate_producer_ids(n)
            blocks.append(range(first, first + n))
        return blocks

    blocks = run(allocate(store, [10, 1, 1000]))
    # e.g. after a crash: whatever was handed out before is never handed out again
    blocks += run(allocate(started(tmp_path), [5, 1000]))
    ids = [i for block in blocks for i in block]
    assert len(ids) == len(set(ids)) == 2016
    assert blocks[0].start == 0


def test_a_cancelled_write_still_lands_before_the_next(tmp_path):
    """A request cancelled mid-write (its client left) must not let the next metadata change
    race the first one's file write: the file and the image agree afterwards."""
    async def main() -> None:
        store = LocalMetadataStore(tmp_path)
        await store.start(BrokerRegistration(0, "127.0.0.1", 9092))
        first = asyncio.ensure_future(store.create_topic("a", [[0]], {}))
        await asyncio.sleep(0)  # inside the write
        first.cancel()
        await store.create_topic("b", [[0]], {})
        with pytest.raises(asyncio.CancelledError):
            await first
        assert set(store.topics()) == {"a", "b"}
        assert set(LocalMetadataStore(tmp_path).topics()) == {"a", "b"}

    asyncio.run(main())
