"""DescribeAcls (29), CreateAcls (30) and DeleteAcls (31), versions 1-3 (as Kafka 4). ACLs live in the metadata store; the decision is security.acl's. Without an
authorizer Kafka answers SECURITY_DISABLED; describing needs DESCRIBE on the cluster,
creating and deleting ALTER."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata.configs import ConfigError
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    CreateAclsResponse,
    CreateAclsResponseAclCreationResult,
    DeleteAclsFilterResult,
    DeleteAclsResponse,
    DescribeAclsResource,
    DescribeAclsResponse,
    DescribeAclsResponseAclDescription,
)
from strom.security.acl import (
    AclBinding,
    AclFilter,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    invalid_binding,
    sorted_bindings,
)

NO_AUTHORIZER = "No Authorizer is configured."


def _enum(kind: Any, value: int) -> Any:
    try:
        return kind(value)
    except ValueError:
        return kind(0)  # UNKNOWN


def _filter(f: Any) -> AclFilter:
    return AclFilter(
        _enum(ResourceType, f.resource_type_filter), f.resource_name_filter,
        _enum(PatternType, f.pattern_type_filter),
        f.principal_filter, f.host_filter, _enum(Operation, f.operation), _enum(Permission, f.permission_type),
    )


def _refusal(ctx: BrokerContext, request: Request, operation: Operation) -> tuple[int, str | None] | None:
    if ctx.authorizer is None:
        return ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER
    if not cluster_allowed(ctx, request, operation):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
    return None


def _binding_fields(b: AclBinding) -> DescribeAclsResponseAclDescription:
    return {"principal": b.principal, "host": b.host, "operation": int(b.operation), "permission_type": int(b.permission)}


def _resources(bindings: Iterable[AclBinding]) -> list[DescribeAclsResource]:
    grouped: dict[tuple[int, str, int], list[DescribeAclsResponseAclDescription]] = {}
    for b in sorted_bindings(bindings):
        grouped.setdefault((int(b.resource_type), b.name, int(b.pattern)), []).append(_binding_fields(b))
    return [{"resource_type": t, "resource_name": n, "pattern_type": p, "acls": acls} for (t, n, p), acls in grouped.items()]


@handles(ApiKey.DESCRIBE_ACLS, 1, 3)
async def describe_acls(ctx: BrokerContext, request: Request) -> DescribeAclsResponse:
    response: DescribeAclsResponse = {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "resources": []}
    refusal = _refusal(ctx, request, Operation.DESCRIBE)
    if refusal is not None:
        response["error_code"], response["error_message"] = refusal
        return response
    f = _filter(request.body)
    if (why := f.invalid()) is not None:
        response.update({"error_code": ErrorCode.INVALID_REQUEST, "error_message": why})
        return response
    response["resources"] = _resources(b for b in ctx.image.acls if f.matches(b))
    return response


@handles(ApiKey.CREATE_ACLS, 1, 3)
async def create_acls(ctx: BrokerContext, request: Request) -> CreateAclsResponse:
    creations = request.body.creations
    refusal = _refusal(ctx, request, Operation.ALTER)
    if refusal is not None:
        return {"throttle_time": 0, "results": [{"error_code": refusal[0], "error_message": refusal[1]} for _ in creations]}
    results: list[CreateAclsResponseAclCreationResult] = []
    valid: list[AclBinding] = []
    for c in creations:
        binding = AclBinding(
            _enum(ResourceType, c.resource_type), c.resource_name,
            _enum(PatternType, c.resource_pattern_type),
            c.principal, c.host, _enum(Operation, c.operation), _enum(Permission, c.permission_type),
        )
        why = invalid_binding(binding)
        results.append({"error_code": ErrorCode.INVALID_REQUEST if why else ErrorCode.NONE, "error_message": why})
        if why is None:
            valid.append(binding)
    if valid:
        try:
            await ctx.metadata.alter_acls(valid, [])
        except ConfigError as exc:
            results = [{"error_code": exc.error_code, "error_message": exc.message} if r["error_code"] == ErrorCode.NONE
                       else r for r in results]
    return {"throttle_time": 0, "results": results}


@handles(ApiKey.DELETE_ACLS, 1, 3)
async def delete_acls(ctx: BrokerContext, request: Request) -> DeleteAclsResponse:
    filters = request.body.filters
    refusal = _refusal(ctx, request, Operation.ALTER)
    if refusal is not None:
        return {"throttle_time": 0, "filter_results": [
            {"error_code": refusal[0], "error_message": refusal[1], "matching_acls": []} for _ in filters]}
    acls = ctx.image.acls
    results: list[DeleteAclsFilterResult] = []
    doomed: set[AclBinding] = set()
    for raw in filters:
        f = _filter(raw)
        if (why := f.invalid()) is not None:
            results.append({"error_code": ErrorCode.INVALID_REQUEST, "error_message": why, "matching_acls": []})
            continue
        matching = sorted_bindings(b for b in acls if f.matches(b))
        doomed.update(matching)
        results.append({"error_code": ErrorCode.NONE, "error_message": None, "matching_acls": [
            {"error_code": ErrorCode.NONE, "error_message": None, "resource_type": int(b.resource_type),
             "resource_name": b.name, "pattern_type": int(b.pattern), **_binding_fields(b)} for b in matching]})
    if doomed:
        try:
            await ctx.metadata.alter_acls([], list(doomed))
        except ConfigError as exc:
            for r in results:
                if r["error_code"] == ErrorCode.NONE:
                    r.update({"error_code": exc.error_code, "error_message": exc.message, "matching_acls": []})
    return {"throttle_time": 0, "filter_results": results}
