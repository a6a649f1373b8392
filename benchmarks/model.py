"""What one run measures: the sizes of each workload, and one result row."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MB = 1_000_000
GIB = 1 << 30

# Producer settings of the throughput workloads (librdkafka names), identical for every
# Kafka-protocol broker: batching as the issue asks (linger.ms=5, batch.size=1 MiB); the
# request may carry a whole 1 MiB batch (message.max.bytes is librdkafka's request cap);
# deep local queues so the client never waits on its own buffer.
PRODUCER_CONF = {
    "linger.ms": "5",
    "batch.size": str(1 << 20),
    "message.max.bytes": str(2 << 20),
    "queue.buffering.max.messages": "2000000",
    "queue.buffering.max.kbytes": "2097151",
    "compression.type": "none",
}
# Consumer: librdkafka's defaults (fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB,
# fetch.wait.max.ms 500) but for a deeper prefetch queue.
CONSUMER_CONF = {
    "queued.max.messages.kbytes": str(256 * 1024),
}
# End-to-end latency: acks=all, and linger.ms=0 (every record leaves at once: one produce
# request per record, the broker's per-request cost) or linger.ms=1 (the records of the last
# millisecond share a request); the consumer long-polls (fetch.wait.max.ms=100,
# fetch.min.bytes=1), so a broker that answers parked fetches on arrival shows its real latency
# and one that does not is bounded by 100 ms.
LATENCY_PRODUCER_CONF = {"acks": "all"}
LATENCY_CONSUMER_CONF = {"fetch.wait.max.ms": "100", "fetch.min.bytes": "1"}


@dataclass
class Sizes:
    """Record counts per workload; --quick shrinks them ~10x."""

    produce_100: int = 2_000_000
    produce_1k: int = 500_000
    repeats: int = 5
    latency_seconds: float = 10.0
    latency_rates: tuple[int, ...] = (5_000, 20_000)
    latency_lingers: tuple[int, ...] = (0, 1)
    many_partitions: int = 1000
    many_records: int = 1_000_000
    peer_records_100: int = 500_000
    peer_records_1k: int = 200_000
    machine_bytes: int = 1 << 30
    producers: int = 1
    # the cluster group (benchmarks/cluster.py): 3 brokers beside one, then leader kills
    # the security group (benchmarks/security.py): plaintext beside SASL_SSL on one broker
    security_records_100: int = 1_000_000
    security_records_1k: int = 300_000
    security_repeats: int = 3
    quota_seconds: int = 40  # how long the throttled producer would run at its quota
    cluster_records_100: int = 2_000_000
    cluster_records_1k: int = 500_000
    cluster_repeats: int = 3
    cluster_latency_seconds: float = 10.0
    cluster_latency_lingers: tuple[int, ...] = (0, 1)
    cluster_idle_seconds: float = 10.0
    cluster_kills_default: int = 10  # with broker.session.timeout.ms's default (9000)
    cluster_kills_short: int = 10
    cluster_short_timeout_ms: int = 3000
    floor_bytes: int = 1 << 30  # benchmarks/replication_floor.py: the same bytes moved without strom
    floor_repeats: int = 3
    # the metrics group (benchmarks/metrics_cost.py): /metrics with 1,000 partitions, 100 groups
    metrics_topics: int = 100  # x 10 partitions
    metrics_groups: int = 100
    metrics_scrapes: int = 100
    metrics_records: int = 10_000_000  # per produce run (~5 s), with and without a scrape every second
    metrics_repeats: int = 7  # pairs of runs
    metrics_pages: int = 20  # loads of each console page
    # the queues group (benchmarks/queues.py): share groups beside a classic group on one
    # partition, then the rebalance time of a 10-member group under each protocol
    queue_records: int = 2_000_000
    queue_repeats: int = 5
    rebalance_repeats: int = 5
    rebalance_protocols: tuple[str, ...] = ("range", "cooperative-sticky", "consumer")  # queues.PROTOCOLS

    @classmethod
    def quick(cls) -> Sizes:
        return cls(produce_100=200_000, produce_1k=50_000, repeats=1, latency_seconds=2.0,
                   many_partitions=1000, many_records=100_000, peer_records_100=50_000,
                   peer_records_1k=20_000, machine_bytes=128 << 20, cluster_records_100=50_000,
                   cluster_records_1k=10_000, cluster_repeats=1, security_records_100=200_000,
                   security_records_1k=50_000, security_repeats=1, quota_seconds=12, cluster_latency_seconds=1.0,
                   cluster_latency_lingers=(1,), cluster_idle_seconds=1.0, cluster_kills_default=0,
                   cluster_kills_short=1, floor_bytes=64 << 20, floor_repeats=1, metrics_topics=10, metrics_groups=10, metrics_scrapes=20,
                   metrics_records=200_000, metrics_repeats=1, metrics_pages=3,
                   queue_records=50_000, queue_repeats=1, rebalance_repeats=1,
                   rebalance_protocols=("range", "consumer"))


@dataclass
class Row:
    system: str
    workload: str  # produce | consume | latency | idle | produce-1000p | consume-1000p
    client: str
    record_size: int = 0
    acks: str = ""
    partitions: int = 0
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    broker_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    broker_rss: int = 0
    rate: float = 0.0  # the offered rate of a latency row
    linger_ms: int = -1  # the producer's linger.ms of a Kafka latency row
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    p999_ms: float = math.nan
    note: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.nan

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_per_million(self) -> float:
        return self.broker_cpu_s / self.records * 1e6 if self.records else math.nan

    @property
    def cpu_per_gib(self) -> float:
        return self.broker_cpu_s / self.bytes * GIB if self.bytes else math.nan

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(records_per_s=self.records_per_s, mb_per_s=self.mb_per_s,
                 broker_cpu_s_per_million=self.cpu_per_million,
                 broker_cpu_s_per_gib=self.cpu_per_gib)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def median_row(rows: list[Row]) -> Row:
    """The repetition with the median records/s (its CPU and RSS figures go with it)."""
    ordered = sorted(rows, key=lambda r: (r.records_per_s if not math.isnan(r.records_per_s) else -1))
    chosen = ordered[len(ordered) // 2]
    chosen.runs = [{"records_per_s": r.records_per_s, "broker_cpu_s": r.broker_cpu_s,
                    "client_cpu_s": r.client_cpu_s} for r in rows] if len(rows) > 1 else []
    return chosen
