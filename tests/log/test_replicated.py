"""A replicated PartitionLog (cluster mode): the high watermark moves only when told, leader
epochs are stamped and cached, followers copy batches verbatim, and LogManager checkpoints
high watermarks in replication-offset-checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strom.log.checkpoint import REPLICATION_OFFSET_CHECKPOINT, read_offsets, write_offsets
from strom.log.config import LogConfig
from strom.log.manager import LogManager
from strom.log.partition import PartitionLog
from strom.log.segment import LOG_SUFFIX, segment_name
from strom.protocol.records import build_batch, fetched_batches, read_header, validate_batches

from .helpers import NOW, append, batch, read_values, values
from .test_recovery import crash

CONFIG = LogConfig(segment_bytes=1024)


def ones(log: PartitionLog, count: int, tag: str = "v") -> None:
    """``count`` one-record batches."""
    for i in range(count):
        append(log, batch(f"{tag}{i}".encode()))


def begin_transaction(log: PartitionLog, producer_id: int, value: bytes) -> int:
    data = build_batch([(b"k", value, [], NOW)], producer_id=producer_id, producer_epoch=0, base_sequence=0,
                       is_transactional=True)
    return log.append(data, validate_batches(data, 1 << 20), NOW).base_offset


def epochs_of_batches(log: PartitionLog) -> list[tuple[int, int]]:
    """(base offset, partition leader epoch) of every stored batch, read back from the bytes."""
    data, out, pos = log.read_bytes(0), [], 0
    while pos < len(data):
        header = read_header(data, pos)
        out.append((header.base_offset, header.partition_leader_epoch))
        pos += header.size
    return out


@pytest.fixture
def other_log(tmp_path: Path):
    """other_log(name) -> a replicated PartitionLog in tmp_path/name (closed afterwards)."""
    opened: list[PartitionLog] = []

    def make(name: str) -> PartitionLog:
        log = PartitionLog(tmp_path / name, "t", 0, LogConfig(), now_ms=NOW, replicated=True)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close(flush=False)


# --- the high watermark ----------------------------------------------------------------------------


def test_appends_do_not_move_the_high_watermark(open_log):
    log = open_log(replicated=True)
    append(log, batch(b"a", b"b", b"c"))
    append(log, batch(b"d"))
    assert (log.log_end_offset, log.high_watermark, log.last_stable_offset) == (4, 0, 0)
    assert log.read(0, 1 << 20).size == 0  # consumers see nothing yet
    assert values(log) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]  # but it is all there


def test_a_control_marker_does_not_move_the_high_watermark(open_log):
    log = open_log(replicated=True)
    begin_transaction(log, 9, b"t")
    log.update_high_watermark(1)
    info = log.append_control(9, 0, 3, True, NOW)
    assert info.base_offset == 1
    assert (log.log_end_offset, log.high_watermark) == (2, 1)


def test_a_single_node_log_still_moves_it_on_append(open_log):
    log = open_log()
    append(log, batch(b"a", b"b"))
    assert log.high_watermark == 2


def test_update_high_watermark_moves_it_and_says_so(open_log):
    log = open_log(replicated=True)
    ones(log, 5)
    assert log.update_high_watermark(3) is True
    assert log.high_watermark == 3
    assert read_values(log, 0) == [(0, b"v0"), (1, b"v1"), (2, b"v2")]
    assert log.update_high_watermark(3) is False
    assert log.high_watermark == 3


def test_update_high_watermark_is_clamped_to_the_log(open_log):
    log = open_log(replicated=True)
    ones(log, 5)
    assert log.update_high_watermark(99) is True
    assert log.high_watermark == 5  # never past the log end
    assert log.update_high_watermark(6) is False  # clamped to 5: no move
    log.delete_records_before(2)
    log.truncate_to(2)
    assert (log.log_start_offset, log.high_watermark, log.log_end_offset) == (2, 2, 2)
    assert log.update_high_watermark(0) is False  # clamped up to the log start
    assert log.update_high_watermark(-1) is False
    assert log.high_watermark == 2


def test_the_last_stable_offset_stays_below_the_high_watermark_with_an_open_transaction(open_log):
    log = open_log(replicated=True)
    append(log, batch(b"plain"))  # 0
    assert begin_transaction(log, 7, b"open") == 1
    append(log, batch(b"after"))  # 2
    assert (log.last_stable_offset, log.high_watermark) == (0, 0)
    log.update_high_watermark(1)
    assert (log.last_stable_offset, log.high_watermark) == (1, 1)
    log.update_high_watermark(3)
    assert (log.last_stable_offset, log.high_watermark) == (1, 3)  # the open transaction holds it
    log.append_control(7, 0, 3, True, NOW)  # 3: committed, but the marker is not replicated yet
    assert (log.last_stable_offset, log.high_watermark, log.log_end_offset) == (3, 3, 4)
    log.update_high_watermark(4)
    assert (log.last_stable_offset, log.high_watermark) == (4, 4)


def test_the_high_watermark_given_at_open_is_clamped_to_the_log(open_log):
    log = open_log(replicated=True)
    ones(log, 5)
    log.close()
    assert open_log(replicated=True, high_watermark=3).high_watermark == 3
    assert open_log(replicated=True, high_watermark=50).high_watermark == 5
    assert open_log(replicated=True).high_watermark == 0  # nothing known committed
    assert open_log().high_watermark == 5  # single node: the log end


# --- leader epochs -----------------------------------------------------------------------------------


def test_a_replicated_log_starts_without_epochs(open_log):
    assert open_log(replicated=True).epochs.entries == []


def test_become_leader_stamps_its_epoch_and_records_where_it_starts(open_log):
    log = open_log(replicated=True)
    log.become_leader(5)
    assert log.epochs.entries == [(5, 0)]
    append(log, batch(b"a", b"b"))
    append(log, batch(b"c"))
    log.become_leader(7)
    append(log, batch(b"d"))
    assert epochs_of_batches(log) == [(0, 5), (2, 5), (3, 7)]
    assert log.epochs.entries == [(5, 0), (7, 3)]
    assert log.epochs.end_offset_for(5, log.log_end_offset) == (5, 3)
    assert log.epochs.end_offset_for(7, log.log_end_offset) == (7, 4)


def test_become_leader_with_an_old_epoch_records_nothing(open_log):
    log = open_log(replicated=True)
    log.become_leader(5)
    ones(log, 2)
    log.become_leader(5)
    log.become_leader(3)
    assert log.epochs.entries == [(5, 0)]


def test_control_markers_carry_the_leader_epoch(open_log):
    log = open_log(replicated=True)
    log.become_leader(2)
    begin_transaction(log, 4, b"t")
    log.become_leader(6)
    log.append_control(4, 0, 1, False, NOW)
    assert epochs_of_batches(log) == [(0, 2), (1, 6)]


def test_the_epoch_cache_survives_a_reopen(open_log):
    log = open_log(replicated=True)
    log.become_leader(1)
    ones(log, 3)
    log.become_leader(4)
    ones(log, 2)
    log.close()
    assert open_log(replicated=True).epochs.entries == [(1, 0), (4, 3)]


def test_a_follower_copy_is_byte_identical_with_the_same_epochs(open_log, other_log):
    leader = open_log(replicated=True)
    leader.become_leader(1)
    ones(leader, 3, "a")
    begin_transaction(leader, 11, b"txn")
    leader.become_leader(4)
    leader.append_control(11, 0, 2, True, NOW)
    append(leader, batch(b"x", b"y"))

    follower = other_log("follower")
    # Two fetches: the first cut inside a batch (its partial tail is dropped), then the rest.
    first = leader.read_bytes(0)[:-5]
    view, headers = fetched_batches(first)
    follower.append_batches(view, headers, NOW)
    assert follower.log_end_offset == 5
    assert follower.epochs.entries == [(1, 0), (4, 4)]
    view, headers = fetched_batches(leader.read_bytes(follower.log_end_offset))
    follower.append_batches(view, headers, NOW)

    assert follower.read_bytes(0) == leader.read_bytes(0)
    assert follower.log_end_offset == leader.log_end_offset == 7
    assert follower.epochs.entries == leader.epochs.entries == [(1, 0), (4, 4)]
    assert follower.high_watermark == 0  # the leader's answer moves it, not the append
    follower.update_high_watermark(7)
    assert follower.last_stable_offset == 7  # the marker closed the copied transaction
    assert values(follower) == values(leader)


def test_append_batches_may_not_start_below_the_log_end_but_may_leave_a_gap(open_log, other_log):
    leader = open_log(replicated=True)
    ones(leader, 3)
    follower = other_log("follower")
    ones(follower, 2)
    view, headers = fetched_batches(leader.read_bytes(1))
    with pytest.raises(ValueError):
        follower.append_batches(view, headers, NOW)  # offset 1 is below the follower's end, 2
    assert follower.log_end_offset == 2
    # A gap (compaction removed whole batches on the leader) is taken as it is.
    gap = other_log("gap")
    view, headers = fetched_batches(leader.read_bytes(2))
    gap.append_batches(view, headers, NOW)
    assert gap.log_end_offset == 3 and [h.base_offset for _, _, h in gap.batches(0)] == [2]


# --- truncation --------------------------------------------------------------------------------------


def test_truncating_below_the_high_watermark_lowers_it(open_log):
    log = open_log(replicated=True)
    log.become_leader(2)
    ones(log, 6)
    log.become_leader(3)
    ones(log, 4)
    log.update_high_watermark(8)
    log.truncate_to(5)
    assert (log.log_end_offset, log.high_watermark) == (5, 5)
    assert log.epochs.entries == [(2, 0)]
    assert [offset for offset, _ in values(log)] == [0, 1, 2, 3, 4]


def test_truncating_above_the_high_watermark_keeps_it(open_log):
    log = open_log(replicated=True)
    ones(log, 10)
    log.update_high_watermark(3)
    log.truncate_to(6)
    assert (log.log_end_offset, log.high_watermark) == (6, 3)
    append(log, batch(b"new"))
    assert (log.log_end_offset, log.high_watermark) == (7, 3)


def test_truncating_at_the_log_end_forgets_an_epoch_that_wrote_nothing(open_log):
    """A leader elected and deposed before any append leaves (epoch, log end) in its cache;
    truncating to the log end (what a follower does on DivergingEpoch) must drop it."""
    log = open_log(replicated=True)
    log.become_leader(1)
    ones(log, 4)
    log.become_leader(3)
    assert log.epochs.entries == [(1, 0), (3, 4)]
    log.truncate_to(4)
    assert log.log_end_offset == 4
    assert log.epochs.entries == [(1, 0)]


def test_reset_to_empties_the_log_and_starts_at_the_offset(open_log, tmp_path):
    log = open_log(replicated=True)
    log.become_leader(3)
    ones(log, 10)
    log.update_high_watermark(10)
    log.reset_to(100, NOW)
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark, log.recovery_point) == (100, 100, 100, 100)
    assert log.read_bytes(0) == b""
    assert log.epochs.entries == []
    assert sorted(p.name for p in (tmp_path / "t-0").glob(f"*{LOG_SUFFIX}")) == [segment_name(100, LOG_SUFFIX)]
    follower_batch = build_batch([(b"k", b"v", [], NOW)], base_offset=100, leader_epoch=4)
    view, headers = fetched_batches(follower_batch)
    log.append_batches(view, headers, NOW)
    assert (log.log_end_offset, log.high_watermark) == (101, 100)
    assert log.epochs.entries == [(4, 100)]
    assert values(log, 100) == [(100, b"v")]


# --- LogManager: replication-offset-checkpoint ---------------------------------------------------------


def config_for(topic: str) -> LogConfig:
    return CONFIG


def test_high_watermarks_survive_a_clean_restart(tmp_path):
    logs = LogManager(tmp_path, replicated=True)
    log = logs.create("t", 0, CONFIG, NOW)
    assert log.replicated
    ones(log, 10)
    assert log.high_watermark == 0
    log.update_high_watermark(7)
    logs.create("t", 1, CONFIG, NOW)
    logs.close()
    assert read_offsets(tmp_path / REPLICATION_OFFSET_CHECKPOINT) == {("t", 0): 7, ("t", 1): 0}

    again = LogManager(tmp_path, replicated=True)
    again.load(config_for, NOW)
    reloaded = again.get("t", 0)
    assert (reloaded.high_watermark, reloaded.log_end_offset) == (7, 10)
    assert again.get("t", 1).high_watermark == 0
    again.close()


def test_a_single_node_manager_writes_no_replication_checkpoint(tmp_path):
    logs = LogManager(tmp_path)
    ones(logs.create("t", 0, CONFIG, NOW), 3)
    logs.close()
    assert not (tmp_path / REPLICATION_OFFSET_CHECKPOINT).exists()


def test_after_a_crash_the_high_watermark_is_the_last_checkpoint(tmp_path):
    logs = LogManager(tmp_path, replicated=True)
    log = logs.create("t", 0, CONFIG, NOW)
    ones(log, 10)
    log.update_high_watermark(4)
    logs.checkpoint()
    log.update_high_watermark(9)  # never checkpointed
    crash(log)
    os.close(logs._lock_fd)  # what process exit does

    again = LogManager(tmp_path, replicated=True)
    again.load(config_for, NOW)
    assert not again.clean_shutdown
    reloaded = again.get("t", 0)
    assert (reloaded.high_watermark, reloaded.log_end_offset) == (4, 10)
    again.close()


def test_after_a_crash_with_a_torn_tail_the_high_watermark_is_not_above_the_log_end(tmp_path):
    logs = LogManager(tmp_path, replicated=True)
    log = logs.create("t", 0, LogConfig(segment_bytes=1 << 20), NOW)
    ones(log, 10)
    log.update_high_watermark(10)
    logs.checkpoint()
    crash(log)
    os.close(logs._lock_fd)
    segment = tmp_path / "t-0" / segment_name(0, LOG_SUFFIX)
    os.truncate(segment, segment.stat().st_size - 5)  # the last batch is torn

    again = LogManager(tmp_path, replicated=True)
    again.load(config_for, NOW)
    reloaded = again.get("t", 0)
    assert (reloaded.high_watermark, reloaded.log_end_offset) == (9, 9)
    again.close()


def test_a_checkpointed_high_watermark_past_the_log_end_is_clamped(tmp_path):
    logs = LogManager(tmp_path, replicated=True)
    ones(logs.create("t", 0, CONFIG, NOW), 6)
    logs.close()
    write_offsets(tmp_path / REPLICATION_OFFSET_CHECKPOINT, {("t", 0): 60})

    again = LogManager(tmp_path, replicated=True)
    again.load(config_for, NOW)
    assert again.get("t", 0).high_watermark == 6
    again.close()
