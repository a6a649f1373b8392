"""``strom group list|describe|reset-offsets|delete``: consumer groups through the AdminClient.

Lag is the partition's end offset (high watermark) minus the group's committed offset.
reset-offsets follows Kafka's kafka-consumer-groups tool: only an empty group's offsets may
be changed, new offsets are clamped to the partition's [log start, end], and --shift-by needs
a committed offset to shift from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from strom.cli.client import Client, clause, client_command, error_reason, fail
from strom.cli.consume import parse_timestamp
from strom.cli.output import JSON, note, output_option, print_fields, print_json, print_table

# States in which the group has no members, so its offsets may be reset.
RESETTABLE_STATES = {"EMPTY", "DEAD", "UNKNOWN"}


@click.group()
def group() -> None:
    """Inspect consumer groups, reset their offsets and delete them."""


def _state_name(state: Any) -> str:
    return getattr(state, "name", str(state)).upper()


def _type_name(listed: Any) -> str:
    """classic or consumer (KIP-848), from a group listing or description."""
    kind = getattr(listed, "type", None)
    name = getattr(kind, "name", "") if kind is not None else ""
    return name.lower() if name and name != "UNKNOWN" else "classic"


# --- list -----------------------------------------------------------------------------------------


@group.command(name="list")
@output_option
@client_command
def list_groups(client: Client, output: str) -> None:
    """List consumer groups and their states."""
    client.require_groups()
    admin = client.admin()
    listed = client.result(admin.list_consumer_groups(request_timeout=client.timeout), "list consumer groups")
    for err in listed.errors or []:
        kerr = err.args[0] if getattr(err, "args", None) else err
        note(f"Warning: a broker could not list its groups: {error_reason(kerr) if hasattr(kerr, 'code') else err}")
    groups = sorted(
        [*({"group": g.group_id, "type": _type_name(g), "state": _state_name(g.state),
            "simple": bool(g.is_simple_consumer_group)} for g in listed.valid or []),
         *_share_groups(client)],
        key=lambda g: g["group"],
    )
    if output == JSON:
        print_json(groups)
        return
    if not groups:
        note("No consumer groups.")
        return
    print_table(["GROUP", "TYPE", "STATE"], [(g["group"], g["type"], g["state"].lower()) for g in groups])


def _share_groups(client: Client) -> list[dict[str, Any]]:
    """KIP-932 share groups, which librdkafka's group listing leaves out: ListGroups v5 with the
    type filter, to every broker (each lists the groups it coordinates)."""
    from strom.cli.wire import call
    from strom.protocol.api import ApiKey

    metadata = client.admin().list_topics(timeout=client.timeout)
    groups: dict[str, dict[str, Any]] = {}
    for broker in metadata.brokers.values():
        try:
            answer = call(f"{broker.host}:{broker.port}", client.timeout, client.extra, ApiKey.LIST_GROUPS, 5,
                          {"states_filter": [], "types_filter": ["share"]})
        except (ConnectionError, OSError):
            continue
        for g in answer.groups:
            groups[g.group_id] = {"group": g.group_id, "type": "share", "state": g.group_state.upper(), "simple": False}
    return list(groups.values())


# --- describe -------------------------------------------------------------------------------------


def _committed(client: Client, group_id: str, partitions: list[Any] | None = None) -> dict[tuple[str, int], int]:
    """The group's committed offsets; partitions with no committed offset are left out."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = ConsumerGroupTopicPartitions(group_id, partitions)
    futures = client.admin().list_consumer_group_offsets([request], request_timeout=client.timeout)
    answer = client.result(futures[group_id], f"read the offsets of consumer group '{group_id}'", group=group_id)
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions or []
            if tp.error is None and tp.offset is not None and tp.offset >= 0}


def _describe_group(client: Client, group_id: str) -> Any:
    futures = client.admin().describe_consumer_groups([group_id], request_timeout=client.timeout)
    return client.result(futures[group_id], f"describe consumer group '{group_id}'", group=group_id)


