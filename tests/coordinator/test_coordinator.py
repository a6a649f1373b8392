"""The classic group protocol of one shard, driven with a fake clock: every state transition
and every timeout (session, rebalance, initial delay, pending sync, new-member join), static
membership, group.max.size, LeaveGroup, DeleteGroups, loading and unloading."""

from __future__ import annotations

from strom.coordinator.coordinator import LeaveMember
from strom.coordinator.member import Protocol
from strom.coordinator.records import GroupMetadataKey
from strom.coordinator.shard import GroupConfig
from strom.protocol.errors import ErrorCode

from .context import (
    REBALANCE_MS,
    SESSION_MS,
    GroupTestContext,
    Member,
    protocols,
    reload,
    subscription,
)


def config(**kwargs: int) -> GroupConfig:
    base = {"min_session_timeout_ms": 10, "initial_rebalance_delay_ms": 0}
    base.update(kwargs)
    return GroupConfig(**base)


# --- joining -------------------------------------------------------------------------------


def test_new_member_must_rejoin_with_its_id_kip_394() -> None:
    ctx = GroupTestContext()
    first = ctx.join()
    response = ctx.answer(first)
    assert response["error_code"] == ErrorCode.MEMBER_ID_REQUIRED and response["member_id"] == "c-1"
    assert ctx.state() == "Empty" and ctx.group().pending_members == {"c-1"}
    # The new group was stored at once (empty), as Kafka 4 does.
    assert [r.key for r in ctx.log] == [GroupMetadataKey("g")]
    second = ctx.join("g", "c-1")
    assert ctx.answer(second) is None and ctx.state() == "PreparingRebalance"
    ctx.sleep(0)  # the initial delay (0 here) is over
    member = ctx.member(second)
    assert (member.member_id, member.generation_id, member.leader) == ("c-1", 1, "c-1")
    assert ctx.state() == "CompletingRebalance"
    response = ctx.answer(second)
    assert response["protocol_name"] == "range" and response["protocol_type"] == "consumer"
    assert [m["member_id"] for m in response["members"]] == ["c-1"]


def test_old_join_versions_join_at_once() -> None:
    ctx = GroupTestContext()
    ticket = ctx.join(version=3)
    assert ctx.answer(ticket) is None and ctx.group().members.keys() == {"c-1"}
    ctx.sleep(0)
    assert ctx.member(ticket).generation_id == 1


