"""The ``strom`` command: ``strom serve`` runs a broker; the client commands (topic, produce,
consume, group, cluster) talk to any Kafka-compatible broker through confluent-kafka and live
in their own modules, which import confluent_kafka only when they run."""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from strom.cli.acl import acl
from strom.cli.cluster import cluster
from strom.cli.consume import consume
from strom.cli.group import group
from strom.cli.output import JSON, output_option, print_json, print_table
from strom.cli.produce import produce
from strom.cli.quota import quota
from strom.cli.topic import topic
from strom.cli.user import user

if TYPE_CHECKING:
    from strom.metadata.broker_config import BrokerConfig


DEFAULT_HTTP = "127.0.0.1:9644"


def _run(config: BrokerConfig, http_required: bool = True) -> None:
    import asyncio
    import gc
    import signal

    from strom.server.broker import Broker

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        uvloop = None  # type: ignore[assignment]

    async def main() -> None:
        broker = Broker(config, http_required=http_required)
        await broker.start()
        # Everything loaded so far (modules, message classes, logs) lives as long as the
        # process: keep it out of the collector, so that a full collection pass does not
        # stall requests for milliseconds, and collect the young generation less often.
        # Only the dedicated `serve` process does this; an embedded broker leaves the
        # host's GC alone.
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        others = [f"{name} on port {port}" for name, port in list(broker.ports.items())[1:]]
        click.echo(f"strom listening on {config.listen_host}:{broker.port}" + (f" (also {', '.join(others)})" if others else ""), err=True)
        await stop.wait()
        await broker.stop()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


def effective_config(
    config_file: Path | None, env: dict[str, str], overrides: dict[str, str]
) -> list[dict[str, str | None]]:
    """Every broker config by Kafka name with its effective value and where it came from
    (flag > env > file > default, the order load_broker_config merges them in)."""
    from strom.metadata.broker_config import ENV_NAMES, load_broker_config
    from strom.metadata.configs import BROKER_CONFIGS

    config = load_broker_config(config_file, env, overrides)  # validates everything
    from_file = load_broker_config(config_file, {}, {}).values if config_file is not None else {}
    env_vars = {ENV_NAMES[var]: var for var in env if var in ENV_NAMES}
    rows: list[dict[str, str | None]] = []
    for name, defn in sorted(BROKER_CONFIGS.items()):
        if name in overrides:
            source, origin = "flag", None
        elif name in env_vars:
            source, origin = "env", env_vars[name]
        elif name in from_file:
            source, origin = "file", str(config_file)
        else:
            source, origin = "default", None
        value = config.values.get(name, defn.default)
        if defn.sensitive and value is not None:
            value = "(sensitive)"
        rows.append({"name": name, "value": value, "source": source, "origin": origin})
    return rows


def _reader_went_away() -> NoReturn:
    """A reader that goes away (``strom group describe g | head -1``) is a normal end for any
    command: stop writing, exit 0, no message. Not 1 (click's and rich's default), which says
    the command failed, nor 141 (128 + SIGPIPE, how a process killed by the signal ends): the
    user chose to stop reading and nothing failed, so ``set -o pipefail`` scripts that pipe
    into ``head`` or ``grep -q`` keep working, as with Kafka's own (JVM) tools and as
    ``strom consume`` always did. As CPython's docs advise (signal module, "Note on SIGPIPE"),
    stdout goes to devnull so that the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


class _Strom(click.Group):
    """The root command: every output, --help included, is written inside these two calls,
    so a closed pipe is handled here once (click would exit 1 silently, a command's own error
    handling would report a bug)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            _reader_went_away()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here rather than at the interpreter's exit
            return result
        except BrokenPipeError:
            _reader_went_away()


