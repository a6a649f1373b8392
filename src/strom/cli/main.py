"""The ``strom`` command. ``strom serve`` runs a broker; client commands come later."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import click

from strom.metadata.broker_config import BrokerConfigError, load_broker_config


def _run(config) -> None:  # noqa: ANN001 - BrokerConfig
    from strom.server.broker import Broker

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        uvloop = None

    async def main() -> None:
        broker = Broker(config)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"strom listening on {config.listen_host}:{broker.port}", err=True)
        await stop.wait()
        await broker.stop()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


@click.group()
def cli() -> None:
    """strom: a Kafka-protocol event streaming broker."""


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where logs and metadata live (log.dirs). Default ./data")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (listeners). Default 127.0.0.1:9092")
@click.option("--advertise", metavar="HOST:PORT", help="Address clients are told to use (advertised.listeners)")
@click.option("--node-id", type=int, help="This broker's node id (node.id). Default 0")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A strom.toml file with Kafka-named settings")
@click.option("--set", "-o", "settings", multiple=True, metavar="KEY=VALUE", help="Any Kafka-named setting, e.g. -o num.partitions=3")
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def serve(data_dir, listen, advertise, node_id, config_file, settings, log_level) -> None:  # noqa: ANN001
    """Run a broker (single node by default: node 0, data in ./data, port 9092)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides: dict[str, str] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = value.strip()
    if data_dir is not None:
        overrides["log.dirs"] = str(data_dir)
    if listen is not None:
        overrides["listeners"] = f"PLAINTEXT://{listen}"
    if advertise is not None:
        overrides["advertised.listeners"] = f"PLAINTEXT://{advertise}"
    if node_id is not None:
        overrides["node.id"] = str(node_id)
    try:
        config = load_broker_config(config_file, os.environ, overrides)
    except BrokerConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _run(config)
    except OSError as exc:
        raise click.ClickException(f"cannot start the broker: {exc}") from None


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
