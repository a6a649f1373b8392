"""ElectLeaders (key 43) 0-2.

Kafka sends this request to the controller; in strom any broker takes it: each election is a
compare-and-set on the partition epoch in the metadata store (etcd in a cluster), so it is
safe next to the controller's own writes and a leader's ISR changes. A lost compare is
decided again once on the fresh state; lost twice, the partition answers REQUEST_TIMED_OUT
(retriable). The request returns once every write is in this broker's image; the brokers
then take up their new roles from the image, as after any election.

election_type (v1+; v0 is PREFERRED) follows KRaft's ReplicationControlManager.electLeader:

- 0 PREFERRED: the preferred replica (``replicas[0]``) leads if it is live and in the ISR
  (strom.cluster.controller.Controller.preferred_elections), leader epoch + 1. It already
  leads: ELECTION_NOT_NEEDED; it cannot: PREFERRED_LEADER_NOT_AVAILABLE.
- 1 UNCLEAN: only for a partition without a leader (else ELECTION_NOT_NEEDED): the first
  live ISR member in replica order if there is one (a clean election, as Kafka tries first),
  else the first live replica, alone in the ISR and RECOVERING (KIP-704: data may be lost);
  no live replica: ELIGIBLE_LEADERS_NOT_AVAILABLE. Allowed whatever the topic's
  unclean.leader.election.enable says, as in Kafka: the operator asks for it explicitly.

``topic_partitions`` null means every partition of every topic; the answer then leaves out
the partitions whose election was not needed (as KRaft does). Unknown topics and partitions:
UNKNOWN_TOPIC_OR_PARTITION. An unknown election type answers INVALID_REQUEST for every
partition named (and at the top level, v1+). timeout_ms is not used: the writes are not
parked. Only a principal allowed ALTER on the cluster may elect (else CLUSTER_AUTHORIZATION_FAILED
at the top level and for every partition named, as Kafka answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from strom.cluster.controller import Controller
from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata.configs import ConfigError
from strom.metadata.image import NO_LEADER, RECOVERING, ClusterImage, PartitionState
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    ElectLeadersResponse,
    ElectLeadersResponsePartitionResult,
    ElectLeadersResponseReplicaElectionResult,
)
from strom.security.acl import Operation

PREFERRED = 0
UNCLEAN = 1

# A lost compare-and-set is decided again on the fresh image this many times in all.
_ATTEMPTS = 2

_MESSAGES: dict[int, str] = {  # Kafka's default messages for these errors
    ErrorCode.ELECTION_NOT_NEEDED: "Leader election not needed for topic partition.",
    ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE: "The preferred leader was not available.",
    ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE: "Eligible topic partition leaders are not available.",
}

CLUSTER_REFUSED = "Cluster authorization failed."  # Kafka's message for the error

Key = tuple[str, int]
Decision = tuple[PartitionState | None, int, str | None]  # (state to write, error, message)


def _unknown(image: ClusterImage, key: Key) -> str | None:
    topic, partition = key
    if topic not in image.topics:
        return f"No such topic as {topic}"
    if image.partition(topic, partition) is None:
        return f"No such partition as {topic}-{partition}"
    return None


def _decide(image: ClusterImage, key: Key, election_type: int) -> Decision:
    """What to write for one partition, or the error to answer."""
    missing = _unknown(image, key)
    if missing is not None:
        return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, missing
    if election_type == PREFERRED:
        # A fresh Controller: it only reads the image (its memory of broker epochs is empty).
        changes, errors = Controller().preferred_elections(image, [key])
        if changes:
            return changes[0].state, ErrorCode.NONE, None
        error = errors[key]
        return None, error, _MESSAGES.get(error)
    state = image.partitions[key]
    if state.leader != NO_LEADER:
        return None, ErrorCode.ELECTION_NOT_NEEDED, _MESSAGES[ErrorCode.ELECTION_NOT_NEEDED]
    live = [r for r in state.replicas if image.live(r)]
    clean = [r for r in live if r in state.isr]
    if clean:
        return replace(state, leader=clean[0], leader_epoch=state.leader_epoch + 1), ErrorCode.NONE, None
    if live:
        unclean = replace(
            state, leader=live[0], leader_epoch=state.leader_epoch + 1, isr=(live[0],),
            leader_recovery=RECOVERING,
        )
        return unclean, ErrorCode.NONE, None
    error = ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
    return None, error, _MESSAGES[error]


async def _elect(ctx: BrokerContext, key: Key, election_type: int) -> tuple[int, str | None]:
    for _ in range(_ATTEMPTS):
        state, error, message = _decide(ctx.image, key, election_type)
        if state is None:
            return error, message
        try:
            if await ctx.metadata.alter_partition(key[0], key[1], state) is not None:
                return ErrorCode.NONE, None
        except ConfigError as exc:
            return exc.error_code, str(exc)
    state, error, message = _decide(ctx.image, key, election_type)
    if state is None:
        return error, message
    return ErrorCode.REQUEST_TIMED_OUT, f"{key[0]}-{key[1]} kept changing during the election; try again."


@handles(ApiKey.ELECT_LEADERS, 0, 2)
async def elect_leaders(ctx: BrokerContext, request: Request) -> ElectLeadersResponse:
    body = request.body
    election_type = body.election_type if request.version >= 1 else PREFERRED
    if not cluster_allowed(ctx, request, Operation.ALTER):
        refused = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return {"throttle_time": 0, "error_code": refused, "replica_election_results": [
            {"topic": t.topic, "partition_result": [{"partition_id": p, "error_code": refused, "error_message": CLUSTER_REFUSED}
                                                    for p in t.partitions]}
            for t in body.topic_partitions or ()
        ]}
    image = ctx.image
    everything = body.topic_partitions is None
    if everything:
        wanted = [(name, list(range(t.partitions))) for name, t in sorted(image.topics.items())]
    else:
        wanted = [(t.topic, list(t.partitions)) for t in body.topic_partitions]
    top_error = ErrorCode.NONE
    outcomes: Sequence[tuple[int, str | None]]
    if election_type not in (PREFERRED, UNCLEAN):
        top_error = ErrorCode.INVALID_REQUEST
        invalid = (ErrorCode.INVALID_REQUEST, f"Unknown election type {election_type}.")
        outcomes = [invalid for _, partitions in wanted for _ in partitions]
    else:
        outcomes = await asyncio.gather(
            *(_elect(ctx, (topic, p), election_type) for topic, partitions in wanted for p in partitions)
        )
    results: list[ElectLeadersResponseReplicaElectionResult] = []
    it = iter(outcomes)
    for topic, partitions in wanted:
        partition_results: list[ElectLeadersResponsePartitionResult] = []
        for p in partitions:
            error, message = next(it)
            if everything and error == ErrorCode.ELECTION_NOT_NEEDED:
                continue
            partition_results.append({"partition_id": p, "error_code": error, "error_message": message})
        results.append({"topic": topic, "partition_result": partition_results})
    return {"throttle_time": 0, "error_code": top_error, "replica_election_results": results}
