"""Recovery after a crash: torn tails, flipped bytes, damaged or missing indexes, half-done
cleaner swaps. The log must load, serve everything before the damage and nothing after."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom.log.config import LogConfig
from strom.log.partition import PartitionLog
from strom.log.segment import CLEANED_SUFFIX, SWAP_SUFFIX, segment_name

from .helpers import NOW, append, batch, read_values, values

SMALL = LogConfig(segment_bytes=2048, index_interval_bytes=100)


def fill(log: PartitionLog, n: int) -> list[tuple[int, bytes]]:
    for i in range(n):
        append(log, batch(f"record-{i:05d}".encode() * 4))
    return values(log)


def crash(log: PartitionLog) -> None:
    """Drop the log without sealing or flushing: what a kill -9 leaves (page cache kept)."""
    for segment in log.segments:
        segment.index.write_pending()
        segment.time_index.write_pending()
        segment.txn_index.close()  # its entries are written at once: nothing is lost
        os.close(segment.fd)
        segment.closed = True


def reopen(tmp_path: Path, config: LogConfig = SMALL, **kwargs) -> PartitionLog:
    kwargs.setdefault("clean_shutdown", False)
    return PartitionLog(tmp_path / "t-0", "t", 0, config, now_ms=NOW, **kwargs)


def test_unflushed_crash_recovers_everything_written(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 120)
    crash(log)
    again = reopen(tmp_path)
    assert values(again) == expected
    assert again.log_end_offset == 120
    assert append(again, batch(b"next")).base_offset == 120


def test_torn_tail_mid_batch_is_cut(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 50)
    last = log.active
    crash(log)
    with open(last.path, "r+b") as f:
        f.truncate(last.size - 7)
    again = reopen(tmp_path)
    assert values(again) == expected[:-1]
    assert again.log_end_offset == 49
    assert append(again, batch(b"after")).base_offset == 49
    assert values(again)[-1] == (49, b"after")


def test_zeros_after_the_last_batch_are_cut(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 10)
    path = log.active.path
    crash(log)
    with open(path, "ab") as f:
        f.write(bytes(4096))
    again = reopen(tmp_path)
    assert values(again) == expected
    assert again.active.size == os.path.getsize(path)


def test_flipped_byte_in_a_middle_segment_drops_it_and_everything_after(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 200)
    victim = log.segments[2]
    first_lost = victim.base_offset + 1  # damage the second batch of that segment
    second = victim.find(first_lost)
    crash(log)
    with open(victim.path, "r+b") as f:
        f.seek(second.position + 70)  # inside the records: covered by the CRC
        byte = f.read(1)
        f.seek(second.position + 70)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = reopen(tmp_path, recovery_point=0)
    assert values(again) == expected[:first_lost]
    assert again.log_end_offset == first_lost
    assert len(again.segments) == 3


def test_clean_segments_below_the_recovery_point_are_not_rescanned(open_log, tmp_path):
    log = open_log(SMALL)
    fill(log, 200)
    log.flush(NOW)
    recovery_point = log.recovery_point
    early = log.segments[1]
    crash(log)
    # Damage below the recovery point is not looked for (that data was fsynced), as in Kafka.
    with open(early.path, "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    again = reopen(tmp_path, recovery_point=recovery_point)
    assert again.log_end_offset == 200


def test_deleted_index_is_rebuilt(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 150)
    entries = [(list(s.index.relative_offsets), list(s.index.positions)) for s in log.segments]
    log.close()
    for suffix in (".index", ".timeindex"):
        (tmp_path / "t-0" / segment_name(log.segments[1].base_offset, suffix)).unlink()
    again = reopen(tmp_path, clean_shutdown=True)
    assert values(again) == expected
    assert [(list(s.index.relative_offsets), list(s.index.positions)) for s in again.segments] == entries
    assert read_values(again, 30)[0] == expected[30]


def test_truncated_and_garbage_indexes_are_rebuilt(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 150)
    log.close()
    seg0, seg1 = log.segments[0], log.segments[1]
    with open(seg0.index.path, "r+b") as f:
        f.truncate(os.path.getsize(seg0.index.path) - 3)  # torn mid-entry
    with open(seg1.index.path, "r+b") as f:
        f.write(b"\x00\x00\x00\x05\x00\x00\x00\x07")  # a position that is no batch start
    again = reopen(tmp_path, clean_shutdown=True)
    assert values(again) == expected
    for offset in range(0, 150, 7):
        assert read_values(again, offset)[0] == expected[offset]


def test_leftover_cleaned_files_are_removed(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 40)
    log.close()
    junk = tmp_path / "t-0" / segment_name(0, ".log" + CLEANED_SUFFIX)
    junk.write_bytes(b"partial")
    again = reopen(tmp_path, clean_shutdown=True)
    assert not junk.exists()
    assert values(again) == expected


def test_interrupted_swap_is_completed(open_log, tmp_path):
    log = open_log(SMALL)
    fill(log, 60)
    base = log.segments[1].base_offset
    replacement = batch(b"compacted")
    log.close()
    directory = tmp_path / "t-0"
    # A complete swap segment holding one batch at the old segment's base offset.
    data = bytearray(replacement)
    data[0:8] = base.to_bytes(8, "big")
    (directory / segment_name(base, ".log" + SWAP_SUFFIX)).write_bytes(bytes(data))
    again = reopen(tmp_path, clean_shutdown=True)
    assert not list(directory.glob("*" + SWAP_SUFFIX))
    assert (base, b"compacted") in values(again)
    assert again.log_end_offset == 60


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 60),
    cut=st.floats(0, 1),
    flip=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.floats(0, 1))),
)
def test_any_damage_leaves_a_prefix(tmp_path_factory, count, cut, flip):
    """Cut the log anywhere and flip a byte the CRC covers (base offset and leader epoch lie
    outside it, as in Kafka): what loads is a prefix of what was written."""
    directory = tmp_path_factory.mktemp("fuzz")
    log = PartitionLog(directory / "t-0", "t", 0, SMALL, now_ms=NOW)
    expected = fill(log, count)
    batches = [(s.path, b.position, b.header.size) for s in log.segments for b in s.batches()]
    paths = [s.path for s in log.segments]
    crash(log)
    if flip is not None:
        path, position, size = batches[int(flip[0] * (len(batches) - 1))]
        spot = position + 16 + int(flip[1] * (size - 17))
        with open(path, "r+b") as f:
            f.seek(spot)
            byte = f.read(1)
            f.seek(spot)
            f.write(bytes([byte[0] ^ 0x5A]))
    total = sum(os.path.getsize(p) for p in paths)
    position = int(cut * total)
    for path in paths:  # cut the concatenated log at `position`
        size = os.path.getsize(path)
        if position < size:
            with open(path, "r+b") as f:
                f.truncate(position)
        position = max(0, position - size)
    again = PartitionLog(directory / "t-0", "t", 0, SMALL, now_ms=NOW, clean_shutdown=False)
    got = values(again)
    assert got == expected[: len(got)]
    # A later segment that survived keeps its base offset (a gap, as compaction leaves too).
    assert again.log_end_offset >= (got[-1][0] + 1 if got else 0)
    assert append(again, batch(b"after")).base_offset == again.log_end_offset - 1
    again.close()


def test_base_offset_out_of_the_segment_range_is_damage(open_log, tmp_path):
    log = open_log(SMALL)
    expected = fill(log, 5)
    second = log.active.find(1)
    path = log.active.path
    crash(log)
    with open(path, "r+b") as f:
        f.seek(second.position)
        f.write(b"\x5a")  # the top byte of the base offset
    again = reopen(tmp_path)
    assert values(again) == expected[:1]
