"""RecordBatch v2 (magic 2): header view, validation, offset assignment, record codec.

Sans-IO: standard library plus ``crc32c`` and ``cramjam``. The broker treats a batch as
opaque bytes on the hot path: ``read_header`` is one ``struct.unpack_from``,
``validate_batches`` checks framing and CRC without decoding a record, and
``assign_offsets`` patches the fields that lie outside the CRC. Records are decoded only
where someone must look inside (compaction, ListOffsets by timestamp, tools, tests).

Layout (KIP-98; byte offsets from the batch start, header 61 bytes)::

    baseOffset int64 @0 | batchLength int32 @8 | partitionLeaderEpoch int32 @12 |
    magic int8 @16 | crc uint32 @17 | attributes int16 @21 | lastOffsetDelta int32 @23 |
    baseTimestamp int64 @27 | maxTimestamp int64 @35 | producerId int64 @43 |
    producerEpoch int16 @51 | baseSequence int32 @53 | recordsCount int32 @57 | records @61

CRC-32C covers attributes .. end of batch; baseOffset, batchLength, partitionLeaderEpoch
and magic are outside it, so the broker rewrites offset and epoch without recomputing it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cramjam
from crc32c import crc32c

from .errors import ErrorCode

# --- layout -------------------------------------------------------------------------------

MAGIC_V2 = 2
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted in batchLength
BATCH_HEADER_SIZE = 61
RECORD_BATCH_OVERHEAD = BATCH_HEADER_SIZE  # Kafka's DefaultRecordBatch.RECORD_BATCH_OVERHEAD
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD  # batchLength of a batch with no records

BASE_OFFSET_OFFSET = 0
LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35
RECORDS_OFFSET = 61

# --- attributes ---------------------------------------------------------------------------

COMPRESSION_CODEC_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08  # set = LogAppendTime
TRANSACTIONAL_FLAG_MASK = 0x10
CONTROL_FLAG_MASK = 0x20
DELETE_HORIZON_FLAG_MASK = 0x40  # KIP-534: baseTimestamp holds the tombstone delete horizon

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

TIMESTAMP_CREATE_TIME = 0
TIMESTAMP_LOG_APPEND_TIME = 1

NO_PRODUCER_ID = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. recordsCount
_PREFIX = struct.Struct(">qiib")  # baseOffset .. magic
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
assert _HEADER.size == BATCH_HEADER_SIZE


# --- errors (Kafka error codes as plain ints: protocol/errors.py owns the enum) -----------


class InvalidRecords(Exception):
    """A records blob the broker refuses; ``error_code`` goes into the partition response."""

    error_code = ErrorCode.INVALID_RECORD

    def __init__(self, message: str, record_errors: Sequence[tuple[int, str | None]] = ()) -> None:
        super().__init__(message)
        self.error_code = type(self).error_code
        # KIP-467: (index of the record in its batch, why) for each record refused
        self.record_errors = list(record_errors)


def rejected_records(errors: Sequence[tuple[int, str | None]]) -> str:
    """Kafka's summary of per-record errors (LogValidator.processRecordErrors)."""
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3])
    return (f"One or more records have been rejected due to {len(errors)} record errors in total, "
            f"and only showing the first three errors at most: [{shown}]")


class CorruptRecord(InvalidRecords):
    error_code = ErrorCode.CORRUPT_MESSAGE


class RecordTooLarge(InvalidRecords):
    error_code = ErrorCode.MESSAGE_TOO_LARGE


class InvalidRecord(InvalidRecords):
    error_code = ErrorCode.INVALID_RECORD


class UnsupportedMagic(InvalidRecords):
    error_code = ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


