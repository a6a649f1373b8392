"""Transactions in one partition: the last stable offset, markers, the aborted-transaction
index (.txnindex) and its collection for read_committed fetches, recovery, and compaction."""

from __future__ import annotations

import os

import pytest

from strom.log import cleaner
from strom.log.config import LogConfig
from strom.log.partition import PartitionLog
from strom.log.producer_state import InvalidProducerEpoch, InvalidTxnState
from strom.log.txn_index import ENTRY_SIZE, AbortedTxn
from strom.protocol.records import (
    build_batch,
    decode_records,
    read_control_marker,
    validate_batches,
)

from .helpers import NOW, append, batch, read_values
from .test_recovery import crash

SMALL = LogConfig(segment_bytes=600, index_interval_bytes=100)
COMPACT = LogConfig(segment_bytes=600, index_interval_bytes=100, cleanup_policy="compact", delete_retention_ms=1000)


class Producer:
    """A transactional producer's batches, with sequences."""

    def __init__(self, producer_id: int, epoch: int = 0) -> None:
        self.producer_id, self.epoch, self.sequence = producer_id, epoch, 0

    def send(self, log: PartitionLog, *values: bytes, key: bytes = b"k") -> int:
        records = [(key, v, [], NOW) for v in values]
        data = build_batch(records, producer_id=self.producer_id, producer_epoch=self.epoch,
                           base_sequence=self.sequence, is_transactional=True)
        self.sequence += len(values)
        return log.append(data, validate_batches(data, 1 << 20), NOW).base_offset

    def end(self, log: PartitionLog, commit: bool) -> int:
        return log.append_control(self.producer_id, self.epoch, 5, commit, NOW).base_offset


def entries(log: PartitionLog) -> list[AbortedTxn]:
    return [e for segment in log.segments for e in segment.txn_index.entries]


def test_the_last_stable_offset_stops_at_the_oldest_open_transaction(open_log):
    log = open_log()
    append(log, batch(b"plain"))
    a, b = Producer(1), Producer(2)
    assert log.last_stable_offset == 1
    a.send(log, b"a1")  # offset 1
    b.send(log, b"b1")  # offset 2
    append(log, batch(b"plain-2"))
    assert (log.last_stable_offset, log.high_watermark) == (1, 4)
    assert read_values(log, 0) == [(0, b"plain"), (1, b"a1"), (2, b"b1"), (3, b"plain-2")]
    committed = log.read(0, 1 << 20, max_offset=log.last_stable_offset)
    assert committed.size > 0 and committed.upper_bound == 1
    a.end(log, commit=True)  # offset 4
    assert log.last_stable_offset == 2  # b is still open
    b.end(log, commit=False)  # offset 5
    assert log.last_stable_offset == log.high_watermark == 6
    assert log.producer_state.ongoing == {}


def test_an_abort_is_indexed_with_the_transactions_first_offset(open_log, tmp_path):
    log = open_log()
    a, b = Producer(1), Producer(2)
    a.send(log, b"a1")  # 0
    b.send(log, b"b1")  # 1
    a.send(log, b"a2")  # 2
    a.end(log, commit=False)  # 3: b (from 1) is still open
    b.end(log, commit=True)  # 4: commits are not indexed
    a.send(log, b"a3")  # 5
    a.end(log, commit=False)  # 6
    assert entries(log) == [AbortedTxn(1, 0, 3, 1), AbortedTxn(1, 5, 6, 7)]
    assert (tmp_path / "t-0" / "00000000000000000000.txnindex").stat().st_size == 2 * ENTRY_SIZE
    assert log.producer_state.producers[1].coordinator_epoch == 5
    marker = log.read_bytes(3)[: log.read(3, 1).size]
    assert read_control_marker(marker).control_type == 0 and read_control_marker(marker).coordinator_epoch == 5


