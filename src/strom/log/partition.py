"""One partition's log: segments ordered by base offset, and the offsets that name its state.

``PartitionLog`` assigns offsets on append, rolls segments, answers reads with file regions,
and moves the log start offset (retention, DeleteRecords). Its offsets always satisfy

    log_start_offset <= last_stable_offset <= high_watermark <= log_end_offset,
    recovery_point <= log_end_offset

checked in ``_check_offsets`` after every change (redpanda's offset_tracker). On a single node
the high watermark is the log end offset. A ``replicated`` log (cluster mode) leaves it to the
replication layer (strom.replication), which moves it with ``update_high_watermark`` once the
in-sync replicas have the records; it is checkpointed in ``replication-offset-checkpoint``.

Transactions (KIP-98): the last stable offset (LSO) is the first offset of the oldest open
transaction (producer_state.ongoing), else the high watermark; read_committed fetches stop
there. ``append_control`` writes the coordinator's commit or abort marker; an abort is recorded
in the marker segment's transaction index (``.txnindex``) with the transaction's first offset,
and ``aborted_transactions`` collects those a read_committed fetch must skip (Kafka's
collectAbortedTransactions). Recovery rebuilds the transaction indexes of recovered segments by
replaying the producers' state from a snapshot taken at or before them.

The event loop owns a PartitionLog. fsync runs in another thread through ``prepare_flush`` /
``run_flush`` / ``complete_flush``, which touch only duplicated descriptors off the loop.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from strom.log.checkpoint import LEADER_EPOCH_CHECKPOINT, LeaderEpochCache
from strom.log.config import LogConfig
from strom.log.producer_state import CompletedTxn, ProducerStateManager
from strom.log.segment import (
    CLEANED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    FileRegion,
    LogSegment,
    SegmentCorrupt,
    segment_name,
)
from strom.log.txn_index import AbortedTxn
from strom.protocol.records import (
    BatchHeader,
    CorruptRecord,
    assign_offsets,
    build_control_batch,
    read_control_marker,
    read_header,
)

log = logging.getLogger(__name__)


class OffsetOutOfRange(Exception):
    """A read or DeleteRecords offset outside [log start, log end] (OFFSET_OUT_OF_RANGE)."""


@dataclass(frozen=True, slots=True)
class AppendInfo:
    base_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class ReadResult:
    regions: list[FileRegion]
    size: int
    # Every record returned lies below this offset (at most the read's limit): the upper bound
    # for collecting aborted transactions. -1 when nothing was read.
    upper_bound: int = -1


EMPTY_READ = ReadResult([], 0)


@dataclass(slots=True)
class FlushJob:
    """Descriptors to fsync (duplicates, closed by run_flush) and the offset they cover."""

    fds: list[int]
    upto_offset: int
    directory: Path | None  # fsync'd too when segments were created or deleted


class PartitionLog:
    """Fields:

    ``segments`` (with ``_bases`` for bisect): sorted by base offset; the last one is active
    and takes appends. Changed by append (roll), retention, DeleteRecords, the cleaner's
    install and truncation, all on the event loop.
    ``log_start_offset``: first offset a consumer may read; moved by retention and
    DeleteRecords, never backwards. ``log_end_offset``: next offset to assign.
    ``high_watermark``: last offset + 1 that consumers see (== log end on one node).
    ``last_stable_offset`` (derived): where read_committed consumers stop.
    ``recovery_point``: everything below it is fsynced; recovery starts at its segment.
    ``producer_state``: idempotent producers and open transactions, changed by appends.
    """

    def __init__(
        self,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        clean_shutdown: bool = True,
        now_ms: int = 0,
        leader_epoch: int = 0,
        replicated: bool = False,
        high_watermark: int | None = None,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.high_watermark = 0
        self.recovery_point = 0
        self.unflushed_messages = 0
        self.last_flush_ms = now_ms
        self.flush_pending_dir = False
        self.leader_epoch = leader_epoch
        self.replicated = replicated
        self.epochs = LeaderEpochCache(directory / LEADER_EPOCH_CHECKPOINT)
        self.producer_state = ProducerStateManager(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rebuild_txn_from = self._open(recovery_point, log_start_offset, clean_shutdown, now_ms)
        if replicated:
            # Only what the ISR had is known to be committed: the checkpoint, never the log end.
            self.high_watermark = min(max(high_watermark or 0, self.log_start_offset), self.log_end_offset)
        else:
            self.epochs.assign(leader_epoch, self.log_end_offset)
        self._load_producer_state(rebuild_txn_from)
        self._check_offsets()

    # --- loading and recovery ----------------------------------------------------------------

    def _open(self, recovery_point: int, log_start_offset: int, clean_shutdown: bool, now_ms: int) -> int | None:
        """Load or recover the segments; returns the base offset of the first recovered
        segment (whose transaction indexes must be rebuilt), None when none was."""
        self._finish_interrupted_swaps()
        bases = sorted(
            int(p.name[: -len(LOG_SUFFIX)])
            for p in self.directory.iterdir()
            if p.name.endswith(LOG_SUFFIX) and p.name[: -len(LOG_SUFFIX)].isdigit()
        )
        self._remove_orphan_indexes(set(bases))
        segments = [self._segment(base, now_ms=now_ms) for base in bases]
        recover_from = len(segments)
        if not clean_shutdown:
            # Recovery starts at the segment holding the recovery point (Kafka's LogLoader).
            recover_from = max(0, bisect.bisect_right(bases, recovery_point) - 1)
        kept: list[LogSegment] = []
        damaged = False
        rebuild_txn_from: int | None = None
        for i, segment in enumerate(segments):
            if damaged:
                log.warning("%s: deleting %s after damage in an earlier segment", self.name, segment.path.name)
                segment.delete()
                continue
            if kept and segment.base_offset < kept[-1].next_offset:
                log.warning("%s: segment %s overlaps its predecessor; deleting it", self.name, segment.path.name)
                segment.delete()
                damaged = True
                continue
            if i >= recover_from or not segment.load():
                truncated = segment.recover(max(self.config.max_message_bytes, 1 << 20) * 2)
                if rebuild_txn_from is None:
                    rebuild_txn_from = segment.base_offset
                if truncated:
                    log.warning(
                        "%s: recovery cut %d damaged bytes from %s", self.name, truncated, segment.path.name
                    )
                    damaged = True
            kept.append(segment)
        if not kept:
            kept = [self._segment(max(log_start_offset, 0), create=True, now_ms=now_ms)]
        elif kept[-1].size == 0 and kept[-1].base_offset < log_start_offset:
            # Everything below the checkpointed log start is gone: start the new log there.
            kept[-1].delete()
            kept[-1] = self._segment(log_start_offset, create=True, now_ms=now_ms)
        self.segments = kept
        self._bases = [s.base_offset for s in kept]
        self.log_end_offset = kept[-1].next_offset
        self.high_watermark = self.log_end_offset
        self.log_start_offset = min(max(log_start_offset, kept[0].base_offset), self.log_end_offset)
        self.recovery_point = self.log_end_offset if clean_shutdown else min(recovery_point, self.log_end_offset)
        if damaged:
            self.epochs.truncate_from_end(self.log_end_offset)
        return rebuild_txn_from

    def _load_producer_state(self, rebuild_txn_from: int | None = None) -> None:
        """The newest snapshot, then the batches after it (headers, and each marker's record).

        With ``rebuild_txn_from``, the snapshot taken at or before that offset is the start, and
        the aborts met in segments from there on go into their (emptied) transaction indexes."""
        state = self.producer_state
        if rebuild_txn_from is not None:
            for segment in self.segments:
                if segment.base_offset >= rebuild_txn_from and len(segment.txn_index):
                    segment.txn_index.rebuild([])
        start = max(state.load_snapshot(self.log_end_offset, rebuild_txn_from), self.log_start_offset)
        for segment, position, header in self.batches(start):
            if header.producer_id >= 0 and header.base_offset >= start:
                completed = state.update(header, self._marker_at(segment, position, header))
                if completed is not None and completed.is_aborted and rebuild_txn_from is not None \
                        and segment.base_offset >= rebuild_txn_from:
                    segment.txn_index.append(self._aborted(completed))
        state.truncate_head(self.log_start_offset)

    def _marker_at(self, segment: LogSegment, position: int, header: BatchHeader) -> tuple[bool, int] | None:
        """(is_commit, coordinator epoch) of a control batch; None for anything else."""
        if not header.is_control:
            return None
        try:
            marker = read_control_marker(os.pread(segment.fd, header.size, position))
        except CorruptRecord as exc:
            log.warning("%s: unreadable control batch at %d: %s", self.name, header.base_offset, exc)
            return None
        if marker.control_type not in (0, 1):
            return None
        return marker.is_commit, marker.coordinator_epoch

    def _aborted(self, completed: CompletedTxn) -> AbortedTxn:
        lso = self.producer_state.last_stable_offset_after(completed)
        return AbortedTxn(completed.producer_id, completed.first_offset, completed.last_offset, lso)

    def _segment(self, base: int, *, create: bool = False, now_ms: int = 0, variant: str = "") -> LogSegment:
        segment = LogSegment(
            self.directory,
            base,
            index_interval_bytes=self.config.index_interval_bytes,
            max_index_bytes=self.config.segment_index_bytes,
            create=create,
            now_ms=now_ms,
            variant=variant,
        )
        # segment.jitter.ms: each segment rolls a random bit early, so that partitions created
        # together do not all roll at once (Kafka's randomSegmentJitter).
        jitter = min(self.config.segment_jitter_ms, self.config.segment_ms)
        segment.roll_jitter_ms = random.randrange(jitter) if jitter > 0 else 0
        return segment

    def _finish_interrupted_swaps(self) -> None:
        """Complete or undo a cleaner install that a crash interrupted (Kafka's swap files).

        ``.cleaned`` files were never installed: delete them. A ``.swap`` segment was complete
        when it was renamed, and replaces the live segment with the same base offset.
        """
        for path in list(self.directory.iterdir()):
            if path.name.endswith(CLEANED_SUFFIX):
                path.unlink(missing_ok=True)
        for path in sorted(self.directory.glob(f"*{LOG_SUFFIX}{SWAP_SUFFIX}")):
            base = int(path.name.split(".")[0])
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                (self.directory / segment_name(base, suffix)).unlink(missing_ok=True)
            swap = self._segment(base, variant=SWAP_SUFFIX)
            swap.set_variant("")
            swap.close()
            log.info("%s: completed an interrupted cleaner swap of segment %d", self.name, base)

    def _remove_orphan_indexes(self, bases: set[int]) -> None:
        for path in self.directory.iterdir():
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                stem = path.name[: -len(suffix)]
                if path.name.endswith(suffix) and stem.isdigit() and int(stem) not in bases:
                    path.unlink(missing_ok=True)

    # --- invariants ----------------------------------------------------------------------------

    def _check_offsets(self) -> None:
        """The one place the offsets' order is checked (STYLE.md: name offsets, assert order)."""
        lso = self.last_stable_offset
        if not (0 <= self.log_start_offset <= lso <= self.high_watermark <= self.log_end_offset):
            raise AssertionError(
                f"{self.name}: log start {self.log_start_offset} <= last stable {lso} <= high watermark "
                f"{self.high_watermark} <= log end {self.log_end_offset} does not hold"
            )
        if self.recovery_point > self.log_end_offset:
            raise AssertionError(f"{self.name}: recovery point {self.recovery_point} past the log end")

    @property
    def last_stable_offset(self) -> int:
        """Below it every transaction is decided: the first offset of the oldest open one,
        else the high watermark (and never below the log start offset)."""
        first = self.producer_state.first_unstable_offset()
        lso = self.high_watermark if first is None else min(first, self.high_watermark)
        return max(lso, self.log_start_offset)

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    @property
    def active(self) -> LogSegment:
        return self.segments[-1]

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def update_config(self, config: LogConfig) -> None:
        """New topic configs apply from the next append, read or retention pass."""
        self.config = config
        for segment in self.segments:
            segment.index_interval_bytes = config.index_interval_bytes
            segment.max_index_bytes = config.segment_index_bytes

    # --- append ----------------------------------------------------------------------------------

    def append(
        self, records: bytes | bytearray | memoryview, headers: list[BatchHeader], now_ms: int, *, from_client: bool = True
    ) -> AppendInfo:
        """Assign offsets to validated batches, patch them in, and write them to the log.

        Idempotent producers' batches are checked first (ProducerStateError on a stale epoch or
        a sequence gap); a retry of a batch already written is not written again: the answer
        carries the offsets it got the first time, as Kafka's. A coordinator's append
        (``from_client`` False) is checked for its epoch only."""
        duplicate = self.producer_state.check(headers, from_client=from_client)
        if duplicate is not None:
            return AppendInfo(duplicate.first_offset, duplicate.last_offset, -1, self.log_start_offset)
        base_offset = self.log_end_offset
        log_append_time = now_ms if self.config.log_append_time else None
        data, next_offset = assign_offsets(records, headers, base_offset, self.leader_epoch, log_append_time)
        size = len(data)
        self._maybe_roll(size, headers, base_offset, next_offset - 1, now_ms)
        stamped = _restamped(headers, base_offset, log_append_time)
        self.active.append(data, stamped)
        self._update_producers(data, stamped)
        self._advance_log_end(next_offset)
        self.unflushed_messages += next_offset - base_offset
        self._check_offsets()
        return AppendInfo(
            base_offset, next_offset - 1, log_append_time if log_append_time is not None else -1, self.log_start_offset
        )

    def append_batches(self, data: bytes | bytearray | memoryview, headers: list[BatchHeader], now_ms: int) -> None:
        """Append batches that already carry their offsets and leader epochs, verbatim (a
        follower's copy of its leader's log; tests). The first base offset may not lie below the
        log end offset; it may lie above it, where the leader's log has a gap (compaction
        removed whole batches). Each new leader epoch met goes into the epoch cache (Kafka's
        follower append)."""
        if headers[0].base_offset < self.log_end_offset:
            raise ValueError(f"batch at {headers[0].base_offset} starts below the log end {self.log_end_offset}")
        for header in headers:
            if header.partition_leader_epoch > self.epochs.latest_epoch:
                self.epochs.assign(header.partition_leader_epoch, header.base_offset)
        self._maybe_roll(len(data), headers, headers[0].base_offset, headers[-1].last_offset, now_ms)
        self.active.append(data, headers)
        self._update_producers(data, headers)
        self._advance_log_end(headers[-1].next_offset)
        self.unflushed_messages += sum(h.last_offset_delta + 1 for h in headers)
        self._check_offsets()

    def append_control(
        self, producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool, now_ms: int
    ) -> AppendInfo:
        """Write the coordinator's commit or abort marker for a producer's transaction (what
        WriteTxnMarkers does in Kafka). InvalidProducerEpoch when the epoch went backwards."""
        self.producer_state.check_marker(producer_id, producer_epoch, coordinator_epoch)
        batch = build_control_batch(commit, producer_id, producer_epoch, coordinator_epoch, now_ms)
        headers = [read_header(batch)]
        base_offset = self.log_end_offset
        data, next_offset = assign_offsets(batch, headers, base_offset, self.leader_epoch, None)
        self._maybe_roll(len(data), headers, base_offset, base_offset, now_ms)
        stamped = _restamped(headers, base_offset, None)
        self.active.append(data, stamped)
        self._update_producers(data, stamped)
        self._advance_log_end(next_offset)
        self.unflushed_messages += 1
        self._check_offsets()
        return AppendInfo(base_offset, base_offset, -1, self.log_start_offset)

    def _advance_log_end(self, next_offset: int) -> None:
        self.log_end_offset = next_offset
        if not self.replicated:
            self.high_watermark = next_offset

    def update_high_watermark(self, offset: int) -> bool:
        """Move the high watermark of a replicated log (clamped to [log start, log end]);
        True when it moved. A leader only raises it; a follower takes its leader's, which may
        be lower than its own after a leader change, as in Kafka."""
        offset = min(max(offset, self.log_start_offset), self.log_end_offset)
        if offset == self.high_watermark:
            return False
        self.high_watermark = offset
        self._check_offsets()
        return True

    def become_leader(self, leader_epoch: int) -> None:
        """Start leading at ``leader_epoch``: new batches carry it, and the epoch cache records
        where it starts (followers truncate by it, KIP-101)."""
        self.leader_epoch = leader_epoch
        self.epochs.assign(leader_epoch, self.log_end_offset)

    def _update_producers(self, data: bytes | bytearray | memoryview, headers: list[BatchHeader]) -> None:
        """Producer state after a write; an abort marker goes into the active segment's
        transaction index (``data`` holds the batches of ``headers``, in order)."""
        position = 0
        for header in headers:
            if header.producer_id >= 0:
                marker = None
                if header.is_control:
                    try:
                        found = read_control_marker(bytes(data[position : position + header.size]))
                    except CorruptRecord:
                        found = None
                    if found is not None and found.control_type in (0, 1):
                        marker = (found.is_commit, found.coordinator_epoch)
                completed = self.producer_state.update(header, marker)
                if completed is not None and completed.is_aborted:
                    self.active.txn_index.append(self._aborted(completed))
            position += header.size

    def _maybe_roll(self, size: int, headers: list[BatchHeader], base_offset: int, last_offset: int, now_ms: int) -> None:
        """Kafka's LogSegment.shouldRoll: size, time, a full index, or an offset range that no
        longer fits the index's int32 relative offsets."""
        active = self.active
        if active.size == 0:
            return
        config = self.config
        if active.rolling_timestamp is not None and active.rolling_timestamp >= 0:
            # Time is measured in record timestamps, as Kafka does, so old data does not roll.
            newest = headers[0].max_timestamp if len(headers) == 1 else max(h.max_timestamp for h in headers)
            waited = newest - active.rolling_timestamp
        else:
            waited = now_ms - active.created_ms
        if (
            active.size > config.segment_bytes - size
            or waited > config.segment_ms - active.roll_jitter_ms
            or active.index_full()
            or not active.offset_fits(last_offset)
        ):
            self.roll(base_offset, now_ms)

    def roll(self, base_offset: int | None = None, now_ms: int = 0) -> LogSegment:
        """Start a new active segment at ``base_offset`` (default: the log end)."""
        base = self.log_end_offset if base_offset is None else base_offset
        self.active.seal()
        self.producer_state.take_snapshot(base)
        segment = self._segment(base, create=True, now_ms=now_ms)
        self.segments.append(segment)
        self._bases.append(base)
        self.flush_pending_dir = True
        return segment

    # --- read ------------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one_batch: bool = True) -> ReadResult:
        """File regions from the batch holding ``offset``, up to ``max_bytes`` and not past the
        batch holding ``max_offset`` (default: the high watermark), from one segment.

        As in Kafka, the region may end inside a batch (clients drop a partial last batch),
        except that with ``min_one_batch`` the first batch is always returned whole (KIP-74).
        read_committed passes the last stable offset as ``max_offset``.
        """
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRange(
                f"offset {offset} outside [{self.log_start_offset}, {self.log_end_offset}] of {self.name}"
            )
        limit = self.high_watermark if max_offset is None else max_offset
        if offset >= limit:
            return EMPTY_READ
        index = max(0, bisect.bisect_right(self._bases, offset) - 1)
        while index < len(self.segments):
            segment = self.segments[index]
            found = segment.find(offset)
            if found is not None:
                break
            index += 1  # the offset lies in a gap after compaction: the next segment has it
        else:
            return EMPTY_READ
        if found.header.base_offset >= limit:
            return EMPTY_READ
        start = found.position
        end = segment.size
        if limit < segment.next_offset:
            stop = segment.find(limit)
            if stop is not None:
                end = stop.position
        length = min(end - start, max_bytes)
        if min_one_batch:
            length = max(length, min(found.header.size, end - start))
        if length <= 0:
            return EMPTY_READ
        # The batch after the region starts past every returned record: the first index entry
        # at or beyond the region's end names an offset at least that far (Kafka's
        # fetchUpperBoundOffset), else the segment's end bounds it.
        upper = min(limit, segment.next_offset)
        if start + length < end:
            entry = bisect.bisect_left(segment.index.positions, start + length)
            if entry < len(segment.index):
                upper = min(upper, segment.base_offset + segment.index.relative_offsets[entry] + 1)
        return ReadResult([segment.region(start, start + length)], length, upper)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [fetch_offset, upper_bound): their producers'
        records in that range are to be dropped by read_committed consumers."""
        found: list[AbortedTxn] = []
        index = max(0, bisect.bisect_right(self._bases, fetch_offset) - 1)
        for segment in self.segments[index:]:
            entries, complete = segment.txn_index.collect(fetch_offset, upper_bound)
            found.extend(entries)
            if complete:
                break
        return found

    def batches(self, start_offset: int = 0) -> Iterator[tuple[LogSegment, int, BatchHeader]]:
        """Every batch from the one holding ``start_offset`` on: (segment, position, header)."""
        index = max(0, bisect.bisect_right(self._bases, start_offset) - 1)
        for segment in self.segments[index:]:
            found = segment.find(start_offset)
            if found is not None:
                for batch in segment.batches(found.position):
                    yield segment, batch.position, batch.header

    def read_bytes(self, start_offset: int = 0) -> bytes:
        """Every batch from ``start_offset`` as bytes (tests and tools; not the fetch path)."""
        out = bytearray()
        for segment, position, header in self.batches(start_offset):
            out += os.pread(segment.fd, header.size, position)
        return bytes(out)

    # --- timestamps (ListOffsets) --------------------------------------------------------------

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp``."""
        for segment in self.segments:
            if segment.max_timestamp >= timestamp and segment.next_offset > self.log_start_offset:
                found = segment.find_timestamp(timestamp, self.log_start_offset)
                if found is not None and found[0] < self.high_watermark:
                    return found
        return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (KIP-734)."""
        best = None
        for segment in self.segments:
            if segment.max_timestamp >= 0 and (best is None or segment.max_timestamp > best.max_timestamp):
                best = segment
        if best is None:
            return None
        found = best.find(best.offset_of_max_timestamp)
        if found is None:
            return None
        for record in best.records(found):
            if record.timestamp == best.max_timestamp:
                return record.offset, record.timestamp
        return best.offset_of_max_timestamp, best.max_timestamp

    # --- moving the log start ------------------------------------------------------------------

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move the log start offset to ``offset`` (-1: the high watermark);
        returns the new log start (the low watermark)."""
        if offset == -1:
            offset = self.high_watermark
        if offset < 0 or offset > self.high_watermark:
            raise OffsetOutOfRange(f"offset {offset} is above the high watermark {self.high_watermark}")
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self.epochs.truncate_from_start(offset)
            self._delete_segments_below_start()
            self.producer_state.truncate_head(offset)
            self._check_offsets()
        return self.log_start_offset

    def _delete_segments_below_start(self) -> int:
        count = 0
        while len(self.segments) > 1 and self.segments[1].base_offset <= self.log_start_offset:
            self._delete_oldest()
            count += 1
        return count

    def _delete_oldest(self) -> None:
        segment = self.segments.pop(0)
        self._bases.pop(0)
        segment.delete()
        self.flush_pending_dir = True
        if self.log_start_offset < self.segments[0].base_offset:
            self.log_start_offset = self.segments[0].base_offset

    def apply_retention(self, now_ms: int) -> int:
        """Delete closed segments past retention.ms / retention.bytes (cleanup.policy delete),
        and any wholly below the log start offset. Returns how many were deleted."""
        deleted = self._delete_segments_below_start()
        config = self.config
        if config.delete:
            if config.retention_ms >= 0:
                while len(self.segments) > 1 and self._expired(self.segments[0], now_ms):
                    self._delete_oldest()
                    deleted += 1
                # Kafka also deletes the active segment once it has expired, by rolling first.
                active = self.active
                if len(self.segments) == 1 and active.size and self._expired(active, now_ms):
                    self.roll(now_ms=now_ms)
                    self._delete_oldest()
                    deleted += 1
            if config.retention_bytes >= 0:
                excess = self.size_bytes - config.retention_bytes
                while len(self.segments) > 1 and excess >= self.segments[0].size:
                    excess -= self.segments[0].size
                    self._delete_oldest()
                    deleted += 1
        if deleted:
            self.epochs.truncate_from_start(self.log_start_offset)
            self.producer_state.truncate_head(self.log_start_offset)
            self._check_offsets()
        return deleted

    def _expired(self, segment: LogSegment, now_ms: int) -> bool:
        # Kafka uses the segment's largest timestamp. A closed segment the cleaner emptied
        # holds nothing to keep.
        if segment.size == 0:
            return segment is not self.active
        return segment.max_timestamp >= 0 and now_ms - segment.max_timestamp > self.config.retention_ms

    def replace_segment(self, index: int, segment: LogSegment) -> None:
        """Put a cleaned copy in place of the closed segment at ``index`` (same base offset)."""
        if segment.base_offset != self._bases[index] or index == len(self.segments) - 1:
            raise ValueError(f"{self.name}: {segment} cannot replace segment {index}")
        self.segments[index] = segment
        self.flush_pending_dir = True

    # --- truncation (recovery tools, replication later) ----------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Remove everything at and after ``offset`` (must be >= the log start offset)."""
        if offset >= self.log_end_offset:
            # Nothing to cut, but an epoch that wrote nothing here may still be recorded (a
            # leader deposed before its first append): forget it, as Kafka's truncateTo does,
            # or the follower would report it again and again.
            self.epochs.truncate_from_end(self.log_end_offset)
            return
        if offset < self.log_start_offset:
            raise OffsetOutOfRange(f"cannot truncate below the log start {self.log_start_offset}")
        while len(self.segments) > 1 and self.segments[-1].base_offset >= offset:
            self.segments.pop().delete()
            self._bases.pop()
        self.active.truncate_to(offset)  # recovers it: its transaction index is rebuilt below
        self.log_end_offset = self.active.next_offset
        self.high_watermark = min(self.high_watermark, self.log_end_offset) if self.replicated else self.log_end_offset
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self.epochs.truncate_from_end(self.log_end_offset)
        self.producer_state.truncate_tail(self.log_end_offset)
        self._load_producer_state(self.active.base_offset)
        self._check_offsets()

    def reset_to(self, offset: int, now_ms: int = 0) -> None:
        """Drop everything and continue empty at ``offset`` (a follower that fell below its
        leader's log start: Kafka's truncateFullyAndStartAt)."""
        for segment in self.segments:
            segment.delete()
        self.segments = [self._segment(offset, create=True, now_ms=now_ms)]
        self._bases = [offset]
        self.log_start_offset = self.log_end_offset = self.high_watermark = self.recovery_point = offset
        self.epochs.truncate_from_end(0)
        self.producer_state.truncate_tail(offset)
        self.producer_state.truncate_head(offset)
        self.flush_pending_dir = True
        self._check_offsets()

    # --- flushing --------------------------------------------------------------------------------

    def flush_due(self, now_ms: int) -> bool:
        """Whether flush.messages or flush.ms asks for an fsync now."""
        if self.flush_pending_dir:  # a roll or a deletion: Kafka flushes after a roll too
            return True
        if self.recovery_point >= self.log_end_offset:
            return False
        return self.unflushed_messages >= self.config.flush_messages or now_ms - self.last_flush_ms >= self.config.flush_ms

    def prepare_flush(self) -> FlushJob:
        """On the event loop: write pending index entries and duplicate the descriptors of
        every segment not yet fully fsynced."""
        fds: list[int] = []
        index = max(0, bisect.bisect_right(self._bases, self.recovery_point) - 1)
        for segment in self.segments[index:]:
            fds.extend(segment.flush_fds())
        directory = self.directory if self.flush_pending_dir else None
        self.flush_pending_dir = False
        job = FlushJob(fds, self.log_end_offset, directory)
        self.unflushed_messages = 0
        return job

    @staticmethod
    def run_flush(job: FlushJob) -> None:
        """In any thread: fsync and close the duplicated descriptors."""
        try:
            for fd in job.fds:
                os.fsync(fd)
            if job.directory is not None and job.directory.exists():
                fd = os.open(job.directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            for fd in job.fds:
                os.close(fd)

    def complete_flush(self, job: FlushJob, now_ms: int) -> None:
        self.recovery_point = max(self.recovery_point, min(job.upto_offset, self.log_end_offset))
        self.last_flush_ms = now_ms
        self._check_offsets()

    def flush(self, now_ms: int = 0) -> None:
        """fsync everything now, on this thread (shutdown, tests)."""
        job = self.prepare_flush()
        self.run_flush(job)
        self.complete_flush(job, now_ms)

    # --- closing ---------------------------------------------------------------------------------

    def close(self, *, flush: bool = True) -> None:
        """Seal the active segment's indexes, fsync (unless the log is being deleted), close."""
        self.active.seal()
        if flush:
            self.producer_state.take_snapshot(self.log_end_offset)
            self.flush()
        for segment in self.segments:
            segment.close()

    def delete(self) -> None:
        """Remove every segment file and checkpoint of this partition (the directory stays)."""
        for segment in self.segments:
            segment.delete()
        self.segments.clear()
        self._bases.clear()
        for path in self.directory.iterdir():
            path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return (
            f"<PartitionLog {self.name} start={self.log_start_offset} hw={self.high_watermark} "
            f"end={self.log_end_offset} segments={len(self.segments)}>"
        )


def _restamped(headers: list[BatchHeader], base_offset: int, log_append_time: int | None) -> list[BatchHeader]:
    """The headers as they are after assign_offsets patched the batches."""
    out = []
    offset = base_offset
    for header in headers:
        if log_append_time is not None:
            header = header._replace(base_offset=offset, max_timestamp=log_append_time)
        else:
            header = tuple.__new__(BatchHeader, (offset, *header[1:]))  # _replace, without its cost
        out.append(header)
        offset += header.last_offset_delta + 1
    return out


__all__ = [
    "AppendInfo",
    "FlushJob",
    "OffsetOutOfRange",
    "PartitionLog",
    "ReadResult",
    "SegmentCorrupt",
]
