"""The hand-written FetchResponse encoder agrees with the schema-driven decoder."""

import uuid

import pytest

from strom.protocol.codec import decode_response
from strom.protocol.fetch_response import (
    FetchPartitionResult,
    FetchTopicResult,
    encode_fetch_response,
)


class Region:
    """Stands in for a file region: the encoder only needs its length."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)


def _join(chunks: list) -> bytes:
    return b"".join(c if isinstance(c, bytes) else c.data for c in chunks)


@pytest.mark.parametrize("version", range(4, 19))
def test_round_trip_every_version(version: int) -> None:
    topic_id = uuid.uuid4()
    records = [Region(b"a" * 70), Region(b"b" * 30)]
    topics = [
        FetchTopicResult(
            "orders",
            topic_id,
            [
                FetchPartitionResult(0, 0, 10, 10, 2, None, -1, records, 100),
                FetchPartitionResult(1, 1, 5, 5, 0, [(7, 3)], -1, [], 0),
            ],
        )
    ]
    chunks, size = encode_fetch_response(version, topics, error_code=0, session_id=42, throttle_time_ms=3)
    body = _join(chunks)
    assert len(body) == size
    decoded = decode_response(1, version, body)
    if version >= 7:
        assert decoded.session_id == 42
    (topic,) = decoded.responses
    if version >= 13:
        assert topic.topic_id == topic_id
    else:
        assert topic.topic == "orders"
    first, second = topic.partitions
    assert first.high_watermark == 10 and bytes(first.records) == b"a" * 70 + b"b" * 30
    assert second.error_code == 1 and list(second.aborted_transactions) and second.aborted_transactions[0].producer_id == 7
    if version >= 5:
        assert first.log_start_offset == 2
