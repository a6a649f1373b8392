"""OffsetCommit, OffsetFetch and OffsetDelete at every advertised version, against an
in-process broker (requests and answers go through the codec)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode

from .group_harness import call, run, running


async def _setup(ctx: Any) -> Any:
    await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
    return await ctx.create_topic("t", 2, {})


def _commit_body(version: int, topic: Any, offsets: dict[int, int], group: str = "g", **extra: Any) -> dict[str, Any]:
    partitions = [
        {"partition_index": p, "committed_offset": o, "committed_leader_epoch": 3, "committed_metadata": f"m{p}"}
        for p, o in offsets.items()
    ]
    named = {"topic_id": topic.topic_id} if version >= 10 else {"name": topic.name}
    return {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "", "topics": [{**named, "partitions": partitions}], **extra}


def _fetch_body(version: int, topic: Any, partitions: list[int] | None, group: str = "g") -> dict[str, Any]:
    named = {"topic_id": topic.topic_id} if version >= 10 else {"name": topic.name}
    topics = None if partitions is None else [{**named, "partition_indexes": partitions}]
    if version >= 8:
        return {"groups": [{"group_id": group, "topics": topics}], "require_stable": True}
    return {"group_id": group, "topics": topics, "require_stable": True}


def _fetched(version: int, response: Any) -> dict[int, tuple[int, Any]]:
    topics = response.groups[0].topics if version >= 8 else response.topics
    return {p.partition_index: (p.committed_offset, p.metadata) for t in topics for p in t.partitions}


@pytest.mark.parametrize("version", range(2, 11))
def test_commit_then_fetch_at_every_version(tmp_path: Path, version: int) -> None:
    fetch_version = min(version, 10) if version >= 2 else 1

    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            topic = await _setup(ctx)
            response = await call(ctx, ApiKey.OFFSET_COMMIT, version, _commit_body(version, topic, {0: 10, 1: 11, 7: 1}))
            (answered,) = response.topics
            if version >= 10:
                assert answered.topic_id == topic.topic_id
            else:
                assert answered.name == "t"
            assert [(p.partition_index, p.error_code) for p in answered.partitions] == [
                (0, 0), (1, 0), (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
            fetched = await call(ctx, ApiKey.OFFSET_FETCH, fetch_version, _fetch_body(fetch_version, topic, [0, 1]))
            assert _fetched(fetch_version, fetched) == {0: (10, "m0"), 1: (11, "m1")}
            if fetch_version >= 5:
                topics = fetched.groups[0].topics if fetch_version >= 8 else fetched.topics
                assert {p.committed_leader_epoch for p in topics[0].partitions} == {3 if version >= 6 else -1}
            # Every committed partition of the group (a null topic list, v2+).
            everything = await call(ctx, ApiKey.OFFSET_FETCH, fetch_version, _fetch_body(fetch_version, topic, None))
            assert _fetched(fetch_version, everything) == {0: (10, "m0"), 1: (11, "m1")}

    run(main)


def test_commit_to_unknown_topics(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            topic = await _setup(ctx)
            body = {"group_id": "g", "member_id": "", "topics": [
                {"name": "nope", "partitions": [{"partition_index": 0, "committed_offset": 1}]},
                {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1}]}]}
            response = await call(ctx, ApiKey.OFFSET_COMMIT, 8, body)
            assert [t.partitions[0].error_code for t in response.topics] == [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, 0]
            import uuid

            body = {"group_id": "g", "member_id": "", "topics": [
                {"topic_id": uuid.uuid4(), "partitions": [{"partition_index": 0, "committed_offset": 1}]}]}
            response = await call(ctx, ApiKey.OFFSET_COMMIT, 10, body)
            assert response.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
            fetched = await call(ctx, ApiKey.OFFSET_FETCH, 10, {"groups": [{"group_id": "g", "topics": [
                {"topic_id": body["topics"][0]["topic_id"], "partition_indexes": [0]},
                {"topic_id": topic.topic_id, "partition_indexes": [0, 1]}]}]})
            topics = fetched.groups[0].topics
            assert [p.error_code for p in topics[0].partitions] == [ErrorCode.UNKNOWN_TOPIC_ID]
            assert [p.committed_offset for p in topics[1].partitions] == [1, -1]

    run(main)


def test_commit_validation_reaches_the_client(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            topic = await _setup(ctx)
            body = _commit_body(8, topic, {0: 1}, generation_id_or_member_epoch=3, member_id="m")
            response = await call(ctx, ApiKey.OFFSET_COMMIT, 8, body)
            assert response.topics[0].partitions[0].error_code == ErrorCode.ILLEGAL_GENERATION
            response = await call(ctx, ApiKey.OFFSET_COMMIT, 9, body)
            assert response.topics[0].partitions[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND
            big = {"group_id": "g", "member_id": "", "topics": [{"name": "t", "partitions": [
                {"partition_index": 0, "committed_offset": 1, "committed_metadata": "x" * 4097}]}]}
            response = await call(ctx, ApiKey.OFFSET_COMMIT, 8, big)
            assert response.topics[0].partitions[0].error_code == ErrorCode.OFFSET_METADATA_TOO_LARGE
            response = await call(ctx, ApiKey.OFFSET_COMMIT, 8, {**big, "group_id": ""})
            assert response.topics[0].partitions[0].error_code == ErrorCode.INVALID_GROUP_ID

    run(main)


def test_fetch_several_groups_and_coordinator_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            topic = await _setup(ctx)
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, _commit_body(8, topic, {0: 5}, group="a"))
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, _commit_body(8, topic, {1: 6}, group="b"))
            body = {"groups": [
                {"group_id": "a", "topics": [{"name": "t", "partition_indexes": [0, 1]}]},
                {"group_id": "b", "topics": None},
                {"group_id": "", "topics": None},
            ]}
            fetched = await call(ctx, ApiKey.OFFSET_FETCH, 8, body)
            a, b, invalid = fetched.groups
            assert [p.committed_offset for p in a.topics[0].partitions] == [5, -1]
            assert [(t.name, p.partition_index, p.committed_offset) for t in b.topics for p in t.partitions] == [("t", 1, 6)]
            assert invalid.error_code == ErrorCode.INVALID_GROUP_ID

    run(main)


def test_fetch_v1_reports_coordinator_errors_per_partition(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            # No FindCoordinator yet: no __consumer_offsets, so not the coordinator.
            body = {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0, 1]}]}
            fetched = await call(broker.ctx, ApiKey.OFFSET_FETCH, 1, body)
            assert [p.error_code for p in fetched.topics[0].partitions] == [ErrorCode.NOT_COORDINATOR] * 2
            fetched = await call(broker.ctx, ApiKey.OFFSET_FETCH, 2, body)
            assert fetched.error_code == ErrorCode.NOT_COORDINATOR

    run(main)


def test_offset_delete(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            topic = await _setup(ctx)
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, _commit_body(8, topic, {0: 5, 1: 6}))
            body = {"group_id": "g", "topics": [
                {"name": "t", "partitions": [{"partition_index": 0}, {"partition_index": 9}]}]}
            response = await call(ctx, ApiKey.OFFSET_DELETE, 0, body)
            assert response.error_code == 0
            assert [(p.partition_index, p.error_code) for p in response.topics[0].partitions] == [
                (0, 0), (9, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
            fetched = await call(ctx, ApiKey.OFFSET_FETCH, 8, _fetch_body(8, topic, [0, 1]))
            assert _fetched(8, fetched) == {0: (-1, ""), 1: (6, "m1")}
            response = await call(ctx, ApiKey.OFFSET_DELETE, 0, {**body, "group_id": "nope"})
            assert response.error_code == ErrorCode.GROUP_ID_NOT_FOUND

    run(main)
