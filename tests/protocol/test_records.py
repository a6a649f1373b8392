"""RecordBatch v2: build, validate, assign offsets, decode, compress.

Batches go both ways through kafka-python's independent implementation
(``kafka.record.default_records``), the same code real clients run, so the layout, CRC,
varints and every compression codec are checked against a reference and not only
against themselves.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
import warnings

import pytest
import snappy
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # kafka-python's import uses deprecated importlib APIs
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.codec import snappy_encode
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

from strom.protocol import records as rec
from strom.protocol.records import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CRC_OFFSET,
    RECORDS_OFFSET,
    TIMESTAMP_LOG_APPEND_TIME,
    CorruptRecord,
    InvalidRecord,
    InvalidRecords,
    Record,
    RecordTooLarge,
    UnsupportedMagic,
    assign_offsets,
    build_batch,
    crc_ok,
    decode_records,
    read_header,
    validate_batches,
)

CODECS = [COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD]
CODEC_IDS = [rec.COMPRESSION_NAMES[codec] for codec in CODECS]
NO_LIMIT = 1 << 30

SETTINGS = settings(max_examples=40, deadline=None, database=None)

payloads = st.none() | st.binary(max_size=40)
headers = st.lists(st.tuples(st.text(max_size=8), payloads), max_size=3)
timestamps = st.integers(0, 2**42)
record_tuples = st.lists(st.tuples(payloads, payloads, headers, timestamps), min_size=1, max_size=6)


def _records(count: int = 3, timestamp: int = 1_700_000_000_000) -> list[tuple]:
    return [
        (f"key-{i}".encode(), f"value-{i}".encode() * 20, [("h", b"v")], timestamp + i)
        for i in range(count)
    ]


def _recrc(batch: bytes | bytearray) -> bytes:
    out = bytearray(batch)
    struct.pack_into(">I", out, CRC_OFFSET, crc32c(bytes(out[ATTRIBUTES_OFFSET:])))
    return bytes(out)


def _patch(batch: bytes, offset: int, fmt: str, value: int, *, recrc: bool = True) -> bytes:
    out = bytearray(batch)
    struct.pack_into(fmt, out, offset, value)
    return _recrc(out) if recrc else bytes(out)


def _with_payload(batch: bytes, codec: int, payload: bytes) -> bytes:
    """The batch with its records section replaced by ``payload`` compressed as ``codec``."""
    header = bytearray(batch[:RECORDS_OFFSET])
    struct.pack_into(">i", header, 8, len(header) + len(payload) - 12)
    attributes = (read_header(batch).attributes & ~0x07) | codec
    struct.pack_into(">h", header, ATTRIBUTES_OFFSET, attributes)
    return _recrc(header + payload)


def _uncompressed_records(batch: bytes) -> bytes:
    return rec.decompress(read_header(batch).compression, batch[RECORDS_OFFSET:])


# -- round trips ------------------------------------------------------------------------------


@SETTINGS
@given(
    entries=record_tuples,
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(0, 2**62),
    leader_epoch=st.integers(-1, 2**31 - 1),
    producer=st.sampled_from([(-1, -1, -1), (4000, 3, 0), (2**40, 0, 2**31 - 10)]),
    transactional=st.booleans(),
)
def test_build_validate_decode_round_trip(
    entries: list[tuple],
    codec: int,
    base_offset: int,
    leader_epoch: int,
    producer: tuple[int, int, int],
    transactional: bool,
) -> None:
    producer_id, producer_epoch, base_sequence = producer
    batch = build_batch(
        entries,
        base_offset=base_offset,
        compression=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=transactional,
        leader_epoch=leader_epoch,
    )
    (header,) = validate_batches(batch, max_message_bytes=len(batch))
    assert header == read_header(batch)
    assert header.size == len(batch)
    assert header.magic == 2
    assert header.base_offset == base_offset
    assert header.partition_leader_epoch == leader_epoch
    assert header.compression == codec
    assert header.records_count == len(entries)
    assert header.last_offset_delta == len(entries) - 1
    assert header.next_offset == base_offset + len(entries)
    assert header.base_timestamp == entries[0][3]
    assert header.max_timestamp == max(entry[3] for entry in entries)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == producer
    assert header.is_transactional is transactional
    assert not header.is_control and header.timestamp_type == 0
    assert header.delete_horizon_ms is None
    assert crc_ok(batch, 0, header)

    decoded = decode_records(batch)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in decoded] == [
        (key, value, list(hdrs), timestamp) for key, value, hdrs, timestamp in entries
    ]
    assert [r.offset for r in decoded] == list(range(base_offset, base_offset + len(entries)))
    assert all(r.attributes == 0 for r in decoded)


@SETTINGS
@given(entries=record_tuples, codec=st.sampled_from(CODECS))
def test_kafka_python_reads_our_batches(entries: list[tuple], codec: int) -> None:
    batch = build_batch(entries, base_offset=10, compression=codec)
    reference = DefaultRecordBatch(batch)
    assert reference.validate_crc()
    assert reference.compression_type == codec
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in reference]
    assert got == [
        (10 + i, timestamp, key, value, list(hdrs))
        for i, (key, value, hdrs, timestamp) in enumerate(entries)
    ]


@SETTINGS
@given(entries=record_tuples, codec=st.sampled_from(CODECS), padding=st.integers(0, 3000))
def test_we_read_kafka_python_batches(entries: list[tuple], codec: int, padding: int) -> None:
    """kafka-python's builder, as a producer would send it (snappy in xerial framing)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    # Compressible padding, so that the builder keeps the compressed form.
    entries = [(key, (value or b"") + b"p" * padding, hdrs, ts) for key, value, hdrs, ts in entries]
    for offset, (key, value, hdrs, timestamp) in enumerate(entries):
        builder.append(offset, timestamp=timestamp, key=key, value=value, headers=hdrs)
    batch = bytes(builder.build())
    (header,) = validate_batches(batch, NO_LIMIT)
    decoded = decode_records(batch)
    assert [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in decoded] == [
        (offset, key, value, list(hdrs), timestamp)
        for offset, (key, value, hdrs, timestamp) in enumerate(entries)
    ]


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_large_batch_every_codec(codec: int) -> None:
    """Past the 32 KiB xerial block and the 64 KiB lz4 block sizes."""
    entries = [(None, bytes([i % 251]) * 5000, [], 1000 + i) for i in range(60)]
    batch = build_batch(entries, compression=codec)
    if codec != COMPRESSION_NONE:
        assert len(batch) < 50_000  # actually compressed
    validate_batches(batch, NO_LIMIT)
    assert [r.value for r in decode_records(batch)] == [entry[1] for entry in entries]
    assert [r.value for r in DefaultRecordBatch(batch)] == [entry[1] for entry in entries]


