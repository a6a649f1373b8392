"""The codec facade: every API and version strom advertises, in both directions.

For each (api_key, version) in the handler registry (Produce v0-2 are advertised but never
decoded, so they start at ``decodable_from``; see test_legacy_produce.py), Hypothesis builds
kio entities from the message classes' own field descriptions (``schema.struct_fields``)
and checks, for requests and responses alike:

- our encoder writes the same bytes as kio's own writer (``kio.serial.entity_writer``),
  which cross-checks the compiled encoder against an independent implementation;
- a dict tree (how handlers hand responses over) encodes to the same bytes as the entity;
- decoding gives the entity back, through kio's native reader and through our fallback
  reader alike.

Then the robustness rules of KIP-482 and of the sans-IO layer: unknown tagged fields
are skipped at every level, and malformed input only ever raises RemoteProtocolError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.serial import entity_reader, entity_writer

from strom.handlers.registry import registrations
from strom.protocol import codec
from strom.protocol.api import ApiKey
from strom.protocol.decoder import FallbackDecoder
from strom.protocol.encoder import encode_struct
from strom.protocol.errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersion
from strom.protocol.primitives import uvarint
from strom.protocol.schema import EPOCH, STRUCT, FieldSpec, is_flexible, struct_fields

# -- the advertised set ---------------------------------------------------------------------

ADVERTISED = [
    (ApiKey(key), version)
    for key, registration in sorted(registrations().items())
    for version in range(registration.decodable_from, registration.max_version + 1)
]
CASE_IDS = [f"{key.name.lower()}-v{version}" for key, version in ADVERTISED]

# Many versions, few examples each: the whole module stays at a few seconds.
ROUND_TRIP = settings(
    max_examples=6,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

fallback = FallbackDecoder(error_code=KioErrorCode)


# -- entities from the field descriptions ---------------------------------------------------

_INTEGER_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_UNSIGNED_BITS = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
# timedelta and datetime hold these many milliseconds exactly.
_TIMEDELTA_MS = 2**48
# kio's native reader converts datetimes through a float: exact until about 2239, and then
# off by a microsecond now and then. Kafka timestamps stay far below that.
_DATETIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def _milliseconds(bits: int) -> st.SearchStrategy[int]:
    bound = min(2 ** (bits - 1), _TIMEDELTA_MS)
    return st.integers(-bound, bound - 1)


def _scalar(kafka_type: str) -> st.SearchStrategy[Any]:
    if kafka_type in _INTEGER_BITS:
        half = 2 ** (_INTEGER_BITS[kafka_type] - 1)
        return st.integers(-half, half - 1)
    if kafka_type in _UNSIGNED_BITS:
        return st.integers(0, 2 ** _UNSIGNED_BITS[kafka_type] - 1)
    if kafka_type == "float64":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kafka_type == "bool":
        return st.booleans()
    if kafka_type == "error_code":
        return st.sampled_from(list(KioErrorCode))
    if kafka_type == "string":
        return st.text(max_size=6)
    if kafka_type in ("bytes", "records"):
        return st.binary(max_size=8)
    if kafka_type == "uuid":
        return st.uuids()  # never the nil UUID: the classes spell that None
    if kafka_type == "timedelta_i32":
        return _milliseconds(32).map(lambda ms: datetime.timedelta(milliseconds=ms))
    if kafka_type == "timedelta_i64":
        return _milliseconds(64).map(lambda ms: datetime.timedelta(milliseconds=ms))
    if kafka_type == "datetime_i64":
        return st.integers(0, _DATETIME_MS).map(
            lambda ms: EPOCH + datetime.timedelta(milliseconds=ms)
        )
    raise AssertionError(f"no strategy for kafka type {kafka_type!r}")


def _field_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.kafka_type == STRUCT:
        assert spec.struct is not None
        element = entities(spec.struct)
    else:
        element = _scalar(spec.kafka_type)
    values = st.lists(element, max_size=2).map(tuple) if spec.array else element
    if spec.nullable:
        values = st.none() | values
    if spec.tag is not None:
        # Tagged fields are mostly left at their default, which is never written.
        values = st.just(spec.default) | values
    return values


@functools.cache
def entities(cls: type) -> st.SearchStrategy[Any]:
    """Any instance of a message class (or of one of its nested structs)."""
    return st.builds(cls, **{spec.name: _field_values(spec) for spec in struct_fields(cls)})


def as_dict(entity: Any) -> Any:
    """The dict tree a handler would build for the same message."""
    if dataclasses.is_dataclass(entity):
        return {f.name: as_dict(getattr(entity, f.name)) for f in dataclasses.fields(entity)}
    if isinstance(entity, tuple):
        return [as_dict(item) for item in entity]
    return entity


def kio_encode(cls: type, entity: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(cls)(buffer, entity)
    return buffer.getvalue()


# -- round trips ----------------------------------------------------------------------------


# The largest count a five-byte unsigned varint holds (2**35 - 1), and the largest int32.
HUGE_COMPACT_COUNT = b"\xff\xff\xff\xff\x7f"
HUGE_LEGACY_COUNT = b"\x7f\xff\xff\xff"


def _check_huge_counts(api_key: int, version: int, wire: bytes, *, request: bool) -> None:
    """A huge array count at any position is rejected, never allocated.

    kio's native reader reserves room for a declared count before reading an element,
    and a failed allocation aborts the process: without the codec's ArrayCountGuard this
    loop kills the test run (a compact count of 2**35 asks for 256 GiB).
    """
    decode = codec.decode_request if request else codec.decode_response
    for position in range(len(wire) + 1):
        for body in (
            wire[:position] + HUGE_COMPACT_COUNT + wire[position:],
            wire[:position] + HUGE_LEGACY_COUNT + wire[position + 4 :],
        ):
            with contextlib.suppress(RemoteProtocolError):
                decode(api_key, version, body)


def _check_round_trip(
    api_key: int, version: int, cls: type, entity: Any, *, request: bool, cut: int
) -> None:
    encode = codec.encode_request if request else codec.encode_response
    decode = codec.decode_request if request else codec.decode_response
    wire = encode(api_key, version, entity)
    assert wire == kio_encode(cls, entity), "our encoder disagrees with kio's writer"
    assert encode(api_key, version, as_dict(entity)) == wire, "dict tree encodes differently"
    assert decode(api_key, version, wire) == entity
    assert fallback.decode(cls, wire) == entity
    # Decoding from an offset (after a header) and with trailing bytes reads the same body.
    assert decode(api_key, version, b"\x07\x07\x07" + wire + b"\x00\x01", 3) == entity
    # Decoding consumes a valid body whole, so any strict prefix runs out of bytes.
    if wire:
        with pytest.raises(RemoteProtocolError):
            decode(api_key, version, wire[: cut % len(wire)])
    _check_huge_counts(api_key, version, wire, request=request)


@pytest.mark.parametrize(("api_key", "version"), ADVERTISED, ids=CASE_IDS)
@ROUND_TRIP
@given(data=st.data())
def test_request_round_trip(api_key: ApiKey, version: int, data: st.DataObject) -> None:
    cls = load_request_schema(api_key, version)
    entity = data.draw(entities(cls), label="request")
    cut = data.draw(st.integers(0, 2**16), label="cut")
    _check_round_trip(api_key, version, cls, entity, request=True, cut=cut)


@pytest.mark.parametrize(("api_key", "version"), ADVERTISED, ids=CASE_IDS)
@ROUND_TRIP
@given(data=st.data())
def test_response_round_trip(api_key: ApiKey, version: int, data: st.DataObject) -> None:
    cls = load_response_schema(api_key, version)
    entity = data.draw(entities(cls), label="response")
    cut = data.draw(st.integers(0, 2**16), label="cut")
    _check_round_trip(api_key, version, cls, entity, request=False, cut=cut)


# -- unknown tagged fields (KIP-482: receivers skip tags they do not know) --------------------

UNKNOWN_TAG = 99
UNKNOWN_FIELD = "unknown_tag_99"
UNKNOWN_PAYLOAD = b"\x01\x02\x03"


@functools.cache
def with_unknown_tag(cls: type) -> type:
    """A copy of a flexible class (and its nested structs) with one extra tagged field,
    standing for a tag added by a newer Kafka to the same version."""
    specs = {spec.name: spec for spec in struct_fields(cls)}
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        spec = specs[f.name]
        annotation: Any = f.type
        if spec.struct is not None:
            inner = with_unknown_tag(spec.struct)
            annotation = tuple[inner, ...] if spec.array else inner
            if spec.nullable:
                annotation = annotation | None
        copied = dataclasses.field(
            default=f.default, default_factory=f.default_factory, metadata=f.metadata
        )
        fields.append((f.name, annotation, copied))
    extra = dataclasses.field(default=b"", metadata={"kafka_type": "bytes", "tag": UNKNOWN_TAG})
    fields.append((UNKNOWN_FIELD, bytes, extra))
    return dataclasses.make_dataclass(
        cls.__name__, fields, frozen=True, kw_only=True, namespace={"__flexible__": True}
    )


def inject_unknown_tag(tree: Any) -> Any:
    """The dict tree with the unknown tag set in every struct, nested ones included."""
    if isinstance(tree, dict):
        injected = {name: inject_unknown_tag(value) for name, value in tree.items()}
        injected[UNKNOWN_FIELD] = UNKNOWN_PAYLOAD
        return injected
    if isinstance(tree, list):
        return [inject_unknown_tag(item) for item in tree]
    return tree


def encode_with_unknown_tags(cls: type, entity: Any) -> bytes:
    assert is_flexible(cls)
    return encode_struct(with_unknown_tag(cls), inject_unknown_tag(as_dict(entity)))


FLEXIBLE = [
    (key, version)
    for key, version in ADVERTISED
    if codec.request_is_flexible(key, version) or codec.response_is_flexible(key, version)
]
FLEXIBLE_IDS = [f"{key.name.lower()}-v{version}" for key, version in FLEXIBLE]


@pytest.mark.parametrize(("api_key", "version"), FLEXIBLE, ids=FLEXIBLE_IDS)
@settings(ROUND_TRIP, max_examples=3)
@given(data=st.data())
def test_unknown_tags_are_skipped_at_every_level(
    api_key: ApiKey, version: int, data: st.DataObject
) -> None:
    for request, load, decode in (
        (True, load_request_schema, codec.decode_request),
        (False, load_response_schema, codec.decode_response),
    ):
        cls = load(api_key, version)
        if not is_flexible(cls):
            continue
        entity = data.draw(entities(cls), label="request" if request else "response")
        wire = encode_with_unknown_tags(cls, entity)
        assert UNKNOWN_PAYLOAD in wire
        assert decode(api_key, version, wire) == entity


def _tag(tag: int, payload: bytes) -> bytes:
    return uvarint(tag) + uvarint(len(payload)) + payload


def test_unknown_top_level_tag_in_api_versions_v3() -> None:
    plain = codec.encode_request(
        18, 3, {"client_software_name": "strom-test", "client_software_version": "1.0"}
    )
    assert plain.endswith(b"\x00")  # the empty top-level tag section
    tagged = plain[:-1] + b"\x01" + _tag(99, b"abc")
    with pytest.raises(KeyError):  # kio's reader refuses; the codec falls back
        entity_reader(load_request_schema(18, 3))(tagged, 0)
    assert codec.decode_request(18, 3, tagged) == codec.decode_request(18, 3, plain)
    # Two unknown tags, one of them with a multi-byte tag number and an empty payload.
    tagged = plain[:-1] + b"\x02" + _tag(99, b"abc") + _tag(10_000, b"")
    assert codec.decode_request(18, 3, tagged).client_software_name == "strom-test"


def test_unknown_tags_in_metadata_v12_topic_and_top_level() -> None:
    """Hand-built MetadataRequest v12 with an unknown tag in a topic and at the top."""
    name = b"orders"
    topic_plain = bytes(16) + uvarint(len(name) + 1) + name  # topic_id (nil), name
    body_tail = b"\x01\x00"  # allow_auto_topic_creation, include_topic_authorized_operations
    plain = b"\x02" + topic_plain + b"\x00" + body_tail + b"\x00"
    tagged = (
        b"\x02"
        + topic_plain
        + b"\x01"
        + _tag(99, b"xyz")
        + body_tail
        + b"\x01"
        + _tag(123, b"\xff" * 200)  # a payload whose size needs a two-byte varint
    )
    expected = codec.decode_request(3, 12, plain)
    assert expected.topics[0].name == "orders" and expected.allow_auto_topic_creation
    assert codec.decode_request(3, 12, tagged) == expected


def test_unknown_tag_beside_known_tags_in_fetch_v12() -> None:
    """Fetch v12 carries a known tagged field (cluster_id); an unknown one sits beside it."""
    request = {
        "replica_id": -1,
        "max_wait": 500,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "session_epoch": -1,
        "topics": [
            {
                "topic": "orders",
                "partitions": [{"partition": 0, "fetch_offset": 42, "partition_max_bytes": 1024}],
            }
        ],
        "cluster_id": "cluster-a",
    }
    cls = load_request_schema(1, 12)
    plain = codec.encode_request(1, 12, request)
    expected = codec.decode_request(1, 12, plain)
    assert expected.cluster_id == "cluster-a"
    tagged = encode_with_unknown_tags(cls, expected)
    assert codec.decode_request(1, 12, tagged) == expected


def test_tagged_field_overrunning_the_body_is_remote_error() -> None:
    plain = codec.encode_request(18, 3, {"client_software_name": "a", "client_software_version": "b"})
    for section in (
        b"\x01" + uvarint(99) + uvarint(10) + b"abc",  # unknown tag, size past the end
        b"\x01" + uvarint(99) + uvarint(2**31) + b"abc",  # absurd size
        b"\x02" + _tag(99, b"abc"),  # announces two tags, carries one
        b"\x01" + uvarint(99),  # size missing
        b"\x01" + b"\xff\xff\xff\xff\xff\xff",  # tag varint longer than five bytes
    ):
        with pytest.raises(RemoteProtocolError):
            codec.decode_request(18, 3, plain[:-1] + section)


# -- malformed bodies -------------------------------------------------------------------------

# A few APIs of every shape: non-flexible, flexible, nested tagged structs, records, uuids.
MALFORMED_CASES = [
    (ApiKey.API_VERSIONS, 0),
    (ApiKey.API_VERSIONS, 3),
    (ApiKey.METADATA, 4),
    (ApiKey.METADATA, 12),
    (ApiKey.PRODUCE, 7),
    (ApiKey.PRODUCE, 9),
    (ApiKey.FETCH, 11),
    (ApiKey.FETCH, 17),
    (ApiKey.LIST_OFFSETS, 7),
    (ApiKey.CREATE_TOPICS, 5),
]
MALFORMED_IDS = [f"{key.name.lower()}-v{version}" for key, version in MALFORMED_CASES]
GARBAGE = settings(ROUND_TRIP, max_examples=25)


def _decode_or_remote_error(request: bool, api_key: int, version: int, body: bytes) -> None:
    decode = codec.decode_request if request else codec.decode_response
    with contextlib.suppress(RemoteProtocolError):
        decode(api_key, version, body)


@pytest.mark.parametrize(("api_key", "version"), MALFORMED_CASES, ids=MALFORMED_IDS)
@GARBAGE
@given(request=st.booleans(), body=st.binary(max_size=80))
def test_garbage_decodes_or_raises_remote_error(
    api_key: ApiKey, version: int, request: bool, body: bytes
) -> None:
    _decode_or_remote_error(request, api_key, version, body)


@pytest.mark.parametrize(("api_key", "version"), MALFORMED_CASES, ids=MALFORMED_IDS)
@settings(ROUND_TRIP, max_examples=4)
@given(data=st.data())
def test_every_truncation_raises_remote_error(
    api_key: ApiKey, version: int, data: st.DataObject
) -> None:
    """Decoding a valid body consumes it all, so every strict prefix runs out of bytes."""
    for load, encode, decode in (
        (load_request_schema, codec.encode_request, codec.decode_request),
        (load_response_schema, codec.encode_response, codec.decode_response),
    ):
        wire = encode(api_key, version, data.draw(entities(load(api_key, version))))
        for cut in range(len(wire)):
            with pytest.raises(RemoteProtocolError):
                decode(api_key, version, wire[:cut])


@pytest.mark.parametrize(("api_key", "version"), MALFORMED_CASES, ids=MALFORMED_IDS)
@GARBAGE
@given(data=st.data())
def test_corrupted_bytes_decode_or_raise_remote_error(
    api_key: ApiKey, version: int, data: st.DataObject
) -> None:
    request = data.draw(st.booleans(), label="request")
    load = load_request_schema if request else load_response_schema
    encode = codec.encode_request if request else codec.encode_response
    wire = bytearray(encode(api_key, version, data.draw(entities(load(api_key, version)))))
    if not wire:  # ApiVersionsRequest v0 has no fields
        return
    for _ in range(data.draw(st.integers(1, 3), label="corruptions")):
        position = data.draw(st.integers(0, len(wire) - 1), label="position")
        wire[position] = data.draw(st.integers(0, 255), label="byte")
    _decode_or_remote_error(request, api_key, version, bytes(wire))


def test_huge_array_count_is_rejected_without_allocating() -> None:
    """Regression: an 8-byte MetadataRequest v12 aborted the process (kio reserved 256 GiB)."""
    with pytest.raises(RemoteProtocolError, match="exceeds the buffer"):
        codec.decode_request(3, 12, HUGE_COMPACT_COUNT + b"\x01\x00\x00")
    # The same in a response (client side), found by fuzzing: MetadataResponse v12 brokers.
    with pytest.raises(RemoteProtocolError, match="exceeds the buffer"):
        codec.decode_response(3, 12, bytes.fromhex("4e7137fa90eee5af4140ff"))
    # MetadataRequest v4: a legacy count of 2**31-1 topics in a 5-byte body (16 GiB).
    with pytest.raises(RemoteProtocolError, match="exceeds the buffer"):
        codec.decode_request(3, 4, HUGE_LEGACY_COUNT + b"\x01")
    # Nested: ProduceRequest v9, one topic whose partition_data claims 2**35-2 entries.
    body = b"\x00" + bytes(6) + b"\x02" + uvarint(2) + b"t" + HUGE_COMPACT_COUNT + b"\x00\x00"
    with pytest.raises(RemoteProtocolError, match="partition_data"):
        codec.decode_request(0, 9, body)
    # Inside a known tagged field: ApiVersionsResponse v3 supported_features (tag 0).
    body = bytes(2) + b"\x01" + bytes(4) + b"\x01" + b"\x00\x06" + HUGE_COMPACT_COUNT
    with pytest.raises(RemoteProtocolError, match="supported_features"):
        codec.decode_response(18, 3, body)
    # A count that fits the body is fine, even when elements then run out.
    with pytest.raises(RemoteProtocolError):
        codec.decode_request(3, 12, uvarint(4) + b"\x01\x00\x00")


def test_invalid_boolean_is_remote_error() -> None:
    # MetadataRequest v4: null topics, then allow_auto_topic_creation = 2.
    body = b"\xff\xff\xff\xff\x02"
    with pytest.raises(RemoteProtocolError):
        codec.decode_request(3, 4, body)


# -- the rest of the facade -----------------------------------------------------------------


def test_unknown_api_or_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersion):
        codec.decode_request(9999, 0, b"")
    with pytest.raises(UnsupportedVersion):
        codec.decode_request(18, 99, b"")
    with pytest.raises(UnsupportedVersion):
        codec.encode_response(18, 99, {})
    with pytest.raises(UnsupportedVersion):
        codec.request_versions(9999)
    with pytest.raises(UnsupportedVersion):
        codec.response_versions(9999)
    # Produce v0-2 have no message class: test_legacy_produce.py covers them.
    with pytest.raises(UnsupportedVersion):
        codec.decode_request(0, 2, b"")
    assert issubclass(UnsupportedVersion, LocalProtocolError)


@pytest.mark.parametrize("api_key", sorted(registrations()), ids=lambda key: ApiKey(key).name.lower())
def test_schemas_cover_the_advertised_range(api_key: int) -> None:
    registration = registrations()[api_key]
    low, high = codec.request_versions(api_key)
    assert low <= registration.decodable_from and registration.max_version <= high
    low, high = codec.response_versions(api_key)
    assert low <= registration.decodable_from and registration.max_version <= high


def test_flexible_versions() -> None:
    # First flexible versions (KIP-482), from API-SCOPE.md.
    for api_key, first_flexible in (
        (ApiKey.PRODUCE, 9),
        (ApiKey.FETCH, 12),
        (ApiKey.LIST_OFFSETS, 6),
        (ApiKey.METADATA, 9),
        (ApiKey.API_VERSIONS, 3),
        (ApiKey.CREATE_TOPICS, 5),
    ):
        low, high = codec.request_versions(api_key)
        for version in range(low, high + 1):
            flexible = version >= first_flexible
            assert codec.request_is_flexible(api_key, version) is flexible
            assert codec.response_is_flexible(api_key, version) is flexible
            assert is_flexible(load_request_schema(api_key, version)) is flexible
        # A version newer than the schemas is flexible like the newest known one.
        assert codec.request_is_flexible(api_key, high + 5)
    # Produce v0-2 predate the schemas, and KIP-482; unknown keys count as not flexible.
    assert not codec.request_is_flexible(ApiKey.PRODUCE, 0)
    assert not codec.request_is_flexible(ApiKey.PRODUCE, 2)
    assert not codec.request_is_flexible(9999, 0)
    assert codec.request_is_flexible(ApiKey.DESCRIBE_CLUSTER, 0)


def test_encode_takes_defaults_and_ignores_other_versions_keys() -> None:
    body = {"throttle_time": 5, "cluster_id": "c", "brokers": None}
    # MetadataResponse v0: no throttle_time, no cluster_id; null brokers means empty.
    # (A key that no version has is refused: tests/protocol/test_unknown_fields.py.)
    wire = codec.encode_response(3, 0, body)
    decoded = codec.decode_response(3, 0, wire)
    assert decoded.brokers == () and decoded.topics == ()
    assert wire == b"\x00\x00\x00\x00" * 2
    # A missing field takes the schema's default, else null if nullable, else zero.
    decoded = codec.decode_response(3, 12, codec.encode_response(3, 12, {}))
    assert decoded.cluster_id is None and decoded.controller_id == -1
    assert decoded.throttle_time == datetime.timedelta(0)


def test_unencodable_values_are_local_errors() -> None:
    for body in (
        {"throttle_time": 2**31},  # int32 overflow
        {"brokers": [{"node_id": "one"}]},  # not an int
        {"brokers": [7]},  # not a struct
        {"topics": [{"topic_id": "not-a-uuid"}]},
        {"brokers": [{"host": 5}]},  # not a string
    ):
        with pytest.raises(LocalProtocolError):
            codec.encode_response(3, 12, body)
    # A null for a non-nullable string takes its default rather than failing.
    decoded = codec.decode_response(3, 12, codec.encode_response(3, 12, {"brokers": [{"host": None}]}))
    assert decoded.brokers[0].host == ""
