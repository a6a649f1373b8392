"""Follower fetchers: one task per leader broker copies that leader's partitions here.

Each fetcher sends Kafka's follower Fetch (v12: ``replica_id`` is this broker, every partition
carries its ``current_leader_epoch`` and ``last_fetched_epoch``) for all the partitions this
broker follows on that leader, long-polling ``replica.fetch.wait.max.ms``. For each partition
of the answer (CLUSTER.md, "Follower"):

- records: the whole batches are appended verbatim (offsets and leader epochs as the leader
  wrote them), then the high watermark becomes min(leader's, own log end), checkpointed with
  the others, and the log start follows the leader's (retention, DeleteRecords);
- ``DivergingEpoch``: truncate where the logs part (strom.replication.follower), fetch again;
- OFFSET_OUT_OF_RANGE below the leader's log start: start over empty at the leader's log start;
- NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH: the metadata image will
  say who leads; the partition waits for it (the replica manager moves it between fetchers).

A failed connection is retried after ``replica.fetch.backoff.ms``; a partition that got an error
is left out of the fetches for that long, the others go on (Kafka's delayed partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from strom.client.connection import BrokerConnection
from strom.handlers.context import BrokerContext
from strom.log.partition import OffsetOutOfRange
from strom.metadata.image import ClusterImage
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.fetch_response import FetchedPartition, FetchedTopic, decode_fetch_response
from strom.protocol.records import LOG_OVERHEAD, CorruptRecord, fetched_batches
from strom.replication.follower import truncation_offset
from strom.server.replicas import Replica

log = logging.getLogger(__name__)

FETCH_VERSION = 12  # flexible, LastFetchedEpoch / DivergingEpoch, topics by name
NO_EPOCH = -1


class LeaderFetcher:
    """Replicates the partitions led by one broker. ``partitions`` is changed by the
    registry on the event loop; the loop re-reads it before every request."""

    def __init__(self, ctx: BrokerContext, leader_id: int) -> None:
        self.ctx = ctx
        self.leader_id = leader_id
        self.partitions: dict[tuple[str, int], Replica] = {}
        self.delayed: dict[tuple[str, int], int] = {}  # partitions backing off, until (ms)
        self.address: tuple[str, int] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: BrokerConnection | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close()

    def wake(self) -> None:
        self._wake.set()

    def set_address(self, address: tuple[str, int] | None) -> None:
        if address != self.address:
            self.address = address
            self._close()  # a re-registered leader: connect afresh
            self._wake.set()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        config = self.ctx.config
        backoff_s = config.replica_fetch_backoff_ms / 1000
        while True:
            if not self.partitions or self.address is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            now_ms = self.ctx.now_ms()
            ready = [key for key in self.partitions if self.delayed.get(key, 0) <= now_ms]
            if not ready:
                await self._sleep((min(self.delayed.values()) - now_ms) / 1000)
                continue
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = await BrokerConnection.open(
                        *self.address, client_id=f"strom-replica-{config.node_id}", security=self.ctx.inter_broker)
                request = self._request(ready)
                timeout_s = config.replica_fetch_wait_max_ms / 1000 + 30
                # No name keeps the response: once applied, its buffer takes the next one.
                if self._handle(*await self._connection.request(
                    ApiKey.FETCH, FETCH_VERSION, request, timeout_s=timeout_s, decode=decode_fetch_response
                )):
                    await self._sleep(backoff_s)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionError) as exc:
                log.debug("fetch from broker %d failed: %s", self.leader_id, exc)
                self._close()
                await self._sleep(backoff_s)
            except Exception:
                log.exception("fetcher for broker %d failed", self.leader_id)
                self._close()
                await self._sleep(backoff_s)

    async def _sleep(self, seconds: float) -> None:
        """Back off, but wake early when the partitions or the leader's address change."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _request(self, keys: list[tuple[str, int]]) -> dict[str, Any]:
        config = self.ctx.config
        topics: dict[str, list[dict[str, Any]]] = {}
        for topic, partition in keys:
            partition_log = self.partitions[(topic, partition)].log
            topics.setdefault(topic, []).append({
                "partition": partition,
                "current_leader_epoch": self.partitions[(topic, partition)].state.leader_epoch,
                "fetch_offset": partition_log.log_end_offset,
                "last_fetched_epoch": partition_log.epochs.latest_epoch,
                "log_start_offset": partition_log.log_start_offset,
                "partition_max_bytes": config.replica_fetch_max_bytes,
            })
        return {
            "replica_id": config.node_id,
            "max_wait": config.replica_fetch_wait_max_ms,
            "min_bytes": 1,
            "max_bytes": config.replica_fetch_response_max_bytes,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
            "forgotten_topics_data": [],
            "rack_id": config.broker_rack or "",
        }

    def _handle(self, error_code: int, topics: list[FetchedTopic]) -> bool:
        """Apply a fetch response; True when the whole fetcher should back off (a top-level
        error); a partition with an error backs off alone."""
        if error_code:
            log.warning("fetch from broker %d: error %d", self.leader_id, error_code)
            return True
        now_ms = self.ctx.now_ms()
        for topic in topics:
            if topic.name is None:
                continue  # (v12 names every topic)
            for data in topic.partitions:
                key = (topic.name, data.partition_index)
                replica = self.partitions.get(key)
                if replica is None:
                    continue  # moved elsewhere while the fetch was out
                try:
                    back_off = self._apply(replica, data, now_ms)
                except (CorruptRecord, OffsetOutOfRange, ValueError) as exc:
                    log.warning("%s: cannot apply fetched data: %s", replica.log.name, exc)
                    back_off = True
                if back_off:
                    self.delayed[key] = now_ms + self.ctx.config.replica_fetch_backoff_ms
                else:
                    self.delayed.pop(key, None)
        return False

    def _apply(self, replica: Replica, data: FetchedPartition, now_ms: int) -> bool:
        partition_log = replica.log
        error = data.error_code
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            if partition_log.log_end_offset < data.log_start_offset:
                log.info("%s: behind the leader's log start %d: starting over there", partition_log.name, data.log_start_offset)
                partition_log.reset_to(data.log_start_offset)
                return False
            if data.high_watermark >= 0 and partition_log.log_end_offset > data.high_watermark:
                # Ahead of the leader's log: cut back to what is committed and fetch the rest.
                log.info("%s: ahead of the leader: truncating to its high watermark %d", partition_log.name, data.high_watermark)
                partition_log.truncate_to(max(data.high_watermark, partition_log.log_start_offset))
                return False
            return True
        if error:
            return True
        if data.diverging_epoch is not None and min(data.diverging_epoch) >= 0:
            epoch, end_offset = data.diverging_epoch
            cut = truncation_offset(partition_log.epochs, partition_log.log_end_offset, epoch, end_offset)
            cut = max(cut, partition_log.log_start_offset)
            log.info(
                "%s: diverges from the leader at epoch %d (ends at %d there): truncating %d -> %d",
                partition_log.name, epoch, end_offset, partition_log.log_end_offset, cut,
            )
            if cut == partition_log.log_end_offset and partition_log.epochs.latest_epoch <= epoch:
                log.warning("%s: divergence at epoch %d with nothing to cut", partition_log.name, epoch)
                return True  # back off rather than ask the same again at once
            partition_log.truncate_to(cut)
            return False
        records = data.records
        if records:
            view, headers = fetched_batches(records)
            end = partition_log.log_end_offset
            if headers and headers[0].base_offset < end <= headers[0].last_offset:
                # The log ends inside the leader's first batch: an empty log started at a log
                # start that DeleteRecords put mid-batch (Kafka's truncateFullyAndStartAt). The
                # leader's batch is the one to keep.
                base = headers[0].base_offset
                if base >= partition_log.log_start_offset:
                    partition_log.truncate_to(base)
                else:
                    partition_log.reset_to(base, now_ms)
                end = base
            skip = 0
            while skip < len(headers) and headers[skip].base_offset < end:
                skip += 1  # already here (an answer to an older request)
            if skip < len(headers):
                position = sum(h.batch_length + LOG_OVERHEAD for h in headers[:skip])
                partition_log.append_batches(view[position:], headers[skip:], now_ms)
        partition_log.update_high_watermark(min(data.high_watermark, partition_log.log_end_offset))
        # Retention and DeleteRecords on the leader move the log start; followers follow.
        start = min(data.log_start_offset, partition_log.high_watermark)
        if start > partition_log.log_start_offset:
            partition_log.delete_records_before(start)
        return False


