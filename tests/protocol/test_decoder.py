"""The fallback reader (tag-skipping) and the array-count guard in front of kio's reader.

test_codec.py checks that the fallback reader agrees with kio's native reader on every
advertised message; these tests pin what only this module does: reading KIP-893 null
structs and tag defaults, strictness about sizes, and the guard's walk.
"""

from __future__ import annotations

import uuid

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.serial import entity_reader

from strom.protocol import codec
from strom.protocol.decoder import ArrayCountGuard, FallbackDecoder
from strom.protocol.errors import RemoteProtocolError
from strom.protocol.primitives import uvarint

fallback = FallbackDecoder(error_code=KioErrorCode)
HUGE = b"\xff\xff\xff\xff\x7f"  # a compact count of 2**35 - 2


def _native(cls: type, body: bytes) -> object:
    return entity_reader(cls)(body, 0)[0]


# -- FallbackDecoder --------------------------------------------------------------------------


def test_kip_893_null_struct() -> None:
    cls = load_request_schema(75, 0)  # DescribeTopicPartitionsRequest: nullable cursor
    for cursor in (None, {"topic_name": "t", "partition_index": 3}):
        body = codec.encode_request(75, 0, {"topics": [{"name": "a"}], "cursor": cursor})
        assert fallback.decode(cls, body) == _native(cls, body)
    assert fallback.decode(cls, body).cursor.partition_index == 3


def test_absent_tags_take_their_defaults() -> None:
    cls = load_request_schema(1, 15)  # FetchRequest v15: replica_state is tag 1
    body = codec.encode_request(1, 15, {"topics": []})
    decoded = fallback.decode(cls, body)
    assert decoded == _native(cls, body)
    assert decoded.replica_state.replica_id == -1 and decoded.cluster_id is None


def test_nil_uuid_and_null_datetime() -> None:
    cls = load_request_schema(3, 12)
    body = codec.encode_request(3, 12, {"topics": [{"topic_id": None, "name": "a"}]})
    assert fallback.decode(cls, body).topics[0].topic_id is None
    topic_id = uuid.uuid4()
    body = codec.encode_request(3, 12, {"topics": [{"topic_id": topic_id, "name": None}]})
    assert fallback.decode(cls, body).topics[0].topic_id == topic_id
    cls = load_response_schema(0, 8)
    partition = {"index": 0, "error_code": 0, "base_offset": 0, "log_append_time": None}
    body = codec.encode_response(0, 8, {"responses": [{"name": "t", "partition_responses": [partition]}]})
    assert fallback.decode(cls, body).responses[0].partition_responses[0].log_append_time is None


def test_known_tag_overrunning_its_size() -> None:
    """Stricter than kio's reader (and Kafka's), which read a known tag by its type."""
    cls = load_request_schema(1, 12)
    plain = codec.encode_request(1, 12, {"topics": []})
    value = uvarint(len(b"cluster") + 1) + b"cluster"
    short = plain[:-1] + b"\x01" + uvarint(0) + uvarint(2) + value
    with pytest.raises(RemoteProtocolError, match="overruns"):
        fallback.decode(cls, short)
    past_end = plain[:-1] + b"\x01" + uvarint(0) + uvarint(50) + value
    with pytest.raises(RemoteProtocolError):
        fallback.decode(cls, past_end)


def test_unknown_tags_skip_by_their_size() -> None:
    cls = load_request_schema(18, 3)
    plain = codec.encode_request(18, 3, {"client_software_name": "a", "client_software_version": "b"})
    tagged = plain[:-1] + b"\x02" + uvarint(7) + uvarint(2) + b"zz" + uvarint(300) + uvarint(0)
    assert fallback.decode(cls, tagged) == fallback.decode(cls, plain)


