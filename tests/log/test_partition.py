"""PartitionLog: append, read, roll, retention, DeleteRecords, truncation, flush, reopen."""

from __future__ import annotations

import os

import pytest

from strom.log.config import LogConfig
from strom.log.partition import OffsetOutOfRange
from strom.log.segment import segment_name
from strom.protocol.records import COMPRESSION_ZSTD, read_header

from .helpers import NOW, append, batch, read_values, values

SMALL = LogConfig(segment_bytes=1024, index_interval_bytes=128)


def test_append_assigns_consecutive_offsets(open_log):
    log = open_log()
    first = append(log, batch(b"a", b"b", b"c"))
    second = append(log, batch(b"d"))
    assert (first.base_offset, first.last_offset) == (0, 2)
    assert (second.base_offset, second.last_offset) == (3, 3)
    assert log.log_end_offset == log.high_watermark == 4
    assert values(log) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]


def test_batches_are_stored_as_received_with_offset_patched(open_log):
    log = open_log()
    append(log, batch(b"x"))
    original = batch(b"y", b"z", compression=COMPRESSION_ZSTD)
    append(log, original)
    stored = log.read_bytes(1)
    header = read_header(stored)
    assert header.base_offset == 1
    # Everything from the partition leader epoch's end on is byte-identical (CRC untouched).
    assert stored[16:] == original[16:]


def test_read_returns_regions_from_the_batch_holding_the_offset(open_log):
    log = open_log()
    for i in range(10):
        append(log, batch(f"v{i}a".encode(), f"v{i}b".encode()))
    assert read_values(log, 7)[0] == (7, b"v3b")
    assert read_values(log, 20) == []
    result = log.read(0, 1)  # smaller than one batch: the first batch still comes whole
    assert result.size == read_header(log.read_bytes(0)).size
    assert log.read(0, 1, min_one_batch=False).size == 1


def test_read_stops_at_max_offset(open_log):
    log = open_log()
    for i in range(5):
        append(log, batch(f"v{i}".encode()))
    result = log.read(0, 1 << 20, max_offset=3)
    data = os.pread(result.regions[0].fd, result.size, result.regions[0].position)
    offsets = []
    pos = 0
    while pos < len(data):
        header = read_header(data, pos)
        offsets.append(header.base_offset)
        pos += header.size
    assert offsets == [0, 1, 2]


def test_out_of_range_reads(open_log):
    log = open_log()
    append(log, batch(b"a", b"b"))
    with pytest.raises(OffsetOutOfRange):
        log.read(3, 100)
    assert log.read(2, 100).size == 0  # the log end itself is a valid, empty position
    log.delete_records_before(1)
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)


def test_segments_roll_on_segment_bytes_and_reads_cross_them(open_log):
    log = open_log(SMALL)
    for i in range(200):
        append(log, batch(f"value-{i:04d}".encode() * 3))
    assert len(log.segments) > 5
    for segment in log.segments[:-1]:
        assert segment.size <= SMALL.segment_bytes
        assert segment.path.name == segment_name(segment.base_offset)
    offsets = [o for o, _ in values(log)]
    assert offsets == list(range(200))
    # Every offset is readable through the index, in whichever segment it lives.
    for offset in (0, 1, 57, 123, 199):
        assert read_values(log, offset)[0] == (offset, f"value-{offset:04d}".encode() * 3)


def test_segment_ms_rolls_by_record_timestamps(open_log):
    log = open_log(LogConfig(segment_ms=1000))
    append(log, batch(b"a", timestamp=NOW))
    append(log, batch(b"b", timestamp=NOW + 500))
    assert len(log.segments) == 1
    append(log, batch(b"c", timestamp=NOW + 1500))
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_sparse_index_entries_every_interval(open_log):
    log = open_log(LogConfig(index_interval_bytes=256))
    for _i in range(100):
        append(log, batch(b"x" * 50))
    segment = log.active
    assert 10 < len(segment.index) < 50
    positions = list(segment.index.positions)
    assert positions == sorted(positions)
    for relative, position in zip(segment.index.relative_offsets, positions, strict=True):
        header = read_header(os.pread(segment.fd, 61, position))
        assert header.last_offset == relative  # entries map a batch's last offset to its start


def test_reopen_after_clean_close_keeps_everything(open_log):
    log = open_log(SMALL)
    for i in range(100):
        append(log, batch(f"{i}".encode() * 20))
    log.delete_records_before(10)
    expected = values(log)
    end, start = log.log_end_offset, log.log_start_offset
    log.close()
    again = open_log(SMALL, log_start_offset=start)
    assert (again.log_start_offset, again.log_end_offset) == (start, end)
    assert values(again) == expected
    append(again, batch(b"more"))
    assert values(again)[-1] == (end, b"more")


def test_time_based_retention_deletes_old_segments(open_log):
    log = open_log(LogConfig(segment_bytes=1024, retention_ms=60_000))
    for _i in range(50):
        append(log, batch(b"old" * 30, timestamp=NOW - 120_000))
    for _i in range(5):
        append(log, batch(b"new" * 30, timestamp=NOW))
    assert log.apply_retention(NOW) > 0
    # Whole segments go: the one holding the first new records survives with some old ones.
    assert all(NOW - s.max_timestamp <= 60_000 for s in log.segments)
    assert [o for o, v in values(log, log.log_start_offset) if v == b"new" * 30] == list(range(50, 55))
    assert log.log_start_offset == log.segments[0].base_offset > 0
    assert log.log_end_offset == 55


