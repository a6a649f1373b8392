"""Log compaction (cleanup.policy=compact): keep the newest record per key in closed segments.

Three steps, so that the event loop never waits on the heavy part:

1. ``plan`` (event loop): pick the cleanable range of one log, [log start, first uncleanable
   offset), where the first uncleanable offset is the active segment's base, the first
   segment younger than min.compaction.lag.ms, or the first segment reaching past the last
   stable offset (every transaction in the range is decided); clean only when the dirty share
   of that range (bytes after the cleaner checkpoint) reaches min.cleanable.dirty.ratio.
2. ``clean`` (worker thread): read the segments through descriptors of its own, build the map
   key -> newest offset over the dirty part, and write each segment that changes as
   ``<base>.log.cleaned`` with its indexes. Offsets never change; batches keep their codec,
   producer fields and base offset.
3. ``install`` (event loop): per segment, if it is still the one planned, rename cleaned ->
   swap, delete the old files, rename swap -> live. A crash at any point leaves either the old
   segment or a complete ``.swap`` that PartitionLog's loader finishes installing.

Tombstones (null values) follow KIP-534: the first pass that keeps one stamps its batch with a
delete horizon (now + delete.retention.ms); a later pass after the horizon drops it. Records
without a key cannot be compacted and are dropped, as Kafka's cleaner does.

Transactions, as Kafka's cleaner: batches of aborted transactions (known from the transaction
indexes) are dropped and their keys never enter the key map, so an aborted write cannot
supersede a committed one; committed transactional batches are compacted like any other and
keep their flags. A commit or abort marker stays while any batch of its transaction does; once
none does, the first pass stamps it with a delete horizon and a pass after the horizon drops
it together with its transaction index entry (a consumer that already read the data had time
to read the marker). The cleaned segment's transaction index keeps the entries whose markers
remain.
Memory: the key map holds each distinct key of the dirty range once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from strom.log.partition import PartitionLog
from strom.log.segment import CLEANED_SUFFIX, SWAP_SUFFIX, LogSegment, segment_name
from strom.log.txn_index import AbortedTxn
from strom.protocol.records import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    CorruptRecord,
    decode_records,
    read_control_marker,
    read_header,
    rebuild_batch,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A closed segment as planned: identity is checked again at install time."""

    base_offset: int
    size: int
    next_offset: int
    aborted: tuple[AbortedTxn, ...] = ()  # the segment's transaction index


@dataclass(slots=True)
class CleanPlan:
    log: PartitionLog
    directory: Path
    segments: list[SegmentRef]  # [log start .. first uncleanable), in order
    first_dirty_offset: int
    first_uncleanable_offset: int
    now_ms: int
    delete_retention_ms: int
    index_interval_bytes: int
    max_index_bytes: int
    # Every aborted transaction that began in the cleanable range (its marker may lie beyond).
    aborted: list[AbortedTxn] = field(default_factory=list)


@dataclass(slots=True)
class CleanResult:
    plan: CleanPlan
    cleaned: set[int] = field(default_factory=set)  # bases with a .cleaned segment written
    txn_entries: dict[int, list[AbortedTxn]] = field(default_factory=dict)  # by base, for cleaned ones
    bytes_before: int = 0
    bytes_after: int = 0


def dirty_ratio(log: PartitionLog, first_dirty_offset: int, now_ms: int) -> tuple[float, list[LogSegment], int]:
    """(dirty bytes / cleanable bytes, cleanable segments, first uncleanable offset)."""
    config = log.config
    cleanable: list[LogSegment] = []
    last_stable_offset = log.last_stable_offset
    for segment in log.segments[:-1]:
        if config.min_compaction_lag_ms > 0 and now_ms - segment.max_timestamp < config.min_compaction_lag_ms:
            break
        if segment.next_offset > last_stable_offset:
            break  # an open transaction: its outcome decides what may be dropped
        cleanable.append(segment)
    if not cleanable:
        return 0.0, [], log.active.base_offset
    first_uncleanable = cleanable[-1].next_offset
    total = sum(s.size for s in cleanable)
    dirty = sum(s.size for s in cleanable if s.next_offset > first_dirty_offset)
    return (dirty / total if total else 0.0), cleanable, first_uncleanable


