"""ProducerIdBlocks over a LocalMetadataStore: ids never repeat, the next block is reserved
ahead of need, and an exhausted block without the next one is a retriable error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from strom.coordinator.shard import CoordinatorError
from strom.metadata.configs import ConfigError
from strom.metadata.store import LocalMetadataStore
from strom.protocol.errors import ErrorCode
from strom.server.producer_ids import ProducerIdBlocks


class Store(LocalMetadataStore):
    """A local store whose reservations can be held back (``gate``) or fail (``failures``)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.calls = 0  # reservations asked for
        self.answered = 0  # ... and finished, successfully or not
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = 0

    async def allocate_producer_ids(self, count: int) -> int:
        self.calls += 1
        try:
            await self.gate.wait()
            if self.failures:
                self.failures -= 1
                raise ConfigError(ErrorCode.REQUEST_TIMED_OUT, "the metadata store is away")
            return await super().allocate_producer_ids(count)
        finally:
            self.answered += 1


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 10))


async def settle(store: Store) -> None:
    """Until every reservation asked for has been answered (a task just created starts on the
    loop's next turn: let it)."""
    await asyncio.sleep(0)
    for _ in range(1000):
        if store.answered == store.calls:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"{store.calls - store.answered} reservations still running")


async def take(blocks: ProducerIdBlocks, store: Store, count: int) -> list[int]:
    """``count`` ids, letting background reservations finish after each one."""
    out = []
    for _ in range(count):
        out.append(blocks.next_id())
        await settle(store)
    return out


def assert_load_in_progress(blocks: ProducerIdBlocks) -> None:
    with pytest.raises(CoordinatorError) as raised:
        blocks.next_id()
    assert raised.value.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS


def test_ids_run_through_consecutive_blocks_without_repeating(tmp_path):
    async def body() -> None:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=4)
        await blocks.start()
        assert await take(blocks, store, 40) == list(range(40))
        # The first block at start, then one ahead per block: the 11th was reserved half-way
        # through the 10th.
        assert store.calls == 11
        await blocks.stop()

    run(body)


def test_the_next_block_is_reserved_once_half_the_current_one_is_used(tmp_path):
    async def body() -> None:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=10)
        await blocks.start()
        assert store.calls == 1
        assert await take(blocks, store, 4) == [0, 1, 2, 3]
        assert store.calls == 1  # 6 left of 10
        assert await take(blocks, store, 1) == [4]
        assert store.calls == 2  # 5 left: the next block is asked for
        assert await take(blocks, store, 6) == [5, 6, 7, 8, 9, 10]  # no wait at the block change
        assert store.calls == 2
        await blocks.stop()

    run(body)


def test_exhaustion_without_the_next_block_is_retriable_then_recovers(tmp_path):
    async def body() -> None:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=4)
        await blocks.start()
        store.gate.clear()  # the store is slow from now on
        assert [blocks.next_id() for _ in range(4)] == [0, 1, 2, 3]
        await asyncio.sleep(0.01)
        assert_load_in_progress(blocks)
        assert_load_in_progress(blocks)
        assert store.calls == 2  # one reservation in flight, never a second one meanwhile
        store.gate.set()
        await settle(store)
        assert await take(blocks, store, 4) == [4, 5, 6, 7]
        await blocks.stop()

    run(body)


def test_a_failed_reservation_is_retried(tmp_path):
    async def body() -> None:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=4)
        await blocks.start()
        store.failures = 100
        assert await take(blocks, store, 4) == [0, 1, 2, 3]  # reservations failed along the way
        assert_load_in_progress(blocks)
        await settle(store)
        store.failures = 0
        assert_load_in_progress(blocks)  # the failed one left nothing; this asks again
        await settle(store)
        assert await take(blocks, store, 2) == [4, 5]
        await blocks.stop()

    run(body)


def test_ids_never_repeat_across_restarts(tmp_path):
    async def first_run() -> list[int]:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=4)
        await blocks.start()
        ids = await take(blocks, store, 3)  # the block after it is reserved too, unused
        await blocks.stop()
        await store.close()
        return ids

    async def second_run() -> list[int]:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=4)
        await blocks.start()
        ids = await take(blocks, store, 3)
        await blocks.stop()
        return ids

    before = asyncio.run(first_run())
    after = asyncio.run(second_run())
    assert before == [0, 1, 2]
    assert after == [8, 9, 10]


def test_stop_cancels_a_reservation_in_flight(tmp_path):
    async def body() -> None:
        store = Store(tmp_path)
        blocks = ProducerIdBlocks(store, block_size=4)
        await blocks.start()
        store.gate.clear()
        assert [blocks.next_id(), blocks.next_id()] == [0, 1]
        await asyncio.sleep(0.01)
        assert store.calls == 2
        await asyncio.wait_for(blocks.stop(), 1)
        assert store.answered == 2  # cancelled, not left waiting
        assert [blocks.next_id(), blocks.next_id()] == [2, 3]  # the current block still serves

    run(body)
