"""Checkpoint files in Kafka's text format, written atomically.

Format (Kafka's CheckpointFile): a version line (0), a count line, then one entry per line
with space-separated fields: ``topic partition offset`` for the data-dir level offset files
(``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``,
``cleaner-offset-checkpoint``, ``replication-offset-checkpoint``) and ``epoch start_offset`` for a partition's
``leader-epoch-checkpoint``.

Atomic replace: write ``<name>.tmp``, fsync it, rename over the target, fsync the directory.
A reader that finds a malformed file treats it as missing (callers then fall back to the
safe default: recover more, never less).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

VERSION = 0

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEANER_OFFSET_CHECKPOINT = "cleaner-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
REPLICATION_OFFSET_CHECKPOINT = "replication-offset-checkpoint"  # high watermarks (cluster mode)
PARTITION_METADATA = "partition.metadata"  # the topic id a partition directory belongs to


class MalformedCheckpoint(ValueError):
    pass


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def write_entries(path: Path, entries: Sequence[tuple[object, ...]], *, sync: bool = True) -> None:
    lines = [str(VERSION), str(len(entries))]
    lines.extend(" ".join(str(field) for field in entry) for entry in entries)
    write_atomic(path, ("\n".join(lines) + "\n").encode(), sync=sync)


def read_entries(path: Path, fields: int) -> list[list[str]]:
    """The entries of a checkpoint file; [] when absent; MalformedCheckpoint when damaged."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedCheckpoint(f"{path}: {exc}") from exc
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].strip() != str(VERSION):
        raise MalformedCheckpoint(f"{path}: bad header")
    try:
        count = int(lines[1])
    except ValueError as exc:
        raise MalformedCheckpoint(f"{path}: bad count") from exc
    entries = [line.split() for line in lines[2:] if line.strip()]
    if count != len(entries) or any(len(entry) != fields for entry in entries):
        raise MalformedCheckpoint(f"{path}: {len(entries)} entries, header says {count}")
    return entries


def read_offsets(path: Path) -> dict[tuple[str, int], int]:
    """A ``topic partition offset`` checkpoint; {} when missing or malformed."""
    try:
        entries = read_entries(path, 3)
        return {(topic, int(partition)): int(offset) for topic, partition, offset in entries}
    except (MalformedCheckpoint, ValueError):
        return {}


def write_offsets(path: Path, offsets: dict[tuple[str, int], int], *, sync: bool = True) -> None:
    entries = [(topic, partition, offset) for (topic, partition), offset in sorted(offsets.items())]
    write_entries(path, entries, sync=sync)


def read_topic_id(directory: Path) -> uuid.UUID | None:
    """The topic id in a partition directory's ``partition.metadata`` (Kafka's
    PartitionMetadataFile: ``version: 0`` then ``topic_id: <base64>``); None when absent or
    unreadable."""
    try:
        lines = (directory / PARTITION_METADATA).read_text().splitlines()
        fields = dict(line.split(": ", 1) for line in lines if ": " in line)
        return uuid.UUID(bytes=base64.urlsafe_b64decode(fields["topic_id"] + "=="))
    except (OSError, KeyError, ValueError):
        return None


def write_topic_id(directory: Path, topic_id: uuid.UUID) -> None:
    encoded = base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")
    # Not fsynced: a lost file is written again (it is only compared when present).
    write_atomic(directory / PARTITION_METADATA, f"version: 0\ntopic_id: {encoded}\n".encode(), sync=False)


class LeaderEpochCache:
    """(leader epoch, start offset) pairs of one partition, as Kafka's LeaderEpochFileCache.

    Entries have strictly increasing epochs and non-decreasing start offsets. Owned by the
    PartitionLog; persisted to ``leader-epoch-checkpoint`` on every change (rare).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = read_entries(path, 2)
            self.entries = [(int(epoch), int(offset)) for epoch, offset in raw]
        except (MalformedCheckpoint, ValueError):
            self.entries = []

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def assign(self, epoch: int, start_offset: int) -> None:
        if self.entries and epoch <= self.entries[-1][0]:
            return
        self.entries = [e for e in self.entries if e[1] < start_offset]
        self.entries.append((epoch, start_offset))
        self._save()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= ``epoch``, its end offset), as OffsetsForLeaderEpoch answers. An
        epoch older than every entry ends where the first entry starts (Kafka's
        LeaderEpochFileCache.endOffsetFor): such a replica's log is a prefix of this one up
        to there."""
        for index in range(len(self.entries) - 1, -1, -1):
            found, _ = self.entries[index]
            if found <= epoch:
                end = log_end_offset if index == len(self.entries) - 1 else self.entries[index + 1][1]
                return found, end
        if self.entries and epoch >= 0:
            return epoch, self.entries[0][1]
        return -1, -1

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that start at or after ``end_offset`` (the log was truncated)."""
        kept = [e for e in self.entries if e[1] < end_offset]
        if kept != self.entries:
            self.entries = kept
            self._save()

    def truncate_from_start(self, start_offset: int) -> None:
        """Drop epochs wholly below ``start_offset``; the last one below starts there now."""
        below = [e for e in self.entries if e[1] <= start_offset]
        if len(below) <= 1 and (not below or below[0][1] == start_offset):
            return
        above = self.entries[len(below) :]
        self.entries = [(below[-1][0], start_offset), *above]
        self._save()

    def _save(self) -> None:
        write_entries(self.path, list(self.entries))