def _describe_share(client: Client, group_id: str) -> dict[str, Any] | None:
    """A KIP-932 share group (ShareGroupDescribe and DescribeShareGroupOffsets at its
    coordinator, which librdkafka's admin client does not send); None for other groups."""
    from strom.cli.wire import call
    from strom.protocol.api import ApiKey

    try:
        found = call(client.brokers, client.timeout, client.extra, ApiKey.FIND_COORDINATOR, 4,
                     {"key_type": 0, "coordinator_keys": [group_id]}).coordinators[0]
        if found.error_code:
            return None
        at = f"{found.host}:{found.port}"
        described = call(at, client.timeout, client.extra, ApiKey.SHARE_GROUP_DESCRIBE, 1,
                         {"group_ids": [group_id], "include_authorized_operations": False}).groups[0]
        if described.error_code:
            return None
        offsets = call(at, client.timeout, client.extra, ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, 1,
                       {"groups": [{"group_id": group_id, "topics": None}]}).groups[0]
    except (ConnectionError, OSError, IndexError):
        return None
    owners: dict[tuple[str, int], list[Any]] = {}
    members = []
    for m in described.members:
        assigned = sorted((tp.topic_name, p) for tp in m.assignment.topic_partitions for p in tp.partitions)
        for key in assigned:
            owners.setdefault(key, []).append(m)
        members.append({"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host,
                        "group_instance_id": None, "partitions": [{"topic": t, "partition": p} for t, p in assigned]})
    partitions = []
    for topic in offsets.topics:
        for p in topic.partitions:
            holders = owners.get((topic.topic_name, p.partition_index), [])
            partitions.append({
                "topic": topic.topic_name, "partition": p.partition_index,
                "committed_offset": p.start_offset if p.start_offset >= 0 else None, "end_offset": None,
                "lag": p.lag if p.lag >= 0 else None,
                "member_id": ",".join(m.member_id for m in holders) or None,
                "client_id": ",".join(m.client_id for m in holders) or None,
                "host": ",".join(m.client_host for m in holders) or None,
            })
    from confluent_kafka.admin import OffsetSpec

    ends = client.list_offsets([(p["topic"], p["partition"]) for p in partitions], OffsetSpec.latest())
    for p in partitions:
        p["end_offset"] = ends.get((p["topic"], p["partition"]))
    return {"group": group_id, "type": "share", "state": described.group_state.upper(), "protocol": described.assignor_name,
            "coordinator": {"id": found.node_id, "host": found.host, "port": found.port}, "members": members,
            "partitions": partitions, "total_lag": sum(p["lag"] for p in partitions if p["lag"] is not None)}


def describe_one(client: Client, group_id: str) -> dict[str, Any]:
    from confluent_kafka.admin import OffsetSpec

    share = _describe_share(client, group_id)
    if share is not None:
        return share
    description = _describe_group(client, group_id)
    committed = _committed(client, group_id)
    if _state_name(description.state) == "DEAD" and not description.members and not committed:
        fail(f"Consumer group '{group_id}' does not exist.")
    owner: dict[tuple[str, int], Any] = {}
    members = []
    for m in description.members or []:
        assigned = [(tp.topic, tp.partition) for tp in (m.assignment.topic_partitions if m.assignment else [])]
        for tp in assigned:
            owner[tp] = m
        members.append({"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                        "group_instance_id": m.group_instance_id,
                        "partitions": [{"topic": t, "partition": p} for t, p in sorted(assigned)]})
    keys = sorted(set(committed) | set(owner))
    ends = client.list_offsets(keys, OffsetSpec.latest())
    partitions = []
    for key in keys:
        offset, end = committed.get(key), ends.get(key)
        member = owner.get(key)
        partitions.append({
            "topic": key[0], "partition": key[1], "committed_offset": offset, "end_offset": end,
            "lag": max(end - offset, 0) if offset is not None and end is not None else None,
            "member_id": member.member_id if member else None,
            "client_id": member.client_id if member else None,
            "host": member.host if member else None,
        })
    coordinator = description.coordinator
    return {
        "group": group_id,
        "type": _type_name(description),
        "state": _state_name(description.state),
        "protocol": description.partition_assignor or None,
        "coordinator": None if coordinator is None else {"id": coordinator.id, "host": coordinator.host, "port": coordinator.port},
        "members": members,
        "partitions": partitions,
        "total_lag": sum(p["lag"] for p in partitions if p["lag"] is not None),
    }


