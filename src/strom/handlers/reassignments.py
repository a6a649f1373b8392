"""AlterPartitionReassignments (key 45) 0-1 and ListPartitionReassignments (key 46) 0 (KIP-455).

Kafka sends these requests to the controller; in strom any broker takes them: each change is
a compare-and-set on the partition epoch in the metadata store (etcd in a cluster), so it is
safe next to the controller's own writes and a leader's ISR changes. A lost compare is
decided again once on the fresh state; lost twice, the partition answers REQUEST_TIMED_OUT
(retriable).

AlterPartitionReassignments follows KRaft's ReplicationControlManager, per partition:

- unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION;
- ``replicas`` null cancels the running reassignment (back to the original replicas,
  strom.cluster.controller.cancel_reassignment); none runs: NO_REASSIGNMENT_IN_PROGRESS;
- otherwise the target must be non-empty, name registered brokers only and none twice
  (INVALID_REPLICA_ASSIGNMENT, Kafka's messages); with v1's allow_replication_factor_change
  false (KIP-860) it must keep the replica count (INVALID_REPLICATION_FACTOR). The request
  writes the first step (``start_reassignment``: the new replicas join ``replicas`` as
  ``adding``, the dropped ones are marked ``removing``) and returns once that is in this
  broker's image. The new replicas' brokers create their logs and fetch because they are now
  replicas; the leader adds them to the ISR once caught up, and the controller then
  completes the move (drops the removing replicas, hands leadership over if its leader
  leaves), after which the removed brokers delete their logs.

ListPartitionReassignments answers the running reassignments (replicas, adding, removing):
all of them when ``topics`` is null, else those among the partitions named; unknown topics
and partitions, and partitions not being reassigned, are left out (as KRaft does).
timeout_ms is not used by either: nothing is parked.
Authorization as Kafka's: altering needs ALTER on the cluster, listing DESCRIBE (else
CLUSTER_AUTHORIZATION_FAILED at the top level, and for every partition named).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from strom.cluster.controller import cancel_reassignment, start_reassignment
from strom.cluster.placement import validate_assignment
from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata.configs import ConfigError
from strom.metadata.image import ClusterImage, PartitionState
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    AlterPartitionReassignmentsResponse,
    AlterPartitionReassignmentsResponseReassignablePartitionResponse,
    AlterPartitionReassignmentsResponseReassignableTopicResponse,
    ListPartitionReassignmentsResponse,
    ListPartitionReassignmentsResponseOngoingPartitionReassignment,
    ListPartitionReassignmentsResponseOngoingTopicReassignment,
)
from strom.security.acl import Operation

# A lost compare-and-set is decided again on the fresh image this many times in all.
_ATTEMPTS = 2

NO_REASSIGNMENT_MESSAGE = "No partition reassignment is in progress."
CLUSTER_REFUSED = "Cluster authorization failed."  # Kafka's message for the error

# The next state of a partition, or None when nothing is to be written; raises ConfigError.
Step = Callable[[ClusterImage, PartitionState], PartitionState | None]


def _cancel(image: ClusterImage, state: PartitionState) -> PartitionState | None:
    cancelled = cancel_reassignment(state)
    if cancelled is None:
        raise ConfigError(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, NO_REASSIGNMENT_MESSAGE)
    return cancelled


def _reassign(target: tuple[int, ...], allow_rf_change: bool) -> Step:
    def step(image: ClusterImage, state: PartitionState) -> PartitionState | None:
        validate_assignment([target], image.brokers)
        current = len(state.target_replicas)
        if not allow_rf_change and current != len(target):
            raise ConfigError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"The replication factor is changed from {current} to {len(target)}",
            )
        started = start_reassignment(state, target)
        return None if started == state else started

    return step


async def _alter_one(ctx: BrokerContext, topic: str, partition: int, step: Step) -> tuple[int, str | None]:
    for _ in range(_ATTEMPTS):
        image = ctx.image
        if topic not in image.topics:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find a topic named {topic}."
        state = image.partition(topic, partition)
        if state is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {topic}:{partition}."
        try:
            nxt = step(image, state)
            if nxt is None or await ctx.metadata.alter_partition(topic, partition, nxt) is not None:
                return ErrorCode.NONE, None
        except ConfigError as exc:
            return exc.error_code, str(exc)
    return ErrorCode.REQUEST_TIMED_OUT, f"{topic}-{partition} kept changing during the reassignment; try again."


@handles(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, 1)
async def alter_partition_reassignments(ctx: BrokerContext, request: Request) -> AlterPartitionReassignmentsResponse:
    body = request.body
    allow_rf_change = body.allow_replication_factor_change if request.version >= 1 else True
    if not cluster_allowed(ctx, request, Operation.ALTER):
        refused = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return {
            "throttle_time": 0, "allow_replication_factor_change": allow_rf_change,
            "error_code": refused, "error_message": CLUSTER_REFUSED,
            "responses": [{"name": t.name, "partitions": [
                {"partition_index": p.partition_index, "error_code": refused, "error_message": CLUSTER_REFUSED}
                for p in t.partitions]} for t in body.topics],
        }
    outcomes = iter(await asyncio.gather(*(
        _alter_one(
            ctx, topic.name, p.partition_index,
            _cancel if p.replicas is None else _reassign(tuple(p.replicas), allow_rf_change),
        )
        for topic in body.topics for p in topic.partitions
    )))
    responses: list[AlterPartitionReassignmentsResponseReassignableTopicResponse] = []
    for topic in body.topics:
        partitions: list[AlterPartitionReassignmentsResponseReassignablePartitionResponse] = []
        for p in topic.partitions:
            error, message = next(outcomes)
            partitions.append({"partition_index": p.partition_index, "error_code": error, "error_message": message})
        responses.append({"name": topic.name, "partitions": partitions})
    return {
        "throttle_time": 0,
        "allow_replication_factor_change": allow_rf_change,
        "error_code": ErrorCode.NONE,
        "error_message": None,
        "responses": responses,
    }


def _ongoing(
    image: ClusterImage, topic: str, partitions: list[int]
) -> ListPartitionReassignmentsResponseOngoingTopicReassignment | None:
    ongoing: list[ListPartitionReassignmentsResponseOngoingPartitionReassignment] = []
    for p in partitions:
        state = image.partition(topic, p)
        if state is not None and state.reassigning:
            ongoing.append({
                "partition_index": p,
                "replicas": list(state.replicas),
                "adding_replicas": list(state.adding),
                "removing_replicas": list(state.removing),
            })
    return {"name": topic, "partitions": ongoing} if ongoing else None


@handles(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, 0)
async def list_partition_reassignments(ctx: BrokerContext, request: Request) -> ListPartitionReassignmentsResponse:
    if not cluster_allowed(ctx, request, Operation.DESCRIBE):
        return {"throttle_time": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "error_message": CLUSTER_REFUSED,
                "topics": [{"name": t.name, "partitions": [
                    {"partition_index": p, "replicas": [], "adding_replicas": [], "removing_replicas": []}
                    for p in t.partition_indexes]} for t in request.body.topics or ()]}
    image = ctx.image
    if request.body.topics is None:
        wanted = [(name, list(range(t.partitions))) for name, t in sorted(image.topics.items())]
    else:
        wanted = [(t.name, list(t.partition_indexes)) for t in request.body.topics if t.name in image.topics]
    topics = [o for name, partitions in wanted if (o := _ongoing(image, name, partitions)) is not None]
    return {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "topics": topics}
