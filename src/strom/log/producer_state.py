"""Idempotent producer state of one partition (KIP-98; Kafka's ProducerStateManager).

For every producer id that wrote to the partition: its epoch and the metadata of its last five
batches (first and last sequence, first and last offset, timestamp), so that a retried batch is
recognised and answered with the offsets it got the first time, and a gap or a stale epoch is
refused. Checks follow Kafka's ProducerAppendInfo:

- an epoch older than the producer's is INVALID_PRODUCER_EPOCH;
- a newer epoch must start at sequence 0 (KIP-360 bumps), unless the producer had no epoch;
- in the same epoch the first sequence must follow the last one (wrapping after 2**31 - 1),
  unless the producer is unknown here (its records were deleted by retention or DeleteRecords,
  or it expired): then any sequence is accepted, as Kafka 2.5+ does.

Transactions (KIP-98): a transactional batch opens the producer's transaction in this partition
(its first offset, ``current_txn_first_offset``) unless one is open; a control batch (the
coordinator's commit or abort marker) closes it and ``update`` returns the CompletedTxn, whose
abort the partition records in its transaction index. ``ongoing`` maps each producer with an
open transaction to its first offset: the smallest is the first unstable offset, which bounds
the partition's last stable offset. A non-transactional write while the producer has a
transaction open is INVALID_TXN_STATE, as in Kafka.

The state is rebuilt from batch headers alone (plus each marker's record), so recovery decodes
no data records. Snapshots (``<offset>.snapshot``, with a CRC-32C) are written when a segment
rolls and on clean shutdown; loading takes the newest snapshot at or below the log end and
replays the batches after it. Version 2 keeps all five batches of each producer: Kafka's
version 1 keeps the last only, so after a clean restart the retry of an older batch still in
flight is refused as out of order, and librdkafka then fails the producer (the oldest batch in
flight) or bumps its epoch and sends the batches again (a later one), duplicating those in the
log. Version 1 snapshots are still read.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

from strom.log.checkpoint import write_atomic
from strom.protocol.errors import ErrorCode
from strom.protocol.records import BatchHeader

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".snapshot"
BATCHES_KEPT = 5  # the producer's max.in.flight.requests.per.connection with idempotence
INT32_MAX = 2**31 - 1
NO_SEQUENCE = -1
NO_EPOCH = -1

_SNAPSHOT_VERSION = 2
_SNAPSHOT_HEADER = struct.Struct(">hIi")  # version, crc (of what follows), entry count
_SNAPSHOT_ENTRY_V1 = struct.Struct(">qhiqiqiq")
# producer id, epoch, last sequence, last offset, offset delta, timestamp, coordinator epoch,
# current transaction's first offset (-1: none)
_SNAPSHOT_ENTRY = struct.Struct(">qhqiqb")
# producer id, epoch, last timestamp, coordinator epoch, current transaction's first offset,
# batch count; then that many _SNAPSHOT_BATCH, oldest first
_SNAPSHOT_BATCH = struct.Struct(">iiqiq")  # first sequence, last sequence, first offset, offset delta, timestamp


class ProducerStateError(Exception):
    error_code = ErrorCode.UNKNOWN_SERVER_ERROR


class InvalidProducerEpoch(ProducerStateError):
    error_code = ErrorCode.INVALID_PRODUCER_EPOCH


class CoordinatorFenced(ProducerStateError):
    error_code = ErrorCode.TRANSACTION_COORDINATOR_FENCED


class OutOfOrderSequence(ProducerStateError):
    error_code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidTxnState(ProducerStateError):
    error_code = ErrorCode.INVALID_TXN_STATE


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    """A transaction that a marker ended in this partition: its first data offset here (the
    marker's own offset when it wrote nothing), the marker's offset, and whether it aborted."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int = NO_EPOCH
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_KEPT))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    current_txn_first_offset: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def duplicate_of(self, header: BatchHeader) -> BatchMetadata | None:
        if header.producer_epoch != self.epoch:
            return None
        last_seq = _last_seq(header)
        for batch in self.batches:
            if batch.first_seq == header.base_sequence and batch.last_seq == last_seq:
                return batch
        return None


