"""Sparse offset and time indexes of one segment, in Kafka's file formats.

``<base>.index``: 8-byte entries, relative offset int32 + file position int32, big-endian;
an entry maps the last offset of a batch to the position where that batch starts.
``<base>.timeindex``: 12-byte entries, timestamp int64 + relative offset int32; an entry
(T, O) says the batches up to the one holding offset O reach max timestamp T, and T first
reached there. Both are strictly increasing in their first field.

Files are append-only (never preallocated), so after a crash a file is a valid prefix of
what was written, at worst missing its last entries or torn mid-entry (size not a multiple
of the entry size: detected, and the index is rebuilt from the log). Entries live in memory
(``array``) for bisect; appends go to memory first and reach the file on ``write_pending``
(flush, roll, close). That is safe because unflushed entries always belong to segments at
or above the recovery point, whose indexes recovery rebuilds anyway.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_right
from pathlib import Path

_LITTLE = sys.byteorder == "little"
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_file(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def _strictly_increasing(values: array[int]) -> bool:
    # C-speed check: sorted() of an already sorted array is linear.
    as_list = values.tolist()
    return as_list == sorted(set(as_list))


class _IndexFile:
    entry_size = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending = bytearray()
        self._fd: int | None = None

    def _write_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    def write_pending(self) -> None:
        if self._pending:
            _write_all(self._write_fd(), self._pending)
            self._pending.clear()

    def fsync(self) -> None:
        self.write_pending()
        if self._fd is not None:
            os.fsync(self._fd)
        else:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def dup_fd(self) -> int:
        """A duplicate descriptor for fsync from another thread (pending entries written)."""
        self.write_pending()
        return os.dup(self._write_fd())

    def close(self) -> None:
        self.write_pending()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Forget the file handle without writing (the files are being replaced)."""
        self._pending.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rewrite(self, data: bytes) -> None:
        """Replace the whole file (rebuild); pending entries are part of ``data``."""
        self.discard()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)

    def last_entry_bytes(self) -> bytes | None:
        """The last whole entry in the file (None when empty or torn), without loading it."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size == 0 or size % self.entry_size:
                return None
            return os.pread(fd, self.entry_size, size - self.entry_size)
        finally:
            os.close(fd)


class OffsetIndex(_IndexFile):
    entry_size = 8

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.relative_offsets = array("i")
        self.positions = array("i")

    def __len__(self) -> int:
        return len(self.relative_offsets)

    def append(self, relative_offset: int, position: int) -> None:
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)
        self._pending += _OFFSET_ENTRY.pack(relative_offset, position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch whose last offset <= ``relative_offset`` (or 0)."""
        index = bisect_right(self.relative_offsets, relative_offset) - 1
        return self.positions[index] if index >= 0 else 0

    def position_floor(self, position: int) -> int:
        """The largest indexed batch start <= ``position`` (or 0)."""
        index = bisect_right(self.positions, position) - 1
        return self.positions[index] if index >= 0 else 0

    def load(self, log_size: int) -> bool:
        """Read and check the file; False (and empty) when damaged, so it must be rebuilt."""
        data = _read_file(self.path)
        self.relative_offsets = array("i")
        self.positions = array("i")
        self._pending.clear()
        if data is None or len(data) % self.entry_size:
            return False
        flat = array("i")
        flat.frombytes(data)
        if _LITTLE:
            flat.byteswap()
        offsets, positions = flat[0::2], flat[1::2]
        if offsets and (
            offsets[0] < 0
            or positions[0] < 0
            or positions[-1] >= max(log_size, 1)
            or not _strictly_increasing(offsets)
            or not _strictly_increasing(positions)
        ):
            return False
        self.relative_offsets, self.positions = offsets, positions
        return True

    def rebuild(self, entries: list[tuple[int, int]]) -> None:
        self.relative_offsets = array("i", (e[0] for e in entries))
        self.positions = array("i", (e[1] for e in entries))
        self._rewrite(b"".join(_OFFSET_ENTRY.pack(*e) for e in entries))


class TimeIndex(_IndexFile):
    entry_size = 12

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.timestamps = array("q")
        self.relative_offsets = array("i")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        """Add (timestamp, offset) if the timestamp grows: entries stay strictly increasing."""
        if timestamp > self.last_timestamp:
            self.timestamps.append(timestamp)
            self.relative_offsets.append(relative_offset)
            self._pending += _TIME_ENTRY.pack(timestamp, relative_offset)

    def lookup(self, timestamp: int) -> int | None:
        """Relative offset of the last entry with timestamp <= ``timestamp`` (None: none)."""
        index = bisect_right(self.timestamps, timestamp) - 1
        return self.relative_offsets[index] if index >= 0 else None

    def read_last_entry(self) -> tuple[int, int] | None:
        raw = self.last_entry_bytes()
        return _TIME_ENTRY.unpack(raw) if raw else None

    def load(self, max_relative_offset: int | None = None) -> bool:
        data = _read_file(self.path)
        self.timestamps = array("q")
        self.relative_offsets = array("i")
        self._pending.clear()
        if data is None or len(data) % self.entry_size:
            return False
        count = len(data) // self.entry_size
        if count:
            flat = struct.unpack(">" + "qi" * count, data)
            timestamps, offsets = array("q", flat[0::2]), array("i", flat[1::2])
            if (
                offsets[0] < 0
                or not _strictly_increasing(timestamps)
                or offsets.tolist() != sorted(offsets)
                or (max_relative_offset is not None and offsets[-1] > max_relative_offset)
            ):
                return False
            self.timestamps, self.relative_offsets = timestamps, offsets
        return True

    def rebuild(self, entries: list[tuple[int, int]]) -> None:
        self.timestamps = array("q", (e[0] for e in entries))
        self.relative_offsets = array("i", (e[1] for e in entries))
        self._rewrite(b"".join(_TIME_ENTRY.pack(*e) for e in entries))
