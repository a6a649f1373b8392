"""CreateTopics (key 19) 2-7, DeleteTopics (key 20) 1-6, CreatePartitions (key 37) 0-3.

Replicas are placed over the live brokers by Kafka's rack-aware round robin
(strom.cluster.placement); the replication factor (-1: default.replication.factor) may not
exceed the live brokers, and manual assignments may name only live brokers. Any broker
takes these requests: the metadata store (etcd in a cluster) decides, and the call returns once
the change is in this broker's image. Errors follow Kafka: TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS,
INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG, INVALID_REQUEST for a
topic named twice in one request. validate_only checks everything and changes nothing.
v5+ answers with the new topic's partitions, replication factor and configs; v7 with its id.
"""

from __future__ import annotations

from typing import Any

from strom.handlers.auth import allowed, cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata.configs import ConfigError, describe_topic_configs, validate_topic_config
from strom.metadata.store import validate_topic_name
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
    CreateTopicsResponse,
    CreateTopicsResponseCreatableTopicResult,
    DeleteTopicsResponse,
    DeleteTopicsResponseDeletableTopicResult,
)
from strom.security.acl import Operation, ResourceType


class TopicError(Exception):
    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


def _check_replicas(ctx: BrokerContext, replication_factor: int, assignments: list[list[int]]) -> int:
    """Validate; returns the effective replication factor."""
    nodes = {n.node_id for n in ctx.nodes()}
    if replication_factor == -1:
        replication_factor = ctx.config.default_replication_factor
    if replication_factor <= 0:
        raise TopicError(ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0.")
    if replication_factor > len(nodes):
        raise TopicError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Unable to replicate the partition {replication_factor} time(s): The target "
            f"replication factor of {replication_factor} cannot be reached because only "
            f"{len(nodes)} broker(s) are registered.",
        )
    for replicas in assignments:
        if not replicas or len(set(replicas)) != len(replicas) or not set(replicas) <= nodes:
            raise TopicError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"Invalid replica assignment {replicas}.")
    return replication_factor


def _validate_configs(entries: Any) -> dict[str, str]:
    configs: dict[str, str] = {}
    for entry in entries:
        try:
            configs[entry.name] = validate_topic_config(entry.name, entry.value)
        except ConfigError as exc:
            raise TopicError(exc.error_code, str(exc)) from None
    return configs