def test_pending_member_expires_after_its_session_timeout() -> None:
    ctx = GroupTestContext()
    ctx.join(session_ms=100)
    assert ctx.group().pending_members == {"c-1"}
    ctx.sleep(99)
    assert ctx.group().pending_members == {"c-1"}
    ctx.sleep(1)
    assert ctx.group().pending_members == set()
    # Rejoining with the forgotten id is refused.
    assert ctx.answer(ctx.join("g", "c-1"))["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID


def test_join_validation_errors() -> None:
    ctx = GroupTestContext(config=config(min_session_timeout_ms=1000, max_session_timeout_ms=5000))
    assert ctx.answer(ctx.join(session_ms=999))["error_code"] == ErrorCode.INVALID_SESSION_TIMEOUT
    assert ctx.answer(ctx.join(session_ms=5001))["error_code"] == ErrorCode.INVALID_SESSION_TIMEOUT
    assert ctx.answer(ctx.join(""))["error_code"] == ErrorCode.INVALID_GROUP_ID
    # A member id for a group that does not exist.
    assert ctx.answer(ctx.join("nope", "m-1", session_ms=2000))["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID
    # No protocols, or no protocol type, cannot start a group.
    assert ctx.answer(ctx.join("g2", protocols_=(), session_ms=2000))["error_code"] == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert ctx.answer(ctx.join("g3", protocol_type="", session_ms=2000))["error_code"] == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_inconsistent_protocols_are_refused() -> None:
    ctx = GroupTestContext()
    ctx.stable_group(size=1)
    other = ctx.join(protocols_=(Protocol("roundrobin", subscription("t")),))
    assert ctx.answer(other)["error_code"] == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    other = ctx.join(protocol_type="connect")
    assert ctx.answer(other)["error_code"] == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_protocol_is_chosen_by_vote() -> None:
    ctx = GroupTestContext()
    a = ctx.join_new(protocols_=protocols("roundrobin", "range"))
    b = ctx.join_new(protocols_=protocols("range", "roundrobin"))
    c = ctx.join_new(protocols_=protocols("range"))
    ctx.sleep(0)
    assert {ctx.answer(t)["protocol_name"] for t in (a, b, c)} == {"range"}


# --- the initial rebalance delay -----------------------------------------------------------


def test_initial_rebalance_delay_waits_and_extends_for_newcomers() -> None:
    ctx = GroupTestContext(config=config(initial_rebalance_delay_ms=3000))
    a = ctx.join_new(rebalance_ms=10_000)
    assert ctx.state() == "PreparingRebalance"
    ctx.sleep(2000)
    b = ctx.join_new(rebalance_ms=10_000)  # arrives during the delay: the delay restarts
    ctx.sleep(1000)
    assert ctx.answer(a) is None and ctx.answer(b) is None
    ctx.sleep(2999)
    assert ctx.answer(a) is None
    ctx.sleep(1)
    assert ctx.member(a).generation_id == ctx.member(b).generation_id == 1
    leader = ctx.answer(a) if ctx.member(a).member_id == ctx.member(a).leader else ctx.answer(b)
    assert len(leader["members"]) == 2


def test_initial_delay_is_bounded_by_the_rebalance_timeout() -> None:
    ctx = GroupTestContext(config=config(initial_rebalance_delay_ms=3000))
    first = ctx.join_new(rebalance_ms=4000)
    # Members keep arriving; the delay may not exceed the rebalance timeout (3000 + 1000).
    tickets = [first]
    for _ in range(4):
        ctx.sleep(1000)
        tickets.append(ctx.join_new(rebalance_ms=4000))
    # 3000 + min(3000, 1000 remaining) = 4000 ms after the first join.
    assert all(ctx.answer(t) is not None for t in tickets[:4])
    assert ctx.time == 4000


def test_all_joined_does_not_cut_the_initial_delay_short() -> None:
    ctx = GroupTestContext(config=config(initial_rebalance_delay_ms=500))
    ticket = ctx.join_new()
    assert ctx.group().has_all_members_joined() and ctx.answer(ticket) is None
    ctx.sleep(500)
    assert ctx.member(ticket).generation_id == 1


# --- syncing -------------------------------------------------------------------------------


def test_sync_stores_the_assignment_then_becomes_stable() -> None:
    ctx = GroupTestContext()
    a, b = ctx.join_new(), ctx.join_new()
    ctx.sleep(0)
    ma, mb = ctx.member(a), ctx.member(b)
    assert ma.leader == ma.member_id
    follower = ctx.sync("g", mb)
    assert ctx.answer(follower) is None  # parked until the leader's assignment is stored
    records_before = len(ctx.log)
    leader = ctx.sync("g", ma, {ma.member_id: b"A", mb.member_id: b"B"})
    assert ctx.state() == "Stable"
    assert ctx.answer(leader)["assignment"] == b"A" and ctx.answer(follower)["assignment"] == b"B"
    stored = ctx.log[records_before].value
    assert stored.generation == 1 and {m.member_id: m.assignment for m in stored.members} == {ma.member_id: b"A", mb.member_id: b"B"}
    # A late sync in Stable gets the stored assignment.
    again = ctx.sync("g", mb)
    assert ctx.answer(again)["assignment"] == b"B"


def test_missing_assignments_are_empty() -> None:
    ctx = GroupTestContext()
    a, b = ctx.join_new(), ctx.join_new()
    ctx.sleep(0)
    ma, mb = ctx.member(a), ctx.member(b)
    ctx.sync("g", ma, {ma.member_id: b"A"})
    assert ctx.answer(ctx.sync("g", mb))["assignment"] == b""


def test_sync_errors() -> None:
    ctx = GroupTestContext()
    m, other = ctx.stable_group(size=2)
    assert ctx.answer(ctx.sync("g", m, generation=0))["error_code"] == ErrorCode.ILLEGAL_GENERATION
    assert ctx.answer(ctx.sync("g", Member("x", 1, "")))["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID
    assert ctx.answer(ctx.sync("nope", m))["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID
    ctx.join("g", m.member_id)  # the leader rejoins, the other has not yet: PreparingRebalance
    assert ctx.answer(ctx.sync("g", other))["error_code"] == ErrorCode.REBALANCE_IN_PROGRESS


def test_failed_assignment_store_sends_members_back_to_join() -> None:
    ctx = GroupTestContext()
    a, b = ctx.join_new(), ctx.join_new()
    ctx.sleep(0)
    ma, mb = ctx.member(a), ctx.member(b)
    follower = ctx.sync("g", mb)
    ctx.fail_appends = ErrorCode.KAFKA_STORAGE_ERROR
    leader = ctx.sync("g", ma, {ma.member_id: b"A", mb.member_id: b"B"})
    assert ctx.answer(leader)["error_code"] == ErrorCode.NOT_COORDINATOR
    assert ctx.answer(follower)["error_code"] == ErrorCode.NOT_COORDINATOR
    assert ctx.state() == "PreparingRebalance"


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    ctx = GroupTestContext()
    a, b = ctx.join_new(rebalance_ms=5000), ctx.join_new(rebalance_ms=5000)
    ctx.sleep(0)
    ma, mb = ctx.member(a), ctx.member(b)
    ctx.sync("g", ma, {ma.member_id: b"A", mb.member_id: b"B"})
    assert ctx.state() == "Stable"
    ctx.heartbeat("g", ma)
    ctx.sleep(4999)
    assert ctx.heartbeat("g", ma) == ErrorCode.NONE
    ctx.sleep(1)  # b never sent SyncGroup
    assert mb.member_id not in ctx.group().members
    assert ctx.state() == "PreparingRebalance"
    assert ctx.heartbeat("g", ma) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoin = ctx.join("g", ma.member_id)
    assert ctx.member(rejoin).generation_id == 2


# --- heartbeats and sessions ---------------------------------------------------------------


def test_heartbeat_answers_by_state() -> None:
    ctx = GroupTestContext()
    m = ctx.stable_group(size=1)[0]
    assert ctx.heartbeat("g", m) == ErrorCode.NONE
    assert ctx.heartbeat("g", m, generation=7) == ErrorCode.ILLEGAL_GENERATION
    assert ctx.heartbeat("g", m, member_id="stranger") == ErrorCode.UNKNOWN_MEMBER_ID
    assert ctx.heartbeat("nope", m) == ErrorCode.UNKNOWN_MEMBER_ID
    ctx.join_new()  # a newcomer: PreparingRebalance
    assert ctx.heartbeat("g", m) == ErrorCode.REBALANCE_IN_PROGRESS


def test_session_expiry_removes_a_silent_member_and_rebalances() -> None:
    ctx = GroupTestContext()
    a, b = ctx.stable_group(size=2)
    for _ in range(5):  # a keeps its session, b is silent
        ctx.sleep(SESSION_MS // 4)
        ctx.heartbeat("g", a)
    assert b.member_id not in ctx.group().members
    assert ctx.state() == "PreparingRebalance"
    rejoin = ctx.join("g", a.member_id)
    member = ctx.member(rejoin)
    assert member.generation_id == 2
    assert ctx.state() == "CompletingRebalance" and list(ctx.group().members) == [a.member_id]


def test_last_member_expiring_empties_the_group_and_stores_it() -> None:
    ctx = GroupTestContext()
    ctx.stable_group(size=1)
    ctx.sleep(SESSION_MS)
    assert ctx.state() == "Empty"
    stored = ctx.log[-1]
    assert stored.key == GroupMetadataKey("g") and stored.value.members == () and stored.value.generation == 2


def test_heartbeats_keep_a_member_alive() -> None:
    ctx = GroupTestContext()
    m = ctx.stable_group(size=1)[0]
    for _ in range(10):
        ctx.sleep(SESSION_MS - 1)
        assert ctx.heartbeat("g", m) == ErrorCode.NONE
    assert ctx.state() == "Stable"


def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    ctx = GroupTestContext()
    a, b = ctx.stable_group(size=2, rebalance_ms=5000)
    ticket = ctx.join("g", a.member_id, rebalance_ms=5000)  # a rejoins; b only heartbeats
    for _ in range(4):
        ctx.sleep(1000)
        assert ctx.heartbeat("g", b) == ErrorCode.REBALANCE_IN_PROGRESS
    assert ctx.answer(ticket) is None
    ctx.sleep(1000)
    assert ctx.member(ticket).generation_id == 2
    assert list(ctx.group().members) == [a.member_id]
    assert ctx.heartbeat("g", b) == ErrorCode.UNKNOWN_MEMBER_ID


def test_new_member_join_times_out() -> None:
    ctx = GroupTestContext(config=config(new_member_join_timeout_ms=1000))
    a, b = ctx.stable_group(size=2, rebalance_ms=60_000)
    newcomer = ctx.join_new(rebalance_ms=60_000)  # parks; the old members never rejoin ...
    for _ in range(2):
        ctx.sleep(500)
        ctx.heartbeat("g", a)
        ctx.heartbeat("g", b)
    # ... and after group.classic.new.member.join.timeout.ms the newcomer is let go.
    assert ctx.answer(newcomer)["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID


def test_duplicate_join_of_a_member_retries_the_first() -> None:
    ctx = GroupTestContext()
    a, _ = ctx.stable_group(size=2)
    first = ctx.join("g", a.member_id)
    second = ctx.join("g", a.member_id)
    assert ctx.answer(first)["error_code"] == ErrorCode.REBALANCE_IN_PROGRESS
    assert ctx.answer(second) is None


def test_rejoin_in_completing_rebalance_with_same_metadata_returns_the_generation() -> None:
    ctx = GroupTestContext()
    a, b = ctx.join_new(), ctx.join_new()
    ctx.sleep(0)
    mb = ctx.member(b)
    again = ctx.join("g", mb.member_id)
    assert ctx.answer(again)["generation_id"] == 1 and ctx.state() == "CompletingRebalance"
    changed = ctx.join("g", mb.member_id, protocols_=protocols("range", topics=("other",)))
    assert ctx.answer(changed) is None and ctx.state() == "PreparingRebalance"
    assert ctx.answer(a)["error_code"] == ErrorCode.NONE


def test_follower_rejoin_in_stable_does_not_rebalance_but_leader_does() -> None:
    ctx = GroupTestContext()
    members = ctx.stable_group(size=2)
    leader = next(m for m in members if m.member_id == m.leader)
    follower = next(m for m in members if m is not leader)
    assert ctx.answer(ctx.join("g", follower.member_id))["generation_id"] == 1
    assert ctx.state() == "Stable"
    ctx.join("g", leader.member_id)
    assert ctx.state() == "PreparingRebalance"


# --- leaving -------------------------------------------------------------------------------


def test_leave_rebalances_at_once() -> None:
    ctx = GroupTestContext()
    a, b = ctx.stable_group(size=2)
    response = ctx.leave("g", LeaveMember(b.member_id))
    assert response == {"error_code": 0, "members": [{"member_id": b.member_id, "group_instance_id": None, "error_code": 0}]}
    assert ctx.state() == "PreparingRebalance"
    rejoin = ctx.join("g", a.member_id)
    assert ctx.member(rejoin).generation_id == 2  # completes as soon as a rejoined


def test_last_member_leaving_empties_the_group() -> None:
    ctx = GroupTestContext()
    (a,) = ctx.stable_group(size=1)
    ctx.leave("g", LeaveMember(a.member_id))
    assert ctx.state() == "Empty" and ctx.log[-1].value.members == ()


def test_leave_errors_and_batch() -> None:
    ctx = GroupTestContext()
    a, b = ctx.stable_group(size=2)
    response = ctx.leave("g", LeaveMember("ghost"), LeaveMember("", "no-such-instance"), LeaveMember(a.member_id))
    assert [m["error_code"] for m in response["members"]] == [ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.UNKNOWN_MEMBER_ID, 0]
    assert ctx.leave("nope", LeaveMember(a.member_id))["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID


def test_leave_of_a_member_parked_in_join_answers_it() -> None:
    ctx = GroupTestContext()
    a, b = ctx.stable_group(size=2)
    parked = ctx.join("g", a.member_id)
    ctx.leave("g", LeaveMember(a.member_id))
    assert ctx.answer(parked)["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID


# --- static membership (KIP-345) -----------------------------------------------------------


def _static_group(ctx: GroupTestContext, version: int = 9) -> list[Member]:
    tickets = [ctx.join(instance_id=f"i-{n}", version=version) for n in range(2)]
    ctx.sleep(0)
    members = [ctx.member(t, f"i-{n}") for n, t in enumerate(tickets)]
    leader = next(m for m in members if m.member_id == m.leader)
    for m in members:
        if m is not leader:
            ctx.sync("g", m)
    ctx.sync("g", leader, {m.member_id: m.instance_id.encode() for m in members})
    assert ctx.state() == "Stable"
    return members


def test_static_member_restart_keeps_the_generation_and_fences_the_old_id() -> None:
    ctx = GroupTestContext()
    a, b = _static_group(ctx)
    assert a.member_id == a.leader
    # b restarts: same instance id, no member id. No rebalance.
    ticket = ctx.join(instance_id="i-1")
    response = ctx.answer(ticket)
    assert response["error_code"] == 0 and response["generation_id"] == 1 and response["member_id"] != b.member_id
    assert ctx.state() == "Stable"
    new_b = ctx.member(ticket, "i-1")
    assert ctx.answer(ctx.sync("g", new_b))["assignment"] == b"i-1"
    # The old incarnation is fenced.
    assert ctx.heartbeat("g", b) == ErrorCode.FENCED_INSTANCE_ID
    assert ctx.heartbeat("g", new_b) == ErrorCode.NONE
    assert ctx.group().static_members == {"i-0": a.member_id, "i-1": new_b.member_id}
    # The new member id was stored.
    assert {m.member_id for m in ctx.log[-1].value.members} == {a.member_id, new_b.member_id}


def test_static_leader_restart_skips_assignment_kip_814() -> None:
    ctx = GroupTestContext()
    a, b = _static_group(ctx)
    ticket = ctx.join(instance_id="i-0")
    response = ctx.answer(ticket)
    assert response["skip_assignment"] is True and response["leader"] == response["member_id"]
    assert len(response["members"]) == 2 and ctx.state() == "Stable"


def test_static_leader_restart_before_v9_gets_no_members() -> None:
    ctx = GroupTestContext()
    a, b = _static_group(ctx, version=5)
    response = ctx.answer(ctx.join(instance_id="i-0", version=5))
    assert response["skip_assignment"] is False and response["members"] == []
    assert response["leader"] == a.member_id  # Kafka answers with the leader it had


def test_static_member_with_new_protocols_rebalances() -> None:
    ctx = GroupTestContext()
    _static_group(ctx)
    ctx.join(instance_id="i-1", protocols_=(Protocol("roundrobin", b""), Protocol("range", b"")))
    assert ctx.state() == "Stable"  # range still wins the vote
    ctx.join(instance_id="i-1", protocols_=(Protocol("roundrobin", b""),))
    assert ctx.state() in ("PreparingRebalance", "Stable")


def test_static_member_rejoining_during_completing_rebalance_rebalances() -> None:
    ctx = GroupTestContext()
    tickets = [ctx.join(instance_id=f"i-{n}") for n in range(2)]
    ctx.sleep(0)
    old = ctx.member(tickets[1], "i-1")
    parked_sync = ctx.sync("g", old)
    ctx.join(instance_id="i-1")
    assert ctx.answer(parked_sync)["error_code"] == ErrorCode.FENCED_INSTANCE_ID
    assert ctx.state() == "PreparingRebalance"


def test_static_members_survive_a_rebalance_they_miss() -> None:
    ctx = GroupTestContext()
    a, b = _static_group(ctx)
    rejoin = ctx.join("g", a.member_id, instance_id="i-0")
    for _ in range(REBALANCE_MS // 5000):  # b (static) heartbeats but never rejoins
        ctx.sleep(5000)
        ctx.heartbeat("g", b)
    assert ctx.member(rejoin).generation_id == 2
    assert b.member_id in ctx.group().members  # a dynamic member would have been dropped


def test_static_member_removed_by_instance_id() -> None:
    ctx = GroupTestContext()
    a, b = _static_group(ctx)
    response = ctx.leave("g", LeaveMember("", "i-1"))
    assert response["members"][0]["error_code"] == 0
    assert b.member_id not in ctx.group().members and ctx.state() == "PreparingRebalance"


def test_fenced_static_member_on_join_and_leave() -> None:
    ctx = GroupTestContext()
    a, b = _static_group(ctx)
    assert ctx.answer(ctx.join("g", "wrong-id", instance_id="i-1"))["error_code"] == ErrorCode.FENCED_INSTANCE_ID
    response = ctx.leave("g", LeaveMember("wrong-id", "i-1"))
    assert response["members"][0]["error_code"] == ErrorCode.FENCED_INSTANCE_ID


# --- group.max.size ------------------------------------------------------------------------


def test_group_max_size() -> None:
    ctx = GroupTestContext(config=config(max_size=2))
    ctx.stable_group(size=2)
    first = ctx.join()
    assert ctx.answer(first)["error_code"] == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert len(ctx.group().members) == 2


def test_group_max_size_during_a_rebalance_counts_those_who_rejoined() -> None:
    ctx = GroupTestContext(config=config(max_size=2, initial_rebalance_delay_ms=100))
    first = ctx.join()  # pending (KIP-394) while the group is still empty
    ctx.join_new()
    ctx.join_new()
    third = ctx.join()  # two members wait in the join phase already
    assert ctx.answer(third)["error_code"] == ErrorCode.GROUP_MAX_SIZE_REACHED
    # A pending member (KIP-394) coming back when the group filled up meanwhile is refused too.
    late = ctx.join("g", ctx.answer(first)["member_id"])
    assert ctx.answer(late)["error_code"] == ErrorCode.GROUP_MAX_SIZE_REACHED


def test_loaded_group_over_capacity_rebalances() -> None:
    ctx = GroupTestContext()
    ctx.stable_group(size=3)
    shard = reload(ctx)
    shard.config = config(max_size=2)
    result = shard.loaded(ctx.time)
    assert shard.groups["g"].state.value == "PreparingRebalance"
    assert any(key[0] == "join" for key, _ in result.deadlines)


# --- deleting, listing, describing ---------------------------------------------------------


def test_delete_groups() -> None:
    ctx = GroupTestContext()
    ctx.stable_group("busy", size=1)
    ctx.commit("simple", {("t", 0): 5})
    result = ctx.apply(ctx.coordinator.delete_groups(["busy", "simple", "nope"], ctx.time))
    assert [r["error_code"] for r in result.response] == [ErrorCode.NON_EMPTY_GROUP, 0, ErrorCode.GROUP_ID_NOT_FOUND]
    assert "simple" not in ctx.coordinator.groups
    assert ctx.committed("simple") == {0: -1}
    assert [(r.key, r.value) for r in result.records][-1] == (GroupMetadataKey("simple"), None)


def test_list_and_describe_groups() -> None:
    ctx = GroupTestContext()
    ctx.stable_group("a", size=2)
    ctx.commit("s", {("t", 0): 1})
    listed = {g["group_id"]: g for g in ctx.coordinator.list_groups()}
    assert listed["a"] == {"group_id": "a", "protocol_type": "consumer", "group_state": "Stable", "group_type": "classic"}
    assert listed["s"]["protocol_type"] == "" and listed["s"]["group_state"] == "Empty"
    assert [g["group_id"] for g in ctx.coordinator.list_groups(["STABLE"])] == ["a"]
    assert ctx.coordinator.list_groups(types=["consumer"]) == []
    described = ctx.coordinator.describe_group("a")
    assert described["protocol_data"] == "range" and len(described["members"]) == 2
    assert all(m["member_assignment"] == m["member_id"].encode() for m in described["members"])
    assert described["members"][0]["client_host"] == "/127.0.0.1"
    assert ctx.coordinator.describe_group("nope") is None
    ctx.join("a", described["members"][0]["member_id"])  # rebalancing: no metadata shown
    assert ctx.coordinator.describe_group("a")["members"][0]["member_metadata"] == b""


# --- loading and unloading -----------------------------------------------------------------


def test_replaying_the_log_rebuilds_the_same_state() -> None:
    ctx = GroupTestContext()
    members = ctx.stable_group("g", size=3)
    ctx.commit("g", {("t", 0): 10, ("t", 1): 11}, member=members[0])
    ctx.stable_group("h", size=1)
    ctx.leave("h", LeaveMember(ctx.group("h").leader_id))
    ctx.commit("simple", {("u", 3): 7}, metadata="hello")
    shard = reload(ctx)
    for group_id, live in ctx.coordinator.groups.items():
        loaded = shard.groups[group_id]
        assert (loaded.state, loaded.generation_id, loaded.protocol_type, loaded.protocol_name, loaded.leader_id) == (
            live.state, live.generation_id, live.protocol_type, live.protocol_name, live.leader_id)
        assert loaded.assignments() == live.assignments()
        assert [m.metadata(live.protocol_name) for m in loaded.members.values()] == [
            m.metadata(live.protocol_name) for m in live.members.values()]
    assert sorted(shard.offsets.partitions("g")) == sorted(ctx.coordinator.offsets.partitions("g"))
    assert shard.offsets.get("simple", "u", 3).metadata == "hello"
    assert shard.groups["simple"].protocol_type is None


def test_loaded_members_must_heartbeat_within_their_session() -> None:
    ctx = GroupTestContext()
    ctx.stable_group(size=2)
    shard = reload(ctx)
    result = shard.loaded(1000)
    assert sorted(at for key, at in result.deadlines if key[0] == "heartbeat") == [1000 + SESSION_MS] * 2
    expired = shard.expire(1000 + SESSION_MS)
    assert shard.groups["g"].state.value == "Empty"
    assert expired.records[-1].value.members == ()


def test_only_replay_changes_committed_offsets() -> None:
    ctx = GroupTestContext(replay=False)
    assert ctx.commit("g", {("t", 0): 5}) == {("t", 0): 0}
    assert ctx.committed("g") == {0: -1}  # appended, not replayed
    for record in ctx.log:
        ctx.coordinator.replay(record)
    assert ctx.committed("g") == {0: 5}


def test_unloading_answers_everyone_parked() -> None:
    ctx = GroupTestContext(config=config(initial_rebalance_delay_ms=1000))
    ticket = ctx.join_new()
    result = ctx.apply(ctx.coordinator.unloaded(ctx.time))
    assert ctx.answer(ticket)["error_code"] == ErrorCode.NOT_COORDINATOR
    assert ctx.coordinator.groups == {} and ctx.coordinator.deadlines() == {}
    assert all(at is None for _, at in result.deadlines)


def test_new_group_not_stored_is_forgotten() -> None:
    ctx = GroupTestContext(config=config(initial_rebalance_delay_ms=1000))
    ctx.fail_appends = ErrorCode.KAFKA_STORAGE_ERROR
    ticket = ctx.join(version=3)
    assert ctx.answer(ticket)["error_code"] == ErrorCode.NOT_COORDINATOR
    assert "g" not in ctx.coordinator.groups and ctx.coordinator.deadlines().keys() == {("expire-group-metadata",)}
