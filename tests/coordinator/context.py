"""A test context for one coordinator shard, like Kafka's GroupMetadataManagerTestContext:
a fake clock (``sleep(ms)`` runs the timers that fall due), a list standing in for the
__consumer_offsets partition, and the answers of parked requests by ticket. ``apply`` does what
the runtime does with a Result: append (unless appends are made to fail), replay, answer,
report the append. ``journal`` keeps the partition's order of records (with the producer id of
a transactional batch) and transaction markers, for ``reload``. No event loop, no files.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from strom.coordinator.coordinator import (
    GroupCoordinator,
    HeartbeatRequest,
    JoinRequest,
    LeaveMember,
    SyncRequest,
)
from strom.coordinator.member import Protocol
from strom.coordinator.offset_manager import CommitPartition, CommitRequest
from strom.coordinator.records import CoordinatorRecord, deserialize, serialize
from strom.coordinator.shard import GroupConfig, Result
from strom.protocol.errors import ErrorCode

SESSION_MS = 10_000
REBALANCE_MS = 30_000


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0: version, topics, null user data."""
    out = bytearray(b"\x00\x00") + len(topics).to_bytes(4, "big")
    for topic in topics:
        out += len(topic).to_bytes(2, "big") + topic.encode()
    return bytes(out + b"\xff\xff\xff\xff")


def protocols(*names: str, topics: tuple[str, ...] = ("t",)) -> tuple[Protocol, ...]:
    return tuple(Protocol(name, subscription(*topics)) for name in names or ("range",))


@dataclass
class Member:
    """What a client knows after joining: its id and generation."""

    member_id: str
    generation_id: int
    leader: str
    instance_id: str | None = None


