"""One log segment: ``<base offset>.log`` plus its sparse ``.index`` and ``.timeindex``, and
the aborted-transaction index ``.txnindex`` (log.txn_index) once an abort marker lands in it.

Batches are stored exactly as the partition hands them over (offsets already patched in).
The segment knows batch headers only (``protocol.records.read_header``), never records, except
to find the exact record for a timestamp. Not thread-safe: the event loop owns it. Other threads
(the cleaner, fsync) open their own descriptors or get duplicates, never this one.

Index entries follow Kafka's LogSegment.append: once ``index.interval.bytes`` have been written
since the last entry, the next batch gets an entry (its last offset -> its start position), and
the time index records the largest timestamp so far with its offset. The transaction index
is the partition's business: only it knows the producers' state when an abort marker is
written (and when a recovered segment's index is rebuilt).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from strom.log.index import OffsetIndex, TimeIndex
from strom.log.txn_index import TransactionIndex
from strom.protocol.records import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    MIN_BATCH_LENGTH,
    BatchHeader,
    Record,
    crc_ok,
    decode_records,
    read_header,
)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETED_SUFFIX = ".deleted"

# Batch starts are found by reading this much at a time and walking the headers in memory:
# an index entry lies at most index.interval.bytes (4 KiB by default) before the target.
_SCAN_CHUNK = 16 * 1024
_MAX_TAIL = 1024  # batches kept in memory after the last index entry (see LogSegment._tail)
_KEEP_BEHIND_INDEX = 32  # and before it (followers fetching 1 MiB at a time run that far behind)
_INT32_MAX = 2**31 - 1


def segment_name(base_offset: int, suffix: str = LOG_SUFFIX) -> str:
    return f"{base_offset:020d}{suffix}"


class FileRegion(NamedTuple):
    """Bytes of an open file that the server sends with os.sendfile (zero copy)."""

    fd: int
    position: int
    length: int


class BatchPosition(NamedTuple):
    position: int
    header: BatchHeader


class SegmentCorrupt(Exception):
    """A segment's content is damaged at ``position``; recovery truncates it there."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"{reason} at byte {position}")
        self.position = position


def _pread_exact(fd: int, size: int, position: int) -> bytes:
    data = os.pread(fd, size, position)
    while len(data) < size:
        more = os.pread(fd, size - len(data), position + len(data))
        if not more:
            break
        data += more
    return data


