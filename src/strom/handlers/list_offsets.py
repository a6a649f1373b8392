"""ListOffsets (key 2), versions 1-11.

Timestamps: -2 earliest (log start offset), -1 latest (high watermark, or the last stable
offset for read_committed), -3 the record with the largest timestamp (KIP-734), -4 earliest
local (KIP-405; no tiered storage, so the log start offset), -5 earliest pending upload
(KIP-1005: nothing is ever pending, so "none": offset -1), and >= 0 the first record whose
timestamp is at or after it (-1 when none is; with read_committed, none at or past the last
stable offset, as Kafka's lastFetchableOffset).
"""

from __future__ import annotations

from typing import Any

from strom.handlers.auth import allowed
from strom.handlers.context import BrokerContext
from strom.handlers.leader_epoch import check_leader_epoch
from strom.handlers.registry import Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from strom.security.acl import Operation, ResourceType

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, EARLIEST_PENDING_UPLOAD = -1, -2, -3, -4, -5
READ_COMMITTED = 1


def _lookup(ctx: BrokerContext, topic: str, partition: Any, isolation: int) -> ListOffsetsPartitionResponse:
    result: ListOffsetsPartitionResponse = {
        "partition_index": partition.partition_index,
        "error_code": ErrorCode.NONE,
        "timestamp": -1,
        "offset": -1,
        "leader_epoch": -1,
    }
    log, error = ctx.leader_log(topic, partition.partition_index)
    if log is None:
        result["error_code"] = error
        return result
    result["leader_epoch"] = log.leader_epoch
    error = check_leader_epoch(log, getattr(partition, "current_leader_epoch", -1))
    if error:
        result["error_code"] = error
        return result
    timestamp = partition.timestamp
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        result["offset"] = log.log_start_offset
    elif timestamp == LATEST:
        result["offset"] = log.last_stable_offset if isolation == READ_COMMITTED else log.high_watermark
    elif timestamp == MAX_TIMESTAMP:
        found = log.max_timestamp_offset()
        if found is not None:
            result["offset"], result["timestamp"] = found
    elif timestamp >= 0:
        found = log.offset_for_timestamp(timestamp)
        if found is not None and (isolation != READ_COMMITTED or found[0] < log.last_stable_offset):
            result["offset"], result["timestamp"] = found
    elif timestamp != EARLIEST_PENDING_UPLOAD:
        result["error_code"] = ErrorCode.INVALID_REQUEST
    return result


@handles(ApiKey.LIST_OFFSETS, 1, 11)
async def list_offsets(ctx: BrokerContext, request: Request) -> ListOffsetsResponse:
    body = request.body
    isolation = body.isolation_level if request.version >= 2 else 0
    topics: list[ListOffsetsTopicResponse] = [
        {"name": t.name, "partitions": [_lookup(ctx, t.name, p, isolation) for p in t.partitions]}
        if allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, t.name) else
        {"name": t.name, "partitions": [{"partition_index": p.partition_index, "error_code": ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                         "timestamp": -1, "offset": -1, "leader_epoch": -1} for p in t.partitions]}
        for t in body.topics
    ]
    return {"throttle_time": 0, "topics": topics}
