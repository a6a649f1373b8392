"""The compiled dict-tree encoder: the wire details test_codec.py's golden checks rely on.

test_codec.py compares the encoder with kio's writer for every advertised message; these
tests pin the rules that make that comparison meaningful: defaults, tagged fields written
only when they differ from their default, compact vs legacy lengths, KIP-893 null structs,
and the value forms handlers may pass (ints for durations and times, naive datetimes).
"""

from __future__ import annotations

import datetime
import io
import uuid

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_writer

from strom.protocol.encoder import encode_struct
from strom.protocol.errors import LocalProtocolError
from strom.protocol.primitives import uvarint
from strom.protocol.schema import FieldSpec, struct_fields


def _kio(cls: type, entity: object) -> bytes:
    buffer = io.BytesIO()
    entity_writer(cls)(buffer, entity)
    return buffer.getvalue()


def test_strings_are_measured_in_utf8_bytes() -> None:
    # ApiVersionsRequest v3: two compact strings and an empty tag section.
    cls = load_request_schema(18, 3)
    wire = encode_struct(cls, {"client_software_name": "é", "client_software_version": "1"})
    assert wire == uvarint(3) + "é".encode() + uvarint(2) + b"1" + b"\x00"


def test_legacy_and_compact_nulls() -> None:
    # MetadataRequest: null topics is int32 -1 in v4, a zero compact length in v9; then
    # allow_auto_topic_creation (default true).
    assert encode_struct(load_request_schema(3, 4), {"topics": None}) == b"\xff\xff\xff\xff\x01"
    assert encode_struct(load_request_schema(3, 9), {"topics": None}).startswith(b"\x00\x01")
    assert encode_struct(load_request_schema(3, 9), {"topics": []}).startswith(b"\x01\x01")


def test_null_for_a_non_nullable_field_means_its_default() -> None:
    # MetadataRequest v0: the topics array is not nullable before v1.
    assert encode_struct(load_request_schema(3, 0), {"topics": None}) == b"\x00\x00\x00\x00"
    # MetadataResponse v12 broker host: a non-nullable compact string.
    cls = load_response_schema(3, 12)
    assert encode_struct(cls, {"brokers": [{"host": None}]}) == encode_struct(
        cls, {"brokers": [{"host": ""}]}
    )


def test_tagged_field_written_only_when_not_default() -> None:
    """FetchRequest v12 cluster_id (tag 0, default null); written when set, as kio does."""
    cls = load_request_schema(1, 12)
    without = encode_struct(cls, {"topics": []})
    assert without.endswith(b"\x01\x01\x00")  # forgotten_topics, rack_id, no tags
    assert encode_struct(cls, {"topics": [], "cluster_id": None}) == without
    with_tag = encode_struct(cls, {"topics": [], "cluster_id": "c1"})
    assert with_tag == without[:-1] + b"\x01" + uvarint(0) + uvarint(3) + uvarint(3) + b"c1"


def test_tagged_struct_at_its_default_is_omitted() -> None:
    """ProduceResponse v10 current_leader (tag 0) defaults to (-1, -1); a dict or an entity."""
    cls = load_response_schema(0, 10)
    partition = {"index": 0, "error_code": 6, "base_offset": -1}
    bare = encode_struct(cls, {"responses": [{"name": "t", "partition_responses": [partition]}]})
    for leader in ({"leader_id": -1, "leader_epoch": -1}, _default_leader(cls)):
        tree = {"responses": [{"name": "t", "partition_responses": [{**partition, "current_leader": leader}]}]}
        assert encode_struct(cls, tree) == bare
    moved = {**partition, "current_leader": {"leader_id": 3, "leader_epoch": 7}}
    tagged = encode_struct(cls, {"responses": [{"name": "t", "partition_responses": [moved]}]})
    assert len(tagged) == len(bare) + 1 + 1 + 8 + 1  # tag, size, two int32s, nested tags