def test_collecting_aborted_transactions_for_a_fetch(open_log):
    log = open_log(SMALL)
    a = Producer(1)
    spans = []
    for round_ in range(6):  # spreads over several segments
        first = a.send(log, b"x" * 60, b"y" * 60)
        spans.append((first, a.end(log, commit=round_ % 2 == 1)))
    assert len(log.segments) > 2
    aborted = [s for i, s in enumerate(spans) if i % 2 == 0]
    assert [(e.first_offset, e.last_offset) for e in entries(log)] == aborted
    every = log.aborted_transactions(0, log.high_watermark)
    assert [(e.first_offset, e.last_offset) for e in every] == aborted
    # From the middle of the second aborted transaction up to before the third.
    middle = log.aborted_transactions(aborted[1][0] + 1, aborted[2][0])
    assert [(e.first_offset, e.last_offset) for e in middle] == [aborted[1]]
    assert log.aborted_transactions(aborted[-1][1] + 1, log.high_watermark) == []


def test_non_transactional_writes_inside_a_transaction_and_old_marker_epochs_are_refused(open_log):
    log = open_log()
    a = Producer(1, epoch=3)
    a.send(log, b"t")
    plain = build_batch([(b"k", b"v", [], NOW)], producer_id=1, producer_epoch=3, base_sequence=1)
    with pytest.raises(InvalidTxnState):
        log.append(plain, validate_batches(plain, 1 << 20), NOW)
    with pytest.raises(InvalidProducerEpoch):
        log.append_control(1, 2, 0, True, NOW)
    log.append_control(1, 4, 0, False, NOW)  # a bumped epoch (the coordinator fenced it)
    assert log.producer_state.producers[1].epoch == 4 and log.last_stable_offset == log.high_watermark


def test_coordinator_appends_skip_sequence_checks(open_log):
    log = open_log()
    for _ in range(2):  # a coordinator writes every transactional batch with sequence 0
        data = build_batch([(b"k", b"v", [], NOW)], producer_id=9, producer_epoch=1, base_sequence=0, is_transactional=True)
        log.append(data, validate_batches(data, 1 << 20), NOW, from_client=False)
    assert log.log_end_offset == 2 and log.last_stable_offset == 0


def test_open_transactions_and_the_index_survive_a_clean_restart(open_log):
    log = open_log(SMALL)
    a, b = Producer(1), Producer(2)
    a.send(log, b"x" * 100)
    a.end(log, commit=False)
    first = b.send(log, b"y" * 100)
    for _ in range(5):
        append(log, batch(b"z" * 100))
    before = entries(log)
    log.close()
    again = open_log(SMALL)
    assert again.last_stable_offset == first and entries(again) == before
    b.end(again, commit=True)
    assert again.last_stable_offset == again.high_watermark


@pytest.mark.parametrize("flushed", [False, True])
def test_recovery_rebuilds_transaction_indexes_and_the_stable_offset(open_log, tmp_path, flushed):
    log = open_log(SMALL)
    a, b = Producer(1), Producer(2)
    a.send(log, b"a" * 100)  # a's transaction starts in the first segment ...
    for _ in range(6):
        append(log, batch(b"p" * 100))
    if flushed:  # recovery starts at a later segment, from the snapshot taken when it rolled
        log.flush()
    a.end(log, commit=False)  # ... and aborts in a later one
    open_first = b.send(log, b"b" * 100)
    for _ in range(3):
        append(log, batch(b"q" * 100))
    expected = entries(log)
    assert expected == [AbortedTxn(1, 0, 7, 8)]
    crash(log)
    for path in (tmp_path / "t-0").glob("*.txnindex"):
        path.write_bytes(path.read_bytes()[:-3])  # torn, as a crash may leave it
    recovery_point = log.recovery_point
    assert (recovery_point > 0) == flushed
    again = PartitionLog(tmp_path / "t-0", "t", 0, SMALL, now_ms=NOW, clean_shutdown=False, recovery_point=recovery_point)
    assert entries(again) == expected
    assert again.last_stable_offset == open_first
    b.end(again, commit=False)
    assert entries(again)[-1].first_offset == open_first


