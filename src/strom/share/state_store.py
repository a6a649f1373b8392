"""The share coordinator's shard of ``__share_group_state``, pure (Kafka's ShareCoordinatorShard).

One ``ShareStateShard`` per partition of ``__share_group_state``, carried by the coordinator
runtime (server.share_state_runtime): operations take ``now_ms`` and return a Result whose
records the runtime appends and then replays; only ``replay`` changes ``states``, the latest
ShareSnapshotValue of every share partition (group, topic id, partition) whose state lives in
this partition, so the shard always equals what a restart loads from the log.

Replay, as Kafka's shard does it:

- a ShareSnapshot record sets the state; its tombstone (a null value) removes it;
- a ShareUpdate record merges over the snapshot (``apply_update``): its batches over the stored
  ones, later ones overriding where they overlap, batches (or their parts) below the start
  offset dropped; a StartOffset or LeaderEpoch of -1 leaves that field unchanged. An update
  without a snapshot is ignored (there is nothing to merge it over).

Writes. strom always writes a whole ShareSnapshot, never a ShareUpdate, because strom keeps
``__share_group_state`` compacted like its other internal topics: compaction keeps only the
latest record per key, and a ShareUpdate has a key of its own (record type 1), so after a
compaction the snapshot and only the last of the updates written since would be left, and
the deltas before it would be lost. A whole snapshot per write is always self-sufficient.
(Kafka keeps the topic with cleanup.policy=delete and prunes it up to the last snapshot
instead, so it can afford updates between snapshots.) The ShareUpdate records of a log written
by Kafka are still read back. Every write is a new snapshot: its SnapshotEpoch is the stored
one plus one (0 for the first), and its create and write timestamps are the time of the write.

Fencing, as Kafka's ``maybeGetWriteStateError``: a write whose LeaderEpoch is lower than the
stored one gets FENCED_LEADER_EPOCH, one whose StateEpoch is lower FENCED_STATE_EPOCH; -1 in
either is not checked and leaves the stored value. A write to a share partition without state
creates it (strom's persister initializes a share partition by writing its first state).
A read with a leader epoch (ReadShareGroupState) is fenced the same way, and a newer leader
epoch is recorded (a new snapshot), as Kafka does; a read of a share partition without state
is INVALID_REQUEST ("uninitialized share partition").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from strom.coordinator.shard import CoordinatorShard, Result
from strom.protocol.errors import ErrorCode
from strom.share.records import (
    PersistedBatch,
    ShareSnapshotKey,
    ShareSnapshotValue,
    ShareStateRecord,
    ShareUpdateKey,
    ShareUpdateValue,
)

UNCHANGED: Final = -1  # a LeaderEpoch, StateEpoch or StartOffset that keeps the stored one
UNINITIALIZED_MESSAGE: Final = "uninitialized share partition"
# What a write with -1s keeps when there is no stored state: state epoch 0, no leader epoch,
# no start offset (Kafka's DEFAULT_STATE_EPOCH, -1 and UNINITIALIZED_START_OFFSET).
_NO_STATE: Final = ShareSnapshotValue(-1, 0, UNCHANGED, UNCHANGED, 0, 0, ())


# --- batches ----------------------------------------------------------------------------------


def prune_batches(batches: Iterable[PersistedBatch], start_offset: int) -> tuple[PersistedBatch, ...]:
    """The batches at or above ``start_offset``, in offset order: those below it dropped, one
    that straddles it cut to start there (Kafka's PersisterStateBatchCombiner.pruneBatches).
    A start offset below 0 (not known yet) keeps every batch."""
    out: list[PersistedBatch] = []
    for batch in batches:
        if batch.last_offset < start_offset:
            continue
        if batch.first_offset < start_offset:
            batch = PersistedBatch(start_offset, batch.last_offset, batch.delivery_state, batch.delivery_count)
        out.append(batch)
    out.sort(key=lambda b: (b.first_offset, b.last_offset))
    return tuple(out)


def _overlay(batches: list[PersistedBatch], top: PersistedBatch) -> list[PersistedBatch]:
    """``batches`` with ``top`` laid over them: the offsets it covers are its own."""
    out: list[PersistedBatch] = []
    for batch in batches:
        if batch.last_offset < top.first_offset or batch.first_offset > top.last_offset:
            out.append(batch)
            continue
        if batch.first_offset < top.first_offset:
            out.append(PersistedBatch(batch.first_offset, top.first_offset - 1, batch.delivery_state, batch.delivery_count))
        if batch.last_offset > top.last_offset:
            out.append(PersistedBatch(top.last_offset + 1, batch.last_offset, batch.delivery_state, batch.delivery_count))
    out.append(top)
    return out


def merge_batches(
    current: Iterable[PersistedBatch], update: Iterable[PersistedBatch], start_offset: int
) -> tuple[PersistedBatch, ...]:
    """``update``'s batches merged over ``current``'s: where they overlap, the later batch wins
    (a later one of ``update`` over an earlier one too); then pruned below ``start_offset``,
    sorted, and neighbours in the same state with the same delivery count joined into one.

    Kafka's combiner resolves an overlap by delivery count, then state; the two agree on every
    state a share partition writes, since a delivery count never goes down and acknowledged
    and archived records never change again."""
    merged: list[PersistedBatch] = list(current)
    for top in update:
        merged = _overlay(merged, top)
    out: list[PersistedBatch] = []
    for batch in prune_batches(merged, start_offset):
        last = out[-1] if out else None
        if (
            last is not None
            and last.last_offset + 1 == batch.first_offset
            and (last.delivery_state, last.delivery_count) == (batch.delivery_state, batch.delivery_count)
        ):
            out[-1] = PersistedBatch(last.first_offset, batch.last_offset, batch.delivery_state, batch.delivery_count)
        else:
            out.append(batch)
    return tuple(out)


def apply_update(snapshot: ShareSnapshotValue, update: ShareUpdateValue) -> ShareSnapshotValue:
    """A ShareUpdate merged over the snapshot it applies to (Kafka's ShareCoordinatorShard.merge):
    StartOffset and LeaderEpoch -1 are unchanged, the snapshot and state epochs and the
    timestamps stay the snapshot's."""
    start_offset = snapshot.start_offset if update.start_offset == UNCHANGED else update.start_offset
    return ShareSnapshotValue(
        snapshot_epoch=snapshot.snapshot_epoch,
        state_epoch=snapshot.state_epoch,
        leader_epoch=snapshot.leader_epoch if update.leader_epoch == UNCHANGED else update.leader_epoch,
        start_offset=start_offset,
        create_timestamp=snapshot.create_timestamp,
        write_timestamp=snapshot.write_timestamp,
        state_batches=merge_batches(snapshot.state_batches, update.state_batches, start_offset),
        delivery_complete_count=(
            snapshot.delivery_complete_count if update.delivery_complete_count == UNCHANGED else update.delivery_complete_count
        ),
    )


def invalid_key(key: ShareSnapshotKey) -> str | None:
    """Why Kafka refuses the key (INVALID_REQUEST), or None."""
    if not key.group_id:
        return "group id must not be empty"
    if key.partition < 0:
        return f"invalid partition {key.partition}"
    return None


# --- the shard --------------------------------------------------------------------------------


class ShareStateShard(CoordinatorShard):
    """The share-partition states of one ``__share_group_state`` partition (module doc).

    ``states``: the latest snapshot per share partition, changed only by ``replay``.
    Operations answer with an ErrorCode (``write``, ``initialize``, ``delete``) or
    ``(ErrorCode, value)`` (``read_for_leader``) in ``Result.response``."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[ShareSnapshotKey, ShareSnapshotValue] = {}

    # --- replay ----------------------------------------------------------------------------

    def replay(self, record: ShareStateRecord) -> None:
        key, value = record.key, record.value
        state_key = ShareSnapshotKey(key.group_id, key.topic_id, key.partition)
        if isinstance(key, ShareUpdateKey):
            snapshot = self.states.get(state_key)
            if isinstance(value, ShareUpdateValue) and snapshot is not None:
                self.states[state_key] = apply_update(snapshot, value)
            return
        if value is None:
            self.states.pop(state_key, None)
        elif isinstance(value, ShareSnapshotValue):
            self.states[state_key] = value

    # --- lifecycle -------------------------------------------------------------------------

    def loaded(self, now_ms: int) -> Result:
        """The partition has been replayed: the shard serves from now on (no timers)."""

        def run() -> None:
            self.loading = False

        return self._run(now_ms, run)

    def unloaded(self, now_ms: int) -> Result:
        """This broker no longer leads the partition: nothing waits on a share-state shard."""
        return self._run(now_ms, lambda: None)

    # --- reads -----------------------------------------------------------------------------

    def read(self, key: ShareSnapshotKey) -> ShareSnapshotValue | None:
        """The share partition's latest state; None when it has none (never initialized, or
        deleted)."""
        return self.states.get(key)

    # --- operations ------------------------------------------------------------------------

    def _fenced(self, current: ShareSnapshotValue | None, leader_epoch: int, state_epoch: int) -> int:
        if current is None:
            return ErrorCode.NONE
        if leader_epoch != UNCHANGED and leader_epoch < current.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if state_epoch != UNCHANGED and state_epoch < current.state_epoch:
            return ErrorCode.FENCED_STATE_EPOCH
        return ErrorCode.NONE

    def _snapshot(self, key: ShareSnapshotKey, value: ShareSnapshotValue) -> None:
        """Append ``value`` as the key's next snapshot (its epoch one past the stored one's)."""
        current = self.states.get(key)
        now = self._now
        stored = ShareSnapshotValue(
            snapshot_epoch=0 if current is None else current.snapshot_epoch + 1,
            state_epoch=value.state_epoch,
            leader_epoch=value.leader_epoch,
            start_offset=value.start_offset,
            create_timestamp=now,
            write_timestamp=now,
            state_batches=prune_batches(value.state_batches, value.start_offset),
            delivery_complete_count=value.delivery_complete_count,
        )
        self._append(ShareStateRecord.snapshot(key.group_id, key.topic_id, key.partition, stored))

    def write(self, key: ShareSnapshotKey, value: ShareSnapshotValue, now_ms: int) -> Result:
        """Store ``value`` as the share partition's complete state (one ShareSnapshot record).

        ``value``'s snapshot epoch and timestamps are ignored (the shard sets them); its
        LeaderEpoch, StateEpoch and StartOffset at -1 keep the stored ones (with no stored
        state: -1, 0 and -1); its batches below the start offset are dropped. Answers NONE,
        FENCED_LEADER_EPOCH, FENCED_STATE_EPOCH or INVALID_REQUEST (empty group id, negative
        partition), with no record for an error."""

        def run() -> int:
            if invalid_key(key) is not None:
                return ErrorCode.INVALID_REQUEST
            current = self.states.get(key)
            error = self._fenced(current, value.leader_epoch, value.state_epoch)
            if error:
                return error

            base = current or _NO_STATE

            def kept(given: int, stored: int) -> int:
                return stored if given == UNCHANGED else given

            self._snapshot(key, ShareSnapshotValue(
                snapshot_epoch=0,
                state_epoch=kept(value.state_epoch, base.state_epoch),
                leader_epoch=kept(value.leader_epoch, base.leader_epoch),
                start_offset=kept(value.start_offset, base.start_offset),
                create_timestamp=0,
                write_timestamp=0,
                state_batches=value.state_batches,
                delivery_complete_count=value.delivery_complete_count,
            ))
            return ErrorCode.NONE

        return self._run(now_ms, run)

    def initialize(self, key: ShareSnapshotKey, state_epoch: int, start_offset: int, now_ms: int) -> Result:
        """InitializeShareGroupState: a fresh state (no batches) at ``state_epoch`` from
        ``start_offset``; FENCED_STATE_EPOCH when the stored state epoch is higher. The stored
        leader epoch is kept (-1 without one)."""

        def run() -> int:
            if invalid_key(key) is not None:
                return ErrorCode.INVALID_REQUEST
            current = self.states.get(key)
            if current is not None and state_epoch < current.state_epoch:
                return ErrorCode.FENCED_STATE_EPOCH
            leader_epoch = UNCHANGED if current is None else current.leader_epoch
            self._snapshot(key, ShareSnapshotValue(0, state_epoch, leader_epoch, start_offset, 0, 0, ()))
            return ErrorCode.NONE

        return self._run(now_ms, run)

    def read_for_leader(self, key: ShareSnapshotKey, leader_epoch: int, now_ms: int) -> Result:
        """ReadShareGroupState: ``(error, state)``. A leader epoch lower than the stored one is
        FENCED_LEADER_EPOCH; a higher one is recorded (a new snapshot, before the answer). No
        state: INVALID_REQUEST. -1 reads without either."""

        def run() -> tuple[int, ShareSnapshotValue | None]:
            if invalid_key(key) is not None:
                return ErrorCode.INVALID_REQUEST, None
            current = self.states.get(key)
            if current is None:
                return ErrorCode.INVALID_REQUEST, None
            error = self._fenced(current, leader_epoch, UNCHANGED)
            if error:
                return error, None
            if leader_epoch != UNCHANGED and leader_epoch > current.leader_epoch:
                self._snapshot(key, ShareSnapshotValue(
                    0, current.state_epoch, leader_epoch, current.start_offset, 0, 0, current.state_batches,
                    current.delivery_complete_count,
                ))
            return ErrorCode.NONE, current

        return self._run(now_ms, run)

    def delete(self, key: ShareSnapshotKey, now_ms: int) -> Result:
        """DeleteShareGroupState: a tombstone (NONE, and no record, when there is no state)."""

        def run() -> int:
            if invalid_key(key) is not None:
                return ErrorCode.INVALID_REQUEST
            if key in self.states:
                self._append(ShareStateRecord.tombstone(key.group_id, key.topic_id, key.partition))
            return ErrorCode.NONE

        return self._run(now_ms, run)


__all__ = [
    "UNCHANGED",
    "UNINITIALIZED_MESSAGE",
    "ShareStateShard",
    "apply_update",
    "invalid_key",
    "merge_batches",
    "prune_batches",
]
