"""The authorizer's decision table (Kafka's StandardAuthorizer semantics) and ACL filters."""

from __future__ import annotations

import pytest

from strom.security.acl import (
    AclBinding,
    AclFilter,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    invalid_binding,
)

T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Permission.ALLOW, Permission.DENY
Op = Operation


def acl(name, op, permission=ALLOW, principal="User:alice", pattern=LIT, host="*", rtype=T):
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


@pytest.mark.parametrize(("acls", "principal", "host", "op", "name", "allowed"), [
    ([acl("orders", Op.READ)], "User:alice", "1.2.3.4", Op.READ, "orders", True),
    ([acl("orders", Op.READ)], "User:alice", "1.2.3.4", Op.WRITE, "orders", False),
    ([acl("orders", Op.READ)], "User:bob", "1.2.3.4", Op.READ, "orders", False),
    ([acl("orders", Op.READ)], "User:alice", "1.2.3.4", Op.READ, "orders2", False),  # literal is exact
    ([acl("*", Op.READ)], "User:alice", "1.2.3.4", Op.READ, "anything", True),  # literal wildcard
    ([acl("ord", Op.READ, pattern=PRE)], "User:alice", "1.2.3.4", Op.READ, "orders", True),
    ([acl("ord", Op.READ, pattern=PRE)], "User:alice", "1.2.3.4", Op.READ, "or", False),
    ([acl("orders", Op.READ, principal="User:*")], "User:bob", "1.2.3.4", Op.READ, "orders", True),
    ([acl("orders", Op.READ, host="10.0.0.1")], "User:alice", "1.2.3.4", Op.READ, "orders", False),
    ([acl("orders", Op.READ, host="1.2.3.4")], "User:alice", "1.2.3.4", Op.READ, "orders", True),
    ([acl("orders", Op.ALL)], "User:alice", "h", Op.DELETE, "orders", True),
    # implied DESCRIBE / DESCRIBE_CONFIGS by ALLOW only
    ([acl("orders", Op.WRITE)], "User:alice", "h", Op.DESCRIBE, "orders", True),
    ([acl("orders", Op.ALTER_CONFIGS)], "User:alice", "h", Op.DESCRIBE_CONFIGS, "orders", True),
    ([acl("orders", Op.DESCRIBE)], "User:alice", "h", Op.READ, "orders", False),
    ([acl("orders", Op.READ), acl("orders", Op.READ, DENY)], "User:alice", "h", Op.DESCRIBE, "orders", True),
    # DENY wins, also through wildcards and prefixes
    ([acl("orders", Op.READ), acl("*", Op.READ, DENY, principal="User:*")], "User:alice", "h", Op.READ, "orders", False),
    ([acl("orders", Op.ALL), acl("ord", Op.WRITE, DENY, pattern=PRE)], "User:alice", "h", Op.WRITE, "orders", False),
    ([acl("orders", Op.ALL), acl("ord", Op.WRITE, DENY, pattern=PRE)], "User:alice", "h", Op.READ, "orders", True),
    ([acl("orders", Op.READ), acl("orders", Op.ALL, DENY)], "User:alice", "h", Op.READ, "orders", False),
    # an ACL on the resource for someone else: no ALLOW for alice means denied
    ([acl("orders", Op.READ, principal="User:bob")], "User:alice", "h", Op.READ, "orders", False),
    ([], "User:alice", "h", Op.READ, "orders", False),
])
def test_decisions(acls, principal, host, op, name, allowed):
    assert Authorizer(tuple(acls)).authorize(principal, host, op, T, name) is allowed


def test_super_users_and_no_acl_found():
    assert Authorizer((), frozenset({"User:admin"})).authorize("User:admin", "h", Op.ALTER, C, "kafka-cluster")
    everyone = Authorizer((acl("orders", Op.READ, principal="User:bob"),), allow_if_no_acl=True)
    assert everyone.authorize("User:alice", "h", Op.WRITE, T, "other")  # no ACL on "other"
    assert not everyone.authorize("User:alice", "h", Op.READ, T, "orders")  # ACLs exist on "orders"


def test_authorized_any():
    a = Authorizer((acl("orders", Op.WRITE), acl("logs", Op.WRITE, principal="User:bob")))
    assert a.authorized_any("User:alice", "h", Op.WRITE, T)
    assert not a.authorized_any("User:carol", "h", Op.WRITE, T)
    denied = Authorizer((acl("orders", Op.WRITE), acl("*", Op.WRITE, DENY)))
    assert not denied.authorized_any("User:alice", "h", Op.WRITE, T)


def test_filters():
    bindings = [acl("orders", Op.READ), acl("ord", Op.WRITE, pattern=PRE), acl("*", Op.READ, principal="User:*"),
                acl("g1", Op.READ, rtype=G)]
    assert [b for b in bindings if AclFilter(T, "orders", PatternType.MATCH).matches(b)] == bindings[:3]
    assert [b for b in bindings if AclFilter(T, "orders", PatternType.LITERAL).matches(b)] == bindings[:1]
    assert [b for b in bindings if AclFilter(principal="User:*").matches(b)] == bindings[2:3]
    assert [b for b in bindings if AclFilter(G).matches(b)] == bindings[3:]
    assert all(AclFilter().matches(b) for b in bindings)


@pytest.mark.parametrize(("binding", "why"), [
    (acl("x", Op.READ, principal="alice"), "Could not parse principal"),
    (acl("other", Op.ALTER, rtype=C), "kafka-cluster"),
    (acl("*", Op.READ, pattern=PRE), "wildcard"),
    (acl("x", Op.ANY), "Invalid operation"),
    (acl("x", Op.READ, rtype=ResourceType.ANY), "Invalid resource type"),
])
def test_invalid_bindings(binding, why):
    assert why in invalid_binding(binding)
    assert invalid_binding(acl("x", Op.READ)) is None
