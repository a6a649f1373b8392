"""OffsetCommit validation, OffsetFetch, OffsetDelete and offset expiry, with a fake clock."""

from __future__ import annotations

from strom.coordinator.coordinator import LeaveMember
from strom.coordinator.records import GroupMetadataKey, OffsetCommitKey
from strom.coordinator.shard import GroupConfig
from strom.protocol.errors import ErrorCode

from .context import GroupTestContext, Member, protocols

MINUTE = 60_000


def config(**kwargs: int) -> GroupConfig:
    base = {
        "min_session_timeout_ms": 10,
        "initial_rebalance_delay_ms": 0,
        "offsets_retention_ms": 10 * MINUTE,
        "offsets_retention_check_interval_ms": MINUTE,
    }
    base.update(kwargs)
    return GroupConfig(**base)


def test_simple_commit_creates_a_group_without_protocol() -> None:
    ctx = GroupTestContext()
    assert ctx.commit("s", {("t", 0): 42, ("t", 1): 43}) == {("t", 0): 0, ("t", 1): 0}
    assert ctx.committed("s", partitions=(0, 1, 2)) == {0: 42, 1: 43, 2: -1}
    group = ctx.group("s")
    assert group.state.value == "Empty" and group.protocol_type is None
    value = ctx.log[-1].value
    assert (value.offset, value.leader_epoch, value.metadata, value.commit_timestamp) == (43, 5, "", 0)


def test_member_commits_are_validated() -> None:
    ctx = GroupTestContext()
    a, b = ctx.stable_group(size=2)
    assert ctx.commit("g", {("t", 0): 1}, member=a) == {("t", 0): 0}
    assert ctx.commit("g", {("t", 0): 1}, member=a, generation=0) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    assert ctx.commit("g", {("t", 0): 1}, member=Member("ghost", 1, "")) == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    # Without member or generation, a group with members refuses.
    assert ctx.commit("g", {("t", 0): 1}) == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    # Between the join and the assignment: retry.
    ctx.join("g", a.member_id)
    ctx.join("g", b.member_id)
    a2 = Member(a.member_id, 2, a.leader)
    assert ctx.state() == "CompletingRebalance"
    assert ctx.commit("g", {("t", 0): 1}, member=a2) == {("t", 0): ErrorCode.REBALANCE_IN_PROGRESS}


def test_commit_to_an_unknown_group_with_a_generation() -> None:
    ctx = GroupTestContext()
    member = Member("m", 3, "")
    assert ctx.commit("nope", {("t", 0): 1}, member=member, version=9) == {("t", 0): ErrorCode.GROUP_ID_NOT_FOUND}
    assert ctx.commit("nope", {("t", 0): 1}, member=member, version=8) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    assert "nope" not in ctx.coordinator.groups


def test_commit_keeps_the_session_alive() -> None:
    ctx = GroupTestContext()
    (a,) = ctx.stable_group(size=1, session_ms=1000)
    for _ in range(5):
        ctx.sleep(900)
        assert ctx.commit("g", {("t", 0): 1}, member=a) == {("t", 0): 0}
    assert ctx.state() == "Stable"


def test_offset_metadata_too_large() -> None:
    ctx = GroupTestContext(config=config(offset_metadata_max_bytes=4))
    assert ctx.commit("s", {("t", 0): 1}, metadata="12345") == {("t", 0): ErrorCode.OFFSET_METADATA_TOO_LARGE}
    assert ctx.commit("s", {("t", 0): 1}, metadata="1234") == {("t", 0): 0}


def test_fetch_all_offsets_and_unknown_groups() -> None:
    ctx = GroupTestContext()
    ctx.commit("s", {("t", 0): 1, ("u", 2): 3})
    response = ctx.coordinator.fetch_offsets("s", None, ctx.time).response
    assert {(t["name"], p["partition_index"], p["committed_offset"]) for t in response["topics"] for p in t["partitions"]} == {
        ("t", 0, 1), ("u", 2, 3)}
    assert ctx.coordinator.fetch_offsets("nope", None, ctx.time).response["topics"] == []
    assert ctx.committed("nope") == {0: -1}