@pytest.mark.parametrize(
    ("api_key", "version", "is_request", "body"),
    [
        (3, 4, True, b"\xff\xff\xff\xff\x02"),  # boolean byte 2
        (3, 4, True, b"\x00\x00\x00\x01\xff\xff\x01"),  # null topic name (non-nullable)
        (3, 0, True, b"\xff\xff\xff\xff"),  # null array before nullableVersions
        (3, 4, True, b"\x00\x00\x00\x09\x01"),  # count past the end
        (3, 12, True, HUGE + b"\x01\x00\x00"),
        (18, 0, False, b"\x27\x0f\x00\x00\x00\x00"),  # error code 9999 is not a known code
        (18, 3, True, b"\x05ab"),  # string past the end
    ],
)
def test_malformed_is_remote_error(api_key: int, version: int, is_request: bool, body: bytes) -> None:
    cls = (load_request_schema if is_request else load_response_schema)(api_key, version)
    with pytest.raises(RemoteProtocolError):
        fallback.decode(cls, body)


def test_a_memoryview_slice_decodes() -> None:
    cls = load_request_schema(3, 12)
    body = codec.encode_request(3, 12, {"topics": [{"name": "a"}]})
    assert fallback.decode(cls, memoryview(b"xx" + body)[2:]) == _native(cls, body)


# -- ArrayCountGuard --------------------------------------------------------------------------


guard = ArrayCountGuard()


def test_valid_bodies_pass() -> None:
    for api_key, version, body in (
        (0, 9, {"topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b"r" * 100}]}]}),
        (0, 7, {"topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": None}]}]}),
        (1, 17, {"topics": [{"partitions": [{"partition": 1}]}], "forgotten_topics_data": []}),
        (3, 12, {"topics": None}),
    ):
        guard.check(load_request_schema(api_key, version), codec.encode_request(api_key, version, body))


def test_huge_counts_anywhere_are_rejected() -> None:
    # Top level, MetadataRequest v12.
    with pytest.raises(RemoteProtocolError, match="topics"):
        guard.check(load_request_schema(3, 12), HUGE)
    # Legacy int32 count, MetadataRequest v4.
    with pytest.raises(RemoteProtocolError, match="topics"):
        guard.check(load_request_schema(3, 4), b"\x7f\xff\xff\xff")
    # A primitive int32 array nested two deep: MetadataResponse v12 replica_nodes.
    cls = load_response_schema(3, 12)
    body = codec.encode_response(
        3, 12, {"topics": [{"name": "t", "partitions": [{"replica_nodes": [1, 2]}]}]}
    )
    replicas = b"\x03\x00\x00\x00\x01\x00\x00\x00\x02"
    position = body.index(replicas)
    with pytest.raises(RemoteProtocolError, match="replica_nodes"):
        guard.check(cls, body[:position] + HUGE + body[position + 1 :])
    # Inside a known tagged field: ProduceResponse v10 node_endpoints (top-level tag 0).
    cls = load_response_schema(0, 10)
    body = codec.encode_response(0, 10, {"responses": []})
    with pytest.raises(RemoteProtocolError, match="node_endpoints"):
        guard.check(cls, body[:-1] + b"\x01" + uvarint(0) + uvarint(5) + HUGE)


def test_a_count_that_fits_the_remaining_bytes_passes() -> None:
    # Four topics announced, four bytes left: malformed, but the native reader says so.
    guard.check(load_request_schema(3, 12), uvarint(5) + b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError):
        guard.check(load_request_schema(3, 12), uvarint(6) + b"\x00\x00\x00\x00")


def test_walk_stops_where_the_native_reader_stops() -> None:
    cls = load_request_schema(18, 3)
    # Truncated: the native reader fails before any later field.
    guard.check(load_request_schema(3, 12), b"")
    guard.check(load_request_schema(0, 9), b"\x05ab")
    # An unknown tag sends decoding to the fallback reader, which checks counts itself.
    plain = codec.encode_request(18, 3, {"client_software_name": "a", "client_software_version": "b"})
    guard.check(cls, plain[:-1] + b"\x01" + uvarint(99) + uvarint(5) + HUGE)


def test_guarded_codec_still_decodes_everything_it_did() -> None:
    body = codec.encode_request(
        1,
        12,
        {
            "topics": [{"topic": "t", "partitions": [{"partition": p} for p in range(50)]}],
            "forgotten_topics_data": [{"topic": "u", "partitions": list(range(30))}],
        },
    )
    decoded = codec.decode_request(1, 12, body)
    assert len(decoded.topics[0].partitions) == 50
    assert decoded.forgotten_topics_data[0].partitions == tuple(range(30))
