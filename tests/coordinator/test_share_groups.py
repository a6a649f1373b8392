"""KIP-932 share groups in a coordinator shard, without a network: joins and the simple assignor
(members share partitions), epochs, leaving, session expiry, describe and list, other group types
refused, and reloading the records from their bytes."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.consumer_coordinator import TopicImage
from strom.coordinator.shard import GroupConfig
from strom.coordinator.share_groups import ShareHeartbeat, simple_assign
from strom.protocol.errors import ErrorCode
from tests.coordinator.context import GroupTestContext, reload

T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)
TOPICS = TopicImage({"q": (T1, 1), "r": (T2, 4)}, {T1: ("q", 1), T2: ("r", 4)}, 1)
SESSION = 45_000


def context() -> GroupTestContext:
    return GroupTestContext(config=GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=0,
                                               share_session_timeout_ms=SESSION))


def beat(ctx: GroupTestContext, member: str, epoch: int, names: tuple[str, ...] | None = None,
         group: str = "s") -> dict[str, Any]:
    request = ShareHeartbeat(group, member, epoch, subscribed_topic_names=names, client_id="c", client_host="/127.0.0.1")
    response = ctx.apply(ctx.coordinator.share_heartbeat(request, TOPICS, ctx.time)).response
    assert isinstance(response, dict)
    return response


def assigned(response: dict[str, Any]) -> dict[uuid.UUID, list[int]]:
    return {tp["topic_id"]: tp["partitions"] for tp in response["assignment"]["topic_partitions"]}


def test_members_share_one_partition() -> None:
    ctx = context()
    a = beat(ctx, "a", 0, ("q",))
    assert (a["error_code"], a["member_epoch"]) == (ErrorCode.NONE, 1) and assigned(a) == {T1: [0]}
    b = beat(ctx, "b", 0, ("q",))
    assert b["member_epoch"] == 2 and assigned(b) == {T1: [0]}  # no revocation: both read it
    again = beat(ctx, "a", 1)
    assert again["member_epoch"] == 2 and again["assignment"] is None  # same partitions, new epoch
    group = ctx.coordinator.share_groups["s"]
    assert group.state == "Stable" and set(group.members) == {"a", "b"}


def test_more_partitions_than_members_are_spread() -> None:
    ctx = context()
    beat(ctx, "a", 0, ("r",))
    beat(ctx, "b", 0, ("r",))
    a = beat(ctx, "a", 1)
    targets = ctx.coordinator.share_groups["s"].targets
    assert sorted(targets["a"][T2] | targets["b"][T2]) == [0, 1, 2, 3]
    assert not targets["a"][T2] & targets["b"][T2]
    assert len(assigned(a)[T2]) == 2


def test_validation_and_fencing() -> None:
    ctx = context()
    assert beat(ctx, "", 0, ("q",))["error_code"] == ErrorCode.INVALID_REQUEST
    assert beat(ctx, "x" * 37, 0, ("q",))["error_code"] == ErrorCode.INVALID_REQUEST
    assert beat(ctx, "a", 0)["error_code"] == ErrorCode.INVALID_REQUEST  # no topics on join
    assert beat(ctx, "a", 1, ("q",))["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND
    beat(ctx, "a", 0, ("q",))
    assert beat(ctx, "a", 5)["error_code"] == ErrorCode.FENCED_MEMBER_EPOCH
    assert beat(ctx, "z", 1)["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID
    ctx.commit("classic", {("q", 0): 1})
    assert beat(ctx, "a", 0, ("q",), group="classic")["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND
    assert ctx.commit("s", {("q", 0): 1})[("q", 0)] == ErrorCode.GROUP_ID_NOT_FOUND  # no offsets in share groups


def test_leave_and_session_expiry() -> None:
    ctx = context()
    beat(ctx, "a", 0, ("q",))
    beat(ctx, "b", 0, ("q",))
    left = beat(ctx, "a", -1)
    assert (left["error_code"], left["member_epoch"]) == (ErrorCode.NONE, -1)
    ctx.sleep(SESSION + 1)
    group = ctx.coordinator.share_groups["s"]
    assert not group.members and group.state == "Empty"


def test_list_describe_and_delete() -> None:
    ctx = context()
    beat(ctx, "a", 0, ("q",))
    assert ctx.coordinator.list_groups(types=["share"]) == [
        {"group_id": "s", "protocol_type": "share", "group_state": "Stable", "group_type": "share"}]
    described = ctx.coordinator.describe_share_group("s", TOPICS)
    assert (described["assignor_name"], described["group_epoch"]) == ("simple", 1)
    assert described["members"][0]["assignment"]["topic_partitions"] == [{"topic_id": T1, "topic_name": "q", "partitions": [0]}]
    assert ctx.coordinator.describe_share_group("nope", TOPICS)["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND
    assert ctx.apply(ctx.coordinator.delete_groups(["s"], ctx.time)).response == [{"group_id": "s", "error_code": ErrorCode.NON_EMPTY_GROUP}]
    beat(ctx, "a", -1)
    assert ctx.apply(ctx.coordinator.delete_groups(["s"], ctx.time)).response == [{"group_id": "s", "error_code": ErrorCode.NONE}]
    assert "s" not in ctx.coordinator.share_groups


def test_reload_gives_the_same_group() -> None:
    ctx = context()
    beat(ctx, "a", 0, ("q", "r"))
    beat(ctx, "b", 0, ("r",))
    before, after = ctx.coordinator.share_groups["s"], reload(ctx).share_groups["s"]
    assert (after.group_epoch, after.assignment_epoch, after.members, after.targets) == (
        before.group_epoch, before.assignment_epoch, before.members, before.targets)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6))
def test_simple_assignor_shares_evenly(members: int, partitions: int) -> None:
    names = [f"m{i}" for i in range(members)]
    out = simple_assign({m: frozenset({T1}) for m in names}, {}, {T1: partitions})
    holders = [sum(1 for m in names if p in out[m].get(T1, frozenset())) for p in range(partitions)]
    sharing = -(-members // partitions)
    assert all(h >= 1 for h in holders) and max(holders) <= sharing  # every partition read, none over-shared
    loads = [len(out[m].get(T1, frozenset())) for m in names]
    assert max(loads) - min(loads) <= 1 and min(loads) >= 1
    again = simple_assign({m: frozenset({T1}) for m in names}, out, {T1: partitions})
    assert again == out  # sticky


def test_the_partitions_a_group_has_read_are_kept() -> None:
    ctx = context()
    beat(ctx, "a", 0, ("r",))
    group = ctx.coordinator.share_groups["s"]
    assert group.initialized == {T2: ("r", frozenset({0, 1, 2, 3}))}
    beat(ctx, "a", -1)  # nobody reads now: still listed (DescribeShareGroupOffsets shows them)
    assert group.initialized == {T2: ("r", frozenset({0, 1, 2, 3}))}
    assert reload(ctx).share_groups["s"].initialized == group.initialized
    ctx.apply(ctx.coordinator.share_forget_topics("s", {T2}, ctx.time))
    assert group.initialized == {}
