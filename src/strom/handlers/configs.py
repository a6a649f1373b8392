"""DescribeConfigs (key 32) 1-4, AlterConfigs (key 33) 0-2, IncrementalAlterConfigs (key 44) 0-1.

Resources are TOPIC (2), BROKER (4) and GROUP (32). A broker resource named "" is the
cluster-wide dynamic default; one named with this node's id is this node. Values, sources and
synonyms come from strom.metadata.configs (topic override > dynamic node > dynamic default >
static > default); a group's from strom.metadata.group_configs (the group's own config, source
DYNAMIC_GROUP_CONFIG, else the broker's group.* setting or the default, source DEFAULT_CONFIG).
A group resource needs no group: its configs can be set before the group exists, as in Kafka.

DescribeConfigs: a null or empty configuration_keys list means every config. Synonyms are sent
only when include_synonyms is set (v1+), documentation only with include_documentation (v3+);
config_type is filled for every entry (encoded from v3). An unknown topic answers
UNKNOWN_TOPIC_OR_PARTITION with no message, a malformed name INVALID_TOPIC_EXCEPTION, another
node's id or a non-numeric broker name INVALID_REQUEST, as Kafka's ConfigHelper does.

AlterConfigs replaces the whole dynamic config set of the resource; IncrementalAlterConfigs
applies SET (0), DELETE (1), APPEND (2) and SUBTRACT (3) to the current set. APPEND/SUBTRACT
work on LIST configs only and start from the config's current effective value when the
resource does not set it (cleanup.policy "delete" + APPEND "compact" is "delete,compact").
Each resource is all-or-nothing; the checks follow Kafka's ConfigAdminManager (a resource
named twice, a config named twice, a null value other than DELETE's: INVALID_REQUEST) and
controller (bad topic and group values INVALID_CONFIG; bad broker values INVALID_REQUEST,
KAFKA-13609). An empty group name is INVALID_REQUEST ("Group name must not be empty" to
describe, "Default group resources are not allowed." to alter).
A broker resource takes every broker config Kafka defines, by Kafka's update mode, also those
strom does not act on (metadata.kafka_broker_configs), and keeps names Kafka does not define,
as Kafka keeps custom configs for plugins.
validate_only checks everything and changes nothing. A change is pushed at once into the
open logs it affects.

Authorization as Kafka's ConfigHelper / ControllerApis: describing a topic needs
DESCRIBE_CONFIGS on it (TOPIC_AUTHORIZATION_FAILED), a broker resource DESCRIBE_CONFIGS on the
cluster (CLUSTER_AUTHORIZATION_FAILED), a group on the group (GROUP_AUTHORIZATION_FAILED);
altering needs ALTER_CONFIGS likewise. A topic is authorized before it is looked up; a broker
resource, as in Kafka, after its request-level checks and validation (duplicates, node id, values).

Not done: BROKER_LOGGER (8; log4j levels) and CLIENT_METRICS (16) resources are answered
INVALID_REQUEST; there is no AlterConfigPolicy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from strom.handlers.auth import allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata import group_configs
from strom.metadata.configs import (
    TOPIC_CONFIGS,
    ConfigEntry,
    ConfigError,
    broker_config_def,
    broker_config_value,
    describe_broker_configs,
    describe_broker_default_configs,
    describe_topic_configs,
    effective_topic_configs,
    validate_broker_dynamic_configs,
    validate_topic_configs,
)
from strom.metadata.store import validate_topic_name
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    AlterConfigsResourceResponse,
    AlterConfigsResponse,
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    IncrementalAlterConfigsResponse,
)
from strom.security import acl


class ResourceType(IntEnum):
    """Kafka's ConfigResource.Type ids."""

    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8
    CLIENT_METRICS = 16
    GROUP = 32


