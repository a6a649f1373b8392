"""The replica manager: this broker's replicas, kept in step with the metadata image.

On every image change (``on_image``) it reconciles (CLUSTER.md, "Every broker"):

- a partition that lists this broker as a replica gets a log (created empty if needed);
- ``leader == me`` with a new leader epoch: become leader (the log stamps the epoch, the epoch
  cache records where it starts, followers' progress starts afresh, the fetcher forgets it);
- another leader: become follower (the fetcher for that leader replicates it; parked acks=all
  produces fail with NOT_LEADER_OR_FOLLOWER);
- no longer a replica, or the topic is gone: stop, and delete the local log;
- topic or broker config changes reach the open logs.

As leader it moves the high watermark (strom.replication.leader.LeaderReplicas computes it
from the followers' fetch offsets), wakes acks=all produces parked on it (the delayed-produce
purgatory) and consumer fetches, and writes ISR changes to the metadata store with
compare-and-set on the partition epoch: expansions when a follower catches up, shrinks every
replica.lag.time.max.ms / 2 for followers that fell behind.

On a single node the same code runs with one broker: every partition is led here, the log is
not ``replicated`` (its high watermark is its log end) and there are no followers.
Leadership changes are reported to listeners (the coordinator runtimes load and unload their
partitions of the internal topics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from strom.handlers.context import BrokerContext, Commit
from strom.log.checkpoint import read_topic_id, write_topic_id
from strom.log.manager import LogManager
from strom.log.partition import PartitionLog
from strom.metadata.configs import ConfigError
from strom.metadata.image import ClusterImage, PartitionState
from strom.protocol.errors import ErrorCode
from strom.replication.leader import UNKNOWN, LeaderReplicas

log = logging.getLogger(__name__)

LeadershipListener = Callable[[str, int, bool], None]  # (topic, partition, leading now)
RETRY_ISR_CHANGE_S = 1.0
RENOUNCE_TIMEOUT_MS = 60_000


@dataclass(eq=False)
class Replica:
    """This broker's replica of one partition. ``leader`` is set while this broker leads;
    ``waiters`` are acks=all produces parked until the high watermark reaches their offset."""

    topic: str
    partition: int
    topic_id: uuid.UUID
    log: PartitionLog
    state: PartitionState
    leader: LeaderReplicas | None = None
    waiters: list[tuple[int, int, asyncio.Future[int]]] = field(default_factory=list)  # (offset, min isr, future)


class ReplicaManager:
    """Implements handlers.context.ReplicaView. Owned by the event loop."""

    def __init__(self, ctx: BrokerContext, fetchers: FetcherRegistry | None = None) -> None:
        self.ctx = ctx
        self.node_id = ctx.config.node_id
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.fetchers = fetchers
        self._listeners: list[LeadershipListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    def add_leadership_listener(self, listener: LeadershipListener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        """Give up claims this broker's data no longer backs, then take up every role."""
        await self._renounce_lost_replicas()
        self.ctx.metadata.add_listener(self.on_image)
        self.on_image(None, self.ctx.metadata.image)

    async def _renounce_lost_replicas(self) -> None:
        """A broker that comes back without a partition's log (its data directory was wiped
        or replaced) must not lead it or count in its ISR before it has copied it again
        (CLUSTER.md, failure 7): leave the ISR, even when that empties it (only the unclean
        election can then bring the partition back, as data may be lost), and give up the
        leadership with a new leader epoch. Single node: there is no one to copy from."""
        if not self.ctx.logs.replicated:
            return
        lost = [key for key, state in self.ctx.metadata.image.partitions.items()
                if self.node_id in state.isr and self.ctx.logs.get(*key) is None]
        for topic, partition in lost:
            deadline = self.ctx.now_ms() + RENOUNCE_TIMEOUT_MS
            while (state := self.ctx.metadata.image.partition(topic, partition)) is not None and self.node_id in state.isr:
                if self.ctx.now_ms() > deadline:
                    # Serving now could make an empty log a leader: better not to start.
                    raise RuntimeError(f"{topic}-{partition}: this broker lost its log but cannot leave the ISR")
                leader, epoch = state.leader, state.leader_epoch
                if leader == self.node_id:
                    leader, epoch = -1, epoch + 1
                isr = tuple(r for r in state.isr if r != self.node_id)
                log.warning("%s-%d: no local log although in the ISR %s: leaving it", topic, partition, list(state.isr))
                try:
                    renounced = replace(state, leader=leader, leader_epoch=epoch, isr=isr)
                    if await self.ctx.metadata.alter_partition(topic, partition, renounced) is not None:
                        break
                except ConfigError as exc:
                    log.warning("%s-%d: could not leave the ISR: %s", topic, partition, exc)
                await asyncio.sleep(0.1)  # a newer state (or etcd) to come: read it and try again

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self.replicas.values():
            self._fail_waiters(replica, ErrorCode.NOT_LEADER_OR_FOLLOWER)

    # --- reconciliation -------------------------------------------------------------------------

    def on_image(self, old: ClusterImage | None, new: ClusterImage) -> None:
        if self._stopped:
            return  # the store's watch may outlive the broker's shutdown by a moment
        now_ms = self.ctx.now_ms()
        if old is not None:
            self._forget_restarted(old, new, now_ms)
        mine = {key: state for key, state in new.partitions.items() if self.node_id in state.replicas}
        for key, held in list(self.replicas.items()):
            topic = new.topics.get(key[0])
            if topic is None or topic.topic_id != held.topic_id:  # deleted (maybe created again)
                self._remove(self.replicas.pop(key), deleted=True)
            elif key not in mine:
                self._remove(self.replicas.pop(key), deleted=False)
        changed_configs = old is None or old.broker_configs != new.broker_configs or old.node_configs != new.node_configs
        for key, state in mine.items():
            topic = new.topics[key[0]]
            replica = self.replicas.get(key)
            if replica is None:
                partition_log = self._open_log(key, topic.topic_id, topic.configs, now_ms)
                replica = self.replicas[key] = Replica(key[0], key[1], topic.topic_id, partition_log, state)
                self._take_role(replica, state, now_ms, first=True)
            else:
                if changed_configs or old is None or old.topics.get(key[0]) is None or old.topics[key[0]].configs != topic.configs:
                    replica.log.update_config(self.ctx.log_config(topic.configs))
                if state != replica.state:
                    self._take_role(replica, state, now_ms, first=False)
        if self.fetchers is not None:
            self.fetchers.brokers_changed(new)

    def _open_log(self, key: tuple[str, int], topic_id: uuid.UUID, configs: Mapping[str, str], now_ms: int) -> PartitionLog:
        """The partition's log, created if needed; one left by an older topic of the same name
        (deleted and created again while this broker was away) is deleted first."""
        logs = self.ctx.logs
        partition_log = logs.get(*key)
        if partition_log is not None:
            stored = read_topic_id(partition_log.directory)
            if stored is not None and stored != topic_id:
                log.info("%s: left by an older topic of that name: deleting it", partition_log.name)
                asyncio.get_running_loop().run_in_executor(None, LogManager.purge, [logs.delete(key)])
                partition_log = None
        if partition_log is None:
            partition_log = logs.create(key[0], key[1], self.ctx.log_config(configs), now_ms)
        if read_topic_id(partition_log.directory) is None:
            write_topic_id(partition_log.directory, topic_id)
        return partition_log

    def _forget_restarted(self, old: ClusterImage, new: ClusterImage, now_ms: int) -> None:
        """A follower's broker that left or registered anew (a new broker epoch): what its
        earlier incarnation fetched says nothing of the new one's log."""
        gone = [n for n, b in old.brokers.items() if n not in new.brokers or new.brokers[n].epoch != b.epoch]
        if gone:
            for replica in self.replicas.values():
                if replica.leader is not None:
                    for node_id in gone:
                        replica.leader.forget(node_id, now_ms)

    def _take_role(self, replica: Replica, state: PartitionState, now_ms: int, *, first: bool) -> None:
        previous = replica.state
        try:
            self._apply_role(replica, state, now_ms, first=first)
        except Exception:
            # E.g. the epoch checkpoint could not be written: try again with the next image.
            replica.state = previous
            log.exception("%s: taking the role of %s failed", replica.log.name, state)

    def _apply_role(self, replica: Replica, state: PartitionState, now_ms: int, *, first: bool) -> None:
        previous = replica.state
        replica.state = state
        key = (replica.topic, replica.partition)
        if state.leader == self.node_id:
            if replica.leader is not None and replica.leader.leader_epoch == state.leader_epoch:
                replica.leader.update_state(state, now_ms)
                self._maybe_advance(replica)
                return
            if self.fetchers is not None:
                self.fetchers.remove(key)
            replica.log.become_leader(state.leader_epoch)
            replica.leader = LeaderReplicas(self.node_id, state, now_ms)
            log.info("%s: leader at epoch %d, ISR %s", replica.log.name, state.leader_epoch, list(state.isr))
            self._maybe_advance(replica)
            for listener in self._listeners:
                listener(replica.topic, replica.partition, True)
            return
        was_leader = replica.leader is not None
        replica.leader = None
        replica.log.leader_epoch = state.leader_epoch
        self._fail_waiters(replica, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if self.fetchers is not None:
            if state.leader >= 0:
                self.fetchers.add(key, replica, state.leader)
            else:
                self.fetchers.remove(key)
        if was_leader or (first is False and previous.leader != state.leader):
            log.info("%s: follower of %d at epoch %d", replica.log.name, state.leader, state.leader_epoch)
        if was_leader:
            for listener in self._listeners:
                listener(replica.topic, replica.partition, False)

    def _remove(self, replica: Replica, *, deleted: bool) -> None:
        key = (replica.topic, replica.partition)
        if self.fetchers is not None:
            self.fetchers.remove(key)
        self._fail_waiters(replica, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if replica.leader is not None:
            replica.leader = None
            for listener in self._listeners:
                listener(replica.topic, replica.partition, False)
        if self.ctx.logs.get(*key) is replica.log:
            doomed = self.ctx.logs.delete(key)
            log.info("%s: %s, log deleted", replica.log.name, "topic deleted" if deleted else "no longer a replica here")
            asyncio.get_running_loop().run_in_executor(None, LogManager.purge, [doomed])

    # --- the leader's side --------------------------------------------------------------------------

    def leader_log(self, topic: str, partition: int) -> tuple[PartitionLog | None, int]:
        replica = self.replicas.get((topic, partition))
        if replica is None:
            state = self.ctx.partition_state(topic, partition)
            if state is None:
                return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            return None, ErrorCode.NOT_LEADER_OR_FOLLOWER if state.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE
        if replica.leader is None:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER if replica.state.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE
            return None, error
        return replica.log, ErrorCode.NONE

    def isr(self, topic: str, partition: int) -> tuple[int, ...]:
        replica = self.replicas.get((topic, partition))
        return () if replica is None else replica.state.isr

    def appended(self, topic: str, partition: int) -> None:
        replica = self.replicas.get((topic, partition))
        if replica is not None and replica.leader is not None:
            if replica.log.replicated:
                self.ctx.appends.notify()  # followers fetch it
            self._maybe_advance(replica)

    def follower_fetched(self, topic: str, partition: int, replica_id: int, fetch_offset: int) -> int:
        replica = self.replicas.get((topic, partition))
        if replica is None or replica.leader is None:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        now_ms = self.ctx.now_ms()
        if not replica.leader.record_fetch(replica_id, fetch_offset, replica.log.log_end_offset, now_ms):
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        self._maybe_advance(replica)
        expanded = replica.leader.isr_to_expand(replica_id, replica.log.high_watermark, self._epoch_start(replica))
        if expanded is not None:
            self._alter_isr(replica, expanded)
        return ErrorCode.NONE

    def _epoch_start(self, replica: Replica) -> int:
        entries = replica.log.epochs.entries
        return entries[-1][1] if entries else 0

    def _maybe_advance(self, replica: Replica) -> None:
        """Move the high watermark to the ISR's smallest log end; wake whoever waits."""
        assert replica.leader is not None
        partition_log = replica.log
        if not partition_log.replicated:
            self.ctx.commits.notify()  # the append moved the high watermark already
        else:
            hw = replica.leader.high_watermark(partition_log.log_end_offset)
            if hw != UNKNOWN and hw > partition_log.high_watermark:
                partition_log.update_high_watermark(hw)
                self.ctx.commits.notify()
        if replica.waiters:
            self._complete_waiters(replica)

    def _complete_waiters(self, replica: Replica) -> None:
        hw = replica.log.high_watermark
        isr_size = len(replica.state.isr)
        pending = []
        for offset, min_isr, future in replica.waiters:
            if future.done():
                continue
            if offset <= hw:
                # Kafka's DelayedProduce: the ISR may have shrunk below the minimum meanwhile.
                future.set_result(ErrorCode.NONE if isr_size >= min_isr else ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
            else:
                pending.append((offset, min_isr, future))
        replica.waiters = pending

    def _fail_waiters(self, replica: Replica, error: int) -> None:
        for _, _, future in replica.waiters:
            if not future.done():
                future.set_result(error)
        replica.waiters = []

    async def wait_for_commit(self, commit: Commit, timeout_ms: int) -> int:
        replica = self.replicas.get((commit.topic, commit.partition))
        if replica is None or replica.leader is None or replica.leader.leader_epoch != commit.leader_epoch:
            # Led elsewhere since the append (maybe here again, over a truncated log).
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        min_insync = commit.min_insync
        if replica.log.high_watermark >= commit.next_offset:
            return ErrorCode.NONE if len(replica.state.isr) >= min_insync else ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        replica.waiters.append((commit.next_offset, min_insync, future))
        try:
            return await asyncio.wait_for(future, max(timeout_ms, 0) / 1000)
        except TimeoutError:
            return ErrorCode.REQUEST_TIMED_OUT

    # --- ISR changes ----------------------------------------------------------------------------------

    def shrink_lagging(self) -> None:
        """replica.lag.time.max.ms: drop followers that have not caught up for that long."""
        now_ms = self.ctx.now_ms()
        lag_max = self.ctx.config.replica_lag_time_max_ms
        for replica in self.replicas.values():
            if replica.leader is not None:
                shrunk = replica.leader.isr_to_shrink(now_ms, lag_max)
                if shrunk is not None:
                    self._alter_isr(replica, shrunk)

    def _alter_isr(self, replica: Replica, isr: tuple[int, ...]) -> None:
        leader = replica.leader
        assert leader is not None
        proposed = leader.propose(isr)
        task = asyncio.get_running_loop().create_task(self._write_isr(replica, leader, proposed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_isr(self, replica: Replica, leader: LeaderReplicas, proposed: PartitionState) -> None:
        """Write an ISR change; the image that follows settles it (LeaderReplicas.update_state).
        A write whose outcome is unknown (etcd unreachable, an answer lost) is tried again
        while the proposal is pending: until then the high watermark keeps counting over the
        larger of the two ISRs, as it must if the write was stored after all."""
        while replica.leader is leader and leader.pending_isr == proposed.isr:
            try:
                stored = await self.ctx.metadata.alter_partition(replica.topic, replica.partition, proposed)
            except ConfigError as exc:
                log.warning("%s: ISR change to %s not confirmed: %s", replica.log.name, list(proposed.isr), exc)
                await asyncio.sleep(RETRY_ISR_CHANGE_S)
                continue
            if stored is None:
                # A newer state exists: the image brings it (and makes a deposed leader a
                # follower); the next check proposes again if still needed.
                log.info("%s: ISR change to %s lost a compare-and-set", replica.log.name, list(proposed.isr))
            else:
                log.info("%s: ISR now %s", replica.log.name, list(stored.isr))
            return


class FetcherRegistry(Protocol):
    """What the replica manager needs of the follower fetchers (server.replica_fetcher)."""

    def add(self, key: tuple[str, int], replica: Replica, leader: int) -> None:
        """Replicate ``key`` from ``leader`` (moving it off any other leader's fetcher)."""
        ...

    def remove(self, key: tuple[str, int]) -> None: ...

    def brokers_changed(self, image: ClusterImage) -> None:
        """Registrations changed: reconnect fetchers whose leader's address changed."""
        ...
