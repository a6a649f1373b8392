"""The leader's view of one partition's replicas: followers' log ends, the ISR, the high
watermark (Kafka's Partition / Replica in cluster/Partition.scala, ZooKeeper era).

A plain object: time comes in as ``now_ms``; ISR changes come out as proposals that the shell
writes to the metadata store with compare-and-set on the partition epoch (CLUSTER.md,
"Leader"). Until the store confirms one, the high watermark is computed over the *maximal*
ISR (the committed ISR plus a pending addition), so that a follower being added already
counts, while a follower being removed still counts until it is really gone (KIP-497's
reasoning): the high watermark never passes a record that a possible ISR member lacks.

Safety hinge: a deposed leader's ISR change fails the compare-and-set, so it can never shrink
its ISR to itself and acknowledge an acks=all write alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from strom.metadata.image import PartitionState

UNKNOWN = -1


@dataclass(slots=True)
class FollowerProgress:
    """What the leader learned from one follower's fetches."""

    log_end_offset: int = UNKNOWN  # the follower's fetch offset; unknown until it fetches
    last_caught_up_ms: int = 0  # last time the follower had everything the leader had
    last_fetch_ms: int = 0
    leader_end_at_last_fetch: int = UNKNOWN  # the leader's log end when it last fetched


class LeaderReplicas:
    """Fields: ``state`` (the committed partition state, replaced on every image change of
    the same leader epoch), ``followers`` by replica id, ``pending_isr`` (an ISR change sent to
    the store and not answered yet). Owned by the event loop."""

    def __init__(self, node_id: int, state: PartitionState, now_ms: int) -> None:
        self.node_id = node_id
        self.state = state
        self.pending_isr: tuple[int, ...] | None = None
        self.pending_from_epoch = -1  # the partition epoch the pending proposal was made on
        # Kafka starts every follower's lag clock at the leadership change, so that followers
        # get a full replica.lag.time.max.ms to show up.
        self.followers = {r: FollowerProgress(last_caught_up_ms=now_ms) for r in state.replicas if r != node_id}

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    def update_state(self, state: PartitionState, now_ms: int) -> None:
        """A newer state of the same leadership (ISR or replicas changed). A follower that
        left the ISR (the controller removed a dead broker) must fetch again before it can
        rejoin: what it fetched before proves nothing about its next incarnation."""
        for replica in self.state.isr:
            if replica not in state.isr:
                self.forget(replica, now_ms)
        self.state = state
        for replica in state.replicas:
            if replica != self.node_id and replica not in self.followers:
                self.followers[replica] = FollowerProgress(last_caught_up_ms=now_ms)
        for replica in [r for r in self.followers if r not in state.replicas]:
            del self.followers[replica]
        if self.pending_isr is not None and state.partition_epoch != self.pending_from_epoch:
            # The partition changed: the proposal was stored, or lost to another writer.
            # Only then is it settled (a timed-out write may still have been stored).
            self.pending_isr = None

    def propose(self, isr: tuple[int, ...]) -> PartitionState:
        """The partition state to write for an ISR change; pending until an image settles it."""
        self.pending_isr = isr
        self.pending_from_epoch = self.state.partition_epoch
        return replace(self.state, isr=isr)

    def maximal_isr(self) -> tuple[int, ...]:
        if self.pending_isr is None:
            return self.state.isr
        return self.state.isr + tuple(r for r in self.pending_isr if r not in self.state.isr)

    def record_fetch(self, replica: int, fetch_offset: int, leader_end: int, now_ms: int) -> bool:
        """A follower fetched from ``fetch_offset`` (so it has everything below it); False for
        a replica that is not a follower of this partition."""
        progress = self.followers.get(replica)
        if progress is None:
            return False
        if fetch_offset >= leader_end:
            progress.last_caught_up_ms = now_ms
        elif progress.leader_end_at_last_fetch != UNKNOWN and fetch_offset >= progress.leader_end_at_last_fetch:
            # It has what the leader had at its previous fetch: caught up as of then.
            progress.last_caught_up_ms = max(progress.last_caught_up_ms, progress.last_fetch_ms)
        progress.log_end_offset = fetch_offset
        progress.last_fetch_ms = now_ms
        progress.leader_end_at_last_fetch = leader_end
        return True

    def high_watermark(self, leader_end: int) -> int:
        """The smallest log end over the maximal ISR (the leader's own included)."""
        hw = leader_end
        for replica in self.maximal_isr():
            if replica == self.node_id:
                continue
            progress = self.followers.get(replica)
            if progress is None or progress.log_end_offset == UNKNOWN:
                return UNKNOWN  # an ISR member we know nothing of yet holds it back
            hw = min(hw, progress.log_end_offset)
        return hw

    def isr_to_expand(self, replica: int, high_watermark: int, epoch_start_offset: int) -> tuple[int, ...] | None:
        """The ISR with ``replica`` added once it has caught up, judged right after its own
        fetch (as Kafka's maybeExpandIsr): at or past the high watermark and the start of the
        current epoch (so it truncated any divergent tail first)."""
        progress = self.followers.get(replica)
        if self.pending_isr is not None or progress is None or replica in self.state.isr:
            return None
        if progress.log_end_offset == UNKNOWN or progress.log_end_offset < max(high_watermark, epoch_start_offset):
            return None
        return (*self.state.isr, replica)

    def forget(self, replica: int, now_ms: int) -> None:
        """The replica's broker died or restarted: its progress is void until it fetches."""
        if replica in self.followers:
            self.followers[replica] = FollowerProgress(last_caught_up_ms=now_ms)

    def isr_to_shrink(self, now_ms: int, lag_max_ms: int) -> tuple[int, ...] | None:
        """The ISR without followers not caught up for ``lag_max_ms``
        (replica.lag.time.max.ms); the leader always stays."""
        if self.pending_isr is not None:
            return None
        lagging = {
            r for r in self.state.isr
            if r != self.node_id and (r not in self.followers or now_ms - self.followers[r].last_caught_up_ms > lag_max_ms)
        }
        if not lagging:
            return None
        return tuple(r for r in self.state.isr if r not in lagging)
