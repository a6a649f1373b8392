"""One member of a classic group (Kafka's ClassicGroupMember).

A member may have one parked JoinGroup and one parked SyncGroup request. The coordinator
never holds the requests themselves: it holds *tickets*, opaque ints the runtime gave it, and
answers a ticket by putting ``(ticket, response)`` in a Result. So a member is awaiting a join
exactly when ``join_ticket`` is set, and awaiting a sync when ``sync_ticket`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EMPTY_ASSIGNMENT = b""


@dataclass(frozen=True, slots=True)
class Protocol:
    """One (name, metadata) the member supports, in its order of preference."""

    name: str
    metadata: bytes


@dataclass(slots=True)
class ClassicGroupMember:
    """Owned by its ClassicGroup (and so by the coordinator shard's single caller).

    ``protocols``, the timeouts and the tickets change on every JoinGroup; ``assignment`` when
    the leader's SyncGroup is stored; ``is_new`` from joining until its first generation.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: tuple[Protocol, ...]
    assignment: bytes = EMPTY_ASSIGNMENT
    join_ticket: int | None = None
    sync_ticket: int | None = None
    # A new member's JoinGroup may time out while it waits (its session cannot have started).
    is_new: bool = False
    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        self._names = frozenset(p.name for p in self.protocols)

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_ticket is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_ticket is not None

    @property
    def protocol_names(self) -> frozenset[str]:
        return self._names

    def set_protocols(self, protocols: tuple[Protocol, ...]) -> None:
        self.protocols = protocols
        self._names = frozenset(p.name for p in protocols)

    def metadata(self, protocol_name: str | None) -> bytes:
        """The member's metadata for a protocol (empty if it does not support it)."""
        for protocol in self.protocols:
            if protocol.name == protocol_name:
                return protocol.metadata
        return b""

    def matches(self, protocols: tuple[Protocol, ...]) -> bool:
        """Whether a rejoin carries exactly the protocols (and metadata) it had."""
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        for protocol in self.protocols:
            if protocol.name in candidates:
                return protocol.name
        raise AssertionError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def has_satisfied_heartbeat(self) -> bool:
        """Kafka's rule when the session timer fires: a new member waiting for its first join
        has failed; one parked in a rebalance is alive; anyone else needed a heartbeat."""
        if self.is_new:
            return False
        return self.awaiting_join or self.awaiting_sync
