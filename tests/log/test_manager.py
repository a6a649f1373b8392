"""LogManager: layout, checkpoints, the clean-shutdown marker, the lock, topic deletion."""

from __future__ import annotations

import os

import pytest

from strom.log.checkpoint import read_offsets
from strom.log.config import LogConfig
from strom.log.manager import (
    CLEAN_SHUTDOWN_FILE,
    DataDirLocked,
    LogManager,
    parse_partition_dir,
)

from .helpers import NOW, append, batch, values

CONFIG = LogConfig(segment_bytes=1024)


def config_for(topic: str) -> LogConfig | None:
    return None if topic.startswith("gone") else CONFIG


def test_partition_dir_names():
    assert parse_partition_dir("my-topic-3") == ("my-topic", 3)
    assert parse_partition_dir("t-0") == ("t", 0)
    assert parse_partition_dir("t-0.abc-delete") is None
    assert parse_partition_dir("nodash") is None
    assert parse_partition_dir("t-x") is None


def test_clean_close_then_load(tmp_path):
    logs = LogManager(tmp_path)
    for p in range(3):
        log = logs.create("orders", p, CONFIG, NOW)
        for i in range(30):
            append(log, batch(f"{p}-{i}".encode() * 10))
    logs.get("orders", 1).delete_records_before(12)
    expected = {p: values(logs.get("orders", p)) for p in range(3)}
    logs.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert read_offsets(tmp_path / "log-start-offset-checkpoint")[("orders", 1)] == 12
    assert read_offsets(tmp_path / "recovery-point-offset-checkpoint")[("orders", 0)] == 30

    again = LogManager(tmp_path)
    again.load(config_for, NOW)
    assert again.clean_shutdown
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()  # a crash from now on is detected
    assert {p: values(again.get("orders", p)) for p in range(3)} == expected
    assert again.get("orders", 1).log_start_offset == 12
    again.close()


def test_load_without_marker_recovers(tmp_path):
    logs = LogManager(tmp_path)
    log = logs.create("t", 0, CONFIG, NOW)
    for _ in range(40):
        append(log, batch(b"r" * 50))
    logs.checkpoint()
    # Simulate a crash: no close, so no marker; release the lock as process exit would.
    os.close(logs._lock_fd)
    again = LogManager(tmp_path)
    again.load(config_for, NOW)
    assert not again.clean_shutdown
    assert again.get("t", 0).log_end_offset == 40
    again.close()


def test_second_manager_on_the_same_dir_is_refused(tmp_path):
    logs = LogManager(tmp_path)
    with pytest.raises(DataDirLocked):
        LogManager(tmp_path)
    logs.close()
    LogManager(tmp_path).close()


def test_directories_of_unknown_topics_are_removed(tmp_path):
    logs = LogManager(tmp_path)
    logs.create("gone-topic", 0, CONFIG, NOW)
    logs.create("kept", 0, CONFIG, NOW)
    logs.close()
    (tmp_path / "x-1.0123-delete").mkdir()
    again = LogManager(tmp_path)
    again.load(config_for, NOW)
    assert again.get("kept", 0) is not None and again.get("gone-topic", 0) is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["kept-0"]
    again.close()


def test_delete_topic_renames_then_purges(tmp_path):
    logs = LogManager(tmp_path)
    for p in range(2):
        append(logs.create("doomed", p, CONFIG, NOW), batch(b"x"))
    doomed = logs.delete_topic("doomed")
    assert len(doomed) == 2 and all(p.name.endswith("-delete") for p in doomed)
    assert logs.get("doomed", 0) is None
    LogManager.purge(doomed)
    assert not any(p.exists() for p in doomed)
    # The name can be used again at once.
    assert logs.create("doomed", 0, CONFIG, NOW).log_end_offset == 0
    logs.close()


def test_retention_and_flush_selection(tmp_path):
    logs = LogManager(tmp_path)
    old = logs.create("old", 0, CONFIG.replace(retention_ms=1000), NOW)
    for _ in range(20):
        append(old, batch(b"o" * 100, timestamp=NOW - 10_000))
    fresh = logs.create("fresh", 0, CONFIG.replace(flush_messages=1), NOW)
    append(fresh, batch(b"f"))
    assert logs.apply_retention(NOW) > 0
    assert old.log_start_offset == 20
    assert fresh in logs.logs_to_flush(NOW)
    logs.close()


def test_idle_producers_expire(tmp_path):
    from strom.protocol.records import build_batch, validate_batches

    logs = LogManager(tmp_path)
    log = logs.create("t", 0, CONFIG, NOW)
    data = build_batch([(b"k", b"v", [], NOW)], producer_id=3, producer_epoch=0, base_sequence=0)
    log.append(data, validate_batches(data, 1 << 20), NOW)
    assert logs.expire_producers(NOW + 1000, 5000) == 0
    assert logs.expire_producers(NOW + 5000, 5000) == 1
    assert not log.producer_state.producers
    logs.close()
