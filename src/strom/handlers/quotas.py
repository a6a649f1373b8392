"""DescribeClientQuotas (48) and AlterClientQuotas (49), versions 0-1 (KIP-546): client
quotas by user and client id (security.quotas), kept in the metadata store. Describing needs
DescribeConfigs on the cluster, altering AlterConfigs (Kafka's checks)."""

from __future__ import annotations

from typing import Any

from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata.configs import ConfigError
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import Operation
from strom.security.quotas import CLIENT_ID, DEFAULT, KEYS, REQUEST_PERCENTAGE, USER, QuotaEntity

EXACT, DEFAULT_MATCH, SPECIFIED = 0, 1, 2
TYPES = (USER, CLIENT_ID)


class QuotaRequestError(Exception):
    pass


def _entity(pairs: Any) -> QuotaEntity:
    entity: dict[str, str] = {}
    for p in pairs:
        if p.entity_type not in TYPES:
            raise QuotaRequestError(f"Unsupported quota entity type: {p.entity_type} (strom serves user and client-id)")
        if p.entity_type in entity:
            raise QuotaRequestError(f"Duplicate {p.entity_type} entity type in the entity")
        entity[p.entity_type] = DEFAULT if p.entity_name is None else p.entity_name
    if not entity:
        raise QuotaRequestError("Invalid empty client quota entity")
    return tuple(sorted(entity.items()))


def _wire(entity: QuotaEntity) -> list[dict[str, Any]]:
    return [{"entity_type": t, "entity_name": None if n == DEFAULT else n} for t, n in entity]


def _matches(entity: QuotaEntity, components: Any, strict: bool) -> bool:
    names = dict(entity)
    for c in components:
        name = names.get(c.entity_type)
        if name is None:
            return False
        if c.match_type == EXACT and name != c.match:
            return False
        if c.match_type == DEFAULT_MATCH and name != DEFAULT:
            return False
        if c.match_type == SPECIFIED and name == DEFAULT:
            return False
    return not strict or len(names) == len(components)


@handles(ApiKey.DESCRIBE_CLIENT_QUOTAS, 0, 1)
async def describe_client_quotas(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "entries": []}
    body = request.body
    if not cluster_allowed(ctx, request, Operation.DESCRIBE_CONFIGS):
        response.update(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed.",
                        entries=None)
        return response
    bad = [c for c in body.components if c.entity_type not in TYPES or c.match_type not in (EXACT, DEFAULT_MATCH, SPECIFIED)
           or (c.match_type == EXACT) != (c.match is not None)]
    if bad or len({c.entity_type for c in body.components}) != len(body.components):
        response.update(error_code=ErrorCode.INVALID_REQUEST, error_message="Invalid or duplicate quota filter component",
                        entries=None)
        return response
    response["entries"] = [
        {"entity": _wire(entity), "values": [{"key": k, "value": v} for k, v in sorted(values.items())]}
        for entity, values in sorted(ctx.image.client_quotas.items()) if _matches(entity, body.components, body.strict)
    ]
    return response


def _changes(entry: Any) -> dict[str, float | None]:
    changes: dict[str, float | None] = {}
    for op in entry.ops:
        if op.key not in KEYS:
            raise QuotaRequestError(f"Unknown quota key: {op.key}")
        if op.key in changes:
            raise QuotaRequestError(f"Duplicate quota key: {op.key}")
        if not op.remove:
            if op.value < 0:
                raise QuotaRequestError(f"Quota {op.key} must not be negative")
            if op.key != REQUEST_PERCENTAGE and op.value != int(op.value):
                raise QuotaRequestError(f"Quota {op.key} must be a whole number, not {op.value}")
        changes[op.key] = None if op.remove else float(op.value)
    return changes


@handles(ApiKey.ALTER_CLIENT_QUOTAS, 0, 1)
async def alter_client_quotas(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    allowed = cluster_allowed(ctx, request, Operation.ALTER_CONFIGS)
    results: list[dict[str, Any]] = []
    changes: dict[QuotaEntity, dict[str, float | None]] = {}
    for entry in body.entries:
        result: dict[str, Any] = {"error_code": ErrorCode.NONE, "error_message": None, "entity": [
            {"entity_type": e.entity_type, "entity_name": e.entity_name} for e in entry.entity]}
        results.append(result)
        if not allowed:
            result.update(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed.")
            continue
        try:
            entity = _entity(entry.entity)
            if entity in changes:
                raise QuotaRequestError("Duplicate entity in the request")
            changes[entity] = _changes(entry)
        except QuotaRequestError as exc:
            result.update(error_code=ErrorCode.INVALID_REQUEST, error_message=str(exc))
    if changes and not body.validate_only:
        try:
            await ctx.metadata.alter_client_quotas(changes)
        except ConfigError as exc:
            for r in results:
                if r["error_code"] == ErrorCode.NONE:
                    r.update(error_code=exc.error_code, error_message=exc.message)
    return {"throttle_time": 0, "entries": results}
