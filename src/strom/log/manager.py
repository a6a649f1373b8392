"""All partition logs of one data directory: layout, loading with recovery, checkpoints,
retention, and the clean-shutdown marker.

Layout (Kafka's): ``<data>/<topic>-<partition>/`` per partition, and in ``<data>/`` the
checkpoint files ``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``,
``cleaner-offset-checkpoint`` and, while the broker is stopped after a clean shutdown,
``.kafka_cleanshutdown``. The marker is removed right after loading, so a broker that dies
without ``close`` is recovered on its next start: each log scans the segments from its
recovery point on, checks every batch's CRC-32C, truncates a torn tail and rebuilds indexes.

Synchronous and single-threaded: the server calls it from the event loop (appends, reads,
retention) or hands whole calls (load, close) to a thread while nothing else runs; a periodic
checkpoint is a snapshot taken on the loop and written in a thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from strom.log import cleaner
from strom.log.checkpoint import (
    CLEANER_OFFSET_CHECKPOINT,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    fsync_dir,
    read_offsets,
    write_offsets,
)
from strom.log.config import LogConfig
from strom.log.partition import PartitionLog

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
LOCK_FILE = ".lock"
DELETE_DIR_SUFFIX = "-delete"

TopicPartition = tuple[str, int]


def parse_partition_dir(name: str) -> TopicPartition | None:
    """``my-topic-3`` -> ("my-topic", 3); None for anything else (deleted dirs, files)."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isdigit() or name.endswith(DELETE_DIR_SUFFIX):
        return None
    return topic, int(partition)


class DataDirLocked(OSError):
    """Another process holds the data directory."""


