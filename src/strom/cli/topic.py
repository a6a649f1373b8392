"""``strom topic create|list|describe|alter-config|add-partitions|delete``."""

from __future__ import annotations

from typing import Any

import click

from strom.cli.client import Client, clause, client_command, error_reason, fail, parse_key_values
from strom.cli.output import JSON, note, output_option, print_fields, print_json, print_table

# DescribeConfigs' ConfigSource, as people read it (JSON keeps Kafka's names).
SOURCE_WORDS = {
    "DYNAMIC_TOPIC_CONFIG": "topic",
    "DYNAMIC_BROKER_CONFIG": "broker (dynamic)",
    "DYNAMIC_DEFAULT_BROKER_CONFIG": "cluster default (dynamic)",
    "STATIC_BROKER_CONFIG": "broker (static)",
    "DEFAULT_CONFIG": "default",
    "UNKNOWN_CONFIG": "unknown",
}


@click.group()
def topic() -> None:
    """Create, inspect, change and delete topics."""


# --- create ---------------------------------------------------------------------------------------


@topic.command()
@click.argument("names", nargs=-1, required=True, metavar="TOPIC...")
@click.option("-p", "--partitions", type=click.IntRange(min=1), help="Partitions (default: the broker's num.partitions).")
@click.option("-r", "--replication-factor", "--replicas", "replicas", type=click.IntRange(min=1),
              metavar="N",
              help="Replicas of each partition (default: the broker's default.replication.factor).")
@click.option("-c", "--config", "configs", multiple=True, metavar="KEY=VALUE", help="A topic config, e.g. -c cleanup.policy=compact (repeatable).")
@click.option("--if-not-exists", is_flag=True, help="Succeed when the topic already exists.")
@output_option
@client_command
def create(client: Client, names: tuple[str, ...], partitions: int | None, replicas: int | None,
           configs: tuple[str, ...], if_not_exists: bool, output: str) -> None:
    """Create topics.

    \b
      strom topic create orders -p 6 -c retention.ms=86400000
      strom topic create payments -p 3 -r 3 -c min.insync.replicas=2
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    settings = parse_key_values(configs, "--config")
    admin = client.admin()
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions or -1, replication_factor=replicas or -1, config=settings) for n in names],
        request_timeout=client.timeout, operation_timeout=client.timeout,
    )
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            futures[name].result(timeout=client.timeout + 1)
            results.append({"topic": name, "created": True, "error": None})
        except KafkaException as exc:
            err = exc.args[0]
            if if_not_exists and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                results.append({"topic": name, "created": False, "error": None})
                continue
            reason = error_reason(err, topic=name)
            errors.append(f"Could not create topic '{name}': {clause(reason)}")
            results.append({"topic": name, "created": False, "error": reason})
    if output == JSON:
        print_json(results)
    else:
        rows = [(r["topic"], "created" if r["created"] else (r["error"] or "already exists")) for r in results]
        if any(r["created"] or not r["error"] for r in results):
            print_table(["TOPIC", "STATUS"], rows)
    if errors:
        fail(" ".join(errors))


# --- list -----------------------------------------------------------------------------------------


@topic.command(name="list")
@click.option("-i", "--internal", is_flag=True, help="Include internal topics (__consumer_offsets ...).")
@output_option
@client_command
def list_topics(client: Client, internal: bool, output: str) -> None:
    """List topics with their partition and replica counts."""
    md = client.metadata()
    topics = []
    for name in sorted(md.topics):
        if name.startswith("__") and not internal:
            continue
        t = md.topics[name]
        replicas = max((len(p.replicas) for p in t.partitions.values()), default=0)
        topics.append({"name": name, "partitions": len(t.partitions), "replicas": replicas})
    if output == JSON:
        print_json(topics)
        return
    if not topics:
        note("No topics.")
        return
    print_table(["NAME", "PARTITIONS", "REPLICAS"],
                [(t["name"], t["partitions"], t["replicas"]) for t in topics], right=["PARTITIONS", "REPLICAS"])


# --- describe -------------------------------------------------------------------------------------


def _sizes(client: Client, md: Any, topic: str, leaders: dict[int, int]) -> dict[int, int] | None:
    """Bytes on disk of each partition's leader replica (DescribeLogDirs), or None."""
    if not client.plaintext:
        return None
    from strom.cli.wire import partition_sizes

    sizes: dict[int, int] = {}
    by_broker: dict[int, list[int]] = {}
    for partition, leader in leaders.items():
        if leader >= 0:
            by_broker.setdefault(leader, []).append(partition)
    for broker_id, partitions in by_broker.items():
        broker = md.brokers.get(broker_id)
        if broker is None:
            return None
        answer = partition_sizes(broker.host, broker.port, topic, partitions, client.timeout)
        if answer is None:
            return None
        sizes.update({p: answer[p] for p in partitions if p in answer})
    return sizes