class OpType(IntEnum):
    """IncrementalAlterConfigs config_operation (AlterConfigOp.OpType)."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class ResourceError(Exception):
    """A resource gets this error in the answer; the other resources go on."""

    def __init__(self, error_code: int, message: str | None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @classmethod
    def of(cls, exc: ConfigError) -> ResourceError:
        return cls(exc.error_code, exc.message)


def _type_name(resource_type: int) -> str:
    try:
        return ResourceType(resource_type).name
    except ValueError:
        return ResourceType.UNKNOWN.name


# Which ACL resource guards a config resource type, and the error when the check fails.
_GUARDS: dict[int, tuple[acl.ResourceType, int, str]] = {
    ResourceType.TOPIC: (acl.ResourceType.TOPIC, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed."),
    ResourceType.BROKER: (acl.ResourceType.CLUSTER, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."),
    ResourceType.BROKER_LOGGER: (acl.ResourceType.CLUSTER, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."),
    ResourceType.CLIENT_METRICS: (acl.ResourceType.CLUSTER, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."),
    ResourceType.GROUP: (acl.ResourceType.GROUP, ErrorCode.GROUP_AUTHORIZATION_FAILED, "Group authorization failed."),
}


def _authorize(ctx: BrokerContext, request: Request, operation: acl.Operation, resource_type: int, name: str) -> None:
    """Raise the resource's authorization error unless the principal may operate on it
    (unknown resource types are left to the other checks)."""
    guard = _GUARDS.get(resource_type)
    if guard is None:
        return
    acl_type, error, message = guard
    if not allowed(ctx, request, operation, acl_type, name if acl_type != acl.ResourceType.CLUSTER else acl.CLUSTER_NAME):
        raise ResourceError(error, message)


_JAVA_INT = re.compile(r"[+-]?[0-9]+")


def _parse_node_id(name: str) -> int | None:
    """Java's Integer.parseInt, or None where it throws NumberFormatException."""
    if not _JAVA_INT.fullmatch(name) or not -(2**31) <= int(name) < 2**31:
        return None
    return int(name)


def _topic(ctx: BrokerContext, name: str, *, describe: bool) -> Mapping[str, str]:
    """The overrides of an existing topic; Kafka's errors for a bad or unknown name."""
    if not name and not describe:
        raise ResourceError(ErrorCode.INVALID_REQUEST, "Default topic resources are not allowed.")
    try:
        validate_topic_name(name)
    except ConfigError as exc:
        raise ResourceError.of(exc) from None
    topic = ctx.metadata.topic(name)
    if topic is None:
        # DescribeConfigs answers with no message (ConfigHelper); the controller names the topic.
        raise ResourceError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None if describe else f"The topic '{name}' does not exist."
        )
    return topic.configs


# --- DescribeConfigs ------------------------------------------------------------------------------


