"""KIP-932 share groups: ShareGroupHeartbeat and ShareGroupDescribe (the group coordinator:
coordinator.share_groups), ShareFetch and ShareAcknowledge (the partition leaders:
server.share_manager), and the share-group offsets admin APIs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from strom.coordinator.consumer_coordinator import heartbeat_error
from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.shard import CoordinatorError
from strom.coordinator.share_groups import MAX_MEMBER_ID_LENGTH, ShareHeartbeat
from strom.handlers.auth import allowed
from strom.handlers.consumer_groups import describe_groups_of_a_type
from strom.handlers.context import BrokerContext
from strom.handlers.groups import (
    call,
    client_host,
    group_allowed,
    milliseconds,
    runtime,
    topic_image,
)
from strom.handlers.leader_hints import FETCH_ERRORS, LeaderHints
from strom.handlers.registry import Request, handles
from strom.metadata.group_configs import effective_int
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import Operation, ResourceType
from strom.server.share_manager import FINAL_EPOCH, ShareError, SharePartitionManager
from strom.share.persister import SharePersisterError
from strom.share.records import ShareSnapshotValue

TopicPartition = tuple[uuid.UUID, int]


def _manager(ctx: BrokerContext) -> SharePartitionManager:
    manager = ctx.shares
    if manager is None:
        raise ShareError(ErrorCode.UNSUPPORTED_VERSION, "Share groups are not served by this broker.")
    assert isinstance(manager, SharePartitionManager)
    return manager


# --- ShareGroupHeartbeat / ShareGroupDescribe ------------------------------------------------------


@handles(ApiKey.SHARE_GROUP_HEARTBEAT, 1, 1)
async def share_group_heartbeat(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    if not group_allowed(ctx, request, Operation.READ, body.group_id):
        return heartbeat_error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    names = body.subscribed_topic_names
    if names and not all(allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, n) for n in names):
        return heartbeat_error(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    heartbeat = ShareHeartbeat(
        body.group_id, body.member_id, body.member_epoch, body.rack_id, None if names is None else tuple(names),
        request.header.client_id or "", client_host(request),
        session_timeout_ms=effective_int(ctx.image, ctx.config, body.group_id, "share.session.timeout.ms"),
        heartbeat_interval_ms=effective_int(ctx.image, ctx.config, body.group_id, "share.heartbeat.interval.ms"))
    topics = topic_image(ctx)
    try:
        response: dict[str, Any] = await call(ctx, body.group_id, lambda c, now, _t: c.share_heartbeat(heartbeat, topics, now))
    except CoordinatorError as exc:
        return heartbeat_error(exc.error_code)
    return response


@handles(ApiKey.SHARE_GROUP_DESCRIBE, 1, 1)
async def share_group_describe(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return describe_groups_of_a_type(ctx, request, lambda c, group_id, topics: c.describe_share_group(group_id, topics),
                                     ("assignment",))


# --- ShareFetch / ShareAcknowledge ----------------------------------------------------------------


def _merged(topics: Any) -> tuple[list[TopicPartition], dict[TopicPartition, list[tuple[int, int, tuple[int, ...]]]]]:
    """The partitions of a request in order, and their acknowledgement batches: librdkafka may
    name a partition twice in one request (once to add it, once with acks), so entries merge."""
    order: list[TopicPartition] = []
    acks: dict[TopicPartition, list[tuple[int, int, tuple[int, ...]]]] = {}
    for topic in topics:
        for p in topic.partitions:
            key = (topic.topic_id, p.partition_index)
            if key not in acks:
                order.append(key)
                acks[key] = []
            acks[key].extend((b.first_offset, b.last_offset, tuple(b.acknowledge_types)) for b in p.acknowledgement_batches)
    for batches in acks.values():
        batches.sort()
    return order, acks


def _topic_error(ctx: BrokerContext, request: Request, topic_id: uuid.UUID) -> int:
    name = ctx.topic_name(topic_id)
    if name is None:
        return ErrorCode.UNKNOWN_TOPIC_ID
    if not allowed(ctx, request, Operation.READ, ResourceType.TOPIC, name):
        return ErrorCode.TOPIC_AUTHORIZATION_FAILED
    return ErrorCode.NONE


def _share_request_error(ctx: BrokerContext, request: Request) -> tuple[int, str | None]:
    body = request.body
    if not body.member_id or len(body.member_id) > MAX_MEMBER_ID_LENGTH:
        return ErrorCode.INVALID_REQUEST, "Invalid member id in the request."
    if not body.group_id:
        return ErrorCode.INVALID_REQUEST, "GroupId can't be empty."
    if not group_allowed(ctx, request, Operation.READ, body.group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, None
    return ErrorCode.NONE, None


@handles(ApiKey.SHARE_FETCH, 1, 1)
async def share_fetch(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None,
                                "acquisition_lock_timeout": 0, "responses": [], "node_endpoints": []}
    error, message = _share_request_error(ctx, request)
    order, acks = _merged(body.topics)
    epoch = body.share_session_epoch
    if not error and epoch == 0 and any(acks.values()):
        error, message = ErrorCode.INVALID_REQUEST, "Acknowledgements are not allowed in a new share session."
    if error:
        return {**response, "error_code": error, "error_message": message}
    try:
        manager = _manager(ctx)
        forgotten = [(t.topic_id, p) for t in body.forgotten_topics_data for p in t.partitions]
        session = manager.open_session(body.group_id, body.member_id, epoch, request.session, order, forgotten)
    except ShareError as exc:
        return {**response, "error_code": exc.error, "error_message": exc.message}
    group, member = body.group_id, body.member_id
    errors = {tp: _topic_error(ctx, request, tp[0]) for tp in set(order) | session.partitions}
    ack_results = {tp: errors[tp] or await manager.acknowledge(group, member, tp[0], tp[1], batches)
                   for tp, batches in acks.items() if batches}
    fetched: dict[TopicPartition, Any] = {}
    if epoch == FINAL_EPOCH:
        await manager.close_session(session)
    else:
        wanted = [tp for tp in (order if epoch == 0 else sorted(session.partitions)) if not errors[tp]]
        if wanted:  # MaxRecords is shared: start at another partition each time, so none starves
            turn = session.next_epoch % len(wanted)
            wanted = wanted[turn:] + wanted[:turn]
        fetched = await manager.fetch(group, member, wanted, milliseconds(body.max_wait), body.min_bytes,
                                      body.max_bytes, body.max_records, body.batch_size)
    shown = [tp for tp in dict.fromkeys([*order, *sorted(session.partitions)])
             if epoch == 0 or tp in session.new or errors[tp] or tp in ack_results
             or (tp in fetched and (fetched[tp][1] or fetched[tp][2]))]
    session.new.difference_update(shown)
    by_topic: dict[uuid.UUID, list[dict[str, Any]]] = {}
    hints = LeaderHints(ctx, request)
    for tp in shown:
        data, acquired, fetch_error = fetched.get(tp, (b"", [], ErrorCode.NONE))
        error = errors[tp] or fetch_error
        by_topic.setdefault(tp[0], []).append({
            "partition_index": tp[1], "error_code": error, "error_message": None,
            "acknowledge_error_code": ack_results.get(tp, ErrorCode.NONE), "acknowledge_error_message": None,
            "current_leader": _current_leader(ctx, hints, tp, error), "records": data,
            "acquired_records": [{"first_offset": a.first_offset, "last_offset": a.last_offset,
                                  "delivery_count": a.delivery_count} for a in acquired],
        })
    response["responses"] = [{"topic_id": t, "partitions": ps} for t, ps in by_topic.items()]
    response["acquisition_lock_timeout"] = manager.lock_duration_ms(group)
    response["node_endpoints"] = hints.node_endpoints
    return response


def _current_leader(ctx: BrokerContext, hints: LeaderHints, tp: TopicPartition, error: int) -> dict[str, int]:
    """KIP-951 for the share RPCs: the leader after NOT_LEADER_OR_FOLLOWER or
    FENCED_LEADER_EPOCH; otherwise the field's schema defaults (0, 0), as Kafka leaves it."""
    if error in FETCH_ERRORS:
        return hints.leader_field(ctx.topic_name(tp[0]), tp[1])
    return {"leader_id": 0, "leader_epoch": 0}