# --- header -------------------------------------------------------------------------------


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_CODEC_MASK

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG_MASK)

    @property
    def delete_horizon_ms(self) -> int | None:
        """KIP-534: when tombstones in this batch may be dropped by the cleaner."""
        return self.base_timestamp if self.attributes & DELETE_HORIZON_FLAG_MASK else None

    @property
    def size(self) -> int:
        """Bytes the whole batch takes on disk and on the wire."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1


_new_header = tuple.__new__
_unpack_header = _HEADER.unpack_from


def read_header(buf: Any, pos: int = 0) -> BatchHeader:
    """The header at ``pos`` of any buffer (bytes, bytearray, memoryview, mmap)."""
    return _new_header(BatchHeader, _unpack_header(buf, pos))


def crc_ok(buf: Any, pos: int, header: BatchHeader) -> bool:
    """Whether the stored CRC-32C matches the batch at ``pos`` of ``buf``."""
    end = pos + header.batch_length + LOG_OVERHEAD
    with memoryview(buf) as view:
        return crc32c(view[pos + ATTRIBUTES_OFFSET : end]) == header.crc


# --- produce path -------------------------------------------------------------------------


def validate_batches(data: bytes | bytearray | memoryview, max_message_bytes: int) -> list[BatchHeader]:
    """Split a produce request's records blob into batches and check each one.

    Framing, magic, size, CRC and record count, as Kafka's LogValidator does for a client
    append; no record is decoded. Raises an ``InvalidRecords`` subclass.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    total = len(view)
    if total == 0:
        raise InvalidRecord("produce request has no record batches")
    headers: list[BatchHeader] = []
    pos = 0
    while pos < total:
        remaining = total - pos
        if remaining <= MAGIC_OFFSET:
            raise CorruptRecord(f"{remaining} trailing bytes are too few for a batch header")
        magic = view[pos + MAGIC_OFFSET]
        if magic != MAGIC_V2:
            if magic in (0, 1):
                raise UnsupportedMagic(f"message format v{magic} is not supported")
            raise CorruptRecord(f"invalid magic {magic}")
        if remaining < BATCH_HEADER_SIZE:
            raise CorruptRecord(f"{remaining} trailing bytes are too few for a batch header")
        header = _new_header(BatchHeader, _unpack_header(view, pos))
        size = header.batch_length + LOG_OVERHEAD
        if header.batch_length < MIN_BATCH_LENGTH or size > remaining:
            raise CorruptRecord(f"batch length {header.batch_length} does not fit the data")
        if size > max_message_bytes:
            raise RecordTooLarge(f"batch of {size} bytes exceeds max.message.bytes {max_message_bytes}")
        if crc32c(view[pos + ATTRIBUTES_OFFSET : pos + size]) != header.crc:
            raise CorruptRecord(f"CRC mismatch in batch at byte {pos}")
        attributes = header.attributes
        if attributes & COMPRESSION_CODEC_MASK > COMPRESSION_ZSTD:
            raise InvalidRecord(f"unknown compression codec {attributes & COMPRESSION_CODEC_MASK}")
        count = header.records_count
        if count < 1 or header.last_offset_delta != count - 1:
            raise InvalidRecord(
                f"record count {count} disagrees with last offset delta {header.last_offset_delta}"
            )
        if attributes & CONTROL_FLAG_MASK:
            raise InvalidRecord("clients may not write control batches")
        if header.producer_id >= 0 and header.base_sequence < 0:
            raise InvalidRecord("idempotent batch without a base sequence")
        headers.append(header)
        pos += size
    return headers


def fetched_batches(data: bytes | bytearray | memoryview) -> tuple[memoryview, list[BatchHeader]]:
    """The whole batches at the start of a fetched records blob, CRC-checked, and their bytes.

    A fetch response may end inside a batch (the leader sends file regions cut at max_bytes):
    the partial tail is dropped, as clients drop it. Raises CorruptRecord for a damaged batch,
    so a follower never appends bytes its leader did not write."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    total = len(view)
    headers: list[BatchHeader] = []
    pos = 0
    while total - pos >= BATCH_HEADER_SIZE:
        header = _new_header(BatchHeader, _unpack_header(view, pos))
        size = header.batch_length + LOG_OVERHEAD
        if header.magic != MAGIC_V2 or header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecord(f"invalid batch at byte {pos} of fetched data")
        if size > total - pos:
            break
        if crc32c(view[pos + ATTRIBUTES_OFFSET : pos + size]) != header.crc:
            raise CorruptRecord(f"CRC mismatch in fetched batch at offset {header.base_offset}")
        headers.append(header)
        pos += size
    return view[:pos], headers


def assign_offsets(
    data: bytes | bytearray | memoryview,
    headers: Sequence[BatchHeader],
    base_offset: int,
    leader_epoch: int,
    log_append_time: int | None,
) -> tuple[bytearray, int]:
    """Copy ``data`` and stamp each batch with its base offset and the leader epoch.

    Both fields lie outside the CRC, so nothing is recomputed unless ``log_append_time`` is
    given (topic with LogAppendTime): then the timestamp type bit and maxTimestamp, which the
    CRC covers, change and the CRC is recomputed. Returns the buffer and the next offset.
    """
    buf = bytearray(data)
    pack_int64 = _INT64.pack_into
    pack_int32 = _INT32.pack_into
    offset = base_offset
    pos = 0
    for header in headers:
        pack_int64(buf, pos, offset)
        pack_int32(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, leader_epoch)
        size = header.batch_length + LOG_OVERHEAD
        if log_append_time is not None:
            _INT16.pack_into(buf, pos + ATTRIBUTES_OFFSET, header.attributes | TIMESTAMP_TYPE_MASK)
            pack_int64(buf, pos + MAX_TIMESTAMP_OFFSET, log_append_time)
            with memoryview(buf) as view:
                crc = crc32c(view[pos + ATTRIBUTES_OFFSET : pos + size])
            _UINT32.pack_into(buf, pos + CRC_OFFSET, crc)
        offset += header.last_offset_delta + 1
        pos += size
    return buf, offset


# --- records ------------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    attributes: int = 0


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint/varlong at ``pos``; IndexError past the end of ``buf``."""
    byte = buf[pos]
    pos += 1
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos
    raw = byte & 0x7F
    shift = 7
    while True:
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecord("varint longer than 10 bytes")


