"""KIP-848 consumer groups in a group coordinator shard (Kafka's GroupMetadataManager for
``group.protocol=consumer``): ConsumerGroupHeartbeat, ConsumerGroupDescribe, leaving, session
and rebalance timeouts, and the replay of the consumer-group records of ``__consumer_offsets``.

Every change is a record, applied the moment it is written (as Kafka applies records to its
timeline at once) and applied again, unchanged, when the runtime replays it after the append.

Empty groups convert both ways (a heartbeat to an empty classic group, a JoinGroup to an empty
consumer group); non-empty ones are upgraded and downgraded in classic_members, which also
serves classic members in consumer groups. Kept simpler than Kafka, and said so in
docs/architecture.md: regular expressions are resolved within the heartbeat that brings them
(Kafka resolves them in the background, a heartbeat later).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from strom.coordinator.assignors import MemberSpec, assign
from strom.coordinator.consumer_group import (
    LEAVE_EPOCH,
    LEAVE_STATIC_EPOCH,
    UNKNOWN,
    UNREVOKED_PARTITIONS,
    ClassicInfo,
    ConsumerGroup,
    ConsumerMember,
    Partitions,
    ResolvedRegex,
    pairs,
    partitions_of,
    reconcile,
)
from strom.coordinator.offset_manager import OffsetManager
from strom.coordinator.offsets import is_expired
from strom.coordinator.records import (
    ClassicMemberMetadata,
    ClassicProtocol,
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataKey,
    ConsumerGroupRegularExpressionKey,
    ConsumerGroupRegularExpressionValue,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
    CoordinatorRecord,
    TopicPartitions,
)
from strom.coordinator.shard import Result, TimerKey
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

REGEX_REFRESH_MIN_MS: Final = 10_000  # Kafka's batch refresh interval for a group's regexes
CONSUMER_KEYS: Final = (ConsumerGroupMetadataKey, ConsumerGroupPartitionMetadataKey, ConsumerGroupMemberMetadataKey,
                        ConsumerGroupTargetAssignmentMetadataKey, ConsumerGroupTargetAssignmentMemberKey,
                        ConsumerGroupCurrentMemberAssignmentKey, ConsumerGroupRegularExpressionKey)


@dataclass(frozen=True, slots=True)
class TopicImage:
    """The topics a heartbeat sees: by name (id, partition count) and by id (name, count);
    ``version`` changes whenever they do."""

    by_name: Mapping[str, tuple[uuid.UUID, int]]
    by_id: Mapping[uuid.UUID, tuple[str, int]]
    version: int


EMPTY_TOPICS: Final = TopicImage({}, {}, -1)


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeat:
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    topic_partitions: tuple[tuple[uuid.UUID, tuple[int, ...]], ...] | None = None
    client_id: str = ""
    client_host: str = ""
    api_version: int = 1
    # the group's consumer.session.timeout.ms / consumer.heartbeat.interval.ms (None: the broker's)
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    classic: ClassicInfo | None = None  # a classic member's JoinGroup (classic_members)

    @property
    def full(self) -> bool:
        """A full request (a join, or after an error): everything is sent."""
        return (self.rebalance_timeout_ms != -1 and self.topic_partitions is not None
                and (self.subscribed_topic_names is not None or self.subscribed_topic_regex is not None))


class _Refused(Exception):
    def __init__(self, error: int, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def replay_target(targets: dict[str, Partitions], member_id: str, value: Any) -> None:
    """A TargetAssignmentMember record (consumer or share group; None: a tombstone)."""
    if value is None:
        targets.pop(member_id, None)
    else:
        targets[member_id] = partitions_of((tp.topic_id, tp.partitions) for tp in value.topic_partitions)


def heartbeat_error(error: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time": 0, "error_code": error, "error_message": message, "member_id": None,
            "member_epoch": 0, "heartbeat_interval": 0, "assignment": None}


def session_key(group_id: str, member_id: str) -> TimerKey:
    return ("consumer-session", group_id, member_id)


def rebalance_key(group_id: str, member_id: str) -> TimerKey:
    return ("consumer-rebalance", group_id, member_id)


def metadata_hash(names: Iterable[str], topics: TopicImage) -> int:
    """A digest of the subscribed topics that exist (id, name, partition count): a change
    means the target assignment must be computed again (KIP-1101's role; not Kafka's bytes)."""
    digest = hashlib.blake2b(digest_size=8)
    found = False
    for name in sorted(names):
        entry = topics.by_name.get(name)
        if entry is not None:
            found = True
            digest.update(f"{entry[0]}:{name}:{entry[1]};".encode())
    return int.from_bytes(digest.digest(), "big", signed=True) if found else 0


def _compile(regex: str) -> Any:
    """A compiled RE2 pattern (Kafka matches subscriptions with RE2/J: no look-around, no
    backreferences); ValueError when RE2 refuses it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(regex, options)
    except re2.error as exc:
        raise ValueError(str(exc)) from None