@dataclass
class GroupTestContext:
    config: GroupConfig = field(default_factory=lambda: GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=0))
    time: int = 0
    log: list[CoordinatorRecord] = field(default_factory=list)
    answers: dict[int, Any] = field(default_factory=dict)
    fail_appends: int = 0  # error code every append fails with (0: they succeed)
    replay: bool = True

    def __post_init__(self) -> None:
        ids = itertools.count(1)
        self.tickets = itertools.count(1)
        self.journal: list[tuple[Any, ...]] = []
        self.coordinator = GroupCoordinator(self.config, new_member_id=lambda prefix: f"{prefix}-{next(ids)}")
        self.apply(self.coordinator.loaded(self.time))

    # --- the runtime's part ----------------------------------------------------------------

    def apply(self, result: Result) -> Result:
        error = 0
        if result.records:
            error = self.fail_appends
            if not error:
                producer_id = result.producer[0] if result.producer is not None else -1
                self.log.extend(result.records)
                self.journal.extend(("record", record, producer_id) for record in result.records)
                if self.replay:
                    for record in result.records:
                        self.coordinator.replay(record, producer_id)
        for ticket, response in result.completions:
            self.answers.setdefault(ticket, response)  # a ticket is answered once
        if result.append_token is not None:
            self.apply(self.coordinator.appended(result.append_token, error, self.time))
        return result

    def marker(self, producer_id: int, commit: bool) -> None:
        """The transaction coordinator wrote the producer's commit or abort marker here."""
        self.journal.append(("marker", producer_id, commit))
        self.coordinator.replay_end_transaction(producer_id, commit)

    def sleep(self, ms: int) -> Result:
        self.time += ms
        return self.apply(self.coordinator.expire(self.time))

    def answer(self, ticket: int) -> Any:
        return self.answers.get(ticket)

    # --- requests ----------------------------------------------------------------------------

    def join(
        self, group_id: str = "g", member_id: str = "", *, instance_id: str | None = None,
        protocols_: tuple[Protocol, ...] | None = None, session_ms: int = SESSION_MS,
        rebalance_ms: int = REBALANCE_MS, version: int = 9, protocol_type: str = "consumer", client_id: str = "c",
    ) -> int:
        ticket = next(self.tickets)
        request = JoinRequest(
            group_id, member_id, protocol_type, protocols("range") if protocols_ is None else protocols_, session_ms, rebalance_ms,
            group_instance_id=instance_id, client_id=client_id, client_host="/127.0.0.1",
            require_known_member_id=version >= 4, supports_skip_assignment=version >= 9,
        )
        self.apply(self.coordinator.join_group(request, ticket, self.time))
        return ticket

    def join_new(self, group_id: str = "g", **kwargs: Any) -> int:
        """A dynamic member's two JoinGroups (KIP-394); returns the second ticket."""
        first = self.join(group_id, **kwargs)
        response = self.answer(first)
        assert response["error_code"] == ErrorCode.MEMBER_ID_REQUIRED, response
        return self.join(group_id, response["member_id"], **kwargs)

    def sync(self, group_id: str, member: Member, assignments: dict[str, bytes] | None = None, *, generation: int | None = None) -> int:
        ticket = next(self.tickets)
        request = SyncRequest(
            group_id, member.member_id, member.generation_id if generation is None else generation,
            group_instance_id=member.instance_id, assignments=tuple((assignments or {}).items()),
        )
        self.apply(self.coordinator.sync_group(request, ticket, self.time))
        return ticket

    def heartbeat(self, group_id: str, member: Member, *, generation: int | None = None, member_id: str | None = None) -> int:
        request = HeartbeatRequest(
            group_id, member.member_id if member_id is None else member_id,
            member.generation_id if generation is None else generation, member.instance_id,
        )
        return self.apply(self.coordinator.heartbeat(request, self.time)).response["error_code"]

    def leave(self, group_id: str, *members: LeaveMember) -> dict[str, Any]:
        return self.apply(self.coordinator.leave_group(group_id, members, self.time)).response

    def commit(
        self, group_id: str, offsets: dict[tuple[str, int], int], *, member: Member | None = None,
        generation: int | None = None, metadata: str | None = None, retention_ms: int = -1, version: int = 9,
    ) -> dict[tuple[str, int], int]:
        topics: dict[str, list[CommitPartition]] = {}
        for (topic, partition), offset in offsets.items():
            topics.setdefault(topic, []).append(CommitPartition(partition, offset, 5, metadata))
        request = CommitRequest(
            group_id,
            tuple((t, tuple(ps)) for t, ps in topics.items()),
            member_id=member.member_id if member else "",
            generation_id=generation if generation is not None else (member.generation_id if member else -1),
            group_instance_id=member.instance_id if member else None,
            retention_time_ms=retention_ms,
            api_version=version,
        )
        response = self.apply(self.coordinator.commit_offsets(request, self.time)).response
        return {(t["name"], p["partition_index"]): p["error_code"] for t in response["topics"] for p in t["partitions"]}

    def committed(self, group_id: str, topic: str = "t", partitions: tuple[int, ...] = (0,)) -> dict[int, int]:
        response = self.apply(self.coordinator.fetch_offsets(group_id, [(topic, partitions)], self.time)).response
        return {p["partition_index"]: p["committed_offset"] for p in response["topics"][0]["partitions"]}

    # --- whole rebalances --------------------------------------------------------------------

    def member(self, ticket: int, instance_id: str | None = None) -> Member:
        response = self.answer(ticket)
        assert response is not None, f"ticket {ticket} is still parked"
        assert response["error_code"] == ErrorCode.NONE, response
        return Member(response["member_id"], response["generation_id"], response["leader"], instance_id)

    def stable_group(self, group_id: str = "g", size: int = 2, **kwargs: Any) -> list[Member]:
        """``size`` dynamic members join (initial delay 0 completes the join when the timer
        runs), the leader assigns each its own id as bytes, everyone syncs."""
        tickets = [self.join_new(group_id, **kwargs) for _ in range(size)]
        self.sleep(0)
        members = [self.member(t) for t in tickets]
        leader = next(m for m in members if m.member_id == m.leader)
        followers = [m for m in members if m is not leader]
        sync_tickets = [self.sync(group_id, m) for m in followers]
        leader_ticket = self.sync(group_id, leader, {m.member_id: m.member_id.encode() for m in members})
        for ticket in [*sync_tickets, leader_ticket]:
            assert self.answer(ticket)["error_code"] == ErrorCode.NONE, self.answer(ticket)
        assert self.state(group_id) == "Stable"
        return members

    def state(self, group_id: str = "g") -> str:
        group = self.coordinator.groups.get(group_id)
        return "Dead" if group is None else group.state.value

    def group(self, group_id: str = "g") -> Any:
        return self.coordinator.groups[group_id]


def reload(ctx: GroupTestContext) -> GroupCoordinator:
    """A new shard that loads the context's log, through the bytes (serialize / deserialize)."""
    coordinator = GroupCoordinator(ctx.config)
    for entry in ctx.journal:
        if entry[0] == "marker":
            coordinator.replay_end_transaction(entry[1], entry[2])
            continue
        key, value = serialize(entry[1])
        parsed = deserialize(key, value)
        assert parsed is not None
        coordinator.replay(parsed, entry[2])
    return coordinator
