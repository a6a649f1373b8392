"""``strom user list|add|delete``: SCRAM users (SASL PLAIN checks the same users).

Online through the AdminClient (Describe/AlterUserScramCredentials, KIP-554: the password is
salted and hashed by the client). Offline with ``--data-dir``, before the broker's first
start, as Kafka's ``kafka-storage format --add-scram`` does: the credential goes straight
into the data directory's metadata (single node; a cluster keeps its users in etcd, so add
them online)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

import click

from strom.cli.client import Client, client_command, fail
from strom.cli.output import JSON, note, output_option, print_json, print_table
from strom.security.scram import MECHANISMS, MIN_ITERATIONS, make_credential

_mechanism_option = click.option(
    "--mechanism", "mechanisms", multiple=True, type=click.Choice(MECHANISMS), default=("SCRAM-SHA-256",),
    show_default=True, help="SCRAM mechanism (repeatable).",
)


@click.group()
def user() -> None:
    """Manage SCRAM users (for SASL SCRAM-SHA-256/512 and PLAIN)."""


def _mechanism_enum(name: str) -> Any:
    from confluent_kafka.admin import ScramMechanism

    return ScramMechanism.SCRAM_SHA_256 if name == "SCRAM-SHA-256" else ScramMechanism.SCRAM_SHA_512


def _offline(data_dir: Path, change: Any) -> None:
    """Edit a stopped broker's metadata under its data directory's lock."""
    from strom.log.manager import LOCK_FILE
    from strom.metadata.store import LocalMetadataStore

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fail(f"A broker is running on {data_dir}: stop it, or add the user online (without --data-dir).")
        asyncio.run(change(LocalMetadataStore(data_dir)))
    finally:
        os.close(fd)


@user.command(name="add")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The user's password.")
@_mechanism_option
@click.option("--iterations", type=click.IntRange(MIN_ITERATIONS, 16384), default=MIN_ITERATIONS, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Offline: write into this (stopped) broker's data directory instead of asking a broker.")
@click.option("-b", "--brokers", envvar="STROM_BROKERS", default="127.0.0.1:9092", show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.option("-X", "client_config", multiple=True, metavar="KEY=VALUE", help="A librdkafka client setting.")
def add_user(name: str, password: str, mechanisms: tuple[str, ...], iterations: int, data_dir: Path | None,
             brokers: str, timeout: float, client_config: tuple[str, ...]) -> None:
    """Create a user, or set a new password for one."""
    if data_dir is not None:
        credentials = [(name, make_credential(m, password, iterations)) for m in mechanisms]
        _offline(data_dir, lambda store: store.alter_scram_credentials(credentials, []))
        note(f"User {name} added to {data_dir} ({', '.join(mechanisms)}).")
        return
    from confluent_kafka.admin import ScramCredentialInfo, UserScramCredentialUpsertion

    _online(brokers, timeout, client_config, [
        UserScramCredentialUpsertion(name, ScramCredentialInfo(_mechanism_enum(m), iterations), password.encode())
        for m in mechanisms], f"add user {name}")
    note(f"User {name} added ({', '.join(mechanisms)}).")


@user.command(name="delete")
@click.argument("name")
@_mechanism_option
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Offline: edit this (stopped) broker's data directory.")
@click.option("-b", "--brokers", envvar="STROM_BROKERS", default="127.0.0.1:9092", show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.option("-X", "client_config", multiple=True, metavar="KEY=VALUE", help="A librdkafka client setting.")
def delete_user(name: str, mechanisms: tuple[str, ...], data_dir: Path | None, brokers: str, timeout: float,
                client_config: tuple[str, ...]) -> None:
    """Delete a user's credentials for the given mechanisms."""
    if data_dir is not None:
        _offline(data_dir, lambda store: store.alter_scram_credentials([], [(name, m) for m in mechanisms]))
    else:
        from confluent_kafka.admin import UserScramCredentialDeletion

        _online(brokers, timeout, client_config, [UserScramCredentialDeletion(name, _mechanism_enum(m)) for m in mechanisms],
                f"delete user {name}")
    note(f"User {name} deleted ({', '.join(mechanisms)}).")


def _online(brokers: str, timeout: float, client_config: tuple[str, ...], alterations: list[Any], action: str) -> None:
    from strom.cli.client import parse_key_values

    client = Client(brokers, timeout, parse_key_values(client_config, "-X"))
    futures = client.admin().alter_user_scram_credentials(alterations, request_timeout=timeout)
    for future in futures.values():
        client.result(future, action)


@user.command(name="list")
@output_option
@client_command
def list_users(client: Client, output: str) -> None:
    """List users and their SCRAM mechanisms."""
    described = client.result(client.admin().describe_user_scram_credentials(request_timeout=client.timeout), "list users")
    rows = sorted(
        ({"user": name, "mechanisms": [{"mechanism": i.mechanism.name.replace("_", "-"), "iterations": i.iterations}
                                       for i in d.scram_credential_infos]} for name, d in described.items()),
        key=lambda r: r["user"],
    )
    if output == JSON:
        print_json(rows)
        return
    if not rows:
        note("No users.")
        return
    print_table(["USER", "MECHANISMS"], [(r["user"], ", ".join(f"{m['mechanism']} ({m['iterations']})" for m in r["mechanisms"]))
                                         for r in rows])
