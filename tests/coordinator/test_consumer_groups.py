"""KIP-848 consumer groups in a coordinator shard, without a network (tests/coordinator/context.py
plays the runtime): joins, the revoke-before-assign reconciliation, epochs and fencing, static
members, leaving, session and rebalance timeouts, regex subscriptions, offsets with member epochs,
ListGroups / ConsumerGroupDescribe, conversion from an empty classic group, and reloading the
records from their bytes."""

from __future__ import annotations

import uuid
from typing import Any

from strom.coordinator.consumer_coordinator import ConsumerHeartbeat, TopicImage
from strom.coordinator.consumer_group import STABLE, UNRELEASED_PARTITIONS, UNREVOKED_PARTITIONS
from strom.coordinator.shard import GroupConfig
from strom.protocol.errors import ErrorCode
from tests.coordinator.context import GroupTestContext, reload

T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)
TOPICS = TopicImage({"t": (T1, 4), "u": (T2, 2)}, {T1: ("t", 4), T2: ("u", 2)}, 1)
SESSION, INTERVAL = 45_000, 5_000


def context() -> GroupTestContext:
    return GroupTestContext(config=GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=0,
                                               consumer_session_timeout_ms=SESSION, consumer_heartbeat_interval_ms=INTERVAL))


def beat(ctx: GroupTestContext, member: str, epoch: int, *, topics: TopicImage = TOPICS, names: tuple[str, ...] | None = None,
         regex: str | None = None, owned: dict[uuid.UUID, list[int]] | None = None, instance: str | None = None,
         rebalance_ms: int = -1, assignor: str | None = None, group: str = "g") -> dict[str, Any]:
    if epoch == 0 and rebalance_ms == -1:
        rebalance_ms = 30_000
    request = ConsumerHeartbeat(
        group, member, epoch, instance_id=instance, rebalance_timeout_ms=rebalance_ms, subscribed_topic_names=names,
        subscribed_topic_regex=regex, server_assignor=assignor,
        topic_partitions=None if owned is None else tuple((t, tuple(ps)) for t, ps in owned.items()),
        client_id="client", client_host="/127.0.0.1")
    response = ctx.apply(ctx.coordinator.consumer_heartbeat(request, topics, lambda _t: True, ctx.time)).response
    assert isinstance(response, dict)
    return response


def join(ctx: GroupTestContext, member: str, names: tuple[str, ...] = ("t",), **kwargs: Any) -> dict[str, Any]:
    return beat(ctx, member, 0, names=names, owned={}, **kwargs)


def assigned(response: dict[str, Any]) -> dict[uuid.UUID, list[int]]:
    return {tp["topic_id"]: tp["partitions"] for tp in response["assignment"]["topic_partitions"]}


def group(ctx: GroupTestContext, group_id: str = "g") -> Any:
    return ctx.coordinator.consumer_groups[group_id]


def test_first_member_gets_everything_at_epoch_1() -> None:
    ctx = context()
    response = join(ctx, "a")
    assert response["error_code"] == ErrorCode.NONE
    assert (response["member_id"], response["member_epoch"], response["heartbeat_interval"]) == ("a", 1, INTERVAL)
    assert assigned(response) == {T1: [0, 1, 2, 3]}
    assert group(ctx).state == "Stable"
    # a plain heartbeat carries no assignment
    again = beat(ctx, "a", 1)
    assert again["member_epoch"] == 1 and again["assignment"] is None


def test_revoke_before_assign_kafkas_worked_example() -> None:
    ctx = context()
    join(ctx, "a")
    b = join(ctx, "b")
    # b is in epoch 2 but gets nothing until a has revoked
    assert b["member_epoch"] == 2 and assigned(b) == {}
    assert group(ctx).members["b"].state == UNRELEASED_PARTITIONS
    a = beat(ctx, "a", 1)
    assert a["member_epoch"] == 1 and assigned(a) == {T1: [0, 1]}
    assert group(ctx).members["a"].state == UNREVOKED_PARTITIONS
    assert group(ctx).state == "Reconciling"
    # b asks again before a has acknowledged: still nothing
    assert beat(ctx, "b", 2)["assignment"] is None
    a = beat(ctx, "a", 1, owned={T1: [0, 1]})  # a acknowledges the revocation
    assert a["member_epoch"] == 2 and a["assignment"] is None
    b = beat(ctx, "b", 2)
    assert b["member_epoch"] == 2 and assigned(b) == {T1: [2, 3]}
    assert group(ctx).members["b"].state == STABLE and group(ctx).state == "Stable"


