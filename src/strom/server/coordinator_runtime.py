"""The imperative shell around the coordinators: logs, timers, parked requests.

``CoordinatorRuntime`` keeps one pure coordinator shard per partition of an internal compacted
topic (Kafka's CoordinatorRuntime): ``GroupCoordinatorRuntime`` (below) for
``__consumer_offsets``, ``TransactionCoordinatorRuntime`` (txn_runtime.py) for
``__transaction_state``. For each operation the runtime

1. calls the shard with the clock's ``now_ms`` and a *ticket* for the caller's request;
2. carries out the Result: appends its records to the shard's partition as one batch through
   the ordinary PartitionLog append (uncompressed, build_batch; a transactional batch of the
   Result's producer for transactional offset commits), replays them into the shard right
   after the append (so the shard's durable view always equals the log), writes the Result's
   transaction markers once the records are stored, answers the tickets in ``completions``,
   arms or cancels asyncio timers per deadline key, and reports the append's outcome back when
   the Result asked for it (``appended``);
3. returns the response, or waits for the caller's ticket to be answered (a parked JoinGroup,
   SyncGroup or EndTxn). On one node the append is durable when it returns; the answer
   additionally waits for an fsync when flush.messages asks for one.

Everything between calling the shard and resolving the tickets is synchronous: no other
request can run on a shard in between, so no locks are needed (the kfake run-loop rule).

Loading: the runtime coordinates exactly the partitions this broker leads (the replica
manager reports leadership changes): a partition becomes LOADING when this broker starts
leading it, and a background task replays the loading partitions one after the other
(yielding between them); a request for a key of a loading partition gets
COORDINATOR_LOAD_IN_PROGRESS, for a partition led elsewhere NOT_COORDINATOR. Losing the
leadership unloads the shard. The topic is created (compacted, with
offsets.topic.replication.factor / transaction.state.log.replication.factor replicas capped
by the live brokers) on the first FindCoordinator, as Kafka does. A partition is read back
whole and synchronously, so a compaction cannot swap its segments in the middle.

An operation's records are answered once the high watermark covers them (they are on every
in-sync replica, so the next coordinator has them); on a single node that is at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.records import (
    OFFSETS_TOPIC,
    RecordFormatError,
    partition_for,
)
from strom.coordinator.records import deserialize as deserialize_group_record
from strom.coordinator.records import serialize as serialize_group_record
from strom.coordinator.shard import (
    OPERATION_ERRORS,
    CoordinatorError,
    GroupConfig,
    Result,
    TimerKey,
    TxnMarker,
    write_error,
)
from strom.handlers.context import BrokerContext, Commit
from strom.log.partition import PartitionLog
from strom.log.producer_state import ProducerStateError
from strom.log.segment import LogSegment
from strom.metadata.broker_config import BrokerConfig, consumer_assignors
from strom.metadata.configs import ConfigError, broker_config_value
from strom.protocol.errors import ErrorCode
from strom.protocol.records import (
    BatchHeader,
    CorruptRecord,
    InvalidRecords,
    build_batch,
    decode_records,
    read_control_marker,
    validate_batches,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C")  # the shard's coordinator type

# Kafka's settings of its internal topics (offsets.topic.segment.bytes and
# transaction.state.log.segment.bytes, compaction).
INTERNAL_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600", "compression.type": "producer"}
# How long an operation's records may wait for the in-sync replicas (Kafka's
# offsets.commit.timeout.ms default).
COMMIT_TIMEOUT_MS = 5000


def group_config(config: BrokerConfig) -> GroupConfig:
    return GroupConfig(
        min_session_timeout_ms=config.group_min_session_timeout_ms,
        max_session_timeout_ms=config.group_max_session_timeout_ms,
        initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
        max_size=config.group_max_size,
        offset_metadata_max_bytes=config.offset_metadata_max_bytes,
        offsets_retention_ms=config.offsets_retention_minutes * 60_000,
        offsets_retention_check_interval_ms=config.offsets_retention_check_interval_ms,
        consumer_session_timeout_ms=config.group_consumer_session_timeout_ms,
        consumer_heartbeat_interval_ms=config.group_consumer_heartbeat_interval_ms,
        consumer_max_size=config.group_consumer_max_size,
        consumer_assignors=consumer_assignors(config),
        share_session_timeout_ms=_static_int("group.share.session.timeout.ms", config),
        share_heartbeat_interval_ms=_static_int("group.share.heartbeat.interval.ms", config),
        share_max_size=_static_int("group.share.max.size", config),
    )


def _static_int(name: str, config: BrokerConfig) -> int:
    """A broker setting BrokerConfig has no field for (``-o name=value``, or Kafka's default)."""
    return int(broker_config_value(name, config, {}) or 0)


class ShardState(enum.Enum):
    LOADING = "loading"
    ACTIVE = "active"


@dataclass(eq=False)
class RuntimeShard(Generic[C]):
    partition: int
    log: PartitionLog
    coordinator: C
    state: ShardState = ShardState.LOADING
    timers: dict[TimerKey, asyncio.TimerHandle] = field(default_factory=dict)


class CoordinatorRuntime(Generic[C]):
    """The shards of one internal topic. Owned by the event loop.

    ``_shards`` by partition: opened at start-up (LOADING) or when the topic is created; a shard
    whose partition log was replaced (the topic deleted and created again) is unloaded and
    reopened. ``_waiters``: the future of every request with an unanswered ticket.

    Subclasses name the topic and its partition count, make coordinators, and decode and
    encode the topic's records; the coordinators provide ``replay``, ``loaded``, ``unloaded``,
    ``expire``, ``appended`` and ``deadline``.
    """

    topic: str = ""
    kind: str = "coordinator"  # for log lines

    def __init__(self, ctx: BrokerContext, clock: Callable[[], int] | None = None) -> None:
        self.ctx = ctx
        self._clock = clock or ctx.now_ms
        self._shards: dict[int, RuntimeShard[C]] = {}
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._tickets = itertools.count(1)
        self._loader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_loads: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- what subclasses provide -----------------------------------------------------------------

    def _num_partitions(self) -> int:
        raise NotImplementedError

    def _new_coordinator(self, partition_log: PartitionLog) -> C:
        raise NotImplementedError

    def _deserialize(self, key: bytes | None, value: bytes | None) -> Any:
        """The record, or None for a type this coordinator does not keep."""
        raise NotImplementedError

    def _serialize(self, record: Any) -> tuple[bytes, bytes | None]:
        raise NotImplementedError

    def _replay_control(self, shard: RuntimeShard[C], header: BatchHeader, data: bytes) -> None:
        """A transaction marker in the shard's partition (only __consumer_offsets has them)."""

    def _replay_record(self, shard: RuntimeShard[C], record: Any, producer_id: int) -> None:
        shard.coordinator.replay(record)  # type: ignore[attr-defined]

    def _write_markers(self, shard: RuntimeShard[C], markers: tuple[TxnMarker, ...]) -> None:
        raise AssertionError(f"{self.kind} coordinators write no transaction markers")

    def _summary(self) -> str:
        return ""

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def leadership_changed(self, topic: str, partition: int, leading: bool) -> None:
        """The replica manager's report: load a partition this broker now leads (in the
        background), unload one it no longer leads."""
        if topic != self.topic or self._loop is None:
            return
        shard = self._shards.get(partition)
        if shard is not None:
            self._unload(shard)
        if not leading:
            return
        partition_log = self.ctx.partition_log(self.topic, partition)
        if partition_log is None:
            return
        shard = self._shards[partition] = RuntimeShard(partition, partition_log, self._new_coordinator(partition_log))
        if partition_log.log_end_offset == partition_log.log_start_offset:
            self._load(shard)  # nothing to replay (a new topic): ready at once
            return
        self._pending_loads.append(partition)
        if self._loader is None or self._loader.done():
            self._loader = self._loop.create_task(self._load_pending())

    async def stop(self) -> None:
        for task in [self._loader, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loader = None
        self._loop = None  # leadership reports that still arrive change nothing
        for shard in list(self._shards.values()):
            self._unload(shard)
        self._shards.clear()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(CoordinatorError(ErrorCode.NOT_COORDINATOR))
        self._waiters.clear()

    async def _load_pending(self) -> None:
        await asyncio.sleep(0)  # let the broker finish starting (and serve) first
        started = self._clock()
        loaded = 0
        while self._pending_loads:
            p = self._pending_loads.pop(0)
            shard = self._shards.get(p)
            if shard is not None and shard.state is ShardState.LOADING:
                try:
                    self._load(shard)
                    loaded += 1
                except Exception:
                    log.exception("loading %s-%d failed", self.topic, p)
            await asyncio.sleep(0)  # let requests (and LOAD_IN_PROGRESS answers) through
        log.info("loaded %d partitions of %s%s in %d ms", loaded, self.topic, self._summary(), self._clock() - started)

    def _load(self, shard: RuntimeShard[C]) -> None:
        """Replay the partition from its log start, then start the shard's timers."""
        partition_log = shard.log
        skipped = 0
        for segment, position, header in partition_log.batches(partition_log.log_start_offset):
            if header.base_offset + header.last_offset_delta < partition_log.log_start_offset:
                continue
            skipped += self._replay_batch(shard, segment, position, header)
        if skipped:
            log.info("%s: skipped %d records of types strom does not implement", partition_log.name, skipped)
        shard.state = ShardState.ACTIVE
        self._carry_out(shard, shard.coordinator.loaded(self._clock()))  # type: ignore[attr-defined]

    def _replay_batch(self, shard: RuntimeShard[C], segment: LogSegment, position: int, header: BatchHeader) -> int:
        """Replay one batch read back from the log; returns how many records were skipped."""
        name = shard.log.name
        try:
            data = os.pread(segment.fd, header.size, position)
            if header.is_control:
                self._replay_control(shard, header, data)
                return 0
            records = decode_records(data)
        except CorruptRecord as exc:
            log.warning("%s: skipping an unreadable batch at %d: %s", name, header.base_offset, exc)
            return 0
        producer_id = header.producer_id if header.is_transactional else -1
        skipped = 0
        for record in records:
            try:
                parsed = self._deserialize(record.key, record.value)
            except RecordFormatError as exc:
                log.warning("%s: skipping record %d: %s", name, record.offset, exc)
                continue
            if parsed is None:
                skipped += 1
                continue
            self._replay_record(shard, parsed, producer_id)
        return skipped

    def _unload(self, shard: RuntimeShard[C]) -> None:
        if self._shards.get(shard.partition) is shard:
            del self._shards[shard.partition]
        if shard.state is ShardState.ACTIVE:
            result = shard.coordinator.unloaded(self._clock())  # type: ignore[attr-defined]
            for ticket, response in result.completions:
                self._resolve(ticket, response)
        for handle in shard.timers.values():
            handle.cancel()
        shard.timers.clear()

    # --- finding the shard -----------------------------------------------------------------------

    def _replication_factor(self) -> int:
        raise NotImplementedError

    def _topic_configs(self, replication_factor: int) -> dict[str, str]:
        return dict(INTERNAL_TOPIC_CONFIGS)

    async def ensure_topic(self) -> None:
        """Create the topic if it does not exist yet (Kafka: on first FindCoordinator), with
        its replication factor capped by the live brokers."""
        if self.ctx.metadata.topic(self.topic) is not None:
            return
        partitions = self._num_partitions()
        factor = max(1, min(self._replication_factor(), len(self.ctx.image.brokers)))
        log.info("creating %s with %d partitions, replication factor %d", self.topic, partitions, factor)
        try:
            await self.ctx.create_topic(self.topic, partitions, self._topic_configs(factor), replication_factor=factor)
        except ConfigError as exc:
            if exc.error_code == ErrorCode.TOPIC_ALREADY_EXISTS:  # another broker was first
                return
            log.error("cannot create %s: %s", self.topic, exc)
            raise CoordinatorError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"cannot create {self.topic}") from exc
        except OSError as exc:
            log.error("cannot create %s: %s", self.topic, exc)
            raise CoordinatorError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"cannot create {self.topic}") from exc

    def _shard(self, key: str) -> RuntimeShard[C]:
        topic = self.ctx.metadata.topic(self.topic)
        if topic is None:
            for shard in list(self._shards.values()):
                self._unload(shard)  # the topic was deleted
            raise CoordinatorError(ErrorCode.NOT_COORDINATOR, f"{self.topic} does not exist")
        return self._shard_at(partition_for(key, topic.partitions))

    def _shard_at(self, partition: int) -> RuntimeShard[C]:
        partition_log, _ = self.ctx.leader_log(self.topic, partition)
        if partition_log is None:
            raise CoordinatorError(ErrorCode.NOT_COORDINATOR, f"{self.topic}-{partition} is not led here")
        shard = self._shards.get(partition)
        if shard is not None and shard.log is not partition_log:
            self._unload(shard)
            shard = None
        if shard is None:
            # Led here but not reported yet (handler tests without a replica manager): new or
            # tiny, so load it right away.
            shard = self._shards[partition] = RuntimeShard(partition, partition_log, self._new_coordinator(partition_log))
            self._load(shard)
        if shard.state is ShardState.LOADING:
            raise CoordinatorError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        return shard

    def _active_shards(self) -> tuple[int, list[RuntimeShard[C]]]:
        """Every shard of the topic (COORDINATOR_LOAD_IN_PROGRESS if any is loading)."""
        topic = self.ctx.metadata.topic(self.topic)
        if topic is None:
            return ErrorCode.NONE, []
        error: int = ErrorCode.NONE
        out = []
        for p in range(topic.partitions):
            try:
                out.append(self._shard_at(p))
            except CoordinatorError as exc:
                if exc.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    error = exc.error_code
        return error, out

    # --- handlers' entry points ------------------------------------------------------------------

    async def call(self, key: str, operation: Callable[[C, int, int], Result]) -> Any:
        """Run an operation on the key's shard; returns its response once any records are
        stored, or, for a parked request, once it is answered."""
        shard = self._shard(key)
        assert self._loop is not None, "the runtime was not started"
        ticket = next(self._tickets)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiters[ticket] = future
        try:
            result = operation(shard.coordinator, self._clock(), ticket)
            error = self._carry_out(shard, result)
            if result.records and not error:
                commit = Commit.of(shard.log)  # before any await: bound to this leadership
                if shard.log.unflushed_messages >= shard.log.config.flush_messages:
                    await self.ctx.flush(shard.log)  # flush.messages: the answer waits for the fsync
                if shard.log.high_watermark < commit.next_offset:
                    error = await self.ctx.replica_view.wait_for_commit(commit, COMMIT_TIMEOUT_MS)
            if result.response is not None:
                if error:
                    raise CoordinatorError(write_error(error, OPERATION_ERRORS))
                return result.response
            return await future
        finally:
            self._waiters.pop(ticket, None)

    def read(self, key: str, read: Callable[[C], T]) -> T:
        return read(self._shard(key).coordinator)

    def read_all(self, read: Callable[[C], T]) -> tuple[int, list[T]]:
        error, shards = self._active_shards()
        return error, [read(shard.coordinator) for shard in shards]

    # --- carrying out a Result -------------------------------------------------------------------

    def _carry_out(self, shard: RuntimeShard[C], result: Result) -> int:
        """Append, replay, arm, write markers, answer; returns the append's error (0: none or
        success). Timers are armed before the markers, whose own Results may change them."""
        error = 0
        if result.records:
            error = self._append(shard, result.records, result.producer)
            if not error:
                producer_id = result.producer[0] if result.producer is not None else -1
                for record in result.records:
                    self._replay_record(shard, record, producer_id)
        self._arm(shard, result.deadlines)
        if result.markers and not error:
            if shard.log.high_watermark >= shard.log.log_end_offset:
                self._write_markers(shard, result.markers)
            else:
                # Markers go out only once the Prepare record is on the in-sync replicas (Kafka's
                # KAFKA-5130): a coordinator that fails over before would otherwise have told
                # some partitions to commit what its successor, lacking the record, aborts. A
                # deposed coordinator's record never commits, so it sends nothing.
                self._spawn(self._markers_when_committed(shard, result.markers, Commit.of(shard.log)))
        for ticket, response in result.completions:
            self._resolve(ticket, response)
        if result.append_token is not None:
            appended = shard.coordinator.appended(result.append_token, error, self._clock())  # type: ignore[attr-defined]
            self._carry_out(shard, appended)
        return error

    async def _markers_when_committed(self, shard: RuntimeShard[C], markers: tuple[TxnMarker, ...], commit: Commit) -> None:
        error = await self.ctx.replica_view.wait_for_commit(commit, COMMIT_TIMEOUT_MS)
        if error:
            log.info("%s: markers held back, the record carrying them was not committed (error %d)", shard.log.name, error)
        elif self._shards.get(shard.partition) is shard and shard.state is ShardState.ACTIVE:
            self._write_markers(shard, markers)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run background work of the runtime (cancelled by ``stop``)."""
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _append(self, shard: RuntimeShard[C], records: Iterable[Any], producer: tuple[int, int] | None) -> int:
        partition_log = self.ctx.partition_log(self.topic, shard.partition)
        if partition_log is None or partition_log is not shard.log:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        now_ms = self._clock()
        entries = [(key, value, (), now_ms) for key, value in map(self._serialize, records)]
        if producer is None:
            batch = build_batch(entries)
        else:  # a transactional batch of the producer (TxnOffsetCommit), as Kafka writes it
            batch = build_batch(entries, producer_id=producer[0], producer_epoch=producer[1], base_sequence=0, is_transactional=True)
        try:
            headers = validate_batches(batch, partition_log.config.max_message_bytes)
            partition_log.append(batch, headers, now_ms, from_client=False)
            self.ctx.replica_view.appended(self.topic, shard.partition)
        except (InvalidRecords, ProducerStateError) as exc:
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

    def _arm(self, shard: RuntimeShard[C], deadlines: Iterable[tuple[TimerKey, int | None]]) -> None:
        loop = self._loop
        assert loop is not None
        now_ms = self._clock()
        for key, at in deadlines:
            handle = shard.timers.pop(key, None)
            if handle is not None:
                handle.cancel()
            if at is not None:
                shard.timers[key] = loop.call_later(max(at - now_ms, 1) / 1000, self._fire, shard, key)

    def _fire(self, shard: RuntimeShard[C], key: TimerKey) -> None:
        shard.timers.pop(key, None)
        if self._shards.get(shard.partition) is not shard or shard.state is not ShardState.ACTIVE:
            return
        coordinator: Any = shard.coordinator
        try:
            self._carry_out(shard, coordinator.expire(self._clock()))
        except Exception:
            log.exception("%s coordinator timer %s failed", self.kind, key)
        # The loop's clock and the wall clock differ slightly: a timer that fired early is
        # still pending in the shard, so it is armed again.
        at = coordinator.deadline(key)
        if at is not None and key not in shard.timers:
            self._arm(shard, [(key, at)])

    # --- introspection (tests, tools) ------------------------------------------------------------

    def state(self, partition: int) -> ShardState | None:
        shard = self._shards.get(partition)
        return None if shard is None else shard.state

    def coordinator(self, partition: int) -> C | None:
        shard = self._shards.get(partition)
        return None if shard is None else shard.coordinator


class GroupCoordinatorRuntime(CoordinatorRuntime[GroupCoordinator]):
    """Implements handlers.context.GroupRuntime over ``__consumer_offsets``.

    Transactional offset commits are transactional batches there: replayed with their producer
    id (pending), and completed by the transaction's marker, read back at load or reported by
    the transaction coordinator's runtime when it writes one (``complete_transaction``)."""

    topic = OFFSETS_TOPIC
    kind = "group"

    def __init__(self, ctx: BrokerContext, config: GroupConfig, clock: Callable[[], int] | None = None) -> None:
        super().__init__(ctx, clock)
        self.config = config

    def _num_partitions(self) -> int:
        return self.ctx.config.offsets_topic_num_partitions

    def _replication_factor(self) -> int:
        return self.ctx.config.offsets_topic_replication_factor

    def _new_coordinator(self, partition_log: PartitionLog) -> GroupCoordinator:
        return GroupCoordinator(self.config)

    def _deserialize(self, key: bytes | None, value: bytes | None) -> Any:
        return deserialize_group_record(key, value)

    def _serialize(self, record: Any) -> tuple[bytes, bytes | None]:
        return serialize_group_record(record)

    def _replay_record(self, shard: RuntimeShard[GroupCoordinator], record: Any, producer_id: int) -> None:
        shard.coordinator.replay(record, producer_id)

    def _replay_control(self, shard: RuntimeShard[GroupCoordinator], header: BatchHeader, data: bytes) -> None:
        marker = read_control_marker(data)
        if marker.control_type in (0, 1):
            shard.coordinator.replay_end_transaction(header.producer_id, marker.is_commit)

    def _summary(self) -> str:
        groups = sum(len(s.coordinator.groups) for s in self._shards.values())
        offsets = sum(len(s.coordinator.offsets) for s in self._shards.values())
        return f": {groups} groups, {offsets} committed offsets"

    async def ensure_offsets_topic(self) -> None:
        await self.ensure_topic()

    def complete_transaction(self, partition: int, producer_id: int, commit: bool) -> None:
        """A marker was just appended to ``__consumer_offsets-<partition>``: commit or drop
        the producer's pending offsets there. A shard still loading (or not open yet) reads the
        marker from the log when it loads."""
        shard = self._shards.get(partition)
        if shard is not None and shard.state is ShardState.ACTIVE and shard.log is self.ctx.partition_log(self.topic, partition):
            shard.coordinator.replay_end_transaction(producer_id, commit)
