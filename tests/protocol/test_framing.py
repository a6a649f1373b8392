"""Framing (int32 size prefix) and request/response headers.

The FrameDecoder gets the same stream whole, one byte at a time, and split at every
offset, and must yield the same frames each way (NATS ``split_test.go``).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.protocol import codec
from strom.protocol.api import ApiKey
from strom.protocol.errors import RemoteProtocolError
from strom.protocol.framing import (
    FrameDecoder,
    RequestHeader,
    encode_request_frame,
    encode_response_frame,
    parse_request_header,
    response_header,
)
from strom.protocol.primitives import uvarint

MAX_FRAME = 1 << 20


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


FRAMES = [b"", b"a", b"hello kafka", bytes(range(256)) * 3, b"\x00\x00\x00\x05", b"z"]
STREAM = b"".join(_frame(body) for body in FRAMES)


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


# -- FrameDecoder -----------------------------------------------------------------------------


def test_whole_stream() -> None:
    decoder = FrameDecoder(MAX_FRAME)
    assert decoder.feed(STREAM) == FRAMES
    assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    decoder = FrameDecoder(MAX_FRAME)
    frames = []
    for index in range(len(STREAM)):
        frames.extend(decoder.feed(STREAM[index : index + 1]))
        # Everything after the last complete frame is held back, nothing more.
        assert decoder.buffered == (index + 1) - sum(4 + len(f) for f in frames)
    assert frames == FRAMES
    assert decoder.buffered == 0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_split_at_every_offset(kind: type) -> None:
    for split in range(len(STREAM) + 1):
        decoder = FrameDecoder(MAX_FRAME)
        chunks = [kind(STREAM[:split]), kind(STREAM[split:])]
        assert _feed_all(decoder, chunks) == FRAMES, f"split at {split}"
        assert decoder.buffered == 0


def test_split_twice_at_every_pair_of_offsets() -> None:
    stream = STREAM[:64] + _frame(b"tail")
    expected = FrameDecoder(MAX_FRAME).feed(stream)
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            chunks = [stream[:first], stream[first:second], stream[second:]]
            assert _feed_all(FrameDecoder(MAX_FRAME), chunks) == expected


@settings(max_examples=50, deadline=None, database=None)
@given(
    bodies=st.lists(st.binary(max_size=40), max_size=8),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_any_chunking_yields_the_same_frames(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(_frame(body) for body in bodies)
    points = sorted({min(cut, len(stream)) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = FrameDecoder(MAX_FRAME)
    assert _feed_all(decoder, chunks) == bodies
    assert decoder.buffered == 0


def test_frames_do_not_alias_the_input() -> None:
    data = bytearray(_frame(b"abc") + _frame(b"de")[:3])
    decoder = FrameDecoder(MAX_FRAME)
    (frame,) = decoder.feed(data)
    data[:] = b"\xff" * len(data)  # the caller reuses its read buffer
    assert frame == b"abc"
    assert decoder.feed(b"\x02de") == [b"de"]


def test_partial_frame_is_held_back() -> None:
    decoder = FrameDecoder(MAX_FRAME)
    assert decoder.feed(_frame(b"abcdef")[:-2]) == []
    assert decoder.buffered == 8
    assert decoder.feed(b"") == []
    assert decoder.feed(b"ef") == [b"abcdef"]


def test_frame_of_exactly_the_maximum_size() -> None:
    decoder = FrameDecoder(16)
    assert decoder.feed(_frame(b"x" * 16)) == [b"x" * 16]


@pytest.mark.parametrize("size", [17, 2**31 - 1, -1, -(2**31)])
def test_bad_size_is_remote_error(size: int) -> None:
    decoder = FrameDecoder(16)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(struct.pack(">i", size))
    # Also when the bad prefix arrives in pieces, after a good frame.
    decoder = FrameDecoder(16)
    prefix = _frame(b"ok") + struct.pack(">i", size)
    assert decoder.feed(prefix[:7]) == [b"ok"]
    with pytest.raises(RemoteProtocolError):
        decoder.feed(prefix[7:])


def test_size_is_checked_before_the_body_arrives() -> None:
    # An oversize frame is refused at its prefix: nothing is buffered up to its size.
    decoder = FrameDecoder(1024)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(struct.pack(">i", 4096) + b"x" * 10)


# -- request headers --------------------------------------------------------------------------


def _header_v1(api_key: int, version: int, correlation_id: int, client_id: bytes | None) -> bytes:
    head = struct.pack(">hhi", api_key, version, correlation_id)
    if client_id is None:
        return head + struct.pack(">h", -1)
    return head + struct.pack(">h", len(client_id)) + client_id


def test_request_header_v1() -> None:
    body = codec.encode_request(ApiKey.METADATA, 4, {"topics": None})
    frame = _header_v1(3, 4, 77, b"rdkafka") + body
    header, offset = parse_request_header(frame)
    assert header == RequestHeader(3, 4, 77, "rdkafka")
    assert offset == 17
    assert codec.decode_request(3, 4, frame, offset).topics is None


def test_request_header_v2_skips_tagged_fields() -> None:
    """Header v2 (flexible versions): client_id stays a legacy int16 string, then tags."""
    body = codec.encode_request(ApiKey.METADATA, 12, {"topics": []})
    head = _header_v1(3, 12, 5, b"client-\xc3\xa9")
    for tags in (b"\x00", b"\x01" + uvarint(0) + uvarint(3) + b"abc", b"\x02\x05\x00\x63\x01\xff"):
        header, offset = parse_request_header(head + tags + body)
        assert header == RequestHeader(3, 12, 5, "client-é")
        assert offset == len(head) + len(tags)
        assert codec.decode_request(3, 12, head + tags + body, offset).topics == ()


@pytest.mark.parametrize(("version", "flexible"), [(2, False), (3, True)])
def test_null_client_id(version: int, flexible: bool) -> None:
    frame = _header_v1(18, version, 1, None) + (b"\x00" if flexible else b"")
    header, offset = parse_request_header(frame)
    assert header.client_id is None
    assert offset == len(frame)


def test_empty_client_id_and_invalid_utf8() -> None:
    header, _ = parse_request_header(_header_v1(18, 0, 1, b""))
    assert header.client_id == ""
    # Kafka decodes client_id leniently (Java replaces invalid UTF-8).
    header, _ = parse_request_header(_header_v1(18, 0, 1, b"bad\xff"))
    assert header.client_id == "bad\ufffd"


def test_unknown_api_and_version_headers_still_parse() -> None:
    # Dispatch answers unknown keys and versions; the header itself must parse.
    header, offset = parse_request_header(_header_v1(999, 0, 9, b"x"))
    assert header.api_key == 999 and offset == 11
    # ApiVersions newer than the schemas: flexible like the newest (KIP-511 probing).
    header, offset = parse_request_header(_header_v1(18, 99, 9, b"x") + b"\x00")
    assert header.api_version == 99 and offset == 12


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x03\x00\x04\x00\x00",  # stops inside the correlation id
        struct.pack(">hhi", 3, 4, 1),  # no client_id length
        struct.pack(">hhih", 3, 4, 1, 10) + b"short",  # client_id runs past the end
        _header_v1(3, 12, 1, b"c"),  # flexible, tag section missing
        _header_v1(3, 12, 1, b"c") + b"\x01\x00\x09ab",  # tag overruns the frame
        _header_v1(3, 12, 1, b"c") + b"\x80",  # truncated tag count varint
    ],
)
def test_malformed_request_header_is_remote_error(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_request_header(frame)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=40))
def test_garbage_header_parses_or_raises_remote_error(frame: bytes) -> None:
    try:
        header, offset = parse_request_header(frame)
    except RemoteProtocolError:
        return
    assert 10 <= offset <= len(frame)


# -- response headers (KIP-482, KIP-511) ------------------------------------------------------


def test_response_header_v0_for_non_flexible() -> None:
    header = response_header(ApiKey.METADATA, 8, 42, 100)
    assert header == struct.pack(">ii", 104, 42)


def test_response_header_v1_for_flexible() -> None:
    header = response_header(ApiKey.METADATA, 12, 42, 100)
    assert header == struct.pack(">iiB", 105, 42, 0)


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4, 99])
def test_api_versions_response_always_uses_header_v0(version: int) -> None:
    """KIP-511: any client must be able to parse an ApiVersions answer, so no tags."""
    assert response_header(ApiKey.API_VERSIONS, version, 7, 10) == struct.pack(">ii", 14, 7)


@pytest.mark.parametrize(
    ("api_key", "first_flexible"),
    [(ApiKey.PRODUCE, 9), (ApiKey.FETCH, 12), (ApiKey.LIST_OFFSETS, 6), (ApiKey.CREATE_TOPICS, 5)],
)
def test_header_version_follows_each_api_flexible_threshold(api_key: int, first_flexible: int) -> None:
    """Header v1 exactly from the first flexible version (API-SCOPE.md, KIP-482)."""
    for version in (first_flexible - 1, first_flexible, first_flexible + 1):
        size = len(response_header(api_key, version, 1, 0))
        assert size == (9 if version >= first_flexible else 8)


# -- whole frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_key", "version"),
    [(ApiKey.METADATA, 8), (ApiKey.METADATA, 12), (ApiKey.API_VERSIONS, 3), (ApiKey.FETCH, 16)],
)
def test_response_frame(api_key: int, version: int) -> None:
    body = codec.encode_response(api_key, version, {})
    frame = encode_response_frame(api_key, version, 31, body)
    (decoded,) = FrameDecoder(MAX_FRAME).feed(frame)
    (correlation_id,) = struct.unpack_from(">i", decoded)
    assert correlation_id == 31
    header = response_header(api_key, version, 31, len(body))
    assert frame == header + body
    assert codec.decode_response(api_key, version, decoded, len(header) - 4) == (
        codec.decode_response(api_key, version, body)
    )
    # The body may come in parts (bytes, bytearray, memoryview): same frame.
    parts = [body[:3], bytearray(body[3:5]), memoryview(body)[5:]]
    assert encode_response_frame(api_key, version, 31, parts) == frame


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        (ApiKey.API_VERSIONS, 0, {}),
        (ApiKey.API_VERSIONS, 3, {"client_software_name": "strom", "client_software_version": "1"}),
        (ApiKey.METADATA, 4, {"topics": [{"name": "a"}]}),
        (ApiKey.METADATA, 12, {"topics": [{"name": "a"}]}),
        (ApiKey.FETCH, 12, {"topics": []}),
    ],
)
@pytest.mark.parametrize("client_id", ["strom-test", "", None, "ünïcode"])
def test_request_frame_round_trip(
    api_key: int, version: int, body: dict, client_id: str | None
) -> None:
    encoded = codec.encode_request(api_key, version, body)
    frame = encode_request_frame(api_key, version, 1234, client_id, encoded)
    (payload,) = FrameDecoder(MAX_FRAME).feed(frame)
    header, offset = parse_request_header(payload)
    assert header == RequestHeader(api_key, version, 1234, client_id)
    assert payload[offset:] == encoded
    assert codec.decode_request(api_key, version, payload, offset) == codec.decode_request(
        api_key, version, encoded
    )
    # Header v2 carries exactly one extra byte (the empty tag section) over v1.
    client_bytes = len(client_id.encode()) if client_id else 0
    flexible = codec.request_is_flexible(api_key, version)
    assert offset == 10 + client_bytes + (1 if flexible else 0)


def test_pipelined_requests_split_anywhere() -> None:
    """Several request frames back to back, cut at every offset, parse the same."""
    frames = [
        encode_request_frame(18, 3, 1, "c", codec.encode_request(18, 3, {})),
        encode_request_frame(3, 12, 2, None, codec.encode_request(3, 12, {"topics": None})),
        encode_request_frame(3, 4, 3, "c", codec.encode_request(3, 4, {"topics": []})),
    ]
    stream = b"".join(frames)
    for split in range(len(stream) + 1):
        decoder = FrameDecoder(MAX_FRAME)
        payloads = _feed_all(decoder, [stream[:split], stream[split:]])
        headers = [parse_request_header(p)[0] for p in payloads]
        assert [h.correlation_id for h in headers] == [1, 2, 3]
        assert [h.api_key for h in headers] == [18, 3, 3]
