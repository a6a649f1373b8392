"""Committed offsets of one coordinator shard, and Kafka's rule for when they expire.

``OffsetStore`` changes only when the coordinator replays an OffsetCommit record (a value or
a tombstone): a commit is durable in ``__consumer_offsets`` before anyone can read it back.

Transactional offsets (TxnOffsetCommit, KIP-98) are OffsetCommit records in a transactional
batch: replaying one makes the offset *pending* for its producer; the transaction's commit
marker makes the producer's pending offsets committed, unless a commit stored later in the log
(a plain OffsetCommit after the transactional one) already replaced them, and an abort marker
drops them (Kafka's OffsetMetadataManager.replayEndTransactionMarker). Replay order is log
order, so a counter of replays stands in for the records' log offsets.

Expiry (offsets.retention.minutes, KIP-211 and KIP-496), checked every
offsets.retention.check.interval.ms for each group:

- an Empty group with a protocol type: offsets older than the retention, counted from when
  the group became Empty (its state timestamp), or from the commit when that is unknown;
- a Stable consumer group whose subscriptions are known: offsets of topics it no longer
  subscribes to, counted from the commit;
- a group without a protocol type (a "simple" group that only commits): from the commit;
- any other group: nothing expires.

An offset committed with OffsetCommit v2-4's retention_time carries its own expire timestamp,
which wins. When every offset of an Empty group has expired the group itself is deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from strom.coordinator.group import EMPTY, STABLE, ClassicGroup
from strom.coordinator.records import OffsetCommitValue


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    committed_offset: int
    leader_epoch: int  # -1: unknown
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int | None = None

    @classmethod
    def from_record(cls, value: OffsetCommitValue) -> OffsetAndMetadata:
        return cls(
            value.offset,
            value.leader_epoch,
            value.metadata,
            value.commit_timestamp,
            value.expire_timestamp if value.expire_timestamp >= 0 else None,
        )

    def to_record(self) -> OffsetCommitValue:
        return OffsetCommitValue(
            self.committed_offset,
            self.leader_epoch,
            self.metadata,
            self.commit_timestamp_ms,
            -1 if self.expire_timestamp_ms is None else self.expire_timestamp_ms,
        )


OffsetKey = tuple[str, str, int]  # group, topic, partition


class OffsetStore:
    """Offsets by group, then topic, then partition; pending transactional offsets by producer
    id. Changed only by ``put``/``remove``/``put_pending``/``end_transaction``, which only
    replay calls. ``_order``: the replay number of each committed offset's record."""

    def __init__(self) -> None:
        self._by_group: dict[str, dict[str, dict[int, OffsetAndMetadata]]] = {}
        self._pending: dict[int, dict[OffsetKey, tuple[int, OffsetAndMetadata]]] = {}
        self._order: dict[OffsetKey, int] = {}
        self._replays = 0

    def put(self, group_id: str, topic: str, partition: int, offset: OffsetAndMetadata, *, order: int | None = None) -> None:
        self._by_group.setdefault(group_id, {}).setdefault(topic, {})[partition] = offset
        if order is None:
            self._replays += 1
            order = self._replays
        self._order[(group_id, topic, partition)] = order

    def put_pending(self, producer_id: int, group_id: str, topic: str, partition: int, offset: OffsetAndMetadata) -> None:
        self._replays += 1
        self._pending.setdefault(producer_id, {})[(group_id, topic, partition)] = (self._replays, offset)

    def end_transaction(self, producer_id: int, commit: bool) -> list[OffsetKey]:
        """A marker for the producer's transaction: commit or drop its pending offsets;
        returns the keys that became committed."""
        pending = self._pending.pop(producer_id, {})
        if not commit:
            return []
        committed = []
        for key, (order, offset) in pending.items():
            if self._order.get(key, 0) < order:
                self.put(*key, offset, order=order)
                committed.append(key)
        return committed

    def has_pending(self, group_id: str, topic: str, partition: int) -> bool:
        key = (group_id, topic, partition)
        return any(key in offsets for offsets in self._pending.values())

    def pending_count(self) -> int:
        return sum(len(offsets) for offsets in self._pending.values())

    def remove(self, group_id: str, topic: str, partition: int) -> None:
        topics = self._by_group.get(group_id)
        if topics is None:
            return
        partitions = topics.get(topic)
        if partitions is None:
            return
        partitions.pop(partition, None)
        self._order.pop((group_id, topic, partition), None)
        if not partitions:
            del topics[topic]
        if not topics:
            del self._by_group[group_id]

    def get(self, group_id: str, topic: str, partition: int) -> OffsetAndMetadata | None:
        return self._by_group.get(group_id, {}).get(topic, {}).get(partition)

    def has_group(self, group_id: str) -> bool:
        return group_id in self._by_group

    def group(self, group_id: str) -> dict[str, dict[int, OffsetAndMetadata]]:
        return self._by_group.get(group_id, {})

    def partitions(self, group_id: str) -> Iterator[tuple[TopicPartition, OffsetAndMetadata]]:
        for topic, partitions in self._by_group.get(group_id, {}).items():
            for partition, offset in partitions.items():
                yield TopicPartition(topic, partition), offset

    def group_ids(self) -> list[str]:
        return list(self._by_group)

    def __len__(self) -> int:
        return sum(len(p) for topics in self._by_group.values() for p in topics.values())


def expiry_base(group: ClassicGroup | None) -> str | None:
    """Which timestamp an offset's age is counted from in this group: "state" (when the group
    became Empty, falling back to the commit), "commit", or None (nothing expires)."""
    if group is None or group.protocol_type is None:
        return "commit"
    if group.is_in(EMPTY):
        return "state"
    if group.uses_consumer_protocol() and group.subscribed_topics is not None and group.is_in(STABLE):
        return "commit"
    return None


def is_expired(offset: OffsetAndMetadata, group: ClassicGroup | None, base: str, now_ms: int, retention_ms: int) -> bool:
    if offset.expire_timestamp_ms is not None:  # OffsetCommit v2-4 retention_time
        return now_ms >= offset.expire_timestamp_ms
    start = offset.commit_timestamp_ms
    if base == "state" and group is not None and group.state_timestamp_ms is not None:
        start = group.state_timestamp_ms
    return now_ms - start >= retention_ms
