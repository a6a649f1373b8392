"""What handlers may use: the broker's components, and the operations that span them.

The server builds one BrokerContext and passes it to every handler. Handlers never touch
sockets; they await only the methods here (the fetch long-poll wait) and the coordinator
runtimes' ``call``. Tests build a context over a temporary directory without any listener.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.shard import Result
from strom.coordinator.transactions import TransactionCoordinator
from strom.handlers.fetch_sessions import FetchSessionCache
from strom.log.config import LogConfig
from strom.log.manager import LogManager
from strom.log.partition import PartitionLog
from strom.metadata.broker_config import BrokerConfig
from strom.metadata.configs import log_config_for
from strom.metadata.store import MetadataStore, TopicMetadata


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    host: str
    port: int
    rack: str | None = None


class AppendNotifier:
    """Wakes parked fetches when any partition gets new data (DESIGN.md: purgatory).

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

    def ensure_offsets_topic(self) -> None:
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


class TransactionRuntime(Protocol):
    """The transaction coordinator as handlers see it (server.txn_runtime implements it);
    errors as GroupRuntime's."""

    def ensure_topic(self) -> None:
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
    appends: AppendNotifier = field(default_factory=AppendNotifier)
    # Fetch sessions (KIP-227) live as long as the broker; used by handlers.fetch.
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)
    # The group coordinator runtime; set by the server (None: group APIs answer NOT_COORDINATOR).
    groups: GroupRuntime | None = None
    # The transaction coordinator runtime; set by the server (None: NOT_COORDINATOR).
    transactions: TransactionRuntime | None = None

    @property
    def cluster_id(self) -> str:
        return self.metadata.cluster_id

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def nodes(self) -> list[Node]:
        return [self.node]

    # --- topics: metadata and logs change together --------------------------------------

    def partition_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get(topic, partition)

    def topic_name(self, topic_id: uuid.UUID | None) -> str | None:
        """The name of the topic with this id (Fetch v13+, Produce v13 name topics by id)."""
        for topic in self.metadata.topics().values():
            if topic.topic_id == topic_id:
                return topic.name
        return None

    def log_config(self, topic_configs: Mapping[str, str]) -> LogConfig:
        """Effective log config: topic overrides over the broker's dynamic and static configs."""
        return log_config_for(
            topic_configs,
            self.config,
            self.metadata.broker_configs(),
            self.metadata.node_configs(self.config.node_id),
        )

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str], topic_id: uuid.UUID | None = None
    ) -> TopicMetadata:
        """Record the topic, then create its partition logs. Callers validated the input."""
        topic = self.metadata.create_topic(name, partitions, configs, topic_id=topic_id)
        log_config = self.log_config(topic.configs)
        for p in range(partitions):
            self.logs.create(name, p, log_config, self.now_ms())
        return topic

    def delete_topic(self, name: str) -> None:
        self.metadata.delete_topic(name)
        doomed = self.logs.delete_topic(name)
        if doomed:  # removing the files may take long: a thread does it
            asyncio.get_running_loop().run_in_executor(None, LogManager.purge, doomed)

    def add_partitions(self, name: str, total: int) -> None:
        topic = self.metadata.set_partitions(name, total)
        log_config = self.log_config(topic.configs)
        for p in range(total):
            self.logs.create(name, p, log_config, self.now_ms())

    def apply_configs(self, name: str | None = None) -> None:
        """Push effective configs into open logs after a topic (or broker) config change."""
        for topic in self.metadata.topics().values():
            if name is not None and topic.name != name:
                continue
            log_config = self.log_config(topic.configs)
            for p in range(topic.partitions):
                log = self.logs.get(topic.name, p)
                if log is not None:
                    log.update_config(log_config)

    async def flush(self, log: PartitionLog) -> None:
        """fsync a log in a worker thread (flush.messages, flush.ms, after a roll)."""
        job = log.prepare_flush()
        await asyncio.to_thread(PartitionLog.run_flush, job)
        log.complete_flush(job, self.now_ms())

    def topic_partitions(self) -> Iterator[tuple[TopicMetadata, int]]:
        for topic in self.metadata.topics().values():
            for p in range(topic.partitions):
                yield topic, p