def test_negative_timestamp_deltas_and_max_timestamp() -> None:
    entries = [(b"a", b"1", [], 5000), (b"b", b"2", [], 1000), (b"c", b"3", [], 9000)]
    batch = build_batch(entries)
    header = read_header(batch)
    assert header.base_timestamp == 5000 and header.max_timestamp == 9000
    assert [r.timestamp for r in decode_records(batch)] == [5000, 1000, 9000]


def test_record_objects_keep_their_offsets() -> None:
    """The compactor rebuilds batches with gaps in the offsets."""
    kept = [Record(100, 1, b"a", b"1"), Record(103, 2, b"b", None, [("k", None)]), Record(110, 3, None, b"3")]
    batch = build_batch(kept, base_offset=100)
    header = read_header(batch)
    assert header.last_offset_delta == 10 and header.records_count == 3
    assert decode_records(batch) == kept
    assert crc_ok(batch, 0, header)


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [Record(5, 1, None, None), Record(5, 2, None, None)],  # offsets must increase
        [Record(4, 1, None, None)],  # below base_offset
    ],
)
def test_build_batch_rejects(entries: list) -> None:
    with pytest.raises(ValueError):
        build_batch(entries, base_offset=5)


def test_control_and_log_append_time_flags() -> None:
    batch = build_batch(_records(1), is_control=True, timestamp_type=TIMESTAMP_LOG_APPEND_TIME)
    header = read_header(batch)
    assert header.is_control and header.timestamp_type == 1
    # LogAppendTime: every record reads the batch's maxTimestamp, as Kafka's reader does.
    assert [r.timestamp for r in decode_records(batch)] == [header.max_timestamp]


