"""``strom cluster info``: the cluster id, controller, brokers and how many topics there are."""

from __future__ import annotations

from typing import Any

import click

from strom.cli.client import Client, client_command
from strom.cli.output import JSON, output_option, print_fields, print_json, print_table


@click.group()
def cluster() -> None:
    """Look at the cluster as a whole."""


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
