"""``strom quota list|set|remove``: client quotas (DescribeClientQuotas / AlterClientQuotas,
KIP-546), by user and client id as Kafka's kafka-configs --entity-type users/clients does.
confluent-kafka's AdminClient has no quota API, so these requests go over strom's own wire
client (with the -X security settings)."""

from __future__ import annotations

from typing import Any

import click

from strom.cli.client import DEFAULT_BROKERS, DEFAULT_TIMEOUT, fail, parse_key_values
from strom.cli.output import JSON, note, output_option, print_json, print_table
from strom.protocol import ApiKey
from strom.security.quotas import KEYS

DEFAULT_NAME = "<default>"


def _options(f: Any) -> Any:
    for option in reversed((
        click.option("--user", help="A user (principal name), or <default>."),
        click.option("--client-id", help="A client id, or <default>."),
        click.option("-b", "--brokers", envvar="STROM_BROKERS", default=DEFAULT_BROKERS, show_default=True),
        click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True),
        click.option("-X", "client_config", multiple=True, metavar="KEY=VALUE", help="A librdkafka security setting."),
    )):
        f = option(f)
    return f


def _entity(user: str | None, client_id: str | None) -> list[dict[str, Any]]:
    parts = [("user", user), ("client-id", client_id)]
    entity = [{"entity_type": t, "entity_name": None if n == DEFAULT_NAME else n} for t, n in parts if n is not None]
    if not entity:
        fail("Name an entity: --user and/or --client-id (<default> for the default).")
    return entity


def _call(brokers: str, timeout: float, client_config: tuple[str, ...], api_key: int, body: dict[str, Any]) -> Any:
    from strom.cli.wire import call

    try:
        return call(brokers, timeout, parse_key_values(client_config, "-X"), api_key, 1, body)
    except (ConnectionError, OSError) as exc:
        fail(f"Could not reach a broker at {brokers}: {exc}.")


def _alter(brokers: str, timeout: float, client_config: tuple[str, ...], entity: list[dict[str, Any]],
           ops: list[dict[str, Any]]) -> None:
    answer = _call(brokers, timeout, client_config, ApiKey.ALTER_CLIENT_QUOTAS,
                   {"entries": [{"entity": entity, "ops": ops}], "validate_only": False})
    for entry in answer.entries:
        if entry.error_code:
            fail(f"The broker refused: {entry.error_message or entry.error_code}.")


@click.group()
def quota() -> None:
    """Client quotas (producer_byte_rate, consumer_byte_rate, request_percentage)."""


@quota.command(name="set")
@click.argument("values", nargs=-1, required=True, metavar="KEY=VALUE...")
@_options
def set_quota(values: tuple[str, ...], user: str | None, client_id: str | None, brokers: str, timeout: float,
              client_config: tuple[str, ...]) -> None:
    """Set quotas, e.g. producer_byte_rate=1048576 --user alice."""
    ops: list[dict[str, Any]] = []
    for key, value in parse_key_values(values, "KEY=VALUE").items():
        if key not in KEYS:
            fail(f"Unknown quota '{key}': one of {', '.join(KEYS)}.")
        try:
            ops.append({"key": key, "value": float(value), "remove": False})
        except ValueError:
            fail(f"The value of {key} must be a number, not '{value}'.")
    _alter(brokers, timeout, client_config, _entity(user, client_id), ops)
    note(f"Set {', '.join(o['key'] for o in ops)}.")


@quota.command(name="remove")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@_options
def remove_quota(keys: tuple[str, ...], user: str | None, client_id: str | None, brokers: str, timeout: float,
                 client_config: tuple[str, ...]) -> None:
    """Remove quotas of an entity."""
    _alter(brokers, timeout, client_config, _entity(user, client_id),
           [{"key": k, "value": 0.0, "remove": True} for k in keys])
    note(f"Removed {', '.join(keys)}.")


@quota.command(name="list")
@output_option
@_options
def list_quotas(user: str | None, client_id: str | None, brokers: str, timeout: float, client_config: tuple[str, ...],
                output: str) -> None:
    """List quotas (all, or those of a user / client id)."""
    components = [{"entity_type": t, "match_type": 1 if n == DEFAULT_NAME else 0, "match": None if n == DEFAULT_NAME else n}
                  for t, n in (("user", user), ("client-id", client_id)) if n is not None]
    answer = _call(brokers, timeout, client_config, ApiKey.DESCRIBE_CLIENT_QUOTAS, {"components": components, "strict": False})
    if answer.error_code:
        fail(f"The broker refused: {answer.error_message or answer.error_code}.")
    rows: list[dict[str, Any]] = [{"user": next((DEFAULT_NAME if e.entity_name is None else e.entity_name for e in entry.entity
                           if e.entity_type == "user"), None),
             "client_id": next((DEFAULT_NAME if e.entity_name is None else e.entity_name for e in entry.entity
                                if e.entity_type == "client-id"), None),
             "quotas": {v.key: v.value for v in entry.values}} for entry in answer.entries or ()]
    if output == JSON:
        print_json(rows)
        return
    if not rows:
        note("No quotas.")
        return
    print_table(["USER", "CLIENT-ID", "QUOTAS"], [(r["user"], r["client_id"], ", ".join(f"{k}={v:g}" for k, v in sorted(r["quotas"].items())))
                                                  for r in rows])
