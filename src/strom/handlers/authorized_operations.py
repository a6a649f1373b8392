"""KIP-430 authorized operations: the bitfield of AclOperation codes (bit n set for code n)
that Metadata, DescribeCluster and DescribeGroups report for a resource when the request asks
(``include_*_authorized_operations``).

strom has no authorizer yet. Kafka without one allows every operation, so it reports all the
operations the resource type supports (AclEntry.supportedOperations, via
AuthHelper.authorizedOperations); so does strom. A request that does not ask gets the
schema default, INT32_MIN. The security work will compute them from ACLs here.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

AUTHORIZED_OPERATIONS_OMITTED: Final = -(2**31)  # not asked for (Kafka's name)


class AclOperation(IntEnum):
    """Kafka's AclOperation codes."""

    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclResourceType(IntEnum):
    """Kafka's ResourceType codes (of ACLs, not of configs) that report operations."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


_op = AclOperation
SUPPORTED: Final[dict[AclResourceType, frozenset[AclOperation]]] = {
    AclResourceType.TOPIC: frozenset({
        _op.READ, _op.WRITE, _op.CREATE, _op.DESCRIBE, _op.DELETE, _op.ALTER, _op.DESCRIBE_CONFIGS, _op.ALTER_CONFIGS,
    }),
    AclResourceType.GROUP: frozenset({_op.READ, _op.DESCRIBE, _op.DELETE, _op.DESCRIBE_CONFIGS, _op.ALTER_CONFIGS}),
    AclResourceType.CLUSTER: frozenset({
        _op.CREATE, _op.CLUSTER_ACTION, _op.DESCRIBE_CONFIGS, _op.ALTER_CONFIGS, _op.IDEMPOTENT_WRITE, _op.ALTER,
        _op.DESCRIBE,
    }),
}


def authorized_operations(resource_type: AclResourceType, requested: bool = True) -> int:
    """The operations a client may perform on a resource of this type (all it supports, with
    no authorizer), or AUTHORIZED_OPERATIONS_OMITTED."""
    if not requested:
        return AUTHORIZED_OPERATIONS_OMITTED
    return sum(1 << op for op in SUPPORTED[resource_type])
