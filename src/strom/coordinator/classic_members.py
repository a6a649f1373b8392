"""Mixed consumer groups (KIP-848): members of the classic protocol (JoinGroup, SyncGroup,
Heartbeat, LeaveGroup) in a consumer group, and the online upgrade of a classic group whose
members all speak the consumer embedded protocol when a ConsumerGroupHeartbeat joins it.

A classic member's JoinGroup is a full heartbeat of the consumer protocol: its subscription
and the partitions it owns come from its ConsumerProtocolSubscription, the broker computes the
target, and the answer comes at once (no join barrier; the member is never the leader). Its
SyncGroup returns its assigned partitions as a ConsumerProtocolAssignment; its Heartbeat answers
REBALANCE_IN_PROGRESS while it must rejoin to give up or take partitions. A group whose
consumer-protocol members have all left becomes a classic group again (Kafka's online downgrade,
``group.consumer.migration.policy=bidirectional``).
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Sequence
from typing import Any

from strom.coordinator.consumer_coordinator import (
    ConsumerGroupManager,
    ConsumerHeartbeat,
    TopicImage,
    _Refused,
    metadata_hash,
    rebalance_key,
    session_key,
)
from strom.coordinator.consumer_group import (
    STABLE,
    UNRELEASED_PARTITIONS,
    UNREVOKED_PARTITIONS,
    ClassicInfo,
    ConsumerGroup,
    ConsumerMember,
    pairs,
)
from strom.coordinator.group import DEAD, ClassicGroup, subscription_topics_and_end
from strom.coordinator.records import CoordinatorRecord, GroupMetadataValue, MemberMetadata
from strom.coordinator.shard import heartbeat_key, join_key, join_response, sync_key, sync_response
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

CONSUMER = "consumer"


def _topic_partitions_at(data: bytes, pos: int) -> tuple[list[tuple[str, list[int]]], int]:
    """An array of (topic string, [int32]) at ``pos``, and the position after it."""
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    out: list[tuple[str, list[int]]] = []
    for _ in range(max(count, 0)):
        (length,) = struct.unpack_from(">h", data, pos)
        topic = bytes(data[pos + 2:pos + 2 + length]).decode()
        pos += 2 + length
        (n,) = struct.unpack_from(">i", data, pos)
        out.append((topic, list(struct.unpack_from(f">{max(n, 0)}i", data, pos + 4))))
        pos += 4 + 4 * max(n, 0)
    return out, pos


def decode_subscription(metadata: bytes) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """A ConsumerProtocolSubscription's topics and owned partitions (v1+; none in v0, as Kafka
    reads it: an eager client has given up everything before it joins); ValueError when it does
    not parse."""
    topics, pos = subscription_topics_and_end(metadata)
    try:
        (version,) = struct.unpack_from(">h", metadata, 0)
        (user_data,) = struct.unpack_from(">i", metadata, pos)
        pos += 4 + max(user_data, 0)
        if version < 1 or pos >= len(metadata):
            return topics, []
        return topics, _topic_partitions_at(metadata, pos)[0]
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed ConsumerProtocolSubscription: {exc}") from None


def decode_assignment(data: bytes) -> list[tuple[str, list[int]]]:
    """A ConsumerProtocolAssignment's partitions (every version starts with them)."""
    if not data:
        return []
    try:
        return _topic_partitions_at(data, 2)[0]
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed ConsumerProtocolAssignment: {exc}") from None


def encode_assignment(partitions: Sequence[tuple[str, Sequence[int]]]) -> bytes:
    """A ConsumerProtocolAssignment v0: the partitions, no user data."""
    out = bytearray(struct.pack(">hi", 0, len(partitions)))
    for topic, parts in partitions:
        name = topic.encode()
        out += struct.pack(">h", len(name)) + name + struct.pack(f">i{len(parts)}i", len(parts), *parts)
    return bytes(out + struct.pack(">i", -1))


def _by_id(pairs_: Sequence[tuple[str, Sequence[int]]], topics: TopicImage) -> tuple[tuple[uuid.UUID, tuple[int, ...]], ...]:
    return tuple((topics.by_name[t][0], tuple(ps)) for t, ps in pairs_ if t in topics.by_name)


