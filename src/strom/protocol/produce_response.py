"""ProduceResponse encoder for versions 3-13, written by hand.

Every produce request is answered with one (at linger.ms=0, one per record), and the generic
encoder walks the schema field by field; this one packs the known layout directly. Layouts
follow ProduceResponse.json: v5 adds log_start_offset, v8 record_errors and error_message,
v9 flexible encoding, v10 the tagged current_leader and node_endpoints, v13 topic ids.
Bodies carrying those tagged fields are left to the generic encoder (``None`` here), and so
are bodies with a key outside these sets (the fields of every version at each level): the
generic encoder refuses a misspelled field with UnknownFieldError rather than sending its default.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from typing import Any

from .primitives import uvarint

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_PARTITION_HEAD = struct.Struct(">ihqq")  # index, error_code, base_offset, log_append_time
_ZERO_UUID = uuid.UUID(int=0)

# The fields of ProduceResponse v0-13 at each level (tests/protocol/test_produce_response.py
# checks them against the schemas).
RESPONSE_FIELDS = frozenset({"responses", "throttle_time", "node_endpoints"})
TOPIC_FIELDS = frozenset({"name", "topic_id", "partition_responses"})
PARTITION_FIELDS = frozenset({
    "index", "error_code", "base_offset", "log_append_time", "log_start_offset", "record_errors",
    "error_message", "current_leader",
})
RECORD_ERROR_FIELDS = frozenset({"batch_index", "batch_index_error_message"})
_response_known = RESPONSE_FIELDS.issuperset
_topic_known = TOPIC_FIELDS.issuperset
_partition_known = PARTITION_FIELDS.issuperset
_record_error_known = RECORD_ERROR_FIELDS.issuperset


def _string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else b"\xff\xff"
    data = value.encode()
    return (uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data


def _count(n: int, flexible: bool) -> bytes:
    return uvarint(n + 1) if flexible else _I32.pack(n)


def encode_produce_response(version: int, body: Mapping[str, Any]) -> bytes | None:
    """The response body, or None when it holds what this encoder leaves to the generic one:
    tagged fields, or times given as datetime / timedelta instead of milliseconds."""
    throttle_time = body.get("throttle_time", 0)
    if (
        not 3 <= version <= 13
        or body.get("node_endpoints")
        or type(throttle_time) is not int
        or not _response_known(body)
    ):
        return None
    flexible = version >= 9
    responses = body["responses"]
    out = [_count(len(responses), flexible)]
    for topic in responses:
        if not _topic_known(topic):
            return None
        if version >= 13:
            out.append((topic.get("topic_id") or _ZERO_UUID).bytes)
        else:
            out.append(_string(topic["name"], flexible))
        partitions = topic["partition_responses"]
        out.append(_count(len(partitions), flexible))
        for p in partitions:
            log_append_time = p.get("log_append_time", -1)
            if p.get("current_leader") or type(log_append_time) is not int or not _partition_known(p):
                return None
            out.append(_PARTITION_HEAD.pack(p["index"], p["error_code"], p["base_offset"], log_append_time))
            if version >= 5:
                out.append(_I64.pack(p.get("log_start_offset", -1)))
            if version >= 8:
                record_errors = p.get("record_errors") or ()
                out.append(_count(len(record_errors), flexible))
                for error in record_errors:
                    if not _record_error_known(error):
                        return None
                    out.append(_I32.pack(error["batch_index"]))
                    out.append(_string(error.get("batch_index_error_message"), flexible))
                    if flexible:
                        out.append(b"\x00")
                out.append(_string(p.get("error_message"), flexible))
            if flexible:
                out.append(b"\x00")
        if flexible:
            out.append(b"\x00")
    out.append(_I32.pack(throttle_time))
    if flexible:
        out.append(b"\x00")
    return b"".join(out)
