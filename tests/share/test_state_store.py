"""The share coordinator's pure shard (share.state_store): replay of snapshots, updates and
tombstones, whole-snapshot writes with their epochs, Kafka's fencing, and the batch merge."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.shard import Result
from strom.protocol.errors import ErrorCode
from strom.share.records import (
    PersistedBatch,
    ShareSnapshotKey,
    ShareSnapshotValue,
    ShareStateRecord,
    ShareUpdateKey,
    ShareUpdateValue,
    deserialize,
    serialize,
)
from strom.share.state_store import ShareStateShard, apply_update, merge_batches, prune_batches

TOPIC = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
KEY = ShareSnapshotKey("g", TOPIC, 0)
OTHER = ShareSnapshotKey("g", TOPIC, 1)
B = PersistedBatch
AVAILABLE, ACKED, ARCHIVED = 0, 2, 4


def value(state_epoch: int = 0, leader_epoch: int = 0, start_offset: int = 0, batches: tuple[PersistedBatch, ...] = (),
          dcc: int = -1) -> ShareSnapshotValue:
    return ShareSnapshotValue(99, state_epoch, leader_epoch, start_offset, 5, 6, batches, dcc)


def applied(shard: ShareStateShard, result: Result) -> Result:
    """What the runtime does with a Result: the records through the codec, then replayed."""
    for record in result.records:
        shard.replay(deserialize(*serialize(record)))
    return result


def loaded() -> ShareStateShard:
    shard = ShareStateShard()
    assert shard.loading
    assert applied(shard, shard.loaded(0)) == Result()
    assert not shard.loading
    return shard


# --- replay ------------------------------------------------------------------------------------


def test_replay_snapshot_update_and_tombstone() -> None:
    shard = ShareStateShard()
    snapshot = ShareSnapshotValue(3, 1, 7, 100, 10, 20, (B(100, 109, ACKED, 1), B(110, 119, AVAILABLE, 1)), 10)
    shard.replay(ShareStateRecord.snapshot("g", TOPIC, 0, snapshot))
    assert shard.read(KEY) == snapshot and shard.read(OTHER) is None
    # An update: later batches win where they overlap, the start offset moves, -1 leader epoch
    # is unchanged, the snapshot's epochs and timestamps stay.
    shard.replay(ShareStateRecord.update("g", TOPIC, 0, ShareUpdateValue(3, -1, 105, (B(112, 113, ARCHIVED, 2),), 7)))
    assert shard.read(KEY) == ShareSnapshotValue(
        3, 1, 7, 105, 10, 20,
        (B(105, 109, ACKED, 1), B(110, 111, AVAILABLE, 1), B(112, 113, ARCHIVED, 2), B(114, 119, AVAILABLE, 1)), 7,
    )
    shard.replay(ShareStateRecord.update("g", TOPIC, 0, ShareUpdateValue(3, 8, -1, (), -1)))
    state = shard.read(KEY)
    assert state is not None and (state.leader_epoch, state.start_offset, state.delivery_complete_count) == (8, 105, 7)
    shard.replay(ShareStateRecord.tombstone("g", TOPIC, 0))
    assert shard.read(KEY) is None and shard.states == {}


def test_an_update_without_a_snapshot_is_ignored() -> None:
    shard = ShareStateShard()
    shard.replay(ShareStateRecord.update("g", TOPIC, 0, ShareUpdateValue(0, 1, 0, (B(0, 1, ACKED, 1),))))
    shard.replay(ShareStateRecord(ShareUpdateKey("g", TOPIC, 0), None))
    assert shard.read(KEY) is None


def test_a_later_snapshot_replaces_the_state() -> None:
    shard = ShareStateShard()
    shard.replay(ShareStateRecord.snapshot("g", TOPIC, 0, value(batches=(B(0, 9, ACKED, 1),))))
    shard.replay(ShareStateRecord.snapshot("g", TOPIC, 0, value(state_epoch=1, batches=(B(20, 29, AVAILABLE, 1),))))
    state = shard.read(KEY)
    assert state is not None and state.state_batches == (B(20, 29, AVAILABLE, 1),) and state.state_epoch == 1


# --- the batch merge ---------------------------------------------------------------------------


def test_merge_later_batches_override_overlaps() -> None:
    current = (B(0, 9, AVAILABLE, 1), B(10, 19, ACKED, 1))
    assert merge_batches(current, (B(5, 14, ARCHIVED, 3),), -1) == (
        B(0, 4, AVAILABLE, 1), B(5, 14, ARCHIVED, 3), B(15, 19, ACKED, 1),
    )
    # Within the update too, the later batch wins.
    assert merge_batches((), (B(0, 9, AVAILABLE, 1), B(3, 4, ACKED, 1)), 0) == (
        B(0, 2, AVAILABLE, 1), B(3, 4, ACKED, 1), B(5, 9, AVAILABLE, 1),
    )


def test_merge_drops_batches_below_the_start_offset_and_joins_neighbours() -> None:
    current = (B(0, 9, ACKED, 1), B(10, 19, AVAILABLE, 2))
    assert merge_batches(current, (B(20, 29, AVAILABLE, 2),), 12) == (B(12, 29, AVAILABLE, 2),)
    assert merge_batches(current, (), 30) == ()
    assert prune_batches((B(20, 29, ACKED, 1), B(0, 4, ACKED, 1), B(3, 25, ARCHIVED, 1)), 4) == (
        B(4, 4, ACKED, 1), B(4, 25, ARCHIVED, 1), B(20, 29, ACKED, 1),
    )
    assert prune_batches((B(0, 4, ACKED, 1),), -1) == (B(0, 4, ACKED, 1),)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8), st.sampled_from([0, 2, 4]), st.integers(0, 3)), max_size=6),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8), st.sampled_from([0, 2, 4]), st.integers(0, 3)), max_size=6),
    st.integers(-1, 45),
)
def test_merge_is_an_overlay_offset_by_offset(
    old: list[tuple[int, int, int, int]], new: list[tuple[int, int, int, int]], start: int
) -> None:
    """Offset by offset, the merge holds the last batch (update after current) covering it, at
    or above the start offset; the result is sorted, disjoint, and has no joinable neighbours."""

    def batches(spec: list[tuple[int, int, int, int]]) -> list[PersistedBatch]:
        return [B(first, first + length, state, count) for first, length, state, count in spec]

    current = batches(old)
    # the current state's batches never overlap (they come from an earlier merge)
    current = list(merge_batches((), current, -1))
    update = batches(new)
    expected: dict[int, tuple[int, int]] = {}
    for batch in [*current, *update]:
        for offset in range(batch.first_offset, batch.last_offset + 1):
            expected[offset] = (batch.delivery_state, batch.delivery_count)
    expected = {o: v for o, v in expected.items() if o >= start}
    merged = merge_batches(current, update, start)
    got = {o: (b.delivery_state, b.delivery_count) for b in merged for o in range(b.first_offset, b.last_offset + 1)}
    assert got == expected
    for a, b in zip(merged, merged[1:], strict=False):
        assert a.last_offset < b.first_offset
        assert not (a.last_offset + 1 == b.first_offset and (a.delivery_state, a.delivery_count) == (b.delivery_state, b.delivery_count))


def test_apply_update_keeps_what_minus_one_leaves() -> None:
    snapshot = ShareSnapshotValue(2, 3, 4, 50, 1, 2, (B(50, 59, AVAILABLE, 1),), 5)
    assert apply_update(snapshot, ShareUpdateValue(2, -1, -1, ())) == snapshot


# --- writes ------------------------------------------------------------------------------------


def test_write_appends_one_whole_snapshot_with_the_next_epoch() -> None:
    shard = loaded()
    batches = (B(10, 19, ACKED, 1), B(20, 20, AVAILABLE, 2))
    result = applied(shard, shard.write(KEY, value(state_epoch=1, leader_epoch=3, start_offset=10, batches=batches, dcc=10), 1000))
    assert result.response == ErrorCode.NONE
    (record,) = result.records
    assert record == ShareStateRecord.snapshot("g", TOPIC, 0, ShareSnapshotValue(0, 1, 3, 10, 1000, 1000, batches, 10))
    assert shard.read(KEY) == record.value
    # Every write is a whole snapshot with the next snapshot epoch, never an update.
    result = applied(shard, shard.write(KEY, value(state_epoch=1, leader_epoch=3, start_offset=15, batches=batches), 2000))
    (record,) = result.records
    assert isinstance(record.key, ShareSnapshotKey)
    assert record.value == ShareSnapshotValue(1, 1, 3, 15, 2000, 2000, (B(15, 19, ACKED, 1), B(20, 20, AVAILABLE, 2)))
    assert shard.read(KEY) == record.value
    assert shard.read(OTHER) is None


def test_write_minus_one_keeps_the_stored_epochs_and_start_offset() -> None:
    shard = loaded()
    applied(shard, shard.write(KEY, value(state_epoch=2, leader_epoch=5, start_offset=30), 0))
    applied(shard, shard.write(KEY, value(state_epoch=-1, leader_epoch=-1, start_offset=-1, batches=(B(30, 31, ACKED, 1),)), 1))
    state = shard.read(KEY)
    assert state is not None and (state.state_epoch, state.leader_epoch, state.start_offset) == (2, 5, 30)
    # Without a stored state, -1s give state epoch 0 and no leader epoch or start offset.
    applied(shard, shard.write(OTHER, value(state_epoch=-1, leader_epoch=-1, start_offset=-1), 2))
    state = shard.read(OTHER)
    assert state is not None and (state.snapshot_epoch, state.state_epoch, state.leader_epoch, state.start_offset) == (0, 0, -1, -1)


def test_fencing() -> None:
    shard = loaded()
    applied(shard, shard.write(KEY, value(state_epoch=2, leader_epoch=5), 0))
    stored = shard.read(KEY)
    lower_leader = shard.write(KEY, value(state_epoch=2, leader_epoch=4), 1)
    assert lower_leader.response == ErrorCode.FENCED_LEADER_EPOCH and lower_leader.records == ()
    lower_state = shard.write(KEY, value(state_epoch=1, leader_epoch=5), 1)
    assert lower_state.response == ErrorCode.FENCED_STATE_EPOCH and lower_state.records == ()
    assert shard.read(KEY) == stored
    # Equal epochs pass; higher ones are recorded.
    assert applied(shard, shard.write(KEY, value(state_epoch=2, leader_epoch=5), 2)).response == ErrorCode.NONE
    assert applied(shard, shard.write(KEY, value(state_epoch=3, leader_epoch=6), 3)).response == ErrorCode.NONE
    assert shard.write(KEY, value(state_epoch=3, leader_epoch=5), 4).response == ErrorCode.FENCED_LEADER_EPOCH
    assert shard.write(KEY, value(state_epoch=2, leader_epoch=6), 4).response == ErrorCode.FENCED_STATE_EPOCH


def test_invalid_keys() -> None:
    shard = loaded()
    for key in (ShareSnapshotKey("", TOPIC, 0), ShareSnapshotKey("g", TOPIC, -1)):
        assert shard.write(key, value(), 0) == Result(response=ErrorCode.INVALID_REQUEST)
        assert shard.delete(key, 0).response == ErrorCode.INVALID_REQUEST
        assert shard.initialize(key, 0, 0, 0).response == ErrorCode.INVALID_REQUEST
        assert shard.read_for_leader(key, -1, 0).response == (ErrorCode.INVALID_REQUEST, None)


def test_delete_writes_a_tombstone() -> None:
    shard = loaded()
    assert shard.delete(KEY, 0) == Result(response=ErrorCode.NONE)  # nothing to delete: no record
    applied(shard, shard.write(KEY, value(), 0))
    result = applied(shard, shard.delete(KEY, 1))
    assert result.response == ErrorCode.NONE and result.records == (ShareStateRecord.tombstone("g", TOPIC, 0),)
    assert serialize(result.records[0])[1] is None
    assert shard.read(KEY) is None
    # A new state after a delete starts again at snapshot epoch 0.
    (record,) = applied(shard, shard.write(KEY, value(), 2)).records
    assert record.value.snapshot_epoch == 0


def test_initialize() -> None:
    shard = loaded()
    applied(shard, shard.write(KEY, value(state_epoch=1, leader_epoch=4, start_offset=10, batches=(B(10, 12, ACKED, 1),)), 0))
    assert shard.initialize(KEY, 0, 0, 1).response == ErrorCode.FENCED_STATE_EPOCH
    result = applied(shard, shard.initialize(KEY, 2, 50, 1))
    assert result.response == ErrorCode.NONE
    assert shard.read(KEY) == ShareSnapshotValue(1, 2, 4, 50, 1, 1, ())
    applied(shard, shard.initialize(OTHER, 0, 7, 2))
    assert shard.read(OTHER) == ShareSnapshotValue(0, 0, -1, 7, 2, 2, ())


def test_read_for_leader() -> None:
    shard = loaded()
    assert shard.read_for_leader(KEY, 3, 0) == Result(response=(ErrorCode.INVALID_REQUEST, None))  # uninitialized
    applied(shard, shard.write(KEY, value(state_epoch=1, leader_epoch=3, start_offset=10), 0))
    stored = shard.read(KEY)
    assert shard.read_for_leader(KEY, 2, 1) == Result(response=(ErrorCode.FENCED_LEADER_EPOCH, None))
    assert shard.read_for_leader(KEY, -1, 1) == Result(response=(ErrorCode.NONE, stored))
    assert shard.read_for_leader(KEY, 3, 1) == Result(response=(ErrorCode.NONE, stored))
    # A newer leader epoch is recorded: a new snapshot, the rest unchanged.
    result = applied(shard, shard.read_for_leader(KEY, 4, 2))
    assert result.response == (ErrorCode.NONE, stored)
    assert shard.read(KEY) == ShareSnapshotValue(1, 1, 4, 10, 2, 2, ())
    assert shard.write(KEY, value(state_epoch=1, leader_epoch=3), 3).response == ErrorCode.FENCED_LEADER_EPOCH


def test_unloaded_has_nothing_to_answer() -> None:
    shard = loaded()
    applied(shard, shard.write(KEY, value(), 0))
    assert shard.unloaded(1) == Result()
