"""KIP-932 on a partition leader (Kafka's SharePartitionManager and ShareSessionCache): the
share partitions of the partitions led here, the share sessions of share consumers, and what
ShareFetch and ShareAcknowledge do with them. The state machine of one share partition is
strom.share.partition; its state is persisted through the share persister (``__share_group_state``)
before an acknowledgement is answered, so an accepted record is never delivered again.

A share session belongs to the connection that opened it (ShareFetch at epoch 0): when that
connection closes, or the session ends at epoch -1, the records its member still holds are
released at once; otherwise they come back when their acquisition lock expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from strom.handlers.context import BrokerContext
from strom.metadata import group_configs
from strom.metadata.configs import broker_config_value
from strom.protocol.errors import ErrorCode
from strom.share.partition import LogBatch, PersistedState, ShareConfig, SharePartition
from strom.share.records import ShareSnapshotValue

log = logging.getLogger(__name__)

INT32_MAX: Final = 2**31 - 1
FINAL_EPOCH: Final = -1
PartitionKey = tuple[str, uuid.UUID, int]  # (group, topic id, partition)


@dataclass
class ShareSession:
    group_id: str
    member_id: str
    connection: object
    partitions: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    next_epoch: int = 1
    new: set[tuple[uuid.UUID, int]] = field(default_factory=set)  # not yet in a response


@dataclass
class _Entry:
    """One loaded share partition and what its persistence needs."""

    partition: SharePartition
    topic: str
    leader_epoch: int
    state_epoch: int
    persisted: PersistedState
    timer: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ShareError(Exception):
    def __init__(self, error: int, message: str | None = None) -> None:
        super().__init__(message or ErrorCode(error).name)
        self.error = error
        self.message = message


class SharePartitionManager:
    def __init__(self, ctx: BrokerContext) -> None:
        self.ctx = ctx
        self.partitions: dict[PartitionKey, _Entry] = {}
        self.sessions: dict[tuple[str, str], ShareSession] = {}
        self._loading: dict[PartitionKey, asyncio.Future[_Entry]] = {}
        # records may have become acquirable (a release, an expiry, an ack): parked fetches look again
        self._version = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- configuration ---------------------------------------------------------------------------

    def _setting(self, group_id: str, name: str) -> str:
        """A group config's effective value: the group's own, else the broker's."""
        return group_configs.effective(self.ctx.image, self.ctx.config, group_id, name)

    def share_config(self, group_id: str) -> ShareConfig:
        return ShareConfig(
            delivery_count_limit=self._broker_int("group.share.delivery.count.limit"),
            record_lock_duration_ms=self.lock_duration_ms(group_id),
            max_record_locks=self._broker_int("group.share.partition.max.record.locks"),
        )

    def lock_duration_ms(self, group_id: str) -> int:
        return group_configs.effective_int(self.ctx.image, self.ctx.config, group_id, "share.record.lock.duration.ms")

    def _broker_int(self, name: str) -> int:
        """A broker setting: the dynamic cluster default, the static one, or Kafka's default."""
        return int(broker_config_value(name, self.ctx.config, self.ctx.image.broker_configs) or 0)

    # --- loading and persisting ------------------------------------------------------------------

    async def entry(self, group_id: str, topic_id: uuid.UUID, partition: int) -> _Entry:
        """The share partition, loaded from its persisted state (or started from
        share.auto.offset.reset) on first use; ShareError when this broker does not lead it."""
        topic = self.ctx.topic_name(topic_id)
        if topic is None:
            raise ShareError(ErrorCode.UNKNOWN_TOPIC_ID)
        log_, error = self.ctx.leader_log(topic, partition)
        if log_ is None:
            raise ShareError(error)
        key = (group_id, topic_id, partition)
        found = self.partitions.get(key)
        if found is not None and found.leader_epoch == log_.leader_epoch:
            return found
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.get_running_loop().create_future()
            try:
                entry = await self._load(group_id, topic, topic_id, partition, log_.leader_epoch)
            except BaseException as exc:
                del self._loading[key]
                failure = exc if isinstance(exc, ShareError) else ShareError(
                    getattr(exc, "error_code", ErrorCode.UNKNOWN_SERVER_ERROR))  # SharePersisterError's
                loading.set_exception(failure)
                loading.exception()  # retrieved: every caller raises it
                if isinstance(exc, Exception):
                    raise failure from exc
                raise
            del self._loading[key]
            self.partitions[key] = entry
            loading.set_result(entry)
            return entry
        return await asyncio.shield(loading)

    async def _load(self, group_id: str, topic: str, topic_id: uuid.UUID, partition: int, leader_epoch: int) -> _Entry:
        persister = self.ctx.share_persister
        if persister is None:
            raise ShareError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        # read with this leadership's epoch: the share coordinator then fences a deposed
        # leader's late writes (FENCED_LEADER_EPOCH), so none can overwrite what is loaded here
        stored = await persister.read(group_id, topic_id, partition, leader_epoch)
        if stored is None:
            start = await self._initial_offset(group_id, topic, partition)
            state = PersistedState(start, ())
            state_epoch = -1
        else:
            state = PersistedState(stored.start_offset, tuple(stored.state_batches))
            state_epoch = stored.state_epoch
        entry = _Entry(SharePartition(self.share_config(group_id), state), topic, leader_epoch,
                       state_epoch, state if stored is not None else PersistedState(-1, ()))
        log_, _ = self.ctx.leader_log(topic, partition)
        if log_ is not None and entry.partition.start_offset < log_.log_start_offset:
            entry.partition.reset_start(log_.log_start_offset)
        if stored is None:
            await self._persist(group_id, topic_id, partition, entry)  # the start offset chosen now holds
        return entry

    async def _initial_offset(self, group_id: str, topic: str, partition: int) -> int:
        """share.auto.offset.reset: latest (Kafka's default), earliest, or by_duration:<ISO-8601>."""
        log_, _ = self.ctx.leader_log(topic, partition)
        if log_ is None:
            return 0
        reset = self._setting(group_id, "share.auto.offset.reset").strip()
        if reset.lower() == "earliest":
            return log_.log_start_offset
        if reset.lower().startswith("by_duration:"):
            duration = group_configs.iso_duration_ms(reset.split(":", 1)[1])
            if duration is None:
                return log_.high_watermark
            found = log_.offset_for_timestamp(int(time.time() * 1000) - duration)
            return found[0] if found is not None else log_.high_watermark
        return log_.high_watermark

    async def _persist(self, group_id: str, topic_id: uuid.UUID, partition: int, entry: _Entry) -> int:
        """Write the partition's state if it changed; the error (NONE when stored)."""
        state = entry.partition.state()
        if state == entry.persisted:
            return ErrorCode.NONE
        persister = self.ctx.share_persister
        if persister is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        now = int(time.time() * 1000)
        value = ShareSnapshotValue(  # the coordinator numbers the snapshots
            snapshot_epoch=0, state_epoch=max(entry.state_epoch, 0), leader_epoch=entry.leader_epoch,
            start_offset=state.start_offset, create_timestamp=now, write_timestamp=now, state_batches=state.batches,
            delivery_complete_count=entry.partition.delivery_complete_count())
        error: int = await persister.write(group_id, topic_id, partition, value)
        if error == ErrorCode.NONE:
            entry.persisted = state
        elif error in (ErrorCode.FENCED_STATE_EPOCH, ErrorCode.FENCED_LEADER_EPOCH):
            # the state was reset (AlterShareGroupOffsets) or another leader wrote: load it again
            self._drop((group_id, topic_id, partition))
        return error

    def _notify(self) -> None:
        self._version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _arm(self, key: PartitionKey, entry: _Entry) -> None:
        """One timer per share partition, at its earliest acquisition-lock deadline."""
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        deadline = entry.partition.next_lock_deadline()
        if deadline is None or self.partitions.get(key) is not entry:
            return
        delay = max(deadline - self.ctx.now_ms(), 0) / 1000
        entry.timer = asyncio.get_running_loop().call_later(delay, self._spawn_expiry, key)

    def _spawn_expiry(self, key: PartitionKey) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(key))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("share lock expiry failed", exc_info=task.exception())

    async def _expire(self, key: PartitionKey) -> None:
        entry = self.partitions.get(key)
        if entry is None:
            return
        async with entry.lock:
            if entry.partition.expire_locks(self.ctx.now_ms()):
                self._notify()
                await self._persist(*key, entry)
            self._arm(key, entry)

    # --- sessions --------------------------------------------------------------------------------

    def open_session(self, group_id: str, member_id: str, epoch: int, connection: object,
                     partitions: Iterable[tuple[uuid.UUID, int]], forgotten: Iterable[tuple[uuid.UUID, int]]) -> ShareSession:
        """The session a request runs in (Kafka's ShareSessionCache.maybeCreateSession and
        friends): epoch 0 starts one (a previous one is dropped without releasing anything),
        epoch n > 0 must be the one expected, and -1 names the session it ends."""
        key = (group_id, member_id)
        if epoch == 0:
            limit = self._broker_int("group.share.max.share.sessions")
            if key not in self.sessions and len(self.sessions) >= limit:
                raise ShareError(ErrorCode.SHARE_SESSION_LIMIT_REACHED,
                                 f"This broker has {limit} share sessions (group.share.max.share.sessions).")
            started = self.sessions[key] = ShareSession(group_id, member_id, connection)
            started.partitions.update(partitions)
            started.new = set(started.partitions)
            return started
        session = self.sessions.get(key)
        if session is None:
            raise ShareError(ErrorCode.SHARE_SESSION_NOT_FOUND, "The share session was not found.")
        if epoch != FINAL_EPOCH:
            if epoch != session.next_epoch:
                raise ShareError(ErrorCode.INVALID_SHARE_SESSION_EPOCH,
                                 f"The share session epoch is {epoch}, expected {session.next_epoch}.")
            session.next_epoch = 1 if session.next_epoch == INT32_MAX else session.next_epoch + 1
            added = set(partitions) - session.partitions
            session.partitions.update(added)
            session.new |= added
            session.partitions.difference_update(forgotten)
        return session

    async def close_session(self, session: ShareSession) -> None:
        """The session ended (epoch -1, or its connection closed): what its member holds goes back.
        A session already replaced by the member's new one (epoch 0 on another connection)
        releases nothing: the records are the new session's now, as in Kafka."""
        if self.sessions.get((session.group_id, session.member_id)) is not session:
            return
        del self.sessions[(session.group_id, session.member_id)]
        for topic_id, partition in sorted(session.partitions):
            key = (session.group_id, topic_id, partition)
            entry = self.partitions.get(key)
            if entry is None:
                continue
            async with entry.lock:
                if entry.partition.release_member(session.member_id, self.ctx.now_ms()):
                    self._notify()
                    await self._persist(*key, entry)
                self._arm(key, entry)
        if not any(s.group_id == session.group_id for s in self.sessions.values()):
            # nobody of the group reads here now: its state is stored; loaded again on next use,
            # so offsets altered or deleted meanwhile take effect
            self.forget_group(session.group_id)

    def connection_closed(self, connection: object) -> None:
        for session in [s for s in self.sessions.values() if s.connection is connection]:
            task = asyncio.get_running_loop().create_task(self.close_session(session))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    # --- acknowledgements ----------------------------------------------------------------------

    async def acknowledge(self, group_id: str, member_id: str, topic_id: uuid.UUID, partition: int,
                          batches: Sequence[tuple[int, int, Sequence[int]]]) -> int:
        """Apply one partition's AcknowledgementBatches and store the result: an ErrorCode."""
        if not batches:
            return ErrorCode.NONE
        for _first, _last, types in batches:
            if any(t not in (0, 1, 2, 3) for t in types):
                return ErrorCode.INVALID_REQUEST
        try:
            entry = await self.entry(group_id, topic_id, partition)
        except ShareError as exc:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if exc.error == ErrorCode.UNKNOWN_SERVER_ERROR else exc.error
        key = (group_id, topic_id, partition)
        async with entry.lock:
            error = entry.partition.acknowledge(member_id, batches, self.ctx.now_ms())
            if error == ErrorCode.NONE:
                self._notify()
                stored = await self._persist(*key, entry)
                if stored != ErrorCode.NONE:
                    log.warning("share state of %s-%d for group %s not stored: %s", entry.topic, partition, group_id,
                                ErrorCode(stored).name)
                    error = ErrorCode.NOT_LEADER_OR_FOLLOWER if stored in (
                        ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.FENCED_STATE_EPOCH) else stored
            self._arm(key, entry)
        return error

    # --- fetching ------------------------------------------------------------------------------

    async def fetch(self, group_id: str, member_id: str, partitions: Sequence[tuple[uuid.UUID, int]], max_wait_ms: int,
                    min_bytes: int, max_bytes: int, max_records: int, batch_size: int) -> dict[tuple[uuid.UUID, int], Any]:
        """Acquire records for the member: {(topic id, partition): (records bytes, [Acquired], error)}.
        Waits up to ``max_wait_ms`` while nothing can be acquired (a long poll)."""
        deadline = time.monotonic() + max_wait_ms / 1000
        while True:
            seen = self._version
            results = await self._fetch_once(group_id, member_id, partitions, max_bytes, max_records, batch_size)
            remaining = deadline - time.monotonic()
            # anything acquired goes out now (MinBytes only decides how long an empty fetch
            # waits): records acquired and held back would wait for their locks to expire
            if (any(r[1] or r[2] for r in results.values()) or remaining <= 0 or not partitions
                    or max_records <= 0 or max_bytes <= 0):
                return results
            if self._version != seen:
                continue  # a release or an expiry while we read: look again at once
            commits = asyncio.ensure_future(self.ctx.commits.wait(remaining))
            changed = asyncio.get_running_loop().create_future()
            self._waiters.add(changed)
            try:
                await asyncio.wait([commits, changed], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                commits.cancel()
                self._waiters.discard(changed)

    async def _fetch_once(self, group_id: str, member_id: str, partitions: Sequence[tuple[uuid.UUID, int]], max_bytes: int,
                          max_records: int, batch_size: int) -> dict[tuple[uuid.UUID, int], Any]:
        results: dict[tuple[uuid.UUID, int], Any] = {}
        records_left, bytes_left = max_records, max_bytes
        isolation = self._setting(group_id, "share.isolation.level")
        config = self.share_config(group_id)  # read per fetch: the group's configs may have changed
        for topic_id, partition in partitions:
            if records_left <= 0 or bytes_left <= 0:
                results[(topic_id, partition)] = (b"", [], ErrorCode.NONE)
                continue
            try:
                entry = await self.entry(group_id, topic_id, partition)
            except ShareError as exc:
                results[(topic_id, partition)] = (b"", [], exc.error)
                continue
            log_, error = self.ctx.leader_log(entry.topic, partition)
            if log_ is None:
                results[(topic_id, partition)] = (b"", [], error)
                continue
            key = (group_id, topic_id, partition)
            async with entry.lock:
                if entry.partition.start_offset < log_.log_start_offset:
                    entry.partition.reset_start(log_.log_start_offset)
                limit = log_.last_stable_offset if isolation == "read_committed" else log_.high_watermark
                entry.partition.config = config
                entry.partition.expire_locks(self.ctx.now_ms())
                start = entry.partition.next_fetch_offset()
                batches, chunks = _read_batches(log_, start, limit, bytes_left, records_left)
                acquired = entry.partition.acquire(member_id, batches, records_left, batch_size, limit,
                                                   self.ctx.now_ms(), fetch_offset=start) if batches else []
                self._arm(key, entry)
            if not acquired:
                results[(topic_id, partition)] = (b"", [], ErrorCode.NONE)
                continue
            first, last = acquired[0].first_offset, acquired[-1].last_offset
            data = b"".join(os.pread(fd, size, position) for (base, end, fd, position, size) in chunks
                            if end >= first and base <= last)
            records_left -= sum(a.last_offset - a.first_offset + 1 for a in acquired)
            bytes_left -= len(data)
            results[(topic_id, partition)] = (data, acquired, ErrorCode.NONE)
        return results

    # --- leadership and shutdown -----------------------------------------------------------------

    def leadership_changed(self, topic: str, partition: int, leading: bool) -> None:
        """A partition no longer led here: its share partitions go (their state is stored)."""
        if leading:
            return
        for key in [k for k, e in self.partitions.items() if e.topic == topic and k[2] == partition]:
            self._drop(key)

    def forget_group(self, group_id: str) -> None:
        """The group's share state was reset or deleted elsewhere: load it again on next use."""
        for key in [k for k in self.partitions if k[0] == group_id]:
            self._drop(key)

    def _drop(self, key: PartitionKey) -> None:
        entry = self.partitions.pop(key, None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()

    def stop(self) -> None:
        for entry in self.partitions.values():
            if entry.timer is not None:
                entry.timer.cancel()
        for task in self._tasks:
            task.cancel()
        self.partitions.clear()
        self.sessions.clear()


def _read_batches(log_: Any, start: int, limit: int, max_bytes: int,
                  max_records: int) -> tuple[list[LogBatch], list[tuple[int, int, int, int, int]]]:
    """The log's batches from ``start`` below ``limit``, whole, up to about ``max_bytes`` and
    ``max_records`` offsets (at least one): their headers, and where their bytes are (base, last,
    fd, position, size). Bounded by records too: a fetch never walks more headers than it can use."""
    batches: list[LogBatch] = []
    chunks: list[tuple[int, int, int, int, int]] = []
    total = 0
    if start >= limit:
        return batches, chunks
    with contextlib.suppress(OSError, ValueError):  # a segment removed by retention meanwhile: nothing this time
        for segment, position, header in log_.batches(start):
            if header.base_offset >= limit:
                break
            if header.last_offset < start:
                continue
            if batches and total + header.size > max_bytes:
                break
            batches.append(LogBatch(header.base_offset, header.last_offset, header.is_control))
            chunks.append((header.base_offset, header.last_offset, segment.fd, position, header.size))
            total += header.size
            if header.last_offset - start + 1 >= max_records:
                break
    return batches, chunks