def _configs(client: Client, topic: str, include_defaults: bool) -> list[dict[str, Any]]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    resource = ConfigResource(ResourceType.TOPIC, topic)
    futures = client.admin().describe_configs([resource], request_timeout=client.timeout)
    entries = client.result(futures[resource], f"describe the configs of topic '{topic}'", topic=topic)
    configs = []
    for name in sorted(entries):
        entry = entries[name]
        if entry.is_default and not include_defaults:
            continue
        source = _source_name(entry.source)
        configs.append({
            "name": name,
            "value": None if entry.is_sensitive else entry.value,
            "source": source,
            "sensitive": bool(entry.is_sensitive),
        })
    return configs


def _source_name(source: Any) -> str:
    from confluent_kafka.admin import ConfigSource

    try:
        return ConfigSource(source).name
    except ValueError:
        return "UNKNOWN_CONFIG"


def human_bytes(n: int | None) -> str | None:
    if n is None:
        return None
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # pragma: no cover


def describe_one(client: Client, md: Any, name: str, all_configs: bool) -> dict[str, Any]:
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import OffsetSpec

    t = md.topics.get(name)
    if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        fail(f"Topic '{name}' does not exist.")
    if t.error is not None:
        fail(f"Could not describe topic '{name}': {error_reason(t.error, topic=name)}")
    partition_ids = sorted(t.partitions)
    keys = [(name, p) for p in partition_ids]
    earliest = {p: o for (_, p), o in client.list_offsets(keys, OffsetSpec.earliest()).items()}
    latest = {p: o for (_, p), o in client.list_offsets(keys, OffsetSpec.latest()).items()}
    leaders = {p: t.partitions[p].leader for p in partition_ids}
    sizes = _sizes(client, md, name, leaders)
    partitions = []
    for p in partition_ids:
        meta = t.partitions[p]
        start, end = earliest.get(p), latest.get(p)
        partitions.append({
            "partition": p,
            "leader": meta.leader,
            "replicas": list(meta.replicas),
            "isr": list(meta.isrs),
            # As Kafka reports them: replicas on brokers that are not alive (not in Metadata).
            "offline_replicas": [r for r in meta.replicas if r not in md.brokers],
            "log_start_offset": start,
            "high_watermark": end,
            "messages": end - start if start is not None and end is not None else None,
            "size_bytes": None if sizes is None else sizes.get(p),
            "error": None if meta.error is None else error_reason(meta.error, topic=name),
        })
    return {
        "name": name,
        "internal": name.startswith("__"),
        "partitions": partitions,
        "replication_factor": max((len(p["replicas"]) for p in partitions), default=0),
        "size_bytes": None if sizes is None else sum(sizes.values()),
        "configs": _configs(client, name, all_configs),
    }


def _ids(ids: list[int]) -> str:
    return ",".join(map(str, ids))


@topic.command()
@click.argument("names", nargs=-1, required=True, metavar="TOPIC...")
@click.option("-a", "--all-configs", is_flag=True, help="Show every config, not only those that differ from the defaults.")
@output_option
@client_command
def describe(client: Client, names: tuple[str, ...], all_configs: bool, output: str) -> None:
    """Show partitions (leader, replicas, ISR, offline replicas, offsets, size) and configs that
    differ from the defaults."""
    md = client.metadata()
    described = [describe_one(client, md, name, all_configs) for name in names]
    if output == JSON:
        print_json(described if len(described) > 1 else described[0])
        return
    for i, d in enumerate(described):
        if i:
            click.echo()
        size = human_bytes(d["size_bytes"])
        print_fields([
            ("Topic", d["name"]),
            ("Partitions", len(d["partitions"])),
            ("Replication factor", d["replication_factor"]),
            ("Size", size if size is not None else "unknown (the broker did not answer DescribeLogDirs)"),
        ])
        click.echo()
        # OFFLINE only when a replica's broker is down, so a healthy topic reads as before.
        offline = any(p["offline_replicas"] for p in d["partitions"])
        columns = ["PARTITION", "LEADER", "REPLICAS", "ISR", *(["OFFLINE"] if offline else []),
                   "LOG-START", "HIGH-WATERMARK", "MESSAGES", "SIZE"]
        rows = []
        for p in d["partitions"]:
            leader = p["leader"] if p["leader"] >= 0 else "none"
            row: list[Any] = [p["partition"], leader, _ids(p["replicas"]), _ids(p["isr"])]
            if offline:
                row.append(_ids(p["offline_replicas"]) or None)
            row += [p["log_start_offset"], p["high_watermark"], p["messages"],
                    human_bytes(p["size_bytes"])]
            rows.append(row)
        print_table(columns, rows,
                    right=["PARTITION", "LEADER", "LOG-START", "HIGH-WATERMARK", "MESSAGES", "SIZE"])
        click.echo()
        heading = "Configs" if all_configs else "Configs that differ from the defaults"
        if d["configs"]:
            print_table(["NAME", "VALUE", "SOURCE"],
                        [(c["name"], "(sensitive)" if c["sensitive"] else c["value"], SOURCE_WORDS.get(c["source"], c["source"]))
                         for c in d["configs"]], title=heading)
        else:
            click.echo("All configs have their default values.")


