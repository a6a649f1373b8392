"""The share coordinator runtime in a real (in-process) broker: __share_group_state is created
on first use, writes are ShareSnapshot records in the key's partition, a restart loads them
back in the background (COORDINATOR_LOAD_IN_PROGRESS meanwhile, which the persister retries),
tombstones stay deleted, and ShareUpdate records written by Kafka are merged when loading."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from handlers.group_harness import run, running  # tests/ is on sys.path (rootdir conftest)

from strom.coordinator.shard import CoordinatorError
from strom.protocol.errors import ErrorCode
from strom.protocol.records import build_batch, decode_records, validate_batches
from strom.server.coordinator_runtime import ShardState
from strom.server.share_persister import RuntimePersister
from strom.server.share_state_runtime import ShareStateRuntime, coordinator_key
from strom.share.persister import SharePersisterError
from strom.share.records import (
    SHARE_STATE_TOPIC,
    PersistedBatch,
    ShareSnapshotKey,
    ShareSnapshotValue,
    ShareStateRecord,
    ShareUpdateValue,
    deserialize,
    partition_for,
    serialize,
)

PARTITIONS = 3
SETTINGS = {"share_coordinator_state_topic_num_partitions": PARTITIONS}
TOPIC_ID = uuid.UUID("6d7c1f7e-0f4e-4a43-9d0a-4d5f3a1b2c3d")
B = PersistedBatch


def state(state_epoch: int = 0, leader_epoch: int = 0, start_offset: int = 0, *batches: PersistedBatch) -> ShareSnapshotValue:
    return ShareSnapshotValue(-1, state_epoch, leader_epoch, start_offset, -1, -1, tuple(batches))


def records(ctx: Any, partition: int) -> list[ShareStateRecord]:
    log = ctx.partition_log(SHARE_STATE_TOPIC, partition)
    data = log.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
        out.extend(deserialize(r.key, r.value) for r in decode_records(data[pos : pos + size]))
        pos += size
    return out


def runtime_of(ctx: Any) -> ShareStateRuntime:
    runtime = ctx.share_state
    assert isinstance(runtime, ShareStateRuntime)
    return runtime


def persister_of(ctx: Any) -> RuntimePersister:
    persister = ctx.share_persister
    assert isinstance(persister, RuntimePersister)
    return persister


def test_first_write_creates_the_topic_and_lands_in_the_keys_partition(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            assert ctx.metadata.topic(SHARE_STATE_TOPIC) is None
            assert await ctx.share_persister.read("g", TOPIC_ID, 0) is None  # creates the topic
            topic = ctx.metadata.topic(SHARE_STATE_TOPIC)
            assert topic.partitions == PARTITIONS
            assert topic.configs == {"cleanup.policy": "compact", "segment.bytes": "104857600", "compression.type": "producer",
                                     "min.insync.replicas": "1"}  # capped by the replication factor (one broker)
            written = state(1, 2, 10, B(10, 19, 2, 1), B(20, 24, 0, 2))
            assert await ctx.share_persister.write("g", TOPIC_ID, 4, written) == ErrorCode.NONE
            key = ShareSnapshotKey("g", TOPIC_ID, 4)
            partition = partition_for("g", TOPIC_ID, 4, PARTITIONS)
            assert runtime_of(ctx).partition_of(key) == partition
            (record,) = records(ctx, partition)
            assert record.key == key and isinstance(record.value, ShareSnapshotValue)
            assert (record.value.snapshot_epoch, record.value.state_epoch, record.value.leader_epoch) == (0, 1, 2)
            assert record.value.state_batches == written.state_batches
            assert runtime_of(ctx).coordinator(partition).read(key) == record.value  # type: ignore[union-attr]
            # A read carries what ReadShareGroupState does: no leader epoch.
            assert await ctx.share_persister.read("g", TOPIC_ID, 4) == state(1, -1, 10, *written.state_batches)
            assert all(records(ctx, p) == [] for p in range(PARTITIONS) if p != partition)

    run(main)


def test_restart_loads_the_states_back(tmp_path: Path) -> None:
    keys = [("g", p) for p in range(6)] + [("other", 0)]

    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            persister = broker.ctx.share_persister
            for group, p in keys:
                assert await persister.write(group, TOPIC_ID, p, state(1, 1, p, B(p, p + 5, 2, 1))) == ErrorCode.NONE
            # A second write of one key, and a deleted one.
            assert await persister.write("g", TOPIC_ID, 0, state(1, 2, 3, B(3, 9, 4, 2))) == ErrorCode.NONE
            assert await persister.delete("g", TOPIC_ID, 1) == ErrorCode.NONE
            assert await persister.delete("g", TOPIC_ID, 1) == ErrorCode.NONE  # nothing left: fine
            assert await persister.read("g", TOPIC_ID, 1) is None
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            runtime = runtime_of(ctx)
            key = ShareSnapshotKey("g", TOPIC_ID, 0)
            partition = runtime.partition_of(key)
            assert partition is not None and runtime.state(partition) is ShardState.LOADING
            with pytest.raises(CoordinatorError) as raised:
                runtime.snapshot(key)
            assert raised.value.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
            # The persister retries until the partition is loaded.
            assert await ctx.share_persister.read("g", TOPIC_ID, 0) == state(1, -1, 3, B(3, 9, 4, 2))
            stored = runtime.snapshot(key)
            assert stored is not None and (stored.snapshot_epoch, stored.leader_epoch) == (1, 2)
            for group, p in keys[2:]:
                assert await ctx.share_persister.read(group, TOPIC_ID, p) == state(1, -1, p, B(p, p + 5, 2, 1))
            assert await ctx.share_persister.read("g", TOPIC_ID, 1) is None  # the tombstone
            # The snapshot epoch goes on from the loaded one.
            assert await ctx.share_persister.write("g", TOPIC_ID, 0, state(1, 2, 4)) == ErrorCode.NONE
            assert runtime.snapshot(key).snapshot_epoch == 2  # type: ignore[union-attr]

    run(main)


def test_fencing_through_the_persister(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            persister = broker.ctx.share_persister
            assert await persister.write("g", TOPIC_ID, 0, state(2, 5, 0)) == ErrorCode.NONE
            assert await persister.write("g", TOPIC_ID, 0, state(2, 4, 9)) == ErrorCode.FENCED_LEADER_EPOCH
            assert await persister.write("g", TOPIC_ID, 0, state(1, 5, 9)) == ErrorCode.FENCED_STATE_EPOCH
            assert await persister.read("g", TOPIC_ID, 0) == state(2, -1, 0)

    run(main)


def test_kafka_update_records_are_merged_when_loading(tmp_path: Path) -> None:
    """A partition as Kafka writes it: a snapshot, then updates (deltas) over it."""
    key = ShareSnapshotKey("g", TOPIC_ID, 7)

    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await runtime_of(ctx).ensure_topic()
            partition = runtime_of(ctx).partition_of(key)
            assert partition is not None
            written = [
                ShareStateRecord.snapshot("g", TOPIC_ID, 7, ShareSnapshotValue(4, 1, 3, 100, 1, 1, (B(100, 109, 0, 1),))),
                ShareStateRecord.update("g", TOPIC_ID, 7, ShareUpdateValue(4, 3, -1, (B(100, 104, 2, 1),))),
                ShareStateRecord.update("g", TOPIC_ID, 7, ShareUpdateValue(4, -1, 102, (B(110, 110, 4, 5),))),
            ]
            batch = build_batch([(*serialize(r), (), 1) for r in written])
            log = ctx.partition_log(SHARE_STATE_TOPIC, partition)
            log.append(batch, validate_batches(batch, log.config.max_message_bytes), 1, from_client=False)
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            assert await ctx.share_persister.read("g", TOPIC_ID, 7) == state(1, -1, 102, B(102, 104, 2, 1), B(105, 109, 0, 1), B(110, 110, 4, 5))
            assert runtime_of(ctx).snapshot(key) == ShareSnapshotValue(
                4, 1, 3, 102, 1, 1, (B(102, 104, 2, 1), B(105, 109, 0, 1), B(110, 110, 4, 5)),
            )

    run(main)


def test_a_deleted_topic_is_not_coordinated_and_recreated_by_the_persister(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            runtime = runtime_of(ctx)
            assert await ctx.share_persister.write("g", TOPIC_ID, 0, state()) == ErrorCode.NONE
            await ctx.metadata.delete_topic(SHARE_STATE_TOPIC)
            await asyncio.sleep(0.01)
            key = ShareSnapshotKey("g", TOPIC_ID, 0)
            with pytest.raises(CoordinatorError) as raised:
                await runtime.write_state(key, state())
            assert raised.value.error_code == ErrorCode.NOT_COORDINATOR
            assert await ctx.share_persister.read("g", TOPIC_ID, 0) is None  # a new, empty topic
            assert ctx.metadata.topic(SHARE_STATE_TOPIC) is not None

    run(main)


def test_the_persister_gives_up_after_its_attempts(tmp_path: Path) -> None:
    """A coordinator that never becomes available: the last error is the answer."""

    class Unavailable:
        calls = 0

        async def ensure_topic(self) -> None:
            self.calls += 1
            raise CoordinatorError(ErrorCode.COORDINATOR_NOT_AVAILABLE)

    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            runtime = Unavailable()
            persister = RuntimePersister(broker.ctx, runtime, attempts=3, backoff_s=0.001)  # type: ignore[arg-type]
            assert await persister.write("g", TOPIC_ID, 0, state()) == ErrorCode.COORDINATOR_NOT_AVAILABLE
            assert runtime.calls == 3
            with pytest.raises(SharePersisterError) as raised:
                await persister.read("g", TOPIC_ID, 0)
            assert raised.value.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
            assert await persister.delete("g", TOPIC_ID, 0) == ErrorCode.COORDINATOR_NOT_AVAILABLE
            assert runtime.calls == 9

    run(main)


def test_runtime_key_is_kafkas_coordinator_key() -> None:
    key = ShareSnapshotKey("group", uuid.UUID(int=1), 3)
    assert coordinator_key(key) == "group:AAAAAAAAAAAAAAAAAAAAAQ:3"
