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

Authorization as Kafka's: a transactional InitProducerId needs WRITE on its transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED); an idempotent one IDEMPOTENT_WRITE on the cluster or,
since KIP-679, WRITE on some topic (CLUSTER_AUTHORIZATION_FAILED). DescribeProducers needs
READ on each topic (TOPIC_AUTHORIZATION_FAILED), checked before the topic's existence.
"""

from __future__ import annotations

from typing import Any

from strom.coordinator.shard import CoordinatorError
from strom.coordinator.transactions import init_response
from strom.handlers.auth import allowed, allowed_any, cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.groups import milliseconds
from strom.handlers.registry import Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import Operation, ResourceType


@handles(ApiKey.INIT_PRODUCER_ID, 0, 5)
async def init_producer_id(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    txn_id = body.transactional_id
    if txn_id is None:
        if not (cluster_allowed(ctx, request, Operation.IDEMPOTENT_WRITE)
                or allowed_any(ctx, request, Operation.WRITE, ResourceType.TOPIC)):
            return {"throttle_time": 0, **init_response(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)}
        if ctx.next_producer_id is None:
            return {"throttle_time": 0, **init_response(ErrorCode.COORDINATOR_NOT_AVAILABLE)}
        try:
            return {"throttle_time": 0, **init_response(ErrorCode.NONE, ctx.next_producer_id(), 0)}
        except CoordinatorError as exc:
            return {"throttle_time": 0, **init_response(exc.error_code)}
    if not allowed(ctx, request, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return {"throttle_time": 0, **init_response(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)}
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


def _producers(ctx: BrokerContext, topic: str, index: int, refused: bool) -> dict[str, Any]:
    log = None if refused else ctx.partition_log(topic, index)
    if log is None:
        error = ErrorCode.TOPIC_AUTHORIZATION_FAILED if refused else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return {"partition_index": index, "error_code": error, "error_message": None, "active_producers": []}
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
    topics = []
    for t in request.body.topics:
        refused = not allowed(ctx, request, Operation.READ, ResourceType.TOPIC, t.name)
        topics.append({"name": t.name, "partitions": [_producers(ctx, t.name, p, refused) for p in t.partition_indexes]})
    return {"throttle_time": 0, "topics": topics}
