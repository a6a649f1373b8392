"""A KIP-848 consumer group and its members (Kafka's ConsumerGroup, ConsumerGroupMember and
CurrentAssignmentBuilder), as plain data and pure functions.

Epochs: the *group epoch* bumps whenever the target assignment must be computed again; the
*assignment epoch* is the group epoch the stored target was computed for; a *member epoch* is
what the member must send, moved to the assignment epoch once the member has given up every
partition the target takes from it (revoke before assign). Every partition in a member's
assigned or pending-revocation set is *owned* by that member, and no member is given a
partition another owns: no partition is ever consumed by two members at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

Partitions = Mapping[uuid.UUID, frozenset[int]]

# member states (the int8 of ConsumerGroupCurrentMemberAssignment)
STABLE: Final = 0
UNREVOKED_PARTITIONS: Final = 1
UNRELEASED_PARTITIONS: Final = 2
UNKNOWN: Final = 127
MEMBER_STATES: Final = {STABLE: "stable", UNREVOKED_PARTITIONS: "unrevoked_partitions",
                        UNRELEASED_PARTITIONS: "unreleased_partitions", UNKNOWN: "unknown"}

# group states (derived, never stored)
EMPTY, ASSIGNING, RECONCILING, STABLE_GROUP, DEAD = "Empty", "Assigning", "Reconciling", "Stable", "Dead"

LEAVE_EPOCH: Final = -1
LEAVE_STATIC_EPOCH: Final = -2


def partitions_of(pairs: Iterable[tuple[uuid.UUID, Iterable[int]]]) -> dict[uuid.UUID, frozenset[int]]:
    """A Partitions mapping without empty topics."""
    collected: dict[uuid.UUID, set[int]] = {}
    for topic, parts in pairs:
        collected.setdefault(topic, set()).update(parts)
    return {topic: frozenset(parts) for topic, parts in collected.items() if parts}


def pairs(partitions: Partitions) -> set[tuple[uuid.UUID, int]]:
    return {(t, p) for t, ps in partitions.items() for p in ps}


@dataclass(frozen=True, slots=True)
class ClassicInfo:
    """A member that uses the classic protocol (JoinGroup, SyncGroup) in a consumer group."""

    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]  # (name, ConsumerProtocolSubscription) in preference order


@dataclass(frozen=True, slots=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()  # sorted
    subscribed_topic_regex: str = ""  # "" for none
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: int = STABLE
    assigned: Partitions = field(default_factory=dict)
    pending_revocation: Partitions = field(default_factory=dict)
    classic: ClassicInfo | None = None  # set for members of the classic protocol (a mixed group)

    def subscription_equals(self, other: ConsumerMember) -> bool:
        return (self.subscribed_topic_names, self.subscribed_topic_regex) == (
            other.subscribed_topic_names, other.subscribed_topic_regex)

    def metadata_equals(self, other: ConsumerMember) -> bool:
        """The fields of ConsumerGroupMemberMetadata are equal."""
        return (self.instance_id, self.rack_id, self.client_id, self.client_host, self.subscribed_topic_names,
                self.subscribed_topic_regex, self.rebalance_timeout_ms, self.server_assignor, self.classic) == (
            other.instance_id, other.rack_id, other.client_id, other.client_host, other.subscribed_topic_names,
            other.subscribed_topic_regex, other.rebalance_timeout_ms, other.server_assignor, other.classic)

    def assignment_equals(self, other: ConsumerMember) -> bool:
        """The fields of ConsumerGroupCurrentMemberAssignment are equal."""
        return (self.member_epoch, self.previous_member_epoch, self.state, self.assigned, self.pending_revocation) == (
            other.member_epoch, other.previous_member_epoch, other.state, other.assigned, other.pending_revocation)

    def reconciled_to(self, epoch: int) -> bool:
        return self.state == STABLE and self.member_epoch == epoch


@dataclass(frozen=True, slots=True)
class ResolvedRegex:
    topics: frozenset[str]
    version: int  # the metadata image version it was resolved against
    timestamp: int  # when, in ms


class ConsumerGroup:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.metadata_hash = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.targets: dict[str, Partitions] = {}  # member id -> target assignment
        self.owners: dict[tuple[uuid.UUID, int], str] = {}  # partition -> the member owning it
        self.regexes: dict[str, ResolvedRegex] = {}
        self.metadata_version = -1  # the topics version the metadata hash was computed from

    @property
    def state(self) -> str:
        if not self.members:
            return EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ASSIGNING
        if any(not m.reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return RECONCILING
        return STABLE_GROUP

    def put_member(self, member: ConsumerMember) -> None:
        old = self.members.get(member.member_id)
        if old is not None:
            self._release(old)
            if old.instance_id is not None and old.instance_id != member.instance_id:
                self.static_members.pop(old.instance_id, None)
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        for tp in pairs(member.assigned) | pairs(member.pending_revocation):
            self.owners[tp] = member.member_id

    def remove_member(self, member_id: str) -> ConsumerMember | None:
        old = self.members.pop(member_id, None)
        if old is not None:
            self._release(old)
            if old.instance_id is not None and self.static_members.get(old.instance_id) == member_id:
                del self.static_members[old.instance_id]
        return old

    def _release(self, member: ConsumerMember) -> None:
        for tp in pairs(member.assigned) | pairs(member.pending_revocation):
            if self.owners.get(tp) == member.member_id:
                del self.owners[tp]

    def member_by_instance(self, instance_id: str) -> ConsumerMember | None:
        member_id = self.static_members.get(instance_id)
        return None if member_id is None else self.members.get(member_id)

    def subscribed_topic_names(self, members: Iterable[ConsumerMember] | None = None) -> set[str]:
        """Every topic some member subscribes to, by name or through a resolved regex."""
        names: set[str] = set()
        for member in self.members.values() if members is None else members:
            names.update(member.subscribed_topic_names)
            resolved = self.regexes.get(member.subscribed_topic_regex)
            if resolved is not None:
                names.update(resolved.topics)
        return names

    def member_topics(self, member: ConsumerMember) -> set[str]:
        return self.subscribed_topic_names([member])

    def preferred_assignor(self, default: str) -> str:
        """The server assignor most members asked for (ties: the first by name), else the default."""
        counts: dict[str, int] = {}
        for member in self.members.values():
            if member.server_assignor:
                counts[member.server_assignor] = counts.get(member.server_assignor, 0) + 1
        return min(counts, key=lambda name: (-counts[name], name)) if counts else default

    def is_partition_free(self, tp: tuple[uuid.UUID, int], member: ConsumerMember) -> bool:
        """Free for ``member``: nobody else owns it."""
        return self.owners.get(tp, member.member_id) == member.member_id


# --- reconciliation (Kafka's CurrentAssignmentBuilder) -----------------------------------------


def reconcile(group: ConsumerGroup, member: ConsumerMember, target_epoch: int, target: Partitions,
              subscribed_ids: set[uuid.UUID], owned: Partitions | None, subscription_changed: bool) -> ConsumerMember:
    """The member after this heartbeat. ``owned``: the partitions the client says it still
    has (None: it did not say, so it still has everything); ``subscribed_ids``: the topics it
    subscribes to now, of which the target only counts."""
    target = {t: ps for t, ps in target.items() if t in subscribed_ids}
    state = member.state
    if state == STABLE:
        if member.member_epoch != target_epoch:
            return _next(group, member, member.member_epoch, target_epoch, target, owned)
        if subscription_changed:
            return _shrink(member, subscribed_ids, owned)
        return member
    if state == UNREVOKED_PARTITIONS:
        if _still_owns(member.pending_revocation, owned):
            return _shrink(member, subscribed_ids, owned) if subscription_changed else member
        return _next(group, member, min(member.member_epoch + 1, target_epoch), target_epoch, target, owned)
    if state == UNRELEASED_PARTITIONS:
        return _next(group, member, member.member_epoch, target_epoch, target, owned)
    # UNKNOWN: only after a coordinator downgrade; the caller checked the client owns nothing
    return _next(group, member, target_epoch, target_epoch, target, owned)


def _still_owns(revoking: Partitions, owned: Partitions | None) -> bool:
    if owned is None:
        return bool(revoking)
    return bool(pairs(revoking) & pairs(owned))


def _shrink(member: ConsumerMember, subscribed_ids: set[uuid.UUID], owned: Partitions | None) -> ConsumerMember:
    """Partitions of topics the member no longer subscribes to move to pending revocation."""
    dropped = {t: ps for t, ps in member.assigned.items() if t not in subscribed_ids}
    if not dropped:
        return member
    kept = {t: ps for t, ps in member.assigned.items() if t in subscribed_ids}
    revoking = partitions_of(list(member.pending_revocation.items()) + list(dropped.items()))
    if _still_owns(revoking, owned):
        return replace(member, state=UNREVOKED_PARTITIONS, assigned=kept, pending_revocation=revoking)
    return replace(member, assigned=kept, pending_revocation={})


def _next(group: ConsumerGroup, member: ConsumerMember, epoch: int, target_epoch: int, target: Partitions,
          owned: Partitions | None) -> ConsumerMember:
    assigned = pairs(member.assigned)
    wanted = pairs(target)
    keep = assigned & wanted
    revoke = assigned - keep
    want = {tp for tp in wanted - keep if group.is_partition_free(tp, member)}
    unreleased = wanted - keep - want
    previous = member.member_epoch if epoch != member.member_epoch else member.previous_member_epoch
    if revoke and _still_owns(partitions_of((t, [p]) for t, p in revoke), owned):
        return replace(member, state=UNREVOKED_PARTITIONS, member_epoch=epoch, previous_member_epoch=previous,
                       assigned=partitions_of((t, [p]) for t, p in keep),
                       pending_revocation=partitions_of((t, [p]) for t, p in revoke))
    new_previous = member.member_epoch if target_epoch != member.member_epoch else member.previous_member_epoch
    return replace(member, state=UNRELEASED_PARTITIONS if unreleased else STABLE, member_epoch=target_epoch,
                   previous_member_epoch=new_previous, assigned=partitions_of((t, [p]) for t, p in keep | want),
                   pending_revocation={})
