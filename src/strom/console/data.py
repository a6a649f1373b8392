"""What the console shows and changes, read through Kafka's own APIs (console.client) and
filtered by what the viewer's principal may describe, as a Kafka client would see it.

Every operation does bounded work: message reads stop at a byte budget, searches scan a
bounded window, group listings and offset lookups are one request per broker."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from strom.console.client import ConsoleClient, ConsoleError
from strom.console.render import Rendered, render
from strom.coordinator.classic_members import decode_assignment as classic_assignment
from strom.handlers.context import BrokerContext
from strom.metadata.store import TopicMetadata
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.records import build_batch, decode_records, fetched_batches
from strom.security.acl import Operation, ResourceType
from strom.security.session import Session

# Bounds of one page's work
PAGE_LIMIT = 100  # messages on a page at most
SEARCH_WINDOW = 10_000  # records a search scans, shared by the partitions searched
READ_BUDGET = 4 * 1024 * 1024  # fetched bytes per page at most
FETCH_BYTES = 256 * 1024  # per Fetch request: the loop serves others between requests
LATEST, EARLIEST = -1, -2  # ListOffsets' special timestamps


class Forbidden(ConsoleError):
    """The principal may not do this (Kafka's *_AUTHORIZATION_FAILED)."""


class NotFound(ConsoleError):
    pass


@dataclass(frozen=True)
class Viewer:
    """Who asks: the logged-in principal (User:ANONYMOUS without an authorizer) from ``host``."""

    principal: str
    host: str
    session: Session


@dataclass
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    start: int = -1
    high_watermark: int = -1
    size: int = -1  # bytes of the replica read (-1: unknown)

    @property
    def messages(self) -> int:
        return max(self.high_watermark - self.start, 0)


@dataclass
class TopicInfo:
    name: str
    internal: bool
    partitions: list[PartitionInfo]

    @property
    def size(self) -> int:
        return sum(max(p.size, 0) for p in self.partitions)

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)

    @property
    def end_offsets(self) -> int:
        return sum(max(p.high_watermark, 0) for p in self.partitions)


@dataclass
class Message:
    partition: int
    offset: int
    timestamp: int
    key: Rendered
    value: Rendered
    headers: list[tuple[str, Rendered]]


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    assignment: list[tuple[str, list[int]]]


@dataclass
class OffsetLag:
    topic: str
    partition: int
    committed: int  # a share group's start offset
    end: int
    share_lag: int | None = None  # a share group's lag as Kafka defines it (records done above the start count out)

    @property
    def lag(self) -> int:
        if self.share_lag is not None:
            return self.share_lag
        return max(self.end - self.committed, 0) if self.end >= 0 else 0


@dataclass
class GroupInfo:
    group_id: str
    state: str
    protocol_type: str
    coordinator: int
    group_type: str = "classic"  # or "consumer" (KIP-848)
    members: list[Member] = field(default_factory=list)
    offsets: list[OffsetLag] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(o.lag for o in self.offsets)