@handles(ApiKey.SHARE_ACKNOWLEDGE, 1, 1)
async def share_acknowledge(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None,
                                "responses": [], "node_endpoints": []}
    error, message = _share_request_error(ctx, request)
    if not error and body.share_session_epoch == 0:
        error, message = ErrorCode.INVALID_SHARE_SESSION_EPOCH, "A share session cannot start with ShareAcknowledge."
    if error:
        return {**response, "error_code": error, "error_message": message}
    order, acks = _merged(body.topics)
    try:
        manager = _manager(ctx)
        session = manager.open_session(body.group_id, body.member_id, body.share_session_epoch, request.session, (), ())
    except ShareError as exc:
        return {**response, "error_code": exc.error, "error_message": exc.message}
    by_topic: dict[uuid.UUID, list[dict[str, Any]]] = {}
    hints = LeaderHints(ctx, request)
    for tp in order:
        result = _topic_error(ctx, request, tp[0]) or await manager.acknowledge(
            body.group_id, body.member_id, tp[0], tp[1], acks[tp])
        by_topic.setdefault(tp[0], []).append({"partition_index": tp[1], "error_code": result, "error_message": None,
                                               "current_leader": _current_leader(ctx, hints, tp, result)})
    if body.share_session_epoch == FINAL_EPOCH:
        await manager.close_session(session)
    response["responses"] = [{"topic_id": t, "partitions": ps} for t, ps in by_topic.items()]
    response["node_endpoints"] = hints.node_endpoints
    return response