def _write_varint(out: bytearray, value: int) -> None:
    value = (value << 1) ^ (value >> 63)
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024  # the Java client's SnappyOutputStream block size


def _snappy_decompress(data: bytes) -> bytes:
    # The Java client writes xerial framing (16-byte header, then length-prefixed raw
    # blocks); librdkafka and others send one raw snappy block.
    if data[:8] == _XERIAL_MAGIC:
        out = bytearray()
        pos = 16
        while pos < len(data):
            if pos + 4 > len(data):
                raise CorruptRecord("truncated xerial snappy block length")
            (length,) = _INT32.unpack_from(data, pos)
            pos += 4
            if length < 0 or pos + length > len(data):
                raise CorruptRecord("truncated xerial snappy block")
            out += cramjam.snappy.decompress_raw(data[pos : pos + length])
            pos += length
        return bytes(out)
    return bytes(cramjam.snappy.decompress_raw(data))


def _snappy_compress(data: bytes) -> bytes:
    out = bytearray(_XERIAL_HEADER)
    for start in range(0, len(data), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK]))
        out += _INT32.pack(len(block))
        out += block
    return bytes(out)


def _lz4_compress(data: bytes, level: int | None) -> bytes:
    # Independent blocks: Kafka's Java LZ4 reader decodes each block on its own.
    compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
    compressor.compress(data)
    return bytes(compressor.finish())


def decompress(codec: int, data: bytes) -> bytes:
    """The records section of a batch, decompressed; CorruptRecord when it cannot be."""
    try:
        if codec == COMPRESSION_NONE:
            return data
        if codec == COMPRESSION_GZIP:
            return bytes(cramjam.gzip.decompress(data))
        if codec == COMPRESSION_SNAPPY:
            return _snappy_decompress(data)
        if codec == COMPRESSION_LZ4:
            return bytes(cramjam.lz4.decompress(data))
        if codec == COMPRESSION_ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    except (cramjam.DecompressionError, ValueError, OSError) as exc:
        raise CorruptRecord(f"cannot decompress {COMPRESSION_NAMES[codec]} records: {exc}") from exc
    raise CorruptRecord(f"unknown compression codec {codec}")


def compress(codec: int, data: bytes, level: int | None = None) -> bytes:
    """``level`` None means the codec's default (Kafka's compression.<codec>.level)."""
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        return bytes(cramjam.gzip.compress(data, level=level))
    if codec == COMPRESSION_SNAPPY:
        return _snappy_compress(data)
    if codec == COMPRESSION_LZ4:
        return _lz4_compress(data, level)
    if codec == COMPRESSION_ZSTD:
        return bytes(cramjam.zstd.compress(data, level=level))
    raise ValueError(f"unknown compression codec {codec}")


def rebuild_batch(header: BatchHeader, records: Iterable[Any], **changes: Any) -> bytes:
    """``records`` as one batch that keeps ``header``'s base offset, codec, producer fields,
    flags, timestamp type and delete horizon, except for the build_batch arguments given in
    ``changes`` (the cleaner drops records, compression.type changes the codec)."""
    fields: dict[str, Any] = {
        "base_offset": header.base_offset,
        "compression": header.compression,
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence,
        "is_transactional": header.is_transactional,
        "is_control": header.is_control,
        "leader_epoch": header.partition_leader_epoch,
        "timestamp_type": header.timestamp_type,
        "delete_horizon_ms": header.delete_horizon_ms,
    }
    fields.update(changes)
    return build_batch(records, **fields)