def _describe_entries(ctx: BrokerContext, resource_type: int, name: str) -> list[ConfigEntry]:
    node = ctx.node.node_id
    if resource_type == ResourceType.TOPIC:
        overrides = _topic(ctx, name, describe=True)
        return describe_topic_configs(
            overrides, ctx.config, ctx.metadata.broker_configs(), ctx.metadata.node_configs(node)
        )
    if resource_type == ResourceType.BROKER:
        if not name:
            return describe_broker_default_configs(ctx.metadata.broker_configs())
        node_id = _parse_node_id(name)
        if node_id is None:
            raise ResourceError(ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, but it is: {name}")
        if node_id != node:
            raise ResourceError(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {node} or empty string, but received {name}",
            )
        return describe_broker_configs(ctx.config, ctx.metadata.broker_configs(), ctx.metadata.node_configs(node))
    if resource_type == ResourceType.GROUP:
        if not name:
            raise ResourceError(ErrorCode.INVALID_REQUEST, "Group name must not be empty")
        return group_configs.describe_group_configs(
            ctx.metadata.group_configs(name), ctx.config, ctx.metadata.broker_configs()
        )
    raise ResourceError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {_type_name(resource_type)}")


def _config_result(entry: ConfigEntry, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": entry.source,
        "is_sensitive": entry.is_sensitive,
        "synonyms": [{"name": s.name, "value": s.value, "source": s.source} for s in entry.synonyms]
        if synonyms
        else [],
        "config_type": entry.config_type,
        "documentation": entry.documentation if documentation else None,
    }


@handles(ApiKey.DESCRIBE_CONFIGS, 1, 4)
async def describe_configs(ctx: BrokerContext, request: Request) -> DescribeConfigsResponse:
    body = request.body
    synonyms = body.include_synonyms
    documentation = request.version >= 3 and body.include_documentation
    results: list[DescribeConfigsResult] = []
    for resource in body.resources:
        result: DescribeConfigsResult = {
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "configs": [],
        }
        try:
            _authorize(ctx, request, acl.Operation.DESCRIBE_CONFIGS, resource.resource_type, resource.resource_name)
            entries = _describe_entries(ctx, resource.resource_type, resource.resource_name)
        except ResourceError as exc:
            result.update({"error_code": exc.error_code, "error_message": exc.message})
        else:
            if resource.configuration_keys:  # null or empty: every config
                wanted = set(resource.configuration_keys)
                entries = [e for e in entries if e.name in wanted]
            result["configs"] = [_config_result(e, synonyms, documentation) for e in entries]
        results.append(result)
    return {"throttle_time": 0, "results": results}


# --- AlterConfigs and IncrementalAlterConfigs -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """A resource whose dynamic configs can be altered, and its current set."""

    resource_type: ResourceType
    name: str  # the topic, the broker resource name, or the group
    node_id: int | None  # BROKER: None for the cluster default
    current: Mapping[str, str]


def _target(ctx: BrokerContext, resource_type: int, name: str, *, incremental: bool) -> _Target:
    if resource_type == ResourceType.TOPIC:
        return _Target(ResourceType.TOPIC, name, None, _topic(ctx, name, describe=False))
    if resource_type == ResourceType.BROKER:
        if not name:
            return _Target(ResourceType.BROKER, name, None, ctx.metadata.broker_configs())
        node_id = _parse_node_id(name)
        if node_id is None:
            raise ResourceError(ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}")
        if node_id != ctx.node.node_id:
            raise ResourceError(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {ctx.node.node_id}, but received {name}",
            )
        return _Target(ResourceType.BROKER, name, node_id, ctx.metadata.node_configs(node_id))
    if resource_type == ResourceType.GROUP:
        if not name:
            raise ResourceError(ErrorCode.INVALID_REQUEST, "Default group resources are not allowed.")
        return _Target(ResourceType.GROUP, name, None, ctx.metadata.group_configs(name))
    if resource_type == ResourceType.BROKER_LOGGER and incremental:
        raise ResourceError(ErrorCode.INVALID_REQUEST, "strom does not support BROKER_LOGGER resources (log4j levels).")
    raise ResourceError(ErrorCode.INVALID_REQUEST, f"Unknown resource type {resource_type}")


def _check_entries(configs: Any, *, incremental: bool) -> None:
    """ConfigAdminManager.preprocess: no config named twice, no null value but DELETE's."""
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ResourceError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    null = [
        c.name
        for c in configs
        if c.value is None and not (incremental and c.config_operation == OpType.DELETE)
    ]
    if null:
        raise ResourceError(ErrorCode.INVALID_REQUEST, f"Null value not supported for : {', '.join(null)}")


def _current_value(ctx: BrokerContext, target: _Target, name: str) -> str | None:
    """The effective value APPEND and SUBTRACT start from."""
    broker_dynamic = ctx.metadata.broker_configs()
    node_dynamic: Mapping[str, str] | None
    if target.resource_type == ResourceType.TOPIC:
        node_dynamic = ctx.metadata.node_configs(ctx.node.node_id)
        return effective_topic_configs(target.current, ctx.config, broker_dynamic, node_dynamic)[name]
    if target.resource_type == ResourceType.GROUP:
        return group_configs.effective_configs(target.current, ctx.config, broker_dynamic)[name]
    node_dynamic = None if target.node_id is None else target.current
    return broker_config_value(name, ctx.config, broker_dynamic, node_dynamic)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _list_op(ctx: BrokerContext, target: _Target, op: OpType, name: str, value: str) -> str:
    if target.resource_type in (ResourceType.TOPIC, ResourceType.GROUP):
        defs = TOPIC_CONFIGS if target.resource_type == ResourceType.TOPIC else group_configs.GROUP_CONFIGS
        defn = defs.get(name)
        if defn is None or defn.type != "list":
            raise ResourceError(ErrorCode.INVALID_CONFIG, f"Can't {op.name} to key {name} because its type is not LIST.")
    else:
        defn = broker_config_def(name)
        if defn is None:
            raise ResourceError(ErrorCode.INVALID_CONFIG, f"Unknown config name: {name}")
        if defn.type != "list":
            raise ResourceError(
                ErrorCode.INVALID_CONFIG, f"Config value {op.name.lower()} is not allowed for config key: {name}"
            )
    parts = _split(_current_value(ctx, target, name))
    changes = _split(value)
    if op == OpType.APPEND:
        parts += [p for p in dict.fromkeys(changes) if p not in parts]
    else:
        parts = [p for p in parts if p not in changes]
    return ",".join(parts)


def _incremental_configs(ctx: BrokerContext, target: _Target, configs: Any) -> dict[str, str]:
    new = dict(target.current)
    for config in configs:
        try:
            op = OpType(config.config_operation)
        except ValueError:
            raise ResourceError(
                ErrorCode.INVALID_REQUEST, f"Unknown operation type {config.config_operation}"
            ) from None
        if op == OpType.SET:
            new[config.name] = config.value
        elif op == OpType.DELETE:
            new.pop(config.name, None)
        else:
            new[config.name] = _list_op(ctx, target, op, config.name, config.value)
    return new


def _validate(ctx: BrokerContext, target: _Target, configs: Mapping[str, str]) -> dict[str, str]:
    try:
        if target.resource_type == ResourceType.TOPIC:
            return validate_topic_configs(
                configs, ctx.config, ctx.metadata.broker_configs(), ctx.metadata.node_configs(ctx.node.node_id)
            )
        if target.resource_type == ResourceType.GROUP:
            return group_configs.validate_group_configs(configs, ctx.config, ctx.metadata.broker_configs())
        return validate_broker_dynamic_configs(configs, per_broker=target.node_id is not None)
    except ConfigError as exc:
        raise ResourceError.of(exc) from None


async def _apply(ctx: BrokerContext, target: _Target, configs: dict[str, str]) -> None:
    """Store the configs; every broker's replica manager pushes them into its open logs."""
    if target.resource_type == ResourceType.TOPIC:
        await ctx.metadata.set_topic_configs(target.name, configs)
    elif target.resource_type == ResourceType.GROUP:
        await ctx.metadata.set_group_configs(target.name, configs)
    else:
        await ctx.metadata.set_broker_configs(target.node_id, configs)


async def _alter(ctx: BrokerContext, request: Request, *, incremental: bool) -> AlterConfigsResponse:
    """AlterConfigs and IncrementalAlterConfigs (their responses have the same fields). One
    at a time per broker: an incremental one reads the current configs, then stores them
    changed, and two at once would each lose the other's change."""
    async with ctx.config_alter_lock:
        return await _alter_locked(ctx, request, incremental=incremental)


async def _alter_locked(ctx: BrokerContext, request: Request, *, incremental: bool) -> AlterConfigsResponse:
    body = request.body
    keys = [(r.resource_type, r.resource_name) for r in body.resources]
    responses: list[AlterConfigsResourceResponse] = []
    for resource in body.resources:
        response: AlterConfigsResourceResponse = {
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
        }
        try:
            if keys.count((resource.resource_type, resource.resource_name)) > 1:
                raise ResourceError(ErrorCode.INVALID_REQUEST, "Each resource must appear at most once.")
            _check_entries(resource.configs, incremental=incremental)
            broker = resource.resource_type == ResourceType.BROKER
            if not broker:  # Kafka validates a broker resource before authorizing it
                _authorize(ctx, request, acl.Operation.ALTER_CONFIGS, resource.resource_type, resource.resource_name)
            target = _target(ctx, resource.resource_type, resource.resource_name, incremental=incremental)
            if incremental:
                new = _incremental_configs(ctx, target, resource.configs)
            else:
                new = {c.name: c.value for c in resource.configs}
            checked = _validate(ctx, target, new)
            if broker:
                _authorize(ctx, request, acl.Operation.ALTER_CONFIGS, resource.resource_type, resource.resource_name)
        except ResourceError as exc:
            response.update({"error_code": exc.error_code, "error_message": exc.message})
        else:
            if not body.validate_only:
                try:
                    await _apply(ctx, target, checked)
                except ConfigError as exc:
                    response.update({"error_code": exc.error_code, "error_message": str(exc)})
        responses.append(response)
    return {"throttle_time": 0, "responses": responses}


@handles(ApiKey.ALTER_CONFIGS, 0, 2)
async def alter_configs(ctx: BrokerContext, request: Request) -> AlterConfigsResponse:
    return await _alter(ctx, request, incremental=False)


@handles(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, 1)
async def incremental_alter_configs(ctx: BrokerContext, request: Request) -> IncrementalAlterConfigsResponse:
    return await _alter(ctx, request, incremental=True)
