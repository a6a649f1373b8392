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
O = Operation


def acl(name, op, permission=ALLOW, principal="User:alice", pattern=LIT, host="*", rtype=T):
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


@pytest.mark.parametrize(("acls", "principal", "host", "op", "name", "allowed"), [
    ([acl("orders", O.READ)], "User:alice", "1.2.3.4", O.READ, "orders", True),
    ([acl("orders", O.READ)], "User:alice", "1.2.3.4", O.WRITE, "orders", False),
    ([acl("orders", O.READ)], "User:bob", "1.2.3.4", O.READ, "orders", False),
    ([acl("orders", O.READ)], "User:alice", "1.2.3.4", O.READ, "orders2", False),  # literal is exact
    ([acl("*", O.READ)], "User:alice", "1.2.3.4", O.READ, "anything", True),  # literal wildcard
    ([acl("ord", O.READ, pattern=PRE)], "User:alice", "1.2.3.4", O.READ, "orders", True),
    ([acl("ord", O.READ, pattern=PRE)], "User:alice", "1.2.3.4", O.READ, "or", False),
    ([acl("orders", O.READ, principal="User:*")], "User:bob", "1.2.3.4", O.READ, "orders", True),
    ([acl("orders", O.READ, host="10.0.0.1")], "User:alice", "1.2.3.4", O.READ, "orders", False),
    ([acl("orders", O.READ, host="1.2.3.4")], "User:alice", "1.2.3.4", O.READ, "orders", True),
    ([acl("orders", O.ALL)], "User:alice", "h", O.DELETE, "orders", True),
    # implied DESCRIBE / DESCRIBE_CONFIGS by ALLOW only
    ([acl("orders", O.WRITE)], "User:alice", "h", O.DESCRIBE, "orders", True),
    ([acl("orders", O.ALTER_CONFIGS)], "User:alice", "h", O.DESCRIBE_CONFIGS, "orders", True),
    ([acl("orders", O.DESCRIBE)], "User:alice", "h", O.READ, "orders", False),
    ([acl("orders", O.READ), acl("orders", O.READ, DENY)], "User:alice", "h", O.DESCRIBE, "orders", True),
    # DENY wins, also through wildcards and prefixes
    ([acl("orders", O.READ), acl("*", O.READ, DENY, principal="User:*")], "User:alice", "h", O.READ, "orders", False),
    ([acl("orders", O.ALL), acl("ord", O.WRITE, DENY, pattern=PRE)], "User:alice", "h", O.WRITE, "orders", False),
    ([acl("orders", O.ALL), acl("ord", O.WRITE, DENY, pattern=PRE)], "User:alice", "h", O.READ, "orders", True),
    ([acl("orders", O.READ), acl("orders", O.ALL, DENY)], "User:alice", "h", O.READ, "orders", False),
    # an ACL on the resource for someone else: no ALLOW for alice means denied
    ([acl("orders", O.READ, principal="User:bob")], "User:alice", "h", O.READ, "orders", False),
    ([], "User:alice", "h", O.READ, "orders", False),
])
def test_decisions(acls, principal, host, op, name, allowed):
    assert Authorizer(tuple(acls)).authorize(principal, host, op, T, name) is allowed


def test_super_users_and_no_acl_found():
    assert Authorizer((), frozenset({"User:admin"})).authorize("User:admin", "h", O.ALTER, C, "kafka-cluster")
    everyone = Authorizer((acl("orders", O.READ, principal="User:bob"),), allow_if_no_acl=True)
    assert everyone.authorize("User:alice", "h", O.WRITE, T, "other")  # no ACL on "other"
    assert not everyone.authorize("User:alice", "h", O.READ, T, "orders")  # ACLs exist on "orders"


def test_authorized_any():
    a = Authorizer((acl("orders", O.WRITE), acl("logs", O.WRITE, principal="User:bob")))
    assert a.authorized_any("User:alice", "h", O.WRITE, T)
    assert not a.authorized_any("User:carol", "h", O.WRITE, T)
    denied = Authorizer((acl("orders", O.WRITE), acl("*", O.WRITE, DENY)))
    assert not denied.authorized_any("User:alice", "h", O.WRITE, T)


def test_filters():
    bindings = [acl("orders", O.READ), acl("ord", O.WRITE, pattern=PRE), acl("*", O.READ, principal="User:*"),
                acl("g1", O.READ, rtype=G)]
    assert [b for b in bindings if AclFilter(T, "orders", PatternType.MATCH).matches(b)] == bindings[:3]
    assert [b for b in bindings if AclFilter(T, "orders", PatternType.LITERAL).matches(b)] == bindings[:1]
    assert [b for b in bindings if AclFilter(principal="User:*").matches(b)] == bindings[2:3]
    assert [b for b in bindings if AclFilter(G).matches(b)] == bindings[3:]
    assert all(AclFilter().matches(b) for b in bindings)


@pytest.mark.parametrize(("binding", "why"), [
    (acl("x", O.READ, principal="alice"), "Could not parse principal"),
    (acl("other", O.ALTER, rtype=C), "kafka-cluster"),
    (acl("*", O.READ, pattern=PRE), "wildcard"),
    (acl("x", O.ANY), "Invalid operation"),
    (acl("x", O.READ, rtype=ResourceType.ANY), "Invalid resource type"),
])
def test_invalid_bindings(binding, why):
    assert why in invalid_binding(binding)
    assert invalid_binding(acl("x", O.READ)) is None