def test_delete_offsets() -> None:
    ctx = GroupTestContext()
    ctx.commit("s", {("t", 0): 1, ("t", 1): 2})
    result = ctx.apply(ctx.coordinator.delete_offsets("s", [("t", [0, 5])], ctx.time))
    assert result.response == {"error_code": 0, "topics": [{"name": "t", "partitions": [
        {"partition_index": 0, "error_code": 0}, {"partition_index": 5, "error_code": 0}]}]}
    assert [(r.key, r.value) for r in result.records] == [(OffsetCommitKey("s", "t", 0), None)]
    assert ctx.committed("s", partitions=(0, 1)) == {0: -1, 1: 2}
    response = ctx.coordinator.delete_offsets("nope", [("t", [0])], ctx.time).response
    assert response["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND


def test_delete_offsets_of_an_active_group() -> None:
    ctx = GroupTestContext()
    (a,) = ctx.stable_group(size=1, protocols_=protocols("range", topics=("t",)))
    ctx.commit("g", {("t", 0): 1, ("old", 0): 1}, member=a)
    response = ctx.apply(ctx.coordinator.delete_offsets("g", [("t", [0]), ("old", [0])], ctx.time)).response
    assert [t["partitions"][0]["error_code"] for t in response["topics"]] == [ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, 0]
    # A non-consumer group with members refuses outright.
    tickets = [ctx.join("connect", protocol_type="connect", version=3)]
    ctx.sleep(0)
    assert ctx.answer(tickets[0])["error_code"] == 0
    response = ctx.coordinator.delete_offsets("connect", [("t", [0])], ctx.time).response
    assert response["error_code"] == ErrorCode.NON_EMPTY_GROUP


def test_offsets_of_an_empty_group_expire_after_retention_since_it_emptied() -> None:
    ctx = GroupTestContext(config=config())
    (a,) = ctx.stable_group(size=1, session_ms=25 * MINUTE)
    ctx.commit("g", {("t", 0): 7}, member=a)
    ctx.sleep(20 * MINUTE)  # old commit, but the group is not empty: kept
    ctx.heartbeat("g", a)
    assert ctx.committed("g") == {0: 7}
    ctx.leave("g", LeaveMember(a.member_id))
    emptied = ctx.time
    ctx.sleep(9 * MINUTE)
    assert ctx.committed("g") == {0: 7}
    ctx.sleep(MINUTE)  # retention since the group became empty has passed
    assert ctx.time - emptied == 10 * MINUTE
    assert ctx.committed("g") == {0: -1}
    # ... and with no offsets left, the empty group is deleted (a tombstone).
    assert "g" not in ctx.coordinator.groups
    assert (ctx.log[-1].key, ctx.log[-1].value) == (GroupMetadataKey("g"), None)


def test_simple_group_offsets_expire_from_their_commit() -> None:
    ctx = GroupTestContext(config=config())
    ctx.commit("s", {("t", 0): 1})
    ctx.sleep(5 * MINUTE)
    ctx.commit("s", {("t", 1): 2})
    ctx.sleep(5 * MINUTE)
    assert ctx.committed("s", partitions=(0, 1)) == {0: -1, 1: 2}
    ctx.sleep(5 * MINUTE)
    assert "s" not in ctx.coordinator.groups


def test_stable_consumer_group_keeps_subscribed_topics_only() -> None:
    ctx = GroupTestContext(config=config())
    (a,) = ctx.stable_group(size=1, protocols_=protocols("range", topics=("t",)), session_ms=25 * MINUTE)
    ctx.commit("g", {("t", 0): 1, ("gone", 0): 2}, member=a)
    for _ in range(11):
        ctx.sleep(MINUTE)
        ctx.heartbeat("g", a)
    assert ctx.committed("g") == {0: 1}
    assert ctx.committed("g", "gone") == {0: -1}
    assert ctx.state() == "Stable"


def test_explicit_retention_time_of_old_commit_versions() -> None:
    ctx = GroupTestContext(config=config(offsets_retention_ms=1000 * MINUTE))
    ctx.commit("s", {("t", 0): 1}, retention_ms=2 * MINUTE, version=2)
    assert ctx.log[-1].value.expire_timestamp == 2 * MINUTE
    ctx.sleep(MINUTE)
    assert ctx.committed("s") == {0: 1}
    ctx.sleep(MINUTE)
    assert ctx.committed("s") == {0: -1}


def test_expiry_check_runs_every_interval() -> None:
    ctx = GroupTestContext(config=config(offsets_retention_check_interval_ms=5 * MINUTE))
    assert ctx.coordinator.deadline(("expire-group-metadata",)) == 5 * MINUTE
    ctx.sleep(5 * MINUTE)
    assert ctx.coordinator.deadline(("expire-group-metadata",)) == 10 * MINUTE
