"""The aborted-transaction index of one segment: ``<base offset>.txnindex`` (Kafka's
TransactionIndex).

One 34-byte entry per transaction aborted by a marker in this segment, big-endian::

    version int16 (0) | producer_id int64 | first_offset int64 | last_offset int64 |
    last_stable_offset int64

``first_offset`` is the transaction's first data offset in the partition (possibly in an
earlier segment), ``last_offset`` the offset of its abort marker, and ``last_stable_offset``
the partition's LSO once the marker was written. Entries are in marker order, so
``last_offset`` strictly increases. read_committed fetches collect the entries that overlap
what they return (``collect``); the consumer drops those producers' records from
``first_offset`` until it meets the abort marker.

Aborts are rare, so each entry is written to the file at once (page cache; fsync with the
segment) and the file exists only once the segment holds an abort, as in Kafka. The entries
also live in memory. A file that is torn (not a multiple of 34 bytes) or out of order does not
load, and the partition rebuilds it from the log (PartitionLog recovery).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34
_VERSION = 0


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TransactionIndex:
    """Fields: ``entries`` (ordered by last offset), changed by append on the event loop, by
    truncation and by rebuilds; ``path`` follows the segment's variant renames."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[AbortedTxn] = []
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def load(self) -> bool:
        """Read the file (a missing one is empty); False when it is damaged."""
        self.close()
        self.entries = []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return True
        if len(data) % ENTRY_SIZE:
            return False
        entries: list[AbortedTxn] = []
        for pos in range(0, len(data), ENTRY_SIZE):
            version, producer_id, first, last, lso = _ENTRY.unpack_from(data, pos)
            if version != _VERSION or first > last or (entries and last <= entries[-1].last_offset):
                return False
            entries.append(AbortedTxn(producer_id, first, last, lso))
        self.entries = entries
        return True

    def append(self, entry: AbortedTxn) -> None:
        if self.entries and entry.last_offset <= self.entries[-1].last_offset:
            raise ValueError(
                f"aborted transaction at {entry.last_offset} does not follow the last one at {self.entries[-1].last_offset}"
            )
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        data = _ENTRY.pack(_VERSION, *entry)
        if os.write(self._fd, data) != len(data):
            raise OSError(f"short write to {self.path}")
        self.entries.append(entry)

    def collect(self, fetch_offset: int, upper_bound: int) -> tuple[list[AbortedTxn], bool]:
        """Entries overlapping [fetch_offset, upper_bound), and whether the search may stop
        here: an entry whose LSO passed the upper bound was written after everything the read
        returned, so later segments cannot hold an overlapping one (Kafka's collectAbortedTxns)."""
        found = []
        for entry in self.entries:
            if entry.last_offset >= fetch_offset and entry.first_offset < upper_bound:
                found.append(entry)
            if entry.last_stable_offset >= upper_bound:
                return found, True
        return found, False

    def truncate_to(self, offset: int) -> None:
        """Forget entries whose marker is at or after ``offset``."""
        kept = [e for e in self.entries if e.last_offset < offset]
        if len(kept) != len(self.entries):
            self.rebuild(kept)

    def rebuild(self, entries: Iterable[AbortedTxn]) -> None:
        """Replace the whole index (recovery, cleaning); an empty one has no file."""
        self.close()
        self.entries = list(entries)
        if not self.entries:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = b"".join(_ENTRY.pack(_VERSION, *e) for e in self.entries)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def dup_fd(self) -> int | None:
        """A duplicate descriptor for fsync from another thread (None: no file)."""
        if self._fd is not None:
            return os.dup(self._fd)
        try:
            return os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def rename(self, target: Path) -> None:
        self.close()
        if self.path.exists():
            os.replace(self.path, target)
        self.path = target


__all__ = ["ENTRY_SIZE", "AbortedTxn", "TransactionIndex"]
