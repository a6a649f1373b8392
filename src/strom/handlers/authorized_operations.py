"""KIP-430 authorized operations: the bitfield of AclOperation codes (bit n set for code n)
that Metadata, DescribeCluster and DescribeGroups report for a resource when the request asks
(``include_*_authorized_operations``).

As Kafka's AuthHelper.authorizedOperations: each operation the resource type supports
(AclEntry.supportedOperations) that the authorizer allows the request's principal on the
named resource; without an authorizer, all of them. A request that does not ask gets the
schema default, INT32_MIN.
"""

from __future__ import annotations

from typing import Final

from strom.handlers.auth import allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request
from strom.security.acl import CLUSTER_NAME, Operation, ResourceType

AUTHORIZED_OPERATIONS_OMITTED: Final = -(2**31)  # not asked for (Kafka's name)

_op = Operation
SUPPORTED: Final[dict[ResourceType, tuple[Operation, ...]]] = {
    ResourceType.TOPIC: (
        _op.READ, _op.WRITE, _op.CREATE, _op.DESCRIBE, _op.DELETE, _op.ALTER, _op.DESCRIBE_CONFIGS, _op.ALTER_CONFIGS,
    ),
    # Kafka 3.9's group set: 4.0 adds DescribeConfigs and AlterConfigs with group configs
    # (KIP-848), which strom does not serve yet (librdkafka's test 0081 checks this set)
    ResourceType.GROUP: (_op.READ, _op.DESCRIBE, _op.DELETE),
    ResourceType.CLUSTER: (
        _op.CREATE, _op.CLUSTER_ACTION, _op.DESCRIBE_CONFIGS, _op.ALTER_CONFIGS, _op.IDEMPOTENT_WRITE, _op.ALTER,
        _op.DESCRIBE,
    ),
}


def authorized_operations(
    ctx: BrokerContext, request: Request, resource_type: ResourceType, name: str = CLUSTER_NAME
) -> int:
    """The operations the request's principal may perform on the resource, as a bitfield."""
    return sum(1 << op for op in SUPPORTED[resource_type] if allowed(ctx, request, op, resource_type, name))


def cluster_authorized_operations(ctx: BrokerContext, request: Request, requested: bool) -> int:
    """Metadata v8-10 and DescribeCluster: Kafka reports none (0) to a principal that may not
    DESCRIBE the cluster."""
    if not requested:
        return AUTHORIZED_OPERATIONS_OMITTED
    if not allowed(ctx, request, Operation.DESCRIBE, ResourceType.CLUSTER):
        return 0
    return authorized_operations(ctx, request, ResourceType.CLUSTER)
