"""Authorization checks for handlers: the request's principal and client address against
the broker's authorizer (ctx.authorizer; None allows everything, as Kafka without one)."""

from __future__ import annotations

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request
from strom.security.acl import CLUSTER_NAME, Operation, ResourceType

ANONYMOUS = "User:ANONYMOUS"


def principal(request: Request) -> str:
    return request.session.principal if request.session is not None else ANONYMOUS


def allowed(ctx: BrokerContext, request: Request, operation: Operation, resource_type: ResourceType,
            name: str = CLUSTER_NAME) -> bool:
    authorizer = ctx.authorizer
    return authorizer is None or _internal(request) or authorizer.authorize(
        principal(request), request.client_host, operation, resource_type, name)


def allowed_any(ctx: BrokerContext, request: Request, operation: Operation, resource_type: ResourceType) -> bool:
    authorizer = ctx.authorizer
    return authorizer is None or _internal(request) or authorizer.authorized_any(
        principal(request), request.client_host, operation, resource_type)


def _internal(request: Request) -> bool:
    return request.session is not None and request.session.internal


def quota_identity(request: Request) -> tuple[str, str]:
    """(user, client id) as client quotas name a connection (the principal's name)."""
    return principal(request).partition(":")[2], request.header.client_id or ""


def quota_throttle(ctx: BrokerContext, request: Request, key: str, value: float) -> int:
    """Record ``value`` against the client's quota ``key``; the throttle time in ms (KIP-219)."""
    quotas = ctx.image.client_quotas
    if not quotas:
        return 0
    return ctx.quotas.record(quotas, key, *quota_identity(request), value, ctx.now_ms())


def cluster_allowed(ctx: BrokerContext, request: Request, operation: Operation) -> bool:
    return allowed(ctx, request, operation, ResourceType.CLUSTER)
