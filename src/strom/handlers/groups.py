"""Consumer groups, classic protocol: FindCoordinator (key 10) 0-6, JoinGroup (11) 0-9,
Heartbeat (12) 0-4, LeaveGroup (13) 0-5, SyncGroup (14) 0-5, DescribeGroups (15) 0-6,
ListGroups (16) 0-5, DeleteGroups (42) 0-2.

The decisions are the coordinator's (strom.coordinator, a pure state machine); these handlers
translate versions and run it through ``ctx.groups`` (server.coordinator_runtime), which
answers NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS for the whole request when the group's
__consumer_offsets partition is missing or still loading.

Per version:
- FindCoordinator v0 looks up groups only; v1+ has key_type (0 group, 1 transaction, 2 share);
  v4+ batches keys (KIP-699). The first group lookup creates __consumer_offsets and the first
  transactional id lookup __transaction_state, as Kafka does; this node coordinates both.
  Share groups (2) are not implemented: INVALID_REQUEST.
- JoinGroup v0 has no rebalance timeout (the session timeout serves), v4+ requires a member id
  (KIP-394: MEMBER_ID_REQUIRED first), v5+ static membership (group.instance.id, KIP-345),
  v7+ returns the protocol type (KIP-559), v8+ carries a reason (KIP-800), v9+ may tell a
  returning static leader to skip the assignment (KIP-814). JoinGroup and SyncGroup responses
  wait (parked) until the rebalance gets there.
- SyncGroup v3+ static membership, v5+ protocol type and name are checked (KIP-559).
- LeaveGroup v0-2 name one member; v3+ a batch, possibly by group.instance.id alone (KIP-345).
- Heartbeat answers NONE while the group's partition loads, as Kafka does.
- DescribeGroups v6 answers GROUP_ID_NOT_FOUND for an unknown group (KIP-1043); before, Dead.
- ListGroups v4+ filters by state (KIP-518), v5+ by type (classic, consumer, share).
Authorization as Kafka's KafkaApis, checked before anything else about the group (its id's
validity included): FindCoordinator needs DESCRIBE on the group or transactional id
(GROUP_ / TRANSACTIONAL_ID_AUTHORIZATION_FAILED); JoinGroup, SyncGroup, Heartbeat and
LeaveGroup READ on the group, DescribeGroups DESCRIBE, DeleteGroups DELETE
(GROUP_AUTHORIZATION_FAILED). ListGroups lists every group to a principal that may DESCRIBE
the cluster, else only the groups it may DESCRIBE.
KIP-848 consumer groups and KIP-932 share groups have their own modules (consumer_groups,
share_groups); a classic member of a consumer group is served here through the same calls.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from typing import Any

from strom.coordinator.consumer_coordinator import TopicImage
from strom.coordinator.coordinator import HeartbeatRequest, JoinRequest, LeaveMember, SyncRequest
from strom.coordinator.member import Protocol
from strom.coordinator.records import OFFSETS_TOPIC, partition_for
from strom.coordinator.shard import CoordinatorError, join_response, sync_response
from strom.coordinator.txn_records import TRANSACTION_STATE_TOPIC
from strom.handlers.auth import allowed, cluster_allowed
from strom.handlers.authorized_operations import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorized_operations,
)
from strom.handlers.context import BrokerContext, GroupOperation, GroupRuntime
from strom.handlers.registry import Request, handles, listener_of
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import HeartbeatResponse
from strom.security.acl import Operation, ResourceType

GROUP_KEY = 0
TRANSACTION_KEY = 1
_ONE_MS = datetime.timedelta(milliseconds=1)


def milliseconds(value: Any) -> int:
    """A kio duration (timedelta) or a plain int, in milliseconds."""
    return value // _ONE_MS if isinstance(value, datetime.timedelta) else int(value)


_versions = itertools.count()
_topics: tuple[object, TopicImage] | None = None


def topic_image(ctx: BrokerContext) -> TopicImage:
    """The topics as the coordinator sees them. A new version only when names, ids or
    partition counts change: a cluster's image is replaced on every ISR or leader change, and
    a new version makes every group recompute its metadata hash and regexes."""
    global _topics
    topics = ctx.image.topics
    if _topics is None or _topics[0] is not topics:
        by_name = {name: (t.topic_id, t.partitions) for name, t in topics.items()}
        image = _topics[1] if _topics is not None and _topics[1].by_name == by_name else TopicImage(
            by_name, {tid: (name, count) for name, (tid, count) in by_name.items()}, next(_versions))
        _topics = (topics, image)
    return _topics[1]


def runtime(ctx: BrokerContext) -> GroupRuntime:
    if ctx.groups is None:
        raise CoordinatorError(ErrorCode.NOT_COORDINATOR, "no group coordinator in this broker")
    return ctx.groups


async def call(ctx: BrokerContext, group_id: str, operation: GroupOperation) -> Any:
    return await runtime(ctx).call(group_id, operation)


def group_allowed(ctx: BrokerContext, request: Request, operation: Operation, group_id: str) -> bool:
    return allowed(ctx, request, operation, ResourceType.GROUP, group_id)


def client_host(request: Request) -> str:
    # Kafka reports the client's InetAddress.toString(): "/127.0.0.1".
    return f"/{request.client_host}" if request.client_host else ""


# --- FindCoordinator --------------------------------------------------------------------------


async def _coordinator_for(ctx: BrokerContext, request: Request, key_type: int, key: str) -> dict[str, Any]:
    result: dict[str, Any] = {"key": key, "node_id": -1, "host": "", "port": -1, "error_code": ErrorCode.NONE, "error_message": None}
    if key_type not in (GROUP_KEY, TRANSACTION_KEY):
        result.update(error_code=ErrorCode.INVALID_REQUEST, error_message=f"unsupported coordinator key type {key_type}")
        return result
    if key_type == GROUP_KEY and not group_allowed(ctx, request, Operation.DESCRIBE, key):
        result["error_code"] = ErrorCode.GROUP_AUTHORIZATION_FAILED
        return result
    if key_type == TRANSACTION_KEY and not allowed(ctx, request, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key):
        result["error_code"] = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return result
    try:
        if key_type == GROUP_KEY:
            await runtime(ctx).ensure_offsets_topic()
        elif ctx.transactions is None:
            raise CoordinatorError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "no transaction coordinator in this broker")
        else:
            await ctx.transactions.ensure_topic()
    except CoordinatorError as exc:
        result.update(error_code=exc.error_code, error_message=str(exc))
        return result
    # The coordinator is the leader of the key's partition of the internal topic.
    topic = OFFSETS_TOPIC if key_type == GROUP_KEY else TRANSACTION_STATE_TOPIC
    metadata = ctx.metadata.topic(topic)
    state = ctx.partition_state(topic, partition_for(key, metadata.partitions)) if metadata is not None else None
    node = ctx.node_by_id(state.leader, listener_of(request)) if state is not None else None
    if node is None:
        result.update(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE, error_message="The coordinator is not available.")
        return result
    result.update(node_id=node.node_id, host=node.host, port=node.port)
    return result


@handles(ApiKey.FIND_COORDINATOR, 0, 6)
async def find_coordinator(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    key_type = getattr(body, "key_type", GROUP_KEY)
    if request.version >= 4:
        return {"throttle_time": 0, "coordinators": [await _coordinator_for(ctx, request, key_type, key) for key in body.coordinator_keys]}
    result = await _coordinator_for(ctx, request, key_type, body.key)
    result.pop("key")
    result["throttle_time"] = 0
    return result


# --- JoinGroup --------------------------------------------------------------------------------


def _join_for_version(response: dict[str, Any], version: int) -> dict[str, Any]:
    if version < 7 and response["protocol_name"] is None:
        response = {**response, "protocol_name": ""}  # nullable only from v7
    return response


@handles(ApiKey.JOIN_GROUP, 0, 9)
async def join_group(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    session_timeout_ms = milliseconds(body.session_timeout)
    join = JoinRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        protocol_type=body.protocol_type,
        protocols=tuple(Protocol(p.name, p.metadata) for p in body.protocols),
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=milliseconds(body.rebalance_timeout) if version >= 1 else session_timeout_ms,
        group_instance_id=getattr(body, "group_instance_id", None),
        client_id=request.header.client_id or "",
        client_host=client_host(request),
        require_known_member_id=version >= 4,
        supports_skip_assignment=version >= 9,
        reason=getattr(body, "reason", None),
    )
    if not group_allowed(ctx, request, Operation.READ, join.group_id):
        return _join_for_version(join_response(ErrorCode.GROUP_AUTHORIZATION_FAILED, join.member_id), version)
    if not join.group_id:
        return _join_for_version(join_response(ErrorCode.INVALID_GROUP_ID, join.member_id), version)
    try:
        response = await call(ctx, join.group_id, lambda c, now, ticket: c.join_group(join, ticket, now, topic_image(ctx)))
    except CoordinatorError as exc:
        response = join_response(exc.error_code, join.member_id)
    return _join_for_version(response, version)


# --- SyncGroup --------------------------------------------------------------------------------


@handles(ApiKey.SYNC_GROUP, 0, 5)
async def sync_group(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    sync = SyncRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        generation_id=body.generation_id,
        group_instance_id=getattr(body, "group_instance_id", None),
        protocol_type=getattr(body, "protocol_type", None),
        protocol_name=getattr(body, "protocol_name", None),
        assignments=tuple((a.member_id, a.assignment) for a in body.assignments),
    )
    if not group_allowed(ctx, request, Operation.READ, sync.group_id):
        return sync_response(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if not sync.group_id:
        return sync_response(ErrorCode.INVALID_GROUP_ID)
    try:
        response: dict[str, Any] = await call(ctx, sync.group_id, lambda c, now, ticket: c.sync_group(sync, ticket, now, topic_image(ctx)))
    except CoordinatorError as exc:
        return sync_response(exc.error_code)
    return response


# --- Heartbeat --------------------------------------------------------------------------------


@handles(ApiKey.HEARTBEAT, 0, 4)
async def heartbeat(ctx: BrokerContext, request: Request) -> HeartbeatResponse:
    body = request.body
    beat = HeartbeatRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        generation_id=body.generation_id,
        group_instance_id=getattr(body, "group_instance_id", None),
    )
    if not group_allowed(ctx, request, Operation.READ, beat.group_id):
        return {"throttle_time": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    if not beat.group_id:
        return {"throttle_time": 0, "error_code": ErrorCode.INVALID_GROUP_ID}
    response: HeartbeatResponse
    try:
        response = await call(ctx, beat.group_id, lambda c, now, _ticket: c.heartbeat(beat, now))
    except CoordinatorError as exc:
        # A loading coordinator does not know the member yet: Kafka lets the heartbeat pass.
        error = ErrorCode.NONE if exc.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS else exc.error_code
        response = {"error_code": error}
    return {"throttle_time": 0, **response}


# --- LeaveGroup -------------------------------------------------------------------------------


@handles(ApiKey.LEAVE_GROUP, 0, 5)
async def leave_group(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    if version >= 3:
        members = [LeaveMember(m.member_id, m.group_instance_id, getattr(m, "reason", None)) for m in body.members]
    else:
        members = [LeaveMember(body.member_id)]
    group_id = body.group_id
    response: dict[str, Any]
    if not group_allowed(ctx, request, Operation.READ, group_id):
        response = {"error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "members": []}
    elif not group_id:
        response = {"error_code": ErrorCode.INVALID_GROUP_ID, "members": []}
    else:
        try:
            response = await call(ctx, group_id, lambda c, now, _ticket: c.leave_group(group_id, members, now))
        except CoordinatorError as exc:
            response = {"error_code": exc.error_code, "members": []}
    if version < 3:
        # One member, one error code: the group's, else the member's.
        error = response["error_code"] or next((m["error_code"] for m in response["members"] if m["error_code"]), 0)
        return {"throttle_time": 0, "error_code": error}
    return {"throttle_time": 0, **response}


# --- ListGroups, DescribeGroups, DeleteGroups -------------------------------------------------


@handles(ApiKey.LIST_GROUPS, 0, 5)
async def list_groups(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    states = tuple(getattr(body, "states_filter", ()) or ())
    types = tuple(getattr(body, "types_filter", ()) or ())
    try:
        error, shards = runtime(ctx).read_all(lambda c: c.list_groups(states, types))
    except CoordinatorError as exc:
        return {"throttle_time": 0, "error_code": exc.error_code, "groups": []}
    groups = [g for shard in shards for g in shard]
    if not cluster_allowed(ctx, request, Operation.DESCRIBE):
        groups = [g for g in groups if group_allowed(ctx, request, Operation.DESCRIBE, g["group_id"])]
    return {"throttle_time": 0, "error_code": error, "groups": groups}


def _describe_one(ctx: BrokerContext, group_id: str, version: int) -> dict[str, Any]:
    if not group_id:
        return {"error_code": ErrorCode.INVALID_GROUP_ID, "group_id": group_id, "group_state": "", "members": []}
    try:
        described = runtime(ctx).read(group_id, lambda c: c.describe_group(group_id))
    except CoordinatorError as exc:
        return {"error_code": exc.error_code, "group_id": group_id, "group_state": "", "members": []}
    if described is None:
        if version >= 6:
            return {
                "error_code": ErrorCode.GROUP_ID_NOT_FOUND,
                "error_message": f"Group {group_id} not found.",
                "group_id": group_id,
                "group_state": "Dead",
                "members": [],
            }
        return {"error_code": ErrorCode.NONE, "group_id": group_id, "group_state": "Dead", "members": []}
    return described


@handles(ApiKey.DESCRIBE_GROUPS, 0, 6)
async def describe_groups(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    groups = []
    requested = request.version >= 3 and request.body.include_authorized_operations
    for group_id in request.body.groups:
        if not group_allowed(ctx, request, Operation.DESCRIBE, group_id):
            described = {"error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "group_id": group_id, "group_state": "", "members": []}
        else:
            described = _describe_one(ctx, group_id, request.version)
        # Kafka reports them only for groups described without an error.
        described["authorized_operations"] = (
            authorized_operations(ctx, request, ResourceType.GROUP, group_id)
            if requested and described["error_code"] == ErrorCode.NONE else AUTHORIZED_OPERATIONS_OMITTED
        )
        groups.append(described)
    return {"throttle_time": 0, "groups": groups}


@handles(ApiKey.DELETE_GROUPS, 0, 2)
async def delete_groups(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    results = []
    for group_id in request.body.groups_names:
        if not group_allowed(ctx, request, Operation.DELETE, group_id):
            results.append({"group_id": group_id, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED})
            continue
        if not group_id:
            results.append({"group_id": group_id, "error_code": ErrorCode.INVALID_GROUP_ID})
            continue
        operation: Callable[..., Any] = lambda c, now, _ticket, g=group_id: c.delete_groups([g], now)  # noqa: E731
        try:
            results.extend(await call(ctx, group_id, operation))
        except CoordinatorError as exc:
            results.append({"group_id": group_id, "error_code": exc.error_code})
    return {"throttle_time": 0, "results": results}
