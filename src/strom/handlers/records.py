"""DeleteRecords (key 21), versions 0-2.

Moves a partition's log start offset (offset -1 means the high watermark); whole segments
below it are deleted, and consumers reading from "earliest" start there. An offset above
the high watermark is OFFSET_OUT_OF_RANGE, as in Kafka. Needs DELETE on the topic (else
TOPIC_AUTHORIZATION_FAILED, before the partition is looked up).
"""

from __future__ import annotations

from typing import Any

from strom.handlers.auth import allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.log.partition import OffsetOutOfRange
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from strom.security.acl import Operation, ResourceType


def _delete(ctx: BrokerContext, topic: str, partition: Any) -> DeleteRecordsPartitionResult:
    result: DeleteRecordsPartitionResult = {"partition_index": partition.partition_index, "low_watermark": -1, "error_code": ErrorCode.NONE}
    log, error = ctx.leader_log(topic, partition.partition_index)
    if log is None:
        result["error_code"] = error
        return result
    try:
        result["low_watermark"] = log.delete_records_before(partition.offset)
    except OffsetOutOfRange:
        result["error_code"] = ErrorCode.OFFSET_OUT_OF_RANGE
    return result


@handles(ApiKey.DELETE_RECORDS, 0, 2)
async def delete_records(ctx: BrokerContext, request: Request) -> DeleteRecordsResponse:
    topics: list[DeleteRecordsTopicResult] = [
        {"name": t.name, "partitions": [_delete(ctx, t.name, p) for p in t.partitions]}
        if allowed(ctx, request, Operation.DELETE, ResourceType.TOPIC, t.name) else
        {"name": t.name, "partitions": [{"partition_index": p.partition_index, "low_watermark": -1,
                                         "error_code": ErrorCode.TOPIC_AUTHORIZATION_FAILED} for p in t.partitions]}
        for t in request.body.topics
    ]
    return {"throttle_time": 0, "topics": topics}
