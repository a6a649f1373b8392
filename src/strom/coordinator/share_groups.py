"""KIP-932 share groups in a group coordinator shard (Kafka's GroupMetadataManager for
ShareGroupHeartbeat): membership, the ``simple`` assignor, ShareGroupDescribe, and the replay
of the share-group records of ``__consumer_offsets``. The records themselves (which member
holds which offsets) live with each partition's leader (strom.share).

A share group has no revocation phase: a member's assignment becomes its target at once, since
several members may read one partition and record locks, not partitions, keep them apart.
Partitions are assignable as soon as they exist (Kafka first initializes each partition's share
state, so a new group's first assignment there is empty; here the leader initializes the state
on the first fetch, from ``share.auto.offset.reset``).
"""

from __future__ import annotations

import heapq
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from strom.coordinator.classic_members import MixedGroupManager
from strom.coordinator.consumer_coordinator import (
    TopicImage,
    _Refused,
    _topic_partitions,
    heartbeat_error,
    metadata_hash,
    replay_target,
)
from strom.coordinator.consumer_group import Partitions, partitions_of
from strom.coordinator.records import (
    CoordinatorRecord,
    ShareGroupCurrentMemberAssignmentKey,
    ShareGroupCurrentMemberAssignmentValue,
    ShareGroupMemberMetadataKey,
    ShareGroupMemberMetadataValue,
    ShareGroupMetadataKey,
    ShareGroupMetadataValue,
    ShareGroupStatePartitionMetadataKey,
    ShareGroupStatePartitionMetadataValue,
    ShareGroupTargetAssignmentMemberKey,
    ShareGroupTargetAssignmentMemberValue,
    ShareGroupTargetAssignmentMetadataKey,
    ShareGroupTargetAssignmentMetadataValue,
    TopicPartitionsInfo,
)
from strom.coordinator.shard import Result, TimerKey
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

SHARE_KEYS: Final = (ShareGroupMemberMetadataKey, ShareGroupMetadataKey, ShareGroupTargetAssignmentMetadataKey,
                     ShareGroupTargetAssignmentMemberKey, ShareGroupCurrentMemberAssignmentKey,
                     ShareGroupStatePartitionMetadataKey)
MAX_MEMBER_ID_LENGTH: Final = 36
SIMPLE: Final = "simple"


@dataclass(frozen=True, slots=True)
class ShareMember:
    member_id: str
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    member_epoch: int = 0
    previous_member_epoch: int = -1
    assigned: Partitions = field(default_factory=dict)


class ShareGroup:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.metadata_hash = 0
        self.assignment_epoch = 0
        self.metadata_version = -1
        self.members: dict[str, ShareMember] = {}
        self.targets: dict[str, Partitions] = {}
        # the partitions the group has read (its share state may exist): (topic name, partitions) by
        # topic id, kept in ShareGroupStatePartitionMetadata; what DescribeShareGroupOffsets lists
        self.initialized: dict[uuid.UUID, tuple[str, frozenset[int]]] = {}

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"

    def subscribed_topic_names(self) -> set[str]:
        return {name for m in self.members.values() for name in m.subscribed_topic_names}


@dataclass(frozen=True, slots=True)
class ShareHeartbeat:
    group_id: str
    member_id: str
    member_epoch: int
    rack_id: str | None = None
    subscribed_topic_names: tuple[str, ...] | None = None
    client_id: str = ""
    client_host: str = ""
    # the group's share.session.timeout.ms / share.heartbeat.interval.ms (None: the broker's)
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None


def share_session_key(group_id: str, member_id: str) -> TimerKey:
    return ("share-session", group_id, member_id)


