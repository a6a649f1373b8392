"""Kafka framing (int32 size prefix) and request/response headers."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from .api import ApiKey
from .codec import request_is_flexible, response_is_flexible
from .errors import RemoteProtocolError
from .primitives import INT16, INT32, skip_tagged_fields

_REQUEST_HEADER: Final = struct.Struct(">hhi")
_SIZE_AND_CORRELATION: Final = struct.Struct(">ii")
_SIZE_CORRELATION_NO_TAGS: Final = struct.Struct(">iiB")

Bytes = bytes | bytearray | memoryview


class FrameDecoder:
    """Splits a byte stream into frame bodies (the bytes after each int32 size)."""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size  # may change between feeds (raised after SASL)
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: Bytes) -> list[bytes]:
        """Return every frame completed by ``data``; raise on a bad size prefix."""
        if self._buffer:
            self._buffer += data
            source: Bytes = self._buffer
        else:
            # Common case: nothing pending, so slice frames straight out of ``data``.
            source = data
        frames: list[bytes] = []
        pos = 0
        end = len(source)
        with memoryview(source) as view:
            while end - pos >= 4:
                (size,) = INT32.unpack_from(view, pos)
                if size < 0 or size > self.max_frame_size:
                    raise RemoteProtocolError(
                        f"frame size {size} outside 0..{self.max_frame_size}"
                    )
                if end - pos - 4 < size:
                    break
                frames.append(view[pos + 4 : pos + 4 + size].tobytes())
                pos += 4 + size
            if source is self._buffer:
                leftover = None
            else:
                leftover = bytearray(view[pos:]) if pos < end else None
        if source is self._buffer:
            del self._buffer[:pos]  # front deletion of a bytearray is O(1) amortized
        elif leftover is not None:
            self._buffer = leftover
        return frames


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def parse_request_header(frame: Bytes) -> tuple[RequestHeader, int]:
    """Parse request header v1/v2 from a frame body; return it and the body offset."""
    try:
        api_key, api_version, correlation_id = _REQUEST_HEADER.unpack_from(frame, 0)
        (client_id_len,) = INT16.unpack_from(frame, 8)
    except struct.error:
        raise RemoteProtocolError("truncated request header") from None
    pos = 10
    client_id: str | None = None
    if client_id_len >= 0:
        end = pos + client_id_len
        if end > len(frame):
            raise RemoteProtocolError("truncated client_id in request header")
        # Kafka decodes client_id leniently (Java replaces invalid UTF-8), so do we.
        client_id = str(frame[pos:end], "utf-8", "replace")
        pos = end
    # client_id always uses the int16 legacy string, even in header v2 (KIP-482).
    if request_is_flexible(api_key, api_version):
        pos = skip_tagged_fields(frame, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def _response_header_has_tags(api_key: int, api_version: int) -> bool:
    # KIP-511: ApiVersions responses always use header v0 so any client can parse them.
    return api_key != ApiKey.API_VERSIONS and response_is_flexible(api_key, api_version)


def response_header(api_key: int, api_version: int, correlation_id: int, body_size: int) -> bytes:
    """Size prefix + response header for a body of ``body_size`` bytes sent after it."""
    if _response_header_has_tags(api_key, api_version):
        return _SIZE_CORRELATION_NO_TAGS.pack(body_size + 5, correlation_id, 0)
    return _SIZE_AND_CORRELATION.pack(body_size + 4, correlation_id)


def encode_response_frame(
    api_key: int, api_version: int, correlation_id: int, body: Bytes | Sequence[Bytes]
) -> bytes:
    """A complete response frame: size, header v0/v1, then the body (or its parts)."""
    if isinstance(body, bytes):  # the common case, without the list
        return response_header(api_key, api_version, correlation_id, len(body)) + body
    parts = [body] if isinstance(body, bytearray | memoryview) else list(body)
    size = sum(memoryview(p).nbytes for p in parts)
    return b"".join([response_header(api_key, api_version, correlation_id, size), *parts])


def encode_request_frame(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Bytes
) -> bytes:
    """A complete request frame with header v1, or v2 for flexible versions."""
    header = bytearray(_REQUEST_HEADER.pack(api_key, api_version, correlation_id))
    if client_id is None:
        header += INT16.pack(-1)
    else:
        encoded = client_id.encode()
        header += INT16.pack(len(encoded))
        header += encoded
    if request_is_flexible(api_key, api_version):
        header.append(0)
    return b"".join([INT32.pack(len(header) + memoryview(body).nbytes), header, body])