def _spec(cls: type, name: str) -> FieldSpec:
    (spec,) = [s for s in struct_fields(cls) if s.name == name]
    return spec


def _struct_of(cls: type, name: str) -> type:
    struct = _spec(cls, name).struct
    assert struct is not None
    return struct


def _default_leader(cls: type) -> object:
    partition = _struct_of(_struct_of(cls, "responses"), "partition_responses")
    return _spec(partition, "current_leader").default


def test_kip_893_nullable_struct() -> None:
    """DescribeTopicPartitionsRequest v0 cursor: int8 -1 for null, 1 then the struct."""
    cls = load_request_schema(75, 0)
    null = encode_struct(cls, {"topics": [], "cursor": None})
    assert null == b"\x01" + b"\x00\x00\x07\xd0" + b"\xff" + b"\x00"
    cursor = {"topic_name": "t", "partition_index": 4}
    present = encode_struct(cls, {"topics": [], "cursor": cursor})
    assert present == b"\x01\x00\x00\x07\xd0\x01" + uvarint(2) + b"t" + b"\x00\x00\x00\x04\x00\x00"
    cursor_cls = _struct_of(cls, "cursor")
    entity = cls(topics=(), response_partition_limit=2000, cursor=cursor_cls(**cursor))
    assert _kio(cls, entity) == present
    assert _kio(cls, cls(topics=(), response_partition_limit=2000, cursor=None)) == null


def test_durations_and_times_take_ints_and_naive_datetimes() -> None:
    # MetadataResponse v12 throttle_time: timedelta_i32 in milliseconds.
    cls = load_response_schema(3, 12)
    as_int = encode_struct(cls, {"throttle_time": 250})
    assert as_int == encode_struct(cls, {"throttle_time": datetime.timedelta(milliseconds=250)})
    assert as_int[:4] == b"\x00\x00\x00\xfa"
    # ProduceResponse v8 log_append_time: nullable datetime_i64, -1 for null.
    cls = load_response_schema(0, 8)

    def body(value: object) -> bytes:
        partition = {"index": 0, "error_code": 0, "base_offset": 5, "log_append_time": value}
        return encode_struct(cls, {"responses": [{"name": "t", "partition_responses": [partition]}]})

    aware = datetime.datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=datetime.UTC)
    millis = 1_704_164_645_678
    assert body(aware) == body(millis) == body(aware.replace(tzinfo=None))
    assert body(aware.astimezone(datetime.timezone(datetime.timedelta(hours=5)))) == body(millis)
    assert millis.to_bytes(8, "big") in body(millis)
    assert (-1).to_bytes(8, "big", signed=True) in body(None)


def test_uuid_forms() -> None:
    # MetadataRequest v12 topic_id: a UUID, its 16 bytes, or None for the nil UUID.
    cls = load_request_schema(3, 12)
    topic_id = uuid.uuid4()

    def body(value: object) -> bytes:
        return encode_struct(cls, {"topics": [{"topic_id": value, "name": None}]})

    assert body(topic_id) == body(topic_id.bytes)
    assert topic_id.bytes in body(topic_id)
    assert body(None)[1:17] == bytes(16)
    with pytest.raises(LocalProtocolError):
        body(b"short")


def test_entities_and_dicts_mix() -> None:
    """A dict tree may hold entities (e.g. echoed from a decoded request)."""
    cls = load_request_schema(3, 12)
    topic = _struct_of(cls, "topics")(topic_id=None, name="x")
    assert encode_struct(cls, {"topics": [topic]}) == encode_struct(cls, {"topics": [{"name": "x"}]})
    with pytest.raises(LocalProtocolError):
        encode_struct(cls, {"topics": ["x"]})


@pytest.mark.parametrize(
    "value",
    [2**31, -(2**31) - 1, "1", 1.5],
)
def test_out_of_range_and_wrong_types_are_local_errors(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode_struct(load_response_schema(3, 12), {"controller_id": value})