def test_delete_horizon() -> None:
    """KIP-534: the delete horizon takes baseTimestamp; record timestamps stay right."""
    entries = _records(3, timestamp=1_000_000)
    batch = build_batch(entries, delete_horizon_ms=5_000_000)
    header = read_header(batch)
    assert header.attributes & 0x40
    assert header.delete_horizon_ms == 5_000_000 == header.base_timestamp
    assert header.max_timestamp == 1_000_002
    assert [r.timestamp for r in decode_records(batch)] == [1_000_000, 1_000_001, 1_000_002]
    assert [r.timestamp for r in DefaultRecordBatch(batch)] == [1_000_000, 1_000_001, 1_000_002]
    assert crc_ok(batch, 0, header)
    assert read_header(build_batch(entries)).delete_horizon_ms is None


# -- validate_batches -------------------------------------------------------------------------


def test_several_batches() -> None:
    batches = [build_batch(_records(n), compression=codec) for n, codec in zip((1, 3, 2), CODECS, strict=False)]
    data = b"".join(batches)
    headers = validate_batches(memoryview(data), NO_LIMIT)
    assert [h.records_count for h in headers] == [1, 3, 2]
    assert [h.size for h in headers] == [len(b) for b in batches]
    assert validate_batches(bytearray(data), NO_LIMIT) == headers


@pytest.mark.parametrize("position", range(ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE + 40))
def test_crc_covers_attributes_to_the_end(position: int) -> None:
    batch = build_batch(_records(2))
    corrupted = bytearray(batch)
    corrupted[position] ^= 0x01
    with pytest.raises(CorruptRecord) as caught:
        validate_batches(bytes(corrupted), NO_LIMIT)
    assert caught.value.error_code == 2


def test_corrupt_crc_field_itself() -> None:
    batch = _patch(build_batch(_records(2)), CRC_OFFSET, ">I", 0xDEADBEEF, recrc=False)
    with pytest.raises(CorruptRecord):
        validate_batches(batch, NO_LIMIT)


@pytest.mark.parametrize("position", [0, 7, 12, 15])
def test_offset_and_leader_epoch_are_outside_the_crc(position: int) -> None:
    corrupted = bytearray(build_batch(_records(2)))
    corrupted[position] ^= 0x55
    (header,) = validate_batches(bytes(corrupted), NO_LIMIT)
    assert crc_ok(corrupted, 0, header)


@pytest.mark.parametrize("magic", [0, 1])
def test_old_message_formats_are_unsupported(magic: int) -> None:
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=1000 if magic else None, key=b"k", value=b"v")
    message_set = bytes(builder.build())
    assert message_set[16] == magic  # legacy messages carry magic at the same byte
    with pytest.raises(UnsupportedMagic) as caught:
        validate_batches(message_set, NO_LIMIT)
    assert caught.value.error_code == 43
    # After a good v2 batch, too.
    with pytest.raises(UnsupportedMagic):
        validate_batches(build_batch(_records(1)) + message_set, NO_LIMIT)


@pytest.mark.parametrize("magic", [3, 0x7F, -1])
def test_unknown_magic_is_corrupt(magic: int) -> None:
    batch = _patch(build_batch(_records(1)), 16, ">b", magic, recrc=False)
    with pytest.raises(CorruptRecord):
        validate_batches(batch, NO_LIMIT)


def test_oversize_batch() -> None:
    batch = build_batch(_records(3))
    validate_batches(batch, max_message_bytes=len(batch))
    with pytest.raises(RecordTooLarge) as caught:
        validate_batches(batch, max_message_bytes=len(batch) - 1)
    assert caught.value.error_code == 10
    assert isinstance(caught.value, InvalidRecords)


def test_every_truncation_is_corrupt() -> None:
    batch = build_batch(_records(2))
    for cut in range(1, len(batch)):
        with pytest.raises(CorruptRecord):
            validate_batches(batch[:cut], NO_LIMIT)
        with pytest.raises(CorruptRecord):
            decode_records(batch[:cut])
    # A good batch followed by a partial one.
    with pytest.raises(CorruptRecord):
        validate_batches(batch + batch[:30], NO_LIMIT)


def test_empty_records_is_invalid() -> None:
    with pytest.raises(InvalidRecord) as caught:
        validate_batches(b"", NO_LIMIT)
    assert caught.value.error_code == 87


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (8, ">i", 48),  # batchLength below the header's own size
        (8, ">i", -1),
    ],
)
def test_bad_batch_length_is_corrupt(offset: int, fmt: str, value: int) -> None:
    with pytest.raises(CorruptRecord):
        validate_batches(_patch(build_batch(_records(1)), offset, fmt, value, recrc=False), NO_LIMIT)


