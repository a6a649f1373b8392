"""Offset operations of a shard (Kafka's OffsetMetadataManager): OffsetCommit,
TxnOffsetCommit, OffsetFetch, OffsetDelete and the expiry of offsets and empty groups
(offsets.retention.minutes).

Every change is a record: a commit appends OffsetCommit values and a delete or an expiry
appends tombstones; the OffsetStore changes when the caller replays them. A TxnOffsetCommit
appends the same OffsetCommit values as a transactional batch of its producer (``Result.producer``);
they stay pending until the transaction's marker reaches this partition (offsets.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from strom.coordinator.group import (
    COMPLETING_REBALANCE,
    DEAD,
    EMPTY,
    PREPARING_REBALANCE,
    STABLE,
    ClassicGroup,
)
from strom.coordinator.offsets import OffsetAndMetadata, expiry_base, is_expired
from strom.coordinator.records import CoordinatorRecord
from strom.coordinator.shard import UNKNOWN_GENERATION_ID, UNKNOWN_MEMBER_ID, Result, Shard
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

NO_OFFSET: Final = -1  # OffsetFetch answer for a partition without a committed offset
NO_RETENTION: Final = -1  # OffsetCommit v2-4 retention_time: use the broker's
EXPIRATION_KEY: Final = ("expire-group-metadata",)


@dataclass(frozen=True, slots=True)
class CommitPartition:
    partition: int
    committed_offset: int
    committed_leader_epoch: int = -1
    committed_metadata: str | None = None


@dataclass(frozen=True, slots=True)
class CommitRequest:
    group_id: str
    topics: tuple[tuple[str, tuple[CommitPartition, ...]], ...]
    member_id: str = UNKNOWN_MEMBER_ID
    generation_id: int = UNKNOWN_GENERATION_ID
    group_instance_id: str | None = None
    retention_time_ms: int = NO_RETENTION
    api_version: int = 9


@dataclass(frozen=True, slots=True)
class TxnCommitRequest:
    """TxnOffsetCommit: v0-2 name no member (any group state accepts them), v3+ may."""

    group_id: str
    producer_id: int
    producer_epoch: int
    topics: tuple[tuple[str, tuple[CommitPartition, ...]], ...]
    member_id: str = UNKNOWN_MEMBER_ID
    generation_id: int = UNKNOWN_GENERATION_ID
    group_instance_id: str | None = None


class OffsetManager(Shard):
    """Committed offsets of the shard's groups."""

    # --- OffsetCommit --------------------------------------------------------------------------

    def commit_offsets(self, request: CommitRequest, now_ms: int) -> Result:
        return self._run(now_ms, lambda: self._commit(request))

    def _commit(self, request: CommitRequest) -> dict[str, Any]:
        group = self.groups.get(request.group_id)
        error: int = ErrorCode.NONE
        if request.group_id in self.share_groups:
            error = ErrorCode.GROUP_ID_NOT_FOUND  # share groups keep no offsets (their state is per record)
        elif request.group_id in self.consumer_groups:
            error = self._validate_consumer_commit(request)
        elif group is None:
            if request.generation_id < 0:
                # Not a member of anything (assign() consumers, admin tools): a "simple" group.
                group = self.groups[request.group_id] = ClassicGroup(request.group_id, self._now)
            else:
                # v9+ says so plainly; older clients understand ILLEGAL_GENERATION.
                error = ErrorCode.GROUP_ID_NOT_FOUND if request.api_version >= 9 else ErrorCode.ILLEGAL_GENERATION
        else:
            error = self._validate_commit(group, request)
        if error:
            return _commit_response(request.topics, lambda _topic, _p: error)
        if group is not None and group.is_in(STABLE, PREPARING_REBALANCE) and group.has_member(request.member_id):
            # A commit keeps a classic member's session alive.
            self._reschedule_heartbeat(group, group.member(request.member_id))
        expire = None if request.retention_time_ms == NO_RETENTION else self._now + request.retention_time_ms
        max_bytes = self.config.offset_metadata_max_bytes

        def commit(topic: str, p: CommitPartition) -> int:
            metadata = p.committed_metadata or ""
            if len(metadata) > max_bytes:
                return ErrorCode.OFFSET_METADATA_TOO_LARGE
            offset = OffsetAndMetadata(p.committed_offset, p.committed_leader_epoch, metadata, self._now, expire)
            self._append(CoordinatorRecord.offset_commit(request.group_id, topic, p.partition, offset.to_record()))
            return ErrorCode.NONE

        return _commit_response(request.topics, commit)

    def _validate_commit(self, group: ClassicGroup, request: CommitRequest | TxnCommitRequest, transactional: bool = False) -> int:
        """Kafka's ClassicGroup.validateOffsetCommit; a transactional commit without member
        and generation is accepted in any state, and a rebalance does not hold it back."""
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if request.generation_id < 0 and group.is_in(EMPTY):
            return ErrorCode.NONE  # a simple commit to a group nobody is in
        if request.generation_id >= 0 or request.member_id or request.group_instance_id is not None:
            error = group.validate_member(request.member_id, request.group_instance_id)
            if error:
                return error
            if request.generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
        elif not transactional and not group.is_in(EMPTY):
            # Without member and generation, only an empty group accepts commits.
            return ErrorCode.UNKNOWN_MEMBER_ID
        if not transactional and group.is_in(COMPLETING_REBALANCE):
            # The member has its new generation but not yet its assignment: let it retry.
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def _validate_consumer_commit(self, request: CommitRequest | TxnCommitRequest, transactional: bool = False) -> int:
        """Kafka's ConsumerGroup.validateOffsetCommit: the member's exact epoch (KIP-848)."""
        group = self.consumer_groups[request.group_id]
        if request.generation_id < 0 and not group.members:
            return ErrorCode.NONE  # an admin or assign() commit to a group nobody is in
        if transactional and not request.member_id and request.generation_id < 0 and request.group_instance_id is None:
            return ErrorCode.NONE
        member = group.members.get(request.member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if member.classic is None and isinstance(request, CommitRequest) and request.api_version < 9:
            return ErrorCode.UNSUPPORTED_VERSION  # consumer-protocol members commit with v9+
        if request.generation_id != member.member_epoch:
            # a classic member (a mixed group) is told in its protocol's words
            return ErrorCode.ILLEGAL_GENERATION if transactional or member.classic else ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE

    # --- TxnOffsetCommit -----------------------------------------------------------------------

    def txn_commit_offsets(self, request: TxnCommitRequest, now_ms: int) -> Result:
        """Store offsets as part of the producer's transaction; the transaction coordinator
        has checked that this partition belongs to it (AddOffsetsToTxn)."""
        return self._run(now_ms, lambda: self._txn_commit(request))

    def _txn_commit(self, request: TxnCommitRequest) -> dict[str, Any]:
        group = self.groups.get(request.group_id)
        error: int
        if request.group_id in self.share_groups:
            error = ErrorCode.GROUP_ID_NOT_FOUND
        elif request.group_id in self.consumer_groups:
            error = self._validate_consumer_commit(request, transactional=True)
        elif group is None:
            # Without a generation, the simple group appears when the offsets are committed.
            error = ErrorCode.NONE if request.generation_id < 0 else ErrorCode.ILLEGAL_GENERATION
        else:
            error = self._validate_commit(group, request, transactional=True)
        if error:
            return _commit_response(request.topics, lambda _topic, _p: error)
        max_bytes = self.config.offset_metadata_max_bytes
        self._effects.producer = (request.producer_id, request.producer_epoch)

        def commit(topic: str, p: CommitPartition) -> int:
            metadata = p.committed_metadata or ""
            if len(metadata) > max_bytes:
                return ErrorCode.OFFSET_METADATA_TOO_LARGE
            offset = OffsetAndMetadata(p.committed_offset, p.committed_leader_epoch, metadata, self._now)
            self._append(CoordinatorRecord.offset_commit(request.group_id, topic, p.partition, offset.to_record()))
            return ErrorCode.NONE

        return _commit_response(request.topics, commit)

    # --- OffsetFetch ---------------------------------------------------------------------------

    def fetch_offsets(
        self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]] | None, now_ms: int, *, require_stable: bool = False
    ) -> Result:
        """Committed offsets of the given partitions (-1 when none), or of every partition with
        one (``topics`` None). With ``require_stable`` (KIP-447) a partition with a pending
        transactional offset answers UNSTABLE_OFFSET_COMMIT, and the consumer retries."""
        return self._run(now_ms, lambda: self._fetch(group_id, topics, require_stable))

    def _fetch(self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]] | None, require_stable: bool) -> dict[str, Any]:
        group = self.groups.get(group_id)
        known = (group is not None and not group.is_in(DEAD)) or group_id in self.consumer_groups
        out = []

        def fetched(topic: str, partition: int, offset: OffsetAndMetadata | None) -> dict[str, Any]:
            if require_stable and self.offsets.has_pending(group_id, topic, partition):
                return {**_fetched(partition, None), "error_code": ErrorCode.UNSTABLE_OFFSET_COMMIT}
            return _fetched(partition, offset)

        if topics is None:
            if known:
                for topic, committed in self.offsets.group(group_id).items():
                    out.append({"name": topic, "partitions": [fetched(topic, p, o) for p, o in committed.items()]})
        else:
            for topic, partitions in topics:
                stored = self.offsets.group(group_id).get(topic, {}) if known else {}
                out.append({"name": topic, "partitions": [fetched(topic, p, stored.get(p)) for p in partitions]})
        return {"group_id": group_id, "error_code": ErrorCode.NONE, "topics": out}

    # --- OffsetDelete --------------------------------------------------------------------------

    def delete_offsets(self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]], now_ms: int) -> Result:
        return self._run(now_ms, lambda: self._delete_offsets(group_id, topics))

    def _delete_offsets(self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]]) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None or group.is_in(DEAD):
            return {"error_code": ErrorCode.GROUP_ID_NOT_FOUND, "topics": []}
        if group.is_in(STABLE, PREPARING_REBALANCE, COMPLETING_REBALANCE) and not group.uses_consumer_protocol():
            return {"error_code": ErrorCode.NON_EMPTY_GROUP, "topics": []}
        out = []
        for topic, partitions in topics:
            subscribed = group.is_subscribed_to_topic(topic)
            results = []
            for p in partitions:
                if subscribed:
                    results.append({"partition_index": p, "error_code": ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC})
                    continue
                results.append({"partition_index": p, "error_code": ErrorCode.NONE})
                if self.offsets.get(group_id, topic, p) is not None:
                    self._append(CoordinatorRecord.offset_commit(group_id, topic, p, None))
            out.append({"name": topic, "partitions": results})
        return {"error_code": ErrorCode.NONE, "topics": out}

    # --- offset expiry -------------------------------------------------------------------------

    def _schedule_expiration(self) -> None:
        self._schedule(EXPIRATION_KEY, self.config.offsets_retention_check_interval_ms, self._expire_group_metadata)

    def _expire_group_metadata(self) -> None:
        """offsets.retention.minutes: tombstones for expired offsets, and for Empty groups that
        have none left; then the next check is scheduled."""
        for group_id, group in list(self.groups.items()):
            if self._expire_offsets(group_id, group) and group.is_in(EMPTY):
                log.info("group %s is empty and has no offsets left: deleting it", group_id)
                self._append(CoordinatorRecord.group_metadata(group_id, None))
        self._schedule_expiration()

    def _expire_offsets(self, group_id: str, group: ClassicGroup) -> bool:
        """Tombstones for the group's expired offsets; True when none is left afterwards."""
        if not self.offsets.has_group(group_id):
            return True
        base = expiry_base(group)
        if base is None:
            return False
        all_expired = True
        retention = self.config.offsets_retention_ms
        for topic, partitions in self.offsets.group(group_id).items():
            if group.is_subscribed_to_topic(topic):
                all_expired = False
                continue
            for partition, offset in partitions.items():
                if is_expired(offset, group, base, self._now, retention):
                    self._append(CoordinatorRecord.offset_commit(group_id, topic, partition, None))
                else:
                    all_expired = False
        return all_expired


def _fetched(partition: int, offset: OffsetAndMetadata | None) -> dict[str, Any]:
    if offset is None:
        return {"partition_index": partition, "committed_offset": NO_OFFSET, "committed_leader_epoch": -1, "metadata": "", "error_code": 0}
    return {
        "partition_index": partition,
        "committed_offset": offset.committed_offset,
        "committed_leader_epoch": offset.leader_epoch,
        "metadata": offset.metadata,
        "error_code": 0,
    }


def _commit_response(
    topics: Sequence[tuple[str, Sequence[CommitPartition]]], result_for: Callable[[str, CommitPartition], int]
) -> dict[str, Any]:
    return {
        "topics": [
            {"name": topic, "partitions": [{"partition_index": p.partition, "error_code": result_for(topic, p)} for p in partitions]}
            for topic, partitions in topics
        ]
    }
