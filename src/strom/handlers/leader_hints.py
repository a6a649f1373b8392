"""KIP-951 leader discovery: an answer that tells a client this broker does not lead a partition
(NOT_LEADER_OR_FOLLOWER; for fetches also FENCED_LEADER_EPOCH) names the partition's current
leader and epoch, and the response lists those leaders' endpoints on the listener the request
came in on, so the client can go there without a Metadata round trip (Produce v10+, Fetch v16+,
ShareFetch, ShareAcknowledge). As Kafka's getCurrentLeader: -1 / -1 when no leader is known,
and no endpoint for a leader that is not a live broker."""

from __future__ import annotations

from typing import Any

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, listener_of
from strom.protocol.errors import ErrorCode

NOT_LEADER = ErrorCode.NOT_LEADER_OR_FOLLOWER
FETCH_ERRORS = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH})


class LeaderHints:
    """The current leaders named in one response, and their endpoints."""

    def __init__(self, ctx: BrokerContext, request: Request) -> None:
        self._ctx = ctx
        self._listener = listener_of(request)
        self._endpoints: dict[int, dict[str, Any]] = {}

    def leader(self, topic: str | None, partition: int) -> tuple[int, int]:
        """(leader id, leader epoch) of the partition, its leader's endpoint noted."""
        state = None if topic is None else self._ctx.partition_state(topic, partition)
        if state is None or state.leader < 0:
            return -1, -1
        if state.leader not in self._endpoints:
            node = self._ctx.node_by_id(state.leader, self._listener)
            if node is not None:
                self._endpoints[state.leader] = {"node_id": node.node_id, "host": node.host, "port": node.port,
                                                 "rack": node.rack}
        return state.leader, state.leader_epoch

    def leader_field(self, topic: str | None, partition: int) -> dict[str, int]:
        leader_id, epoch = self.leader(topic, partition)
        return {"leader_id": leader_id, "leader_epoch": epoch}

    @property
    def node_endpoints(self) -> list[dict[str, Any]]:
        return [self._endpoints[node_id] for node_id in sorted(self._endpoints)]