def recompress(batch: bytes | bytearray | memoryview, codec: int, level: int | None = None) -> bytes:
    """The batch rebuilt with another codec (topic compression.type); the broker assigns its
    offsets afterwards."""
    return rebuild_batch(read_header(batch), decode_records(batch), compression=codec, compression_level=level)


def decode_records(batch: bytes | bytearray | memoryview) -> list[Record]:
    """Every record of one whole batch; CorruptRecord on anything malformed.

    LogAppendTime batches give every record the batch's maxTimestamp, as Kafka's reader does.
    """
    data = bytes(batch)
    if len(data) < BATCH_HEADER_SIZE:
        raise CorruptRecord("batch shorter than its header")
    header = read_header(data)
    if header.magic != MAGIC_V2:
        raise CorruptRecord(f"magic {header.magic} is not 2")
    if header.batch_length < MIN_BATCH_LENGTH or header.size > len(data):
        raise CorruptRecord("batch length does not fit the data")
    body = decompress(header.compression, data[RECORDS_OFFSET : header.size])
    log_append_time = header.max_timestamp if header.timestamp_type else None
    try:
        return _decode_body(body, header, log_append_time)
    except (IndexError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"malformed record: {exc}") from exc


def _decode_body(body: bytes, header: BatchHeader, log_append_time: int | None) -> list[Record]:
    count = header.records_count
    if count < 0 or count > len(body):  # every record takes at least one byte
        raise CorruptRecord(f"record count {count} is impossible for {len(body)} bytes")
    base_offset = header.base_offset
    base_timestamp = header.base_timestamp
    records: list[Record] = []
    pos = 0
    for _ in range(count):
        length, pos = _read_varint(body, pos)
        end = pos + length
        if length < 1 or end > len(body):
            raise CorruptRecord(f"record length {length} does not fit the batch")
        attributes = body[pos]
        timestamp_delta, pos = _read_varint(body, pos + 1)
        offset_delta, pos = _read_varint(body, pos)
        key, pos = _read_bytes(body, pos, end)
        value, pos = _read_bytes(body, pos, end)
        header_count, pos = _read_varint(body, pos)
        if header_count < 0 or header_count > end - pos:
            raise CorruptRecord(f"header count {header_count} does not fit the record")
        record_headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            name, pos = _read_bytes(body, pos, end)
            if name is None:
                raise CorruptRecord("null header key")
            header_value, pos = _read_bytes(body, pos, end)
            record_headers.append((name.decode("utf-8"), header_value))
        if pos != end:
            raise CorruptRecord("record length disagrees with its content")
        timestamp = log_append_time if log_append_time is not None else base_timestamp + timestamp_delta
        records.append(
            Record(base_offset + offset_delta, timestamp, key, value, record_headers, attributes)
        )
    if pos != len(body):
        raise CorruptRecord(f"{len(body) - pos} bytes follow the last record")
    return records


def _read_bytes(body: bytes, pos: int, end: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(body, pos)
    if length < 0:
        if length != -1:
            raise CorruptRecord(f"negative length {length}")
        return None, pos
    if pos + length > end:
        raise CorruptRecord(f"field of {length} bytes overruns its record")
    return body[pos : pos + length], pos + length


def _encode_record(
    out: bytearray,
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str | bytes, bytes | None]],
) -> None:
    body = bytearray(b"\x00")  # record attributes: unused in v2
    _write_varint(body, timestamp_delta)
    _write_varint(body, offset_delta)
    for part in (key, value):
        if part is None:
            _write_varint(body, -1)
        else:
            _write_varint(body, len(part))
            body += part
    headers = list(headers)
    _write_varint(body, len(headers))
    for name, header_value in headers:
        raw_name = name.encode("utf-8") if isinstance(name, str) else name
        _write_varint(body, len(raw_name))
        body += raw_name
        if header_value is None:
            _write_varint(body, -1)
        else:
            _write_varint(body, len(header_value))
            body += header_value
    _write_varint(out, len(body))
    out += body


