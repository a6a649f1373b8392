"""Produce v0-2: advertised for old librdkafka (KAFKA-18659), answered UNSUPPORTED_VERSION.

Requests are built by hand from ProduceRequest.json (v0-2: acks, timeout_ms, topic_data
[name, partition_data [index, records]]), as kio has no classes below v3; responses are
read back by hand from ProduceResponse.json (v1 adds throttle_time_ms at the end, v2
log_append_time_ms per partition).
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.protocol import codec
from strom.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from strom.protocol.legacy_produce import (
    decode_produce_topics_v0_2,
    encode_produce_error_response_v0_2,
)


def _string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def produce_request_v0_2(
    topics: list[tuple[str, list[tuple[int, bytes | None]]]], acks: int = 1, timeout_ms: int = 1500
) -> bytes:
    """A Produce v0-2 request body (the three versions share one layout)."""
    out = bytearray(struct.pack(">hi", acks, timeout_ms))
    out += struct.pack(">i", len(topics))
    for name, partitions in topics:
        out += _string(name)
        out += struct.pack(">i", len(partitions))
        for index, records in partitions:
            out += struct.pack(">i", index)
            if records is None:
                out += struct.pack(">i", -1)
            else:
                out += struct.pack(">i", len(records)) + records
    return bytes(out)


def read_produce_response_v0_2(version: int, body: bytes) -> tuple[list, int | None]:
    """(topics [(name, [(index, error_code, base_offset, log_append_time | None)])], throttle)."""
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from(fmt, body, pos)
        pos += struct.calcsize(fmt)
        return values

    topics = []
    (topic_count,) = take(">i")
    for _ in range(topic_count):
        (name_len,) = take(">h")
        name = body[pos : pos + name_len].decode()
        pos += name_len
        partitions = []
        (partition_count,) = take(">i")
        for _ in range(partition_count):
            index, error_code, base_offset = take(">ihq")
            log_append_time = take(">q")[0] if version >= 2 else None
            partitions.append((index, error_code, base_offset, log_append_time))
        topics.append((name, partitions))
    throttle = take(">i")[0] if version >= 1 else None
    assert pos == len(body), "trailing bytes in the response"
    return topics, throttle


REQUEST = [
    ("orders", [(0, b"\x00" * 70), (3, None), (7, b"")]),
    ("ünïcode-topic", [(1, b"x" * 5)]),
    ("empty", []),
]


def test_decode_topics_and_partitions() -> None:
    body = produce_request_v0_2(REQUEST)
    assert decode_produce_topics_v0_2(body) == [
        ("orders", [0, 3, 7]),
        ("ünïcode-topic", [1]),
        ("empty", []),
    ]
    # The facade re-exports it, and it takes a memoryview (a slice of a frame).
    frame = b"header" + body
    assert codec.decode_produce_topics_v0_2(memoryview(frame)[6:]) == decode_produce_topics_v0_2(body)


def test_null_and_empty_topic_arrays() -> None:
    assert decode_produce_topics_v0_2(struct.pack(">hii", 1, 100, -1)) == []
    assert decode_produce_topics_v0_2(produce_request_v0_2([])) == []


@pytest.mark.parametrize("version", [0, 1, 2])
def test_error_response_layout(version: int) -> None:
    topics = decode_produce_topics_v0_2(produce_request_v0_2(REQUEST))
    body = encode_produce_error_response_v0_2(version, topics, ErrorCode.UNSUPPORTED_VERSION)
    decoded, throttle = read_produce_response_v0_2(version, body)
    expected_time = -1 if version >= 2 else None
    assert decoded == [
        ("orders", [(0, 35, -1, expected_time), (3, 35, -1, expected_time), (7, 35, -1, expected_time)]),
        ("ünïcode-topic", [(1, 35, -1, expected_time)]),
        ("empty", []),
    ]
    assert throttle == (0 if version >= 1 else None)


def test_response_sizes_per_version() -> None:
    topics = [("t", [0, 1])]
    sizes = [len(encode_produce_error_response_v0_2(v, topics, 35)) for v in (0, 1, 2)]
    # topics count + name + partition count + 2 x (index, error, offset) [+ throttle] [+ 2 x time]
    assert sizes == [4 + 3 + 4 + 2 * 14, 4 + 3 + 4 + 2 * 14 + 4, 4 + 3 + 4 + 2 * 22 + 4]


def test_empty_response() -> None:
    assert encode_produce_error_response_v0_2(0, [], 35) == b"\x00\x00\x00\x00"
    assert encode_produce_error_response_v0_2(2, [], 35) == b"\x00" * 8


@pytest.mark.parametrize("version", [-1, 3, 9])
def test_other_versions_are_local_errors(version: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_produce_error_response_v0_2(version, [], 35)


def test_v3_layout_is_not_v0_2() -> None:
    """v3+ starts with transactional_id; only v0-2 come this way (codec.decode_request for v3)."""
    assert codec.request_versions(0)[0] == 3


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x01\x00\x00",  # stops inside timeout_ms
        struct.pack(">hi", 1, 1),  # no topic array
        struct.pack(">hii", 1, 1, 1),  # one topic, no name
        struct.pack(">hiih", 1, 1, 1, -1) + struct.pack(">i", 0),  # null topic name
        struct.pack(">hiih", 1, 1, 1, 10) + b"abc",  # name runs past the end
        struct.pack(">hii", 1, 1, 2**31 - 1),  # absurd topic count
        produce_request_v0_2([("t", [(0, b"abc")])])[:-1],  # records run past the end
        produce_request_v0_2([("t", [(0, None)])])[:-2],  # stops inside records length
        struct.pack(">hii", 1, 1, 1) + _string("t") + struct.pack(">i", 2**30),  # partitions
        struct.pack(">hii", 1, 1, 1) + b"\x00\x02\xff\xfe" + struct.pack(">i", 0),  # bad UTF-8
    ],
)
def test_malformed_requests_are_remote_errors(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_produce_topics_v0_2(body)


topic_names = st.text(min_size=1, max_size=10)
partition_lists = st.lists(st.tuples(st.integers(0, 2**31 - 1), st.none() | st.binary(max_size=20)), max_size=4)


@settings(max_examples=50, deadline=None, database=None)
@given(
    topics=st.lists(st.tuples(topic_names, partition_lists), max_size=4),
    version=st.integers(0, 2),
    error_code=st.sampled_from([35, 2, -1]),
)
def test_round_trip(topics: list, version: int, error_code: int) -> None:
    body = produce_request_v0_2(topics)
    decoded = decode_produce_topics_v0_2(body)
    assert decoded == [(name, [index for index, _ in partitions]) for name, partitions in topics]
    response, _ = read_produce_response_v0_2(
        version, encode_produce_error_response_v0_2(version, decoded, error_code)
    )
    assert [(name, [p[0] for p in parts]) for name, parts in response] == decoded
    assert all(p[1] == error_code for _, parts in response for p in parts)


@settings(max_examples=100, deadline=None, database=None)
@given(body=st.binary(max_size=60))
def test_garbage_decodes_or_raises_remote_error(body: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_produce_topics_v0_2(body)


@settings(max_examples=30, deadline=None, database=None)
@given(topics=st.lists(st.tuples(topic_names, partition_lists), min_size=1, max_size=3))
def test_every_truncation_is_remote_error(topics: list) -> None:
    body = produce_request_v0_2(topics)
    for cut in range(len(body)):
        with pytest.raises(RemoteProtocolError):
            decode_produce_topics_v0_2(body[:cut])