def test_a_partition_is_never_owned_twice() -> None:
    ctx = context()
    join(ctx, "a")
    for member in "bcd":
        join(ctx, member)
    owners = group(ctx).owners
    for m in group(ctx).members.values():
        for topic, partitions in m.assigned.items():
            for p in partitions:
                assert owners[(topic, p)] == m.member_id


def test_epoch_fencing() -> None:
    ctx = context()
    join(ctx, "a")
    assert beat(ctx, "a", 7)["error_code"] == ErrorCode.FENCED_MEMBER_EPOCH
    assert beat(ctx, "x", 1)["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID
    # a rejoin under an id the group still holds at a newer epoch is fenced (Kafka keeps the
    # member); epoch 0 passes only while it is the previous epoch (the join's answer was lost)
    assert join(ctx, "a")["error_code"] == ErrorCode.NONE
    join(ctx, "b")
    beat(ctx, "a", 1, owned={T1: [0, 1]})
    assert group(ctx).members["a"].member_epoch == 2
    assert join(ctx, "a")["error_code"] == ErrorCode.FENCED_MEMBER_EPOCH
    assert beat(ctx, "a", 1, group="nope")["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND


def test_the_previous_epoch_is_accepted_with_owned_partitions_it_had() -> None:
    ctx = context()
    join(ctx, "a")
    join(ctx, "b")
    beat(ctx, "a", 1)
    beat(ctx, "a", 1, owned={T1: [0, 1]})  # now epoch 2: the answer could have been lost
    assert beat(ctx, "a", 1, owned={T1: [0, 1]})["error_code"] == ErrorCode.NONE
    assert beat(ctx, "a", 1, owned={T1: [0, 1, 2]})["error_code"] == ErrorCode.FENCED_MEMBER_EPOCH


def test_validation_errors() -> None:
    ctx = context()
    assert beat(ctx, "", 0, names=("t",), owned={})["error_code"] == ErrorCode.INVALID_REQUEST
    assert beat(ctx, "a", 0, names=("t",))["error_code"] == ErrorCode.INVALID_REQUEST  # no TopicPartitions
    assert beat(ctx, "a", 0, owned={})["error_code"] == ErrorCode.INVALID_REQUEST  # no subscription
    assert beat(ctx, "a", -2)["error_code"] == ErrorCode.INVALID_REQUEST  # -2 without an instance id
    assert join(ctx, "a", assignor="sticky")["error_code"] == ErrorCode.UNSUPPORTED_ASSIGNOR
    assert join(ctx, "a", regex="(?=x)")["error_code"] == ErrorCode.INVALID_REGULAR_EXPRESSION
    assert "g" not in ctx.coordinator.consumer_groups  # nothing stored for refused joins
    assert ctx.log == []


def test_leave_rebalances_the_others() -> None:
    ctx = context()
    join(ctx, "a")
    join(ctx, "b")
    beat(ctx, "a", 1)
    beat(ctx, "a", 1, owned={T1: [0, 1]})
    beat(ctx, "b", 2)
    left = beat(ctx, "b", -1)
    assert (left["error_code"], left["member_epoch"]) == (ErrorCode.NONE, -1)
    a = beat(ctx, "a", 2)
    assert a["member_epoch"] == 3 and assigned(a) == {T1: [0, 1, 2, 3]}
    assert list(group(ctx).members) == ["a"]


def test_session_timeout_fences_a_silent_member() -> None:
    ctx = context()
    join(ctx, "a")
    join(ctx, "b")
    ctx.sleep(SESSION - 1)
    beat(ctx, "a", 1)
    ctx.sleep(2)  # b's session ended, a's did not
    assert list(group(ctx).members) == ["a"]
    assert beat(ctx, "b", 2)["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID


def test_rebalance_timeout_fences_a_member_that_does_not_revoke() -> None:
    ctx = context()
    join(ctx, "a", rebalance_ms=1_000)
    join(ctx, "b")
    beat(ctx, "a", 1)  # told to revoke 2 and 3
    ctx.sleep(1_001)
    assert "a" not in group(ctx).members
    b = beat(ctx, "b", 2)
    assert assigned(b) == {T1: [0, 1, 2, 3]}


def test_static_member_rejoins_with_its_partitions_and_no_rebalance() -> None:
    ctx = context()
    join(ctx, "a", instance="i-a")
    join(ctx, "b", instance="i-b")
    beat(ctx, "a", 1)
    beat(ctx, "a", 1, owned={T1: [0, 1]})
    beat(ctx, "b", 2)
    epoch = group(ctx).group_epoch
    parked = beat(ctx, "b", -2, instance="i-b")
    assert parked["member_epoch"] == -2
    assert join(ctx, "b2", instance="i-a")["error_code"] == ErrorCode.UNRELEASED_INSTANCE_ID
    back = join(ctx, "b2", instance="i-b")
    assert back["error_code"] == ErrorCode.NONE and back["member_epoch"] == 2
    assert assigned(back) == {T1: [2, 3]}
    assert group(ctx).group_epoch == epoch and set(group(ctx).members) == {"a", "b2"}
    assert beat(ctx, "b", 2, instance="i-b")["error_code"] == ErrorCode.FENCED_INSTANCE_ID


def test_a_parked_static_member_is_removed_when_its_session_ends() -> None:
    ctx = context()
    join(ctx, "a", instance="i-a")
    beat(ctx, "a", -2, instance="i-a")
    ctx.sleep(SESSION + 1)
    assert not group(ctx).members and group(ctx).state == "Empty"


def test_subscription_change_revokes_the_unsubscribed_topic() -> None:
    ctx = context()
    a = join(ctx, "a", names=("t", "u"))
    assert assigned(a) == {T1: [0, 1, 2, 3], T2: [0, 1]}
    changed = beat(ctx, "a", 1, names=("u",))
    # epoch 2 targets only u: t's partitions are revoked first
    assert group(ctx).members["a"].state == UNREVOKED_PARTITIONS
    assert assigned(changed) == {T2: [0, 1]}
    done = beat(ctx, "a", 1, owned={T2: [0, 1]})
    assert done["member_epoch"] == 2


def test_new_partitions_bump_the_epoch_on_the_next_heartbeat() -> None:
    ctx = context()
    join(ctx, "a")
    more = TopicImage({"t": (T1, 6), "u": (T2, 2)}, {T1: ("t", 6), T2: ("u", 2)}, 2)
    response = beat(ctx, "a", 1, topics=more)
    assert response["member_epoch"] == 2 and assigned(response) == {T1: [0, 1, 2, 3, 4, 5]}


def test_regex_subscription_matches_whole_names() -> None:
    ctx = context()
    topics = TopicImage({"orders-1": (T1, 1), "orders-2": (T2, 1), "xorders-3": (uuid.UUID(int=3), 1)},
                        {T1: ("orders-1", 1), T2: ("orders-2", 1), uuid.UUID(int=3): ("xorders-3", 1)}, 1)
    response = beat(ctx, "a", 0, regex="orders-.*", owned={}, topics=topics)
    assert assigned(response) == {T1: [0], T2: [0]}
    assert group(ctx).regexes["orders-.*"].topics == frozenset({"orders-1", "orders-2"})


def test_range_assignor_on_request() -> None:
    ctx = context()
    join(ctx, "a", assignor="range")
    join(ctx, "b", assignor="range")
    assert ctx.coordinator.describe_consumer_group("g", TOPICS)["assignor_name"] == "range"
    assert group(ctx).targets["a"] == {T1: frozenset({0, 1})} and group(ctx).targets["b"] == {T1: frozenset({2, 3})}


def test_offset_commits_need_the_members_current_epoch() -> None:
    ctx = context()
    join(ctx, "a")

    def commit(member: str, epoch: int, version: int = 9) -> int:
        from tests.coordinator.context import Member

        errors = ctx.commit("g", {("t", 0): 5}, member=Member(member, epoch, ""), version=version)
        return errors[("t", 0)]

    assert commit("a", 1) == ErrorCode.NONE
    assert commit("a", 0) == ErrorCode.STALE_MEMBER_EPOCH
    assert commit("x", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert commit("a", 1, version=8) == ErrorCode.UNSUPPORTED_VERSION
    assert ctx.commit("g", {("t", 0): 9})[("t", 0)] == ErrorCode.UNKNOWN_MEMBER_ID  # admin commit, group not empty
    assert ctx.committed("g") == {0: 5}
    assert "g" not in ctx.coordinator.groups  # the commits made no classic group
    beat(ctx, "a", -1)
    assert ctx.commit("g", {("t", 0): 9})[("t", 0)] == ErrorCode.NONE  # empty now


def test_list_and_describe() -> None:
    ctx = context()
    join(ctx, "a")
    listed = ctx.coordinator.list_groups()
    assert listed == [{"group_id": "g", "protocol_type": "consumer", "group_state": "Stable", "group_type": "consumer"}]
    assert ctx.coordinator.list_groups(types=["classic"]) == []
    assert ctx.coordinator.list_groups(states=["stable"], types=["Consumer"]) == listed
    described = ctx.coordinator.describe_consumer_group("g", TOPICS)
    assert (described["group_state"], described["group_epoch"], described["assignment_epoch"]) == ("Stable", 1, 1)
    [member] = described["members"]
    assert member["assignment"] == {"topic_partitions": [{"topic_id": T1, "topic_name": "t", "partitions": [0, 1, 2, 3]}]}
    assert member["subscribed_topic_names"] == ["t"] and member["client_host"] == "/127.0.0.1"
    assert ctx.coordinator.describe_consumer_group("other", TOPICS)["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND


def test_an_empty_classic_group_becomes_a_consumer_group_and_back() -> None:
    ctx = context()
    ctx.commit("g", {("t", 0): 3})  # a simple classic group
    assert "g" in ctx.coordinator.groups
    join(ctx, "a")
    assert "g" not in ctx.coordinator.groups and "g" in ctx.coordinator.consumer_groups
    assert ctx.committed("g") == {0: 3}
    beat(ctx, "a", -1)
    ctx.join_new("g")  # a classic JoinGroup to the empty consumer group
    assert "g" not in ctx.coordinator.consumer_groups and "g" in ctx.coordinator.groups


def _classic_join(ctx: GroupTestContext, member_id: str = "", owned: list[tuple[str, list[int]]] | None = None,
                  group: str = "g") -> dict[str, Any]:
    """A classic consumer's JoinGroup (ConsumerProtocolSubscription v1 with owned partitions)."""
    import struct

    from strom.coordinator.member import Protocol

    body = bytearray(struct.pack(">hi", 1, 1)) + struct.pack(">h", 1) + b"t" + struct.pack(">i", -1)
    body += struct.pack(">i", len(owned or []))
    for topic, parts in owned or []:
        body += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(f">i{len(parts)}i", len(parts), *parts)
    ticket = ctx.join(group, member_id, protocols_=(Protocol("range", bytes(body)),))
    answer = ctx.answer(ticket)
    assert answer is not None
    return answer


def _classic_sync(ctx: GroupTestContext, member_id: str, generation: int, group: str = "g") -> dict[str, Any]:
    from tests.coordinator.context import Member

    return ctx.answer(ctx.sync(group, Member(member_id, generation, "")))


def test_a_classic_member_joins_a_consumer_group() -> None:
    from strom.coordinator.classic_members import decode_assignment
    from tests.coordinator.context import Member

    ctx = context()
    join(ctx, "a")
    first = _classic_join(ctx)
    assert first["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
    joined = _classic_join(ctx, first["member_id"])
    cid, generation = joined["member_id"], joined["generation_id"]
    assert (joined["error_code"], joined["leader"], generation) == (ErrorCode.NONE, "", 2)
    synced = _classic_sync(ctx, cid, generation)
    assert synced["error_code"] == ErrorCode.NONE and decode_assignment(synced["assignment"]) == []  # a still holds them
    beat(ctx, "a", 1)
    beat(ctx, "a", 1, owned={T1: [0, 1]})  # a gives up two
    assert ctx.heartbeat("g", Member(cid, generation, "")) == ErrorCode.REBALANCE_IN_PROGRESS  # they are free now
    again = _classic_join(ctx, cid)
    synced = _classic_sync(ctx, cid, again["generation_id"])
    assert decode_assignment(synced["assignment"]) == [("t", [2, 3])]
    assert ctx.heartbeat("g", Member(cid, again["generation_id"], "")) == ErrorCode.NONE
    described = ctx.coordinator.describe_consumer_group("g", TOPICS)
    assert len(described["members"]) == 2
    left = ctx.leave("g", __import__("strom.coordinator.coordinator", fromlist=["LeaveMember"]).LeaveMember(cid))
    assert left["members"][0]["error_code"] == ErrorCode.NONE
    assert list(group(ctx).members) == ["a"]


def test_a_classic_group_is_upgraded_when_a_consumer_member_joins() -> None:
    import struct

    from strom.coordinator.classic_members import decode_assignment, encode_assignment
    from strom.coordinator.member import Protocol

    ctx = context()
    subscription = struct.pack(">hih", 1, 1, 1) + b"t" + struct.pack(">ii", -1, 0)  # v1: topic t, owns nothing
    tickets = [ctx.join_new("g", protocols_=(Protocol("range", subscription),)) for _ in range(2)]
    ctx.sleep(0)
    members = [ctx.member(t) for t in tickets]
    leader = next(m for m in members if m.member_id == m.leader)
    follower = next(m for m in members if m is not leader)
    ctx.sync("g", follower)
    ctx.sync("g", leader, {leader.member_id: encode_assignment([("t", [0, 1])]),
                           follower.member_id: encode_assignment([("t", [2, 3])])})
    assert ctx.state("g") == "Stable"
    b = join(ctx, "b")  # a consumer-protocol member: the group becomes a consumer group
    assert b["error_code"] == ErrorCode.NONE
    assert "g" not in ctx.coordinator.groups
    kept = group(ctx).members[leader.member_id]
    assert kept.assigned == {T1: frozenset({0, 1})} and kept.member_epoch == leader.generation_id
    # the classic members learn of the rebalance from their heartbeats and rejoin
    assert ctx.heartbeat("g", leader) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoined = _classic_join(ctx, leader.member_id, owned=[("t", [0, 1])])
    assert rejoined["error_code"] == ErrorCode.NONE
    synced = _classic_sync(ctx, leader.member_id, rejoined["generation_id"])
    assert synced["error_code"] == ErrorCode.NONE
    assert decode_assignment(synced["assignment"])[0][0] == "t"
    owners = group(ctx).owners
    assert all(owners[(T1, p)] in {leader.member_id, follower.member_id, "b"} for p in range(4) if (T1, p) in owners)
    # the consumer-protocol member leaves: only classic members are left, a classic group again
    epoch = group(ctx).group_epoch
    beat(ctx, "b", -1)
    assert "g" not in ctx.coordinator.consumer_groups
    classic = ctx.coordinator.groups["g"]
    assert set(classic.members) == {leader.member_id, follower.member_id}
    assert classic.generation_id == epoch + 1 and classic.state.value == "PreparingRebalance"
    assert reload(ctx).groups["g"].generation_id == epoch + 1  # as stored


def test_delete_only_empty_groups() -> None:
    ctx = context()
    join(ctx, "a")
    result = ctx.apply(ctx.coordinator.delete_groups(["g"], ctx.time)).response
    assert result == [{"group_id": "g", "error_code": ErrorCode.NON_EMPTY_GROUP}]
    beat(ctx, "a", -1)
    result = ctx.apply(ctx.coordinator.delete_groups(["g"], ctx.time)).response
    assert result == [{"group_id": "g", "error_code": ErrorCode.NONE}]
    assert "g" not in ctx.coordinator.consumer_groups


def test_reload_from_the_records_bytes_gives_the_same_group() -> None:
    ctx = context()
    join(ctx, "a", instance="i-a")
    join(ctx, "b", regex="u|t")
    beat(ctx, "a", 1)  # a is revoking
    loaded = reload(ctx)
    before, after = group(ctx), loaded.consumer_groups["g"]
    assert (after.group_epoch, after.assignment_epoch, after.metadata_hash) == (
        before.group_epoch, before.assignment_epoch, before.metadata_hash)
    assert after.members == before.members and after.targets == before.targets
    assert after.owners == before.owners and after.static_members == before.static_members
    assert after.regexes == before.regexes


def test_expiry_deletes_an_empty_group_once_its_offsets_expire() -> None:
    ctx = context()
    join(ctx, "a")
    beat(ctx, "a", -1)
    ctx.commit("g", {("t", 0): 1})
    retention, interval = ctx.config.offsets_retention_ms, ctx.config.offsets_retention_check_interval_ms
    ctx.sleep(interval)
    assert "g" in ctx.coordinator.consumer_groups and ctx.committed("g") == {0: 1}
    ctx.sleep(retention)
    assert "g" not in ctx.coordinator.consumer_groups and ctx.committed("g") == {0: -1}
