"""The share coordinator's RPCs (KIP-932): InitializeShareGroupState (key 83) v0,
ReadShareGroupState (84) v0, WriteShareGroupState (85) v0-1, DeleteShareGroupState (86) v0 and
ReadShareGroupStateSummary (87) v0-1.

Brokers send them to the leader of the ``__share_group_state`` partition that holds a share
partition's state (strom's persister, server.share_persister, does for the share partitions
whose state lives elsewhere); this broker answers from its share coordinator runtime
(server.share_state_runtime, ``ctx.share_state``) and never forwards: NOT_COORDINATOR when it
does not lead the key's partition (or the topic does not exist), COORDINATOR_LOAD_IN_PROGRESS
while it loads it. Per partition, as Kafka's ShareCoordinatorShard:

- Initialize: a fresh state (no batches) at the request's state epoch and start offset;
  FENCED_STATE_EPOCH below the stored state epoch.
- Read: the state epoch, start offset and batches; FENCED_LEADER_EPOCH for a leader epoch
  below the stored one, a higher one is recorded; INVALID_REQUEST ("uninitialized share
  partition") when there is no state.
- Write: FENCED_LEADER_EPOCH / FENCED_STATE_EPOCH for epochs below the stored ones; -1 leaves
  an epoch or the start offset as stored. strom's share partitions send their complete state,
  so the request's batches become the state (Kafka's share partitions send the changed
  batches, which its coordinator merges over the stored ones); see share.state_store.
- Delete: the state is removed (a tombstone); NONE also when there was none.
- Summary: state epoch, leader epoch, start offset and delivery complete count; start offset
  -1 (and state epoch 0) without state.

An empty group id, a null topic id or a negative partition is INVALID_REQUEST. Only a
principal allowed CLUSTER_ACTION on the cluster may send them (Kafka's check); anyone else
gets CLUSTER_AUTHORIZATION_FAILED for every partition. With an authorizer, the inter-broker
principal must be a super user (strom.server.broker refuses to start otherwise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from strom.coordinator.shard import CoordinatorError
from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import Operation
from strom.share.persister import ShareCoordinator
from strom.share.records import (
    ShareSnapshotKey,
    ShareSnapshotValue,
    batches_as_fields,
    batches_from_fields,
)
from strom.share.state_store import UNINITIALIZED_MESSAGE, invalid_key

_MESSAGES: Final[dict[int, str]] = {
    ErrorCode.FENCED_LEADER_EPOCH: "The leader epoch is older than the share partition's recorded one.",
    ErrorCode.FENCED_STATE_EPOCH: "The state epoch is older than the share partition's recorded one.",
}

# One partition's answer: (error, message, what the API adds on success).
Answer = tuple[int, str | None, dict[str, Any]]
PartitionOp = Callable[[ShareCoordinator, ShareSnapshotKey, Any], Awaitable[Answer]]


def _message(error: int) -> str | None:
    return None if error == ErrorCode.NONE else _MESSAGES.get(error, ErrorCode(error).name)


async def _answer(ctx: BrokerContext, refused: bool, group_id: str, topic_id: Any, data: Any, operation: PartitionOp) -> Answer:
    if refused:
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None, {}
    runtime = ctx.share_state
    if runtime is None:
        return ErrorCode.NOT_COORDINATOR, "This broker has no share coordinator.", {}
    if topic_id is None:
        return ErrorCode.INVALID_REQUEST, "The topic id must not be null.", {}
    key = ShareSnapshotKey(group_id, topic_id, data.partition)
    why = invalid_key(key)
    if why is not None:
        return ErrorCode.INVALID_REQUEST, why, {}
    try:
        return await operation(runtime, key, data)
    except CoordinatorError as exc:
        return exc.error_code, str(exc), {}


async def _results(ctx: BrokerContext, request: Request, operation: PartitionOp, failed: dict[str, Any]) -> dict[str, Any]:
    """Every partition of the request answered by ``operation`` (concurrently: they may be in
    different shards); ``failed`` holds the fields of a partition that got an error."""
    body = request.body
    refused = not cluster_allowed(ctx, request, Operation.CLUSTER_ACTION)
    results = []
    for topic in body.topics:
        answers = await asyncio.gather(
            *(_answer(ctx, refused, body.group_id, topic.topic_id, p, operation) for p in topic.partitions)
        )
        partitions = []
        for p, (error, message, fields) in zip(topic.partitions, answers, strict=True):
            extra = fields if error == ErrorCode.NONE else failed
            partitions.append({"partition": p.partition, "error_code": error, "error_message": message, **extra})
        results.append({"topic_id": topic.topic_id, "partitions": partitions})
    return {"results": results}


# --- InitializeShareGroupState ----------------------------------------------------------------


async def _initialize(runtime: ShareCoordinator, key: ShareSnapshotKey, data: Any) -> Answer:
    error = await runtime.initialize_state(key, data.state_epoch, data.start_offset)
    return error, _message(error), {}


@handles(ApiKey.INITIALIZE_SHARE_GROUP_STATE, 0, 0)
async def initialize_share_group_state(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return await _results(ctx, request, _initialize, {})


# --- ReadShareGroupState ----------------------------------------------------------------------


async def _read(runtime: ShareCoordinator, key: ShareSnapshotKey, data: Any) -> Answer:
    error, value = await runtime.read_state(key, data.leader_epoch)
    if error == ErrorCode.INVALID_REQUEST:
        return error, UNINITIALIZED_MESSAGE, {}
    if error or value is None:
        return error, _message(error), {}
    return ErrorCode.NONE, None, {"state_epoch": value.state_epoch, "start_offset": value.start_offset, "state_batches": batches_as_fields(value.state_batches)}


@handles(ApiKey.READ_SHARE_GROUP_STATE, 0, 0)
async def read_share_group_state(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return await _results(ctx, request, _read, {"state_epoch": 0, "start_offset": -1, "state_batches": []})


# --- WriteShareGroupState ---------------------------------------------------------------------


async def _write(runtime: ShareCoordinator, key: ShareSnapshotKey, data: Any) -> Answer:
    value = ShareSnapshotValue(
        snapshot_epoch=0,  # the coordinator's
        state_epoch=data.state_epoch,
        leader_epoch=data.leader_epoch,
        start_offset=data.start_offset,
        create_timestamp=0,
        write_timestamp=0,
        state_batches=batches_from_fields(data.state_batches),
        delivery_complete_count=getattr(data, "delivery_complete_count", -1),  # v1
    )
    error = await runtime.write_state(key, value)
    return error, _message(error), {}


@handles(ApiKey.WRITE_SHARE_GROUP_STATE, 0, 1)
async def write_share_group_state(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return await _results(ctx, request, _write, {})


# --- DeleteShareGroupState --------------------------------------------------------------------


async def _delete(runtime: ShareCoordinator, key: ShareSnapshotKey, data: Any) -> Answer:
    error = await runtime.delete_state(key)
    return error, _message(error), {}


@handles(ApiKey.DELETE_SHARE_GROUP_STATE, 0, 0)
async def delete_share_group_state(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return await _results(ctx, request, _delete, {})


# --- ReadShareGroupStateSummary ---------------------------------------------------------------


async def _summary(runtime: ShareCoordinator, key: ShareSnapshotKey, data: Any) -> Answer:
    value = runtime.snapshot(key)
    if value is None:
        return ErrorCode.NONE, None, {"state_epoch": 0, "leader_epoch": -1, "start_offset": -1, "delivery_complete_count": -1}
    return ErrorCode.NONE, None, {
        "state_epoch": value.state_epoch, "leader_epoch": value.leader_epoch, "start_offset": value.start_offset,
        "delivery_complete_count": value.delivery_complete_count,
    }


@handles(ApiKey.READ_SHARE_GROUP_STATE_SUMMARY, 0, 1)
async def read_share_group_state_summary(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    failed = {"state_epoch": 0, "leader_epoch": -1, "start_offset": -1, "delivery_complete_count": -1}
    return await _results(ctx, request, _summary, failed)
