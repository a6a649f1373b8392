"""Produce v0-2: advertised, never served.

Kafka 4.x advertises Produce min version 0 because older librdkafka disables
compression otherwise (KAFKA-18659), yet rejects v0-2 with UNSUPPORTED_VERSION per
partition. The message classes start at v3, so these layouts are hand-written
(ProduceRequest.json / ProduceResponse.json):

  request v0-2:  acks int16, timeout_ms int32,
                 topic_data [name string, partition_data [index int32, records bytes]]
  response v0:   responses [name string, partitions [index int32, error_code int16,
                 base_offset int64]]
  response v1:   v0 + throttle_time_ms int32 at the end
  response v2:   v1, partitions also carry log_append_time_ms int64
"""

from __future__ import annotations

import struct

from .errors import LocalProtocolError, RemoteProtocolError
from .primitives import INT16, INT32

_PARTITION_V0 = struct.Struct(">ihq")
_PARTITION_V2 = struct.Struct(">ihqq")
_NO_OFFSET = -1


def decode_produce_topics_v0_2(body: bytes | bytearray | memoryview) -> list[tuple[str, list[int]]]:
    """Topic names and partition indexes of a Produce v0-2 request (records skipped)."""
    buf = memoryview(body)
    try:
        pos = 6  # acks int16 + timeout int32
        topics: list[tuple[str, list[int]]] = []
        topic_count, pos = _count(buf, pos)
        for _ in range(topic_count):
            (name_len,) = INT16.unpack_from(buf, pos)
            pos += 2
            if name_len < 0:
                raise RemoteProtocolError("null topic name")
            name = str(_slice(buf, pos, name_len), "utf-8")
            pos += name_len
            partitions: list[int] = []
            partition_count, pos = _count(buf, pos)
            for _ in range(partition_count):
                (index,) = INT32.unpack_from(buf, pos)
                (records_len,) = INT32.unpack_from(buf, pos + 4)
                pos += 8
                if records_len > 0:
                    _slice(buf, pos, records_len)
                    pos += records_len
                partitions.append(index)
            topics.append((name, partitions))
    except (struct.error, ValueError) as exc:
        raise RemoteProtocolError(f"malformed Produce v0-2 request: {exc}") from exc
    return topics


def _count(buf: memoryview, pos: int) -> tuple[int, int]:
    (count,) = INT32.unpack_from(buf, pos)
    pos += 4
    if count < 0:  # a null topic/partition array carries nothing to answer
        return 0, pos
    if count > len(buf) - pos:
        raise RemoteProtocolError(f"array of {count} exceeds the buffer")
    return count, pos


def _slice(buf: memoryview, pos: int, size: int) -> memoryview:
    if pos + size > len(buf):
        raise RemoteProtocolError("field runs past the end of the buffer")
    return buf[pos : pos + size]


def encode_produce_error_response_v0_2(
    version: int, topics: list[tuple[str, list[int]]], error_code: int
) -> bytes:
    """A Produce v0-2 response body giving every partition ``error_code``."""
    if not 0 <= version <= 2:
        raise LocalProtocolError(f"Produce v{version} is not a v0-2 version")
    partition = _PARTITION_V2 if version == 2 else _PARTITION_V0
    out = bytearray(INT32.pack(len(topics)))
    for name, partitions in topics:
        encoded = name.encode()
        out += INT16.pack(len(encoded))
        out += encoded
        out += INT32.pack(len(partitions))
        for index in partitions:
            if version == 2:
                out += partition.pack(index, error_code, _NO_OFFSET, _NO_OFFSET)
            else:
                out += partition.pack(index, error_code, _NO_OFFSET)
    if version >= 1:
        out += INT32.pack(0)  # throttle_time_ms
    return bytes(out)