@group.command()
@click.argument("group_ids", nargs=-1, required=True, metavar="GROUP...")
@output_option
@client_command
def describe(client: Client, group_ids: tuple[str, ...], output: str) -> None:
    """Show a group's state, members and per-partition committed offset, end offset and lag."""
    client.require_groups()
    described = [describe_one(client, g) for g in group_ids]
    if output == JSON:
        print_json(described if len(described) > 1 else described[0])
        return
    for i, d in enumerate(described):
        if i:
            click.echo()
        coordinator = d["coordinator"]
        print_fields([
            ("Group", d["group"]),
            ("Type", d["type"]),
            ("State", d["state"].lower()),
            ("Assignor", d["protocol"]),
            ("Coordinator", f"{coordinator['id']} ({coordinator['host']}:{coordinator['port']})" if coordinator else None),
            ("Members", len(d["members"])),
            ("Total lag", d["total_lag"]),
        ])
        click.echo()
        if d["partitions"]:
            print_table(
                ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER", "CLIENT-ID", "HOST"],
                [(p["topic"], p["partition"], p["committed_offset"], p["end_offset"], p["lag"],
                  p["member_id"], p["client_id"], p["host"]) for p in d["partitions"]],
                right=["PARTITION", "COMMITTED", "END", "LAG"],
            )
        else:
            click.echo("The group has no committed offsets and no assigned partitions.")


# --- reset-offsets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicSelection:
    topic: str
    partitions: tuple[int, ...] | None  # None: every partition


