"""Transactional offset commits in the group coordinator (TxnOffsetCommit, KIP-98/447):
pending until the transaction's marker, committed or dropped by it, UNSTABLE_OFFSET_COMMIT
for require_stable fetches meanwhile, and the same after a reload from the log."""

from __future__ import annotations

from typing import Any

from strom.coordinator.offset_manager import CommitPartition, TxnCommitRequest
from strom.protocol.errors import ErrorCode

from .context import GroupTestContext, Member, reload

PRODUCER, EPOCH = 7, 2


def txn_commit(ctx: GroupTestContext, group_id: str, offsets: dict[tuple[str, int], int], *,
               producer_id: int = PRODUCER, member: Member | None = None, generation: int | None = None) -> dict[tuple[str, int], int]:
    topics: dict[str, list[CommitPartition]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(CommitPartition(partition, offset, 3, "m"))
    request = TxnCommitRequest(
        group_id, producer_id, EPOCH, tuple((t, tuple(ps)) for t, ps in topics.items()),
        member_id=member.member_id if member else "",
        generation_id=generation if generation is not None else (member.generation_id if member else -1),
        group_instance_id=member.instance_id if member else None,
    )
    result = ctx.apply(ctx.coordinator.txn_commit_offsets(request, ctx.time))
    if result.records:
        assert result.producer == (producer_id, EPOCH)
    return {(t["name"], p["partition_index"]): p["error_code"] for t in result.response["topics"] for p in t["partitions"]}


def fetch(ctx: GroupTestContext, group_id: str, *, stable: bool, partitions: tuple[int, ...] = (0, 1)) -> dict[int, Any]:
    result = ctx.coordinator.fetch_offsets(group_id, [("t", partitions)], ctx.time, require_stable=stable)
    return {p["partition_index"]: (p["committed_offset"], p["error_code"]) for p in result.response["topics"][0]["partitions"]}


def test_pending_until_the_commit_marker() -> None:
    ctx = GroupTestContext()
    ctx.commit("g", {("t", 1): 5})
    assert txn_commit(ctx, "g", {("t", 0): 10, ("t", 1): 11}) == {("t", 0): 0, ("t", 1): 0}
    assert fetch(ctx, "g", stable=False) == {0: (-1, 0), 1: (5, 0)}
    assert fetch(ctx, "g", stable=True) == {0: (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT), 1: (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)}
    ctx.marker(PRODUCER, commit=True)
    assert fetch(ctx, "g", stable=True) == {0: (10, 0), 1: (11, 0)}
    assert ctx.coordinator.offsets.get("g", "t", 0).metadata == "m"


def test_dropped_by_the_abort_marker() -> None:
    ctx = GroupTestContext()
    ctx.commit("g", {("t", 0): 5})
    txn_commit(ctx, "g", {("t", 0): 10})
    ctx.marker(PRODUCER, commit=False)
    assert fetch(ctx, "g", stable=True) == {0: (5, 0), 1: (-1, 0)}
    ctx.marker(PRODUCER, commit=True)  # a repeated marker finds nothing pending
    assert fetch(ctx, "g", stable=True)[0] == (5, 0)


def test_a_later_plain_commit_wins_over_the_transactional_one() -> None:
    ctx = GroupTestContext()
    txn_commit(ctx, "g", {("t", 0): 10, ("t", 1): 20})
    ctx.commit("g", {("t", 0): 99})  # stored after the transactional offset, before the marker
    ctx.marker(PRODUCER, commit=True)
    assert fetch(ctx, "g", stable=True) == {0: (99, 0), 1: (20, 0)}


def test_producers_are_independent_and_a_group_appears_on_commit() -> None:
    ctx = GroupTestContext()
    txn_commit(ctx, "new", {("t", 0): 1}, producer_id=1)
    txn_commit(ctx, "new", {("t", 1): 2}, producer_id=2)
    assert "new" not in ctx.coordinator.groups
    ctx.marker(2, commit=True)
    assert fetch(ctx, "new", stable=True) == {0: (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT), 1: (2, 0)}
    assert ctx.group("new").state.value == "Empty"
    ctx.marker(1, commit=False)
    assert fetch(ctx, "new", stable=True) == {0: (-1, 0), 1: (2, 0)}


def test_members_are_validated_but_rebalances_do_not_hold_commits_back() -> None:
    ctx = GroupTestContext()
    a, _b = ctx.stable_group(size=2)
    assert txn_commit(ctx, "g", {("t", 0): 1}, member=a) == {("t", 0): 0}
    assert txn_commit(ctx, "g", {("t", 0): 1}, member=a, generation=9) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    stranger = Member("nobody", a.generation_id, a.leader)
    assert txn_commit(ctx, "g", {("t", 0): 1}, member=stranger) == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    # v0-2 name no member: accepted even though the group has members (unlike OffsetCommit).
    assert txn_commit(ctx, "g", {("t", 0): 1}) == {("t", 0): 0}
    assert txn_commit(ctx, "unknown", {("t", 0): 1}, generation=3) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}


def test_reload_respects_the_markers_in_the_log() -> None:
    ctx = GroupTestContext()
    txn_commit(ctx, "g", {("t", 0): 10}, producer_id=1)
    txn_commit(ctx, "g", {("t", 1): 20}, producer_id=2)
    txn_commit(ctx, "g", {("t", 0): 30}, producer_id=3)
    ctx.marker(1, commit=True)
    ctx.marker(2, commit=False)
    loaded = reload(ctx)
    assert loaded.offsets.get("g", "t", 0).committed_offset == 10
    assert loaded.offsets.get("g", "t", 1) is None
    assert loaded.offsets.has_pending("g", "t", 0) and not loaded.offsets.has_pending("g", "t", 1)
