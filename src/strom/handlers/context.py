"""What handlers may use: the broker's components, and the operations that span them.

The server builds one BrokerContext and passes it to every handler. Handlers never touch
sockets; they await only the methods here (the fetch long-poll wait) and the coordinator
runtimes' ``call``. Tests build a context over a temporary directory without any listener.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from strom.console.metrics import BrokerMetrics
from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.shard import Result
from strom.coordinator.transactions import TransactionCoordinator
from strom.handlers.fetch_sessions import FetchSessionCache
from strom.log.config import LogConfig
from strom.log.manager import LogManager
from strom.log.partition import PartitionLog
from strom.metadata.broker_config import BrokerConfig
from strom.metadata.configs import log_config_for
from strom.metadata.image import ClusterImage, PartitionState
from strom.metadata.store import MetadataStore, TopicMetadata
from strom.security.acl import Authorizer, parse_super_users
from strom.security.client import ClientSecurity
from strom.security.quotas import QuotaManager
from strom.share.persister import ShareCoordinator, SharePersister


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    host: str
    port: int
    rack: str | None = None


class AppendNotifier:
    """Wakes parked fetches when any partition gets new data (docs/architecture.md, "A fetch").

    Every notify wakes every parked fetch: waiters re-check their own partitions, which is
    cheap and avoids per-partition bookkeeping on the produce path. Each waiter is one future
    and one timer (``asyncio.wait_for`` costs several times more, paid per fetch that parks)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[bool]] = set()

    def notify(self) -> None:
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(True)
            self._waiters.clear()

    async def wait(self, timeout_s: float) -> bool:
        """Wait until the next append or the timeout; True when woken by an append."""
        if timeout_s <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(timeout_s, _time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


T = TypeVar("T")

# A coordinator operation: (coordinator shard, now_ms, ticket) -> Result.
GroupOperation = Callable[[GroupCoordinator, int, int], Result]
TxnOperation = Callable[[TransactionCoordinator, int, int], Result]


class GroupRuntime(Protocol):
    """The group coordinator as handlers see it (server.coordinator_runtime implements it).

    ``call`` and ``read`` raise strom.coordinator.shard.CoordinatorError with NOT_COORDINATOR,
    COORDINATOR_LOAD_IN_PROGRESS or a failed append's error, which answers the whole request."""

    async def ensure_offsets_topic(self) -> None:
        """Create __consumer_offsets if it does not exist yet (Kafka: on first FindCoordinator)."""
        ...

    async def call(self, group_id: str, operation: GroupOperation) -> Any:
        """Run an operation on the group's shard; returns its response once any records are
        stored, or, for a parked JoinGroup / SyncGroup, once the rebalance answers it."""
        ...

    def read(self, group_id: str, read: Callable[[GroupCoordinator], T]) -> T:
        """Read the group's shard without changing it."""
        ...

    def read_all(self, read: Callable[[GroupCoordinator], T]) -> tuple[int, list[T]]:
        """Read every loaded shard; the error is COORDINATOR_LOAD_IN_PROGRESS if any loads."""
        ...

    def complete_transaction(self, partition: int, producer_id: int, commit: bool) -> None:
        """A transaction marker was written to ``__consumer_offsets-<partition>``."""
        ...


class Commit(NamedTuple):
    """What an append waits for before it is answered (acks=all, a coordinator's records, a
    transaction marker): the high watermark at ``next_offset`` while the leadership it was
    appended under (``leader_epoch``) lasts, with at least ``min_insync`` in-sync replicas."""

    topic: str
    partition: int
    next_offset: int
    leader_epoch: int
    min_insync: int

    @classmethod
    def of(cls, log: PartitionLog) -> Commit:
        """Everything appended to a led log so far."""
        return cls(log.topic, log.partition, log.log_end_offset, log.leader_epoch, log.config.min_insync_replicas)


class ReplicaView(Protocol):
    """This broker's replicas as handlers see them (server.replicas implements it)."""

    def leader_log(self, topic: str, partition: int) -> tuple[PartitionLog | None, int]:
        """The partition's log if this broker leads it, else None and the error to answer
        (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION)."""
        ...

    def appended(self, topic: str, partition: int) -> None:
        """Records were appended to a led partition: the high watermark may move."""
        ...

    async def wait_for_commit(self, commit: Commit, timeout_ms: int) -> int:
        """Wait until the in-sync replicas have the append: NONE, or
        NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER (also when the leadership
        changed since, even if it came back), REQUEST_TIMED_OUT."""
        ...

    def isr(self, topic: str, partition: int) -> tuple[int, ...]:
        """The partition's committed in-sync replicas."""
        ...

    def follower_fetched(self, topic: str, partition: int, replica_id: int, fetch_offset: int) -> int:
        """A follower fetched from ``fetch_offset``; an error code (NONE when it is a replica)."""
        ...


class TransactionRuntime(Protocol):
    """The transaction coordinator as handlers see it (server.txn_runtime implements it);
    errors as GroupRuntime's."""

    async def ensure_topic(self) -> None:
        """Create __transaction_state if it does not exist yet (on first FindCoordinator)."""
        ...

    async def call(self, transactional_id: str, operation: TxnOperation) -> Any:
        """Run an operation on the id's shard; returns its response once stored (and, for
        EndTxn, once the markers are written)."""
        ...

    def read(self, transactional_id: str, read: Callable[[TransactionCoordinator], T]) -> T:
        ...

    def read_all(self, read: Callable[[TransactionCoordinator], T]) -> tuple[int, list[T]]:
        ...

    def verify(self, producer_id: int, producer_epoch: int, topic: str, partition: int) -> int:
        """Whether a transactional write belongs to the producer's open transaction: an error
        code for the produce response (NONE when it does)."""
        ...


@dataclass
class BrokerContext:
    config: BrokerConfig
    metadata: MetadataStore
    logs: LogManager
    node: Node
    # New records in a log led here: wakes followers' parked fetches.
    appends: AppendNotifier = field(default_factory=AppendNotifier)
    # A high watermark or last stable offset moved: wakes consumers' parked fetches.
    commits: AppendNotifier = field(default_factory=AppendNotifier)
    # Fetch sessions (KIP-227) live as long as the broker; used by handlers.fetch.
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)
    # The group coordinator runtime; set by the server (None: group APIs answer NOT_COORDINATOR).
    groups: GroupRuntime | None = None
    # The transaction coordinator runtime; set by the server (None: NOT_COORDINATOR).
    transactions: TransactionRuntime | None = None
    # KIP-932 share-partition state: the share coordinator runtime over __share_group_state
    # (None: its RPCs answer NOT_COORDINATOR) and the persister share partitions read and write
    # their state through (server.share_persister); both set by the server.
    share_state: ShareCoordinator | None = None
    share_persister: SharePersister | None = None
    # the share partitions led here and the share sessions (server.share_manager.SharePartitionManager)
    shares: Any = None
    # This broker's replicas (roles, high watermarks, acks=all waits); set by the server.
    replicas: ReplicaView | None = None
    # Hands out producer ids (server.producer_ids.ProducerIdBlocks.next_id); set by the server.
    next_producer_id: Callable[[], int] | None = None
    _authorizer: Authorizer | None = field(default=None, repr=False)
    # how this broker reaches the others (the inter-broker listener's TLS and SASL); set by the server
    inter_broker: ClientSecurity | None = None
    # Prometheus metrics of this broker (strom.console: /metrics)
    metrics: BrokerMetrics = field(default_factory=BrokerMetrics)
    # client quota rates (quota.window.*: set by the server)
    quotas: QuotaManager = field(default_factory=QuotaManager)
    # one config alteration at a time (handlers.configs)
    config_alter_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cluster_id(self) -> str:
        return self.metadata.cluster_id

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    @property
    def image(self) -> ClusterImage:
        return self.metadata.image

    @property
    def authorizer(self) -> Authorizer | None:
        """The ACL authorizer over the current image's ACLs; None when authorizer.class.name
        is empty (everything allowed, as Kafka without an authorizer)."""
        if not self.config.values.get("authorizer.class.name"):
            return None
        acls = self.metadata.image.acls
        cached = self._authorizer
        if cached is None or cached.acls is not acls:
            values = self.config.values
            cached = self._authorizer = Authorizer(
                acls, parse_super_users(values.get("super.users")),
                values.get("allow.everyone.if.no.acl.found", "false") == "true",
            )
        return cached

    def nodes(self, listener: str | None = None) -> list[Node]:
        """The live brokers, this one included, with their endpoints on ``listener`` (the
        one the request came in on: Kafka answers each listener with its own addresses)."""
        brokers = self.metadata.image.brokers
        nodes = [Node(b.node_id, *b.endpoint(listener), b.rack) for b in sorted(brokers.values(), key=lambda b: b.node_id)]
        return nodes if self.node.node_id in brokers else [self.node, *nodes]

    def node_by_id(self, node_id: int, listener: str | None = None) -> Node | None:
        broker = self.metadata.image.brokers.get(node_id)
        return None if broker is None else Node(broker.node_id, *broker.endpoint(listener), broker.rack)

    # --- partitions -----------------------------------------------------------------------

    def partition_log(self, topic: str, partition: int) -> PartitionLog | None:
        """This broker's replica of the partition, whatever its role."""
        return self.logs.get(topic, partition)

    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        return self.metadata.image.partition(topic, partition)

    @property
    def replica_view(self) -> ReplicaView:
        """The replica manager; the server (and the handler tests' harness) sets it before
        any request is served."""
        assert self.replicas is not None, "no replica manager"
        return self.replicas

    def leader_log(self, topic: str, partition: int) -> tuple[PartitionLog | None, int]:
        """The log of a partition this broker leads, else None and the error to answer."""
        return self.replica_view.leader_log(topic, partition)

    def topic_name(self, topic_id: uuid.UUID | None) -> str | None:
        """The name of the topic with this id (Fetch v13+, Produce v13 name topics by id)."""
        topic = self.metadata.image.topic_by_id(topic_id)
        return None if topic is None else topic.name

    def log_config(self, topic_configs: Mapping[str, str]) -> LogConfig:
        """Effective log config: topic overrides over the broker's dynamic and static configs."""
        return log_config_for(
            topic_configs,
            self.config,
            self.metadata.broker_configs(),
            self.metadata.node_configs(self.config.node_id),
        )

    def place_replicas(
        self, partitions: int, replication_factor: int, *, start_partition: int = 0
    ) -> list[list[int]]:
        """Replicas for new partitions over the live brokers (Kafka's rack-aware placement);
        ConfigError INVALID_REPLICATION_FACTOR when there are too few brokers."""
        from strom.cluster.placement import assign_replicas

        brokers = dict(self.metadata.image.brokers)
        if not brokers:  # a handler test without registration: this node alone
            from strom.metadata.image import BrokerRegistration

            brokers = {self.node.node_id: BrokerRegistration(self.node.node_id, self.node.host, self.node.port, self.node.rack)}
        return assign_replicas(brokers, partitions, replication_factor, start_partition=start_partition)

    async def create_topic(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str],
        *,
        replication_factor: int = -1,
        assignments: list[list[int]] | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> TopicMetadata:
        """Record the topic; every replica's broker creates its log when it sees it (the
        replica manager listens to metadata). Callers validated the input."""
        if assignments is None:
            if replication_factor == -1:
                replication_factor = self.config.default_replication_factor
            assignments = self.place_replicas(partitions, replication_factor)
        return await self.metadata.create_topic(name, assignments, configs, topic_id=topic_id)

    async def add_partitions(self, name: str, total: int, assignments: list[list[int]] | None = None) -> None:
        topic = self.metadata.topic(name)
        if topic is None:
            return
        if assignments is None:
            factor = len(self.metadata.image.partitions[(name, 0)].replicas)
            assignments = self.place_replicas(total - topic.partitions, factor, start_partition=topic.partitions)
        await self.metadata.create_partitions(name, assignments)

    async def flush(self, log: PartitionLog) -> None:
        """fsync a log in a worker thread (flush.messages, flush.ms, after a roll)."""
        job = log.prepare_flush()
        await asyncio.to_thread(PartitionLog.run_flush, job)
        log.complete_flush(job, self.now_ms())