def plan(log: PartitionLog, first_dirty_offset: int, now_ms: int, *, force: bool = False) -> CleanPlan | None:
    """A cleaning plan when the log is compacted and dirty enough (event loop)."""
    if not log.config.compact:
        return None
    first_dirty_offset = max(first_dirty_offset, log.log_start_offset)
    ratio, cleanable, first_uncleanable = dirty_ratio(log, first_dirty_offset, now_ms)
    if not cleanable or ratio <= 0:
        return None
    # max.compaction.lag.ms: dirty records older than this are cleaned whatever the ratio.
    overdue = any(
        s.next_offset > first_dirty_offset and s.rolling_timestamp is not None
        and 0 <= s.rolling_timestamp < now_ms - log.config.max_compaction_lag_ms
        for s in cleanable
    )
    if not (force or overdue or ratio >= log.config.min_cleanable_dirty_ratio):
        return None
    for segment in cleanable:
        segment.seal()  # pending index entries reach the files the worker reads
    return CleanPlan(
        log=log,
        directory=log.directory,
        segments=[SegmentRef(s.base_offset, s.size, s.next_offset, tuple(s.txn_index.entries)) for s in cleanable],
        first_dirty_offset=first_dirty_offset,
        first_uncleanable_offset=first_uncleanable,
        now_ms=now_ms,
        delete_retention_ms=log.config.delete_retention_ms,
        index_interval_bytes=log.config.index_interval_bytes,
        max_index_bytes=log.config.segment_index_bytes,
        aborted=[e for s in log.segments for e in s.txn_index.entries if e.first_offset < first_uncleanable],
    )