class LogSegment:
    """Fields (all owned by the event loop's PartitionLog):

    ``size``: bytes in the .log file; appends go at this position. ``next_offset``: one past
    the last offset stored (== base_offset while empty). ``max_timestamp`` and
    ``offset_of_max_timestamp``: the largest batch max timestamp and that batch's last offset,
    read by retention and ListOffsets. ``rolling_timestamp``: the first batch's max timestamp
    (Kafka's rollingBasedTimestamp) for segment.ms, or the creation time while empty.
    """

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int = 4096,
        max_index_bytes: int = 10 * 1024 * 1024,
        create: bool = False,
        now_ms: int = 0,
        variant: str = "",
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.max_index_bytes = max_index_bytes
        self.variant = variant  # "" for a live segment, CLEANED_SUFFIX or SWAP_SUFFIX
        self.path = directory / segment_name(base_offset, LOG_SUFFIX + variant)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(self.path, flags, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.index = OffsetIndex(directory / segment_name(base_offset, INDEX_SUFFIX + variant))
        self.time_index = TimeIndex(directory / segment_name(base_offset, TIME_INDEX_SUFFIX + variant))
        self.txn_index = TransactionIndex(directory / segment_name(base_offset, TXN_INDEX_SUFFIX + variant))
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.rolling_timestamp: int | None = None
        self.created_ms = now_ms
        self.bytes_since_index_entry = 0
        self.roll_jitter_ms = 0  # segment.jitter.ms share of this segment, set by the partition
        # The batches from the last offset-index entry to the end (at most about
        # index.interval.bytes of them) and the few before it, kept in memory: consumers and
        # followers tailing the log fetch from there (with large batches, one or two behind the
        # end), and find() answers them without reading a header from the file.
        self._tail: list[BatchPosition] = []
        self._tail_last_offsets: list[int] = []
        self.closed = False

    # --- opening -----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load the indexes of a segment written before; False when they are damaged or do not
        match the log, in which case the caller runs ``recover``."""
        if not (self.index.load(self.size) and self.time_index.load() and self.txn_index.load()):
            return False
        try:
            start = self.index.positions[-1] if len(self.index) else 0
            last = None
            self._clear_tail()
            for batch in self.batches(start):
                last = batch
                self._track(batch.header)
                self._add_to_tail(batch.position, batch.header)
            if len(self.time_index):
                ts, relative = self.time_index.timestamps[-1], self.time_index.relative_offsets[-1]
                if ts > self.max_timestamp:
                    self.max_timestamp, self.offset_of_max_timestamp = ts, self.base_offset + relative
            if last is not None:
                self.next_offset = last.header.next_offset
                self.bytes_since_index_entry = last.position + last.header.size - start
            if self.size and self.rolling_timestamp is None:
                self.rolling_timestamp = read_header(_pread_exact(self.fd, BATCH_HEADER_SIZE, 0)).max_timestamp
        except SegmentCorrupt:
            return False
        return True

    def recover(self, max_batch_bytes: int | None = None) -> int:
        """Scan every batch, check framing and CRC, truncate at the first damaged one, and
        rebuild both sparse indexes. The transaction index is emptied: the caller rebuilds it
        from the producers' state (PartitionLog). Returns how many bytes were cut off."""
        offset_entries: list[tuple[int, int]] = []
        time_entries: list[tuple[int, int]] = []
        self.next_offset = self.base_offset
        self.max_timestamp = self.offset_of_max_timestamp = -1
        self.rolling_timestamp = None
        since_entry = 0
        valid_end = 0
        self._clear_tail()
        try:
            for batch in self.batches(0, verify=True, max_batch_bytes=max_batch_bytes):
                header = batch.header
                if header.base_offset < self.next_offset or not self.offset_fits(header.last_offset):
                    raise SegmentCorrupt(batch.position, f"base offset {header.base_offset} out of place")
                if since_entry > self.index_interval_bytes:
                    offset_entries.append((header.last_offset - self.base_offset, batch.position))
                    if not time_entries or self.max_timestamp > time_entries[-1][0]:
                        time_entries.append((self.max_timestamp, self.offset_of_max_timestamp - self.base_offset))
                    since_entry = 0
                    self._clear_tail()
                self._track(header)
                self._add_to_tail(batch.position, header)
                self.next_offset = header.next_offset
                since_entry += header.size
                valid_end = batch.position + header.size
        except SegmentCorrupt:
            pass
        truncated = self.size - valid_end
        if truncated:
            os.ftruncate(self.fd, valid_end)
            self.size = valid_end
        self.bytes_since_index_entry = since_entry
        self.index.rebuild(offset_entries)
        self.time_index.rebuild(time_entries)
        self.txn_index.rebuild([])
        return truncated

    # --- appending ---------------------------------------------------------------------------

    def append(self, data: bytes | bytearray | memoryview, headers: list[BatchHeader]) -> None:
        """Write batches (offsets assigned) at the end, adding index entries as they fall due."""
        position = self.size
        written = os.pwrite(self.fd, data, position)
        if written != len(data):
            # A short write (disk full): cut back to whole batches so the log stays loadable.
            os.ftruncate(self.fd, position)
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        index = self.index
        for header in headers:
            if self.bytes_since_index_entry > self.index_interval_bytes:
                index.append(header.last_offset - self.base_offset, position)
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base_offset)
                self.bytes_since_index_entry = 0
                self._trim_tail()
            self._track(header)
            self._add_to_tail(position, header)
            size = header.batch_length + LOG_OVERHEAD
            position += size
            self.bytes_since_index_entry += size
        self.size = position
        self.next_offset = headers[-1].next_offset

    def _clear_tail(self) -> None:
        self._tail.clear()
        self._tail_last_offsets.clear()

    def _trim_tail(self) -> None:
        if len(self._tail) >= _MAX_TAIL:  # it stopped growing: it may lack the latest batches
            self._clear_tail()
        else:
            del self._tail[:-_KEEP_BEHIND_INDEX]
            del self._tail_last_offsets[:-_KEEP_BEHIND_INDEX]

    def _add_to_tail(self, position: int, header: BatchHeader) -> None:
        if len(self._tail) < _MAX_TAIL:  # past that (a huge index.interval.bytes) find() scans
            self._tail.append(BatchPosition(position, header))
            self._tail_last_offsets.append(header.last_offset)

    def _track(self, header: BatchHeader) -> None:
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        if self.rolling_timestamp is None:
            self.rolling_timestamp = header.max_timestamp

    def index_full(self) -> bool:
        return (len(self.index) + 1) * OffsetIndex.entry_size >= self.max_index_bytes or (
            len(self.time_index) + 1
        ) * TimeIndex.entry_size >= self.max_index_bytes

    def offset_fits(self, last_offset: int) -> bool:
        """Relative offsets are int32 in the index files."""
        return last_offset - self.base_offset <= _INT32_MAX

    def seal(self) -> None:
        """This segment stops being the active one: the time index gets the final maximum
        (Kafka's onBecomeInactiveSegment) and pending index entries reach the files."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base_offset)
        self.index.write_pending()
        self.time_index.write_pending()

    # --- reading -----------------------------------------------------------------------------

    def batches(
        self, start: int = 0, *, verify: bool = False, max_batch_bytes: int | None = None
    ) -> Iterator[BatchPosition]:
        """Batch headers from ``start`` (a batch boundary) to the end of the file.

        Raises SegmentCorrupt on a header that cannot be right (or, with ``verify``, a CRC
        mismatch); a batch cut off by the end of the file counts as damaged too.
        """
        fd, end = self.fd, self.size
        position = start
        chunk = b""
        chunk_start = 0
        while position < end:
            relative = position - chunk_start
            if relative < 0 or relative + BATCH_HEADER_SIZE > len(chunk):
                chunk = os.pread(fd, _SCAN_CHUNK, position)
                chunk_start, relative = position, 0
            if len(chunk) - relative < BATCH_HEADER_SIZE:
                raise SegmentCorrupt(position, "truncated batch header")
            header = read_header(chunk, relative)
            size = header.batch_length + LOG_OVERHEAD
            if header.magic != MAGIC_V2:
                raise SegmentCorrupt(position, f"magic {header.magic}")
            if header.batch_length < MIN_BATCH_LENGTH or position + size > end:
                raise SegmentCorrupt(position, f"batch length {header.batch_length}")
            if header.last_offset_delta < 0 or header.base_offset < 0:
                raise SegmentCorrupt(position, "negative offset")
            if max_batch_bytes is not None and size > max_batch_bytes:
                raise SegmentCorrupt(position, f"batch of {size} bytes")
            if verify:
                data = chunk if relative + size <= len(chunk) else _pread_exact(fd, size, position)
                at = relative if data is chunk else 0
                if len(data) - at < size or not crc_ok(data, at, header):
                    raise SegmentCorrupt(position, "CRC mismatch")
            yield BatchPosition(position, header)
            position += size

    def find(self, offset: int) -> BatchPosition | None:
        """The first batch whose last offset is >= ``offset`` (None: every batch is below)."""
        if offset >= self.next_offset:
            return None
        tail = self._tail
        if tail and offset >= tail[0].header.base_offset and len(tail) < _MAX_TAIL:
            found = bisect_left(self._tail_last_offsets, offset)
            return tail[found] if found < len(tail) else None
        start = self.index.lookup(offset - self.base_offset) if offset > self.base_offset else 0
        for batch in self.batches(start):
            if batch.header.last_offset >= offset:
                return batch
        return None

    def region(self, start: int, end: int) -> FileRegion:
        return FileRegion(self.fd, start, end - start)

    def find_timestamp(self, timestamp: int, start_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after ``start_offset`` whose timestamp
        is >= ``timestamp`` (Kafka's LogSegment.findOffsetByTimestamp)."""
        if self.max_timestamp < timestamp:
            return None
        relative = self.time_index.lookup(timestamp)
        from_offset = max(start_offset, self.base_offset + relative if relative is not None else 0)
        found = self.find(from_offset)
        if found is None:
            return None
        for batch in self.batches(found.position):
            if batch.header.max_timestamp >= timestamp:
                for record in self.records(batch):
                    if record.timestamp >= timestamp and record.offset >= start_offset:
                        return record.offset, record.timestamp
        return None

    def records(self, batch: BatchPosition) -> list[Record]:
        return decode_records(_pread_exact(self.fd, batch.header.size, batch.position))

    def last_modified_ms(self) -> int:
        return os.fstat(self.fd).st_mtime_ns // 1_000_000

    # --- lifecycle ---------------------------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose base offset is >= ``offset``; returns bytes removed."""
        found = self.find(offset)
        if found is None:
            return 0
        position = found.position
        if found.header.base_offset < offset:  # offset is inside this batch: keep it whole
            position += found.header.size
        removed = self.size - position
        if removed:
            os.ftruncate(self.fd, position)
            self.size = position
            self.recover()
        return removed

    def flush_fds(self) -> list[int]:
        """Duplicated descriptors of all three files (pending index entries written first) for
        an fsync in another thread; the caller closes them."""
        self.index.write_pending()
        self.time_index.write_pending()
        fds = [os.dup(self.fd), self.index.dup_fd(), self.time_index.dup_fd()]
        txn_fd = self.txn_index.dup_fd()
        if txn_fd is not None:
            fds.append(txn_fd)
        return fds

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.index.close()
            self.time_index.close()
            self.txn_index.close()
            os.close(self.fd)

    def delete(self) -> None:
        """Close and remove all the segment's files."""
        self.close()
        for path in (self.path, self.index.path, self.time_index.path, self.txn_index.path):
            path.unlink(missing_ok=True)

    def set_variant(self, variant: str) -> None:
        """Rename the files to another variant (``.cleaned`` -> ``.swap`` -> live)."""
        for file in (self, self.index, self.time_index):
            name = file.path.name.removesuffix(self.variant) + variant
            target = file.path.with_name(name)
            if file.path.exists():
                os.replace(file.path, target)
            file.path = target
        txn_path = self.txn_index.path
        self.txn_index.rename(txn_path.with_name(txn_path.name.removesuffix(self.variant) + variant))
        self.variant = variant

    def __repr__(self) -> str:
        return f"<LogSegment {self.path.name} size={self.size} next_offset={self.next_offset}>"


