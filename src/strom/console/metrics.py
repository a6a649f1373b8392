"""The broker's Prometheus metrics, in a registry of its own (never the process-global one, so
brokers embedded in one process stay apart).

Counted as things happen (cheap, on the request path): requests by API and error with their
durations, records and bytes produced per topic, bytes fetched by consumers per topic.
Measured when scraped (bounded work per scrape, no await, no disk read): connections per
listener, each partition's log end offset and size, the lag and members of the consumer groups
this broker coordinates, and in cluster mode under-replicated and offline partitions and whether
this broker is the controller.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.coordinator.coordinator import GroupCoordinator
    from strom.handlers.context import BrokerContext

# One group of a coordinator shard: its id, members online, committed (topic, partition, offset).
GroupSnapshot = tuple[str, int, list[tuple[str, int, int]]]

# Kafka's request-latency buckets are in ms; these cover 0.1 ms to 10 s.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def api_name(key: int) -> str:
    """Kafka's API name (``Produce``, ``SaslHandshake``) of an API key."""
    try:
        return "".join(part.title() for part in ApiKey(key).name.split("_"))
    except ValueError:
        return str(key)


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._duration = Histogram("strom_request_duration_seconds", "Time from a request's arrival to its response, by API.",
                                   ["api"], registry=self.registry, buckets=_BUCKETS)
        self._requests = Counter("strom_requests_total", "Requests served, by API and the response's top-level error.",
                                 ["api", "error"], registry=self.registry)
        self._messages_in = Counter("strom_topic_messages_in_total", "Records appended by producers.", ["topic"],
                                    registry=self.registry)
        self._bytes_in = Counter("strom_topic_bytes_in_total", "Record bytes appended by producers.", ["topic"],
                                 registry=self.registry)
        self._bytes_out = Counter("strom_topic_bytes_out_total", "Record bytes sent to consumers (not followers).",
                                  ["topic"], registry=self.registry)
        # children by label values: prometheus-client's label lookup costs more than a dict hit
        self._request_children: dict[tuple[int, int], tuple[Histogram, Counter]] = {}
        self._topic_children: dict[str, tuple[Counter, Counter]] = {}

    def request(self, api_key: int, error: int, seconds: float) -> None:
        children = self._request_children.get((api_key, error))
        if children is None:
            name = api_name(api_key)
            children = self._request_children[(api_key, error)] = (
                self._duration.labels(name), self._requests.labels(name, error_name(error)))
        children[0].observe(seconds)
        children[1].inc()

    def produced(self, topic: str, records: int, size: int) -> None:
        children = self._topic_children.get(topic)
        if children is None:
            children = self._topic_children[topic] = (self._messages_in.labels(topic), self._bytes_in.labels(topic))
        children[0].inc(records)
        children[1].inc(size)

    def fetched(self, topic: str, size: int) -> None:
        self._bytes_out.labels(topic).inc(size)

    def watch(self, ctx: BrokerContext, connections: dict[str, int]) -> None:
        """Add the scrape-time gauges of this broker (``connections``: open connections by
        listener name, kept up to date by the server)."""
        self.registry.register(_StateCollector(ctx, connections))


class _StateCollector(Collector):
    def __init__(self, ctx: BrokerContext, connections: dict[str, int]) -> None:
        self.ctx = ctx
        self.connections = connections

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ctx = self.ctx
        listeners = GaugeMetricFamily("strom_connections", "Open client connections, by listener.", labels=["listener"])
        for name, count in sorted(self.connections.items()):
            listeners.add_metric([name], count)
        yield listeners
        end = GaugeMetricFamily("strom_partition_log_end_offset", "The log end offset of each partition replica here.",
                                labels=["topic", "partition"])
        size = GaugeMetricFamily("strom_partition_size_bytes", "Bytes on disk of each partition replica here.",
                                 labels=["topic", "partition"])
        for log in list(ctx.logs):
            labels = [log.topic, str(log.partition)]
            end.add_metric(labels, log.log_end_offset)
            size.add_metric(labels, log.size_bytes)
        yield end
        yield size
        yield from self._groups()
        if ctx.config.etcd_endpoints is None:
            return
        image = ctx.image
        node = ctx.node.node_id
        under = offline = 0
        for state in image.partitions.values():
            if state.leader == node and len(state.isr) < len(state.replicas):
                under += 1
            if state.leader < 0:
                offline += 1
        yield GaugeMetricFamily("strom_under_replicated_partitions", "Partitions led here whose ISR lacks a replica.",
                                value=under)
        yield GaugeMetricFamily("strom_offline_partitions", "Partitions of the cluster with no leader.", value=offline)
        yield GaugeMetricFamily("strom_is_controller", "1 when this broker runs the controller.",
                                value=1 if image.controller_id == node else 0)

    def _groups(self) -> Iterator[GaugeMetricFamily]:
        """Members and lag of every group on this broker's loaded coordinator shards (a shard
        still loading is left out until the next scrape). Lag is measured against the high
        watermark of this broker's replica, as Kafka's consumers measure it (what a consumer
        can read; it equals the log end on one node); a partition with no replica here is
        left out: in a cluster the coordinator reports the partitions it holds a replica of."""
        members = GaugeMetricFamily("strom_consumer_group_members", "Members online of each consumer group coordinated here.",
                                    labels=["group"])
        lag = GaugeMetricFamily("strom_consumer_group_lag", "High watermark minus committed offset, per group and partition.",
                                labels=["group", "topic", "partition"])
        runtime = self.ctx.groups
        if runtime is not None:
            # the error only says some shard is loading: its groups come with a later scrape
            _, shards = runtime.read_all(_snapshot)
            logs = self.ctx.logs
            for groups in shards:
                for group_id, online, committed in groups:
                    members.add_metric([group_id], online)
                    for topic, partition, offset in committed:
                        log = logs.get(topic, partition)
                        if log is not None:
                            lag.add_metric([group_id, topic, str(partition)], max(0, log.high_watermark - offset))
        yield members
        yield lag


def _snapshot(coordinator: GroupCoordinator) -> list[GroupSnapshot]:
    """The groups of one shard with their committed offsets (transactional offsets still
    pending are kept apart in the store, so they are not among them)."""
    offsets = coordinator.offsets
    out: list[GroupSnapshot] = []
    # offsets and group metadata are separate records: a group may have either or both
    for group_id in coordinator.groups.keys() | coordinator.consumer_groups.keys() | set(offsets.group_ids()):
        group = coordinator.groups.get(group_id) or coordinator.consumer_groups.get(group_id)
        committed = [(topic, partition, o.committed_offset)
                     for topic, partitions in offsets.group(group_id).items() for partition, o in partitions.items()]
        out.append((group_id, 0 if group is None else len(group.members), committed))
    return out