def _read_batches(path: Path, size: int) -> Iterator[tuple[BatchHeader, bytes]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        position = 0
        while position < size:
            head = os.pread(fd, BATCH_HEADER_SIZE, position)
            header = read_header(head)
            data = os.pread(fd, header.size, position)
            yield header, data
            position += header.size
    finally:
        os.close(fd)


class _Aborted:
    """Which transactional batches belong to aborted transactions: per producer, the
    [first offset, marker offset] ranges of its aborted transactions."""

    def __init__(self, aborted: list[AbortedTxn]) -> None:
        self._ranges: dict[int, list[tuple[int, int]]] = {}
        for entry in aborted:
            self._ranges.setdefault(entry.producer_id, []).append((entry.first_offset, entry.last_offset))

    def __contains__(self, header: BatchHeader) -> bool:
        if not header.is_transactional or header.is_control:
            return False
        ranges = self._ranges.get(header.producer_id, ())
        return any(first <= header.base_offset <= last for first, last in ranges)


def clean(plan: CleanPlan) -> CleanResult:
    """Worker thread: build the key map over the dirty range and write cleaned segments."""
    result = CleanResult(plan)
    aborted = _Aborted(plan.aborted)
    latest: dict[bytes, int] = {}
    paths = {ref.base_offset: plan.directory / segment_name(ref.base_offset) for ref in plan.segments}
    for ref in plan.segments:
        if ref.next_offset <= plan.first_dirty_offset:
            continue
        for header, data in _read_batches(paths[ref.base_offset], ref.size):
            if header.is_control or header in aborted:
                continue
            for record in decode_records(data):
                if record.key is not None and record.offset >= plan.first_dirty_offset:
                    latest[record.key] = record.offset
    # Producer id -> whether a batch of its current transaction was kept (markers need it).
    txn_has_data: dict[int, bool] = {}
    for ref in plan.segments:
        result.bytes_before += ref.size
        kept_batches: list[bytes] = []
        dropped_markers: set[int] = set()
        changed = False
        for header, data in _read_batches(paths[ref.base_offset], ref.size):
            if header.is_control:
                rebuilt = _clean_marker(header, data, txn_has_data.pop(header.producer_id, False), plan)
                if not rebuilt:
                    dropped_markers.add(header.base_offset)
            elif header in aborted:
                rebuilt = b""
            else:
                rebuilt = _clean_batch(header, data, latest, plan)
                if rebuilt and header.is_transactional:
                    txn_has_data[header.producer_id] = True
            if rebuilt is not data:
                changed = True
            if rebuilt:
                kept_batches.append(rebuilt)
        if not changed:
            result.bytes_after += ref.size
            continue
        result.cleaned.add(ref.base_offset)
        entries = [e for e in ref.aborted if e.last_offset not in dropped_markers]
        result.txn_entries[ref.base_offset] = entries
        result.bytes_after += _write_cleaned(plan, ref.base_offset, kept_batches, entries)
    return result


def _clean_marker(header: BatchHeader, data: bytes, has_data: bool, plan: CleanPlan) -> bytes:
    """A marker stays while its transaction has data; then it gets a delete horizon, and
    after the horizon it goes (b"")."""
    if has_data:
        return data
    horizon = header.delete_horizon_ms
    if horizon is not None:
        return b"" if plan.now_ms >= horizon else data
    try:
        records = decode_records(data)
        read_control_marker(data)
    except CorruptRecord:
        return data  # not ours to judge: keep it as it is
    return rebuild_batch(header, records, delete_horizon_ms=plan.now_ms + plan.delete_retention_ms)


def _clean_batch(header: BatchHeader, data: bytes, latest: dict[bytes, int], plan: CleanPlan) -> bytes:
    """The batch unchanged (the same object), rebuilt with fewer records, or b"" if none remain."""
    records = decode_records(data)
    horizon = header.delete_horizon_ms
    kept = []
    stamp_horizon = False
    for record in records:
        if record.key is None or latest.get(record.key, -1) > record.offset:
            continue  # superseded by a newer record with the same key (or keyless)
        if record.value is None:
            if horizon is None:
                stamp_horizon = True
            elif plan.now_ms >= horizon:
                continue  # tombstone past its delete horizon
        kept.append(record)
    if len(kept) == len(records) and not stamp_horizon:
        return data
    if not kept:
        return b""
    return rebuild_batch(header, kept, delete_horizon_ms=plan.now_ms + plan.delete_retention_ms if stamp_horizon else horizon)


def _write_cleaned(plan: CleanPlan, base_offset: int, batches: list[bytes], txn_entries: list[AbortedTxn]) -> int:
    for path in plan.directory.glob(f"{segment_name(base_offset, '')}*{CLEANED_SUFFIX}"):
        path.unlink()
    segment = LogSegment(
        plan.directory,
        base_offset,
        index_interval_bytes=plan.index_interval_bytes,
        max_index_bytes=plan.max_index_bytes,
        create=True,
        now_ms=plan.now_ms,
        variant=CLEANED_SUFFIX,
    )
    try:
        if batches:  # an emptied segment stays as an empty file, so the offsets keep their place
            segment.append(b"".join(batches), [read_header(b) for b in batches])
        segment.txn_index.rebuild(txn_entries)
        segment.seal()
        for fd in segment.flush_fds():
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return segment.size
    finally:
        segment.close()


def install(result: CleanResult) -> int:
    """Event loop: swap in the cleaned segments that still match the plan; returns how many
    were replaced. Leftover ``.cleaned`` files of skipped segments are removed."""
    plan = result.plan
    log_ = plan.log
    installed = 0
    for ref in plan.segments:
        if ref.base_offset not in result.cleaned:
            continue
        index = next((i for i, s in enumerate(log_.segments) if s.base_offset == ref.base_offset), None)
        current = log_.segments[index] if index is not None else None
        if index is None or current is None or current is log_.active or (current.size, current.next_offset) != (ref.size, ref.next_offset):
            _discard_cleaned(plan.directory, ref.base_offset)
            continue
        log_.replace_segment(index, _swap_in(log_, current, result.txn_entries.get(ref.base_offset, [])))
        installed += 1
    return installed


def _swap_in(log_: PartitionLog, current: LogSegment, txn_entries: list[AbortedTxn]) -> LogSegment:
    base = current.base_offset
    cleaned = LogSegment(log_.directory, base, variant=CLEANED_SUFFIX)
    cleaned.close()
    cleaned.set_variant(SWAP_SUFFIX)
    current.delete()
    cleaned.set_variant("")
    segment = LogSegment(
        log_.directory,
        base,
        index_interval_bytes=log_.config.index_interval_bytes,
        max_index_bytes=log_.config.segment_index_bytes,
    )
    if not segment.load():
        segment.recover()
        segment.txn_index.rebuild(txn_entries)
    return segment


def _discard_cleaned(directory: Path, base_offset: int) -> None:
    for path in directory.glob(f"{segment_name(base_offset, '')}*{CLEANED_SUFFIX}"):
        path.unlink(missing_ok=True)
