"""The hand-written ProduceResponse encoder writes exactly what the schema-driven one does."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from strom.protocol._kio import load_response_schema
from strom.protocol.codec import decode_response, encode_response
from strom.protocol.encoder import encode_struct
from strom.protocol.produce_response import encode_produce_response

int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
text = st.none() | st.text(max_size=20)

partition = st.fixed_dictionaries(
    {"index": int32, "error_code": st.sampled_from([0, 2, 3, 10, 87]), "base_offset": int64},
    optional={
        "log_append_time": st.integers(-1, 2**41),
        "log_start_offset": int64,
        "error_message": text,
        "record_errors": st.lists(
            st.fixed_dictionaries({"batch_index": int32}, optional={"batch_index_error_message": text}), max_size=2
        ),
    },
)
topic = st.fixed_dictionaries(
    {"name": st.text(max_size=30), "topic_id": st.uuids(), "partition_responses": st.lists(partition, max_size=3)}
)
body = st.fixed_dictionaries({"responses": st.lists(topic, max_size=3)}, optional={"throttle_time": st.integers(0, 2**31 - 1)})


@given(version=st.integers(3, 13), body=body)
def test_agrees_with_the_generic_encoder(version: int, body: dict) -> None:
    assert encode_produce_response(version, body) == encode_struct(load_response_schema(0, version), body)


def test_the_codec_uses_it_and_clients_read_it() -> None:
    topic_id = uuid.uuid4()
    body = {"responses": [{"name": "t", "topic_id": topic_id, "partition_responses": [
        {"index": 2, "error_code": 0, "base_offset": 41, "log_append_time": -1, "log_start_offset": 0}]}],
        "throttle_time": 0}
    for version in (3, 8, 9, 12, 13):
        wire = encode_response(0, version, body)
        assert wire == encode_produce_response(version, body)
        (decoded,) = decode_response(0, version, wire).responses
        assert decoded.partition_responses[0].base_offset == 41
        assert (decoded.topic_id if version >= 13 else decoded.name) == (topic_id if version >= 13 else "t")


def test_tagged_fields_are_left_to_the_generic_encoder() -> None:
    leader = {"responses": [{"name": "t", "partition_responses": [
        {"index": 0, "error_code": 6, "base_offset": -1, "current_leader": {"leader_id": 1, "leader_epoch": 3}}]}]}
    assert encode_produce_response(10, leader) is None
    assert decode_response(0, 10, encode_response(0, 10, leader)).responses[0].partition_responses[0].current_leader.leader_epoch == 3
