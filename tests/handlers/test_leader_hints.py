"""KIP-951 leader hints (handlers.leader_hints) and where the handlers put them, over a stand-in
context: which errors name a leader, what is named when no leader is known or it is not live,
and that each live leader's endpoint is listed once."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from strom.handlers.context import Node
from strom.handlers.fetch import _name_leaders
from strom.handlers.leader_hints import LeaderHints
from strom.handlers.share_groups import _current_leader
from strom.protocol.errors import ErrorCode
from strom.protocol.fetch_response import FetchPartitionResult, FetchTopicResult

TOPIC_ID = uuid.uuid4()


class Context:
    """Partitions (topic, partition) -> (leader, epoch); live brokers 1 and 2 only."""

    def __init__(self) -> None:
        self.states = {("t", 0): (2, 7), ("t", 1): (3, 4), ("t", 2): (-1, 5), ("t", 3): (2, 8), ("u", 0): (1, 1)}
        self.asked: list[tuple[int, str | None]] = []

    def partition_state(self, topic: str, partition: int) -> Any:
        state = self.states.get((topic, partition))
        return None if state is None else SimpleNamespace(leader=state[0], leader_epoch=state[1])

    def node_by_id(self, node_id: int, listener: str | None = None) -> Node | None:
        self.asked.append((node_id, listener))
        return Node(node_id, f"h{node_id}", 9000 + node_id, "r1" if node_id == 1 else None) if node_id in (1, 2) else None

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        return "t" if topic_id == TOPIC_ID else None


REQUEST = SimpleNamespace(session=SimpleNamespace(listener_name="INTERNAL"))


def test_leaders_and_their_endpoints_on_the_requests_listener() -> None:
    ctx = Context()
    hints = LeaderHints(ctx, REQUEST)  # type: ignore[arg-type]
    assert hints.leader("t", 0) == (2, 7)
    assert hints.leader("t", 1) == (3, 4)  # not a live broker: named, no endpoint
    assert hints.leader("t", 2) == (-1, -1)  # no leader
    assert hints.leader("t", 9) == (-1, -1)  # unknown partition
    assert hints.leader(None, 0) == (-1, -1)  # unknown topic id
    assert hints.leader("t", 3) == (2, 8)  # the same leader again: listed once
    assert hints.leader_field("u", 0) == {"leader_id": 1, "leader_epoch": 1}
    assert hints.node_endpoints == [
        {"node_id": 1, "host": "h1", "port": 9001, "rack": "r1"},
        {"node_id": 2, "host": "h2", "port": 9002, "rack": None},
    ]
    assert {listener for _, listener in ctx.asked} == {"INTERNAL"}


def test_fetch_names_leaders_after_not_leader_and_fenced_epoch_only() -> None:
    errors = [ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.OFFSET_OUT_OF_RANGE,
              ErrorCode.UNKNOWN_LEADER_EPOCH]
    topic = FetchTopicResult("t", TOPIC_ID, [FetchPartitionResult(i, error) for i, error in enumerate(errors)])
    endpoints = _name_leaders(Context(), REQUEST, [topic])  # type: ignore[arg-type]
    assert [p.current_leader for p in topic.partitions] == [(2, 7), (3, 4), None, None]
    assert endpoints == [{"node_id": 2, "host": "h2", "port": 9002, "rack": None}]


def test_share_answers_keep_the_schema_defaults_without_a_leadership_error() -> None:
    ctx = Context()
    hints = LeaderHints(ctx, REQUEST)  # type: ignore[arg-type]
    assert _current_leader(ctx, hints, (TOPIC_ID, 0), ErrorCode.NONE) == {"leader_id": 0, "leader_epoch": 0}  # type: ignore[arg-type]
    assert _current_leader(ctx, hints, (TOPIC_ID, 0), ErrorCode.INVALID_RECORD_STATE) == {"leader_id": 0, "leader_epoch": 0}  # type: ignore[arg-type]
    assert hints.node_endpoints == []
    assert _current_leader(ctx, hints, (TOPIC_ID, 0), ErrorCode.NOT_LEADER_OR_FOLLOWER) == {"leader_id": 2, "leader_epoch": 7}  # type: ignore[arg-type]
    assert _current_leader(ctx, hints, (TOPIC_ID, 3), ErrorCode.FENCED_LEADER_EPOCH) == {"leader_id": 2, "leader_epoch": 8}  # type: ignore[arg-type]
    assert [e["node_id"] for e in hints.node_endpoints] == [2]