def test_time_based_retention_can_empty_the_log(open_log):
    log = open_log(LogConfig(retention_ms=1000))
    append(log, batch(b"a", b"b", timestamp=NOW - 5000))
    assert log.apply_retention(NOW) == 1
    assert log.log_start_offset == log.log_end_offset == 2
    assert values(log) == []
    assert append(log, batch(b"c")).base_offset == 2


def test_size_based_retention(open_log):
    log = open_log(LogConfig(segment_bytes=1024, retention_bytes=3000))
    for _i in range(100):
        append(log, batch(b"z" * 100))
    log.apply_retention(NOW)
    assert log.size_bytes - log.segments[0].size <= 3000
    assert log.size_bytes > 3000 - 1024
    assert log.log_start_offset == log.segments[0].base_offset > 0


def test_compact_policy_is_not_deleted_by_retention(open_log):
    log = open_log(LogConfig(segment_bytes=1024, retention_ms=1, cleanup_policy="compact"))
    for _i in range(30):
        append(log, batch(b"v" * 100, timestamp=NOW - 10_000))
    assert log.apply_retention(NOW) == 0


def test_delete_records_moves_log_start_and_drops_whole_segments(open_log):
    log = open_log(SMALL)
    for _i in range(100):
        append(log, batch(b"d" * 60))
    segments = len(log.segments)
    assert log.delete_records_before(50) == 50
    assert len(log.segments) < segments
    assert log.segments[0].base_offset <= 50
    assert read_values(log, 50)[0][0] == 50
    assert log.delete_records_before(10) == 50  # never backwards
    assert log.delete_records_before(-1) == 100  # -1 means the high watermark
    with pytest.raises(OffsetOutOfRange):
        log.delete_records_before(101)


def test_truncate_to(open_log):
    log = open_log(SMALL)
    for i in range(60):
        append(log, batch(f"{i}".encode() * 40))
    log.truncate_to(25)
    assert log.log_end_offset == 25
    assert [o for o, _ in values(log)] == list(range(25))
    assert append(log, batch(b"after")).base_offset == 25


def test_offset_for_timestamp_and_max_timestamp(open_log):
    log = open_log(SMALL)
    for i in range(40):
        append(log, batch(f"{i}".encode() * 30, timestamp=NOW + i * 10))
    assert log.offset_for_timestamp(NOW + 105) == (11, NOW + 110)
    assert log.offset_for_timestamp(0) == (0, NOW)
    assert log.offset_for_timestamp(NOW + 10_000) is None
    assert log.max_timestamp_offset() == (39, NOW + 390)


def test_flush_moves_the_recovery_point(open_log):
    log = open_log(LogConfig(flush_messages=3))
    append(log, batch(b"a"))
    assert not log.flush_due(NOW)
    append(log, batch(b"b", b"c"))
    assert log.flush_due(NOW)
    log.flush(NOW)
    assert log.recovery_point == 3 and not log.flush_due(NOW)


def test_flush_ms(open_log):
    log = open_log(LogConfig(flush_ms=1000))
    append(log, batch(b"a"))
    log.last_flush_ms = NOW
    assert not log.flush_due(NOW + 500)
    assert log.flush_due(NOW + 1000)


def test_log_append_time(open_log):
    log = open_log(LogConfig(message_timestamp_type="LogAppendTime"))
    info = append(log, batch(b"a", timestamp=5), now_ms=NOW + 7)
    assert info.log_append_time == NOW + 7
    header = read_header(log.read_bytes(0))
    assert header.timestamp_type == 1 and header.max_timestamp == NOW + 7


def test_segment_jitter_rolls_early_by_a_random_share(open_log):
    log = open_log(LogConfig(segment_ms=1000, segment_jitter_ms=400))
    append(log, batch(b"a", timestamp=NOW))
    assert 0 <= log.active.roll_jitter_ms < 400
    append(log, batch(b"b", timestamp=NOW + 1000 - log.active.roll_jitter_ms + 1))
    assert len(log.segments) == 2


def _scan_find(segment, offset):
    """find() by walking the file from the start: what the in-memory tail must agree with."""
    return next((b for b in segment.batches(0) if b.header.last_offset >= offset), None)


@pytest.mark.parametrize("interval", [128, 4096, 100_000, 1 << 30])
def test_find_from_the_tail_agrees_with_a_file_scan(open_log, interval):
    config = LogConfig(index_interval_bytes=interval, segment_bytes=1 << 30)
    log = open_log(config)
    for i in range(1500):  # 1500 batches: past the tail's cap with no index entry at all, or with one after it (100_000)
        append(log, batch(*[b"v"] * (1 + i % 3)))

    def agree(segment):
        end = segment.next_offset
        for offset in [*range(0, end, 97), *range(end - 40, end + 2)]:
            assert segment.find(offset) == _scan_find(segment, offset), offset

    agree(log.active)
    log.truncate_to(log.log_end_offset - 100)
    agree(log.active)
    log.close()
    agree(open_log(config).active)