@click.group(cls=_Strom, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="strom", prog_name="strom")
def cli() -> None:
    """strom: a Kafka-protocol event streaming broker, and a client for any Kafka cluster.

    \b
    Client commands find the cluster through -b/--brokers, else STROM_BROKERS,
    else 127.0.0.1:9092; every one of them takes --output json for scripts.
    """


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where logs and metadata live (log.dirs). Default ./data")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (listeners). Default 127.0.0.1:9092")
@click.option("--advertise", metavar="HOST:PORT", help="Address clients are told to use (advertised.listeners)")
@click.option("--node-id", type=int, help="This broker's node id (node.id). Default 0")
@click.option("--etcd", metavar="URL[,URL...]", help="Join a cluster whose metadata is in etcd (etcd.endpoints), e.g. http://127.0.0.1:2379")
@click.option("--cluster-id", help="The cluster's name in etcd (cluster.id). Default strom")
@click.option("--rack", help="This broker's rack, for rack-aware replica placement (broker.rack)")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A strom.toml file with Kafka-named settings")
@click.option("--set", "-o", "settings", multiple=True, metavar="KEY=VALUE", help="Any Kafka-named setting, e.g. -o num.partitions=3")
@click.option("--http", "http", metavar="HOST:PORT|off",
              help="HTTP listener for the web console, /metrics, /healthz, /readyz (http.listener). Default 127.0.0.1:9644 (a busy port only warns)")
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.option("--print-config", is_flag=True, help="Print the effective config (value and source of each setting) and exit.")
@output_option
def serve(
    data_dir: Path | None, listen: str | None, advertise: str | None, node_id: int | None, etcd: str | None,
    cluster_id: str | None, rack: str | None, config_file: Path | None, settings: tuple[str, ...], http: str | None,
    log_level: str, print_config: bool, output: str,
) -> None:
    """Run a broker (single node by default: node 0, data in ./data, port 9092).

    Settings come from --config (a TOML file of Kafka names), then STROM_<NAME>
    environment variables (STROM_NUM_PARTITIONS=3), then flags; later ones win.
    """
    # Imported here so that the client commands and --help start without the broker's modules.
    from strom.metadata.broker_config import BrokerConfigError, load_broker_config

    overrides: dict[str, str] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = value.strip()
    if data_dir is not None:
        overrides["log.dirs"] = str(data_dir)
    if listen is not None:
        if "listeners" in overrides:
            raise click.BadParameter("give either --listen or -o listeners=..., not both", param_hint="--listen")
        overrides["listeners"] = f"PLAINTEXT://{listen}"
    if advertise is not None:
        overrides["advertised.listeners"] = f"PLAINTEXT://{advertise}"
    if node_id is not None:
        overrides["node.id"] = str(node_id)
    if etcd is not None:
        overrides["etcd.endpoints"] = etcd
    if cluster_id is not None:
        overrides["cluster.id"] = cluster_id
    if rack is not None:
        overrides["broker.rack"] = rack
    if http is not None:
        overrides["http.listener"] = http
    if print_config:
        try:
            rows = effective_config(config_file, dict(os.environ), overrides)
        except BrokerConfigError as exc:
            raise click.ClickException(str(exc)) from None
        if output == JSON:
            print_json({r["name"]: {"value": r["value"], "source": r["source"], "origin": r["origin"]} for r in rows})
        else:
            print_table(["NAME", "VALUE", "SOURCE"],
                        [(r["name"], r["value"], f"{r['source']}" + (f" ({r['origin']})" if r["origin"] else ""))
                         for r in rows])
        return
    try:
        config = load_broker_config(config_file, os.environ, overrides)
    except BrokerConfigError as exc:
        raise click.ClickException(str(exc)) from None
    http_required = "http.listener" in config.values
    if not http_required:
        config.values["http.listener"] = DEFAULT_HTTP
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        _run(config, http_required)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # found before the data directory is touched
            raise click.ClickException(
                f"cannot start the broker: {config.listen_host}:{config.listen_port} is already in use "
                "(another broker? choose a port with --listen)."
            ) from None
        raise click.ClickException(f"cannot start the broker: {exc}") from None
    except BrokerConfigError as exc:  # found when the listeners are set up (key stores, SASL, HTTP)
        raise click.ClickException(str(exc)) from None


for command in (topic, produce, consume, group, cluster, user, acl, quota):
    cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