def build_batch(
    records: Iterable[Any],
    *,
    base_offset: int = 0,
    compression: int = COMPRESSION_NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    leader_epoch: int = 0,
    timestamp_type: int = TIMESTAMP_CREATE_TIME,
    delete_horizon_ms: int | None = None,
    compression_level: int | None = None,
) -> bytes:
    """Encode one batch with a correct CRC.

    ``records`` holds ``(key, value, headers, timestamp)`` tuples, which take consecutive
    offsets from ``base_offset``, or Record-like objects (``key``, ``value``, ``headers``,
    ``timestamp``, ``offset``), which keep their own offsets: the compactor rebuilds batches
    with gaps that way. Offsets must increase.
    """
    entries: list[tuple[int, int, bytes | None, bytes | None, Any]] = []
    for index, item in enumerate(records):
        if isinstance(item, tuple):
            key, value, headers, timestamp = item
            delta = index
        else:
            key, value, headers, timestamp = item.key, item.value, item.headers, item.timestamp
            delta = item.offset - base_offset
        if entries and delta <= entries[-1][0] or delta < 0:
            raise ValueError(f"record offsets must increase from base_offset (delta {delta})")
        entries.append((delta, timestamp, key, value, headers or ()))
    if not entries:
        raise ValueError("a batch needs at least one record")
    # KIP-534: a delete horizon takes the baseTimestamp field; record deltas are relative to it.
    base_timestamp = entries[0][1] if delete_horizon_ms is None else delete_horizon_ms
    max_timestamp = max(entry[1] for entry in entries)
    body = bytearray()
    for delta, timestamp, key, value, headers in entries:
        _encode_record(body, delta, timestamp - base_timestamp, key, value, headers)
    payload = compress(compression, bytes(body), compression_level)
    attributes = compression & COMPRESSION_CODEC_MASK
    if timestamp_type:
        attributes |= TIMESTAMP_TYPE_MASK
    if is_transactional:
        attributes |= TRANSACTIONAL_FLAG_MASK
    if is_control:
        attributes |= CONTROL_FLAG_MASK
    if delete_horizon_ms is not None:
        attributes |= DELETE_HORIZON_FLAG_MASK
    after_crc = (
        _AFTER_CRC.pack(
            attributes,
            entries[-1][0],
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(entries),
        )
        + payload
    )
    batch_length = MIN_BATCH_LENGTH + len(payload)
    prefix = _PREFIX.pack(base_offset, batch_length, leader_epoch, MAGIC_V2)
    return prefix + _UINT32.pack(crc32c(after_crc)) + after_crc


# --- control batches (KIP-98 transaction markers) -----------------------------------------

CONTROL_ABORT = 0
CONTROL_COMMIT = 1
_CONTROL_KEY = struct.Struct(">hh")  # version 0, type (0 abort, 1 commit)
_END_TXN_MARKER = struct.Struct(">hi")  # version 0, coordinator epoch


class ControlMarker(NamedTuple):
    """The one record of a control batch: what it ends, and the coordinator's epoch."""

    control_type: int
    coordinator_epoch: int

    @property
    def is_commit(self) -> bool:
        return self.control_type == CONTROL_COMMIT


def build_control_batch(
    commit: bool,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int,
    *,
    base_offset: int = 0,
    leader_epoch: int = 0,
) -> bytes:
    """A commit or abort marker, as the coordinator writes it to each partition of a
    transaction (Kafka's EndTransactionMarker): one record, key = version + type, value =
    version + coordinator epoch; the batch is control + transactional with the producer's id and
    epoch and no sequence."""
    key = _CONTROL_KEY.pack(0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = _END_TXN_MARKER.pack(0, coordinator_epoch)
    return build_batch(
        [(key, value, (), timestamp)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        leader_epoch=leader_epoch,
    )


def read_control_marker(batch: bytes | bytearray | memoryview) -> ControlMarker:
    """The marker of a whole control batch; CorruptRecord when it is not one. Unknown control
    types (Kafka reserves the rest) come back as they are, for callers to ignore."""
    records = decode_records(batch)
    if not records or records[0].key is None or len(records[0].key) < _CONTROL_KEY.size:
        raise CorruptRecord("control batch without a control record key")
    version, control_type = _CONTROL_KEY.unpack_from(records[0].key, 0)
    if version < 0:
        raise CorruptRecord(f"control record key version {version}")
    coordinator_epoch = -1
    value = records[0].value
    if control_type in (CONTROL_ABORT, CONTROL_COMMIT) and value is not None and len(value) >= _END_TXN_MARKER.size:
        coordinator_epoch = _END_TXN_MARKER.unpack_from(value, 0)[1]
    return ControlMarker(control_type, coordinator_epoch)
