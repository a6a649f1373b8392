"""FetchResponse v12+ partition tagged fields: DivergingEpoch (tag 0, KIP-320) and
CurrentLeader (tag 1, KIP-951), checked with the schema-driven decoder."""

from __future__ import annotations

import uuid

import pytest

from strom.protocol.codec import decode_response
from strom.protocol.fetch_response import (
    FetchPartitionResult,
    FetchTopicResult,
    encode_fetch_response,
)

FETCH = 1
TOPIC_ID = uuid.UUID(int=0x1234)
RECORDS = b"r" * 61


def encode(version: int, *partitions: FetchPartitionResult) -> bytes:
    chunks, size = encode_fetch_response(version, [FetchTopicResult("orders", TOPIC_ID, list(partitions))], session_id=9)
    body = b"".join(chunks)
    assert len(body) == size
    return body


def decoded_partitions(version: int, *partitions: FetchPartitionResult) -> list:
    (topic,) = decode_response(FETCH, version, encode(version, *partitions)).responses
    return list(topic.partitions)


def partition(index: int, *, records: bool = False, **tags) -> FetchPartitionResult:
    data = [RECORDS] if records else []
    return FetchPartitionResult(
        index, 0, 40 + index, 39 + index, 3, None, -1, data, len(RECORDS) if records else 0, **tags
    )


@pytest.mark.parametrize("version", [12, 13, 15, 16, 17, 18])
def test_diverging_epoch_is_tag_0(version):
    (decoded,) = decoded_partitions(version, partition(0, diverging_epoch=(5, 1234)))
    assert (decoded.diverging_epoch.epoch, decoded.diverging_epoch.end_offset) == (5, 1234)
    assert (decoded.current_leader.leader_id, decoded.current_leader.leader_epoch) == (-1, -1)


@pytest.mark.parametrize("version", [12, 13, 15, 16, 17, 18])
def test_current_leader_is_tag_1(version):
    (decoded,) = decoded_partitions(version, partition(0, current_leader=(3, 17)))
    assert (decoded.current_leader.leader_id, decoded.current_leader.leader_epoch) == (3, 17)
    assert (decoded.diverging_epoch.epoch, decoded.diverging_epoch.end_offset) == (-1, -1)


@pytest.mark.parametrize("version", [12, 16])
def test_both_tags_with_records_and_neighbours(version):
    """Tags follow the records; every partition around them still decodes in place."""
    first, second, third = decoded_partitions(
        version,
        partition(0, records=True, diverging_epoch=(2, 2**40 + 7), current_leader=(4, 9)),
        partition(1, records=True),
        partition(2, current_leader=(0, 2**31 - 1)),
    )
    assert (first.diverging_epoch.epoch, first.diverging_epoch.end_offset) == (2, 2**40 + 7)
    assert (first.current_leader.leader_id, first.current_leader.leader_epoch) == (4, 9)
    assert bytes(first.records) == RECORDS
    assert (second.partition_index, second.high_watermark, bytes(second.records)) == (1, 41, RECORDS)
    assert (second.diverging_epoch.epoch, second.current_leader.leader_id) == (-1, -1)
    assert (third.partition_index, third.last_stable_offset, third.log_start_offset) == (2, 41, 3)
    assert (third.current_leader.leader_id, third.current_leader.leader_epoch) == (0, 2**31 - 1)


def test_the_tagged_bytes_are_exactly_kafkas():
    """v12, one partition: after its (empty) records come 2 tags, tag 0 of 13 bytes
    (epoch, end offset, no tags) and tag 1 of 9 bytes (leader id, epoch, no tags)."""
    body = encode(12, partition(0, diverging_epoch=(5, 1234), current_leader=(3, 17)))
    tags = (
        b"\x02"
        + b"\x00\x0d" + (5).to_bytes(4, "big") + (1234).to_bytes(8, "big") + b"\x00"
        + b"\x01\x09" + (3).to_bytes(4, "big") + (17).to_bytes(4, "big") + b"\x00"
    )
    # ... then the topic's and the response's empty tag sections.
    assert body.endswith(b"\x01" + tags + b"\x00\x00")
    assert len(body) == len(encode(12, partition(0))) + len(tags) - 1


@pytest.mark.parametrize("version", range(4, 12))
def test_versions_before_12_are_unchanged_by_tags(version):
    plain = encode(version, partition(0, records=True), partition(1))
    tagged = encode(
        version,
        partition(0, records=True, diverging_epoch=(5, 1234), current_leader=(3, 17)),
        partition(1, diverging_epoch=(1, 2)),
    )
    assert tagged == plain
    first, second = decoded_partitions(version, partition(0, records=True), partition(1))
    assert (first.high_watermark, bytes(first.records), second.partition_index) == (40, RECORDS, 1)


@pytest.mark.parametrize("version", [16, 17, 18])
def test_node_endpoints_are_the_responses_tag_0_from_v16(version):
    nodes = [(2, "10.0.0.2", 9092, None), (7, "broker-7.example", 19092, "rack-b")]
    endpoints = [dict(zip(("node_id", "host", "port", "rack"), n, strict=True)) for n in nodes]
    chunks, size = encode_fetch_response(
        version, [FetchTopicResult("orders", TOPIC_ID, [partition(0, current_leader=(7, 3))])], node_endpoints=endpoints
    )
    body = b"".join(chunks)
    assert len(body) == size
    decoded = decode_response(FETCH, version, body)
    assert [(n.node_id, n.host, n.port, n.rack) for n in decoded.node_endpoints] == nodes
    assert decoded.responses[0].partitions[0].current_leader.leader_id == 7
    assert not decode_response(FETCH, version, encode(version, partition(0))).node_endpoints


@pytest.mark.parametrize("version", [12, 15])
def test_node_endpoints_are_not_sent_before_v16(version):
    chunks, size = encode_fetch_response(version, [], node_endpoints=[{"node_id": 2, "host": "h", "port": 1, "rack": None}])
    assert b"".join(chunks) == b"".join(encode_fetch_response(version, [])[0])