def _topic_partitions(partitions: Partitions) -> tuple[TopicPartitions, ...]:
    return tuple(TopicPartitions(t, tuple(sorted(ps))) for t, ps in sorted(partitions.items()))


class ConsumerGroupManager(OffsetManager):
    """The consumer-group half of a group coordinator shard (``consumer_groups``)."""

    _topics: TopicImage = EMPTY_TOPICS  # the last topics a heartbeat saw (for timers)
    _new_member_id: Callable[[str], str]  # set by GroupCoordinator

    # --- records -------------------------------------------------------------------------------

    def _write(self, record: CoordinatorRecord) -> None:
        self._append(record)
        self._replay_consumer(record)

    def _replay_consumer(self, record: CoordinatorRecord) -> None:
        key, value = record.key, record.value
        if isinstance(key, ConsumerGroupPartitionMetadataKey):
            return  # Kafka 4.0's; only its tombstone matters, and that is Kafka's business
        group_id = key.group
        if isinstance(key, ConsumerGroupMetadataKey):
            if value is None:
                self.consumer_groups.pop(group_id, None)
                return
            assert isinstance(value, ConsumerGroupMetadataValue)
            group = self._consumer_group_for_replay(group_id)
            group.group_epoch, group.metadata_hash = value.epoch, value.metadata_hash
            return
        if value is None and group_id not in self.consumer_groups:
            return  # a tombstone replayed again after its group's own tombstone
        group = self._consumer_group_for_replay(group_id)
        if isinstance(key, ConsumerGroupMemberMetadataKey):
            if value is None:
                group.remove_member(key.member_id)
                return
            assert isinstance(value, ConsumerGroupMemberMetadataValue)
            old = group.members.get(key.member_id) or ConsumerMember(key.member_id)
            group.put_member(replace(
                old, instance_id=value.instance_id, rack_id=value.rack_id, client_id=value.client_id,
                client_host=value.client_host, subscribed_topic_names=tuple(sorted(value.subscribed_topic_names)),
                subscribed_topic_regex=value.subscribed_topic_regex or "", rebalance_timeout_ms=value.rebalance_timeout_ms,
                server_assignor=value.server_assignor, classic=None if value.classic_member_metadata is None else ClassicInfo(
                    value.classic_member_metadata.session_timeout_ms,
                    tuple((p.name, p.metadata) for p in value.classic_member_metadata.supported_protocols))))
        elif isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
            assert value is None or isinstance(value, ConsumerGroupTargetAssignmentMetadataValue)
            group.assignment_epoch = -1 if value is None else value.assignment_epoch
        elif isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
            replay_target(group.targets, key.member_id, value)
        elif isinstance(key, ConsumerGroupCurrentMemberAssignmentKey):
            old = group.members.get(key.member_id) or ConsumerMember(key.member_id)
            if value is None:  # parked until its MemberMetadata tombstone removes it
                group.put_member(replace(old, member_epoch=LEAVE_EPOCH, previous_member_epoch=LEAVE_EPOCH,
                                         assigned={}, pending_revocation={}))
                return
            assert isinstance(value, ConsumerGroupCurrentMemberAssignmentValue)
            group.put_member(replace(
                old, member_epoch=value.member_epoch, previous_member_epoch=value.previous_member_epoch,
                state=value.state if value.state in (0, 1, 2) else UNKNOWN,
                assigned=partitions_of((tp.topic_id, tp.partitions) for tp in value.assigned_partitions),
                pending_revocation=partitions_of((tp.topic_id, tp.partitions) for tp in value.partitions_pending_revocation)))
        elif isinstance(key, ConsumerGroupRegularExpressionKey):
            if value is None:
                group.regexes.pop(key.regular_expression, None)
            else:
                assert isinstance(value, ConsumerGroupRegularExpressionValue)
                group.regexes[key.regular_expression] = ResolvedRegex(frozenset(value.topics), value.version, value.timestamp)

    def _consumer_group_for_replay(self, group_id: str) -> ConsumerGroup:
        group = self.consumer_groups.get(group_id)
        if group is None:
            classic = self.groups.get(group_id)
            if classic is not None and not classic.members:
                del self.groups[group_id]  # a simple group (offsets only) becomes the consumer group
            group = self.consumer_groups[group_id] = ConsumerGroup(group_id)
        return group

    def _write_member(self, group_id: str, member: ConsumerMember) -> None:
        self._write(CoordinatorRecord(ConsumerGroupMemberMetadataKey(group_id, member.member_id),
                                      ConsumerGroupMemberMetadataValue(
                                          instance_id=member.instance_id, rack_id=member.rack_id,
                                          client_id=member.client_id, client_host=member.client_host,
                                          subscribed_topic_names=member.subscribed_topic_names,
                                          subscribed_topic_regex=member.subscribed_topic_regex or None,
                                          rebalance_timeout_ms=member.rebalance_timeout_ms,
                                          server_assignor=member.server_assignor,
                                          classic_member_metadata=None if member.classic is None else ClassicMemberMetadata(
                                              member.classic.session_timeout_ms,
                                              tuple(ClassicProtocol(n, m) for n, m in member.classic.protocols)))))

    def _write_assignment(self, group_id: str, member: ConsumerMember) -> None:
        self._write(CoordinatorRecord(ConsumerGroupCurrentMemberAssignmentKey(group_id, member.member_id),
                                      ConsumerGroupCurrentMemberAssignmentValue(
                                          member_epoch=member.member_epoch,
                                          previous_member_epoch=member.previous_member_epoch, state=member.state,
                                          assigned_partitions=_topic_partitions(member.assigned),
                                          partitions_pending_revocation=_topic_partitions(member.pending_revocation))))

    def _write_target(self, group_id: str, member_id: str, target: Partitions) -> None:
        self._write(CoordinatorRecord(ConsumerGroupTargetAssignmentMemberKey(group_id, member_id),
                                      ConsumerGroupTargetAssignmentMemberValue(_topic_partitions(target))))

    def _write_epoch(self, group: ConsumerGroup, epoch: int, hash_: int) -> None:
        self._write(CoordinatorRecord(ConsumerGroupMetadataKey(group.group_id), ConsumerGroupMetadataValue(epoch, hash_)))

    def _write_member_tombstones(self, group_id: str, member_id: str) -> None:
        # this order: replay refuses a member's metadata tombstone while its assignments exist
        self._write(CoordinatorRecord(ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id), None))
        self._write(CoordinatorRecord(ConsumerGroupTargetAssignmentMemberKey(group_id, member_id), None))
        self._write(CoordinatorRecord(ConsumerGroupMemberMetadataKey(group_id, member_id), None))

    # --- ConsumerGroupHeartbeat ----------------------------------------------------------------

    def consumer_heartbeat(self, request: ConsumerHeartbeat, topics: TopicImage, describable: Callable[[str], bool],
                           now_ms: int) -> Result:
        """``describable``: whether the member's principal may DESCRIBE a topic (what a regex
        may match)."""
        self._topics = topics
        return self._run(now_ms, lambda: self._consumer_heartbeat(request, topics, describable))

    def _consumer_heartbeat(self, r: ConsumerHeartbeat, topics: TopicImage, describable: Callable[[str], bool]) -> dict[str, Any]:
        try:
            self._validate(r)
            if r.member_epoch in (LEAVE_EPOCH, LEAVE_STATIC_EPOCH):
                return self._consumer_leave(r)
            return self._regular_heartbeat(r, topics, describable)
        except _Refused as refused:
            return heartbeat_error(refused.error, refused.message)

    def _validate(self, r: ConsumerHeartbeat) -> None:
        config = self.config
        if not r.member_id.strip() and (r.api_version >= 1 or r.member_epoch > 0 or r.member_epoch == LEAVE_EPOCH):
            raise _Refused(ErrorCode.INVALID_REQUEST, "MemberId can't be empty.")
        if not r.group_id.strip():
            raise _Refused(ErrorCode.INVALID_REQUEST, "GroupId can't be empty.")
        if r.instance_id is not None and not r.instance_id.strip():
            raise _Refused(ErrorCode.INVALID_REQUEST, "InstanceId can't be empty.")
        if r.rack_id is not None and not r.rack_id.strip():
            raise _Refused(ErrorCode.INVALID_REQUEST, "RackId can't be empty.")
        if r.member_epoch == 0:
            if r.rebalance_timeout_ms == -1:
                raise _Refused(ErrorCode.INVALID_REQUEST, "RebalanceTimeoutMs must be provided in first request.")
            if r.topic_partitions is None or r.topic_partitions:
                raise _Refused(ErrorCode.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining.")
            if r.subscribed_topic_names is None and r.subscribed_topic_regex is None:
                raise _Refused(ErrorCode.INVALID_REQUEST,
                               "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
        elif r.member_epoch == LEAVE_STATIC_EPOCH and r.instance_id is None:
            raise _Refused(ErrorCode.INVALID_REQUEST, "InstanceId can't be null.")
        elif r.member_epoch < LEAVE_STATIC_EPOCH:
            raise _Refused(ErrorCode.INVALID_REQUEST, f"MemberEpoch is {r.member_epoch}, but must be greater than or equal to -2.")
        if r.subscribed_topic_regex:
            try:  # before anything is written: a refused heartbeat changes nothing
                _compile(r.subscribed_topic_regex)
            except ValueError as exc:
                raise _Refused(ErrorCode.INVALID_REGULAR_EXPRESSION,
                               f"SubscribedTopicRegex {r.subscribed_topic_regex} is invalid: {exc}") from None
        if r.server_assignor is not None and r.server_assignor not in config.consumer_assignors:
            raise _Refused(ErrorCode.UNSUPPORTED_ASSIGNOR, f"ServerAssignor {r.server_assignor} is not supported. "
                           f"Supported assignors: {', '.join(config.consumer_assignors)}.")

    def _group_for_heartbeat(self, r: ConsumerHeartbeat) -> ConsumerGroup:
        group = self.consumer_groups.get(r.group_id)
        if group is not None:
            return group
        if r.group_id in self.share_groups:
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {r.group_id} is not a consumer group.")
        classic = self.groups.get(r.group_id)
        if r.member_epoch != 0:
            message = "is not a consumer group" if classic is not None and classic.members else "not found"
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {r.group_id} {message}.")
        if classic is not None:
            if classic.members:
                return self.upgrade_classic_group(classic)
            self._append(CoordinatorRecord.group_metadata(r.group_id, None))
            del self.groups[r.group_id]
            log.info("empty classic group %s becomes a consumer group", r.group_id)
        group = self.consumer_groups[r.group_id] = ConsumerGroup(r.group_id)
        return group

    def upgrade_classic_group(self, classic: Any) -> ConsumerGroup:
        raise NotImplementedError  # the online upgrade of a classic group (classic_members)

    def _regular_heartbeat(self, r: ConsumerHeartbeat, topics: TopicImage, describable: Callable[[str], bool]) -> dict[str, Any]:
        config = self.config
        group = self._group_for_heartbeat(r)
        new_group = group.group_epoch == 0 and not group.members
        try:
            if len(group.members) >= config.consumer_max_size and r.member_id not in group.members:
                raise _Refused(ErrorCode.GROUP_MAX_SIZE_REACHED,
                               f"The consumer group has reached its maximum capacity of {config.consumer_max_size} members.")
            member, known = self._member_for(group, r)
            return self._heartbeat_member(group, member, known, r, topics, describable)
        finally:
            if new_group and group.group_epoch == 0 and not group.members:
                self.consumer_groups.pop(group.group_id, None)  # refused before anything was stored

    def _member_for(self, group: ConsumerGroup, r: ConsumerHeartbeat) -> tuple[ConsumerMember, bool]:
        """The member the heartbeat is from, and whether it was already in the group."""
        # v0 joins may leave the id to us: Kafka's Uuid.toString(), URL-safe base64 of 16 bytes
        member_id = r.member_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if r.instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if r.member_epoch != 0:
                    raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group.group_id}.")
                return ConsumerMember(member_id), False
        else:
            holder = group.member_by_instance(r.instance_id)
            if r.member_epoch == 0:
                if holder is None:
                    member = group.members.get(member_id)
                    if member is None:
                        return ConsumerMember(member_id), False
                elif holder.member_epoch != LEAVE_STATIC_EPOCH:
                    raise _Refused(ErrorCode.UNRELEASED_INSTANCE_ID,
                                   f"Static member {holder.member_id} with instance id {r.instance_id} is not released yet.")
                else:
                    return self._replace_static(group, holder, member_id), True
            else:
                if holder is None:
                    raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {r.instance_id} is unknown.")
                if holder.member_id != member_id:
                    raise _Refused(ErrorCode.FENCED_INSTANCE_ID,
                                   f"Static member {member_id} with instance id {r.instance_id} was fenced by member {holder.member_id}.")
                member = holder
        if r.member_epoch > member.member_epoch or (r.member_epoch < member.member_epoch and not (
                r.member_epoch == member.previous_member_epoch and r.topic_partitions is not None
                and pairs(partitions_of(r.topic_partitions)) <= pairs(member.assigned))):
            raise _Refused(ErrorCode.FENCED_MEMBER_EPOCH, f"The consumer group member has a member epoch ({r.member_epoch}) "
                           f"which is not the one the group has ({member.member_epoch}).")
        return member, True

    def _replace_static(self, group: ConsumerGroup, old: ConsumerMember, member_id: str) -> ConsumerMember:
        """A static member rejoined under a new member id while its old one was parked (-2):
        the new one takes over its subscription, target and partitions, with no rebalance."""
        gid = group.group_id
        target = group.targets.get(old.member_id, {})
        self._cancel(session_key(gid, old.member_id))
        self._cancel(rebalance_key(gid, old.member_id))
        self._write_member_tombstones(gid, old.member_id)
        new = replace(old, member_id=member_id, member_epoch=0, previous_member_epoch=0)
        self._write_member(gid, new)
        self._write_target(gid, member_id, target)
        self._write_assignment(gid, new)
        return group.members[member_id]

    def _heartbeat_member(self, group: ConsumerGroup, member: ConsumerMember, known: bool, r: ConsumerHeartbeat,
                          topics: TopicImage, describable: Callable[[str], bool]) -> dict[str, Any]:
        config, gid = self.config, group.group_id
        owned = partitions_of(r.topic_partitions) if r.topic_partitions is not None else None
        if member.state == UNKNOWN and (owned is None or owned):  # checked before anything is written
            raise _Refused(ErrorCode.FENCED_MEMBER_EPOCH, "The member must rejoin: its state is unknown.")
        updated = replace(
            member,
            instance_id=r.instance_id if r.instance_id is not None else member.instance_id,
            rack_id=r.rack_id if r.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=r.rebalance_timeout_ms if r.rebalance_timeout_ms != -1 else member.rebalance_timeout_ms,
            server_assignor=r.server_assignor if r.server_assignor is not None else member.server_assignor,
            subscribed_topic_names=(tuple(sorted(set(r.subscribed_topic_names))) if r.subscribed_topic_names is not None
                                    else member.subscribed_topic_names),
            subscribed_topic_regex=(r.subscribed_topic_regex if r.subscribed_topic_regex is not None
                                    else member.subscribed_topic_regex),
            client_id=r.client_id, client_host=r.client_host, classic=r.classic)
        subscription_changed = not updated.subscription_equals(member)
        regexes_changed = self._resolve_regexes(group, member, updated, topics, describable)
        if not known or not updated.metadata_equals(member):
            self._write_member(gid, updated)
        self._drop_unused_regex(group, member.subscribed_topic_regex)

        # the group epoch: bumped when what the target is computed from changed
        bump = group.group_epoch == 0 or subscription_changed or regexes_changed
        new_hash = group.metadata_hash
        if bump or group.metadata_version != topics.version:
            new_hash = metadata_hash(group.subscribed_topic_names(), topics)
            group.metadata_version = topics.version
            bump = bump or new_hash != group.metadata_hash
        if bump:
            self._write_epoch(group, group.group_epoch + 1, new_hash)
        if group.group_epoch > group.assignment_epoch:
            self._compute_targets(group, topics)

        current = group.members[updated.member_id]
        reconciled = current
        if subscription_changed or not current.reconciled_to(group.assignment_epoch):
            subscribed_ids = {topics.by_name[n][0] for n in group.member_topics(current) if n in topics.by_name}
            reconciled = reconcile(group, current, group.assignment_epoch, group.targets.get(current.member_id, {}),
                                   subscribed_ids, owned, subscription_changed)
        if not known or not reconciled.assignment_equals(current):
            self._write_assignment(gid, reconciled)
            if reconciled.state == UNREVOKED_PARTITIONS:
                self._arm_rebalance(gid, reconciled)
        if reconciled.state != UNREVOKED_PARTITIONS:
            self._cancel(rebalance_key(gid, reconciled.member_id))
        self._arm_session(gid, reconciled.member_id, r.session_timeout_ms)
        send_assignment = r.member_epoch == 0 or r.full or reconciled.assigned != member.assigned
        return {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None,
                "member_id": reconciled.member_id, "member_epoch": reconciled.member_epoch,
                "heartbeat_interval": r.heartbeat_interval_ms or config.consumer_heartbeat_interval_ms,
                "assignment": {"topic_partitions": [{"topic_id": t, "partitions": sorted(ps)}
                                                    for t, ps in sorted(reconciled.assigned.items())]}
                if send_assignment else None}

    def _resolve_regexes(self, group: ConsumerGroup, member: ConsumerMember, updated: ConsumerMember,
                         topics: TopicImage, describable: Callable[[str], bool]) -> bool:
        """Resolve a regex new to the group, and refresh the group's others when topics were made
        since (at most every REGEX_REFRESH_MIN_MS); whether any regex's topics changed."""
        wanted = {m.subscribed_topic_regex for m in group.members.values() if m.member_id != member.member_id}
        wanted.add(updated.subscribed_topic_regex)
        wanted.discard("")
        changed = False
        for regex in sorted(wanted):
            resolved = group.regexes.get(regex)
            if resolved is not None and (resolved.version == topics.version
                                         or self._now - resolved.timestamp < REGEX_REFRESH_MIN_MS):
                continue
            try:
                pattern = _compile(regex)
            except ValueError as exc:
                if resolved is None:
                    raise _Refused(ErrorCode.INVALID_REGULAR_EXPRESSION,
                                   f"SubscribedTopicRegex {regex} is invalid: {exc}") from None
                continue
            matched = tuple(sorted(n for n in topics.by_name if pattern.fullmatch(n) and describable(n)))
            changed = changed or (resolved is not None and resolved.topics != frozenset(matched))
            self._write(CoordinatorRecord(ConsumerGroupRegularExpressionKey(group.group_id, regex),
                                          ConsumerGroupRegularExpressionValue(matched, topics.version, self._now)))
        return changed

    def _drop_unused_regex(self, group: ConsumerGroup, regex: str) -> None:
        if regex and regex in group.regexes and all(m.subscribed_topic_regex != regex for m in group.members.values()):
            self._write(CoordinatorRecord(ConsumerGroupRegularExpressionKey(group.group_id, regex), None))

    def _compute_targets(self, group: ConsumerGroup, topics: TopicImage) -> None:
        specs = []
        counts: dict[uuid.UUID, int] = {}
        for member in group.members.values():
            ids = set()
            for name in group.member_topics(member):
                entry = topics.by_name.get(name)
                if entry is not None:
                    ids.add(entry[0])
                    counts[entry[0]] = entry[1]
            specs.append(MemberSpec(member.member_id, member.instance_id, frozenset(ids), group.targets.get(member.member_id, {})))
        assignor = group.preferred_assignor(self.config.consumer_assignors[0])
        targets = assign(assignor, specs, counts)
        for member_id in sorted(group.members):
            target = targets.get(member_id, {})
            if group.targets.get(member_id) != target:
                self._write_target(group.group_id, member_id, target)
        self._write_assignment_epoch(group, group.group_epoch)

    def _write_assignment_epoch(self, group: ConsumerGroup, epoch: int) -> None:
        self._write(CoordinatorRecord(ConsumerGroupTargetAssignmentMetadataKey(group.group_id),
                                      ConsumerGroupTargetAssignmentMetadataValue(epoch)))

    # --- leaving -------------------------------------------------------------------------------

    def _consumer_leave(self, r: ConsumerHeartbeat) -> dict[str, Any]:
        group = self.consumer_groups.get(r.group_id)
        if group is None:
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {r.group_id} not found.")
        if r.instance_id is None:
            member = group.members.get(r.member_id)
            if member is None:
                raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {r.member_id} is not a member of group {r.group_id}.")
        else:
            member = group.member_by_instance(r.instance_id)
            if member is None:
                raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {r.instance_id} is unknown.")
            if member.member_id != r.member_id:
                raise _Refused(ErrorCode.FENCED_INSTANCE_ID, f"Static member {r.member_id} with instance id "
                               f"{r.instance_id} was fenced by member {member.member_id}.")
        if r.member_epoch == LEAVE_STATIC_EPOCH:
            # a static member leaves for now: it keeps its partitions until its session ends
            # or its instance id comes back
            self._cancel(rebalance_key(group.group_id, member.member_id))
            self._write_assignment(group.group_id, replace(member, member_epoch=LEAVE_STATIC_EPOCH, pending_revocation={}))
        else:
            self._remove_members(group, [member.member_id])
        return {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "member_id": member.member_id,
                "member_epoch": r.member_epoch, "heartbeat_interval": 0, "assignment": None}

    def _remove_members(self, group: ConsumerGroup, member_ids: Iterable[str]) -> None:
        gid = group.group_id
        for member_id in member_ids:
            member = group.members.get(member_id)
            if member is None:
                continue
            self._cancel(session_key(gid, member_id))
            self._cancel(rebalance_key(gid, member_id))
            self._write_member_tombstones(gid, member_id)
            self._drop_unused_regex(group, member.subscribed_topic_regex)
        self._write_epoch(group, group.group_epoch + 1, metadata_hash(group.subscribed_topic_names(), self._topics))

    def _fence_on_timeout(self, group_id: str, member_id: str, why: str) -> None:
        group = self.consumer_groups.get(group_id)
        if group is not None and member_id in group.members:
            log.info("member %s of consumer group %s fenced: %s", member_id, group_id, why)
            self._remove_members(group, [member_id])

    def _rebalance_timed_out(self, group_id: str, member_id: str, epoch: int) -> None:
        group = self.consumer_groups.get(group_id)
        member = None if group is None else group.members.get(member_id)
        if member is not None and member.member_epoch == epoch and member.state == UNREVOKED_PARTITIONS:
            self._fence_on_timeout(group_id, member_id, "it did not revoke its partitions within its rebalance timeout")

    def _arm_session(self, group_id: str, member_id: str, timeout_ms: int | None = None) -> None:
        self._schedule(session_key(group_id, member_id), timeout_ms or self.config.consumer_session_timeout_ms,
                       lambda: self._fence_on_timeout(group_id, member_id, "session timeout"))

    def _arm_rebalance(self, group_id: str, member: ConsumerMember) -> None:
        """The member must revoke within its rebalance timeout, or be fenced."""
        member_id, epoch = member.member_id, member.member_epoch
        self._schedule(rebalance_key(group_id, member_id), member.rebalance_timeout_ms,
                       lambda: self._rebalance_timed_out(group_id, member_id, epoch))

    def _start_consumer_timers(self) -> None:
        """After loading: every member's session starts now, as do the revocation deadlines."""
        for group in self.consumer_groups.values():
            group.metadata_version = -1
            for member in group.members.values():
                self._arm_session(group.group_id, member.member_id)
                if member.state == UNREVOKED_PARTITIONS:
                    self._arm_rebalance(group.group_id, member)

    def _delete_consumer_group(self, group: ConsumerGroup) -> None:
        """Every record of an empty consumer group, then the group: DeleteGroups and the
        conversion to a classic group."""
        gid = group.group_id
        for member_id in list(group.members):
            self._write_member_tombstones(gid, member_id)
        for member_id in list(group.targets):
            self._write(CoordinatorRecord(ConsumerGroupTargetAssignmentMemberKey(gid, member_id), None))
        self._write(CoordinatorRecord(ConsumerGroupTargetAssignmentMetadataKey(gid), None))
        for regex in list(group.regexes):
            self._write(CoordinatorRecord(ConsumerGroupRegularExpressionKey(gid, regex), None))
        self._write(CoordinatorRecord(ConsumerGroupMetadataKey(gid), None))

    def _expire_group_metadata(self) -> None:
        """offsets.retention.minutes for consumer groups: offsets of topics no member subscribes
        to expire; an Empty group with no offsets left is deleted."""
        retention = self.config.offsets_retention_ms
        for group_id, group in list(self.consumer_groups.items()):
            subscribed = group.subscribed_topic_names()
            left = False
            for topic, partitions in self.offsets.group(group_id).items() if self.offsets.has_group(group_id) else ():
                for partition, offset in partitions.items():
                    if topic in subscribed or not is_expired(offset, None, "commit", self._now, retention):
                        left = True
                    else:
                        self._append(CoordinatorRecord.offset_commit(group_id, topic, partition, None))
            if not left and not group.members:
                log.info("consumer group %s is empty and has no offsets left: deleting it", group_id)
                self._delete_consumer_group(group)
        super()._expire_group_metadata()

    # --- ConsumerGroupDescribe -----------------------------------------------------------------

    def describe_consumer_group(self, group_id: str, topics: TopicImage) -> dict[str, Any]:
        group = self.consumer_groups.get(group_id)
        if group is None:
            message = f"Group {group_id} is not a consumer group." if group_id in self.groups else f"Group {group_id} not found."
            return {"error_code": ErrorCode.GROUP_ID_NOT_FOUND, "error_message": message, "group_id": group_id,
                    "group_state": "", "group_epoch": 0, "assignment_epoch": 0, "assignor_name": "", "members": []}

        def assignment(partitions: Partitions) -> dict[str, Any]:
            return {"topic_partitions": [
                {"topic_id": t, "topic_name": topics.by_id[t][0], "partitions": sorted(ps)}
                for t, ps in sorted(partitions.items()) if t in topics.by_id]}

        return {
            "error_code": ErrorCode.NONE, "error_message": None, "group_id": group_id, "group_state": group.state,
            "group_epoch": group.group_epoch, "assignment_epoch": group.assignment_epoch,
            "assignor_name": group.preferred_assignor(self.config.consumer_assignors[0]),
            "members": [{
                "member_id": m.member_id, "instance_id": m.instance_id, "rack_id": m.rack_id,
                "member_epoch": m.member_epoch, "client_id": m.client_id, "client_host": m.client_host,
                "subscribed_topic_names": list(m.subscribed_topic_names),
                "subscribed_topic_regex": m.subscribed_topic_regex, "assignment": assignment(m.assigned),
                "target_assignment": assignment(group.targets.get(m.member_id, {})), "member_type": 1,
            } for m in sorted(group.members.values(), key=lambda m: m.member_id)],
        }
