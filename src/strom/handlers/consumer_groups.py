"""KIP-848's consumer group protocol: ConsumerGroupHeartbeat and ConsumerGroupDescribe (the
coordinator's side is coordinator.consumer_coordinator)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strom.coordinator.consumer_coordinator import ConsumerHeartbeat, TopicImage, heartbeat_error
from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.shard import CoordinatorError
from strom.handlers.auth import allowed
from strom.handlers.authorized_operations import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorized_operations,
)
from strom.handlers.context import BrokerContext
from strom.handlers.groups import (
    call,
    client_host,
    group_allowed,
    milliseconds,
    runtime,
    topic_image,
)
from strom.handlers.registry import Request, handles
from strom.metadata.group_configs import effective_int
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import Operation, ResourceType


@handles(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1)
async def consumer_group_heartbeat(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    protocols = ctx.config.values.get("group.coordinator.rebalance.protocols", "classic,consumer")
    if "consumer" not in {p.strip().lower() for p in protocols.split(",")}:
        return heartbeat_error(ErrorCode.UNSUPPORTED_VERSION, "The consumer group protocol is not enabled "
                               "(group.coordinator.rebalance.protocols).")
    if not group_allowed(ctx, request, Operation.READ, body.group_id):
        return heartbeat_error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    names = body.subscribed_topic_names
    if names and not all(allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, n) for n in names):
        return heartbeat_error(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    heartbeat = ConsumerHeartbeat(
        group_id=body.group_id, member_id=body.member_id, member_epoch=body.member_epoch,
        instance_id=body.instance_id, rack_id=body.rack_id, rebalance_timeout_ms=milliseconds(body.rebalance_timeout),
        subscribed_topic_names=None if names is None else tuple(names),
        subscribed_topic_regex=getattr(body, "subscribed_topic_regex", None), server_assignor=body.server_assignor,
        topic_partitions=None if body.topic_partitions is None else tuple(
            (tp.topic_id, tuple(tp.partitions)) for tp in body.topic_partitions if tp.topic_id is not None),
        client_id=request.header.client_id or "", client_host=client_host(request), api_version=request.version,
        session_timeout_ms=effective_int(ctx.image, ctx.config, body.group_id, "consumer.session.timeout.ms"),
        heartbeat_interval_ms=effective_int(ctx.image, ctx.config, body.group_id, "consumer.heartbeat.interval.ms"))
    topics = topic_image(ctx)

    def describable(topic: str) -> bool:
        return allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, topic)

    try:
        response: dict[str, Any] = await call(
            ctx, body.group_id, lambda c, now, _ticket: c.consumer_heartbeat(heartbeat, topics, describable, now))
    except CoordinatorError as exc:
        return heartbeat_error(exc.error_code)
    return response


@handles(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 1)
async def consumer_group_describe(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    return describe_groups_of_a_type(ctx, request, lambda c, group_id, topics: c.describe_consumer_group(group_id, topics),
                                     ("assignment", "target_assignment"))


def describe_groups_of_a_type(ctx: BrokerContext, request: Request,
                              describe: Callable[[GroupCoordinator, str, TopicImage], dict[str, Any]],
                              assignments: tuple[str, ...]) -> dict[str, Any]:
    """ConsumerGroupDescribe and ShareGroupDescribe: each group as its coordinator describes it,
    with Kafka's checks: DESCRIBE on the group, and on every topic of its members' ``assignments``
    (TOPIC_AUTHORIZATION_FAILED and no members otherwise)."""
    topics = topic_image(ctx)
    groups = []
    for group_id in request.body.group_ids:
        described: dict[str, Any]
        if not group_id:
            described = _failed(ErrorCode.INVALID_GROUP_ID, "")
        elif not group_allowed(ctx, request, Operation.DESCRIBE, group_id):
            described = _failed(ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id)
        else:
            try:
                described = runtime(ctx).read(group_id, lambda c, g=group_id: describe(c, g, topics))  # type: ignore[misc]
            except CoordinatorError as exc:
                described = _failed(exc.error_code, group_id)
        if described["error_code"] == ErrorCode.NONE and ctx.authorizer is not None and not all(
                allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, tp["topic_name"])
                for m in described["members"] for a in assignments for tp in m[a]["topic_partitions"]):
            described = _failed(ErrorCode.TOPIC_AUTHORIZATION_FAILED, group_id)
        described["authorized_operations"] = (
            authorized_operations(ctx, request, ResourceType.GROUP, group_id)
            if request.body.include_authorized_operations and described["error_code"] == ErrorCode.NONE
            else AUTHORIZED_OPERATIONS_OMITTED)
        groups.append(described)
    return {"throttle_time": 0, "groups": groups}


def _failed(error: int, group_id: str) -> dict[str, Any]:
    return {"error_code": error, "error_message": None, "group_id": group_id, "group_state": "", "group_epoch": 0,
            "assignment_epoch": 0, "assignor_name": "", "members": []}