async def _create_one(ctx: BrokerContext, topic: Any, validate_only: bool) -> CreateTopicsResponseCreatableTopicResult:
    result: CreateTopicsResponseCreatableTopicResult = {"name": topic.name, "error_code": ErrorCode.NONE, "num_partitions": -1, "replication_factor": -1}
    try:
        try:
            validate_topic_name(topic.name)
        except ConfigError as exc:
            raise TopicError(exc.error_code, str(exc)) from None
        if ctx.metadata.topic(topic.name) is not None:
            raise TopicError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{topic.name}' already exists.")
        assignments = [list(a.broker_ids) for a in sorted(topic.assignments, key=lambda a: a.partition_index)]
        if assignments:
            if topic.num_partitions != -1 or topic.replication_factor != -1:
                raise TopicError(
                    ErrorCode.INVALID_REQUEST,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                )
            if [a.partition_index for a in sorted(topic.assignments, key=lambda a: a.partition_index)] != list(range(len(assignments))):
                raise TopicError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Partitions should be a consecutive 0-based integer sequence.")
            partitions, replication_factor = len(assignments), len(assignments[0])
        else:
            partitions = ctx.config.num_partitions if topic.num_partitions == -1 else topic.num_partitions
            replication_factor = topic.replication_factor
        if partitions <= 0:
            raise TopicError(ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        replication_factor = _check_replicas(ctx, replication_factor, assignments)
        configs = _validate_configs(topic.configs)
        if not validate_only:
            created = await ctx.create_topic(
                topic.name, partitions, configs, replication_factor=replication_factor, assignments=assignments or None
            )
            result["topic_id"] = created.topic_id
    except (ConfigError, TopicError) as exc:
        result.update({"error_code": exc.error_code, "error_message": str(exc)})
        return result
    result.update({
        "num_partitions": partitions,
        "replication_factor": replication_factor,
        "configs": [
            {
                "name": e.name,
                "value": e.value,
                "read_only": e.read_only,
                "config_source": e.source,
                "is_sensitive": e.is_sensitive,
            }
            for e in describe_topic_configs(configs, ctx.config, ctx.metadata.broker_configs())
        ],
    })
    return result


@handles(ApiKey.CREATE_TOPICS, 2, 7)
async def create_topics(ctx: BrokerContext, request: Request) -> CreateTopicsResponse:
    body = request.body
    names = [t.name for t in body.topics]
    results: list[CreateTopicsResponseCreatableTopicResult] = []
    cluster_create = cluster_allowed(ctx, request, Operation.CREATE)
    for topic in body.topics:
        if not cluster_create and not allowed(ctx, request, Operation.CREATE, ResourceType.TOPIC, topic.name):
            results.append({"name": topic.name, "error_code": ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                            "error_message": "Authorization failed."})
        elif names.count(topic.name) > 1:
            results.append(
                {"name": topic.name, "error_code": ErrorCode.INVALID_REQUEST,
                 "error_message": f"Create topics request from client contains a duplicate topic {topic.name}."}
            )
        else:
            results.append(await _create_one(ctx, topic, body.validate_only))
    return {"throttle_time": 0, "topics": results}


@handles(ApiKey.DELETE_TOPICS, 1, 6)
async def delete_topics(ctx: BrokerContext, request: Request) -> DeleteTopicsResponse:
    body = request.body
    wanted: list[tuple[str | None, Any]] = (
        [(t.name, t.topic_id) for t in body.topics] if request.version >= 6 else [(n, None) for n in body.topic_names]
    )
    responses: list[DeleteTopicsResponseDeletableTopicResult] = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            name = ctx.topic_name(topic_id)
            if name is None:
                responses.append({"name": None, "topic_id": topic_id, "error_code": ErrorCode.UNKNOWN_TOPIC_ID})
                continue
        if name is not None and not allowed(ctx, request, Operation.DELETE, ResourceType.TOPIC, name):
            responses.append({"name": name, "topic_id": topic_id, "error_code": ErrorCode.TOPIC_AUTHORIZATION_FAILED})
            continue
        topic = ctx.metadata.topic(name) if name is not None else None
        if topic is None:
            responses.append({"name": name, "topic_id": topic_id, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION})
            continue
        if not ctx.config.delete_topic_enable:
            responses.append({"name": name, "topic_id": topic.topic_id, "error_code": ErrorCode.TOPIC_DELETION_DISABLED})
            continue
        assert name is not None  # the topic was found by it
        try:
            await ctx.metadata.delete_topic(name)
        except ConfigError as exc:
            responses.append({"name": name, "topic_id": topic.topic_id, "error_code": exc.error_code, "error_message": str(exc)})
            continue
        responses.append({"name": name, "topic_id": topic.topic_id, "error_code": ErrorCode.NONE})
    return {"throttle_time": 0, "responses": responses}


@handles(ApiKey.CREATE_PARTITIONS, 0, 3)
async def create_partitions(ctx: BrokerContext, request: Request) -> CreatePartitionsResponse:
    body = request.body
    results: list[CreatePartitionsTopicResult] = []
    for topic in body.topics:
        result: CreatePartitionsTopicResult = {"name": topic.name, "error_code": ErrorCode.NONE, "error_message": None}
        current = ctx.metadata.topic(topic.name)
        try:
            if not allowed(ctx, request, Operation.ALTER, ResourceType.TOPIC, topic.name):
                raise TopicError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
            if current is None:
                raise TopicError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{topic.name}' does not exist.")
            if topic.count <= current.partitions:
                raise TopicError(
                    ErrorCode.INVALID_PARTITIONS,
                    f"Topic currently has {current.partitions} partitions, which is higher than the requested {topic.count}."
                    if topic.count < current.partitions
                    else f"Topic already has {current.partitions} partitions.",
                )
            assignments = [list(a.broker_ids) for a in topic.assignments or ()]
            if assignments and len(assignments) != topic.count - current.partitions:
                raise TopicError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Increasing the number of partitions by {topic.count - current.partitions} but "
                    f"{len(assignments)} assignments provided.",
                )
            state = ctx.image.partition(topic.name, 0)
            _check_replicas(ctx, len(state.replicas) if state is not None else 1, assignments)
            if not body.validate_only:
                await ctx.add_partitions(topic.name, topic.count, assignments or None)
        except (TopicError, ConfigError) as exc:
            result.update({"error_code": exc.error_code, "error_message": str(exc)})
        results.append(result)
    return {"throttle_time": 0, "results": results}
