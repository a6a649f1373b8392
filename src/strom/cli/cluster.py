"""``strom cluster info``: the cluster id, controller, brokers (with racks) and how many topics
there are; ``strom cluster up``: a local cluster (a throwaway etcd and N brokers) until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from strom.cli.client import Client, client_command, fail, parse_key_values, sentence
from strom.cli.output import JSON, note, output_option, print_fields, print_json, print_table


@click.group()
def cluster() -> None:
    """Look at the cluster as a whole, or start a local one."""


def _brokers(client: Client, md: Any) -> tuple[str | None, int | None, list[dict[str, Any]]]:
    """(cluster id, controller id, brokers) from DescribeCluster, which knows racks; from the
    metadata when the broker does not answer DescribeCluster."""
    from confluent_kafka import KafkaException

    try:
        described = client.admin().describe_cluster(request_timeout=client.timeout).result(timeout=client.timeout + 1)
        brokers = [{"id": n.id, "host": n.host, "port": n.port, "rack": n.rack} for n in described.nodes]
        controller = described.controller.id if described.controller is not None else None
        return described.cluster_id, controller, sorted(brokers, key=lambda b: b["id"])
    except (KafkaException, TimeoutError):
        brokers = [{"id": b.id, "host": b.host, "port": b.port, "rack": None} for b in md.brokers.values()]
        controller = md.controller_id if md.controller_id >= 0 else None
        return md.cluster_id, controller, sorted(brokers, key=lambda b: b["id"])


@cluster.command()
@output_option
@client_command
def info(client: Client, output: str) -> None:
    """Show the cluster id, the controller, every broker, and topic and partition counts."""
    md = client.metadata()
    cluster_id, controller, brokers = _brokers(client, md)
    user_topics = [t for name, t in md.topics.items() if not name.startswith("__")]
    document = {
        "cluster_id": cluster_id,
        "controller_id": controller,
        "brokers": brokers,
        "topics": len(user_topics),
        "internal_topics": len(md.topics) - len(user_topics),
        "partitions": sum(len(t.partitions) for t in md.topics.values()),
        "bootstrap": client.brokers,
    }
    if output == JSON:
        print_json(document)
        return
    print_fields([
        ("Cluster id", cluster_id),
        ("Controller", controller),
        ("Topics", f"{document['topics']} (+{document['internal_topics']} internal)"),
        ("Partitions", document["partitions"]),
    ])
    click.echo()
    print_table(["ID", "HOST", "PORT", "RACK"], [(b["id"], b["host"], b["port"], b["rack"]) for b in brokers],
                title="Brokers", right=["ID", "PORT"])


# --- up -------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    # Only the first signal interrupts: later ones must not cut the clean stop short.
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, _stopping)
    raise KeyboardInterrupt


def _stopping(signum: int, frame: Any) -> None:
    note("Stopping the cluster; please wait.")


@cluster.command()
@click.option("-n", "--brokers", "count", type=click.IntRange(min=1), default=3,
              show_default=True, metavar="N", help="How many brokers.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the data here (DIR/etcd, DIR/broker-<id>); starting again on the same "
                   "directory brings the same cluster back. Default: a temporary directory.")
@click.option("--base-port", type=click.IntRange(min=1, max=65535), metavar="PORT",
              help="Broker i listens on PORT+i (its HTTP listener on a free port). Default: free "
                   "ports (kept in DIR with --data-dir).")
@click.option("--rack-count", type=click.IntRange(min=1), metavar="K",
              help="Spread the brokers over K racks (rack-0, rack-1, ...) round-robin.")
@click.option("--etcd", "etcd_endpoints", metavar="URL[,URL...]",
              help="Use this running etcd instead of starting one.")
@click.option("--set", "-o", "settings", multiple=True, metavar="KEY=VALUE",
              help="A Kafka-named broker setting for every broker, e.g. -o min.insync.replicas=2.")
@click.option("--startup-timeout", type=click.FloatRange(min=1), default=60, show_default=True,
              metavar="SECONDS", help="How long to wait for the cluster to form.")
@click.option("--supervised", is_flag=True, hidden=True)
@output_option(help="Print the addresses as a table for people or JSON for scripts.")
def up(count: int, data_dir: Path | None, base_port: int | None, rack_count: int | None,
       etcd_endpoints: str | None, settings: tuple[str, ...], startup_timeout: float,
       supervised: bool, output: str) -> None:
    """Start a local cluster: a throwaway etcd and N brokers, until Ctrl-C.

    \b
      strom cluster up --brokers 3
      strom cluster up --brokers 3 --data-dir ./cluster --base-port 19092
    Needs the etcd binary on PATH (Debian: apt-get install etcd-server).
    """
    if base_port is not None and base_port + count - 1 > 65535:
        raise click.BadParameter(f"{count} brokers from port {base_port} go past 65535",
                                 param_hint="--base-port")
    config = parse_key_values(settings, "--set")
    if not supervised:
        # The cluster runs in a child in a session of its own: a Ctrl-C at the terminal goes to
        # the whole foreground process group, and would stop etcd while the brokers still need
        # it (they could not give up their registrations, and the next start on the same data
        # would wait out their leases). This process only passes the signal on.
        args = ["cluster", "up", "--supervised", "--brokers", str(count),
                "--startup-timeout", str(startup_timeout), "--output", output]
        for flag, value in (("--data-dir", data_dir), ("--base-port", base_port),
                            ("--rack-count", rack_count), ("--etcd", etcd_endpoints)):
            if value is not None:
                args += [flag, str(value)]
        for key, value in config.items():
            args += ["--set", f"{key}={value}"]
        sys.exit(_supervise(args))
    _run_cluster(count, data_dir, base_port, rack_count, etcd_endpoints, config, startup_timeout,
                 output)


def _supervise(args: list[str]) -> int:
    """Run ``strom <args>`` in a new session, forward SIGINT / SIGTERM to it as SIGTERM, and
    return its exit code."""
    import subprocess

    from strom.embedded import _die_with_parent

    child = subprocess.Popen(
        [sys.executable, "-m", "strom", *args], stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )

    def forward(signum: int, frame: Any) -> None:
        child.terminate()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    return child.wait()  # retried after each handler (PEP 475)


def _run_cluster(count: int, data_dir: Path | None, base_port: int | None, rack_count: int | None,
                 etcd_endpoints: str | None, config: dict[str, str], startup_timeout: float,
                 output: str) -> None:
    from strom.cluster.etcd_server import EtcdNotFound
    from strom.testing.cluster import Cluster

    racks = [f"rack-{i}" for i in range(rack_count)] if rack_count else None
    try:
        harness = Cluster(count, data_dir=data_dir, config=config, racks=racks,
                          etcd_endpoints=etcd_endpoints, startup_timeout=startup_timeout,
                          base_port=base_port)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # SIGINT and SIGTERM stop the cluster at any point, start-up included (Cluster.start
    # stops what it started when interrupted).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    etcd = "etcd and " if etcd_endpoints is None else ""
    note(f"Starting {etcd}{count} broker{'s' if count > 1 else ''}...")
    try:
        harness.start()
    except KeyboardInterrupt:
        note("Interrupted; stopped.")
        return
    except EtcdNotFound as exc:
        fail(sentence(str(exc)))
    except (RuntimeError, TimeoutError, OSError) as exc:
        fail(f"The cluster did not start: {exc}")
    try:
        _show(harness, data_dir, output)
        note("Ctrl-C stops the cluster.")
        reported: set[int] = set()
        while True:
            time.sleep(0.5)
            for node in harness.nodes:
                if node not in reported and not harness.alive(node):
                    reported.add(node)
                    tail = "\n".join(harness.logs(node).splitlines()[-10:])
                    note(f"Broker {node} exited; its last lines:\n{tail}")
    except KeyboardInterrupt:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _stopping)
        note("Stopping the cluster...")
        harness.stop()
        note("Stopped." if data_dir is None else f"Stopped; the data stays in {data_dir}.")


def _http_address(harness: Any, node: int) -> str | None:
    """The broker's HTTP listener (metrics, health checks, console), None when it has none
    (``-o http.listener=off``)."""
    try:
        return str(harness.http_address(node))
    except RuntimeError:
        return None


def _show(harness: Any, data_dir: Path | None, output: str) -> None:
    brokers = [{"id": n, "address": harness.address(n), "http": _http_address(harness, n),
                "pid": harness.pid(n),
                "rack": harness.racks[n % len(harness.racks)] if harness.racks else None}
               for n in harness.nodes]
    document = {
        "bootstrap_servers": harness.bootstrap_servers,
        "etcd": harness.etcd_endpoint,
        "cluster_id": harness.cluster_id,
        "data_dir": str(harness.data_dir) if data_dir is not None else None,
        "brokers": brokers,
    }
    if output == JSON:
        print_json(document)
    else:
        print_fields([
            ("Bootstrap servers", document["bootstrap_servers"]),
            ("etcd", document["etcd"]),
            ("Cluster id", document["cluster_id"]),
            ("Data", document["data_dir"] or "a temporary directory, removed on exit"),
        ])
        click.echo()
        print_table(["ID", "ADDRESS", "HTTP", "RACK", "PID"],
                    [(b["id"], b["address"], b["http"], b["rack"], b["pid"]) for b in brokers],
                    title="Brokers", right=["ID", "PID"])
        click.echo()
        click.echo(f"Try: strom cluster info -b {document['bootstrap_servers']}")
        if brokers[0]["http"] is not None:
            click.echo(f"Console: http://{brokers[0]['http']}/ (broker 0)")
    sys.stdout.flush()
