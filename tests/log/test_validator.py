"""log.validator: what a topic's config lets into its log."""

from __future__ import annotations

import pytest

from strom.log.config import LogConfig
from strom.log.validator import InvalidTimestamp, validate_append
from strom.protocol.errors import ErrorCode
from strom.protocol.records import (
    COMPRESSION_GZIP,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    CorruptRecord,
    InvalidRecord,
    RecordTooLarge,
    build_batch,
    decode_records,
    read_header,
)

from .helpers import NOW


def batch(*records, compression=COMPRESSION_NONE, producer_id=-1, base_sequence=-1) -> bytes:
    return build_batch(list(records), compression=compression, producer_id=producer_id,
                       producer_epoch=0 if producer_id >= 0 else -1, base_sequence=base_sequence)


def test_default_config_passes_batches_through_untouched():
    data = batch((b"k", b"v", [], NOW)) + batch((None, b"w", [], NOW))
    records, headers = validate_append(data, LogConfig(), NOW)
    assert records is data and len(headers) == 2


def test_size_and_crc_are_checked():
    data = bytearray(batch((b"k", b"v" * 100, [], NOW)))
    with pytest.raises(RecordTooLarge):
        validate_append(bytes(data), LogConfig(max_message_bytes=100), NOW)
    data[-1] ^= 1
    with pytest.raises(CorruptRecord):
        validate_append(bytes(data), LogConfig(), NOW)


def test_compacted_topics_need_keys():
    config = LogConfig(cleanup_policy="compact")
    validate_append(batch((b"k", b"v", [], NOW)), config, NOW)
    with pytest.raises(InvalidRecord) as info:
        validate_append(batch((b"k", b"v", [], NOW), (None, b"v", [], NOW), (b"k", b"v", [], NOW), (None, b"v", [], NOW)),
                        config, NOW)
    # KIP-467: each refused record by its index in the batch, and Kafka's summary
    assert [i for i, _ in info.value.record_errors] == [1, 3]
    assert str(info.value).startswith("One or more records have been rejected due to 2 record errors in total")


def test_records_too_old_are_named():
    config = LogConfig(message_timestamp_before_max_ms=1000)
    with pytest.raises(InvalidTimestamp) as info:
        validate_append(batch((b"k", b"v", [], NOW), (b"k", b"v", [], NOW - 5000)), config, NOW)
    assert [i for i, _ in info.value.record_errors] == [1]


def test_timestamps_too_far_ahead_are_refused_by_default():
    config = LogConfig()
    validate_append(batch((b"k", b"v", [], NOW + 3_600_000)), config, NOW)
    with pytest.raises(InvalidTimestamp) as info:
        validate_append(batch((b"k", b"v", [], NOW + 3_600_001)), config, NOW)
    assert info.value.error_code is ErrorCode.INVALID_TIMESTAMP
    # LogAppendTime topics take the broker's clock instead: nothing to check.
    validate_append(batch((b"k", b"v", [], NOW * 2)), LogConfig(message_timestamp_type="LogAppendTime"), NOW)


def test_timestamps_too_old_only_when_configured():
    old = batch((b"k", b"v", [], NOW), (b"k", b"v", [], NOW - 10_000))
    validate_append(old, LogConfig(), NOW)
    with pytest.raises(InvalidTimestamp):
        validate_append(old, LogConfig(message_timestamp_before_max_ms=5_000), NOW)


def test_topic_compression_type_rebuilds_other_codecs():
    records = [(b"k1", b"v" * 50, [("h", b"1")], NOW), (None, None, [], NOW + 1)]
    data = batch(*records, compression=COMPRESSION_GZIP, producer_id=7, base_sequence=3)
    converted, headers = validate_append(data, LogConfig(compression_type="zstd"), NOW)
    header = read_header(converted)
    assert header.compression == COMPRESSION_ZSTD and len(headers) == 1
    assert (header.producer_id, header.base_sequence) == (7, 3)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in decode_records(converted)] == [
        (b"k1", b"v" * 50, [("h", b"1")], NOW), (None, None, [], NOW + 1)
    ]
    same = batch(*records, compression=COMPRESSION_ZSTD)
    assert validate_append(same, LogConfig(compression_type="zstd"), NOW)[0] is same
    plain, _ = validate_append(data, LogConfig(compression_type="uncompressed"), NOW)
    assert read_header(plain).compression == COMPRESSION_NONE