class ReplicaFetchers:
    """One LeaderFetcher per leader broker this broker follows partitions of."""

    def __init__(self, ctx: BrokerContext) -> None:
        self.ctx = ctx
        self.fetchers: dict[int, LeaderFetcher] = {}
        self._owner: dict[tuple[str, int], int] = {}

    def add(self, key: tuple[str, int], replica: Replica, leader: int) -> None:
        if self._owner.get(key) not in (None, leader):
            self.remove(key)
        fetcher = self.fetchers.get(leader)
        if fetcher is None:
            fetcher = self.fetchers[leader] = LeaderFetcher(self.ctx, leader)
            fetcher.set_address(self._address(self.ctx.metadata.image, leader))
            fetcher.start()
        fetcher.partitions[key] = replica
        fetcher.delayed.pop(key, None)  # a new state (epoch, leader): worth asking at once
        self._owner[key] = leader
        fetcher.wake()

    def remove(self, key: tuple[str, int]) -> None:
        leader = self._owner.pop(key, None)
        if leader is not None:
            self.fetchers[leader].partitions.pop(key, None)
            self.fetchers[leader].delayed.pop(key, None)

    def brokers_changed(self, image: ClusterImage) -> None:
        for leader, fetcher in self.fetchers.items():
            fetcher.set_address(self._address(image, leader))

    @staticmethod
    def _address(image: ClusterImage, node_id: int) -> tuple[str, int] | None:
        broker = image.brokers.get(node_id)
        return None if broker is None else (broker.host, broker.port)

    async def stop(self) -> None:
        for fetcher in self.fetchers.values():
            await fetcher.stop()
        self.fetchers.clear()