def simple_assign(subscriptions: Mapping[str, frozenset[uuid.UUID]], previous: Mapping[str, Partitions],
                  partitions: Mapping[uuid.UUID, int]) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
    """Kafka's ``simple`` share assignor, topic by topic: each partition goes to
    ceil(subscribers / partitions) subscribers, each subscriber gets as many partitions as its
    fellows or one more, and keeps what it had where that allows (sticky)."""
    out: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in subscriptions}
    for topic in sorted({t for ts in subscriptions.values() for t in ts if t in partitions}):
        count = partitions[topic]
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if count == 0 or not members:
            continue
        sharing = math.ceil(len(members) / count)
        base, extra = divmod(sharing * count, len(members))
        # members that held more keep the extra shares first
        had = {m: sorted(p for p in previous.get(m, {}).get(topic, frozenset()) if p < count) for m in members}
        order = sorted(members, key=lambda m: (-len(had[m]), m))
        quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
        holders = [0] * count
        mine: dict[str, set[int]] = {m: set() for m in members}
        for m in order:
            for p in had[m]:
                if len(mine[m]) < quota[m] and holders[p] < sharing:
                    mine[m].add(p)
                    holders[p] += 1
        heap = [(holders[p], p) for p in range(count)]  # the least shared partitions first
        heapq.heapify(heap)
        for m in order:
            skipped = []
            while len(mine[m]) < quota[m] and heap:
                held, p = heapq.heappop(heap)
                if p in mine[m]:
                    skipped.append((held, p))
                    continue
                mine[m].add(p)
                holders[p] += 1
                heapq.heappush(heap, (holders[p], p))
            for item in skipped:
                heapq.heappush(heap, item)
        for m in members:
            if mine[m]:
                out[m][topic] = mine[m]
    return {m: {t: frozenset(ps) for t, ps in topics.items()} for m, topics in out.items()}