def test_client_may_not_write_invalid_batches() -> None:
    base = build_batch(_records(2))
    invalid = [
        _patch(base, ATTRIBUTES_OFFSET, ">h", 5),  # unknown codec
        _patch(base, ATTRIBUTES_OFFSET, ">h", 7),
        _patch(base, 57, ">i", 3),  # recordsCount disagrees with lastOffsetDelta
        _patch(base, 23, ">i", 0),
        _patch(_patch(base, 57, ">i", 0), 23, ">i", -1),  # no records
        build_batch(_records(1), is_control=True),  # control batches are the broker's
        build_batch(_records(1), producer_id=7, producer_epoch=0, base_sequence=-1),
    ]
    for batch in invalid:
        with pytest.raises(InvalidRecord) as caught:
            validate_batches(batch, NO_LIMIT)
        assert caught.value.error_code == 87


# -- assign_offsets ---------------------------------------------------------------------------


def test_assign_offsets_keeps_the_crc() -> None:
    batches = [build_batch(_records(n), compression=codec) for n, codec in ((2, 0), (3, 1), (1, 4))]
    data = b"".join(batches)
    headers = validate_batches(data, NO_LIMIT)
    stamped, next_offset = assign_offsets(data, headers, base_offset=500, leader_epoch=9, log_append_time=None)
    assert next_offset == 506
    assert data == b"".join(batches)  # the input is copied, not patched
    restamped = validate_batches(stamped, NO_LIMIT)  # every CRC still valid
    assert [h.base_offset for h in restamped] == [500, 502, 505]
    assert [h.partition_leader_epoch for h in restamped] == [9, 9, 9]
    assert [h.crc for h in restamped] == [h.crc for h in headers]
    # Only the offset and epoch changed: everything from the crc on is byte-identical.
    position = 0
    for old, new in zip(headers, restamped, strict=True):
        assert stamped[position + CRC_OFFSET : position + new.size] == data[
            position + CRC_OFFSET : position + old.size
        ]
        assert stamped[position + 8 : position + 12] == data[position + 8 : position + 12]
        position += new.size
    offsets = []
    position = 0
    for header in restamped:
        offsets += [r.offset for r in decode_records(stamped[position : position + header.size])]
        position += header.size
    assert offsets == list(range(500, 506))


def test_assign_offsets_with_log_append_time_recomputes_the_crc() -> None:
    batch = build_batch(_records(3, timestamp=1000), compression=COMPRESSION_SNAPPY)
    headers = validate_batches(batch, NO_LIMIT)
    stamped, next_offset = assign_offsets(batch, headers, 40, 2, log_append_time=123_456)
    assert next_offset == 43
    (header,) = validate_batches(stamped, NO_LIMIT)
    assert header.timestamp_type == 1 and header.max_timestamp == 123_456
    assert header.crc != headers[0].crc and crc_ok(stamped, 0, header)
    assert header.compression == COMPRESSION_SNAPPY
    assert [(r.offset, r.timestamp) for r in decode_records(stamped)] == [
        (40, 123_456),
        (41, 123_456),
        (42, 123_456),
    ]
    assert [r.timestamp for r in DefaultRecordBatch(bytes(stamped))] == [123_456] * 3


# -- compression interop ----------------------------------------------------------------------


def test_xerial_snappy_from_the_java_client_decodes() -> None:
    """The Java client frames snappy as xerial blocks; several blocks here."""
    entries = [(None, bytes([i]) * 3000, [], i) for i in range(40)]  # 120 kB of records
    plain = build_batch(entries)
    raw_records = plain[RECORDS_OFFSET:]
    framed = snappy_encode(raw_records, xerial_compatible=True, xerial_blocksize=32 * 1024)
    assert framed.startswith(b"\x82SNAPPY\x00") and len(raw_records) > 3 * 32 * 1024
    batch = _with_payload(plain, COMPRESSION_SNAPPY, framed)
    validate_batches(batch, NO_LIMIT)
    assert [r.value for r in decode_records(batch)] == [entry[1] for entry in entries]


