"""Checks a produce request's records against the topic's log config before they are appended
(Kafka keeps this apart from the log too, as LogValidator).

The common case decodes no record: framing, CRC, sizes and the future-timestamp bound come from
the batch headers. Records are decoded only when the topic asks for it: compacted topics refuse
records without a key, ``message.timestamp.before.max.ms`` needs every record's timestamp, and a
``compression.type`` other than ``producer`` rebuilds batches in the topic's codec.
"""

from __future__ import annotations

from strom.log.config import LogConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.records import (
    BatchHeader,
    InvalidRecord,
    InvalidRecords,
    decode_records,
    recompress,
    rejected_records,
    validate_batches,
)

_NO_LIMIT = 2**63 - 1


class InvalidTimestamp(InvalidRecords):
    error_code = ErrorCode.INVALID_TIMESTAMP


def _out_of_range(timestamp: int, now_ms: int, config: LogConfig) -> InvalidTimestamp:
    low = now_ms - config.message_timestamp_before_max_ms if config.message_timestamp_before_max_ms < _NO_LIMIT else None
    return InvalidTimestamp(
        f"Timestamp {timestamp} of a record is out of range: it must be within "
        f"[{low if low is not None else '-inf'}, {now_ms + config.message_timestamp_after_max_ms}]"
    )


def validate_append(
    records: bytes | bytearray | memoryview, config: LogConfig, now_ms: int
) -> tuple[bytes | bytearray | memoryview, list[BatchHeader]]:
    """The records to append (rebuilt only for compression.type) and their headers; raises an
    InvalidRecords subclass carrying the partition's error code."""
    headers = validate_batches(records, config.max_message_bytes)
    create_time = not config.log_append_time
    if create_time and config.message_timestamp_after_max_ms < _NO_LIMIT:
        latest = now_ms + config.message_timestamp_after_max_ms
        for header in headers:
            if header.max_timestamp > latest:
                raise _out_of_range(header.max_timestamp, now_ms, config)
    check_before = create_time and config.message_timestamp_before_max_ms < _NO_LIMIT
    target = config.compression
    convert = target is not None and any(h.compression != target[0] for h in headers)
    if not (config.compact or check_before or convert):
        return records, headers
    view = memoryview(records)
    batches = []
    position = 0
    for header in headers:
        batch = view[position : position + header.size]
        position += header.size
        decoded = decode_records(batch)
        if config.compact and (keyless := [i for i, r in enumerate(decoded) if r.key is None]):
            # KIP-467: every refused record named, so clients fail exactly those
            errors = [(i, "Compacted topic cannot accept message without key") for i in keyless]
            raise InvalidRecord(rejected_records(errors), errors)
        if check_before:
            earliest = now_ms - config.message_timestamp_before_max_ms
            if late := [(i, r.timestamp) for i, r in enumerate(decoded) if r.timestamp < earliest]:
                errors = [(i, str(_out_of_range(t, now_ms, config))) for i, t in late]
                raise InvalidTimestamp(rejected_records(errors), errors)
        if convert and target is not None and header.compression != target[0]:
            batches.append(recompress(batch, *target))
        else:
            batches.append(bytes(batch))
    if not convert:
        return records, headers
    data = b"".join(batches)
    return data, validate_batches(data, config.max_message_bytes)
