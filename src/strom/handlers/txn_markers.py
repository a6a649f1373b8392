"""WriteTxnMarkers (key 27), version 1: a transaction coordinator on another broker asks this
broker, the leader of some of the transaction's partitions, to write the commit or abort
marker there (KIP-98). Only brokers send it (strom's transaction coordinator does, through
strom.client, for partitions it does not lead).

Each marker is a control batch appended by the leader with the coordinator's epoch
(``PartitionLog.append_control``); the answer waits until the in-sync replicas have it, so a
marker, once acknowledged, survives a leader change (Kafka appends markers with acks=all).
A marker in ``__consumer_offsets`` also completes the producer's pending transactional offset
commits in the group coordinator. Per partition: NOT_LEADER_OR_FOLLOWER elsewhere,
UNKNOWN_TOPIC_OR_PARTITION for a deleted partition (the coordinator then drops it),
INVALID_PRODUCER_EPOCH when the producer has moved on and TRANSACTION_COORDINATOR_FENCED when a
newer coordinator already wrote one (both dropped too), KAFKA_STORAGE_ERROR.
Only a principal allowed ALTER or CLUSTER_ACTION on the cluster may send it (Kafka's check;
else CLUSTER_AUTHORIZATION_FAILED for every partition): with an authorizer, the inter-broker
principal must be a super user (strom.server.broker refuses to start otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from strom.coordinator.records import OFFSETS_TOPIC
from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext, Commit
from strom.handlers.registry import Request, handles
from strom.log.producer_state import ProducerStateError
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    WriteTxnMarkersResponse,
    WriteTxnMarkersResponseWritableTxnMarkerResult,
    WriteTxnMarkersResponseWritableTxnMarkerTopicResult,
)
from strom.security.acl import Operation

log = logging.getLogger(__name__)

MARKER_TIMEOUT_MS = 30_000  # how long a marker may wait for the in-sync replicas


def append_marker(
    ctx: BrokerContext, topic: str, partition: int, producer_id: int, producer_epoch: int,
    coordinator_epoch: int, commit: bool,
) -> tuple[int, Commit | None]:
    """Write one marker to a partition led here: (error code, what its answer waits for)."""
    partition_log, error = ctx.leader_log(topic, partition)
    if partition_log is None:
        return error, None
    try:
        partition_log.append_control(producer_id, producer_epoch, coordinator_epoch, commit, ctx.now_ms())
    except ProducerStateError as exc:
        log.warning("marker for producer %d to %s-%d refused: %s", producer_id, topic, partition, exc)
        return exc.error_code, None
    except OSError:
        log.exception("writing a marker to %s-%d failed", topic, partition)
        return ErrorCode.KAFKA_STORAGE_ERROR, None
    ctx.replica_view.appended(topic, partition)
    if topic == OFFSETS_TOPIC and ctx.groups is not None:
        ctx.groups.complete_transaction(partition, producer_id, commit)
    ctx.commits.notify()  # the last stable offset may have moved
    return ErrorCode.NONE, Commit.of(partition_log)


async def committed(ctx: BrokerContext, commit: Commit) -> int:
    """Wait until the in-sync replicas have the marker (Kafka writes markers with acks=all)."""
    return await ctx.replica_view.wait_for_commit(commit, MARKER_TIMEOUT_MS)


async def _write(ctx: BrokerContext, marker: Any, topic: str, partition: int) -> int:
    error, commit = append_marker(
        ctx, topic, partition, marker.producer_id, marker.producer_epoch, marker.coordinator_epoch,
        marker.transaction_result,
    )
    if commit is None:
        return error
    return await committed(ctx, commit)


@handles(ApiKey.WRITE_TXN_MARKERS, 1, 1)
async def write_txn_markers(ctx: BrokerContext, request: Request) -> WriteTxnMarkersResponse:
    refused = not (cluster_allowed(ctx, request, Operation.ALTER) or cluster_allowed(ctx, request, Operation.CLUSTER_ACTION))
    markers: list[WriteTxnMarkersResponseWritableTxnMarkerResult] = []
    for marker in request.body.markers:
        topics: list[WriteTxnMarkersResponseWritableTxnMarkerTopicResult] = []
        for topic in marker.topics:
            errors: Sequence[int]
            if refused:
                errors = [ErrorCode.CLUSTER_AUTHORIZATION_FAILED] * len(topic.partition_indexes)
            else:
                errors = await asyncio.gather(*(_write(ctx, marker, topic.name, p) for p in topic.partition_indexes))
            topics.append({
                "name": topic.name,
                "partitions": [{"partition_index": p, "error_code": e} for p, e in zip(topic.partition_indexes, errors, strict=True)],
            })
        markers.append({"producer_id": marker.producer_id, "topics": topics})
    return {"markers": markers}
