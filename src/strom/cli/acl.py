"""``strom acl list|add|remove``: ACLs through the AdminClient (Describe/Create/DeleteAcls),
in the spirit of Kafka's kafka-acls tool: a principal, operations and one resource."""

from __future__ import annotations

from typing import Any

import click

from strom.cli.client import Client, client_command, fail
from strom.cli.output import JSON, note, output_option, print_json, print_table

OPERATIONS = ("All", "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "DescribeConfigs",
              "AlterConfigs", "IdempotentWrite")


def _snake(name: str) -> str:
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()


def _resource_options(f: Any) -> Any:
    for option in reversed((
        click.option("--topic", help="A topic (or a prefix with --prefixed; '*' for every topic)."),
        click.option("--group", help="A consumer group (or a prefix with --prefixed)."),
        click.option("--transactional-id", help="A transactional id (or a prefix with --prefixed)."),
        click.option("--cluster", is_flag=True, help="The cluster itself."),
        click.option("--prefixed", is_flag=True, help="The name is a prefix (PREFIXED pattern), not a literal name."),
    )):
        f = option(f)
    return f


def _resource(topic: str | None, group: str | None, transactional_id: str | None, cluster: bool,
              required: bool) -> tuple[str, str | None]:
    given = [(t, n) for t, n in (("TOPIC", topic), ("GROUP", group), ("TRANSACTIONAL_ID", transactional_id)) if n]
    if cluster:
        given.append(("CLUSTER", "kafka-cluster"))
    if len(given) > 1:
        fail("Name one resource: --topic, --group, --transactional-id or --cluster.")
    if not given:
        if required:
            fail("Name a resource: --topic, --group, --transactional-id or --cluster.")
        return "ANY", None
    return given[0]


@click.group()
def acl() -> None:
    """List, add and remove ACLs (needs a broker with authorizer.class.name set)."""


@acl.command(name="add")
@click.argument("principal")
@click.option("--operation", "operations", multiple=True, required=True, type=click.Choice(OPERATIONS, case_sensitive=False))
@click.option("--deny", is_flag=True, help="A DENY ACL (default ALLOW).")
@click.option("--host", default="*", show_default=True, help="Client address the ACL applies to.")
@_resource_options
@client_command
def add_acl(client: Client, principal: str, operations: tuple[str, ...], deny: bool, host: str, topic: str | None,
            group: str | None, transactional_id: str | None, cluster: bool, prefixed: bool) -> None:
    """Allow (or --deny) PRINCIPAL (e.g. User:alice) the operations on one resource."""
    from confluent_kafka.admin import AclBinding

    rtype, name = _resource(topic, group, transactional_id, cluster, required=True)
    assert name is not None  # required
    pattern = "PREFIXED" if prefixed else "LITERAL"
    bindings = [AclBinding(rtype, name, pattern, principal, host, _snake(op), "DENY" if deny else "ALLOW")
                for op in operations]
    for future in client.admin().create_acls(bindings, request_timeout=client.timeout).values():
        client.result(future, "create ACLs")
    note(f"Added {len(bindings)} ACL(s) for {principal} on {rtype.lower()} {name}.")


def _filter(principal: str | None, operations: tuple[str, ...], topic: str | None, group: str | None,
            transactional_id: str | None, cluster: bool, prefixed: bool) -> list[Any]:
    from confluent_kafka.admin import AclBindingFilter

    rtype, name = _resource(topic, group, transactional_id, cluster, required=False)
    pattern = "PREFIXED" if prefixed else ("LITERAL" if name is not None else "ANY")
    # None matches any name, principal and host (the stubs of confluent-kafka say str)
    return [AclBindingFilter(rtype, name, pattern, principal, None,  # type: ignore[arg-type]
                             _snake(op) if op != "ANY" else "ANY", "ANY")
            for op in (operations or ("ANY",))]


@acl.command(name="remove")
@click.argument("principal", required=False)
@click.option("--operation", "operations", multiple=True, type=click.Choice(OPERATIONS, case_sensitive=False))
@_resource_options
@client_command
def remove_acl(client: Client, principal: str | None, operations: tuple[str, ...], topic: str | None, group: str | None,
               transactional_id: str | None, cluster: bool, prefixed: bool) -> None:
    """Remove the ACLs matching PRINCIPAL, operations and resource (each optional)."""
    if principal is None and not (topic or group or transactional_id or cluster):
        fail("Name a principal or a resource: removing every ACL needs both left out on purpose (use acl list first).")
    filters = _filter(principal, operations, topic, group, transactional_id, cluster, prefixed)
    removed = 0
    for future in client.admin().delete_acls(filters, request_timeout=client.timeout).values():
        removed += len(client.result(future, "delete ACLs"))
    note(f"Removed {removed} ACL(s).")


@acl.command(name="list")
@click.option("--principal", help="Only this principal's ACLs.")
@_resource_options
@output_option
@client_command
def list_acls(client: Client, principal: str | None, topic: str | None, group: str | None, transactional_id: str | None,
              cluster: bool, prefixed: bool, output: str) -> None:
    """List ACLs, optionally for one principal or resource."""
    (f,) = _filter(principal, (), topic, group, transactional_id, cluster, prefixed)
    bindings = client.result(client.admin().describe_acls(f, request_timeout=client.timeout), "describe ACLs")
    rows = sorted(({"principal": b.principal, "permission": b.permission_type.name, "operation": b.operation.name,
                    "resource_type": b.restype.name, "resource": b.name, "pattern": b.resource_pattern_type.name,
                    "host": b.host} for b in bindings), key=lambda r: tuple(r.values()))
    if output == JSON:
        print_json(rows)
        return
    if not rows:
        note("No ACLs.")
        return
    print_table(["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE TYPE", "RESOURCE", "PATTERN", "HOST"],
                [tuple(r.values()) for r in rows])
