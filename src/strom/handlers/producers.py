"""Producers: InitProducerId (key 22) 0-5, DescribeProducers (key 61) 0.

InitProducerId: an idempotent producer (no transactional id) gets a new producer id with epoch
0 on every call, as Kafka's coordinator does; the ids come from the metadata store, which
reserves them in blocks, so they are never reused across restarts. A transactional producer is
the transaction coordinator's (strom.coordinator.transactions): the first call for an id gets
a new producer id, later ones bump its epoch (aborting an open transaction first, answered
CONCURRENT_TRANSACTIONS), a timeout above transaction.max.timeout.ms is
INVALID_TRANSACTION_TIMEOUT.
Per version: v3+ carries the caller's current id and epoch (KIP-360) so that it can resume
after an error without being fenced; v4+ may be answered PRODUCER_FENCED (before,
INVALID_PRODUCER_EPOCH); v5's TRANSACTION_ABORTABLE is never returned (no TV2).

DescribeProducers (KIP-664): the active producers of each partition from its producer state:
epoch, last sequence, last timestamp, coordinator epoch and the first offset of the open
transaction (-1: none).
"""

from __future__ import annotations

from typing import Any

from strom.coordinator.shard import CoordinatorError
from strom.coordinator.transactions import init_response
from strom.handlers.context import BrokerContext
from strom.handlers.groups import milliseconds
from strom.handlers.registry import Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode


@handles(ApiKey.INIT_PRODUCER_ID, 0, 5)
async def init_producer_id(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    txn_id = body.transactional_id
    if txn_id is None:
        if ctx.next_producer_id is None:
            return {"throttle_time": 0, **init_response(ErrorCode.COORDINATOR_NOT_AVAILABLE)}
        try:
            return {"throttle_time": 0, **init_response(ErrorCode.NONE, ctx.next_producer_id(), 0)}
        except CoordinatorError as exc:
            return {"throttle_time": 0, **init_response(exc.error_code)}
    timeout_ms = milliseconds(body.transaction_timeout)
    producer_id = body.producer_id if version >= 3 else -1
    producer_epoch = body.producer_epoch if version >= 3 else -1
    if ctx.transactions is None:
        response = init_response(ErrorCode.COORDINATOR_NOT_AVAILABLE)
    else:
        try:
            response = await ctx.transactions.call(
                txn_id, lambda c, now, ticket: c.init_producer_id(txn_id, timeout_ms, producer_id, producer_epoch, ticket, now)
            )
        except CoordinatorError as exc:
            response = init_response(exc.error_code)
    if response["error_code"] == ErrorCode.PRODUCER_FENCED and version < 4:
        response = {**response, "error_code": ErrorCode.INVALID_PRODUCER_EPOCH}
    return {"throttle_time": 0, **response}


def _producers(ctx: BrokerContext, topic: str, index: int) -> dict[str, Any]:
    log = ctx.partition_log(topic, index)
    if log is None:
        return {"partition_index": index, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                "error_message": None, "active_producers": []}
    active = [
        {
            "producer_id": entry.producer_id,
            "producer_epoch": entry.epoch,
            "last_sequence": entry.last_seq,
            "last_timestamp": entry.last_timestamp,
            "coordinator_epoch": entry.coordinator_epoch,
            "current_txn_start_offset": entry.current_txn_first_offset,
        }
        for entry in log.producer_state.producers.values()
    ]
    return {"partition_index": index, "error_code": ErrorCode.NONE, "error_message": None, "active_producers": active}


@handles(ApiKey.DESCRIBE_PRODUCERS, 0, 0)
async def describe_producers(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    topics = [
        {"name": t.name, "partitions": [_producers(ctx, t.name, p) for p in t.partition_indexes]}
        for t in request.body.topics
    ]
    return {"throttle_time": 0, "topics": topics}