class ShareGroupManager(MixedGroupManager):
    """The share-group part of a group coordinator shard (``share_groups``)."""

    # --- records -------------------------------------------------------------------------------

    def _write_share(self, record: CoordinatorRecord) -> None:
        self._append(record)
        self._replay_share(record)

    def _replay_share(self, record: CoordinatorRecord) -> None:
        key, value = record.key, record.value
        group_id = key.group
        if isinstance(key, ShareGroupStatePartitionMetadataKey):
            if group_id in self.share_groups:
                assert value is None or isinstance(value, ShareGroupStatePartitionMetadataValue)
                self.share_groups[group_id].initialized = {} if value is None else {
                    t.topic_id: (t.topic_name, frozenset(t.partitions)) for t in value.initialized_topics}
            return
        if isinstance(key, ShareGroupMetadataKey):
            if value is None:
                self.share_groups.pop(group_id, None)
                return
            assert isinstance(value, ShareGroupMetadataValue)
            group = self.share_groups.setdefault(group_id, ShareGroup(group_id))
            group.group_epoch, group.metadata_hash = value.epoch, value.metadata_hash
            return
        if value is None and group_id not in self.share_groups:
            return  # replayed again after the group's own tombstone
        group = self.share_groups.setdefault(group_id, ShareGroup(group_id))
        if isinstance(key, ShareGroupMemberMetadataKey):
            if value is None:
                group.members.pop(key.member_id, None)
                return
            assert isinstance(value, ShareGroupMemberMetadataValue)
            old = group.members.get(key.member_id) or ShareMember(key.member_id)
            group.members[key.member_id] = replace(
                old, rack_id=value.rack_id, client_id=value.client_id, client_host=value.client_host,
                subscribed_topic_names=tuple(sorted(value.subscribed_topic_names)))
        elif isinstance(key, ShareGroupTargetAssignmentMetadataKey):
            assert value is None or isinstance(value, ShareGroupTargetAssignmentMetadataValue)
            group.assignment_epoch = -1 if value is None else value.assignment_epoch
        elif isinstance(key, ShareGroupTargetAssignmentMemberKey):
            replay_target(group.targets, key.member_id, value)
        elif isinstance(key, ShareGroupCurrentMemberAssignmentKey):
            old = group.members.get(key.member_id) or ShareMember(key.member_id)
            if value is None:
                group.members[key.member_id] = replace(old, member_epoch=-1, previous_member_epoch=-1, assigned={})
                return
            assert isinstance(value, ShareGroupCurrentMemberAssignmentValue)
            group.members[key.member_id] = replace(
                old, member_epoch=value.member_epoch, previous_member_epoch=value.previous_member_epoch,
                assigned=partitions_of((tp.topic_id, tp.partitions) for tp in value.assigned_partitions))

    # --- ShareGroupHeartbeat -------------------------------------------------------------------

    def share_heartbeat(self, request: ShareHeartbeat, topics: TopicImage, now_ms: int) -> Result:
        self._topics = topics
        return self._run(now_ms, lambda: self._share_heartbeat(request, topics))

    def _share_heartbeat(self, r: ShareHeartbeat, topics: TopicImage) -> dict[str, Any]:
        try:
            if not r.member_id.strip() or len(r.member_id) > MAX_MEMBER_ID_LENGTH:
                raise _Refused(ErrorCode.INVALID_REQUEST, "Invalid member id in the request.")
            if not r.group_id.strip():
                raise _Refused(ErrorCode.INVALID_REQUEST, "GroupId can't be empty.")
            if r.rack_id is not None and not r.rack_id.strip():
                raise _Refused(ErrorCode.INVALID_REQUEST, "RackId can't be empty.")
            if r.member_epoch == 0 and not r.subscribed_topic_names:
                raise _Refused(ErrorCode.INVALID_REQUEST, "SubscribedTopicNames must be set in first request.")
            if r.member_epoch < -1:
                raise _Refused(ErrorCode.INVALID_REQUEST, f"MemberEpoch is {r.member_epoch}, but must be greater than or equal to -1.")
            if r.group_id in self.groups or r.group_id in self.consumer_groups:
                raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {r.group_id} is not a share group.")
            if r.member_epoch == -1:
                return self._share_leave(r)
            return self._share_regular(r, topics)
        except _Refused as refused:
            return heartbeat_error(refused.error, refused.message)

    def _share_regular(self, r: ShareHeartbeat, topics: TopicImage) -> dict[str, Any]:
        config, gid = self.config, r.group_id
        group = self.share_groups.get(gid)
        if group is None:
            if r.member_epoch != 0:
                raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {gid} not found.")
            group = ShareGroup(gid)
        member = group.members.get(r.member_id)
        if member is None:
            if r.member_epoch != 0:
                raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {r.member_id} is not a member of group {gid}.")
            if len(group.members) >= config.share_max_size:
                raise _Refused(ErrorCode.GROUP_MAX_SIZE_REACHED,
                               f"The share group has reached its maximum capacity of {config.share_max_size} members.")
            member = ShareMember(r.member_id)
            known = False
        else:
            known = True
            if r.member_epoch != 0 and (r.member_epoch > member.member_epoch or (
                    r.member_epoch < member.member_epoch and r.member_epoch != member.previous_member_epoch)):
                raise _Refused(ErrorCode.FENCED_MEMBER_EPOCH, f"The share group member has a member epoch ({r.member_epoch}) "
                               f"which is not the one the group has ({member.member_epoch}).")
        self.share_groups[gid] = group
        updated = replace(member, rack_id=r.rack_id if r.rack_id is not None else member.rack_id,
                          subscribed_topic_names=(tuple(sorted(set(r.subscribed_topic_names)))
                                                  if r.subscribed_topic_names is not None else member.subscribed_topic_names),
                          client_id=r.client_id, client_host=r.client_host)
        if not known or (updated.rack_id, updated.client_id, updated.client_host, updated.subscribed_topic_names) != (
                member.rack_id, member.client_id, member.client_host, member.subscribed_topic_names):
            self._write_share(CoordinatorRecord(ShareGroupMemberMetadataKey(gid, r.member_id), ShareGroupMemberMetadataValue(
                updated.rack_id, updated.client_id, updated.client_host, updated.subscribed_topic_names)))
        bump = group.group_epoch == 0 or updated.subscribed_topic_names != member.subscribed_topic_names
        new_hash = group.metadata_hash
        if bump or group.metadata_version != topics.version:
            new_hash = metadata_hash(group.subscribed_topic_names(), topics)
            group.metadata_version = topics.version
            bump = bump or new_hash != group.metadata_hash
        if bump:
            self._write_share(CoordinatorRecord(ShareGroupMetadataKey(gid), ShareGroupMetadataValue(group.group_epoch + 1, new_hash)))
        if group.group_epoch > group.assignment_epoch:
            self._share_targets(group, topics)
        current = group.members[r.member_id]
        if current.member_epoch != group.assignment_epoch or not known:
            target = group.targets.get(r.member_id, {})
            reconciled = replace(current, member_epoch=group.assignment_epoch, previous_member_epoch=current.member_epoch,
                                 assigned=dict(target))
            self._write_share(CoordinatorRecord(ShareGroupCurrentMemberAssignmentKey(gid, r.member_id),
                                                ShareGroupCurrentMemberAssignmentValue(
                                                    reconciled.member_epoch, reconciled.previous_member_epoch, 0,
                                                    _topic_partitions(reconciled.assigned))))
            current = group.members[r.member_id]
        self._schedule(share_session_key(gid, r.member_id), r.session_timeout_ms or config.share_session_timeout_ms,
                       lambda: self._share_session_expired(gid, r.member_id))
        send = r.member_epoch == 0 or r.subscribed_topic_names is not None or current.assigned != member.assigned
        return {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "member_id": r.member_id,
                "member_epoch": current.member_epoch,
                "heartbeat_interval": r.heartbeat_interval_ms or config.share_heartbeat_interval_ms,
                "assignment": {"topic_partitions": [{"topic_id": t, "partitions": sorted(ps)}
                                                    for t, ps in sorted(current.assigned.items())]} if send else None}

    def _share_targets(self, group: ShareGroup, topics: TopicImage) -> None:
        subscriptions = {m.member_id: frozenset(topics.by_name[n][0] for n in m.subscribed_topic_names if n in topics.by_name)
                         for m in group.members.values()}
        counts = {tid: count for tid, (_name, count) in topics.by_id.items()}
        targets = simple_assign(subscriptions, group.targets, counts)
        for member_id in sorted(group.members):
            target = targets.get(member_id, {})
            if group.targets.get(member_id) != target:
                self._write_share(CoordinatorRecord(ShareGroupTargetAssignmentMemberKey(group.group_id, member_id),
                                                    ShareGroupTargetAssignmentMemberValue(_topic_partitions(target))))
        self._write_share(CoordinatorRecord(ShareGroupTargetAssignmentMetadataKey(group.group_id),
                                            ShareGroupTargetAssignmentMetadataValue(group.group_epoch)))
        initialized = dict(group.initialized)
        for target in targets.values():
            for topic_id, parts in target.items():
                name, known = initialized.get(topic_id, (topics.by_id[topic_id][0], frozenset()))
                initialized[topic_id] = (name, known | parts)
        if initialized != group.initialized:
            self._write_initialized(group, initialized)

    def _write_initialized(self, group: ShareGroup, initialized: Mapping[uuid.UUID, tuple[str, frozenset[int]]]) -> None:
        self._write_share(CoordinatorRecord(ShareGroupStatePartitionMetadataKey(group.group_id),
                                            ShareGroupStatePartitionMetadataValue((), tuple(
                                                TopicPartitionsInfo(t, name, tuple(sorted(parts)))
                                                for t, (name, parts) in sorted(initialized.items())), ())))

    def share_forget_topics(self, group_id: str, topic_ids: set[uuid.UUID], now_ms: int) -> Result:
        """DeleteShareGroupOffsets deleted the topics' share state: the group no longer lists them."""

        def run() -> None:
            group = self.share_groups.get(group_id)
            if group is not None and topic_ids & group.initialized.keys():
                self._write_initialized(group, {t: v for t, v in group.initialized.items() if t not in topic_ids})

        return self._run(now_ms, run)

    def _share_leave(self, r: ShareHeartbeat) -> dict[str, Any]:
        group = self.share_groups.get(r.group_id)
        if group is None:
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {r.group_id} not found.")
        if r.member_id not in group.members:
            raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {r.member_id} is not a member of group {r.group_id}.")
        self._remove_share_member(group, r.member_id)
        return {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "member_id": r.member_id,
                "member_epoch": -1, "heartbeat_interval": 0, "assignment": None}

    def _remove_share_member(self, group: ShareGroup, member_id: str) -> None:
        gid = group.group_id
        self._cancel(share_session_key(gid, member_id))
        self._write_share(CoordinatorRecord(ShareGroupCurrentMemberAssignmentKey(gid, member_id), None))
        self._write_share(CoordinatorRecord(ShareGroupTargetAssignmentMemberKey(gid, member_id), None))
        self._write_share(CoordinatorRecord(ShareGroupMemberMetadataKey(gid, member_id), None))
        self._write_share(CoordinatorRecord(ShareGroupMetadataKey(gid), ShareGroupMetadataValue(
            group.group_epoch + 1, metadata_hash(group.subscribed_topic_names(), self._topics))))

    def _share_session_expired(self, group_id: str, member_id: str) -> None:
        # the member's acquired records stay with its share sessions on the partition leaders
        group = self.share_groups.get(group_id)
        if group is not None and member_id in group.members:
            log.info("member %s of share group %s fenced: session timeout", member_id, group_id)
            self._remove_share_member(group, member_id)

    def _start_share_timers(self) -> None:
        for group in self.share_groups.values():
            group.metadata_version = -1
            for member_id in group.members:
                gid, mid = group.group_id, member_id
                self._schedule(share_session_key(gid, mid), self.config.share_session_timeout_ms,
                               lambda gid=gid, mid=mid: self._share_session_expired(gid, mid))  # type: ignore[misc]

    def _delete_share_group(self, group: ShareGroup) -> None:
        gid = group.group_id
        for member_id in list(group.members):
            self._remove_share_member(group, member_id)
        for member_id in list(group.targets):
            self._write_share(CoordinatorRecord(ShareGroupTargetAssignmentMemberKey(gid, member_id), None))
        self._write_share(CoordinatorRecord(ShareGroupTargetAssignmentMetadataKey(gid), None))
        self._write_share(CoordinatorRecord(ShareGroupStatePartitionMetadataKey(gid), None))
        self._write_share(CoordinatorRecord(ShareGroupMetadataKey(gid), None))

    # --- ShareGroupDescribe --------------------------------------------------------------------

    def describe_share_group(self, group_id: str, topics: TopicImage) -> dict[str, Any]:
        group = self.share_groups.get(group_id)
        if group is None:
            other = group_id in self.groups or group_id in self.consumer_groups
            return {"error_code": ErrorCode.GROUP_ID_NOT_FOUND, "group_id": group_id, "group_state": "",
                    "error_message": f"Group {group_id} is not a share group." if other else f"Group {group_id} not found.",
                    "group_epoch": 0, "assignment_epoch": 0, "assignor_name": "", "members": []}
        return {
            "error_code": ErrorCode.NONE, "error_message": None, "group_id": group_id, "group_state": group.state,
            "group_epoch": group.group_epoch, "assignment_epoch": group.assignment_epoch, "assignor_name": SIMPLE,
            "members": [{
                "member_id": m.member_id, "rack_id": m.rack_id, "member_epoch": m.member_epoch, "client_id": m.client_id,
                "client_host": m.client_host, "subscribed_topic_names": list(m.subscribed_topic_names),
                "assignment": {"topic_partitions": [
                    {"topic_id": t, "topic_name": topics.by_id[t][0], "partitions": sorted(ps)}
                    for t, ps in sorted(m.assigned.items()) if t in topics.by_id]},
            } for m in sorted(group.members.values(), key=lambda m: m.member_id)],
        }
