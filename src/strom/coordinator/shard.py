"""The plumbing of a coordinator shard: effects in, Result out, timers, tickets.

A coordinator operation takes ``now_ms`` and returns a ``Result``:

``records``      to append to this shard's partition (``__consumer_offsets`` for groups,
                 ``__transaction_state`` for transactions). The caller appends them and then
                 calls ``replay`` for each; only replaying changes durable state (committed
                 offsets, a transaction's state; what a restart will load).
``producer``     (producer id, epoch) when the records are a transactional batch of that
                 producer (TxnOffsetCommit); None for ordinary records.
``markers``      commit or abort markers to write to the partitions of a transaction (Kafka's
                 WriteTxnMarkers), once the records are stored; the caller reports the outcome
                 back (TransactionCoordinator.markers_written).
``response``     the answer for operations that never wait (Heartbeat, LeaveGroup, commits ...).
``completions``  answers for parked requests: JoinGroup and SyncGroup park until the rebalance
                 gets there. A parked request is known by its *ticket*, an int the caller passed
                 in; ``(ticket, response)`` answers it (possibly the caller's own, at once).
``deadlines``    timer changes, ``(key, at_ms)`` or ``(key, None)`` to cancel, keyed like Kafka's
                 CoordinatorTimer; when one falls due the caller calls ``expire(now_ms)``.
``append_token`` when set, the caller reports how the append went with ``appended(token, error,
                 now_ms)`` (Kafka's appendFuture callbacks: a SyncGroup assignment becomes
                 current only once stored).

``CoordinatorShard`` holds that machinery; ``Shard`` adds a group shard's state, and the offset
operations (``offset_manager``) and the classic group protocol (``coordinator``) build on it,
as the transaction coordinator (``transactions``) builds on ``CoordinatorShard``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from strom.coordinator.consumer_group import ConsumerGroup
from strom.coordinator.group import ClassicGroup

if TYPE_CHECKING:
    from strom.coordinator.share_groups import ShareGroup
from strom.coordinator.member import EMPTY_ASSIGNMENT, ClassicGroupMember
from strom.coordinator.offsets import OffsetStore
from strom.protocol.errors import ErrorCode

UNKNOWN_MEMBER_ID: Final = ""
UNKNOWN_GENERATION_ID: Final = -1

TimerKey = tuple[str, ...]


class CoordinatorError(Exception):
    """The coordinator cannot serve a request (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
    or a failed append): ``error_code`` answers the whole request."""

    def __init__(self, error_code: int, message: str = "") -> None:
        super().__init__(message or ErrorCode(error_code).name)
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Kafka's group.* and offsets.* broker settings that the coordinator obeys."""

    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1800000
    initial_rebalance_delay_ms: int = 3000
    max_size: int = 2**31 - 1
    new_member_join_timeout_ms: int = 300000  # group.classic.new.member.join.timeout.ms
    offset_metadata_max_bytes: int = 4096
    offsets_retention_ms: int = 10080 * 60 * 1000
    offsets_retention_check_interval_ms: int = 600000
    # KIP-848 consumer groups (group.consumer.*)
    consumer_session_timeout_ms: int = 45000
    consumer_heartbeat_interval_ms: int = 5000
    consumer_max_size: int = 2**31 - 1
    consumer_assignors: tuple[str, ...] = ("uniform", "range")
    # KIP-932 share groups (group.share.*)
    share_session_timeout_ms: int = 45000
    share_heartbeat_interval_ms: int = 5000
    share_max_size: int = 200


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """Write a commit or abort marker for ``producer_id`` to each of ``partitions``."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: frozenset[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Result:
    records: tuple[Any, ...] = ()  # the shard's record type (records.CoordinatorRecord, txn_records.TxnRecord)
    response: Any = None
    completions: tuple[tuple[int, Any], ...] = ()
    deadlines: tuple[tuple[TimerKey, int | None], ...] = ()
    append_token: int | None = None
    producer: tuple[int, int] | None = None
    markers: tuple[TxnMarker, ...] = ()


# --- responses ---------------------------------------------------------------------------------


def join_response(
    error: int,
    member_id: str = UNKNOWN_MEMBER_ID,
    *,
    generation_id: int = UNKNOWN_GENERATION_ID,
    protocol_type: str | None = None,
    protocol_name: str | None = None,
    leader: str = "",
    members: Sequence[dict[str, Any]] = (),
    skip_assignment: bool = False,
) -> dict[str, Any]:
    return {
        "error_code": error,
        "generation_id": generation_id,
        "protocol_type": protocol_type,
        "protocol_name": protocol_name,
        "leader": leader,
        "skip_assignment": skip_assignment,
        "member_id": member_id,
        "members": list(members),
    }


def sync_response(
    error: int, *, protocol_type: str | None = None, protocol_name: str | None = None, assignment: bytes = EMPTY_ASSIGNMENT
) -> dict[str, Any]:
    return {"error_code": error, "protocol_type": protocol_type, "protocol_name": protocol_name, "assignment": assignment}


@dataclass(slots=True)
class _Effects:
    records: list[Any] = field(default_factory=list)
    completions: list[tuple[int, Any]] = field(default_factory=list)
    deadlines: dict[TimerKey, int | None] = field(default_factory=dict)
    on_append: list[Callable[[int], None]] = field(default_factory=list)
    producer: tuple[int, int] | None = None
    markers: list[TxnMarker] = field(default_factory=list)


def heartbeat_key(group_id: str, member_id: str) -> TimerKey:
    return ("heartbeat", group_id, member_id)


def join_key(group_id: str) -> TimerKey:
    return ("join", group_id)


def sync_key(group_id: str) -> TimerKey:
    return ("sync", group_id)


class CoordinatorShard:
    """A shard's effect plumbing. Owned by a single caller (the runtime, on the event loop);
    no operation re-enters another.

    ``loading``: True until ``loaded``. ``_timers``: key -> (deadline, action); the caller
    learns of every change via ``deadlines``.
    """

    def __init__(self) -> None:
        self.loading = True
        self._timers: dict[TimerKey, tuple[int, Callable[[], None]]] = {}
        self._append_callbacks: dict[int, list[Callable[[int], None]]] = {}
        self._next_append_token = 0
        self._fx: _Effects | None = None
        self._now = 0


    def _run(self, now_ms: int, operation: Callable[[], Any]) -> Result:
        if self._fx is not None:
            raise AssertionError("coordinator operations do not nest")
        self._now = now_ms
        self._fx = fx = _Effects()
        try:
            response = operation()
        finally:
            self._fx = None
        token = None
        if fx.on_append:
            token = self._next_append_token
            self._next_append_token += 1
            self._append_callbacks[token] = fx.on_append
        return Result(
            tuple(fx.records), response, tuple(fx.completions), tuple(fx.deadlines.items()), token,
            fx.producer if fx.records else None, tuple(fx.markers),
        )

    @property
    def _effects(self) -> _Effects:
        assert self._fx is not None, "outside an operation"
        return self._fx

    def _append(self, record: Any, on_append: Callable[[int], None] | None = None) -> None:
        self._effects.records.append(record)
        if on_append is not None:
            self._effects.on_append.append(on_append)

    def _write_markers(self, marker: TxnMarker) -> None:
        self._effects.markers.append(marker)

    def _answer(self, ticket: int, response: Any) -> None:
        self._effects.completions.append((ticket, response))

    def _schedule(self, key: TimerKey, delay_ms: int, action: Callable[[], None]) -> None:
        at = self._now + max(delay_ms, 0)
        self._timers[key] = (at, action)
        self._effects.deadlines[key] = at

    def _cancel(self, key: TimerKey) -> None:
        if self._timers.pop(key, None) is not None:
            self._effects.deadlines[key] = None

    def deadline(self, key: TimerKey) -> int | None:
        timer = self._timers.get(key)
        return None if timer is None else timer[0]

    def deadlines(self) -> dict[TimerKey, int]:
        return {key: at for key, (at, _) in self._timers.items()}

    def expire(self, now_ms: int) -> Result:
        """Run every timer due at ``now_ms``, earliest first (a timer may schedule others)."""

        def run() -> None:
            while True:
                due = [(at, key) for key, (at, _) in self._timers.items() if at <= now_ms]
                if not due:
                    return
                _, key = min(due)
                _, action = self._timers.pop(key)
                self._effects.deadlines[key] = None
                action()

        return self._run(now_ms, run)

    def appended(self, token: int, error: int, now_ms: int) -> Result:
        """How the append of a Result with ``append_token`` went (error 0: stored and replayed)."""
        callbacks = self._append_callbacks.pop(token, [])

        def run() -> None:
            for callback in callbacks:
                callback(error)

        return self._run(now_ms, run)


class Shard(CoordinatorShard):
    """A group coordinator shard's state (see CoordinatorShard for the plumbing).

    ``groups``: the live classic groups, changed by the operations (membership) and by replay
    (loading, tombstones, simple groups created by offset commits). ``consumer_groups``: the
    KIP-848 groups, changed by their records only. A group id is in one of them at most. ``offsets``: changed by replay only.
    While ``loading``, GroupMetadata records rebuild groups.
    """

    def __init__(self, config: GroupConfig) -> None:
        super().__init__()
        self.config = config
        self.groups: dict[str, ClassicGroup] = {}
        self.consumer_groups: dict[str, ConsumerGroup] = {}  # KIP-848's (consumer_coordinator)
        self.share_groups: dict[str, ShareGroup] = {}  # KIP-932's (share_groups)
        self.offsets = OffsetStore()

    def _complete_join(self, member: ClassicGroupMember, response: dict[str, Any]) -> bool:
        if member.join_ticket is None:
            return False
        self._answer(member.join_ticket, response)
        member.join_ticket = None
        return True

    def _complete_sync(self, member: ClassicGroupMember, response: dict[str, Any]) -> bool:
        if member.sync_ticket is None:
            return False
        self._answer(member.sync_ticket, response)
        member.sync_ticket = None
        return True

    def _reschedule_heartbeat(self, group: ClassicGroup, member: ClassicGroupMember, timeout_ms: int | None = None) -> None:
        raise NotImplementedError  # the classic group protocol's (GroupCoordinator)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        raise NotImplementedError  # the classic group protocol's (GroupCoordinator)


# Kafka's translations of a failed coordinator write (its records could not be stored) into
# what the client is told. They share these cases and differ in a few.
_WRITE_ERRORS: Final[dict[int, int]] = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.RECORD_LIST_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
}
# GroupMetadataManager.appendGroupMetadataErrorToResponseError: storing group metadata.
GROUP_APPEND_ERRORS: Final[dict[int, int]] = {
    **_WRITE_ERRORS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.REBALANCE_IN_PROGRESS,
    ErrorCode.INVALID_FETCH_SIZE: ErrorCode.UNKNOWN_SERVER_ERROR,
}
# TransactionStateManager.appendTransactionToLog: storing a transaction's state.
TXN_APPEND_ERRORS: Final[dict[int, int]] = {
    **_WRITE_ERRORS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
}
# GroupCoordinatorService.handleOperationException: the records of any other operation.
OPERATION_ERRORS: Final[dict[int, int]] = {
    **_WRITE_ERRORS,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.INVALID_FETCH_SIZE: ErrorCode.UNKNOWN_SERVER_ERROR,
}


def write_error(error: int, translation: Mapping[int, int]) -> int:
    """What a client is told when its records could not be stored (``error``), by one of the
    translations above."""
    return translation.get(error, error)
