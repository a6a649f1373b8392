"""The imperative shell around the group coordinator: logs, timers, parked requests.

One ``GroupCoordinator`` shard per ``__consumer_offsets`` partition (Kafka's
CoordinatorRuntime). For each operation the runtime

1. calls the shard with the clock's ``now_ms`` and a *ticket* for the caller's request;
2. carries out the Result: appends its records to the shard's partition as one batch through
   the ordinary PartitionLog append (uncompressed, build_batch), replays them into the shard
   right after the append (so the shard's durable view always equals the log), answers the
   tickets in ``completions``, arms or cancels asyncio timers per deadline key, and reports
   the append's outcome back when the Result asked for it (``appended``);
3. returns the response, or waits for the caller's ticket to be answered (a parked JoinGroup
   or SyncGroup). On one node the append is durable when it returns; the answer additionally
   waits for an fsync when flush.messages asks for one.

Everything between calling the shard and resolving the tickets is synchronous: no other
request can run on a shard in between, so no locks are needed (the kfake run-loop rule).

Loading: at start-up every partition of an existing __consumer_offsets is LOADING; a
background task replays one partition after the other (yielding between partitions), and a
request for a group of a loading partition gets COORDINATOR_LOAD_IN_PROGRESS. The topic is
created (offsets.topic.num.partitions, cleanup.policy=compact) on the first FindCoordinator,
as Kafka does. A partition is read back whole and synchronously, so a compaction cannot swap
its segments in the middle.

Not done: replication (the append would wait for the in-sync replicas), and transactional
offset commits (control batches are skipped while loading).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.records import (
    OFFSETS_TOPIC,
    CoordinatorRecord,
    RecordFormatError,
    deserialize,
    partition_for,
    serialize,
)
from strom.coordinator.shard import CoordinatorError, GroupConfig, Result, TimerKey
from strom.handlers.context import BrokerContext, GroupOperation
from strom.log.partition import PartitionLog
from strom.metadata.broker_config import BrokerConfig
from strom.metadata.configs import ConfigError
from strom.protocol.errors import ErrorCode
from strom.protocol.records import (
    CorruptRecord,
    InvalidRecords,
    build_batch,
    decode_records,
    validate_batches,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Kafka's offsets topic settings (offsets.topic.segment.bytes, compaction).
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600", "compression.type": "producer"}


def group_config(config: BrokerConfig) -> GroupConfig:
    return GroupConfig(
        min_session_timeout_ms=config.group_min_session_timeout_ms,
        max_session_timeout_ms=config.group_max_session_timeout_ms,
        initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
        max_size=config.group_max_size,
        offset_metadata_max_bytes=config.offset_metadata_max_bytes,
        offsets_retention_ms=config.offsets_retention_minutes * 60_000,
        offsets_retention_check_interval_ms=config.offsets_retention_check_interval_ms,
    )


def operation_error(error: int) -> int:
    """What a request is told when the records of its operation could not be stored
    (Kafka's GroupCoordinatorService.handleOperationException)."""
    if error in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.REQUEST_TIMED_OUT):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if error in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if error in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return error


class ShardState(enum.Enum):
    LOADING = "loading"
    ACTIVE = "active"


@dataclass(eq=False)
class _Shard:
    partition: int
    log: PartitionLog
    coordinator: GroupCoordinator
    state: ShardState = ShardState.LOADING
    timers: dict[TimerKey, asyncio.TimerHandle] = field(default_factory=dict)