class LogManager:
    """Fields: ``logs`` by (topic, partition), changed by load/create/delete_topic on the
    event loop; ``cleaner_offsets``: the first dirty offset per compacted log, changed after
    each cleaning; both are checkpointed by ``checkpoint``."""

    def __init__(self, data_dir: Path, *, replicated: bool = False) -> None:
        self.data_dir = Path(data_dir)
        # Cluster mode: high watermarks are the replication layer's, checkpointed here.
        self.replicated = replicated
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # One process per data directory, as Kafka's .lock file ensures (released on exit).
        self._lock_fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise DataDirLocked(f"the data directory {self.data_dir} is in use by another strom process") from None
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self.cleaner_offsets: dict[TopicPartition, int] = {}
        self.clean_shutdown = False

    # --- start-up ------------------------------------------------------------------------------

    def load(self, config_for: Callable[[str], LogConfig | None], now_ms: int = 0) -> None:
        """Open every partition directory. ``config_for(topic)`` gives the topic's config, or
        None for a topic that no longer exists (its directories are deleted)."""
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        self.clean_shutdown = marker.exists()
        recovery_points = read_offsets(self.data_dir / RECOVERY_POINT_CHECKPOINT)
        log_starts = read_offsets(self.data_dir / LOG_START_OFFSET_CHECKPOINT)
        self.cleaner_offsets = read_offsets(self.data_dir / CLEANER_OFFSET_CHECKPOINT)
        high_watermarks = read_offsets(self.data_dir / REPLICATION_OFFSET_CHECKPOINT)
        for path in sorted(self.data_dir.iterdir()):
            if not path.is_dir():
                continue
            if path.name.endswith(DELETE_DIR_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)
                continue
            key = parse_partition_dir(path.name)
            if key is None:
                continue
            config = config_for(key[0])
            if config is None:
                log.warning("deleting %s: its topic no longer exists", path.name)
                shutil.rmtree(path, ignore_errors=True)
                continue
            self.logs[key] = PartitionLog(
                path,
                key[0],
                key[1],
                config,
                recovery_point=recovery_points.get(key, 0),
                log_start_offset=log_starts.get(key, 0),
                clean_shutdown=self.clean_shutdown,
                now_ms=now_ms,
                replicated=self.replicated,
                high_watermark=high_watermarks.get(key, 0),
            )
        # From now on a crash must be detected: the marker goes before anything is served.
        if self.clean_shutdown:
            marker.unlink()
            fsync_dir(self.data_dir)
        log.info(
            "loaded %d partition logs from %s%s",
            len(self.logs), self.data_dir, "" if self.clean_shutdown or not self.logs else " (recovered after a crash)",
        )

    # --- partitions ----------------------------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig, now_ms: int = 0) -> PartitionLog:
        """The partition's log, created empty if it does not exist yet."""
        existing = self.logs.get((topic, partition))
        if existing is not None:
            return existing
        created = PartitionLog(
            self.data_dir / f"{topic}-{partition}", topic, partition, config, now_ms=now_ms, replicated=self.replicated
        )
        self.logs[(topic, partition)] = created
        return created

    def delete_topic(self, topic: str) -> list[Path]:
        """Close the topic's logs and rename their directories to ``…-delete``; returns them
        for ``purge`` (which may run in another thread; the load deletes leftovers)."""
        return [self.delete(key) for key in [k for k in self.logs if k[0] == topic]]

    def delete(self, key: TopicPartition) -> Path:
        """Close one partition's log and rename its directory for ``purge`` (a replica moved
        away, or its topic was deleted)."""
        partition_log = self.logs.pop(key)
        partition_log.close(flush=False)
        self.cleaner_offsets.pop(key, None)
        target = partition_log.directory.with_name(f"{partition_log.directory.name}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}")
        os.replace(partition_log.directory, target)
        return target

    @staticmethod
    def purge(paths: list[Path]) -> None:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)

    def __iter__(self) -> Iterator[PartitionLog]:
        return iter(list(self.logs.values()))

    # --- background work -----------------------------------------------------------------------

    def apply_retention(self, now_ms: int) -> int:
        """retention.ms / retention.bytes on every log; returns segments deleted."""
        return sum(partition_log.apply_retention(now_ms) for partition_log in self)

    def expire_producers(self, now_ms: int, expiration_ms: int) -> int:
        """producer.id.expiration.ms: forget idle idempotent producers; returns how many."""
        return sum(partition_log.producer_state.expire(now_ms, expiration_ms) for partition_log in self)

    def logs_to_flush(self, now_ms: int) -> list[PartitionLog]:
        return [partition_log for partition_log in self if partition_log.flush_due(now_ms)]

    def cleaning_plans(self, now_ms: int) -> list[cleaner.CleanPlan]:
        plans = []
        for key, partition_log in self.logs.items():
            plan = cleaner.plan(partition_log, self.cleaner_offsets.get(key, 0), now_ms)
            if plan is not None:
                plans.append(plan)
        return plans

    def install_cleaned(self, result: cleaner.CleanResult) -> int:
        """Install a finished cleaning (event loop) unless its log was deleted meanwhile."""
        partition_log = result.plan.log
        key = (partition_log.topic, partition_log.partition)
        if self.logs.get(key) is not partition_log:
            return 0
        installed = cleaner.install(result)
        self.cleaner_offsets[key] = result.plan.first_uncleanable_offset
        return installed

    def checkpoint_snapshot(self) -> dict[str, dict[TopicPartition, int]]:
        """The offsets to checkpoint, by file name. Taken on the event loop, which changes
        ``logs``: a worker thread iterating them could see the map change size."""
        logs = self.logs
        files = {
            RECOVERY_POINT_CHECKPOINT: {k: v.recovery_point for k, v in logs.items()},
            LOG_START_OFFSET_CHECKPOINT: {k: v.log_start_offset for k, v in logs.items()},
        }
        if self.replicated:
            files[REPLICATION_OFFSET_CHECKPOINT] = {k: v.high_watermark for k, v in logs.items()}
        files[CLEANER_OFFSET_CHECKPOINT] = {k: v for k, v in self.cleaner_offsets.items() if k in logs}
        return files

    def write_checkpoint(self, snapshot: dict[str, dict[TopicPartition, int]], *, sync: bool = True) -> None:
        """Write a ``checkpoint_snapshot`` (in a worker thread: it fsyncs)."""
        for name, offsets in snapshot.items():
            write_offsets(self.data_dir / name, offsets, sync=sync)

    def checkpoint(self, *, sync: bool = True) -> None:
        """Write the recovery points, log start offsets and cleaner offsets (and, replicated,
        the high watermarks)."""
        self.write_checkpoint(self.checkpoint_snapshot(), sync=sync)

    def close(self) -> None:
        """Clean shutdown: fsync every log, write the checkpoints, then the marker."""
        for partition_log in self:
            partition_log.close()
        self.checkpoint()
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        marker.write_bytes(b"")
        fd = os.open(marker, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.data_dir)
        self.logs.clear()
        os.close(self._lock_fd)
