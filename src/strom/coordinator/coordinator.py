"""The group coordinator of one ``__consumer_offsets`` partition, as a pure state machine.

Kafka's classic group protocol (GroupMetadataManager / ClassicGroup) with no sockets, no
clock and no log: every operation takes ``now_ms`` and returns a ``Result`` (see shard.py).
The shard's requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DeleteGroups ...) are here;
the offset operations are in offset_manager.py.

Membership (who is in a group, who waits for what) is soft state changed directly by the
operations, as in Kafka's classic groups; loading a partition rebuilds it from the stored
GroupMetadata records (``loading`` is True until ``loaded``).

Timers (keys): ("heartbeat", group, member) session expiry, or the new-member join timeout;
("join", group) the end of a join phase: rebalance timeout or initial rebalance delay;
("sync", group) members that never sent SyncGroup; ("expire-group-metadata",) offset expiry.

Transactional offsets: ``replay`` with the batch's producer id keeps them pending, and
``replay_end_transaction`` (the transaction's marker in this partition) commits or drops them.

Built on the others of a shard: KIP-848 consumer groups (consumer_coordinator, with classic
members and conversions in classic_members) and KIP-932 share groups (share_groups), which
requests for a group of their type are handed to. Not here: streams groups (KIP-1071).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from strom.coordinator.consumer_coordinator import CONSUMER_KEYS, TopicImage
from strom.coordinator.group import (
    COMPLETING_REBALANCE,
    DEAD,
    EMPTY,
    GROUP_TYPE_CLASSIC,
    GROUP_TYPE_CONSUMER,
    GROUP_TYPE_SHARE,
    PREPARING_REBALANCE,
    STABLE,
    ClassicGroup,
)
from strom.coordinator.member import EMPTY_ASSIGNMENT, ClassicGroupMember, Protocol
from strom.coordinator.offsets import OffsetAndMetadata
from strom.coordinator.records import (
    CoordinatorRecord,
    GroupMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
)
from strom.coordinator.shard import (
    GROUP_APPEND_ERRORS,
    UNKNOWN_MEMBER_ID,
    GroupConfig,
    Result,
    heartbeat_key,
    join_key,
    join_response,
    sync_key,
    sync_response,
    write_error,
)
from strom.coordinator.share_groups import SHARE_KEYS, ShareGroupManager
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    protocol_type: str
    protocols: tuple[Protocol, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    group_instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    require_known_member_id: bool = True  # JoinGroup v4+ (KIP-394)
    supports_skip_assignment: bool = True  # JoinGroup v9+ (KIP-814)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SyncRequest:
    group_id: str
    member_id: str
    generation_id: int
    group_instance_id: str | None = None
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignments: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    group_id: str
    member_id: str
    generation_id: int
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveMember:
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


class GroupCoordinator(ShareGroupManager):
    """One shard: the groups whose ids hash to one __consumer_offsets partition (see Shard for
    ownership and the meaning of each field)."""

    def __init__(self, config: GroupConfig, *, new_member_id: Callable[[str], str] | None = None) -> None:
        super().__init__(config)
        self._new_member_id = new_member_id or (lambda prefix: f"{prefix}-{uuid.uuid4()}")

    # --- loading -------------------------------------------------------------------------------

    def replay(self, record: CoordinatorRecord, producer_id: int = -1) -> None:
        """Apply a record that is in the log (appended by us, or read back while loading);
        ``producer_id`` >= 0 for a record of a transactional batch."""
        key, value = record.key, record.value
        if isinstance(key, CONSUMER_KEYS):
            self._replay_consumer(record)
            return
        if isinstance(key, SHARE_KEYS):
            self._replay_share(record)
            return
        if isinstance(key, OffsetCommitKey):
            if value is None:
                self.offsets.remove(key.group, key.topic, key.partition)
                return
            assert isinstance(value, OffsetCommitValue)
            if producer_id >= 0:
                self.offsets.put_pending(producer_id, key.group, key.topic, key.partition, OffsetAndMetadata.from_record(value))
                return
            if key.group not in self.groups and key.group not in self.consumer_groups:
                # Offsets without group metadata: a "simple" group that only commits offsets.
                self.groups[key.group] = ClassicGroup(key.group)
            self.offsets.put(key.group, key.topic, key.partition, OffsetAndMetadata.from_record(value))
            return
        if value is None:
            group = self.groups.pop(key.group, None)
            if group is not None:
                group.transition_to(DEAD, self._now)
        elif self.loading:
            assert isinstance(value, GroupMetadataValue)
            self.groups[key.group] = ClassicGroup.from_record(key.group, value)
        # Otherwise the live group already is what the record stores.

    def replay_end_transaction(self, producer_id: int, commit: bool) -> None:
        """The marker of the producer's transaction is in this partition's log."""
        for group_id, _topic, _partition in self.offsets.end_transaction(producer_id, commit):
            if group_id not in self.groups and group_id not in self.consumer_groups:
                self.groups[group_id] = ClassicGroup(group_id)  # a simple group, as plain commits make

    def loaded(self, now_ms: int) -> Result:
        """The partition is loaded: members' sessions start now, groups over group.max.size
        rebalance, and offset expiry is scheduled."""

        def run() -> None:
            self.loading = False
            for group in list(self.groups.values()):
                for member in group.members.values():
                    self._reschedule_heartbeat(group, member)
                if len(group.members) > self.config.max_size:
                    self._prepare_rebalance(group, f"loaded group is over capacity {self.config.max_size}")
            self._start_consumer_timers()
            self._start_share_timers()
            self._schedule_expiration()

        return self._run(now_ms, run)

    def unloaded(self, now_ms: int) -> Result:
        """The partition is no longer ours: answer everyone parked, forget every timer."""

        def run() -> None:
            for group in self.groups.values():
                for member in group.members.values():
                    self._complete_join(member, join_response(ErrorCode.NOT_COORDINATOR, member.member_id))
                    self._complete_sync(member, sync_response(ErrorCode.NOT_COORDINATOR))
                group.transition_to(DEAD, now_ms)
            for key in list(self._timers):
                self._cancel(key)
            self.groups.clear()
            self.consumer_groups.clear()
            self.share_groups.clear()
            self._pending_classic.clear()

        return self._run(now_ms, run)

    # --- JoinGroup -----------------------------------------------------------------------------

    def join_group(self, request: JoinRequest, ticket: int, now_ms: int, topics: TopicImage | None = None) -> Result:
        """``topics``: what a classic member of a consumer group subscribes to is resolved with them."""
        if topics is not None:
            self._topics = topics
        return self._run(now_ms, lambda: self._join(request, ticket))

    def _join(self, request: JoinRequest, ticket: int) -> None:
        group_id = request.group_id
        if not group_id:
            self._answer(ticket, join_response(ErrorCode.INVALID_GROUP_ID, request.member_id))
            return
        config = self.config
        if not config.min_session_timeout_ms <= request.session_timeout_ms <= config.max_session_timeout_ms:
            self._answer(ticket, join_response(ErrorCode.INVALID_SESSION_TIMEOUT, request.member_id))
            return
        if group_id in self.share_groups:
            self._answer(ticket, join_response(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, request.member_id))
            return
        consumer_group = self.consumer_groups.get(group_id)
        if consumer_group is not None:
            if consumer_group.members:
                self.classic_join(consumer_group, request, ticket)  # a mixed group
                return
            log.info("empty consumer group %s becomes a classic group", group_id)
            self._delete_consumer_group(consumer_group)
        unknown_member = request.member_id == UNKNOWN_MEMBER_ID
        group = self.groups.get(group_id)
        new_group = group is None
        if group is None:
            if not unknown_member:
                self._answer(ticket, join_response(ErrorCode.UNKNOWN_MEMBER_ID, request.member_id))
                return
            group = self.groups[group_id] = ClassicGroup(group_id, self._now)
        if not self._accept_joining_member(group, request.member_id):
            self._remove_member(group, request.member_id, ErrorCode.GROUP_MAX_SIZE_REACHED)
            self._answer(ticket, join_response(ErrorCode.GROUP_MAX_SIZE_REACHED))
            self._maybe_complete_join_phase(group)  # the others may all be waiting already
        elif unknown_member:
            self._join_new_member(group, request, ticket)
        else:
            self._join_existing_member(group, request, ticket)
        if new_group and not self._effects.records:
            # Kafka 4 stores a new group at once, so that it survives a restart.
            self._append(
                CoordinatorRecord.group_metadata(group_id, self._empty_group_record(group)),
                lambda error: self._new_group_not_stored(group_id, ticket, error),
            )

    def _empty_group_record(self, group: ClassicGroup) -> GroupMetadataValue:
        return GroupMetadataValue(
            group.protocol_type or "", group.generation_id, None, None,
            -1 if group.state_timestamp_ms is None else group.state_timestamp_ms, (),
        )

    def _new_group_not_stored(self, group_id: str, ticket: int, error: int) -> None:
        if not error:
            return
        group = self.groups.get(group_id)
        if group is not None and group.generation_id == 0:
            # Kafka reverts to before the group existed: forget it and everything it armed.
            for member_id in [*group.members, *group.pending_members]:
                self._cancel(heartbeat_key(group_id, member_id))
            self._cancel(join_key(group_id))
            del self.groups[group_id]
        self._answer(ticket, join_response(write_error(error, GROUP_APPEND_ERRORS)))

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        """group.max.size: new members are refused once the group is full."""
        max_size = self.config.max_size
        if group.is_in(EMPTY, DEAD):
            return True
        if group.is_in(PREPARING_REBALANCE):
            # Counting members that already rejoined lets the last ones to rejoin be refused
            # when the limit was lowered.
            return (group.has_member(member_id) and group.member(member_id).awaiting_join) or group.num_awaiting_join() < max_size
        return group.has_member(member_id) or len(group.members) < max_size

    def _join_new_member(self, group: ClassicGroup, request: JoinRequest, ticket: int) -> None:
        if group.is_in(DEAD):
            self._answer(ticket, join_response(ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(request.protocol_type, request.protocols):
            self._answer(ticket, join_response(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        new_member_id = self._new_member_id(request.group_instance_id or request.client_id)
        if request.group_instance_id is not None:
            existing = group.static_member_id(request.group_instance_id)
            if existing is not None:
                self._replace_static_member(group, request, existing, new_member_id, ticket)
            else:
                self._add_member_and_rebalance(group, request, new_member_id, ticket)
        elif request.require_known_member_id:
            # KIP-394: remember the id, and let the member come back with it.
            group.pending_members.add(new_member_id)
            group_id = group.group_id
            self._schedule(
                heartbeat_key(group_id, new_member_id),
                request.session_timeout_ms,
                lambda: self._expire_heartbeat(group_id, new_member_id),
            )
            self._answer(ticket, join_response(ErrorCode.MEMBER_ID_REQUIRED, new_member_id))
        else:
            self._add_member_and_rebalance(group, request, new_member_id, ticket)

    def _join_existing_member(self, group: ClassicGroup, request: JoinRequest, ticket: int) -> None:
        member_id = request.member_id
        if group.is_in(DEAD):
            self._answer(ticket, join_response(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(request.protocol_type, request.protocols):
            self._answer(ticket, join_response(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if group.is_pending_member(member_id):
            if request.group_instance_id is not None:  # pending members are always dynamic
                self._answer(ticket, join_response(ErrorCode.UNKNOWN_SERVER_ERROR, member_id))
                return
            self._add_member_and_rebalance(group, request, member_id, ticket)
            return
        error = group.validate_member(member_id, request.group_instance_id)
        if error:
            self._answer(ticket, join_response(error, member_id))
            return
        member = group.member(member_id)
        if group.is_in(PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, request, ticket)
        elif group.is_in(COMPLETING_REBALANCE):
            if member.matches(request.protocols):
                # The member lost its JoinGroup answer: give it the current generation again.
                members = group.leader_members() if group.is_leader(member_id) else []
                self._answer(ticket, self._generation_response(group, member_id, members))
            else:
                self._update_member_and_rebalance(group, member, request, ticket)
        elif group.is_in(STABLE):
            if group.is_leader(member_id) or not member.matches(request.protocols):
                # A rejoining leader asks for a new assignment (e.g. topic metadata changed).
                self._update_member_and_rebalance(group, member, request, ticket)
            else:
                self._answer(ticket, self._generation_response(group, member_id, []))
        else:
            self._answer(ticket, join_response(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _generation_response(self, group: ClassicGroup, member_id: str, members: list[dict[str, Any]], *, skip_assignment: bool = False) -> dict[str, Any]:
        return join_response(
            ErrorCode.NONE,
            member_id,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            members=members,
            skip_assignment=skip_assignment,
        )

    def _add_member_and_rebalance(self, group: ClassicGroup, request: JoinRequest, member_id: str, ticket: int) -> None:
        member = ClassicGroupMember(
            member_id, request.group_instance_id, request.client_id, request.client_host,
            request.rebalance_timeout_ms, request.session_timeout_ms, request.protocol_type,
            request.protocols, join_ticket=ticket, is_new=True,
        )
        if group.is_in(PREPARING_REBALANCE) and group.previous_state is EMPTY:
            group.new_member_added = True  # the initial rebalance delay may be extended
        group.add(member)
        # A new member cannot heartbeat while its JoinGroup is parked, and its disconnect goes
        # unnoticed: time the join out instead, so a vanished client does not stay forever.
        self._reschedule_heartbeat(group, member, self.config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance_or_complete_join(group, f"adding member {member_id}")

    def _update_member_and_rebalance(self, group: ClassicGroup, member: ClassicGroupMember, request: JoinRequest, ticket: int) -> None:
        self._update_member(member, request.protocols, request.rebalance_timeout_ms, request.session_timeout_ms, ticket)
        self._maybe_prepare_rebalance_or_complete_join(group, f"member {member.member_id} rejoining")

    def _update_member(
        self, member: ClassicGroupMember, protocols: tuple[Protocol, ...], rebalance_timeout_ms: int,
        session_timeout_ms: int, ticket: int | None,
    ) -> None:
        member.set_protocols(protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if member.join_ticket is not None and member.join_ticket != ticket:
            # A second JoinGroup of the same member (another connection): the first one retries.
            self._answer(member.join_ticket, join_response(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.join_ticket = ticket

    def _replace_static_member(self, group: ClassicGroup, request: JoinRequest, old_member_id: str, new_member_id: str, ticket: int) -> None:
        """KIP-345: a static member came back with a new member id. The old id is fenced; in a
        Stable group whose protocol stays the same there is no rebalance at all."""
        instance_id = request.group_instance_id
        assert instance_id is not None
        group_id = group.group_id
        current_leader = group.leader_id or ""
        old, new = group.replace_static_member(instance_id, old_member_id, new_member_id)
        self._complete_join(old, join_response(ErrorCode.FENCED_INSTANCE_ID, old_member_id))
        self._complete_sync(old, sync_response(ErrorCode.FENCED_INSTANCE_ID))
        self._cancel(heartbeat_key(group_id, old_member_id))
        self._reschedule_heartbeat(group, new)
        old_protocols, old_rebalance_ms, old_session_ms = new.protocols, new.rebalance_timeout_ms, new.session_timeout_ms
        self._update_member(new, request.protocols, request.rebalance_timeout_ms, request.session_timeout_ms, ticket)
        if group.is_in(STABLE):
            if (group.protocol_name or "") != group.select_protocol():
                self._maybe_prepare_rebalance_or_complete_join(group, f"static member {instance_id} changed protocols")
                return

            def stored(error: int) -> None:
                if self.groups.get(group_id) is not group or new_member_id not in group.members:
                    return
                if error:
                    # Not stored: undo the replacement, the old member id stays valid.
                    new.join_ticket = None  # answered below, with the error
                    self._update_member(new, old_protocols, old_rebalance_ms, old_session_ms, None)
                    _, restored = group.replace_static_member(instance_id, new_member_id, old_member_id)
                    self._cancel(heartbeat_key(group_id, new_member_id))
                    self._reschedule_heartbeat(group, restored)
                    self._answer(ticket, join_response(
                        write_error(error, GROUP_APPEND_ERRORS), generation_id=group.generation_id, protocol_type=group.protocol_type,
                        protocol_name=group.protocol_name, leader=current_leader,
                    ))
                elif request.supports_skip_assignment:
                    # KIP-814: a returning static leader gets the members but keeps the assignment.
                    leader = group.is_leader(new_member_id)
                    members = group.leader_members() if leader else []
                    self._complete_join(new, self._generation_response(group, new_member_id, members, skip_assignment=leader))
                else:
                    response = self._generation_response(group, new_member_id, [])
                    response["leader"] = current_leader
                    self._complete_join(new, response)

            self._append(CoordinatorRecord.group_metadata(group_id, group.to_record(group.assignments())), stored)
        elif group.is_in(COMPLETING_REBALANCE):
            # The leader may be assigning to the old member id: rebalance so the new id gets a share.
            self._prepare_rebalance(group, f"static member {instance_id} rejoined during CompletingRebalance")
        elif group.is_in(PREPARING_REBALANCE):
            self._maybe_complete_join_phase(group)
        else:
            raise AssertionError(f"static member {instance_id} of group {group_id} rejoined in {group.state.value}")

    # --- rebalancing -------------------------------------------------------------------------

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join_phase(group)

    def _maybe_complete_join_phase(self, group: ClassicGroup) -> None:
        # The first rebalance of a group waits for its initial delay even when all have joined.
        if group.is_in(PREPARING_REBALANCE) and group.has_all_members_joined() and group.previous_state is not EMPTY:
            self._complete_join_phase(group)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.is_in(COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        group_id = group.group_id
        self._cancel(sync_key(group_id))
        initial = group.is_in(EMPTY)
        if initial:
            # group.initial.rebalance.delay.ms: let more members of a new group arrive first.
            delay = self.config.initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms() - delay, 0)
            self._schedule(join_key(group_id), delay, lambda: self._initial_delay_over(group_id, delay, remaining))
        group.transition_to(PREPARING_REBALANCE, self._now)
        log.info("preparing to rebalance group %s in generation %d: %s", group_id, group.generation_id, reason)
        if not initial:
            if group.has_all_members_joined():
                self._complete_join_phase(group)
            else:
                self._schedule(join_key(group_id), group.rebalance_timeout_ms(), lambda: self._join_phase_timed_out(group_id))

    def _initial_delay_over(self, group_id: str, delay_ms: int, remaining_ms: int) -> None:
        group = self.groups.get(group_id)
        if group is None or not group.is_in(PREPARING_REBALANCE):
            return
        if group.new_member_added and remaining_ms != 0:
            group.new_member_added = False
            next_delay = min(self.config.initial_rebalance_delay_ms, remaining_ms)
            next_remaining = max(remaining_ms - delay_ms, 0)
            self._schedule(
                join_key(group_id), next_delay, lambda: self._initial_delay_over(group_id, next_delay, next_remaining)
            )
        else:
            self._complete_join_phase(group)

    def _join_phase_timed_out(self, group_id: str) -> None:
        group = self.groups.get(group_id)
        if group is not None and group.is_in(PREPARING_REBALANCE):
            self._complete_join_phase(group)

    def _complete_join_phase(self, group: ClassicGroup) -> None:
        """Every member rejoined, or the rebalance timeout is over: dynamic members that did
        not rejoin are dropped, and the next generation starts (or the group is Empty)."""
        group_id = group.group_id
        self._cancel(join_key(group_id))
        for member in group.not_yet_rejoined_members():
            if not member.is_static:
                self._remove_member(group, member.member_id, ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members that have not rejoined are left: wait for them (or their
            # session expiry) for another rebalance timeout.
            self._schedule(join_key(group_id), group.rebalance_timeout_ms(), lambda: self._join_phase_timed_out(group_id))
            return
        group.init_next_generation(self._now)
        if group.is_in(EMPTY):
            log.info("group %s with generation %d is now empty", group_id, group.generation_id)
            self._append(CoordinatorRecord.group_metadata(group_id, group.to_record({})))
            return
        log.info(
            "stabilized group %s generation %d (%d members, protocol %s)",
            group_id, group.generation_id, len(group.members), group.protocol_name,
        )
        for member in group.members.values():
            members = group.leader_members() if group.is_leader(member.member_id) else []
            self._complete_join(member, self._generation_response(group, member.member_id, members))
            self._reschedule_heartbeat(group, member)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        self._schedule(sync_key(group_id), group.rebalance_timeout_ms(), lambda: self._sync_timed_out(group_id, generation))

    def _sync_timed_out(self, group_id: str, generation_id: int) -> None:
        """Members of this generation that never sent SyncGroup within the rebalance timeout
        are removed, and the group rebalances without them."""
        group = self.groups.get(group_id)
        if group is None or group.generation_id != generation_id or not group.is_in(COMPLETING_REBALANCE, STABLE):
            return
        if group.has_received_sync_from_all_members():
            return
        missing = sorted(group.pending_sync_members)
        for member_id in missing:
            self._remove_member(group, member_id, ErrorCode.UNKNOWN_MEMBER_ID)
        self._prepare_rebalance(group, f"removing {missing}: no SyncGroup within the rebalance timeout")

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error: int) -> None:
        assert group.is_in(COMPLETING_REBALANCE), group
        for member in group.members.values():
            member.assignment = EMPTY_ASSIGNMENT
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: ClassicGroup, error: int) -> None:
        ok = error == ErrorCode.NONE
        for member in group.members.values():
            response = sync_response(
                error,
                protocol_type=group.protocol_type if ok else None,
                protocol_name=group.protocol_name if ok else None,
                assignment=member.assignment,
            )
            if self._complete_sync(member, response):
                # The session restarts with the answer: an expiry while it waited was ignored.
                self._reschedule_heartbeat(group, member)

    def _remove_member(self, group: ClassicGroup, member_id: str, error: int) -> ClassicGroupMember | None:
        """Drop a member, answering whatever it has parked, and stop its session timer."""
        self._cancel(heartbeat_key(group.group_id, member_id))
        member = group.members.get(member_id)
        if member is not None:
            # It may retry its JoinGroup if it is still alive.
            self._complete_join(member, join_response(ErrorCode.UNKNOWN_MEMBER_ID))
            self._complete_sync(member, sync_response(error))
        group.remove(member_id)
        return member

    def _remove_member_and_update(self, group: ClassicGroup, member_id: str, reason: str) -> None:
        self._remove_member(group, member_id, ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(STABLE, COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance_or_complete_join(group, reason)
        elif group.is_in(PREPARING_REBALANCE) and group.has_all_members_joined():
            self._complete_join_phase(group)

    # --- sessions ------------------------------------------------------------------------------

    def _reschedule_heartbeat(self, group: ClassicGroup, member: ClassicGroupMember, timeout_ms: int | None = None) -> None:
        group_id, member_id = group.group_id, member.member_id
        self._schedule(
            heartbeat_key(group_id, member_id),
            member.session_timeout_ms if timeout_ms is None else timeout_ms,
            lambda: self._expire_heartbeat(group_id, member_id),
        )

    def _expire_heartbeat(self, group_id: str, member_id: str) -> None:
        group = self.groups.get(group_id)
        if group is None or group.is_in(DEAD):
            return
        if group.is_pending_member(member_id):
            log.info("pending member %s of group %s expired", member_id, group_id)
            group.remove(member_id)
            if group.is_in(PREPARING_REBALANCE) and group.has_all_members_joined():
                self._complete_join_phase(group)
            return
        member = group.members.get(member_id)
        if member is not None and not member.has_satisfied_heartbeat():
            log.info("member %s of group %s failed (session timeout), removing it", member_id, group_id)
            self._remove_member_and_update(group, member_id, f"member {member_id} session expired")

    # --- SyncGroup -----------------------------------------------------------------------------

    def sync_group(self, request: SyncRequest, ticket: int, now_ms: int, topics: TopicImage | None = None) -> Result:
        if topics is not None:
            self._topics = topics
        return self._run(now_ms, lambda: self._sync(request, ticket))

    def _sync(self, request: SyncRequest, ticket: int) -> None:
        if request.group_id in self.consumer_groups:
            self.classic_sync(self.consumer_groups[request.group_id], request, ticket)
            return
        group = self.groups.get(request.group_id)
        if group is None or group.is_in(EMPTY):
            self._answer(ticket, sync_response(ErrorCode.UNKNOWN_MEMBER_ID))
            return
        error = self._validate_sync(group, request)
        if error:
            self._answer(ticket, sync_response(error))
            return
        member_id = request.member_id
        if group.is_in(PREPARING_REBALANCE):
            self._answer(ticket, sync_response(ErrorCode.REBALANCE_IN_PROGRESS))
        elif group.is_in(COMPLETING_REBALANCE):
            member = group.member(member_id)
            if member.sync_ticket is not None:
                self._answer(member.sync_ticket, sync_response(ErrorCode.REBALANCE_IN_PROGRESS))
            member.sync_ticket = ticket
            self._remove_pending_sync_member(group, member_id)
            if group.is_leader(member_id):
                self._store_assignment(group, request)
        else:  # Stable: hand out the assignment of this generation
            self._remove_pending_sync_member(group, member_id)
            self._answer(ticket, sync_response(
                ErrorCode.NONE, protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                assignment=group.member(member_id).assignment,
            ))

    @staticmethod
    def _validate_generation(group: ClassicGroup, member_id: str, instance_id: str | None, generation_id: int) -> int:
        """SyncGroup's and Heartbeat's check: a live group, a known member, its generation."""
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = group.validate_member(member_id, instance_id)
        if error:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        return ErrorCode.NONE

    def _validate_sync(self, group: ClassicGroup, request: SyncRequest) -> int:
        error = self._validate_generation(group, request.member_id, request.group_instance_id, request.generation_id)
        if error:
            return error
        # KIP-559 (SyncGroup v5+): the protocol the member believes in must be the group's.
        for asked, known in ((request.protocol_type, group.protocol_type), (request.protocol_name, group.protocol_name)):
            if asked is not None and known is not None and asked != known:
                return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return ErrorCode.NONE

    def _store_assignment(self, group: ClassicGroup, request: SyncRequest) -> None:
        """The leader's assignment is stored first; it becomes current (and the group Stable)
        only once the GroupMetadata record is in the log."""
        assignment = dict(request.assignments)
        for member_id in group.members:
            assignment.setdefault(member_id, EMPTY_ASSIGNMENT)
        group_id, generation = group.group_id, group.generation_id

        def stored(error: int) -> None:
            if self.groups.get(group_id) is not group or not group.is_in(COMPLETING_REBALANCE) or group.generation_id != generation:
                return  # the group moved on while the record was written
            if error:
                self._reset_and_propagate_assignment_error(group, write_error(error, GROUP_APPEND_ERRORS))
                self._maybe_prepare_rebalance_or_complete_join(group, f"storing the assignment failed ({error})")
                return
            for member in group.members.values():
                member.assignment = assignment.get(member.member_id, EMPTY_ASSIGNMENT)
            self._propagate_assignment(group, ErrorCode.NONE)
            group.transition_to(STABLE, self._now)

        self._append(CoordinatorRecord.group_metadata(group_id, group.to_record(assignment)), stored)

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if not group.is_in(COMPLETING_REBALANCE, STABLE) or group.has_received_sync_from_all_members():
            self._cancel(sync_key(group.group_id))

    # --- Heartbeat -----------------------------------------------------------------------------

    def heartbeat(self, request: HeartbeatRequest, now_ms: int) -> Result:
        return self._run(now_ms, lambda: {"error_code": self._heartbeat(request)})

    def _heartbeat(self, request: HeartbeatRequest) -> int:
        if request.group_id in self.consumer_groups:
            return self.classic_heartbeat(self.consumer_groups[request.group_id], request.member_id, request.generation_id)
        group = self.groups.get(request.group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        error = self._validate_generation(group, request.member_id, request.group_instance_id, request.generation_id)
        if error:
            return error
        if group.is_in(EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._reschedule_heartbeat(group, group.member(request.member_id))
        # The member learns of a rebalance from its heartbeat, and rejoins.
        return ErrorCode.REBALANCE_IN_PROGRESS if group.is_in(PREPARING_REBALANCE) else ErrorCode.NONE

    # --- LeaveGroup ----------------------------------------------------------------------------

    def leave_group(self, group_id: str, members: Sequence[LeaveMember], now_ms: int) -> Result:
        return self._run(now_ms, lambda: self._leave(group_id, members))

    def _leave(self, group_id: str, members: Sequence[LeaveMember]) -> dict[str, Any]:
        if group_id in self.consumer_groups:
            return self.classic_leave(self.consumer_groups[group_id], members)
        group = self.groups.get(group_id)
        if group is None:
            return {"error_code": ErrorCode.UNKNOWN_MEMBER_ID, "members": []}
        if group.is_in(DEAD):
            return {"error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE, "members": []}
        results = []
        left = []
        for leaving in members:
            error: int = ErrorCode.NONE
            if leaving.member_id == UNKNOWN_MEMBER_ID:
                # KIP-345: an admin removes a static member by its instance id alone.
                member_id = group.static_member_id(leaving.group_instance_id)
                if member_id is None:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
                else:
                    self._remove_member(group, member_id, ErrorCode.UNKNOWN_MEMBER_ID)
                    left.append(member_id)
            elif group.is_pending_member(leaving.member_id):
                group.remove(leaving.member_id)
                self._cancel(heartbeat_key(group_id, leaving.member_id))
                left.append(leaving.member_id)
            else:
                error = group.validate_member(leaving.member_id, leaving.group_instance_id)
                if not error:
                    self._remove_member(group, leaving.member_id, ErrorCode.UNKNOWN_MEMBER_ID)
                    left.append(leaving.member_id)
            if not error:
                log.info("member %s left group %s (reason: %s)", leaving.member_id or leaving.group_instance_id, group_id, leaving.reason)
            results.append(
                {"member_id": leaving.member_id, "group_instance_id": leaving.group_instance_id, "error_code": error}
            )
        if left:
            reason = f"members {left} left"
            if group.is_in(STABLE, COMPLETING_REBALANCE):
                self._maybe_prepare_rebalance_or_complete_join(group, reason)
            elif group.is_in(PREPARING_REBALANCE):
                self._maybe_complete_join_phase(group)
        return {"error_code": ErrorCode.NONE, "members": results}

    # --- ListGroups, DescribeGroups, DeleteGroups ----------------------------------------------

    def list_groups(self, states: Iterable[str] = (), types: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Every group that is not Dead; filters match case-insensitively (KIP-518, KIP-848)."""
        wanted_states = {s.strip().lower() for s in states}
        wanted_types = {t.strip().lower() for t in types}
        listed = [(group.group_id, group.protocol_type or "", group.state.value, GROUP_TYPE_CLASSIC)
                  for group in self.groups.values() if not group.is_in(DEAD)]
        listed += [(group.group_id, "consumer", group.state, GROUP_TYPE_CONSUMER) for group in self.consumer_groups.values()]
        listed += [(group.group_id, "share", group.state, GROUP_TYPE_SHARE) for group in self.share_groups.values()]
        return [{"group_id": group_id, "protocol_type": protocol_type, "group_state": state, "group_type": kind}
                for group_id, protocol_type, state, kind in listed
                if (not wanted_states or state.lower() in wanted_states) and (not wanted_types or kind in wanted_types)]

    def describe_group(self, group_id: str) -> dict[str, Any] | None:
        """The DescribeGroups entry of a group, or None when there is no such group. Member
        metadata and assignments are only shown while Stable, as Kafka does."""
        group = self.groups.get(group_id)
        if group is None or group.is_in(DEAD):
            return None
        stable = group.is_in(STABLE)
        return {
            "error_code": ErrorCode.NONE,
            "group_id": group_id,
            "group_state": group.state.value,
            "protocol_type": group.protocol_type or "",
            "protocol_data": (group.protocol_name or "") if stable else "",
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": m.metadata(group.protocol_name) if stable else b"",
                    "member_assignment": m.assignment if stable else b"",
                }
                for m in group.members.values()
            ],
        }

    def delete_groups(self, group_ids: Sequence[str], now_ms: int) -> Result:
        return self._run(now_ms, lambda: [{"group_id": g, "error_code": self._delete_group(g)} for g in group_ids])

    def _delete_group(self, group_id: str) -> int:
        share_group = self.share_groups.get(group_id)
        if share_group is not None:
            if share_group.members:
                return ErrorCode.NON_EMPTY_GROUP
            self._delete_share_group(share_group)
            return ErrorCode.NONE
        consumer_group = self.consumer_groups.get(group_id)
        if consumer_group is not None:
            if consumer_group.members:
                return ErrorCode.NON_EMPTY_GROUP
            for tp, _ in list(self.offsets.partitions(group_id)):
                self._append(CoordinatorRecord.offset_commit(group_id, tp.topic, tp.partition, None))
            self._delete_consumer_group(consumer_group)
            return ErrorCode.NONE
        group = self.groups.get(group_id)
        if group is None or group.is_in(DEAD):
            return ErrorCode.GROUP_ID_NOT_FOUND
        if not group.is_in(EMPTY):
            return ErrorCode.NON_EMPTY_GROUP
        for tp, _ in list(self.offsets.partitions(group_id)):
            self._append(CoordinatorRecord.offset_commit(group_id, tp.topic, tp.partition, None))
        self._append(CoordinatorRecord.group_metadata(group_id, None))
        return ErrorCode.NONE
