"""Kafka's ACL model and the standard authorizer's decision, as a pure function over the
ACLs in the metadata store (StandardAuthorizer semantics, KIP-290 prefixed patterns):

- super users may do everything;
- an ACL applies to a resource when its pattern is LITERAL with the same name or ``*``, or
  PREFIXED with a prefix of the name; to a principal when it names it or ``User:*``; to a
  host when it names the client's address or ``*``;
- a matching DENY wins over any ALLOW; ALLOW of READ, WRITE, DELETE or ALTER implies
  DESCRIBE and ALLOW of ALTER_CONFIGS implies DESCRIBE_CONFIGS (DENY implies nothing);
- no ACL at all on the resource: ``allow.everyone.if.no.acl.found`` decides.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass

WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
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
    TWO_PHASE_COMMIT = 15


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


CLUSTER_NAME = "kafka-cluster"  # the one CLUSTER resource's name

_IMPLIES_DESCRIBE = {Operation.DESCRIBE, Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}
_IMPLIES_DESCRIBE_CONFIGS = {Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS}


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    name: str
    pattern: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    def to_json(self) -> list[object]:
        return [int(self.resource_type), self.name, int(self.pattern), self.principal, self.host,
                int(self.operation), int(self.permission)]

    @classmethod
    def from_json(cls, doc: list[object]) -> AclBinding:
        t, name, pattern, principal, host, op, permission = doc
        return cls(ResourceType(int(t)), str(name), PatternType(int(pattern)), str(principal), str(host),  # type: ignore[call-overload]
                   Operation(int(op)), Permission(int(permission)))  # type: ignore[call-overload]

    def applies_to(self, resource_type: ResourceType, name: str) -> bool:
        if self.resource_type != resource_type:
            return False
        if self.pattern == PatternType.LITERAL:
            return self.name == name or self.name == WILDCARD
        return self.pattern == PatternType.PREFIXED and name.startswith(self.name)


def invalid_binding(b: AclBinding) -> str | None:
    """Why CreateAcls refuses a binding (Kafka's checks), or None."""
    if b.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        return "Invalid resource type"
    if b.pattern not in (PatternType.LITERAL, PatternType.PREFIXED):
        return "Invalid pattern type"
    if b.operation in (Operation.UNKNOWN, Operation.ANY):
        return "Invalid operation"
    if b.permission not in (Permission.ALLOW, Permission.DENY):
        return "Invalid permission type"
    if not b.name:
        return "Resource name must not be empty"
    if b.resource_type == ResourceType.CLUSTER and b.name != CLUSTER_NAME:
        return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if b.pattern == PatternType.PREFIXED and b.name == WILDCARD:
        return "A PREFIXED pattern may not be the wildcard"
    kind, sep, _ = b.principal.partition(":")
    if not sep or not kind:
        return f"Could not parse principal from `{b.principal}` (no colon is found between principal type and name)"
    if not b.host:
        return "Host must not be empty"
    return None


@dataclass(frozen=True, slots=True)
class AclFilter:
    """DescribeAcls / DeleteAcls filter: ANY and None match everything; MATCH patterns match
    the ACLs that would apply to the named resource (literal, wildcard and prefixes)."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and b.resource_type != self.resource_type:
            return False
        if self.pattern == PatternType.MATCH:
            if self.name is not None and not b.applies_to(b.resource_type, self.name):
                return False
        else:
            if self.pattern != PatternType.ANY and b.pattern != self.pattern:
                return False
            if self.name is not None and b.name != self.name:
                return False
        return ((self.principal is None or b.principal == self.principal)
                and (self.host is None or b.host == self.host)
                and (self.operation == Operation.ANY or b.operation == self.operation)
                and (self.permission == Permission.ANY or b.permission == self.permission))

    def invalid(self) -> str | None:
        if ResourceType.UNKNOWN in (self.resource_type,) or self.pattern == PatternType.UNKNOWN:
            return "Invalid resource or pattern type"
        if self.operation == Operation.UNKNOWN or self.permission == Permission.UNKNOWN:
            return "Invalid operation or permission type"
        return None


def _result(acl: AclBinding, principal: str, host: str, operation: Operation) -> Permission | None:
    if acl.principal not in (principal, WILDCARD_PRINCIPAL) or acl.host not in (host, WILDCARD):
        return None
    if acl.operation != Operation.ALL:
        if acl.permission == Permission.ALLOW:
            if operation == Operation.DESCRIBE:
                if acl.operation not in _IMPLIES_DESCRIBE:
                    return None
            elif operation == Operation.DESCRIBE_CONFIGS:
                if acl.operation not in _IMPLIES_DESCRIBE_CONFIGS:
                    return None
            elif acl.operation != operation:
                return None
        elif acl.operation != operation:
            return None
    return acl.permission


@dataclass(frozen=True)
class Authorizer:
    acls: Collection[AclBinding] = ()
    super_users: frozenset[str] = frozenset()
    allow_if_no_acl: bool = False

    def authorize(self, principal: str, host: str, operation: Operation, resource_type: ResourceType, name: str) -> bool:
        if principal in self.super_users:
            return True
        found = allowed = False
        for acl in self.acls:
            if not acl.applies_to(resource_type, name):
                continue
            found = True
            result = _result(acl, principal, host, operation)
            if result == Permission.DENY:
                return False
            allowed = allowed or result == Permission.ALLOW
        return allowed or (not found and self.allow_if_no_acl)

    def authorized_any(self, principal: str, host: str, operation: Operation, resource_type: ResourceType) -> bool:
        """Whether some resource of the type may be operated on (KIP-679: IDEMPOTENT_WRITE
        falls back to WRITE on any topic): an ALLOW ACL whose own resource is authorized."""
        if principal in self.super_users:
            return True
        if self.allow_if_no_acl and not any(a.resource_type == resource_type for a in self.acls):
            return True
        return any(acl.resource_type == resource_type and _result(acl, principal, host, operation) == Permission.ALLOW
                   and self.authorize(principal, host, operation, resource_type, acl.name)
                   for acl in self.acls)


def parse_super_users(value: str | None) -> frozenset[str]:
    """``super.users``: principals separated by semicolons (Kafka's syntax)."""
    return frozenset(p.strip() for p in (value or "").split(";") if p.strip())


def sorted_bindings(bindings: Iterable[AclBinding]) -> list[AclBinding]:
    return sorted(bindings, key=lambda b: b.to_json())