def test_truncation_forgets_the_aborts_after_it(open_log):
    log = open_log()
    a = Producer(1)
    a.send(log, b"1")
    a.end(log, commit=False)  # 1
    second = a.send(log, b"2")
    a.end(log, commit=False)  # 3
    log.truncate_to(second + 1)  # the second abort is gone; its transaction is open again
    assert entries(log) == [AbortedTxn(1, 0, 1, 2)]
    assert log.last_stable_offset == second


def test_deleted_records_keep_the_stable_offset_within_the_log(open_log):
    log = open_log()
    Producer(1).send(log, b"open")
    append(log, batch(b"after"))
    log.delete_records_before(2)
    assert log.last_stable_offset == log.log_start_offset == 2


# --- compaction ----------------------------------------------------------------------------------


def compact(log: PartitionLog, now_ms: int = NOW) -> None:
    plan = cleaner.plan(log, 0, now_ms, force=True)
    assert plan is not None
    cleaner.install(cleaner.clean(plan))


def visible(log: PartitionLog, committed: bool) -> dict[bytes, bytes]:
    """key -> value as a consumer sees it after compaction (read_committed drops aborted
    transactions the way a client does: by the aborted list and the markers)."""
    out: dict[bytes, bytes] = {}
    aborted = {(e.producer_id, e.first_offset): e for e in log.aborted_transactions(0, log.high_watermark)} if committed else {}
    skipping: set[int] = set()
    for segment, position, header in log.batches(0):
        data = os.pread(segment.fd, header.size, position)
        for (pid, first), _entry in list(aborted.items()):
            if first <= header.last_offset:
                skipping.add(pid)
                del aborted[(pid, first)]
        if header.is_control:
            skipping.discard(header.producer_id)
            continue
        if header.is_transactional and header.producer_id in skipping:
            continue
        for record in decode_records(data):
            if record.key is not None and record.value is not None:
                out[record.key] = record.value
    return out


def test_compaction_drops_aborted_data_and_never_lets_it_supersede_commits(open_log):
    log = open_log(COMPACT)
    a, b = Producer(1), Producer(2)
    for i in range(4):
        a.send(log, f"committed-{i}".encode() * 8, key=f"k{i}".encode())
    a.end(log, commit=True)
    for i in range(4):
        b.send(log, f"aborted-{i}".encode() * 8, key=f"k{i}".encode())
    b.end(log, commit=False)
    for i in range(12):
        append(log, batch(b"filler" * 15, key=f"f{i % 3}".encode()))
    before = visible(log, committed=True)
    compact(log)
    assert visible(log, committed=True) == before
    assert all(v.startswith(b"committed") for k, v in before.items() if k.startswith(b"k"))
    kept = [h for _s, _p, h in log.batches(0) if h.producer_id == 2 and not h.is_control]
    assert kept == []  # aborted data is gone; read_uncommitted no longer sees it either
    # Both markers remain on this pass (stamped with a delete horizon: their data is gone or
    # superseded later); after the horizon the abort marker and its index entry go too.
    compact(log, now_ms=NOW + 5_000)
    assert entries(log) == [] and visible(log, committed=True) == before
    markers = [h for _s, _p, h in log.batches(0) if h.is_control]
    assert [h.producer_id for h in markers] == [1]  # the commit still covers kept data


def test_compaction_stops_at_the_last_stable_offset(open_log):
    log = open_log(COMPACT)
    open_txn = Producer(1)
    for _ in range(10):
        append(log, batch(b"v" * 60, key=b"same"))
    first = open_txn.send(log, b"pending" * 10, key=b"same")
    for _ in range(10):
        append(log, batch(b"w" * 60, key=b"same"))
    plan = cleaner.plan(log, 0, NOW, force=True)
    assert plan is not None and plan.first_uncleanable_offset <= first
    cleaner.install(cleaner.clean(plan))
    assert any(h.producer_id == 1 for _s, _p, h in log.batches(0))
