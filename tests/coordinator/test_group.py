"""ClassicGroup: the transition table, protocol selection, subscriptions."""

from __future__ import annotations

import pytest

from strom.coordinator.group import (
    VALID_PREVIOUS_STATES,
    ClassicGroup,
    GroupState,
    IllegalStateTransition,
    subscription_topics,
)
from strom.coordinator.member import ClassicGroupMember, Protocol

from .context import subscription

ALL = list(GroupState)


def _group_in(state: GroupState) -> ClassicGroup:
    group = ClassicGroup("g", 0)
    group.state = state
    return group


@pytest.mark.parametrize("target", ALL, ids=lambda s: s.value)
@pytest.mark.parametrize("source", ALL, ids=lambda s: s.value)
def test_every_transition_is_checked_against_the_table(source: GroupState, target: GroupState) -> None:
    group = _group_in(source)
    if source in VALID_PREVIOUS_STATES[target]:
        group.transition_to(target, 5)
        assert group.state is target and group.previous_state is source and group.state_timestamp_ms == 5
    else:
        with pytest.raises(IllegalStateTransition):
            group.transition_to(target, 5)
        assert group.state is source


def test_the_table_is_kafkas() -> None:
    E, P, C, S, D = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE, GroupState.COMPLETING_REBALANCE,
                     GroupState.STABLE, GroupState.DEAD)
    legal = {(a, b) for b, sources in VALID_PREVIOUS_STATES.items() for a in sources}
    assert legal == {
        (P, E), (S, P), (C, P), (E, P), (P, C), (C, S),
        (S, D), (P, D), (C, D), (E, D), (D, D),
    }


def _member(member_id: str, *names: str, topics: tuple[str, ...] = ("t",), instance: str | None = None) -> ClassicGroupMember:
    return ClassicGroupMember(
        member_id, instance, "c", "/h", 3000, 3000, "consumer",
        tuple(Protocol(n, subscription(*topics)) for n in names),
    )


def test_protocol_selection_votes_among_common_protocols() -> None:
    group = ClassicGroup("g", 0)
    group.add(_member("a", "roundrobin", "range"))
    group.add(_member("b", "range", "roundrobin", "sticky"))
    group.add(_member("c", "range", "roundrobin"))
    assert group.candidate_protocols() == {"range", "roundrobin"}
    assert group.select_protocol() == "range"  # two votes to one
    group.state = GroupState.STABLE
    assert group.supports_protocols("consumer", [Protocol("roundrobin", b"")])
    assert not group.supports_protocols("consumer", [Protocol("sticky", b"")])
    assert not group.supports_protocols("connect", [Protocol("range", b"")])


def test_leader_static_members_and_removal() -> None:
    group = ClassicGroup("g", 0)
    group.add(_member("a", "range"))
    group.add(_member("b", "range", instance="i-b"))
    assert group.leader_id == "a" and group.protocol_type == "consumer"
    assert group.static_member_id("i-b") == "b"
    old, new = group.replace_static_member("i-b", "b", "b2")
    assert old.member_id == "b" and new.member_id == "b2" and group.static_member_id("i-b") == "b2"
    group.remove("a")
    assert group.leader_id == "b2"
    group.remove("b2")
    assert group.leader_id is None and group.static_members == {}


def test_subscribed_topics_union_of_consumer_subscriptions() -> None:
    group = ClassicGroup("g", 0)
    group.add(_member("a", "range", topics=("x", "y")))
    group.add(_member("b", "range", topics=("y", "z")))
    group.state = GroupState.PREPARING_REBALANCE
    group.init_next_generation(1)
    assert group.subscribed_topics == {"x", "y", "z"}
    assert group.is_subscribed_to_topic("z") and not group.is_subscribed_to_topic("q")
    # Unparseable metadata: unknown subscriptions, a consumer group counts as subscribed.
    group.members["b"].set_protocols((Protocol("range", b"\x00"),))
    assert group.compute_subscribed_topics() is None


def test_subscription_topics_parses_every_version_prefix() -> None:
    assert subscription_topics(subscription("a", "bc")) == ["a", "bc"]
    with pytest.raises(ValueError):
        subscription_topics(b"\x00\x00\x00\x00\x00\x05")
