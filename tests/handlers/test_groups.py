"""The group handlers at every advertised version, against an in-process broker: FindCoordinator,
JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups, DeleteGroups, and the
Metadata rules for internal topics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strom.coordinator.records import OFFSETS_TOPIC
from strom.handlers.registry import registrations
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode

from .group_harness import call, run, running

SUBSCRIPTION = b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff"


def test_advertised_versions() -> None:
    regs = registrations()
    expected = {
        ApiKey.OFFSET_COMMIT: (2, 10), ApiKey.OFFSET_FETCH: (1, 10), ApiKey.FIND_COORDINATOR: (0, 6),
        ApiKey.JOIN_GROUP: (0, 9), ApiKey.HEARTBEAT: (0, 4), ApiKey.LEAVE_GROUP: (0, 5),
        ApiKey.SYNC_GROUP: (0, 5), ApiKey.DESCRIBE_GROUPS: (0, 6), ApiKey.LIST_GROUPS: (0, 5),
        ApiKey.DELETE_GROUPS: (0, 2), ApiKey.OFFSET_DELETE: (0, 0),
        ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1), ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),  # KIP-848, as Kafka 4.x
    }
    for key, versions in expected.items():
        assert (regs[key].min_version, regs[key].max_version) == versions, key


@pytest.mark.parametrize("version", range(0, 7))
def test_find_coordinator_creates_the_offsets_topic(tmp_path: Path, version: int) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            assert ctx.metadata.topic(OFFSETS_TOPIC) is None
            if version >= 4:
                body = {"key_type": 0, "coordinator_keys": ["g1", "g2"]}
                response = await call(ctx, ApiKey.FIND_COORDINATOR, version, body)
                assert [(c.key, c.error_code, c.node_id, c.port) for c in response.coordinators] == [
                    ("g1", 0, 0, broker.port), ("g2", 0, 0, broker.port)]
            else:
                response = await call(ctx, ApiKey.FIND_COORDINATOR, version, {"key": "g1", "key_type": 0})
                assert (response.error_code, response.node_id, response.host, response.port) == (0, 0, "127.0.0.1", broker.port)
            topic = ctx.metadata.topic(OFFSETS_TOPIC)
            assert topic is not None and topic.partitions == 3 and topic.configs["cleanup.policy"] == "compact"

    run(main)


def test_find_coordinator_other_key_types(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            body = {"key_type": 1, "coordinator_keys": ["txn"]}
            (txn,) = (await call(broker.ctx, ApiKey.FIND_COORDINATOR, 4, body)).coordinators
            assert txn.error_code == ErrorCode.NONE and txn.node_id == 0  # transactions: tests/handlers/test_transactions.py
            body = {"key_type": 2, "coordinator_keys": ["share"]}
            (share,) = (await call(broker.ctx, ApiKey.FIND_COORDINATOR, 6, body)).coordinators
            assert share.error_code == ErrorCode.INVALID_REQUEST

    run(main)


@pytest.mark.parametrize("version", [0, 1, 12])
def test_metadata_lists_internal_topics_as_internal(tmp_path: Path, version: int) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 3, {"key": "g", "key_type": 0})
            await ctx.create_topic("user", 1, {})
            # Every topic, as Kafka answers (v0: an empty list; v1+: a null one).
            body = {"topics": [] if version == 0 else None, "allow_auto_topic_creation": True}
            everything = await call(ctx, ApiKey.METADATA, version, body)
            listed = {t.name: t for t in everything.topics}
            assert set(listed) == {"user", OFFSETS_TOPIC}
            if version >= 1:  # is_internal is v1+
                assert listed[OFFSETS_TOPIC].is_internal and not listed["user"].is_internal
            named = await call(ctx, ApiKey.METADATA, 12, {"topics": [{"name": OFFSETS_TOPIC}], "allow_auto_topic_creation": True})
            (topic,) = named.topics
            assert topic.error_code == 0 and topic.is_internal and len(topic.partitions) == 3
            refused = await call(ctx, ApiKey.METADATA, 12, {"topics": [{"name": "__mine"}], "allow_auto_topic_creation": True})
            assert refused.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            assert ctx.metadata.topic("__mine") is None

    run(main)


async def _join(ctx: Any, version: int, group: str = "g", member_id: str = "", **extra: Any) -> Any:
    body = {
        "group_id": group,
        "session_timeout": 10_000,
        "rebalance_timeout": 20_000,
        "member_id": member_id,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": SUBSCRIPTION}],
        **extra,
    }
    return await call(ctx, ApiKey.JOIN_GROUP, version, body, client_id="client-1")


@pytest.mark.parametrize("version", range(0, 10))
def test_a_member_joins_syncs_beats_and_leaves_at_every_version(tmp_path: Path, version: int) -> None:
    sync_version = min(version, 5)
    heartbeat_version = min(version, 4)
    leave_version = min(version, 5)

    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            joined = await _join(ctx, version)
            if version >= 4:
                assert joined.error_code == ErrorCode.MEMBER_ID_REQUIRED and joined.member_id
                joined = await _join(ctx, version, member_id=joined.member_id)
            assert joined.error_code == 0 and joined.generation_id == 1 and joined.leader == joined.member_id
            assert joined.protocol_name == "range" and joined.member_id.startswith("client-1-")
            assert [m.metadata for m in joined.members] == [SUBSCRIPTION]
            if version >= 7:
                assert joined.protocol_type == "consumer"
            member = joined.member_id
            sync_body = {
                "group_id": "g", "generation_id": 1, "member_id": member,
                "protocol_type": "consumer", "protocol_name": "range",
                "assignments": [{"member_id": member, "assignment": b"mine"}],
            }
            synced = await call(ctx, ApiKey.SYNC_GROUP, sync_version, sync_body)
            assert synced.error_code == 0 and synced.assignment == b"mine"
            beat = {"group_id": "g", "generation_id": 1, "member_id": member}
            assert (await call(ctx, ApiKey.HEARTBEAT, heartbeat_version, beat)).error_code == 0
            assert (await call(ctx, ApiKey.HEARTBEAT, heartbeat_version, {**beat, "generation_id": 9})).error_code == ErrorCode.ILLEGAL_GENERATION
            described = (await call(ctx, ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["g"]})).groups[0]
            assert (described.group_state, described.protocol_data) == ("Stable", "range")
            assert (described.members[0].client_id, described.members[0].client_host) == ("client-1", "/127.0.0.1")
            if leave_version >= 3:
                leave = {"group_id": "g", "members": [{"member_id": member}, {"member_id": "ghost"}]}
                left = await call(ctx, ApiKey.LEAVE_GROUP, leave_version, leave)
                assert left.error_code == 0 and [m.error_code for m in left.members] == [0, ErrorCode.UNKNOWN_MEMBER_ID]
            else:
                left = await call(ctx, ApiKey.LEAVE_GROUP, leave_version, {"group_id": "g", "member_id": member})
                assert left.error_code == 0
                again = await call(ctx, ApiKey.LEAVE_GROUP, leave_version, {"group_id": "g", "member_id": member})
                assert again.error_code == ErrorCode.UNKNOWN_MEMBER_ID
            described = (await call(ctx, ApiKey.DESCRIBE_GROUPS, 0, {"groups": ["g"]})).groups[0]
            assert described.group_state == "Empty" and described.members == ()

    run(main)


def test_two_members_rebalance_through_parked_joins(tmp_path: Path) -> None:
    async def main() -> None:
        import asyncio

        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            first = await _join(ctx, 3)
            await call(ctx, ApiKey.SYNC_GROUP, 3, {"group_id": "g", "generation_id": 1, "member_id": first.member_id,
                                                   "assignments": [{"member_id": first.member_id, "assignment": b"all"}]})
            # A second member parks in JoinGroup until the first rejoins.
            second = asyncio.ensure_future(_join(ctx, 3))
            await asyncio.sleep(0.05)
            assert not second.done()
            beat = await call(ctx, ApiKey.HEARTBEAT, 3, {"group_id": "g", "generation_id": 1, "member_id": first.member_id})
            assert beat.error_code == ErrorCode.REBALANCE_IN_PROGRESS
            rejoined = await _join(ctx, 3, member_id=first.member_id)
            second_joined = await second
            assert rejoined.generation_id == second_joined.generation_id == 2
            assert len(rejoined.members) == 2 and second_joined.members == ()
            # The follower's SyncGroup parks until the leader's arrives.
            follower = asyncio.ensure_future(call(ctx, ApiKey.SYNC_GROUP, 3, {
                "group_id": "g", "generation_id": 2, "member_id": second_joined.member_id, "assignments": []}))
            await asyncio.sleep(0.05)
            assert not follower.done()
            leader = await call(ctx, ApiKey.SYNC_GROUP, 3, {"group_id": "g", "generation_id": 2, "member_id": first.member_id,
                                                            "assignments": [{"member_id": first.member_id, "assignment": b"a"},
                                                                            {"member_id": second_joined.member_id, "assignment": b"b"}]})
            assert leader.assignment == b"a" and (await follower).assignment == b"b"

    run(main)


def test_group_requests_validate_the_group_id(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            assert (await _join(ctx, 5, group="")).error_code == ErrorCode.INVALID_GROUP_ID
            sync = await call(ctx, ApiKey.SYNC_GROUP, 5, {"group_id": "", "generation_id": 1, "member_id": "m"})
            assert sync.error_code == ErrorCode.INVALID_GROUP_ID
            beat = await call(ctx, ApiKey.HEARTBEAT, 4, {"group_id": "", "generation_id": 1, "member_id": "m"})
            assert beat.error_code == ErrorCode.INVALID_GROUP_ID
            # Before any FindCoordinator there is no __consumer_offsets: not the coordinator.
            assert (await _join(ctx, 5)).error_code == ErrorCode.NOT_COORDINATOR

    run(main)


@pytest.mark.parametrize("version", range(0, 7))
def test_describe_unknown_group(tmp_path: Path, version: int) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            await call(broker.ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            (group,) = (await call(broker.ctx, ApiKey.DESCRIBE_GROUPS, version, {"groups": ["nope"]})).groups
            assert group.group_state == "Dead"
            assert group.error_code == (ErrorCode.GROUP_ID_NOT_FOUND if version >= 6 else 0)

    run(main)


@pytest.mark.parametrize("version", range(0, 6))
def test_list_groups(tmp_path: Path, version: int) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            await _join(ctx, 3, group="live")
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, {
                "group_id": "simple", "generation_id_or_member_epoch": -1, "member_id": "", "topics": []})
            await ctx.create_topic("t", 1, {})
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, {"group_id": "simple", "member_id": "", "topics": [
                {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1}]}]})
            listed = await call(ctx, ApiKey.LIST_GROUPS, version, {})
            assert listed.error_code == 0
            assert sorted((g.group_id, g.protocol_type) for g in listed.groups) == [("live", "consumer"), ("simple", "")]
            if version >= 4:
                stable = await call(ctx, ApiKey.LIST_GROUPS, version, {"states_filter": ["completingrebalance"]})
                assert [g.group_id for g in stable.groups] == ["live"]
                assert stable.groups[0].group_state == "CompletingRebalance"
            if version >= 5:
                none = await call(ctx, ApiKey.LIST_GROUPS, version, {"types_filter": ["consumer"]})
                assert none.groups == ()
                assert all(g.group_type == "classic" for g in listed.groups)

    run(main)


@pytest.mark.parametrize("version", range(0, 3))
def test_delete_groups(tmp_path: Path, version: int) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            await _join(ctx, 3, group="busy")
            await ctx.create_topic("t", 1, {})
            await call(ctx, ApiKey.OFFSET_COMMIT, 8, {"group_id": "idle", "member_id": "", "topics": [
                {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1}]}]})
            response = await call(ctx, ApiKey.DELETE_GROUPS, version, {"groups_names": ["busy", "idle", "nope", ""]})
            assert [(r.group_id, r.error_code) for r in response.results] == [
                ("busy", ErrorCode.NON_EMPTY_GROUP), ("idle", 0), ("nope", ErrorCode.GROUP_ID_NOT_FOUND),
                ("", ErrorCode.INVALID_GROUP_ID)]
            listed = await call(ctx, ApiKey.LIST_GROUPS, 4, {})
            assert [g.group_id for g in listed.groups] == ["busy"]

    run(main)
