"""OffsetForLeaderEpoch (key 23), versions 2-4, and the leader-epoch check other handlers share.

Clients ask for the end offset of a leader epoch to detect log truncation after a leader change
(KIP-320); the answer is the largest epoch <= the one asked for, with the start offset of the
next epoch (or the log end offset for the latest). ``current_leader_epoch`` (-1: no check)
older than the partition's epoch is FENCED_LEADER_EPOCH, newer is UNKNOWN_LEADER_EPOCH.
A single node keeps one epoch per partition; the cache is there for replication.
Only the leader answers (followers ask it too, with their replica_id).
"""

from __future__ import annotations

from typing import Any

from strom.handlers.auth import allowed, cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.log.partition import PartitionLog
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    OffsetForLeaderEpochResponse,
    OffsetForLeaderEpochResponseEpochEndOffset,
    OffsetForLeaderEpochResponseOffsetForLeaderTopicResult,
)
from strom.security.acl import Operation, ResourceType

NO_EPOCH_CHECK = -1


def check_leader_epoch(log: PartitionLog, current_leader_epoch: int) -> int:
    """KIP-320's fencing check of a request's current_leader_epoch; an error code."""
    if current_leader_epoch == NO_EPOCH_CHECK or current_leader_epoch == log.leader_epoch:
        return ErrorCode.NONE
    if current_leader_epoch < log.leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    return ErrorCode.UNKNOWN_LEADER_EPOCH


def _end_offset(ctx: BrokerContext, topic: str, partition: Any) -> OffsetForLeaderEpochResponseEpochEndOffset:
    result: OffsetForLeaderEpochResponseEpochEndOffset = {"error_code": ErrorCode.NONE, "partition": partition.partition, "leader_epoch": -1, "end_offset": -1}
    log, error = ctx.leader_log(topic, partition.partition)
    if log is None:
        result["error_code"] = error
        return result
    error = check_leader_epoch(log, partition.current_leader_epoch)
    if error:
        result["error_code"] = error
        return result
    result["leader_epoch"], result["end_offset"] = log.epochs.end_offset_for(partition.leader_epoch, log.log_end_offset)
    return result


@handles(ApiKey.OFFSET_FOR_LEADER_EPOCH, 2, 4)
async def offset_for_leader_epoch(ctx: BrokerContext, request: Request) -> OffsetForLeaderEpochResponse:
    body = request.body
    follower = getattr(body, "replica_id", -1) >= 0

    def may(topic: str) -> bool:
        if follower:
            return cluster_allowed(ctx, request, Operation.CLUSTER_ACTION)
        return allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, topic)

    topics: list[OffsetForLeaderEpochResponseOffsetForLeaderTopicResult] = [
        {"topic": t.topic, "partitions": [_end_offset(ctx, t.topic, p) if may(t.topic) else
                                          {"error_code": ErrorCode.TOPIC_AUTHORIZATION_FAILED, "partition": p.partition,
                                           "leader_epoch": -1, "end_offset": -1} for p in t.partitions]}
        for t in body.topics
    ]
    return {"throttle_time": 0, "topics": topics}
