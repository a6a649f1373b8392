"""The KIP-932 share-partition state machine (strom.share.partition): unit and property tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from strom.protocol.errors import ErrorCode
from strom.share.partition import (
    ACCEPT,
    ACKNOWLEDGED,
    ACQUIRED,
    ARCHIVED,
    AVAILABLE,
    GAP,
    REJECT,
    RELEASE,
    Acquired,
    LogBatch,
    PersistedState,
    ShareConfig,
    SharePartition,
    StateBatch,
)

LOCK = 1000
NONE = ErrorCode.NONE
INVALID_REQUEST = ErrorCode.INVALID_REQUEST
INVALID_RECORD_STATE = ErrorCode.INVALID_RECORD_STATE


def new(
    limit: int = 5, locks: int = 2000, start: int = 0, batches: Sequence[StateBatch] = ()
) -> SharePartition:
    return SharePartition(ShareConfig(limit, LOCK, locks), PersistedState(start, tuple(batches)))


def log(*sizes: int, start: int = 0) -> list[LogBatch]:
    """Contiguous log batches of the given sizes."""
    out = []
    for n in sizes:
        out.append(LogBatch(start, start + n - 1))
        start += n
    return out


def read(batches: Sequence[LogBatch], offset: int, limit: int = 1 << 30) -> list[LogBatch]:
    """What a log read from ``offset`` returns: the batch holding it (or the next) onwards."""
    return [b for b in batches if b.last_offset >= offset][:limit]


def hwm(batches: Sequence[LogBatch]) -> int:
    return batches[-1].last_offset + 1


def fetch(
    sp: SharePartition,
    member: str,
    batches: Sequence[LogBatch],
    max_records: int = 500,
    batch_size: int = 500,
    now: int = 0,
) -> list[Acquired]:
    f = sp.next_fetch_offset()
    return sp.acquire(
        member, read(batches, f), max_records, batch_size, hwm(batches), now, fetch_offset=f
    )


def view(sp: SharePartition) -> list[tuple[int, int, int, int, str | None]]:
    return [
        (r.first_offset, r.last_offset, r.state, r.delivery_count, r.member_id) for r in sp.ranges()
    ]


def spans(acquired: Sequence[Acquired]) -> list[tuple[int, int, int]]:
    return [(a.first_offset, a.last_offset, a.delivery_count) for a in acquired]


# --- acquire ------------------------------------------------------------------------------------------


def test_new_records_are_acquired_with_count_1_owner_and_lock():
    sp = new()
    b = log(10, 10)
    assert spans(fetch(sp, "a", b, now=5)) == [(0, 19, 1)]
    (r,) = sp.ranges()
    assert (r.state, r.delivery_count, r.member_id, r.lock_deadline_ms) == (
        ACQUIRED,
        1,
        "a",
        5 + LOCK,
    )
    assert sp.next_fetch_offset() == 20
    assert sp.in_flight() == 20
    assert sp.next_lock_deadline() == 5 + LOCK
    assert sp.start_offset == 0
    # nothing more to read: a fetch from 20 gets nothing
    assert fetch(sp, "b", b) == []


def test_max_records_is_soft_the_batch_holding_the_limit_is_taken_whole():
    sp = new()
    b = log(10, 10, 10)
    assert spans(fetch(sp, "a", b, max_records=15)) == [(0, 19, 1)]
    assert spans(fetch(sp, "a", b, max_records=1)) == [(20, 29, 1)]
    sp = new()
    assert spans(fetch(sp, "a", log(1000), max_records=500)) == [(0, 999, 1)]


def test_batch_size_splits_at_batch_boundaries_once_reached():
    sp = new()
    assert spans(fetch(sp, "a", log(10, 10, 10, 10, 10), batch_size=25)) == [
        (0, 29, 1),
        (30, 49, 1),
    ]
    sp = new()
    assert spans(fetch(sp, "a", log(7, 7, 7), batch_size=7)) == [(0, 6, 1), (7, 13, 1), (14, 20, 1)]
    sp = new()  # a single batch bigger than batch_size is not split
    assert spans(fetch(sp, "a", log(100), batch_size=10)) == [(0, 99, 1)]


def test_batches_at_or_past_the_high_watermark_are_not_acquired():
    sp = new()
    b = log(10, 10)
    assert spans(sp.acquire("a", b, 500, 500, 10, 0)) == [(0, 9, 1)]
    assert sp.acquirable(10) is False
    assert sp.acquirable(20) is True


def test_control_batches_are_acquired_too():
    sp = new()
    b = [LogBatch(0, 4), LogBatch(5, 5, is_control=True), LogBatch(6, 9)]
    assert spans(fetch(sp, "a", b)) == [(0, 9, 1)]
    assert sp.acknowledge("a", [(0, 9, [1, 1, 1, 1, 1, GAP, 1, 1, 1, 1])], 0) == NONE
    assert sp.start_offset == 10


def test_available_records_are_reacquired_first_with_count_plus_one():
    sp = new()
    b = log(10, 10)
    fetch(sp, "a", b[:1])
    assert sp.acknowledge("a", [(0, 9, [ACCEPT] * 3 + [RELEASE] * 4 + [ACCEPT] * 3)], 0) == NONE
    assert sp.next_fetch_offset() == 3
    got = fetch(sp, "b", b)
    assert spans(got) == [(3, 6, 2), (10, 19, 1)]
    assert view(sp) == [
        (3, 6, ACQUIRED, 2, "b"),
        (7, 9, ACKNOWLEDGED, 1, None),
        (10, 19, ACQUIRED, 1, "b"),
    ]


def test_a_partially_read_cached_range_is_acquired_in_part():
    sp = new()
    b = log(5, 5)
    fetch(sp, "a", b)  # one range 0-9
    assert sp.acknowledge("a", [(0, 9, [RELEASE])], 0) == NONE
    # the read returned only the first batch: only it is re-acquired
    assert spans(sp.acquire("b", b[:1], 500, 500, 10, 0)) == [(0, 4, 2)]
    assert view(sp) == [(0, 4, ACQUIRED, 2, "b"), (5, 9, AVAILABLE, 1, None)]
    assert sp.next_fetch_offset() == 5


def test_max_record_locks_caps_new_records_but_not_cached_ones():
    sp = new(locks=100)
    b = log(*[30] * 6)
    # in-flight 0, 30, 60, 90 < 100 at the start of each batch: the fourth goes past the cap
    assert spans(fetch(sp, "a", b)) == [(0, 119, 1)]
    assert sp.in_flight() == 120
    assert sp.acquirable(hwm(b)) is False
    assert fetch(sp, "b", b) == []
    # released records are still acquirable at the cap
    assert sp.acknowledge("a", [(30, 59, [RELEASE])], 0) == NONE
    assert sp.acquirable(hwm(b)) is True
    assert spans(fetch(sp, "b", b)) == [(30, 59, 2)]
    assert sp.acquirable(hwm(b)) is False
    # once the SPSO moves, new records flow again
    assert sp.acknowledge("a", [(0, 29, [ACCEPT])], 0) == NONE
    assert sp.in_flight() == 90
    assert spans(fetch(sp, "b", b)) == [(120, 149, 1)]
    assert sp.in_flight() == 120


def test_acquirable():
    sp = new(locks=10)
    b = log(5, 5, 5)
    assert sp.acquirable(0) is False
    assert sp.acquirable(15) is True
    fetch(sp, "a", b[:2])
    assert sp.in_flight() == 10
    assert sp.acquirable(15) is False  # at the cap, nothing cached available
    sp.release_member("a", 0)
    assert sp.acquirable(15) is True


# --- acknowledge --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ack_type", "state"),
    [(ACCEPT, ACKNOWLEDGED), (REJECT, ARCHIVED), (GAP, ARCHIVED), (RELEASE, AVAILABLE)],
)
def test_acknowledge_transitions(ack_type, state):
    sp = new()
    fetch(sp, "a", log(10, 10))
    assert sp.acknowledge("a", [(10, 19, [ack_type])], 0) == NONE
    assert view(sp)[1] == (10, 19, state, 1, None)
    assert sp.start_offset == 0
    assert sp.delivery_complete_count() == (10 if state != AVAILABLE else 0)


def test_per_offset_types_and_several_batches():
    sp = new()
    fetch(sp, "a", log(10))
    types = [ACCEPT, ACCEPT, RELEASE, REJECT, GAP, ACCEPT]
    assert sp.acknowledge("a", [(2, 7, types), (9, 9, [RELEASE])], 0) == NONE
    assert view(sp) == [
        (0, 1, ACQUIRED, 1, "a"),
        (2, 3, ACKNOWLEDGED, 1, None),
        (4, 4, AVAILABLE, 1, None),
        (5, 6, ARCHIVED, 1, None),
        (7, 7, ACKNOWLEDGED, 1, None),
        (8, 8, ACQUIRED, 1, "a"),
        (9, 9, AVAILABLE, 1, None),
    ]
    assert sp.delivery_complete_count() == 5
    assert sp.next_fetch_offset() == 4


def test_release_at_the_delivery_limit_archives():
    sp = new(limit=2)
    b = log(1)
    for count in (1, 2):
        assert spans(fetch(sp, "a", b)) == [(0, 0, count)]
        assert sp.acknowledge("a", [(0, 0, [RELEASE])], 0) == NONE
    assert sp.start_offset == 1  # the second release archived it
    assert fetch(sp, "a", b) == []


@pytest.mark.parametrize(
    "batches",
    [
        [(5, 4, [1])],  # first > last
        [(0, 4, [1]), (3, 6, [1])],  # starts below the previous batch's last offset
        [(5, 6, [1]), (0, 1, [1])],  # not ascending
        [(0, 4, [])],  # no types
        [(0, 4, [1, 1])],  # several types, count != number of offsets
        [(0, 4, [1, 1, 1, 1, 1, 1])],
        [(0, 0, [4])],  # RENEW is v2 only
        [(0, 0, [-1])],
        [(0, 0, [1]), (1, 1, [7])],
        [(15, 25, [1])],  # beyond what was acquired
        [(20, 22, [1])],
        [(0, 4, [1]), (18, 20, [1])],
    ],
)
def test_invalid_request(batches):
    sp = new()
    fetch(sp, "a", log(10, 10))
    before = view(sp)
    assert sp.acknowledge("a", batches, 0) == INVALID_REQUEST
    assert view(sp) == before


def test_invalid_record_state():
    sp = new()
    b = log(10, 10, 10)
    fetch(sp, "a", b[:1])
    fetch(sp, "b", b[:2])
    assert sp.acknowledge("a", [(20, 25, [1])], 0) == INVALID_REQUEST  # never acquired
    before = view(sp)
    # another member's records
    assert sp.acknowledge("a", [(10, 12, [1])], 0) == INVALID_RECORD_STATE
    assert sp.acknowledge("a", [(5, 12, [1])], 0) == INVALID_RECORD_STATE
    # atomic: the valid first batch is not applied either
    assert sp.acknowledge("a", [(0, 4, [1]), (10, 10, [1])], 0) == INVALID_RECORD_STATE
    assert view(sp) == before
    # records not ACQUIRED any more
    assert sp.acknowledge("a", [(5, 9, [RELEASE])], 0) == NONE
    assert sp.acknowledge("a", [(5, 5, [ACCEPT])], 0) == INVALID_RECORD_STATE  # AVAILABLE
    assert sp.acknowledge("a", [(2, 2, [ACCEPT])], 0) == NONE
    assert sp.acknowledge("a", [(2, 2, [ACCEPT])], 0) == INVALID_RECORD_STATE  # ACKNOWLEDGED
    # touching batches are well-formed, but their shared offset is acknowledged twice
    before = view(sp)
    assert sp.acknowledge("a", [(0, 1, [1]), (1, 1, [1])], 0) == INVALID_RECORD_STATE
    assert view(sp) == before
    # an empty cache: nothing found
    assert new().acknowledge("a", [(0, 0, [1])], 0) == INVALID_RECORD_STATE


def test_offsets_below_the_spso_are_skipped():
    sp = new()
    fetch(sp, "a", log(10, 10))
    assert sp.acknowledge("a", [(0, 9, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 10
    assert sp.acknowledge("a", [(0, 9, [REJECT])], 0) == NONE  # wholly below: nothing happens
    assert sp.acknowledge("a", [(5, 14, [ACCEPT])], 0) == NONE  # 10-14 accepted
    assert sp.start_offset == 15
    assert sp.acknowledge("a", [(0, 4, [1])], 0) == NONE
    assert sp.acknowledge("a", [], 0) == NONE


def test_acknowledging_a_lock_that_ran_out_fails():
    sp = new()
    fetch(sp, "a", log(10), now=0)
    assert sp.acknowledge("a", [(0, 9, [ACCEPT])], LOCK) == INVALID_RECORD_STATE
    assert view(sp) == [(0, 9, AVAILABLE, 1, None)]


# --- release and lock expiry ---------------------------------------------------------------------------


def test_release_member_returns_its_records_keeping_counts():
    sp = new()
    b = log(10, 10, 10)
    fetch(sp, "a", b[:1])
    fetch(sp, "b", b[:2])
    fetch(sp, "a", b)
    assert sp.acknowledge("a", [(0, 1, [ACCEPT])], 0) == NONE
    assert sp.release_member("a", 0) == 8 + 10
    assert view(sp) == [
        (2, 9, AVAILABLE, 1, None),
        (10, 19, ACQUIRED, 1, "b"),
        (20, 29, AVAILABLE, 1, None),
    ]
    assert sp.release_member("a", 0) == 0
    assert sp.release_member("nobody", 0) == 0
    assert spans(fetch(sp, "c", b)) == [(2, 9, 2), (20, 29, 2)]


def test_release_member_archives_at_the_limit():
    sp = new(limit=2)
    b = log(5)
    fetch(sp, "a", b)
    sp.release_member("a", 0)
    assert spans(fetch(sp, "a", b)) == [(0, 4, 2)]
    assert sp.release_member("a", 0) == 5
    assert sp.ranges() == ()
    assert sp.start_offset == 5
    assert sp.delivery_complete_count() == 0


def test_expire_locks_and_next_lock_deadline():
    sp = new()
    b = log(10, 10)
    fetch(sp, "a", b[:1], now=0)
    fetch(sp, "b", b, now=100)
    assert sp.next_lock_deadline() == LOCK
    assert sp.expire_locks(LOCK - 1) == 0
    assert sp.expire_locks(LOCK) == 10
    assert sp.next_lock_deadline() == 100 + LOCK
    assert view(sp) == [(0, 9, AVAILABLE, 1, None), (10, 19, ACQUIRED, 1, "b")]
    assert sp.next_fetch_offset() == 0
    assert sp.acknowledge("b", [(10, 19, [ACCEPT])], 200) == NONE
    assert sp.next_lock_deadline() is None
    assert sp.expire_locks(10**9) == 0


def test_a_record_delivered_limit_times_is_archived_when_its_lock_expires():
    sp = new(limit=3)
    b = log(1)
    now = 0
    for count in (1, 2, 3):
        assert spans(fetch(sp, "a", b, now=now)) == [(0, 0, count)]
        now += LOCK
        assert sp.expire_locks(now) == 1
    assert sp.start_offset == 1
    assert fetch(sp, "a", b, now=now) == []


def test_acquire_expires_locks_first():
    sp = new()
    b = log(10)
    fetch(sp, "a", b, now=0)
    assert sp.next_fetch_offset() == 10  # the lock has not been expired yet
    assert spans(sp.acquire("b", b, 500, 500, 10, LOCK)) == [(0, 9, 2)]
    assert view(sp) == [(0, 9, ACQUIRED, 2, "b")]


# --- SPSO ---------------------------------------------------------------------------------------------


def test_spso_advances_over_the_leading_terminal_run():
    sp = new()
    b = log(10, 10, 10)
    fetch(sp, "a", b)
    assert sp.acknowledge("a", [(10, 19, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 0
    assert sp.delivery_complete_count() == 10
    assert sp.acknowledge("a", [(0, 4, [REJECT])], 0) == NONE
    assert sp.start_offset == 5  # partially terminal first range
    assert sp.delivery_complete_count() == 10
    assert sp.acknowledge("a", [(5, 9, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 20  # over 5-9 and the already acknowledged 10-19
    assert sp.delivery_complete_count() == 0
    assert view(sp) == [(20, 29, ACQUIRED, 1, "a")]
    assert sp.acknowledge("a", [(20, 29, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 30
    assert sp.ranges() == ()
    assert sp.in_flight() == 0
    assert sp.next_fetch_offset() == 30


# --- persistence --------------------------------------------------------------------------------------


def test_state_never_holds_acquired_records():
    sp = new()
    b = log(10, 10, 10, 10)
    fetch(sp, "a", b[:3])
    assert (
        sp.acknowledge("a", [(0, 9, [RELEASE]), (10, 14, [ACCEPT]), (15, 19, [REJECT])], 0) == NONE
    )
    fetch(sp, "b", b)  # 0-9 again (count 2) and 30-39 (count 1)
    assert sp.state() == PersistedState(
        0,
        (
            StateBatch(0, 9, AVAILABLE, 1),  # as before this acquisition
            StateBatch(10, 14, ACKNOWLEDGED, 1),
            StateBatch(15, 19, ARCHIVED, 1),
            # 20-29 and 30-39 were delivered once and never written: gaps
        ),
    )


def test_round_trip_redelivers_unacknowledged_records_only():
    sp = new()
    b = log(10, 10, 10, 10)
    fetch(sp, "a", b[:2])
    assert sp.acknowledge("a", [(0, 4, [ACCEPT]), (5, 9, [RELEASE]), (12, 13, [ACCEPT])], 0) == NONE
    fetch(sp, "b", b[:3])  # 5-9 (count 2), 20-29 (count 1)
    assert sp.acknowledge("b", [(20, 21, [REJECT])], 0) == NONE

    again = SharePartition(sp.config, sp.state())
    assert again.start_offset == 5
    assert again.next_fetch_offset() == 5
    assert again.delivery_complete_count() == sp.delivery_complete_count() == 4
    got: dict[int, int] = {}
    for a in fetch(again, "c", b):
        for o in range(a.first_offset, a.last_offset + 1):
            got[o] = a.delivery_count
    expected = {o: 2 for o in range(5, 10)}  # the delivery lost with the restart is not counted
    expected |= {10: 1, 11: 1, 14: 1, 15: 1, 16: 1, 17: 1, 18: 1, 19: 1}
    expected |= {o: 1 for o in range(22, 40)}
    assert got == expected
    assert (
        again.acknowledge("c", [(5, 11, [ACCEPT]), (14, 19, [ACCEPT]), (22, 39, [ACCEPT])], 0)
        == NONE
    )
    assert again.start_offset == 40
    assert again.state() == PersistedState(40, ())


def test_round_trip_keeps_counts_and_the_limit():
    sp = new(limit=3)
    b = log(3)
    for _ in range(2):
        fetch(sp, "a", b)
        sp.release_member("a", 0)
    state = sp.state()
    assert state == PersistedState(0, (StateBatch(0, 2, AVAILABLE, 2),))
    again = SharePartition(sp.config, state)
    assert spans(fetch(again, "a", b)) == [(0, 0, 3)]  # count limit-1 -> alone
    again.release_member("a", 0)
    assert again.start_offset == 1


def test_loading_a_state_with_gaps_makes_them_acquirable():
    batches = [StateBatch(15, 19, ACKNOWLEDGED, 1), StateBatch(25, 29, AVAILABLE, 2)]
    sp = new(start=10, batches=batches)
    assert sp.start_offset == 10
    assert sp.next_fetch_offset() == 10
    assert sp.in_flight() == 20
    assert sp.delivery_complete_count() == 5
    b = log(10, 10, 10, 10)
    assert spans(fetch(sp, "a", b)) == [(10, 14, 1), (20, 24, 1), (25, 29, 3), (30, 39, 1)]


def test_loading_clamps_to_the_start_offset_and_archives_past_the_limit():
    batches = [
        StateBatch(0, 9, ARCHIVED, 1),
        StateBatch(10, 12, AVAILABLE, 5),
        StateBatch(13, 15, AVAILABLE, 2),
    ]
    sp = new(start=5, batches=batches)
    assert sp.start_offset == 13
    assert view(sp) == [(13, 15, AVAILABLE, 2, None)]


def test_loading_rejects_bad_states():
    for batches in (
        [StateBatch(0, 9, ACQUIRED, 1)],
        [StateBatch(5, 4, AVAILABLE, 1)],
        [StateBatch(0, 9, AVAILABLE, 1), StateBatch(9, 12, AVAILABLE, 1)],
        [StateBatch(0, 9, 3, 1)],
        [StateBatch(0, 9, AVAILABLE, -1)],
    ):
        with pytest.raises(ValueError):
            new(batches=batches)
    with pytest.raises(ValueError):
        new(start=-1)


# --- log start, compaction ------------------------------------------------------------------------------


def test_reset_start_archives_available_records_below_the_log_start():
    sp = new()
    b = log(10, 10, 10)
    fetch(sp, "a", b[:1])
    fetch(sp, "b", b[:2])
    assert sp.acknowledge("b", [(10, 19, [RELEASE])], 0) == NONE
    sp.reset_start(15)
    assert sp.start_offset == 15
    # a's ACQUIRED 0-9 stay until released; 10-14 were archived and dropped
    assert view(sp) == [(0, 9, ACQUIRED, 1, "a"), (15, 19, AVAILABLE, 1, None)]
    assert sp.in_flight() == 5
    assert sp.next_fetch_offset() == 15
    assert sp.acknowledge("a", [(0, 9, [ACCEPT])], 0) == NONE  # below the SPSO: skipped
    assert sp.release_member("a", 0) == 10  # archived whatever their count
    assert view(sp) == [(15, 19, AVAILABLE, 1, None)]
    sp.reset_start(10)  # never backwards
    assert sp.start_offset == 15
    sp.reset_start(50)
    assert sp.start_offset == 50
    assert sp.ranges() == ()
    assert sp.next_fetch_offset() == 50


def test_reset_start_inside_an_acquired_range():
    sp = new()
    fetch(sp, "a", log(10, 10))
    sp.reset_start(5)
    assert sp.start_offset == 5
    assert sp.in_flight() == 15
    assert sp.acknowledge("a", [(0, 9, [ACCEPT])], 0) == NONE  # 5-9 accepted
    assert sp.start_offset == 10
    assert sp.expire_locks(LOCK) == 15  # 0-4 archived (below the SPSO), 10-19 available
    assert view(sp) == [(10, 19, AVAILABLE, 1, None)]


def test_compaction_holes_are_skipped():
    sp = new()
    b = [LogBatch(0, 9), LogBatch(20, 29), LogBatch(30, 34)]
    assert spans(fetch(sp, "a", b)) == [(0, 9, 1), (20, 34, 1)]
    assert sp.in_flight() == 35
    # an acknowledgement over the hole ignores it, as Kafka's ignores offsets not cached
    assert sp.acknowledge("a", [(5, 25, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 0
    assert sp.acknowledge("a", [(0, 4, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 26
    assert sp.acknowledge("a", [(26, 34, [ACCEPT])], 0) == NONE
    assert sp.start_offset == 35


def test_a_leading_hole_moves_the_spso():
    sp = new()
    assert spans(fetch(sp, "a", [LogBatch(10, 19)])) == [(10, 19, 1)]
    assert sp.start_offset == 10
    assert sp.in_flight() == 10


def test_available_records_gone_from_the_log_are_archived():
    sp = new()
    b = log(10, 10, 10, 10)
    fetch(sp, "a", b)
    assert sp.acknowledge("a", [(0, 39, [RELEASE])], 0) == NONE
    compacted = [b[0], b[3]]  # 10-29 compacted away
    assert spans(sp.acquire("b", compacted, 500, 500, 40, 0)) == [(0, 9, 2), (30, 39, 2)]
    assert view(sp) == [
        (0, 9, ACQUIRED, 2, "b"),
        (10, 29, ARCHIVED, 1, None),
        (30, 39, ACQUIRED, 2, "b"),
    ]
    # in front of the first batch: only with fetch_offset
    sp = new()
    fetch(sp, "a", b)
    sp.release_member("a", 0)
    assert spans(sp.acquire("b", b[3:], 500, 500, 40, 0)) == [(30, 39, 2)]
    assert sp.next_fetch_offset() == 0  # 0-29 kept: the read may have started at 30
    assert sp.acquire("b", b[3:], 500, 500, 40, 0, fetch_offset=0) == []
    assert sp.start_offset == 30
    assert view(sp) == [(30, 39, ACQUIRED, 2, "b")]


# --- poison records -----------------------------------------------------------------------------------


def test_throttled_redelivery_halves_then_isolates():
    sp = new(limit=5)  # throttle at count 3, alone at count 4
    b = log(8, 8)
    for count in (1, 2):
        assert spans(fetch(sp, "a", b[:1])) == [(0, 7, count)]
        sp.release_member("a", 0)
    # count 2 < 3: a normal delivery, new records included
    assert spans(fetch(sp, "a", b)) == [(0, 7, 3), (8, 15, 1)]
    sp.release_member("a", 0)
    # count 3 reached: half of the run, nothing else
    assert spans(fetch(sp, "a", b)) == [(0, 3, 4)]
    sp.release_member("a", 0)
    deliveries = []
    for _ in range(4):  # each record on its last delivery goes alone
        deliveries += spans(fetch(sp, "a", b))
        sp.release_member("a", 0)
    assert deliveries == [(0, 0, 5), (1, 1, 5), (2, 2, 5), (3, 3, 5)]
    assert sp.start_offset == 4
    assert spans(fetch(sp, "a", b)) == [(4, 5, 4)]  # run 4-7 at count 3: 4 >> 1


def test_throttled_records_are_not_delivered_with_records_before_them():
    sp = new(limit=5)
    b = log(4, 4)
    fetch(sp, "a", b[:1])
    fetch(sp, "b", b)  # 4-7
    sp.release_member("b", 0)
    for _ in range(2):
        fetch(sp, "b", b)
        sp.release_member("b", 0)
    assert view(sp)[1] == (4, 7, AVAILABLE, 3, None)
    assert sp.acknowledge("a", [(0, 3, [RELEASE])], 0) == NONE
    assert spans(fetch(sp, "c", b)) == [(0, 3, 2)]  # stops in front of 4-7
    assert spans(fetch(sp, "c", b)) == [(4, 5, 4)]


def test_no_throttling_at_limit_2():
    sp = new(limit=2)
    b = log(6)
    fetch(sp, "a", b)
    sp.release_member("a", 0)
    assert spans(fetch(sp, "a", b)) == [(0, 5, 2)]


# --- cost -----------------------------------------------------------------------------------------------


def test_the_range_list_stays_small_and_cheap():
    # Batch 0 stays ACQUIRED, so nothing is dropped: the acknowledged records behind it, acked
    # per offset or whole, must stay one range.
    sp = new(locks=1_000_000)
    batches = log(*[100] * 1000)  # 100k records
    t0 = time.perf_counter()
    for now, i in enumerate(range(1000)):
        f = sp.next_fetch_offset()
        got = sp.acquire(f"m{i % 3}", batches[i : i + 5], 100, 100, 100_000, now, fetch_offset=f)
        assert spans(got) == [(i * 100, i * 100 + 99, 1)]
        if i == 0:
            continue
        types = [ACCEPT] * 100 if i % 2 else [ACCEPT]
        assert sp.acknowledge(f"m{i % 3}", [(i * 100, i * 100 + 99, types)], now) == NONE
        assert len(sp.ranges()) <= 2
        assert sp.start_offset == 0
    assert sp.delivery_complete_count() == 99_900
    assert sp.acknowledge("m0", [(0, 99, [REJECT, ACCEPT] * 50)], LOCK - 1) == NONE
    assert sp.start_offset == 100_000
    assert sp.ranges() == ()
    assert time.perf_counter() - t0 < 3.0  # about 0.1 s here


# --- properties ---------------------------------------------------------------------------------------

MEMBERS = st.sampled_from(["m1", "m2", "m3"])
ACK_TYPES = st.sampled_from([GAP, ACCEPT, RELEASE, REJECT])


class ShareMachine(RuleBasedStateMachine):
    """Random acquire/ack/release/expire/restart/compaction/log-start moves for three members,
    checked against a model of who holds what and how often each offset was delivered."""

    @initialize(limit=st.integers(2, 6), locks=st.integers(4, 40))
    def setup(self, limit: int, locks: int) -> None:
        self.cfg = ShareConfig(limit, LOCK, locks)
        self.sp = SharePartition(self.cfg, PersistedState(0, ()))
        self.log: list[LogBatch] = []
        self.hwm = 0
        self.log_start = 0
        self.now = 0
        self.held: dict[int, tuple[str, int]] = {}  # offset -> (member, lock deadline)
        self.deliveries: dict[int, int] = {}  # offset -> current delivery count
        self.done: set[int] = set()  # offsets that may never be acquired again
        self.accepted: set[int] = set()
        self.rejected: set[int] = set()
        self.spso = 0
        self.max_batch = 1

    # -- helpers --

    def present(self, o: int) -> bool:
        return o >= self.log_start and any(b.base_offset <= o <= b.last_offset for b in self.log)

    def model_expire(self, now: int) -> int:
        gone = [o for o, (_, d) in self.held.items() if d <= now]
        self.model_release(gone)
        return len(gone)

    def model_release(self, offsets: list[int]) -> None:
        spso = self.sp.start_offset
        for o in offsets:
            del self.held[o]
            if o < spso or self.deliveries[o] >= self.cfg.delivery_count_limit:
                self.done.add(o)

    def tick(self, dt: int) -> None:
        self.now += dt
        assert self.sp.expire_locks(self.now) == self.model_expire(self.now)

    # -- rules --

    @rule(size=st.integers(1, 6), control=st.booleans())
    def produce(self, size: int, control: bool) -> None:
        self.log.append(LogBatch(self.hwm, self.hwm + size - 1, control and size == 1))
        self.hwm += size
        self.max_batch = max(self.max_batch, size)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        if len(self.log) < 2:
            return
        i = data.draw(st.integers(0, len(self.log) - 2))  # never the last batch
        del self.log[i]

    @rule(new_start=st.integers(0, 10))
    def move_log_start(self, new_start: int) -> None:
        start = min(self.hwm, self.log_start + new_start)
        if start <= self.log_start:
            return
        self.log_start = start
        self.log = [b for b in self.log if b.last_offset >= start]
        self.sp.reset_start(start)
        for o in range(self.spso, start):
            if o not in self.held:
                self.done.add(o)

    @rule(
        member=MEMBERS,
        max_records=st.integers(1, 20),
        batch_size=st.integers(1, 20),
        max_batches=st.integers(1, 6),
        dt=st.integers(0, 300),
    )
    def fetch(
        self, member: str, max_records: int, batch_size: int, max_batches: int, dt: int
    ) -> None:
        self.tick(dt)
        sp = self.sp
        f = sp.next_fetch_offset()
        batches = read(self.log, max(f, self.log_start), max_batches)
        at_cap = sp.in_flight() >= self.cfg.max_record_locks
        speo = max((r.last_offset for r in sp.ranges()), default=sp.start_offset - 1)
        acquirable = sp.acquirable(self.hwm)
        got = sp.acquire(
            member, batches, max_records, batch_size, self.hwm, self.now, fetch_offset=f
        )
        if not acquirable:
            assert got == []
        prev = -1
        total = 0
        for a in got:
            assert prev < a.first_offset <= a.last_offset
            prev = a.last_offset
            assert 1 <= a.delivery_count <= self.cfg.delivery_count_limit
            for o in range(a.first_offset, a.last_offset + 1):
                assert o not in self.held, f"{o} acquired twice"
                assert o not in self.done, f"{o} acquired after being done"
                assert self.present(o), f"{o} is not in the log"
                assert o < self.hwm
                if at_cap:
                    assert o <= speo, "new records acquired at the in-flight cap"
                self.deliveries[o] = self.deliveries.get(o, 0) + 1
                assert a.delivery_count == self.deliveries[o]
                self.held[o] = (member, self.now + LOCK)
                total += 1
        # soft limit: only the batch holding the limit goes past it
        assert total - max_records < self.max_batch

    @rule(member=MEMBERS, data=st.data())
    def ack(self, member: str, data: st.DataObject) -> None:
        self.tick(data.draw(st.integers(0, 300)))
        spso = self.sp.start_offset
        mine = sorted(o for o, (m, _) in self.held.items() if m == member)
        runs: list[list[int]] = []
        for o in mine:
            if runs and runs[-1][-1] == o - 1:
                runs[-1].append(o)
            else:
                runs.append([o])
        chosen = sorted(data.draw(st.sets(st.integers(0, len(runs) - 1))) if runs else set())
        batches = []
        effects: dict[int, int] = {}
        for k in chosen:
            run = runs[k]
            i = data.draw(st.integers(0, len(run) - 1))
            j = data.draw(st.integers(i, len(run) - 1))
            first, last = run[i], run[j]
            if data.draw(st.booleans()):
                types = [data.draw(ACK_TYPES)]
                effects |= {o: types[0] for o in range(first, last + 1)}
            else:
                types = [data.draw(ACK_TYPES) for _ in range(first, last + 1)]
                effects |= {o: t for o, t in zip(range(first, last + 1), types, strict=True)}
            batches.append((first, last, types))
        assert self.sp.acknowledge(member, batches, self.now) == NONE
        released = []
        for o, t in effects.items():
            if o < spso:
                continue  # skipped
            if t == RELEASE:
                released.append(o)
                continue
            del self.held[o]
            self.done.add(o)
            (self.accepted if t == ACCEPT else self.rejected).add(o)
        self.model_release(released)

    @rule(member=MEMBERS, kind=st.integers(0, 5), data=st.data())
    def bad_ack(self, member: str, kind: int, data: st.DataObject) -> None:
        self.tick(0)
        sp = self.sp
        spso = sp.start_offset
        ranges = sp.ranges()
        mine = sorted(o for o, (m, _) in self.held.items() if m == member and o >= spso)
        prefix = [(mine[0], mine[0], [ACCEPT])] if mine and data.draw(st.booleans()) else []
        after = prefix[0][1] + 1 if prefix else 0
        if kind == 0:  # another member's record
            others = [o for o, (m, _) in self.held.items() if m != member and o >= max(spso, after)]
            if not others:
                return
            o = data.draw(st.sampled_from(others))
            batches, expected = [(o, o, [ACCEPT])], INVALID_RECORD_STATE
        elif kind == 1:  # a cached record that is not ACQUIRED (and not a hole)
            idle = [
                o
                for r in ranges
                if r.state != ACQUIRED and not (r.state == ARCHIVED and r.delivery_count == 0)
                for o in range(max(r.first_offset, spso, after), r.last_offset + 1)
            ]
            if not idle:
                return
            o = data.draw(st.sampled_from(idle))
            batches, expected = [(o, o, [ACCEPT])], INVALID_RECORD_STATE
        elif kind == 2:  # past what was ever acquired
            end = max([r.last_offset for r in ranges] + [spso - 1])
            o = max(end + 1, after) + data.draw(st.integers(0, 3))
            expected = INVALID_REQUEST if ranges else INVALID_RECORD_STATE
            batches = [(o, o + data.draw(st.integers(0, 3)), [ACCEPT])]
        elif kind == 3:  # an unknown type
            o = max(spso, after)
            batches, expected = (
                [(o, o, [data.draw(st.sampled_from([-1, 4, 5, 127]))])],
                INVALID_REQUEST,
            )
        elif kind == 4:  # first > last
            batches, expected = [(after + 5, after + 4, [ACCEPT])], INVALID_REQUEST
        else:  # types count mismatch
            batches, expected = [(after, after + 3, [ACCEPT, ACCEPT])], INVALID_REQUEST
        before = sp.ranges()
        assert sp.acknowledge(member, prefix + batches, self.now) == expected
        assert sp.ranges() == before
        assert sp.start_offset == spso

    @rule(member=MEMBERS, dt=st.integers(0, 300))
    def release(self, member: str, dt: int) -> None:
        self.tick(dt)
        mine = [o for o, (m, _) in self.held.items() if m == member]
        assert self.sp.release_member(member, self.now) == len(mine)
        self.model_release(mine)

    @rule(dt=st.integers(0, 1500))
    def wait(self, dt: int) -> None:
        self.tick(dt)

    @rule()
    def restart(self) -> None:
        spso = self.sp.start_offset
        state = self.sp.state()
        for b in state.batches:
            assert b.delivery_state in (AVAILABLE, ACKNOWLEDGED, ARCHIVED)
            assert b.first_offset >= state.start_offset
        self.sp = SharePartition(self.cfg, state)
        assert self.sp.start_offset >= spso
        for o in list(self.held):
            if o >= spso:
                self.deliveries[o] -= 1  # the delivery in flight was never written
            else:
                self.done.add(o)
        self.held.clear()

    # -- invariants --

    @invariant()
    def consistent(self) -> None:
        sp = self.sp
        spso = sp.start_offset
        assert spso >= self.spso, "the SPSO went backwards"
        self.spso = spso
        ranges = sp.ranges()
        acquired: dict[int, tuple[str, int]] = {}
        complete = 0
        prev = -1
        for r in ranges:
            assert prev < r.first_offset <= r.last_offset
            prev = r.last_offset
            assert 0 <= r.delivery_count <= self.cfg.delivery_count_limit
            for o in range(r.first_offset, r.last_offset + 1):
                if r.state == ACQUIRED:
                    assert r.member_id is not None and r.lock_deadline_ms is not None
                    acquired[o] = (r.member_id, r.lock_deadline_ms)
                    continue
                assert o >= spso, "only ACQUIRED records are kept below the SPSO"
                if r.state == AVAILABLE:
                    assert o not in self.done
                    assert r.delivery_count == self.deliveries.get(o, 0)
                else:
                    complete += 1
                    self.done.add(o)
        assert acquired == self.held
        assert sp.delivery_complete_count() == complete
        self.done.update(o for o in range(spso) if o not in self.held)
        nfo = sp.next_fetch_offset()
        assert nfo >= spso
        speo = ranges[-1].last_offset if ranges else spso - 1
        assert sp.in_flight() == max(0, speo - spso + 1)
        if sp.in_flight():
            # gaps between ranges only below the SPSO
            covered = {o for r in ranges for o in range(r.first_offset, r.last_offset + 1)}
            assert all(o in covered for o in range(spso, speo + 1))
        # nothing lost: every record of the log below the high watermark is done, or cached
        # AVAILABLE/ACQUIRED, or past SPEO (still to be fetched)
        for o in range(self.log_start, self.hwm):
            if self.present(o) and o not in self.done:
                assert (
                    o in self.held
                    or o > speo
                    or any(
                        r.first_offset <= o <= r.last_offset and r.state == AVAILABLE
                        for r in ranges
                    )
                )

    def teardown(self) -> None:
        if not hasattr(self, "sp"):
            return
        # Drain: every lock runs out, a fresh member takes and accepts everything.
        for _ in range(10 * self.hwm + 20):
            if self.sp.start_offset >= self.hwm and not self.sp.ranges():
                break
            self.tick(LOCK)
            self.fetch("drain", 1000, 1000, 1000, 0)
            mine = sorted(o for o, (m, _) in self.held.items() if m == "drain")
            if mine:
                assert (
                    self.sp.acknowledge("drain", [(o, o, [ACCEPT]) for o in mine], self.now) == NONE
                )
                for o in mine:
                    del self.held[o]
                    self.accepted.add(o)
        assert self.sp.start_offset == self.hwm
        assert self.sp.ranges() == ()
        for o in range(self.log_start, self.hwm):
            if self.present(o):
                assert (
                    o in self.accepted
                    or o in self.rejected
                    or self.deliveries.get(o, 0) >= self.cfg.delivery_count_limit
                ), f"record {o} was archived without a reason"


ShareMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_share_partition_state_machine = ShareMachine.TestCase