def _last_seq(header: BatchHeader) -> int:
    # Sequences wrap around after INT32_MAX, as Kafka's DefaultRecordBatch.incrementSequence.
    return (header.base_sequence + header.last_offset_delta) % (INT32_MAX + 1)


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


class ProducerStateManager:
    """Fields: ``producers`` by id, changed by ``check`` + ``update`` on append, by replay at
    load, and by ``expire`` / ``truncate_head``; ``ongoing``: producer id -> first offset of its
    open transaction, kept equal to the entries' ``current_txn_first_offset`` by the same
    methods. Owned by the partition's event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.producers: dict[int, ProducerEntry] = {}
        self.ongoing: dict[int, int] = {}

    # --- the produce path ----------------------------------------------------------------------

    def check(self, headers: Iterable[BatchHeader], *, from_client: bool = True) -> BatchMetadata | None:
        """Validate the producer batches of one append before anything is written. Returns the
        metadata of the original when the append is a retry of one already in the log.

        A coordinator's own append (``from_client`` False: transactional offset commits) is
        checked for its epoch only, as Kafka's AppendOrigin.COORDINATOR: it has no sequence."""
        pending: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, last seq) within this append
        for header in headers:
            producer_id = header.producer_id
            if producer_id < 0 or header.is_control:
                continue
            entry = self.producers.get(producer_id)
            if not header.is_transactional and entry is not None and entry.current_txn_first_offset >= 0:
                raise InvalidTxnState(
                    f"Expected a transactional write from producer {producer_id} at offset "
                    f"{entry.current_txn_first_offset}"
                )
            if not from_client:
                if entry is not None and header.producer_epoch < entry.epoch:
                    raise InvalidProducerEpoch(
                        f"Epoch of producer {producer_id} is {header.producer_epoch}, older than the last seen epoch {entry.epoch}"
                    )
                continue
            if producer_id not in pending and entry is not None:
                duplicate = entry.duplicate_of(header)
                if duplicate is not None:
                    return duplicate
            epoch, last_seq = pending.get(
                producer_id, (entry.epoch, entry.last_seq) if entry is not None else (NO_EPOCH, NO_SEQUENCE)
            )
            self._check_one(producer_id, header, epoch, last_seq)
            pending[producer_id] = (header.producer_epoch, _last_seq(header))
        return None

    @staticmethod
    def _check_one(producer_id: int, header: BatchHeader, epoch: int, last_seq: int) -> None:
        if header.producer_epoch < epoch:
            raise InvalidProducerEpoch(
                f"Epoch of producer {producer_id} is {header.producer_epoch}, older than the last seen epoch {epoch}"
            )
        first_seq = header.base_sequence
        if header.producer_epoch != epoch:
            if first_seq != 0 and epoch != NO_EPOCH:
                raise OutOfOrderSequence(
                    f"Invalid sequence number {first_seq} for new epoch {header.producer_epoch} of producer {producer_id}"
                )
        elif last_seq != NO_SEQUENCE and not _in_sequence(last_seq, first_seq):
            raise OutOfOrderSequence(
                f"Out of order sequence number for producer {producer_id}: {first_seq} (incoming), "
                f"{last_seq} (current end)"
            )

    def check_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int = -1) -> None:
        """A marker may not carry an epoch older than the producer's, nor come from an older
        coordinator than the last marker did (Kafka's appendEndTxnMarker): the coordinator
        bumps, never lowers, the producer epoch, and a deposed coordinator is fenced."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if coordinator_epoch < entry.coordinator_epoch:
            raise CoordinatorFenced(
                f"Marker of coordinator epoch {coordinator_epoch} for producer {producer_id}: the last "
                f"marker came from coordinator epoch {entry.coordinator_epoch}"
            )
        if producer_epoch < entry.epoch:
            raise InvalidProducerEpoch(
                f"Marker epoch {producer_epoch} of producer {producer_id} is older than its epoch {entry.epoch}"
            )

    def update(self, header: BatchHeader, marker: tuple[bool, int] | None = None) -> CompletedTxn | None:
        """Record a batch that was written (append, or replay at load); header offsets are final.

        For a control batch ``marker`` is (is_commit, coordinator epoch) read from its record;
        the transaction it ends comes back (None for other batches, and for markers of an
        unknown control type, which change nothing)."""
        producer_id = header.producer_id
        if producer_id < 0:
            return None
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(producer_id)
        if header.producer_epoch != entry.epoch:
            entry.epoch = header.producer_epoch
            entry.batches.clear()
        entry.last_timestamp = header.max_timestamp
        if header.is_control:
            if marker is None:
                return None
            is_commit, coordinator_epoch = marker
            offset = header.base_offset
            first = entry.current_txn_first_offset
            entry.current_txn_first_offset = -1
            entry.coordinator_epoch = coordinator_epoch
            self.ongoing.pop(producer_id, None)
            return CompletedTxn(producer_id, first if first >= 0 else offset, offset, not is_commit)
        entry.batches.append(
            BatchMetadata(header.base_sequence, _last_seq(header), header.base_offset, header.last_offset, header.max_timestamp)
        )
        if header.is_transactional and entry.current_txn_first_offset < 0:
            entry.current_txn_first_offset = header.base_offset
            self.ongoing[producer_id] = header.base_offset
        return None

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction (None: none is open)."""
        return min(self.ongoing.values()) if self.ongoing else None

    def last_stable_offset_after(self, completed: CompletedTxn) -> int:
        """The LSO once ``completed`` ended (after ``update``): the oldest other open
        transaction's first offset, else just past the marker (Kafka's lastStableOffset)."""
        first = self.first_unstable_offset()
        return completed.last_offset + 1 if first is None else min(first, completed.last_offset + 1)

    # --- housekeeping --------------------------------------------------------------------------

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers idle for producer.id.expiration.ms (never one inside a transaction)."""
        expired = [
            pid for pid, entry in self.producers.items()
            if entry.current_txn_first_offset < 0 and now_ms - entry.last_timestamp >= expiration_ms
        ]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    def truncate_head(self, log_start_offset: int) -> None:
        """Forget producers whose every batch lies below the new log start offset."""
        gone = [pid for pid, e in self.producers.items() if 0 <= e.last_offset < log_start_offset and e.current_txn_first_offset < 0]
        for pid in gone:
            del self.producers[pid]
        for path in self.snapshots():
            if _snapshot_offset(path) < log_start_offset:
                path.unlink(missing_ok=True)

    def truncate_tail(self, log_end_offset: int) -> None:
        """The log was cut at ``log_end_offset``: snapshots after it are no longer true."""
        for path in self.snapshots():
            if _snapshot_offset(path) > log_end_offset:
                path.unlink(missing_ok=True)

    # --- snapshots -----------------------------------------------------------------------------

    def snapshots(self) -> list[Path]:
        return sorted(
            (p for p in self.directory.glob(f"*{SNAPSHOT_SUFFIX}") if p.name[: -len(SNAPSHOT_SUFFIX)].isdigit()),
            key=_snapshot_offset,
        )

    def take_snapshot(self, offset: int, *, keep: int = 2) -> None:
        """Write the state as of ``offset`` (the log end) and keep only the newest ``keep``."""
        body = bytearray()
        for e in self.producers.values():
            body += _SNAPSHOT_ENTRY.pack(
                e.producer_id, e.epoch, e.last_timestamp, e.coordinator_epoch, e.current_txn_first_offset, len(e.batches)
            )
            for b in e.batches:
                body += _SNAPSHOT_BATCH.pack(b.first_seq, b.last_seq, b.first_offset, b.last_offset - b.first_offset, b.timestamp)
        count = len(self.producers)
        crc = crc32c(struct.pack(">i", count) + bytes(body))
        data = _SNAPSHOT_HEADER.pack(_SNAPSHOT_VERSION, crc, count) + bytes(body)
        write_atomic(self.directory / f"{offset:020d}{SNAPSHOT_SUFFIX}", data, sync=False)
        for old in self.snapshots()[:-keep]:
            old.unlink(missing_ok=True)

    def load_snapshot(self, log_end_offset: int, upto: int | None = None) -> int:
        """Load the newest valid snapshot at or below ``upto`` (default: the log end); returns
        the offset to replay batches from (0 without a snapshot). Snapshots past the log end
        and damaged ones are deleted."""
        self.producers.clear()
        self.ongoing.clear()
        limit = log_end_offset if upto is None else min(upto, log_end_offset)
        for path in reversed(self.snapshots()):
            offset = _snapshot_offset(path)
            if offset > log_end_offset:
                path.unlink(missing_ok=True)
                continue
            if offset > limit:
                continue
            try:
                self.producers = _read_snapshot(path.read_bytes())
                self.ongoing = {
                    pid: e.current_txn_first_offset for pid, e in self.producers.items() if e.current_txn_first_offset >= 0
                }
                return offset
            except (ValueError, struct.error, OSError) as exc:
                log.warning("ignoring damaged producer snapshot %s: %s", path, exc)
                path.unlink(missing_ok=True)
        return 0


def _snapshot_offset(path: Path) -> int:
    return int(path.name[: -len(SNAPSHOT_SUFFIX)])


def _read_snapshot(data: bytes) -> dict[int, ProducerEntry]:
    version, crc, count = _SNAPSHOT_HEADER.unpack_from(data, 0)
    if version not in (1, _SNAPSHOT_VERSION):
        raise ValueError(f"snapshot version {version}")
    if crc32c(data[6:]) != crc:
        raise ValueError("snapshot CRC mismatch")
    read = _read_entry_v1 if version == 1 else _read_entry
    producers = {}
    position = _SNAPSHOT_HEADER.size
    for _ in range(count):
        entry, position = read(data, position)
        producers[entry.producer_id] = entry
    if position != len(data):
        raise ValueError("snapshot size mismatch")
    return producers


def _read_entry(data: bytes, position: int) -> tuple[ProducerEntry, int]:
    pid, epoch, timestamp, coordinator_epoch, txn_first, batches = _SNAPSHOT_ENTRY.unpack_from(data, position)
    entry = ProducerEntry(pid, epoch, last_timestamp=timestamp, coordinator_epoch=coordinator_epoch,
                          current_txn_first_offset=txn_first)
    position += _SNAPSHOT_ENTRY.size
    for _ in range(batches):
        first_seq, last_seq, first_offset, delta, batch_timestamp = _SNAPSHOT_BATCH.unpack_from(data, position)
        entry.batches.append(BatchMetadata(first_seq, last_seq, first_offset, first_offset + delta, batch_timestamp))
        position += _SNAPSHOT_BATCH.size
    return entry, position


def _read_entry_v1(data: bytes, position: int) -> tuple[ProducerEntry, int]:
    pid, epoch, last_seq, last_offset, delta, timestamp, coordinator_epoch, txn_first = _SNAPSHOT_ENTRY_V1.unpack_from(
        data, position
    )
    entry = ProducerEntry(pid, epoch, last_timestamp=timestamp, coordinator_epoch=coordinator_epoch,
                          current_txn_first_offset=txn_first)
    if last_offset >= 0:
        first_seq = (last_seq - delta) % (INT32_MAX + 1)
        entry.batches.append(BatchMetadata(first_seq, last_seq, last_offset - delta, last_offset, timestamp))
    return entry, position + _SNAPSHOT_ENTRY_V1.size


__all__ = [
    "BatchMetadata",
    "CompletedTxn",
    "InvalidProducerEpoch",
    "InvalidTxnState",
    "OutOfOrderSequence",
    "ProducerStateError",
    "ProducerStateManager",
]
