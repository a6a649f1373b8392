"""The coordinator runtime in a real (in-process) broker: records go through the
__consumer_offsets log, partitions load in the background after a restart (answering
COORDINATOR_LOAD_IN_PROGRESS meanwhile), timers are asyncio timers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from handlers.group_harness import call, run, running  # tests/ is on sys.path (rootdir conftest)

from strom.coordinator.records import (
    OFFSETS_TOPIC,
    GroupMetadataKey,
    OffsetCommitKey,
    deserialize,
    partition_for,
)
from strom.metadata.broker_config import BrokerConfig
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.records import decode_records
from strom.server.coordinator_runtime import ShardState, group_config

SUBSCRIPTION = b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff"


async def _stable_member(ctx: Any, group: str = "g", session_ms: int = 10_000) -> str:
    await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": group})
    body = {
        "group_id": group, "session_timeout": session_ms, "rebalance_timeout": 5000, "member_id": "",
        "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": SUBSCRIPTION}],
    }
    joined = await call(ctx, ApiKey.JOIN_GROUP, 3, body)
    member = joined.member_id
    await call(ctx, ApiKey.SYNC_GROUP, 3, {"group_id": group, "generation_id": 1, "member_id": member,
                                           "assignments": [{"member_id": member, "assignment": b"a"}]})
    return member


def _records(ctx: Any, group: str) -> list[Any]:
    topic = ctx.metadata.topic(OFFSETS_TOPIC)
    log = ctx.partition_log(OFFSETS_TOPIC, partition_for(group, topic.partitions))
    data = log.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
        out.extend(deserialize(r.key, r.value) for r in decode_records(data[pos : pos + size]))
        pos += size
    return out


def test_records_land_in_the_groups_partition(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            member = await _stable_member(ctx)
            await ctx.create_topic("t", 1, {})
            await call(ctx, ApiKey.OFFSET_COMMIT, 3, {"group_id": "g", "generation_id_or_member_epoch": 1, "member_id": member,
                                                       "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 9}]}]})
            records = _records(ctx, "g")
            assert [type(r.key) for r in records] == [GroupMetadataKey, GroupMetadataKey, OffsetCommitKey]
            assert records[1].value.members[0].assignment == b"a"
            assert records[2].key == OffsetCommitKey("g", "t", 0) and records[2].value.offset == 9

    run(main)


def test_restart_loads_groups_and_offsets_in_the_background(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            member = await _stable_member(ctx, session_ms=300)
            await ctx.create_topic("t", 1, {})
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, {"group_id": "g", "generation_id_or_member_epoch": 1, "member_id": member,
                                                       "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 42}]}]})
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            partition = partition_for("g", 3)
            assert ctx.groups.state(partition) is ShardState.LOADING  # type: ignore[union-attr]
            fetch = {"groups": [{"group_id": "g", "topics": None}]}
            assert (await call(ctx, ApiKey.OFFSET_FETCH, 8, fetch)).groups[0].error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
            beat = {"group_id": "g", "generation_id": 1, "member_id": member}
            assert (await call(ctx, ApiKey.HEARTBEAT, 3, beat)).error_code == 0  # passes while loading
            listed = await call(ctx, ApiKey.LIST_GROUPS, 4, {})
            assert listed.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
            await asyncio.sleep(0.05)
            assert ctx.groups.state(partition) is ShardState.ACTIVE  # type: ignore[union-attr]
            fetched = await call(ctx, ApiKey.OFFSET_FETCH, 8, fetch)
            assert [p.committed_offset for t in fetched.groups[0].topics for p in t.partitions] == [42]
            (group,) = (await call(ctx, ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["g"]})).groups
            assert group.group_state == "Stable" and group.members[0].member_id == member
            assert group.members[0].member_assignment == b"a"
            # The member's session restarted at load time; it never heartbeats again.
            await asyncio.sleep(0.5)
            (group,) = (await call(ctx, ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["g"]})).groups
            assert group.group_state == "Empty"

    run(main)


def test_session_timeout_runs_on_asyncio_timers(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            member = await _stable_member(ctx, session_ms=200)
            beat = {"group_id": "g", "generation_id": 1, "member_id": member}
            for _ in range(4):
                await asyncio.sleep(0.1)
                assert (await call(ctx, ApiKey.HEARTBEAT, 3, beat)).error_code == 0
            await asyncio.sleep(0.35)
            assert (await call(ctx, ApiKey.HEARTBEAT, 3, beat)).error_code == ErrorCode.UNKNOWN_MEMBER_ID

    run(main)


def test_stopping_answers_parked_requests(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, group_initial_rebalance_delay_ms=60_000) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            body = {"group_id": "g", "session_timeout": 10_000, "rebalance_timeout": 90_000, "member_id": "",
                    "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": SUBSCRIPTION}]}
            parked = asyncio.ensure_future(call(ctx, ApiKey.JOIN_GROUP, 3, body))
            await asyncio.sleep(0.05)
            assert not parked.done()
        response = await asyncio.wait_for(parked, 5)
        assert response.error_code == ErrorCode.NOT_COORDINATOR

    run(main)


def test_deleted_offsets_topic_is_recreated_on_find_coordinator(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await _stable_member(ctx)
            await ctx.metadata.delete_topic(OFFSETS_TOPIC)
            fetch = {"groups": [{"group_id": "g", "topics": None}]}
            assert (await call(ctx, ApiKey.OFFSET_FETCH, 8, fetch)).groups[0].error_code == ErrorCode.NOT_COORDINATOR
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            fetched = await call(ctx, ApiKey.OFFSET_FETCH, 8, fetch)
            assert fetched.groups[0].error_code == 0 and fetched.groups[0].topics == ()

    run(main)


def test_share_group_settings_reach_the_coordinators() -> None:
    config = BrokerConfig.from_values({"log.dirs": "/unused", "group.share.max.size": "3",
                                       "group.share.session.timeout.ms": "30000"})
    settings = group_config(config)
    assert (settings.share_max_size, settings.share_session_timeout_ms, settings.share_heartbeat_interval_ms) == (3, 30000, 5000)