# --- the offsets admin APIs -----------------------------------------------------------------------


async def _group_is_empty(ctx: BrokerContext, group_id: str) -> int:
    """NONE when the group has no member (or is not there yet), else NON_EMPTY_GROUP, or
    GROUP_ID_NOT_FOUND for a group of another type."""
    def state(c: GroupCoordinator) -> int:
        if group_id in c.groups or group_id in c.consumer_groups:
            return ErrorCode.GROUP_ID_NOT_FOUND
        group = c.share_groups.get(group_id)
        return ErrorCode.NON_EMPTY_GROUP if group is not None and group.members else ErrorCode.NONE

    return runtime(ctx).read(group_id, state)


def _initialized(group_id: str) -> Callable[[GroupCoordinator], list[tuple[str, list[int]]]]:
    """The partitions the group has read (Kafka: its initialized share partitions)."""
    def read(c: GroupCoordinator) -> list[tuple[str, list[int]]]:
        group = c.share_groups.get(group_id)
        return [] if group is None else sorted((name, sorted(parts)) for name, parts in group.initialized.values())

    return read


def _forget(group_id: str, topic_ids: set[uuid.UUID]) -> Callable[[GroupCoordinator, int, int], Any]:
    return lambda c, now, _ticket: c.share_forget_topics(group_id, topic_ids, now)


def _end_offset(ctx: BrokerContext, topic: str, partition: int) -> int | None:
    log_ = ctx.partition_log(topic, partition)
    return None if log_ is None else log_.high_watermark


@handles(ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, 0, 1)
async def describe_share_group_offsets(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    groups = []
    for group in request.body.groups:
        try:
            groups.append(await _describe_offsets(ctx, request, group))
        except (CoordinatorError, SharePersisterError) as exc:
            groups.append({"group_id": group.group_id, "topics": [], "error_code": exc.error_code, "error_message": str(exc)})
    return {"throttle_time": 0, "groups": groups}


async def _describe_offsets(ctx: BrokerContext, request: Request, group: Any) -> dict[str, Any]:
    if not group_allowed(ctx, request, Operation.DESCRIBE, group.group_id):
        return {"group_id": group.group_id, "topics": [], "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED,
                "error_message": None}
    persister = ctx.share_persister
    requested: list[tuple[str, list[int]]]
    if group.topics is None:  # every partition the group has read (and the caller may describe)
        requested = [(name, parts) for name, parts in runtime(ctx).read(group.group_id, _initialized(group.group_id))
                     if allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, name)]
    else:
        requested = [(t.topic_name, list(t.partitions)) for t in group.topics]
    topics = []
    for name, partitions in requested:
        metadata = ctx.image.topics.get(name)
        denied = not allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, name)
        described = []
        for p in partitions:
            start, lag, epoch = -1, -1, 0
            if metadata is not None and persister is not None and not denied:
                stored = await persister.read(group.group_id, metadata.topic_id, p)
                end = _end_offset(ctx, name, p)
                if stored is not None:
                    start, epoch = stored.start_offset, max(stored.leader_epoch, 0)
                    if end is not None:  # Kafka's share lag: end - start - records already done with
                        done = sum(b.last_offset - max(b.first_offset, start) + 1 for b in stored.state_batches
                                   if b.delivery_state in (2, 4) and b.last_offset >= start)
                        lag = max(end - start - done, 0)
            described.append({"partition_index": p, "start_offset": start, "leader_epoch": epoch, "lag": lag,
                              "error_code": ErrorCode.TOPIC_AUTHORIZATION_FAILED if denied else ErrorCode.NONE,
                              "error_message": None})
        topics.append({"topic_name": name, "topic_id": metadata.topic_id if metadata and not denied else uuid.UUID(int=0),
                       "partitions": described})
    return {"group_id": group.group_id, "topics": topics, "error_code": ErrorCode.NONE, "error_message": None}