# --- alter-config ---------------------------------------------------------------------------------


@topic.command(name="alter-config")
@click.argument("name", metavar="TOPIC")
@click.option("-s", "--set", "to_set", multiple=True, metavar="KEY=VALUE", help="Set a config (repeatable).")
@click.option("-d", "--delete", "to_delete", multiple=True, metavar="KEY", help="Remove an override, back to the default (repeatable).")
@output_option
@client_command
def alter_config(client: Client, name: str, to_set: tuple[str, ...], to_delete: tuple[str, ...], output: str) -> None:
    """Set or remove topic config overrides (IncrementalAlterConfigs).

    \b
      strom topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
    """
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    if not to_set and not to_delete:
        raise click.UsageError("Give at least one --set KEY=VALUE or --delete KEY.")
    settings = parse_key_values(to_set, "--set")
    both = sorted(set(settings) & set(to_delete))
    if both:
        raise click.UsageError(f"{', '.join(both)} is both set and deleted.")
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in settings.items()]
    entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in to_delete]
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
    futures = client.admin().incremental_alter_configs([resource], request_timeout=client.timeout)
    client.result(futures[resource], f"change the configs of topic '{name}'", topic=name)
    if output == JSON:
        print_json({"topic": name, "set": settings, "deleted": list(to_delete)})
        return
    rows = [(k, v) for k, v in settings.items()] + [(k, "(default)") for k in to_delete]
    print_table(["NAME", "NEW VALUE"], rows, title=f"Updated topic '{name}'")


# --- add-partitions -------------------------------------------------------------------------------


@topic.command(name="add-partitions")
@click.argument("name", metavar="TOPIC")
@click.option("-n", "--num", type=click.IntRange(min=1), help="How many partitions to add.")
@click.option("--total", type=click.IntRange(min=1), help="The partition count to grow to.")
@output_option
@client_command
def add_partitions(client: Client, name: str, num: int | None, total: int | None, output: str) -> None:
    """Add partitions to a topic (partitions are never removed)."""
    from confluent_kafka.admin import NewPartitions

    if (num is None) == (total is None):
        raise click.UsageError("Give exactly one of --num N (partitions to add) or --total N.")
    before = len(client.topic_metadata(name).partitions)
    target = before + num if num is not None else total
    assert target is not None
    if target <= before:
        fail(f"Topic '{name}' already has {before} partitions; --total must be more than that.")
    futures = client.admin().create_partitions([NewPartitions(name, target)], request_timeout=client.timeout)
    client.result(futures[name], f"add partitions to topic '{name}'", topic=name)
    if output == JSON:
        print_json({"topic": name, "partitions": target, "added": target - before})
    else:
        click.echo(f"Topic '{name}' now has {target} partitions ({target - before} added).")


# --- delete ---------------------------------------------------------------------------------------


@topic.command()
@click.argument("names", nargs=-1, required=True, metavar="TOPIC...")
@click.option("--if-exists", is_flag=True, help="Succeed when a topic does not exist.")
@output_option
@client_command
def delete(client: Client, names: tuple[str, ...], if_exists: bool, output: str) -> None:
    """Delete topics and all their data."""
    from confluent_kafka import KafkaError, KafkaException

    futures = client.admin().delete_topics(list(names), request_timeout=client.timeout,
                                           operation_timeout=client.timeout)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            futures[name].result(timeout=client.timeout + 1)
            results.append({"topic": name, "deleted": True, "error": None})
        except KafkaException as exc:
            err = exc.args[0]
            if if_exists and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                results.append({"topic": name, "deleted": False, "error": None})
                continue
            reason = error_reason(err, topic=name)
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                errors.append(reason)
            else:
                errors.append(f"Could not delete topic '{name}': {clause(reason)}")
            results.append({"topic": name, "deleted": False, "error": reason})
    if output == JSON:
        print_json(results)
    else:
        rows = [(r["topic"], "deleted" if r["deleted"] else "did not exist") for r in results if not r["error"]]
        if rows:
            print_table(["TOPIC", "STATUS"], rows)
    if errors:
        fail(" ".join(errors))