class ConsoleData:
    def __init__(self, ctx: BrokerContext, client: ConsoleClient) -> None:
        self.ctx = ctx
        self.client = client
        # the console's own reads (the sampler): the broker's in-process requests
        self.system = Viewer("User:strom-console", "127.0.0.1", _internal(client.session("User:strom-console")))

    def viewer(self, principal: str, host: str) -> Viewer:
        return Viewer(principal, host, self.client.session(principal))

    # --- authorization ------------------------------------------------------------------

    def may(self, viewer: Viewer, operation: Operation, resource_type: ResourceType, name: str) -> bool:
        authorizer = self.ctx.authorizer
        return (authorizer is None or viewer.session.internal
                or authorizer.authorize(viewer.principal, viewer.host, operation, resource_type, name))

    def _require(self, viewer: Viewer, operation: Operation, resource_type: ResourceType, name: str) -> None:
        if not self.may(viewer, operation, resource_type, name):
            what = "topic" if resource_type == ResourceType.TOPIC else "group"
            raise Forbidden(f"{viewer.principal} may not {operation.name} {what} {name!r} (ACLs)")

    async def _call(self, viewer: Viewer, node: int, api_key: int, version: int, body: dict[str, Any]) -> Any:
        return await self.client.call(node, api_key, version, body, viewer.session, viewer.host)

    # --- cluster and topics -------------------------------------------------------------

    def brokers(self) -> list[tuple[int, str, int, str | None]]:
        return [(n.node_id, n.host, n.port, n.rack) for n in self.ctx.nodes(self.client.security.listener.name)]

    @property
    def cluster_mode(self) -> bool:
        return self.ctx.config.etcd_endpoints is not None

    def topic_names(self, viewer: Viewer) -> list[str]:
        return sorted(name for name in self.ctx.image.topics
                      if self.may(viewer, Operation.DESCRIBE, ResourceType.TOPIC, name))

    def _topic(self, viewer: Viewer, name: str) -> TopicMetadata:
        topic = self.ctx.image.topics.get(name)
        if topic is None or not self.may(viewer, Operation.DESCRIBE, ResourceType.TOPIC, name):
            # Kafka answers an undescribable topic as an unknown one
            raise NotFound(f"Topic {name!r} does not exist.")
        return topic

    async def topics(self, viewer: Viewer, names: Iterable[str] | None = None) -> list[TopicInfo]:
        """Topics with each partition's offsets and size: read from this broker's replica when
        it has one, else asked of the leader (ListOffsets, DescribeLogDirs)."""
        image = self.ctx.image
        infos: list[TopicInfo] = []
        remote: dict[int, list[PartitionInfo]] = defaultdict(list)
        remote_topic: dict[int, str] = {}
        for name in self.topic_names(viewer) if names is None else names:
            topic = self._topic(viewer, name)
            info = TopicInfo(name, topic.internal, [])
            for index in range(topic.partitions):
                state = image.partition(name, index)
                p = PartitionInfo(index, state.leader, state.replicas, state.isr) if state else PartitionInfo(index, -1, (), ())
                info.partitions.append(p)
                log = self.ctx.partition_log(name, index)
                if log is not None:
                    p.start, p.high_watermark, p.size = log.log_start_offset, log.high_watermark, log.size_bytes
                elif p.leader >= 0:
                    remote[p.leader].append(p)
                    remote_topic[id(p)] = name
            infos.append(info)
        for leader, parts in remote.items():
            wanted = [(remote_topic[id(p)], p.partition) for p in parts]
            try:
                starts = await self.list_offsets(self.system, leader, wanted, EARLIEST)
                ends = await self.list_offsets(self.system, leader, wanted, LATEST)
                sizes = await self._sizes(leader, wanted)
            except ConsoleError:
                continue  # shown as unknown
            for p, key in zip(parts, wanted, strict=True):
                p.start, p.high_watermark, p.size = starts.get(key, -1), ends.get(key, -1), sizes.get(key, -1)
        return infos

    async def topic(self, viewer: Viewer, name: str) -> TopicInfo:
        return (await self.topics(viewer, [name]))[0]

    async def list_offsets(self, viewer: Viewer, leader: int, partitions: list[tuple[str, int]],
                           timestamp: int) -> dict[tuple[str, int], int]:
        """The offsets for ``timestamp`` (LATEST: the high watermark) of partitions led by
        ``leader``; partitions with an error are left out."""
        by_topic: dict[str, list[int]] = defaultdict(list)
        for topic, index in partitions:
            by_topic[topic].append(index)
        body = {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": t, "partitions": [{"partition_index": i, "current_leader_epoch": -1, "timestamp": timestamp}
                                       for i in indexes]} for t, indexes in by_topic.items()]}
        response = await self._call(viewer, leader, ApiKey.LIST_OFFSETS, 7, body)
        return {(t.name, p.partition_index): p.offset for t in response.topics for p in t.partitions
                if p.error_code == ErrorCode.NONE and p.offset >= 0}

    async def _sizes(self, broker: int, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for topic, index in partitions:
            by_topic[topic].append(index)
        body = {"topics": [{"topic": t, "partitions": indexes} for t, indexes in by_topic.items()]}
        response = await self._call(self.system, broker, ApiKey.DESCRIBE_LOG_DIRS, 4, body)
        return {(t.name, p.partition_index): p.partition_size
                for result in response.results for t in result.topics for p in t.partitions}

    async def configs(self, viewer: Viewer, topic: str) -> list[tuple[str, str | None, bool]]:
        """(name, value, set on the topic) of every config DescribeConfigs gives the viewer."""
        self._topic(viewer, topic)
        body = {"resources": [{"resource_type": 2, "resource_name": topic, "configuration_keys": None}],
                "include_synonyms": False, "include_documentation": False}
        response = await self._call(viewer, self.ctx.node.node_id, ApiKey.DESCRIBE_CONFIGS, 4, body)
        result = response.results[0]
        if result.error_code != ErrorCode.NONE:
            return []  # no DescribeConfigs ACL: the page shows no configs
        return [(c.name, "(sensitive)" if c.is_sensitive else c.value, c.config_source == 1) for c in result.configs]

    # --- messages -----------------------------------------------------------------------

    async def messages(self, viewer: Viewer, info: TopicInfo, *, partition: int | None = None, offset: int | None = None,
                       timestamp: int | None = None, limit: int = 20, query: str = "") -> list[Message]:
        """Messages of the topic (or one partition): the latest ``limit`` ones, newest first,
        or from ``offset`` (one partition) or ``timestamp`` onwards. ``query`` keeps records
        whose key or value contains it, scanning the last SEARCH_WINDOW records (shared by the
        partitions) before the position. ``info``: the topic as ``topic()`` gave it."""
        topic = info.name
        self._require(viewer, Operation.READ, ResourceType.TOPIC, topic)
        limit = max(1, min(limit, PAGE_LIMIT))
        parts = info.partitions if partition is None else [p for p in info.partitions if p.partition == partition]
        if not parts:
            raise NotFound(f"Topic {topic!r} has no partition {partition}.")
        needle = query.encode() if query else None
        window = max(SEARCH_WINDOW // len(parts), limit) if needle else limit
        starts: dict[int, int] = {}
        if timestamp is not None:
            for leader, group in _by_leader(parts).items():
                found = await self.list_offsets(viewer, leader, [(topic, p.partition) for p in group], timestamp)
                for p in group:
                    starts[p.partition] = found.get((topic, p.partition), p.high_watermark)
        for p in parts:
            if offset is not None:
                starts[p.partition] = max(offset, p.start)
            elif timestamp is None:
                starts[p.partition] = max(p.start, p.high_watermark - window)
        budget = READ_BUDGET // len(parts)
        found_messages: list[Message] = []
        for p in parts:
            records = await self._read(viewer, topic, p, starts[p.partition], window, budget)
            for r in records:
                if needle is None or needle in (r.key or b"") or needle in (r.value or b""):
                    found_messages.append(Message(p.partition, r.offset, r.timestamp, render(r.key), render(r.value),
                                                  [(k, render(v)) for k, v in r.headers]))
        if offset is None and timestamp is None:  # the latest: newest first
            found_messages.sort(key=lambda m: (m.timestamp, m.offset), reverse=True)
        else:
            found_messages.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
        return found_messages[:limit]

    async def _read(self, viewer: Viewer, topic: str, p: PartitionInfo, start: int, count: int, budget: int) -> list[Any]:
        """Up to ``count`` records from ``start`` below the high watermark, within ``budget`` bytes."""
        records: list[Any] = []
        position = start
        while position < p.high_watermark and len(records) < count and budget > 0:
            body = {"replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": min(FETCH_BYTES, budget),
                    "isolation_level": 0, "session_id": 0, "session_epoch": -1, "rack_id": "", "forgotten_topics_data": [],
                    "topics": [{"topic": topic, "partitions": [{
                        "partition": p.partition, "current_leader_epoch": -1, "fetch_offset": position,
                        "last_fetched_epoch": -1, "log_start_offset": -1,
                        "partition_max_bytes": min(FETCH_BYTES, budget)}]}]}
            await asyncio.sleep(0)  # decoding costs the loop: let requests in between fetches
            response = await self._call(viewer, p.leader, ApiKey.FETCH, 12, body)
            data = response.responses[0].partitions[0]
            if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE and position < p.start:
                position = p.start
                continue
            if data.error_code != ErrorCode.NONE:
                raise ConsoleError(f"{topic}-{p.partition}: fetch failed with {ErrorCode(data.error_code).name}")
            blob, headers = fetched_batches(data.records or b"")
            if not headers:
                break
            budget -= len(blob)
            at = 0
            for header in headers:
                batch = blob[at:at + header.size]
                at += header.size
                if not header.is_control:
                    records.extend(r for r in decode_records(batch) if r.offset >= position)
                position = header.next_offset
        return records[:count]

    async def produce(self, viewer: Viewer, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes]]) -> tuple[int, int]:
        """Append one record (acks=all); its (partition, offset). Needs WRITE on the topic."""
        info = await self.topic(viewer, topic)
        self._require(viewer, Operation.WRITE, ResourceType.TOPIC, topic)
        count = len(info.partitions)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % count if key else random.randrange(count)
        if not 0 <= partition < count:
            raise ConsoleError(f"Topic {topic!r} has partitions 0 to {count - 1}.")
        leader = info.partitions[partition].leader
        batch = build_batch([(key, value, headers, int(time.time() * 1000))])
        body = {"transactional_id": None, "acks": -1, "timeout": 10_000, "topic_data": [
            {"name": topic, "partition_data": [{"index": partition, "records": batch}]}]}
        response = await self._call(viewer, leader, ApiKey.PRODUCE, 9, body)
        result = response.responses[0].partition_responses[0]
        if result.error_code != ErrorCode.NONE:
            raise ConsoleError(f"produce to {topic}-{partition} failed: {ErrorCode(result.error_code).name}")
        return partition, result.base_offset

    # --- groups -------------------------------------------------------------------------

    async def group_list(self, viewer: Viewer) -> list[GroupInfo]:
        """Every group the viewer may describe, with its state, type and coordinator
        (ListGroups to every live broker: each lists the groups it coordinates)."""
        groups = []
        for node_id, *_ in self.brokers():
            try:
                response = await self._call(self.system, node_id, ApiKey.LIST_GROUPS, 5,
                                            {"states_filter": [], "types_filter": []})
            except ConsoleError:
                continue
            groups += [GroupInfo(g.group_id, g.group_state, g.protocol_type, node_id, g.group_type)
                       for g in response.groups if self.may(viewer, Operation.DESCRIBE, ResourceType.GROUP, g.group_id)]
        return sorted(groups, key=lambda g: g.group_id)

    async def groups(self, viewer: Viewer) -> list[GroupInfo]:
        """Every describable group with its members' count and lag (offsets and log ends)."""
        infos = await self.group_list(viewer)
        by_node: dict[int, list[GroupInfo]] = defaultdict(list)
        for info in infos:
            by_node[info.coordinator].append(info)
        for node, group in by_node.items():
            await self._describe(viewer, node, group)
            await self._offsets(viewer, node, group)
        await self._lags(viewer, infos)
        return infos

    async def group(self, viewer: Viewer, group_id: str) -> GroupInfo:
        if not self.may(viewer, Operation.DESCRIBE, ResourceType.GROUP, group_id):
            raise NotFound(f"Group {group_id!r} does not exist.")
        node = await self._coordinator(group_id)
        info = GroupInfo(group_id, "", "", node, "consumer")
        for kind in ("consumer", "share", "classic"):  # ask as each type until one knows it
            info.group_type = kind
            await self._describe(viewer, node, [info])
            if info.state:
                break
        await self._offsets(viewer, node, [info])
        if info.state == "Dead" and not info.offsets:
            raise NotFound(f"Group {group_id!r} does not exist.")
        await self._lags(viewer, [info])
        return info

    async def _coordinator(self, group_id: str) -> int:
        body = {"key_type": 0, "coordinator_keys": [group_id]}
        response = await self._call(self.system, self.ctx.node.node_id, ApiKey.FIND_COORDINATOR, 4, body)
        found = response.coordinators[0]
        if found.error_code != ErrorCode.NONE:
            raise ConsoleError(f"no coordinator for group {group_id!r}: {ErrorCode(found.error_code).name}")
        return int(found.node_id)

    async def _describe(self, viewer: Viewer, node: int, infos: list[GroupInfo]) -> None:
        # the two KIP-848-style describes answer alike (a share group's members have no instance id)
        for kind, api, version in (("share", ApiKey.SHARE_GROUP_DESCRIBE, 1), ("consumer", ApiKey.CONSUMER_GROUP_DESCRIBE, 0)):
            modern = [i for i in infos if i.group_type == kind]
            if not modern:
                continue
            body = {"group_ids": [i.group_id for i in modern], "include_authorized_operations": False}
            response = await self._call(viewer, node, api, version, body)
            for info, group in zip(modern, response.groups, strict=True):
                info.state, info.protocol_type = (group.group_state, kind) if group.error_code == 0 else ("", "")
                info.members = [Member(m.member_id, getattr(m, "instance_id", None), m.client_id, m.client_host,
                                       self._visible(viewer, [(tp.topic_name, sorted(tp.partitions))
                                                              for tp in m.assignment.topic_partitions]))
                                for m in group.members]
        classic = [i for i in infos if i.group_type == "classic"]
        if not classic:
            return
        body = {"groups": [i.group_id for i in classic], "include_authorized_operations": False}
        response = await self._call(viewer, node, ApiKey.DESCRIBE_GROUPS, 5, body)
        for info, described in zip(classic, response.groups, strict=True):
            info.state, info.protocol_type = described.group_state, described.protocol_type
            info.members = [Member(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                   self._visible(viewer, decode_assignment(m.member_assignment))
                                   if described.protocol_type == "consumer" else [])
                            for m in described.members]

    def _visible(self, viewer: Viewer, assignment: list[tuple[str, list[int]]]) -> list[tuple[str, list[int]]]:
        """An assignment without the topics the viewer may not describe (the requests to other
        brokers run as the broker, which may describe everything)."""
        return [(t, ps) for t, ps in assignment if self.may(viewer, Operation.DESCRIBE, ResourceType.TOPIC, t)]

    async def _offsets(self, viewer: Viewer, node: int, infos: list[GroupInfo]) -> None:
        share = [i for i in infos if i.group_type == "share"]
        if share:
            described = {"groups": [{"group_id": i.group_id, "topics": None} for i in share]}
            response = await self._call(viewer, node, ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, 1, described)
            for info, fetched in zip(share, response.groups, strict=True):
                info.offsets = sorted((OffsetLag(t.topic_name, p.partition_index, p.start_offset, -1, max(p.lag, 0))
                                       for t in fetched.topics for p in t.partitions if p.start_offset >= 0
                                       and self.may(viewer, Operation.DESCRIBE, ResourceType.TOPIC, t.topic_name)),
                                      key=lambda o: (o.topic, o.partition))
        infos = [i for i in infos if i.group_type != "share"]
        if not infos:
            return
        body = {"groups": [{"group_id": i.group_id, "topics": None} for i in infos], "require_stable": False}
        response = await self._call(viewer, node, ApiKey.OFFSET_FETCH, 8, body)
        for info, fetched in zip(infos, response.groups, strict=True):
            info.offsets = sorted((OffsetLag(t.name, p.partition_index, p.committed_offset, -1)
                                   for t in fetched.topics for p in t.partitions
                                   if p.committed_offset >= 0 and p.error_code == ErrorCode.NONE
                                   and self.may(viewer, Operation.DESCRIBE, ResourceType.TOPIC, t.name)),
                                  key=lambda o: (o.topic, o.partition))

    async def _lags(self, viewer: Viewer, infos: list[GroupInfo]) -> None:
        names = {o.topic for info in infos for o in info.offsets if o.topic in self.ctx.image.topics}
        ends = {(t.name, p.partition): p.high_watermark for t in await self.topics(viewer, sorted(names))
                for p in t.partitions}
        for info in infos:
            for o in info.offsets:
                o.end = ends.get((o.topic, o.partition), -1)

    async def reset_offsets(self, viewer: Viewer, group_id: str, to: str, timestamp: int | None = None) -> int:
        """Move an empty group's committed offsets (every partition of the topics it has
        offsets for) to the earliest, the latest, or the first at ``timestamp``: needs READ on
        the group and its topics, as kafka-consumer-groups --reset-offsets. Partitions moved."""
        self._require(viewer, Operation.READ, ResourceType.GROUP, group_id)
        info = await self.group(viewer, group_id)
        if info.state not in ("Empty", "Dead"):
            raise ConsoleError(f"Group {group_id!r} is {info.state}: offsets can be reset only when it has no "
                               "members (stop its consumers first).")
        topics = sorted({o.topic for o in info.offsets})
        for topic in topics:
            self._require(viewer, Operation.READ, ResourceType.TOPIC, topic)
        spec = {"earliest": EARLIEST, "latest": LATEST}.get(to, timestamp)
        if spec is None:
            raise ConsoleError("reset to earliest, latest, or a time")
        targets: dict[tuple[str, int], int] = {}
        for t in await self.topics(viewer, topics):
            for leader, parts in _by_leader(t.partitions).items():
                found = await self.list_offsets(viewer, leader, [(t.name, p.partition) for p in parts], spec)
                for p in parts:  # no record at or after the time: the log end, as Kafka's tool does
                    targets[(t.name, p.partition)] = found.get((t.name, p.partition), p.high_watermark)
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (topic, index), position in sorted(targets.items()):
            by_topic[topic].append({"partition_index": index, "committed_offset": position,
                                    "committed_leader_epoch": -1, "committed_metadata": ""})
        body = {"group_id": group_id, "generation_id_or_member_epoch": -1, "member_id": "", "group_instance_id": None,
                "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}
        response = await self._call(viewer, info.coordinator, ApiKey.OFFSET_COMMIT, 8, body)
        errors = {ErrorCode(p.error_code).name for t in response.topics for p in t.partitions if p.error_code}
        if errors:
            raise ConsoleError(f"offset commit failed: {', '.join(sorted(errors))}")
        return len(targets)


def _internal(session: Session) -> Session:
    session.internal = True
    return session


def _by_leader(parts: list[PartitionInfo]) -> dict[int, list[PartitionInfo]]:
    groups: dict[int, list[PartitionInfo]] = defaultdict(list)
    for p in parts:
        if p.leader >= 0:
            groups[p.leader].append(p)
    return groups


def decode_assignment(data: bytes | None) -> list[tuple[str, list[int]]]:
    """The topic partitions of a ConsumerProtocolAssignment, sorted; [] when it does not parse."""
    try:
        return [(topic, sorted(parts)) for topic, parts in classic_assignment(data or b"")]
    except ValueError:
        return []


def murmur2(data: bytes) -> int:
    """Kafka's default partitioner hash (Java's Utils.murmur2), as a signed 32-bit int."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h
