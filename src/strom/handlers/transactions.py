"""Transactions (KIP-98): AddPartitionsToTxn (key 24) 0-3, AddOffsetsToTxn (25) 0-4, EndTxn (26)
0-4, DescribeTransactions (65) 0, ListTransactions (66) 0-1.

The decisions are the transaction coordinator's (strom.coordinator.transactions); these
handlers check what only the broker knows (do the partitions exist), translate versions and
run it through ``ctx.transactions`` (server.txn_runtime), which answers NOT_COORDINATOR /
COORDINATOR_LOAD_IN_PROGRESS when the id's __transaction_state partition is missing or loading.

Per version:
- AddPartitionsToTxn v0-3 come from clients (v4+ are broker-to-coordinator batches with
  verify_only, KIP-890: not advertised). Unknown partitions answer UNKNOWN_TOPIC_OR_PARTITION
  and the others OPERATION_NOT_ATTEMPTED, as Kafka does.
- AddOffsetsToTxn adds the group's __consumer_offsets partition (creating the topic if need
  be), so that the commit or abort marker reaches the group's transactional offsets.
- EndTxn is answered once the markers are written (Kafka answers after PrepareCommit /
  PrepareAbort is stored; clients accept both). v5 (an epoch bump on every EndTxn, TV2) is
  not advertised.
- v0-1 of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn predate PRODUCER_FENCED and get
  INVALID_PRODUCER_EPOCH instead (as Kafka's KafkaApis converts it).
- DescribeTransactions answers each id from its shard (TRANSACTIONAL_ID_NOT_FOUND when
  unknown); ListTransactions filters by state names (unknown names are echoed back), producer
  ids, and from v1 by duration (KIP-994). v2's transactional id pattern is not advertised.
Authorization as Kafka's KafkaApis, before the coordinator sees the request: AddPartitionsToTxn,
AddOffsetsToTxn and EndTxn need WRITE on the transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED); AddPartitionsToTxn WRITE on each topic (refused topics
TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED; internal topics are always
refused, as Kafka never lets a client add them), AddOffsetsToTxn READ on the group
(GROUP_AUTHORIZATION_FAILED). DescribeTransactions needs DESCRIBE on each id and shows only the
topics the principal may DESCRIBE; ListTransactions lists only the ids it may DESCRIBE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strom.coordinator.records import OFFSETS_TOPIC, partition_for
from strom.coordinator.shard import CoordinatorError
from strom.coordinator.transactions import TransactionCoordinator, describe_error
from strom.coordinator.txn_records import TransactionState
from strom.handlers.auth import allowed
from strom.handlers.context import BrokerContext, TransactionRuntime, TxnOperation
from strom.handlers.groups import group_allowed
from strom.handlers.registry import Request, handles
from strom.metadata.store import INTERNAL_TOPICS
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    AddOffsetsToTxnResponse,
    AddPartitionsToTxnResponse,
    EndTxnResponse,
)
from strom.security.acl import Operation, ResourceType


def _runtime(ctx: BrokerContext) -> TransactionRuntime:
    if ctx.transactions is None:
        raise CoordinatorError(ErrorCode.NOT_COORDINATOR, "no transaction coordinator in this broker")
    return ctx.transactions


async def _call(ctx: BrokerContext, transactional_id: str, operation: TxnOperation) -> int:
    """Run an operation whose answer is one error code."""
    try:
        response = await _runtime(ctx).call(transactional_id, operation)
    except CoordinatorError as exc:
        return exc.error_code
    error: int = response["error_code"]
    return error


def _txn_allowed(ctx: BrokerContext, request: Request, operation: Operation, txn_id: str) -> bool:
    return allowed(ctx, request, operation, ResourceType.TRANSACTIONAL_ID, txn_id)


def _for_version(error: int, version: int) -> int:
    if error == ErrorCode.PRODUCER_FENCED and version < 2:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return error


# --- AddPartitionsToTxn -----------------------------------------------------------------------


@handles(ApiKey.ADD_PARTITIONS_TO_TXN, 0, 3)
async def add_partitions_to_txn(ctx: BrokerContext, request: Request) -> AddPartitionsToTxnResponse:
    body = request.body
    txn_id = body.v3_and_below_transactional_id
    producer_id, producer_epoch = body.v3_and_below_producer_id, body.v3_and_below_producer_epoch
    requested: list[tuple[str, list[int]]] = [(t.name, list(t.partitions)) for t in body.v3_and_below_topics]
    refused: dict[tuple[str, int], int] = {}
    for topic, partitions in requested:
        metadata = ctx.metadata.topic(topic)
        denied = topic in INTERNAL_TOPICS or not allowed(ctx, request, Operation.WRITE, ResourceType.TOPIC, topic)
        for p in partitions:
            if denied:
                refused[(topic, p)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif metadata is None or not 0 <= p < metadata.partitions:
                refused[(topic, p)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if not _txn_allowed(ctx, request, Operation.WRITE, txn_id):
        def error_for(topic: str, p: int) -> int:
            return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif refused:
        def error_for(topic: str, p: int) -> int:
            return refused.get((topic, p), ErrorCode.OPERATION_NOT_ATTEMPTED)
    else:
        added = [(topic, p) for topic, ps in requested for p in ps]
        operation: TxnOperation = lambda c, now, _ticket: c.add_partitions(txn_id, producer_id, producer_epoch, added, now)  # noqa: E731
        error = _for_version(await _call(ctx, txn_id, operation), request.version)

        def error_for(topic: str, p: int) -> int:
            return error

    return {
        "throttle_time": 0,
        "results_by_topic_v3_and_below": [
            {"name": topic, "results_by_partition": [{"partition_index": p, "partition_error_code": error_for(topic, p)} for p in ps]}
            for topic, ps in requested
        ],
    }


# --- AddOffsetsToTxn --------------------------------------------------------------------------


@handles(ApiKey.ADD_OFFSETS_TO_TXN, 0, 4)
async def add_offsets_to_txn(ctx: BrokerContext, request: Request) -> AddOffsetsToTxnResponse:
    body = request.body
    txn_id, group_id = body.transactional_id, body.group_id
    if not _txn_allowed(ctx, request, Operation.WRITE, txn_id):
        return {"throttle_time": 0, "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    if not group_allowed(ctx, request, Operation.READ, group_id):
        return {"throttle_time": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    if ctx.groups is None:
        return {"throttle_time": 0, "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE}
    try:
        await ctx.groups.ensure_offsets_topic()
    except CoordinatorError as exc:
        return {"throttle_time": 0, "error_code": exc.error_code}
    offsets = ctx.metadata.topic(OFFSETS_TOPIC)
    assert offsets is not None
    partition = (OFFSETS_TOPIC, partition_for(group_id, offsets.partitions))
    operation: TxnOperation = lambda c, now, _ticket: c.add_partitions(  # noqa: E731
        txn_id, body.producer_id, body.producer_epoch, [partition], now
    )
    error = await _call(ctx, txn_id, operation)
    return {"throttle_time": 0, "error_code": _for_version(error, request.version)}


# --- EndTxn -----------------------------------------------------------------------------------


@handles(ApiKey.END_TXN, 0, 4)
async def end_txn(ctx: BrokerContext, request: Request) -> EndTxnResponse:
    body = request.body
    txn_id = body.transactional_id
    if not _txn_allowed(ctx, request, Operation.WRITE, txn_id):
        return {"throttle_time": 0, "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    operation: TxnOperation = lambda c, now, ticket: c.end_txn(  # noqa: E731
        txn_id, body.producer_id, body.producer_epoch, body.committed, ticket, now
    )
    error = await _call(ctx, txn_id, operation)
    return {"throttle_time": 0, "error_code": _for_version(error, request.version)}


# --- DescribeTransactions, ListTransactions ---------------------------------------------------


def _describe_one(ctx: BrokerContext, request: Request, txn_id: str) -> dict[str, Any]:
    if not _txn_allowed(ctx, request, Operation.DESCRIBE, txn_id):
        return describe_error(txn_id, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    try:
        if not txn_id:
            raise CoordinatorError(ErrorCode.INVALID_REQUEST)
        read: Callable[[TransactionCoordinator], dict[str, Any]] = lambda c: c.describe(txn_id)  # noqa: E731
        described = _runtime(ctx).read(txn_id, read)
    except CoordinatorError as exc:
        return describe_error(txn_id, exc.error_code)
    # Only the partitions of topics the principal may describe (Kafka's filter).
    topics = [t for t in described["topics"] if allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, t["topic"])]
    return {**described, "topics": topics}


@handles(ApiKey.DESCRIBE_TRANSACTIONS, 0, 0)
async def describe_transactions(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return {"throttle_time": 0, "transaction_states": [_describe_one(ctx, request, t) for t in request.body.transactional_ids]}


@handles(ApiKey.LIST_TRANSACTIONS, 0, 1)
async def list_transactions(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    states: set[TransactionState] = set()
    unknown: list[str] = []
    for name in body.state_filters:
        state = TransactionState.from_name(name)
        if state is None:
            unknown.append(name)
        else:
            states.add(state)
    producer_ids = frozenset(body.producer_id_filters)
    duration_ms = body.duration_filter if request.version >= 1 else -1
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "unknown_state_filters": unknown, "transaction_states": []}
    if unknown and not states:
        return response  # only unknown states asked for: nothing can match (Kafka's behaviour)
    now_ms = ctx.now_ms()
    try:
        error, shards = _runtime(ctx).read_all(lambda c: c.list_transactions(frozenset(states), producer_ids, duration_ms, now_ms))
    except CoordinatorError as exc:
        return {**response, "error_code": exc.error_code}
    if error:
        return {**response, "error_code": error}  # a partition is loading: Kafka lists nothing
    listed = [t for shard in shards for t in shard if _txn_allowed(ctx, request, Operation.DESCRIBE, t["transactional_id"])]
    return {**response, "transaction_states": listed}
