"""Metadata (key 3), versions 0-13.

Topics are looked up by name, or by topic id (v10+). A null topic list means every topic; an
empty list means none (v1+). Unknown topics are created when both the request
(allow_auto_topic_creation, v4+; always true before) and the broker
(auto.create.topics.enable) allow it, with num.partitions and the broker's default configs;
the first answer already has the partitions (the store returns once the topic is in the
image). Partitions are described from the metadata image: leader, leader epoch, replicas, ISR,
and offline replicas (assigned to brokers that are not registered); a partition without a
leader is LEADER_NOT_AVAILABLE.
Internal topics (__consumer_offsets, __transaction_state) are in "every topic" answers with
is_internal=true, as in Kafka (admin tools list them; Java consumers' pattern subscriptions skip
them by that flag, exclude.internal.topics); they are never auto-created (nor is any "__"
name), and clients cannot produce to them (handlers.produce).
Authorization as Kafka's: "every topic" lists only the topics the principal may DESCRIBE; a
named topic it may not describe is TOPIC_AUTHORIZATION_FAILED whether it exists or not (asked
by id: the id is answered, not the name), and auto-creation needs CREATE on the cluster or the
topic (else TOPIC_AUTHORIZATION_FAILED).
Authorized operations (KIP-430, v8+) come from handlers.authorized_operations; as in Kafka,
an unknown topic id or a refused topic gets none.
"""

from __future__ import annotations

import uuid

from strom.handlers.auth import allowed, cluster_allowed
from strom.handlers.authorized_operations import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorized_operations,
    cluster_authorized_operations,
)
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles, listener_of
from strom.metadata.configs import ConfigError
from strom.metadata.store import TopicMetadata, validate_topic_name
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    MetadataResponse,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from strom.security.acl import Operation, ResourceType

ZERO_UUID = uuid.UUID(int=0)


def topic_entry(ctx: BrokerContext, topic: TopicMetadata) -> MetadataResponseTopic:
    image = ctx.image
    partitions: list[MetadataResponsePartition] = []
    for p in range(topic.partitions):
        state = image.partition(topic.name, p)
        if state is None:
            continue
        leader = state.leader if image.live(state.leader) else -1
        partitions.append(
            {
                "error_code": ErrorCode.NONE if leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                "partition_index": p,
                "leader_id": leader,
                "leader_epoch": state.leader_epoch,
                "replica_nodes": list(state.replicas),
                "isr_nodes": list(state.isr),
                "offline_replicas": [r for r in state.replicas if not image.live(r)],
            }
        )
    return {
        "error_code": ErrorCode.NONE,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.internal,
        "partitions": partitions,
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _error_entry(name: str | None, topic_id: uuid.UUID, error: int) -> MetadataResponseTopic:
    return {
        "error_code": error,
        "name": name,
        "topic_id": topic_id,
        "partitions": [],
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _topic_by_id(ctx: BrokerContext, topic_id: uuid.UUID) -> TopicMetadata | None:
    return ctx.image.topic_by_id(topic_id)


async def auto_create(ctx: BrokerContext, name: str) -> int:
    """Create a topic with the broker's defaults; returns an error code. Names starting with
    "__" are reserved for internal topics, which their coordinators create with their own
    settings (__consumer_offsets on the first FindCoordinator), so they are never auto-created."""
    if name.startswith("__"):
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    try:
        validate_topic_name(name)
    except ConfigError as exc:
        return exc.error_code
    try:
        await ctx.create_topic(name, ctx.config.num_partitions, {})
    except ConfigError as exc:
        # Another broker created it first (fine), or too few brokers for the replication factor.
        return ErrorCode.NONE if exc.error_code == ErrorCode.TOPIC_ALREADY_EXISTS else exc.error_code
    return ErrorCode.NONE


def _may_create(ctx: BrokerContext, request: Request, name: str) -> bool:
    return cluster_allowed(ctx, request, Operation.CREATE) or allowed(ctx, request, Operation.CREATE, ResourceType.TOPIC, name)


@handles(ApiKey.METADATA, 0, 13)
async def metadata(ctx: BrokerContext, request: Request) -> MetadataResponse:
    body = request.body
    allow_create = ctx.config.auto_create_topics_enable and (
        request.version < 4 or body.allow_auto_topic_creation
    )
    topics: list[MetadataResponseTopic] = []
    described: list[MetadataResponseTopic] = []  # the entries Kafka reports authorized operations for
    if body.topics is None or (request.version == 0 and not body.topics):
        described = topics = [topic_entry(ctx, t) for t in ctx.metadata.topics().values()
                              if allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, t.name)]
    else:
        for wanted in body.topics:
            name = wanted.name
            topic_id = getattr(wanted, "topic_id", None) or ZERO_UUID
            if name is None:
                topic = _topic_by_id(ctx, topic_id)
                if topic is None:
                    topics.append(_error_entry(None, topic_id, ErrorCode.UNKNOWN_TOPIC_ID))
                    continue
                if not allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, topic.name):
                    # Topic ids are not secret (Kafka): the refusal names the id, never the topic.
                    topics.append(_error_entry(None, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                    continue
            else:
                # Authorization before existence: a refused name tells nothing about the topic.
                if not allowed(ctx, request, Operation.DESCRIBE, ResourceType.TOPIC, name):
                    topics.append(_error_entry(name, ZERO_UUID, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                    continue
                topic = ctx.metadata.topic(name)
                if topic is None:
                    if allow_create and not _may_create(ctx, request, name):
                        topics.append(_error_entry(name, ZERO_UUID, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                        continue
                    error = await auto_create(ctx, name) if allow_create else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    topic = ctx.metadata.topic(name) if error == ErrorCode.NONE else None
                    if topic is None:
                        entry = _error_entry(name, ZERO_UUID, error)
                        topics.append(entry)
                        described.append(entry)
                        continue
            entry = topic_entry(ctx, topic)
            topics.append(entry)
            described.append(entry)
    if request.version >= 8 and body.include_topic_authorized_operations:
        for entry in described:
            name = entry["name"]
            assert name is not None  # described entries are asked for by name, or listed
            entry["topic_authorized_operations"] = authorized_operations(ctx, request, ResourceType.TOPIC, name)
    return {
        "throttle_time": 0,
        "brokers": [{"node_id": n.node_id, "host": n.host, "port": n.port, "rack": n.rack} for n in ctx.nodes(listener_of(request))],
        "cluster_id": ctx.cluster_id,
        "controller_id": ctx.image.controller_id,
        "topics": topics,
        "cluster_authorized_operations": cluster_authorized_operations(
            ctx, request, 8 <= request.version <= 10 and body.include_cluster_authorized_operations
        ),
    }
