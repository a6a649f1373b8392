"""Log compaction: newest record per key in closed segments, tombstones, safety of installs."""

from __future__ import annotations

import os

from strom.log import cleaner
from strom.log.config import LogConfig
from strom.log.partition import PartitionLog
from strom.protocol.records import COMPRESSION_LZ4, build_batch, decode_records, read_header

from .helpers import NOW, append

COMPACT = LogConfig(segment_bytes=1024, cleanup_policy="compact", index_interval_bytes=100)


def put(log: PartitionLog, key: str, value: bytes | None, timestamp: int = NOW, compression: int = 0) -> int:
    data = build_batch([(key.encode(), value, [], timestamp)], compression=compression)
    return append(log, data).base_offset


def compact(log: PartitionLog, now_ms: int = NOW, first_dirty: int = 0) -> cleaner.CleanResult | None:
    plan = cleaner.plan(log, first_dirty, now_ms, force=True)
    if plan is None:
        return None
    result = cleaner.clean(plan)
    cleaner.install(result)
    return result


def keyed(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record."""
    out = []
    for segment, position, header in log.batches(0):
        for record in decode_records(os.pread(segment.fd, header.size, position)):
            out.append((record.offset, record.key, record.value))
    return out


def test_keeps_the_newest_record_per_key_and_their_offsets(open_log):
    log = open_log(COMPACT)
    latest = {}
    for i in range(300):
        key = f"k{i % 10}"
        latest[key] = (put(log, key, f"{key}-v{i}".encode() * 3), f"{key}-v{i}".encode() * 3)
    end = log.log_end_offset
    active_before = log.active.size
    result = compact(log)
    assert result is not None and result.bytes_after < result.bytes_before
    records = keyed(log)
    closed = [r for r in records if r[0] < log.active.base_offset]
    assert len({k for _, k, _ in closed}) == len(closed)  # one record per key in closed segments
    for offset, key, _value in closed:
        newest_offset, _ = latest[key.decode()]
        assert offset <= newest_offset
    for key, (offset, value) in latest.items():
        assert (offset, key.encode(), value) in records
    assert log.log_end_offset == end and log.active.size == active_before
    offsets = [r[0] for r in records]
    assert offsets == sorted(offsets)


def test_cleaned_log_survives_reopen(open_log, tmp_path):
    log = open_log(COMPACT)
    for i in range(200):
        put(log, f"k{i % 5}", b"x" * 40)
    compact(log)
    expected = keyed(log)
    log.close()
    again = open_log(COMPACT)
    assert keyed(again) == expected
    assert not list((tmp_path / "t-0").glob("*.cleaned")) and not list((tmp_path / "t-0").glob("*.swap"))
    for offset, _, _ in expected[:5]:
        assert again.read(offset, 1 << 20).size > 0


def test_tombstones_are_kept_until_the_delete_horizon(open_log):
    config = COMPACT.replace(delete_retention_ms=60_000)
    log = open_log(config)
    put(log, "gone", b"value")
    tombstone = put(log, "gone", None)
    for i in range(100):
        put(log, f"other{i % 3}", b"y" * 60)
    compact(log, now_ms=NOW)
    gone = [r for r in keyed(log) if r[1] == b"gone"]
    assert gone == [(tombstone, b"gone", None)]
    header = next(h for s, p, h in log.batches(tombstone) if h.base_offset <= tombstone <= h.last_offset)
    assert header.delete_horizon_ms == NOW + 60_000
    compact(log, now_ms=NOW + 30_000)
    assert [r for r in keyed(log) if r[1] == b"gone"] == gone
    compact(log, now_ms=NOW + 60_001)
    assert [r for r in keyed(log) if r[1] == b"gone"] == []


def test_compressed_batches_keep_their_codec(open_log):
    log = open_log(COMPACT)
    for i in range(100):
        put(log, f"k{i % 4}", b"z" * 50, compression=COMPRESSION_LZ4)
    compact(log)
    for _segment, _position, header in log.batches(0):
        assert header.compression == COMPRESSION_LZ4


def test_min_compaction_lag_protects_recent_segments(open_log):
    log = open_log(COMPACT.replace(min_compaction_lag_ms=60_000))
    for i in range(100):
        put(log, f"k{i % 3}", b"w" * 60, timestamp=NOW)
    assert cleaner.plan(log, 0, NOW + 1000, force=True) is None
    assert cleaner.plan(log, 0, NOW + 120_000, force=True) is not None


def test_dirty_ratio_threshold(open_log):
    log = open_log(COMPACT.replace(min_cleanable_dirty_ratio=0.5))
    for i in range(100):
        put(log, f"k{i}", b"u" * 60)  # all distinct keys
    assert cleaner.plan(log, 0, NOW) is not None  # everything is dirty at first
    closed_end = log.active.base_offset
    assert cleaner.plan(log, closed_end, NOW) is None  # nothing dirty after a pass
    assert cleaner.plan(log, 0, NOW, force=False).first_uncleanable_offset == closed_end


def test_not_compacted_without_the_policy(open_log):
    log = open_log(LogConfig(segment_bytes=1024))
    for _i in range(50):
        put(log, "k", b"v" * 60)
    assert cleaner.plan(log, 0, NOW, force=True) is None


def test_install_skips_segments_that_changed_meanwhile(open_log):
    log = open_log(COMPACT)
    for i in range(200):
        put(log, f"k{i % 5}", b"s" * 40)
    plan = cleaner.plan(log, 0, NOW, force=True)
    result = cleaner.clean(plan)
    log.delete_records_before(log.segments[2].base_offset)  # the first segments go meanwhile
    installed = cleaner.install(result)
    assert 0 < installed < len(plan.segments)
    assert not list(log.directory.glob("*.cleaned"))
    offsets = [r[0] for r in keyed(log)]
    assert offsets == sorted(set(offsets))


def test_keyless_records_are_dropped(open_log):
    log = open_log(COMPACT)
    append(log, build_batch([(None, b"no key", [], NOW)]))
    for _i in range(60):
        put(log, "k", b"t" * 60)
    compact(log)
    assert all(key is not None for _, key, _ in keyed(log))


def test_emptied_segment_keeps_its_place(open_log):
    log = open_log(COMPACT)
    for i in range(100):
        put(log, "same", f"{i}".encode() * 30)
    first_base = log.segments[0].base_offset
    compact(log)
    assert log.segments[0].base_offset == first_base == log.log_start_offset
    assert log.segments[0].size == 0
    assert read_header(log.read_bytes(0)).base_offset > 0  # reads skip to the next record


def test_max_compaction_lag_cleans_below_the_dirty_ratio(open_log):
    log = open_log(COMPACT.replace(min_cleanable_dirty_ratio=0.99, max_compaction_lag_ms=60_000))
    for i in range(40):
        put(log, f"k{i % 4}", b"m" * 60, timestamp=NOW)
    first_dirty = log.segments[1].base_offset  # only part of the log is dirty
    assert cleaner.plan(log, first_dirty, NOW + 1_000) is None
    assert cleaner.plan(log, first_dirty, NOW + 120_000) is not None