def test_raw_snappy_from_librdkafka_decodes() -> None:
    plain = build_batch(_records(4))
    batch = _with_payload(plain, COMPRESSION_SNAPPY, snappy.compress(plain[RECORDS_OFFSET:]))
    assert decode_records(batch) == decode_records(plain)


def test_our_snappy_is_xerial_framed() -> None:
    """Kafka's Java consumer reads snappy through xerial's stream, so we write that."""
    batch = build_batch(_records(4), compression=COMPRESSION_SNAPPY)
    assert batch[RECORDS_OFFSET:].startswith(b"\x82SNAPPY\x00")


def test_stdlib_gzip_decodes() -> None:
    plain = build_batch(_records(4))
    batch = _with_payload(plain, COMPRESSION_GZIP, gzip.compress(plain[RECORDS_OFFSET:]))
    assert decode_records(batch) == decode_records(plain)


@pytest.mark.parametrize("codec", CODECS[1:], ids=CODEC_IDS[1:])
def test_undecompressable_records_are_corrupt(codec: int) -> None:
    plain = build_batch(_records(2))
    batch = _with_payload(plain, codec, b"\x82SNAPPY\x00" + b"garbage" * 5)
    with pytest.raises(CorruptRecord):
        decode_records(batch)
    with pytest.raises(CorruptRecord):
        decode_records(_with_payload(plain, codec, b""))


# -- decode_records robustness ----------------------------------------------------------------


@SETTINGS
@given(
    entries=record_tuples,
    codec=st.sampled_from(CODECS),
    changes=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_records_decode_or_raise_corrupt(
    entries: list[tuple], codec: int, changes: list[tuple[int, int]]
) -> None:
    """Whatever bytes follow the header, decode_records raises CorruptRecord or decodes."""
    batch = bytearray(build_batch(entries, compression=codec))
    for position, value in changes:
        batch[RECORDS_OFFSET + position % (len(batch) - RECORDS_OFFSET)] = value
    with contextlib.suppress(CorruptRecord):
        decode_records(bytes(batch))


@SETTINGS
@given(body=st.binary(max_size=200), count=st.integers(-2, 10))
def test_garbage_records_section_raises_corrupt(body: bytes, count: int) -> None:
    plain = build_batch(_records(1))
    batch = bytearray(_with_payload(plain, COMPRESSION_NONE, body))
    struct.pack_into(">i", batch, 57, count)
    with contextlib.suppress(CorruptRecord):
        decode_records(bytes(batch))


def test_record_count_beyond_the_data_is_corrupt() -> None:
    batch = _patch(build_batch(_records(1)), 57, ">i", 2**31 - 1)
    with pytest.raises(CorruptRecord):
        decode_records(batch)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_compressed_section_is_the_plain_records_section(codec: int) -> None:
    batch = build_batch(_records(2), compression=codec)
    plain = build_batch(_records(2))
    assert _uncompressed_records(batch) == plain[RECORDS_OFFSET:]
    assert rec.decompress(codec, rec.compress(codec, plain[RECORDS_OFFSET:])) == plain[RECORDS_OFFSET:]


@pytest.mark.parametrize("commit", [True, False])
def test_control_batches_read_as_markers_by_kafka_python(commit: bool) -> None:
    data = rec.build_control_batch(commit, 77, 4, 9, 1_700_000_000_000, base_offset=12)
    header = rec.read_header(data)
    assert header.is_control and header.is_transactional and header.records_count == 1
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (77, 4, -1)
    reference = DefaultRecordBatch(data)
    assert reference.is_control_batch and reference.is_transactional and reference.validate_crc()
    (record,) = list(reference)
    assert record.commit is commit and record.version == 0 and record.offset == 12
    assert record.value == struct.pack(">hi", 0, 9)  # EndTransactionMarker: version, coordinator epoch
    marker = rec.read_control_marker(data)
    assert (marker.is_commit, marker.coordinator_epoch) == (commit, 9)


def test_control_marker_of_a_data_batch_is_corrupt() -> None:
    with pytest.raises(CorruptRecord):
        rec.read_control_marker(rec.build_batch([(None, b"v", [], 0)]))
    unknown = rec.build_batch([(struct.pack(">hh", 0, 5), None, [], 0)], is_control=True)
    assert rec.read_control_marker(unknown).control_type == 5
