"""A classic consumer group: its states, the legal transitions, and its membership.

States and the transitions Kafka allows (ClassicGroupState: each state lists the states it may
be entered from)::

    Empty                <- PreparingRebalance                (the last member left or expired)
    PreparingRebalance   <- Stable, CompletingRebalance, Empty (a join, leave or expiry)
    CompletingRebalance  <- PreparingRebalance                (every member rejoined: a new generation)
    Stable               <- CompletingRebalance               (the leader's assignment is stored)
    Dead                 <- any state                          (deleted, expired or unloaded)

``transition_to`` checks every change against ``VALID_PREVIOUS_STATES`` and raises on an illegal
one: that is a bug in the coordinator, never the peer's fault.

ClassicGroup does the bookkeeping only (members, static members, pending members, protocol
votes); the decisions (when to rebalance, what to answer) are the coordinator's.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import Final

from strom.coordinator.member import EMPTY_ASSIGNMENT, ClassicGroupMember, Protocol
from strom.coordinator.records import GroupMetadataValue, MemberMetadata
from strom.protocol.errors import ErrorCode

CONSUMER_PROTOCOL_TYPE: Final = "consumer"
GROUP_TYPE_CLASSIC: Final = "classic"
GROUP_TYPE_CONSUMER: Final = "consumer"  # KIP-848 (consumer_group.py)
GROUP_TYPE_SHARE: Final = "share"  # KIP-932 (share_groups.py)


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


EMPTY = GroupState.EMPTY
PREPARING_REBALANCE = GroupState.PREPARING_REBALANCE
COMPLETING_REBALANCE = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

VALID_PREVIOUS_STATES: Final[dict[GroupState, frozenset[GroupState]]] = {
    EMPTY: frozenset({PREPARING_REBALANCE}),
    PREPARING_REBALANCE: frozenset({STABLE, COMPLETING_REBALANCE, EMPTY}),
    COMPLETING_REBALANCE: frozenset({PREPARING_REBALANCE}),
    STABLE: frozenset({COMPLETING_REBALANCE}),
    DEAD: frozenset({STABLE, PREPARING_REBALANCE, COMPLETING_REBALANCE, EMPTY, DEAD}),
}


class IllegalStateTransition(AssertionError):
    pass


def subscription_topics(metadata: bytes) -> list[str]:
    """The topics of a ConsumerProtocolSubscription (any version: the topic list comes first
    after the int16 version, never flexible). ValueError when it does not parse."""
    return subscription_topics_and_end(metadata)[0]


def subscription_topics_and_end(metadata: bytes) -> tuple[list[str], int]:
    """``subscription_topics``, and where the topic list ends."""
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        if count < 0 or count > len(metadata):
            raise ValueError(f"bad topic count {count}")
        pos = 6
        topics = []
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                raise ValueError("bad topic name length")
            topics.append(metadata[pos : pos + length].decode("utf-8"))
            pos += length
        return topics, pos
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from exc


class ClassicGroup:
    """A classic group. Owned by one coordinator shard; only that shard's caller touches it.

    ``state`` / ``previous_state`` / ``state_timestamp_ms``: changed by ``transition_to`` only.
    ``generation_id``, ``protocol_name``: changed by ``init_next_generation`` (and loading).
    ``protocol_type``: set by the first member, cleared never (Kafka keeps it while Empty).
    ``members`` (insertion order = join order), ``static_members`` (instance id -> member id),
    ``pending_members`` (KIP-394: got MEMBER_ID_REQUIRED, not joined yet),
    ``pending_sync_members`` (members of this generation that have not synced yet):
    changed by add / remove / replace_static_member.
    ``leader_id``: the first member, re-elected on removal and at the end of a join phase.
    ``new_member_added``: set while the initial rebalance delay runs and someone new joined.
    ``subscribed_topics``: the union of the members' consumer subscriptions, None if unknown;
    recomputed at every generation (it decides offset expiry and OffsetDelete).
    """

    def __init__(self, group_id: str, now_ms: int | None = None) -> None:
        self.group_id = group_id
        self.state = EMPTY
        self.previous_state: GroupState | None = None
        self.state_timestamp_ms = now_ms
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, ClassicGroupMember] = {}
        self.static_members: dict[str, str] = {}
        self.pending_members: set[str] = set()
        self.pending_sync_members: set[str] = set()
        self.new_member_added = False
        self.subscribed_topics: set[str] | None = None

    # --- state -------------------------------------------------------------------------------

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def can_rebalance(self) -> bool:
        return self.state in VALID_PREVIOUS_STATES[PREPARING_REBALANCE]

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        if self.state not in VALID_PREVIOUS_STATES[state]:
            raise IllegalStateTransition(
                f"group {self.group_id} cannot go from {self.state.value} to {state.value}"
            )
        self.previous_state = self.state
        self.state = state
        self.state_timestamp_ms = now_ms

    # --- members -----------------------------------------------------------------------------

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def member(self, member_id: str) -> ClassicGroupMember:
        return self.members[member_id]

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def is_pending_member(self, member_id: str) -> bool:
        return member_id in self.pending_members

    def static_member_id(self, group_instance_id: str | None) -> str | None:
        return None if group_instance_id is None else self.static_members.get(group_instance_id)

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_awaiting_join() and not self.pending_members

    def has_received_sync_from_all_members(self) -> bool:
        return not self.pending_sync_members

    def not_yet_rejoined_members(self) -> list[ClassicGroupMember]:
        return [m for m in self.members.values() if not m.awaiting_join]

    def rebalance_timeout_ms(self) -> int:
        """The longest rebalance timeout of any member: how long a join phase may wait."""
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def add(self, member: ClassicGroupMember) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.pending_members.discard(member.member_id)

    def remove(self, member_id: str) -> ClassicGroupMember | None:
        removed = self.members.pop(member_id, None)
        instance_id = removed.group_instance_id if removed is not None else None
        if instance_id is not None and self.static_members.get(instance_id) == member_id:
            del self.static_members[instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.discard(member_id)
        self.pending_sync_members.discard(member_id)
        return removed

    def replace_static_member(self, group_instance_id: str, old_member_id: str, new_member_id: str) -> tuple[ClassicGroupMember, ClassicGroupMember]:
        """Give a static member a new member id (KIP-345); returns (old, new). The old member's
        parked requests stay on the returned old member for the caller to fence."""
        old = self.members.pop(old_member_id)
        new = ClassicGroupMember(
            new_member_id, old.group_instance_id, old.client_id, old.client_host,
            old.rebalance_timeout_ms, old.session_timeout_ms, old.protocol_type, old.protocols,
            assignment=old.assignment,
        )
        self.members[new_member_id] = new
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        if old_member_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_member_id)
            self.pending_sync_members.add(new_member_id)
        self.static_members[group_instance_id] = new_member_id
        return old, new

    def validate_member(self, member_id: str, group_instance_id: str | None) -> ErrorCode:
        """Kafka's validateMember: a static member must be the one its instance id maps to."""
        if group_instance_id is not None:
            existing = self.static_members.get(group_instance_id)
            if existing is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if existing != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
            return ErrorCode.NONE
        return ErrorCode.NONE if member_id in self.members else ErrorCode.UNKNOWN_MEMBER_ID

    # --- protocols ---------------------------------------------------------------------------

    def supports_protocols(self, protocol_type: str, protocols: Iterable[Protocol]) -> bool:
        names = {p.name for p in protocols}
        if self.state is EMPTY:
            return bool(protocol_type) and bool(names)
        return self.protocol_type == protocol_type and any(
            all(name in m.protocol_names for m in self.members.values()) for name in names
        )

    def candidate_protocols(self) -> set[str]:
        members = list(self.members.values())
        candidates = set(members[0].protocol_names)
        for member in members[1:]:
            candidates &= member.protocol_names
        return candidates

    def select_protocol(self) -> str:
        """Every member votes for its favourite protocol that all support; most votes wins
        (ties: the one voted for first)."""
        if not self.members:
            raise AssertionError(f"cannot select a protocol for the empty group {self.group_id}")
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            name = member.vote(candidates)
            votes[name] = votes.get(name, 0) + 1
        return max(votes, key=lambda name: votes[name])

    def maybe_elect_new_joined_leader(self) -> bool:
        """At the end of a join phase the leader must be a member that rejoined."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(EMPTY, now_ms)
        self.pending_sync_members.clear()

    def uses_consumer_protocol(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    def compute_subscribed_topics(self) -> set[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        try:
            for member in self.members.values():
                topics.update(subscription_topics(member.metadata(self.protocol_name)))
        except ValueError:
            return None
        return topics

    def is_subscribed_to_topic(self, topic: str) -> bool:
        if self.subscribed_topics is not None:
            return topic in self.subscribed_topics
        # Unknown subscriptions: a consumer group is assumed subscribed (conservative).
        return self.uses_consumer_protocol()

    # --- responses and records -----------------------------------------------------------------

    def leader_members(self) -> list[dict[str, object]]:
        """The member list a JoinGroup response gives the leader (for its assignor)."""
        return [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "metadata": m.metadata(self.protocol_name),
            }
            for m in self.members.values()
        ]

    def assignments(self) -> dict[str, bytes]:
        return {m.member_id: m.assignment for m in self.members.values()}

    def to_record(self, assignments: dict[str, bytes]) -> GroupMetadataValue:
        """The GroupMetadataValue Kafka stores for this group (members with the selected
        protocol's subscription and their assignment)."""
        members = []
        for m in self.members.values():
            if self.protocol_name is None:
                raise AssertionError(f"group {self.group_id} has members but no protocol")
            members.append(
                MemberMetadata(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    rebalance_timeout=m.rebalance_timeout_ms,
                    session_timeout=m.session_timeout_ms,
                    subscription=m.metadata(self.protocol_name),
                    assignment=assignments.get(m.member_id, EMPTY_ASSIGNMENT),
                )
            )
        return GroupMetadataValue(
            protocol_type=self.protocol_type or "",
            generation=self.generation_id,
            protocol=self.protocol_name,
            leader=self.leader_id,
            current_state_timestamp=-1 if self.state_timestamp_ms is None else self.state_timestamp_ms,
            members=tuple(members),
        )

    @classmethod
    def from_record(cls, group_id: str, value: GroupMetadataValue) -> ClassicGroup:
        """The group as stored: Stable with its members, or Empty (Kafka's load)."""
        group = cls(group_id, None if value.current_state_timestamp < 0 else value.current_state_timestamp)
        group.state = STABLE if value.members else EMPTY
        group.generation_id = value.generation
        group.protocol_type = value.protocol_type or None
        group.protocol_name = value.protocol
        for stored in value.members:
            protocols = (Protocol(value.protocol, stored.subscription),) if value.protocol is not None else ()
            group.add(
                ClassicGroupMember(
                    stored.member_id, stored.group_instance_id, stored.client_id, stored.client_host,
                    stored.rebalance_timeout, stored.session_timeout, group.protocol_type or "",
                    protocols, assignment=stored.assignment,
                )
            )
        group.protocol_type = value.protocol_type or None  # add() set it from the first member
        group.leader_id = value.leader if value.leader in group.members else next(iter(group.members), None)
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    def __repr__(self) -> str:
        return (
            f"<ClassicGroup {self.group_id} {self.state.value} generation={self.generation_id} "
            f"members={list(self.members)} leader={self.leader_id}>"
        )