class TopicSelectionParam(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """``TOPIC`` or ``TOPIC:0,1,2`` (Kafka's tool writes it the same way)."""

    name = "TOPIC[:PARTITIONS]"

    def convert(self, value: Any, param: Any, ctx: Any) -> TopicSelection:
        if isinstance(value, TopicSelection):
            return value
        topic, sep, rest = str(value).partition(":")
        if not topic:
            self.fail(f"'{value}' names no topic", param, ctx)
        if not sep:
            return TopicSelection(topic, None)
        try:
            partitions = tuple(sorted({int(p) for p in rest.split(",") if p.strip()}))
        except ValueError:
            self.fail(f"'{rest}' is not a comma-separated list of partition numbers", param, ctx)
        if not partitions or min(partitions) < 0:
            self.fail(f"'{rest}' is not a comma-separated list of partition numbers", param, ctx)
        return TopicSelection(topic, partitions)


def _target_partitions(client: Client, group_id: str, topics: tuple[TopicSelection, ...],
                       all_topics: bool, committed: dict[tuple[str, int], int]) -> list[tuple[str, int]]:
    if all_topics:
        if not committed:
            fail(f"Consumer group '{group_id}' has no committed offsets; name the topics with --topic.")
        return sorted(committed)
    md = client.metadata()
    chosen: set[tuple[str, int]] = set()
    for sel in topics:
        t = md.topics.get(sel.topic)
        if t is None or t.error is not None:
            fail(f"Topic '{sel.topic}' does not exist.")
        for p in sel.partitions or sorted(t.partitions):
            if p not in t.partitions:
                fail(f"Topic '{sel.topic}' has {len(t.partitions)} partition(s); there is no partition {p}.")
            chosen.add((sel.topic, p))
    return sorted(chosen)


@group.command(name="reset-offsets")
@click.argument("group_id", metavar="GROUP")
@click.option("-t", "--topic", "topics", type=TopicSelectionParam(), multiple=True,
              help="A topic, or TOPIC:0,1 for some of its partitions (repeatable).")
@click.option("--all-topics", is_flag=True, help="Every topic the group has committed offsets for.")
@click.option("--to-earliest", is_flag=True, help="To the log start offset.")
@click.option("--to-latest", is_flag=True, help="To the end offset (skip everything so far).")
@click.option("--to-offset", type=int, metavar="N", help="To offset N (clamped to the partition's range).")
@click.option("--to-timestamp", metavar="TIME", help="To the first record at or after TIME (ms or ISO 8601).")
@click.option("--shift-by", type=int, metavar="N", help="Move the committed offset by N (negative goes back).")
@click.option("--dry-run", is_flag=True, help="Print the plan without changing anything.")
@output_option
@client_command
def reset_offsets(client: Client, group_id: str, topics: tuple[TopicSelection, ...], all_topics: bool,
                  to_earliest: bool, to_latest: bool, to_offset: int | None, to_timestamp: str | None,
                  shift_by: int | None, dry_run: bool, output: str) -> None:
    """Move an empty group's committed offsets.

    \b
      strom group reset-offsets billing --topic orders --to-earliest --dry-run
      strom group reset-offsets billing --all-topics --shift-by -100
      strom group reset-offsets billing --topic orders:0,1 --to-timestamp 2024-05-01T00:00:00Z
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    chosen = [name for name, on in (("--to-earliest", to_earliest), ("--to-latest", to_latest),
                                    ("--to-offset", to_offset is not None), ("--to-timestamp", to_timestamp is not None),
                                    ("--shift-by", shift_by is not None)) if on]
    if len(chosen) != 1:
        raise click.UsageError("Give exactly one of --to-earliest, --to-latest, --to-offset, --to-timestamp, --shift-by.")
    if bool(topics) == all_topics:
        raise click.UsageError("Give --topic (one or more) or --all-topics.")
    timestamp: int | None = None
    if to_timestamp is not None:
        try:
            timestamp = parse_timestamp(to_timestamp)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--to-timestamp") from None

    client.require_groups()
    description = _describe_group(client, group_id)
    state = _state_name(description.state)
    members = len(description.members or [])
    if state not in RESETTABLE_STATES or members:
        fail(f"Consumer group '{group_id}' is {state.lower()} with {members} member(s); offsets can be reset only "
             f"when the group is empty, so stop its consumers first.")
    committed = _committed(client, group_id)
    targets = _target_partitions(client, group_id, topics, all_topics, committed)

    earliest = client.list_offsets(targets, OffsetSpec.earliest())
    latest = client.list_offsets(targets, OffsetSpec.latest())
    by_time = client.list_offsets(targets, OffsetSpec.for_timestamp(timestamp)) if timestamp is not None else {}
    plan: list[dict[str, Any]] = []
    for key in targets:
        low, high = earliest.get(key), latest.get(key)
        if low is None or high is None:
            fail(f"Could not read the offsets of {key[0]} partition {key[1]}.")
        current = committed.get(key)
        if to_earliest:
            new = low
        elif to_latest:
            new = high
        elif to_offset is not None:
            new = to_offset
        elif timestamp is not None:
            found = by_time.get(key, -1)
            new = found if found is not None and found >= 0 else high
        else:
            if current is None:
                fail(f"Cannot shift the offset of {key[0]} partition {key[1]}: consumer group '{group_id}' "
                     f"has no committed offset there.")
            assert shift_by is not None
            new = current + shift_by
        new = min(max(new, low), high)
        plan.append({"topic": key[0], "partition": key[1], "current_offset": current, "new_offset": new,
                     "log_start_offset": low, "end_offset": high})

    if not dry_run and plan:
        request = ConsumerGroupTopicPartitions(
            group_id, [TopicPartition(p["topic"], p["partition"], p["new_offset"]) for p in plan])
        futures = client.admin().alter_consumer_group_offsets([request], request_timeout=client.timeout)
        answer = client.result(futures[group_id], f"reset the offsets of consumer group '{group_id}'", group=group_id)
        for tp in answer.topic_partitions or []:
            if tp.error is not None:
                fail(f"Could not reset {tp.topic} partition {tp.partition} of consumer group '{group_id}': "
                     f"{error_reason(tp.error, topic=tp.topic, group=group_id)}")

    if output == JSON:
        print_json({"group": group_id, "dry_run": dry_run, "partitions": plan})
        return
    print_table(["TOPIC", "PARTITION", "CURRENT", "NEW"],
                [(p["topic"], p["partition"], p["current_offset"], p["new_offset"]) for p in plan],
                right=["PARTITION", "CURRENT", "NEW"])
    if dry_run:
        note("Dry run: nothing was changed (run again without --dry-run to apply).")
    else:
        note(f"Reset the offsets of consumer group '{group_id}' on {len(plan)} partition(s).")


# --- delete ---------------------------------------------------------------------------------------


@group.command()
@click.argument("group_ids", nargs=-1, required=True, metavar="GROUP...")
@output_option
@client_command
def delete(client: Client, group_ids: tuple[str, ...], output: str) -> None:
    """Delete consumer groups (they must have no active members)."""
    from confluent_kafka import KafkaException

    client.require_groups()
    futures = client.admin().delete_consumer_groups(list(group_ids), request_timeout=client.timeout)
    results = []
    errors = []
    for g in group_ids:
        try:
            futures[g].result(timeout=client.timeout + 1)
            results.append({"group": g, "deleted": True, "error": None})
        except KafkaException as exc:
            reason = error_reason(exc.args[0], group=g)
            if reason.startswith("Consumer group '"):
                errors.append(reason)
            else:
                errors.append(f"Could not delete consumer group '{g}': {clause(reason)}")
            results.append({"group": g, "deleted": False, "error": reason})
    if output == JSON:
        print_json(results)
    else:
        rows = [(r["group"], "deleted") for r in results if r["deleted"]]
        if rows:
            print_table(["GROUP", "STATUS"], rows)
    if errors:
        fail(" ".join(errors))