class MixedGroupManager(ConsumerGroupManager):
    """Classic-protocol members in consumer groups. ``_pending_classic``: member ids handed out
    with MEMBER_ID_REQUIRED, by group, until they join with them (soft state, as Kafka's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_classic: dict[str, set[str]] = {}

    def _classic_protocols(self, group: ConsumerGroup, requested: Sequence[str]) -> list[str]:
        """The requested protocols every classic member of the group also supports, in order."""
        names = list(requested)
        for member in group.members.values():
            if member.classic is not None:
                names = [n for n in names if n in {name for name, _ in member.classic.protocols}]
        return names

    def _classic_member(self, group: ConsumerGroup, member_id: str, generation: int) -> ConsumerMember | int:
        member = group.members.get(member_id)
        if member is None or member.classic is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != member.member_epoch:
            return ErrorCode.ILLEGAL_GENERATION
        return member

    def classic_join(self, group: ConsumerGroup, request: Any, ticket: int) -> None:
        """JoinGroup (coordinator.JoinRequest) of a classic member to a consumer group."""
        common = self._classic_protocols(group, [p.name for p in request.protocols])
        if request.protocol_type != CONSUMER or not common:
            self._answer(ticket, join_response(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, request.member_id))
            return
        member_id = request.member_id
        holder = group.member_by_instance(request.group_instance_id) if request.group_instance_id else None
        pending = self._pending_classic.setdefault(group.group_id, set())
        if not member_id:
            member_id = self._new_member_id(request.client_id)
            if holder is None and request.require_known_member_id:  # KIP-394: join again with this id
                pending.add(member_id)
                self._answer(ticket, join_response(ErrorCode.MEMBER_ID_REQUIRED, member_id))
                return
        member = group.members.get(member_id)
        if member is None and holder is not None:
            member = self._replace_static(group, holder, member_id)  # a classic static member restarts
        elif member is None and request.member_id and request.member_id not in pending:
            self._answer(ticket, join_response(ErrorCode.UNKNOWN_MEMBER_ID, request.member_id))
            return
        pending.discard(member_id)
        first = next(p for p in request.protocols if p.name == common[0])
        try:
            topics, owned = decode_subscription(first.metadata)
        except ValueError:
            self._answer(ticket, join_response(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        image = self._topics
        beat = ConsumerHeartbeat(
            group.group_id, member_id, member.member_epoch if member is not None else 0,
            instance_id=request.group_instance_id, rebalance_timeout_ms=request.rebalance_timeout_ms,
            subscribed_topic_names=tuple(topics), subscribed_topic_regex="",
            topic_partitions=_by_id(owned, image), client_id=request.client_id,
            client_host=request.client_host, session_timeout_ms=request.session_timeout_ms,
            classic=ClassicInfo(request.session_timeout_ms, tuple((p.name, p.metadata) for p in request.protocols)))
        try:
            answer = self._heartbeat_member(group, member or ConsumerMember(member_id), member is not None, beat,
                                            image, lambda _topic: True)
        except _Refused as refused:
            self._answer(ticket, join_response(refused.error, member_id))
            return
        self._answer(ticket, join_response(ErrorCode.NONE, member_id, generation_id=answer["member_epoch"],
                                           protocol_type=CONSUMER, protocol_name=common[0]))

    def classic_sync(self, group: ConsumerGroup, request: Any, ticket: int) -> None:
        found = self._classic_member(group, request.member_id, request.generation_id)
        if isinstance(found, int):
            self._answer(ticket, sync_response(found))
            return
        assert found.classic is not None
        names = [n for n, _ in found.classic.protocols]
        if request.protocol_type not in (None, CONSUMER) or (request.protocol_name is not None and request.protocol_name not in names):
            self._answer(ticket, sync_response(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        if group.group_epoch > found.member_epoch and found.state != UNREVOKED_PARTITIONS:
            self._answer(ticket, sync_response(ErrorCode.REBALANCE_IN_PROGRESS))
            return
        self._arm_session(group.group_id, found.member_id, found.classic.session_timeout_ms)
        assigned = [(self._topics.by_id[t][0], sorted(ps)) for t, ps in sorted(found.assigned.items()) if t in self._topics.by_id]
        self._answer(ticket, sync_response(ErrorCode.NONE, protocol_type=CONSUMER,
                                           protocol_name=request.protocol_name or names[0],
                                           assignment=encode_assignment(assigned)))

    def classic_heartbeat(self, group: ConsumerGroup, member_id: str, generation: int) -> int:
        found = self._classic_member(group, member_id, generation)
        if isinstance(found, int):
            return found
        assert found.classic is not None
        self._arm_session(group.group_id, member_id, found.classic.session_timeout_ms)
        target = pairs(group.targets.get(member_id, {}))
        freed = any(tp not in group.owners for tp in target - pairs(found.assigned))
        must_rejoin = (found.member_epoch < group.group_epoch or found.state == UNREVOKED_PARTITIONS
                       or (found.state == UNRELEASED_PARTITIONS and freed))
        return ErrorCode.REBALANCE_IN_PROGRESS if must_rejoin else ErrorCode.NONE

    def classic_leave(self, group: ConsumerGroup, leaving: Sequence[Any]) -> dict[str, Any]:
        results, gone = [], []
        for one in leaving:
            member = (group.members.get(one.member_id) if one.member_id
                      else group.member_by_instance(one.group_instance_id) if one.group_instance_id else None)
            error: int = ErrorCode.NONE
            if member is None:
                error = ErrorCode.UNKNOWN_MEMBER_ID
            elif one.group_instance_id is not None and member.instance_id != one.group_instance_id:
                error = ErrorCode.FENCED_INSTANCE_ID
            else:
                gone.append(member.member_id)
            results.append({"member_id": one.member_id, "group_instance_id": one.group_instance_id, "error_code": error})
        if gone:
            self._remove_members(group, gone)
        return {"error_code": ErrorCode.NONE, "members": results}

    def _remove_members(self, group: ConsumerGroup, member_ids: Any) -> None:
        super()._remove_members(group, member_ids)
        self._maybe_downgrade(group)

    def _maybe_downgrade(self, group: ConsumerGroup) -> None:
        """Kafka's online downgrade (``group.consumer.migration.policy=bidirectional``, its
        default): once only classic members are left, the group becomes a classic group again,
        Stable at the group epoch with each member's target as its assignment, and rebalances
        (the leave that got it here asks for one)."""
        members = list(group.members.values())
        classics = [m.classic for m in members if m.classic is not None]
        if not members or len(classics) < len(members) or len(members) > self.config.max_size:
            return
        shared = [name for name, _ in classics[0].protocols if all(name in dict(c.protocols) for c in classics)]
        if not shared:
            return
        gid, image, protocol = group.group_id, self._topics, shared[0]
        stored = tuple(MemberMetadata(
            m.member_id, m.instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms, m.classic.session_timeout_ms,
            dict(m.classic.protocols)[protocol],
            encode_assignment([(image.by_id[t][0], sorted(ps)) for t, ps in sorted(group.targets.get(m.member_id, {}).items())
                               if t in image.by_id]))
            for m in members if m.classic is not None)
        value = GroupMetadataValue(CONSUMER, group.group_epoch, protocol, None, self._now, stored)
        for m in members:
            self._cancel(session_key(gid, m.member_id))
            self._cancel(rebalance_key(gid, m.member_id))
        self._delete_consumer_group(group)
        self._append(CoordinatorRecord.group_metadata(gid, value))
        classic = self.groups[gid] = ClassicGroup.from_record(gid, value)
        for member in classic.members.values():
            self._reschedule_heartbeat(classic, member)
        log.info("consumer group %s has only classic members left: a classic group again at generation %d", gid, value.generation)
        self._prepare_rebalance(classic, "the last consumer-protocol member left")

    # --- online upgrade ------------------------------------------------------------------------

    def upgrade_classic_group(self, classic: ClassicGroup) -> ConsumerGroup:
        """A ConsumerGroupHeartbeat joins a non-empty classic group: it becomes a consumer group
        whose members keep their generation and assignments (Kafka's online upgrade)."""
        gid = classic.group_id
        if classic.protocol_type != CONSUMER or len(classic.members) > self.config.consumer_max_size:
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {gid} is a classic group that cannot become a consumer group.")
        image = self._topics
        members = []
        try:
            for m in classic.members.values():
                chosen = next((p for p in m.protocols if p.name == classic.protocol_name), m.protocols[0])
                topics, _owned = decode_subscription(chosen.metadata)
                target = {image.by_name[t][0]: frozenset(ps) for t, ps in decode_assignment(m.assignment) if t in image.by_name}
                members.append((m, topics, target))
        except (ValueError, IndexError):
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {gid}'s members cannot be read as consumer members.") from None
        for m in classic.members.values():  # every parked request gets its answer: they rejoin
            self._complete_join(m, join_response(ErrorCode.REBALANCE_IN_PROGRESS, m.member_id))
            self._complete_sync(m, sync_response(ErrorCode.REBALANCE_IN_PROGRESS))
            self._cancel(heartbeat_key(gid, m.member_id))
        self._cancel(join_key(gid))
        self._cancel(sync_key(gid))
        self._append(CoordinatorRecord.group_metadata(gid, None))
        classic.transition_to(DEAD, self._now)
        del self.groups[gid]
        epoch = classic.generation_id
        group = self.consumer_groups[gid] = ConsumerGroup(gid)
        for m, topics, _target in members:
            self._write_member(gid, ConsumerMember(
                m.member_id, instance_id=m.group_instance_id, client_id=m.client_id, client_host=m.client_host,
                subscribed_topic_names=tuple(sorted(topics)), rebalance_timeout_ms=m.rebalance_timeout_ms,
                classic=ClassicInfo(m.session_timeout_ms, tuple((p.name, p.metadata) for p in m.protocols))))
        self._write_epoch(group, epoch, metadata_hash(group.subscribed_topic_names(), image))
        group.metadata_version = image.version
        for m, _topics, target in members:
            self._write_target(gid, m.member_id, target)
        self._write_assignment_epoch(group, epoch)
        for m, _topics, target in members:
            self._write_assignment(gid, ConsumerMember(m.member_id, member_epoch=epoch, previous_member_epoch=epoch,
                                                       state=STABLE, assigned=target))
            self._arm_session(gid, m.member_id, m.session_timeout_ms)
        log.info("classic group %s becomes a consumer group at epoch %d (%d members)", gid, epoch, len(members))
        return group