@handles(ApiKey.ALTER_SHARE_GROUP_OFFSETS, 0, 0)
async def alter_share_group_offsets(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "responses": []}
    if not body.group_id:
        return {**response, "error_code": ErrorCode.INVALID_GROUP_ID}
    if not group_allowed(ctx, request, Operation.READ, body.group_id):
        return {**response, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    try:
        error = await _group_is_empty(ctx, body.group_id)
    except CoordinatorError as exc:
        error = exc.error_code
    persister = ctx.share_persister
    if error or persister is None:
        return {**response, "error_code": error or ErrorCode.COORDINATOR_NOT_AVAILABLE}
    now = int(time.time() * 1000)
    for topic in body.topics:
        metadata = ctx.image.topics.get(topic.topic_name)
        results = []
        for p in topic.partitions:
            result: int
            if metadata is None or not 0 <= p.partition_index < metadata.partitions:
                result = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif not allowed(ctx, request, Operation.READ, ResourceType.TOPIC, topic.topic_name):
                result = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            else:
                try:
                    stored = await persister.read(body.group_id, metadata.topic_id, p.partition_index)
                except SharePersisterError as exc:
                    results.append({"partition_index": p.partition_index, "error_code": exc.error_code, "error_message": None})
                    continue
                # a new state epoch: a leader holding the old state is fenced and loads this one
                value = ShareSnapshotValue(
                    snapshot_epoch=0,  # the coordinator numbers the snapshots
                    state_epoch=0 if stored is None else stored.state_epoch + 1,
                    leader_epoch=-1 if stored is None else stored.leader_epoch, start_offset=p.start_offset,
                    create_timestamp=now, write_timestamp=now, state_batches=(), delivery_complete_count=0)
                result = await persister.write(body.group_id, metadata.topic_id, p.partition_index, value)
            results.append({"partition_index": p.partition_index, "error_code": result, "error_message": None})
        response["responses"].append({"topic_name": topic.topic_name,
                                      "topic_id": metadata.topic_id if metadata else uuid.UUID(int=0), "partitions": results})
    if ctx.shares is not None:
        _manager(ctx).forget_group(body.group_id)
    return response


@handles(ApiKey.DELETE_SHARE_GROUP_OFFSETS, 0, 0)
async def delete_share_group_offsets(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "responses": []}
    if not group_allowed(ctx, request, Operation.DELETE, body.group_id):
        return {**response, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    try:
        exists = runtime(ctx).read(body.group_id, lambda c: body.group_id in c.share_groups)
        error = await _group_is_empty(ctx, body.group_id) if exists else ErrorCode.GROUP_ID_NOT_FOUND
    except CoordinatorError as exc:
        error = exc.error_code
    persister = ctx.share_persister
    if error or persister is None:
        return {**response, "error_code": error or ErrorCode.COORDINATOR_NOT_AVAILABLE}
    for topic in body.topics:
        metadata = ctx.image.topics.get(topic.topic_name)
        result: int = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if metadata is not None and not allowed(ctx, request, Operation.READ, ResourceType.TOPIC, topic.topic_name):
            result = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        elif metadata is not None:
            try:
                for p in range(metadata.partitions):
                    if await persister.read(body.group_id, metadata.topic_id, p) is not None:
                        result = await persister.delete(body.group_id, metadata.topic_id, p)
            except SharePersisterError as exc:
                result = exc.error_code
        if result == ErrorCode.NONE and metadata is not None:
            try:
                await call(ctx, body.group_id, _forget(body.group_id, {metadata.topic_id}))
            except CoordinatorError as exc:
                result = exc.error_code
        response["responses"].append({
            "topic_name": topic.topic_name, "topic_id": metadata.topic_id if metadata else uuid.UUID(int=0),
            "error_code": result,
            "error_message": "There is no offset information to delete." if result == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION else None})
    if ctx.shares is not None:
        _manager(ctx).forget_group(body.group_id)
    return response