class GroupCoordinatorRuntime:
    """Implements handlers.context.GroupRuntime. Owned by the event loop.

    ``_shards`` by partition: opened at start-up (LOADING) or when the topic is created; a shard
    whose partition log was replaced (the topic deleted and created again) is unloaded and
    reopened. ``_waiters``: the future of every request with an unanswered ticket.
    """

    def __init__(self, ctx: BrokerContext, config: GroupConfig, clock: Callable[[], int] | None = None) -> None:
        self.ctx = ctx
        self.config = config
        self._clock = clock or ctx.now_ms
        self._shards: dict[int, _Shard] = {}
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._tickets = itertools.count(1)
        self._loader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open every partition of an existing __consumer_offsets as LOADING and replay them in
        the background."""
        self._loop = asyncio.get_running_loop()
        topic = self.ctx.metadata.topic(OFFSETS_TOPIC)
        if topic is None:
            return
        partitions = []
        for p in range(topic.partitions):
            partition_log = self.ctx.partition_log(OFFSETS_TOPIC, p)
            if partition_log is not None:
                self._shards[p] = _Shard(p, partition_log, GroupCoordinator(self.config))
                partitions.append(p)
        self._loader = self._loop.create_task(self._load_all(partitions))

    async def stop(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
            self._loader = None
        for shard in list(self._shards.values()):
            self._unload(shard)
        self._shards.clear()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(CoordinatorError(ErrorCode.NOT_COORDINATOR))
        self._waiters.clear()

    async def _load_all(self, partitions: list[int]) -> None:
        started = self._clock()
        for p in partitions:
            shard = self._shards.get(p)
            if shard is not None and shard.state is ShardState.LOADING:
                try:
                    self._load(shard)
                except Exception:
                    log.exception("loading %s-%d failed", OFFSETS_TOPIC, p)
            await asyncio.sleep(0)  # let requests (and LOAD_IN_PROGRESS answers) through
        groups = sum(len(s.coordinator.groups) for s in self._shards.values())
        offsets = sum(len(s.coordinator.offsets) for s in self._shards.values())
        log.info(
            "loaded %d partitions of %s: %d groups, %d committed offsets in %d ms",
            len(partitions), OFFSETS_TOPIC, groups, offsets, self._clock() - started,
        )

    def _load(self, shard: _Shard) -> None:
        """Replay the partition from its log start, then start the shard's sessions and timers."""
        coordinator = shard.coordinator
        partition_log = shard.log
        skipped = 0
        for segment, position, header in partition_log.batches(partition_log.log_start_offset):
            if header.base_offset + header.last_offset_delta < partition_log.log_start_offset:
                continue
            if header.is_control:
                continue  # transaction markers: transactional offset commits are a later issue
            try:
                records = decode_records(os.pread(segment.fd, header.size, position))
            except CorruptRecord as exc:
                log.warning("%s: skipping an unreadable batch at %d: %s", partition_log.name, header.base_offset, exc)
                continue
            for record in records:
                try:
                    parsed = deserialize(record.key, record.value)
                except RecordFormatError as exc:
                    log.warning("%s: skipping record %d: %s", partition_log.name, record.offset, exc)
                    continue
                if parsed is None:
                    skipped += 1  # a record type strom does not keep (KIP-848 groups ...)
                    continue
                coordinator.replay(parsed)
        if skipped:
            log.info("%s: skipped %d records of group types strom does not implement", partition_log.name, skipped)
        shard.state = ShardState.ACTIVE
        self._carry_out(shard, coordinator.loaded(self._clock()))

    def _unload(self, shard: _Shard) -> None:
        if self._shards.get(shard.partition) is shard:
            del self._shards[shard.partition]
        if shard.state is ShardState.ACTIVE:
            result = shard.coordinator.unloaded(self._clock())
            for ticket, response in result.completions:
                self._resolve(ticket, response)
        for handle in shard.timers.values():
            handle.cancel()
        shard.timers.clear()

    # --- finding the shard -----------------------------------------------------------------------

    def ensure_offsets_topic(self) -> None:
        if self.ctx.metadata.topic(OFFSETS_TOPIC) is not None:
            return
        partitions = self.ctx.config.offsets_topic_num_partitions
        log.info("creating %s with %d partitions", OFFSETS_TOPIC, partitions)
        try:
            self.ctx.create_topic(OFFSETS_TOPIC, partitions, dict(OFFSETS_TOPIC_CONFIGS))
        except (ConfigError, OSError) as exc:
            log.error("cannot create %s: %s", OFFSETS_TOPIC, exc)
            raise CoordinatorError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"cannot create {OFFSETS_TOPIC}") from exc

    def _shard(self, group_id: str) -> _Shard:
        topic = self.ctx.metadata.topic(OFFSETS_TOPIC)
        if topic is None:
            for shard in list(self._shards.values()):
                self._unload(shard)  # the topic was deleted
            raise CoordinatorError(ErrorCode.NOT_COORDINATOR, f"{OFFSETS_TOPIC} does not exist")
        return self._shard_at(partition_for(group_id, topic.partitions))

    def _shard_at(self, partition: int) -> _Shard:
        partition_log = self.ctx.partition_log(OFFSETS_TOPIC, partition)
        if partition_log is None:
            raise CoordinatorError(ErrorCode.NOT_COORDINATOR, f"no log for {OFFSETS_TOPIC}-{partition}")
        shard = self._shards.get(partition)
        if shard is not None and shard.log is not partition_log:
            self._unload(shard)
            shard = None
        if shard is None:
            # A partition created since start-up: it is new (or tiny), so load it right away.
            shard = self._shards[partition] = _Shard(partition, partition_log, GroupCoordinator(self.config))
            self._load(shard)
        if shard.state is ShardState.LOADING:
            raise CoordinatorError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        return shard

    # --- handlers' entry points ------------------------------------------------------------------

    async def call(self, group_id: str, operation: GroupOperation) -> Any:
        shard = self._shard(group_id)
        assert self._loop is not None, "the runtime was not started"
        ticket = next(self._tickets)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiters[ticket] = future
        try:
            result = operation(shard.coordinator, self._clock(), ticket)
            error = self._carry_out(shard, result)
            if result.records and not error and shard.log.unflushed_messages >= shard.log.config.flush_messages:
                await self.ctx.flush(shard.log)  # flush.messages: the answer waits for the fsync
            if result.response is not None:
                if error:
                    raise CoordinatorError(operation_error(error))
                return result.response
            return await future
        finally:
            self._waiters.pop(ticket, None)

    def read(self, group_id: str, read: Callable[[GroupCoordinator], T]) -> T:
        return read(self._shard(group_id).coordinator)

    def read_all(self, read: Callable[[GroupCoordinator], T]) -> tuple[int, list[T]]:
        topic = self.ctx.metadata.topic(OFFSETS_TOPIC)
        if topic is None:
            return ErrorCode.NONE, []
        error: int = ErrorCode.NONE
        out = []
        for p in range(topic.partitions):
            try:
                out.append(read(self._shard_at(p).coordinator))
            except CoordinatorError as exc:
                if exc.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    error = exc.error_code
        return error, out

    # --- carrying out a Result -------------------------------------------------------------------

    def _carry_out(self, shard: _Shard, result: Result) -> int:
        """Append, replay, answer, arm; returns the append's error (0: none or success)."""
        error = 0
        if result.records:
            error = self._append(shard, result.records)
            if not error:
                for record in result.records:
                    shard.coordinator.replay(record)
        for ticket, response in result.completions:
            self._resolve(ticket, response)
        self._arm(shard, result.deadlines)
        if result.append_token is not None:
            self._carry_out(shard, shard.coordinator.appended(result.append_token, error, self._clock()))
        return error

    def _append(self, shard: _Shard, records: Iterable[CoordinatorRecord]) -> int:
        partition_log = self.ctx.partition_log(OFFSETS_TOPIC, shard.partition)
        if partition_log is None or partition_log is not shard.log:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        now_ms = self._clock()
        batch = build_batch([(key, value, (), now_ms) for key, value in map(serialize, records)])
        try:
            headers = validate_batches(batch, partition_log.config.max_message_bytes)
            partition_log.append(batch, headers, now_ms)
        except InvalidRecords as exc:
            log.warning("cannot append to %s: %s", partition_log.name, exc)
            return exc.error_code
        except OSError:
            log.exception("append to %s failed", partition_log.name)
            return ErrorCode.KAFKA_STORAGE_ERROR
        self.ctx.appends.notify()
        return ErrorCode.NONE

    def _resolve(self, ticket: int, response: Any) -> None:
        future = self._waiters.get(ticket)
        if future is not None and not future.done():  # gone: its connection closed meanwhile
            future.set_result(response)

    def _arm(self, shard: _Shard, deadlines: Iterable[tuple[TimerKey, int | None]]) -> None:
        loop = self._loop
        assert loop is not None
        now_ms = self._clock()
        for key, at in deadlines:
            handle = shard.timers.pop(key, None)
            if handle is not None:
                handle.cancel()
            if at is not None:
                shard.timers[key] = loop.call_later(max(at - now_ms, 1) / 1000, self._fire, shard, key)

    def _fire(self, shard: _Shard, key: TimerKey) -> None:
        shard.timers.pop(key, None)
        if self._shards.get(shard.partition) is not shard or shard.state is not ShardState.ACTIVE:
            return
        try:
            self._carry_out(shard, shard.coordinator.expire(self._clock()))
        except Exception:
            log.exception("group coordinator timer %s failed", key)
        # The loop's clock and the wall clock differ slightly: a timer that fired early is
        # still pending in the shard, so it is armed again.
        at = shard.coordinator.deadline(key)
        if at is not None and key not in shard.timers:
            self._arm(shard, [(key, at)])

    # --- introspection (tests, tools) ------------------------------------------------------------

    def state(self, partition: int) -> ShardState | None:
        shard = self._shards.get(partition)
        return None if shard is None else shard.state

    def coordinator(self, partition: int) -> GroupCoordinator | None:
        shard = self._shards.get(partition)
        return None if shard is None else shard.coordinator
