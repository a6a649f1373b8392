"""Produce and InitProducerId called in-process: error codes per partition."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from strom.handlers.context import BrokerContext
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.records import build_batch

from .harness import call, create_topic, make_ctx

NOW = 1_700_000_000_000


@pytest.fixture
def ctx(tmp_path: Path) -> BrokerContext:
    context = make_ctx(tmp_path)
    create_topic(context, "t", 1)
    create_topic(context, "__consumer_offsets", 1, {"cleanup.policy": "compact"})
    return context


def produce(ctx: BrokerContext, topic: str, records: bytes, version: int = 9) -> dict:
    body = {"acks": -1, "timeout": 1000, "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]}
    response = call(ctx, ApiKey.PRODUCE, version, body)
    partition = response.responses[0].partition_responses[0]
    return {"error": partition.error_code, "base_offset": partition.base_offset}


def test_clients_cannot_write_to_internal_topics(ctx):
    batch = build_batch([(b"k", b"v", [], NOW)])
    assert produce(ctx, "__consumer_offsets", batch)["error"] == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_init_producer_id_hands_out_new_ids(ctx):
    ids = [call(ctx, ApiKey.INIT_PRODUCER_ID, v, {"transactional_id": None, "transaction_timeout": 60000,
                                                  "producer_id": -1, "producer_epoch": -1}) for v in (0, 4, 5)]
    assert [r.error_code for r in ids] == [ErrorCode.NONE] * 3
    assert len({r.producer_id for r in ids}) == 3 and {r.producer_epoch for r in ids} == {0}


def test_idempotent_errors_and_retries(ctx):
    def batch(seq: int, epoch: int = 0) -> bytes:
        return build_batch([(b"k", b"v", [], NOW)], producer_id=5, producer_epoch=epoch, base_sequence=seq)

    assert produce(ctx, "t", batch(0)) == {"error": ErrorCode.NONE, "base_offset": 0}
    assert produce(ctx, "t", batch(0)) == {"error": ErrorCode.NONE, "base_offset": 0}  # a retry
    assert produce(ctx, "t", batch(5))["error"] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(ctx, "t", batch(1, epoch=1))["error"] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(ctx, "t", batch(0, epoch=1))["base_offset"] == 1
    assert produce(ctx, "t", batch(1, epoch=0))["error"] == ErrorCode.INVALID_PRODUCER_EPOCH


def test_bad_records_get_their_error_codes(ctx):
    good = bytearray(build_batch([(b"k", b"v", [], NOW)]))
    good[-1] ^= 1
    assert produce(ctx, "t", bytes(good))["error"] == ErrorCode.CORRUPT_MESSAGE
    future = build_batch([(b"k", b"v", [], NOW * 2)])
    assert produce(ctx, "t", future)["error"] == ErrorCode.INVALID_TIMESTAMP
    assert produce(ctx, "missing", build_batch([(b"k", b"v", [], NOW)]))["error"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_a_topic_deleted_and_created_again_starts_empty(ctx):
    assert produce(ctx, "t", build_batch([(b"k", b"v", [], NOW)]))["base_offset"] == 0
    asyncio.run(ctx.metadata.delete_topic("t"))
    create_topic(ctx, "t", 1)
    assert ctx.partition_log("t", 0).log_end_offset == 0
    assert produce(ctx, "t", build_batch([(b"k", b"v", [], NOW)]))["base_offset"] == 0


def test_a_log_left_by_an_older_topic_of_that_name_is_not_reused(tmp_path: Path):
    """A broker away while its topic was deleted and created again finds the old log on disk:
    partition.metadata names the old topic id, so the log is deleted, not served."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_ctx(tmp_path / "a")
    create_topic(first, "t", 1)
    assert produce(first, "t", build_batch([(b"k", b"v", [], NOW)]))["base_offset"] == 0
    old_dir = first.partition_log("t", 0).directory
    first.logs.close()
    other = make_ctx(tmp_path / "b")  # the same topic name, another topic id
    create_topic(other, "t", 1)
    other.logs.close()
    shutil.copytree(old_dir, tmp_path / "b" / old_dir.name, dirs_exist_ok=True)
    again = make_ctx(tmp_path / "b")
    assert again.partition_log("t", 0).log_end_offset == 0
