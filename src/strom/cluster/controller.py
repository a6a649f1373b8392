"""The controller's decisions as a pure state machine: leader elections, ISR shrinks on broker
loss, KIP-455 reassignment steps, preferred-leader elections (CLUSTER.md, "The controller").

The elected broker's controller task owns one ``Controller`` and calls ``reconcile`` with every
new metadata image and on a timer. Each ``PartitionChange`` it returns carries the next state of
one partition with the ``partition_epoch`` the controller read; the shell writes it with
compare-and-set on that epoch (and on the controller's own epoch), and on a failed write it
simply waits for the next image, from which the controller decides again. Nothing here does
I/O or reads the clock: time comes in as ``now_ms``.

Election follows Kafka's offline-partition election: the first replica, in ``replicas`` order,
that is live and in the ISR; with no such replica the partition goes offline (leader -1) and
keeps its last ISR, which is never emptied: those replicas hold every acknowledged write, so
only they may lead again. ``unclean.leader.election.enable`` trades that for availability
(KIP-704 records it as leader_recovery RECOVERING). The leader epoch grows whenever the leader
changes, going offline included, which fences the old leader (KIP-320).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from strom.metadata.configs import ConfigError
from strom.metadata.image import NO_LEADER, RECOVERING, ClusterImage, PartitionState
from strom.protocol.errors import ErrorCode

# leader.imbalance.per.broker.percentage's default.
LEADER_IMBALANCE_PER_BROKER_PERCENTAGE = 10
# How long reconcile waits before proposing again a change it already proposed for the same
# partition epoch (the write may have failed without changing the partition).
RETRY_MS = 5_000

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PartitionChange:
    """Write ``state`` to the partition if its partition epoch is still
    ``state.partition_epoch`` (the epoch the controller read)."""

    topic: str
    partition: int
    state: PartitionState


class Controller:
    """Owned by the controller task of the broker holding the controller lease; a broker that
    loses the lease drops its Controller and starts a fresh one when it wins again.

    Fields (changed only by ``reconcile``):

    - ``_epochs``: the broker epoch last seen per node id, kept after the broker leaves, so
      that a re-registration (a new epoch, maybe without ever seeing the broker gone) is noticed.
    - ``_fencing``: per partition, the re-registered brokers whose leadership or ISR seat still
      belongs to their previous incarnation. They count as gone for that partition until an
      image shows the seat cleared, so a failed write cannot leave a restarted broker (maybe
      with an empty log) in the ISR. Read by the elections too.
    - ``_proposed``: the last change proposed per partition and when; reconcile does not
      propose the same change on the same partition epoch again before ``retry_ms``.
    """

    def __init__(self, retry_ms: int = RETRY_MS) -> None:
        self.retry_ms = retry_ms
        self._epochs: dict[int, int] = {}
        self._fencing: dict[TopicPartitionKey, frozenset[int]] = {}
        self._proposed: dict[TopicPartitionKey, tuple[PartitionState, int]] = {}

    # -- broker liveness -----------------------------------------------------------------

    def _live(self, image: ClusterImage, key: TopicPartitionKey, node_id: int) -> bool:
        broker = image.brokers.get(node_id)
        if broker is None or node_id in self._fencing.get(key, ()):
            return False
        # A new epoch not yet taken in by reconcile: the broker just restarted.
        return self._epochs.get(node_id, broker.epoch) == broker.epoch

    def _note_registrations(self, image: ClusterImage) -> None:
        restarted = {
            node_id for node_id, broker in image.brokers.items()
            if self._epochs.get(node_id, broker.epoch) != broker.epoch
        }
        for node_id, broker in image.brokers.items():
            self._epochs[node_id] = broker.epoch
        fencing: dict[TopicPartitionKey, frozenset[int]] = {}
        for key, state in image.partitions.items():
            held = {state.leader, *state.isr}
            stale = (self._fencing.get(key, frozenset()) | restarted) & held
            # A seat is cleared once the broker neither leads nor shares the ISR with a live,
            # unfenced member: the never-empty rule keeps the last members of an offline
            # partition in the ISR, and they may lead again (they hold the data).
            others_live = {r for r in state.isr if r in image.brokers and r not in stale}
            seated = frozenset(b for b in stale if b == state.leader or others_live)
            if seated:
                fencing[key] = seated
        self._fencing = fencing

    # -- reconcile -------------------------------------------------------------------------

    def reconcile(
        self, image: ClusterImage, now_ms: int, unclean: Callable[[str], bool]
    ) -> list[PartitionChange]:
        """The partition changes the image calls for, at most one per partition:

        1. a broker is gone when it is not registered, or registered with another broker
           epoch than the one seen before (it died and came back between two images: gone
           for the partitions its old incarnation led or sat in the ISR of);
        2. a partition whose leader is gone or -1 elects the first replica that is live and
           in the ISR; none: leader -1 (or with ``unclean(topic)``, the first live replica,
           alone in the ISR, RECOVERING);
        3. gone brokers leave the ISR, unless that would empty it;
        4. a reassignment whose adding replicas are all in the ISR completes (see
           ``_complete_reassignment``).
        """
        self._note_registrations(image)
        changes = []
        for key in sorted(image.partitions):
            state = image.partitions[key]
            topic = key[0]
            nxt = _next_state(state, functools.partial(self._live, image, key), functools.partial(unclean, topic))
            if nxt == state:
                self._proposed.pop(key, None)
                continue
            proposed = self._proposed.get(key)
            if proposed and proposed[0] == nxt and now_ms - proposed[1] < self.retry_ms:
                continue
            self._proposed[key] = (nxt, now_ms)
            changes.append(PartitionChange(key[0], key[1], nxt))
        for key in self._proposed.keys() - image.partitions.keys():
            del self._proposed[key]
        return changes

    # -- preferred leaders -------------------------------------------------------------------

    def preferred_elections(
        self, image: ClusterImage, partitions: Iterable[TopicPartitionKey] | None = None
    ) -> tuple[list[PartitionChange], dict[TopicPartitionKey, int]]:
        """Move leadership to the preferred replica (``replicas[0]``) where it is live, in
        the ISR and not leading yet. ``partitions`` None means every partition. Returns the
        changes and, for the partitions that cannot be elected, ElectLeaders' error code:
        ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE or UNKNOWN_TOPIC_OR_PARTITION."""
        keys = sorted(image.partitions) if partitions is None else list(partitions)
        changes: list[PartitionChange] = []
        errors: dict[TopicPartitionKey, int] = {}
        for key in keys:
            state = image.partitions.get(key)
            if state is None or not state.replicas:
                errors[key] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            preferred = state.replicas[0]
            if state.leader == preferred:
                errors[key] = ErrorCode.ELECTION_NOT_NEEDED
            elif preferred not in state.isr or not self._live(image, key, preferred):
                errors[key] = ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
            else:
                new = replace(state, leader=preferred, leader_epoch=state.leader_epoch + 1)
                changes.append(PartitionChange(key[0], key[1], new))
        return changes, errors

    def rebalance(
        self,
        image: ClusterImage,
        imbalance_percentage: int = LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
    ) -> list[PartitionChange]:
        """auto.leader.rebalance.enable's periodic check (Kafka's
        checkAndTriggerAutoLeaderRebalance): for each broker, among the partitions it is the
        preferred leader of, if more than ``imbalance_percentage`` % are led elsewhere, elect
        it where it can lead. Partitions being reassigned are left alone: their preferred
        replica is about to change."""
        by_preferred: dict[int, list[TopicPartitionKey]] = {}
        for key, state in image.partitions.items():
            if state.replicas and not state.reassigning:
                by_preferred.setdefault(state.replicas[0], []).append(key)
        candidates: list[TopicPartitionKey] = []
        for node_id, keys in by_preferred.items():
            elsewhere = [k for k in keys if image.partitions[k].leader != node_id]
            if len(elsewhere) * 100 > imbalance_percentage * len(keys):
                candidates.extend(elsewhere)
        changes, _ = self.preferred_elections(image, sorted(candidates))
        return changes


# -- the next state of one partition -------------------------------------------------------


def _next_state(
    state: PartitionState, live: Callable[[int], bool], unclean: Callable[[], bool]
) -> PartitionState:
    leader, isr, recovery = state.leader, _shrink(state.isr, live), state.leader_recovery
    if leader == NO_LEADER or not live(leader):
        electable = [r for r in state.replicas if r in state.isr and live(r)]
        if electable:
            leader = electable[0]
        else:
            alive = [r for r in state.replicas if live(r)]
            if alive and unclean():
                # KIP-704: data may be lost; the new leader recovers before growing the ISR.
                leader, isr, recovery = alive[0], (alive[0],), RECOVERING
            else:
                leader = NO_LEADER
    nxt = replace(state, leader=leader, isr=isr, leader_recovery=recovery)
    if nxt.reassigning:
        nxt = _complete_reassignment(nxt, live)
    if nxt.leader != state.leader:
        nxt = replace(nxt, leader_epoch=state.leader_epoch + 1)
    return nxt


def _shrink(isr: tuple[int, ...], live: Callable[[int], bool]) -> tuple[int, ...]:
    # Never empty: the last members keep their claim to the data while offline.
    return tuple(r for r in isr if live(r)) or isr


def _complete_reassignment(state: PartitionState, live: Callable[[int], bool]) -> PartitionState:
    """KIP-455's last step, with KRaft's condition (PartitionReassignmentReplicas
    .maybeCompleteReassignment): every adding replica is in the ISR and some ISR member stays.
    Then the removed replicas go from the replicas and the ISR, and a leader being removed
    hands over to the first target replica that is live and in the ISR."""
    target = state.target_replicas
    isr = tuple(r for r in state.isr if r not in state.removing)
    if not isr or not set(state.adding) <= set(isr):
        return state
    leader = state.leader
    if leader not in target:
        leader = next((r for r in target if r in isr and live(r)), NO_LEADER)
    return replace(state, replicas=target, isr=isr, leader=leader, adding=(), removing=())


# -- KIP-455 reassignment requests (AlterPartitionReassignments) ---------------------------


def start_reassignment(state: PartitionState, target: Sequence[int]) -> PartitionState:
    """The state that starts moving the partition to ``target`` (checked beforehand with
    ``placement.validate_assignment``): replicas = target then the original replicas not in
    it, adding = target - original, removing = original - target. A new target while a
    reassignment runs starts from the original replicas (the replicas minus ``adding``), so a
    later cancel still goes back to them. A target that only reorders the replicas completes
    at once; the same replicas with nothing running return ``state`` itself.

    Raises ConfigError(INVALID_REPLICA_ASSIGNMENT) when no ISR member would remain (only
    replicas added by the running reassignment are in sync)."""
    target = tuple(target)
    original = _original_replicas(state)
    if target == original and not state.reassigning:
        return state
    adding = tuple(r for r in target if r not in original)
    removing = tuple(r for r in original if r not in target)
    replicas = target + removing
    return _with_replicas(state, replicas, adding, removing)


def cancel_reassignment(state: PartitionState) -> PartitionState | None:
    """Back to the original replicas (KRaft's PartitionReassignmentRevert): the adding
    replicas leave the replicas and the ISR; the leader stays if it is an original replica,
    else the first original replica in the ISR leads, epoch + 1. None when no reassignment
    runs (answer NO_REASSIGNMENT_IN_PROGRESS).

    Raises ConfigError(INVALID_REPLICA_ASSIGNMENT) when only adding replicas are in the ISR:
    reverting would need an unclean election, which Kafka also refuses (it allows it with
    unclean.leader.election.enable; strom does not)."""
    if not state.reassigning:
        return None
    return _with_replicas(state, _original_replicas(state), (), ())


def _original_replicas(state: PartitionState) -> tuple[int, ...]:
    return tuple(r for r in state.replicas if r not in state.adding)


def _with_replicas(
    state: PartitionState,
    replicas: tuple[int, ...],
    adding: tuple[int, ...],
    removing: tuple[int, ...],
) -> PartitionState:
    isr = tuple(r for r in state.isr if r in replicas)
    if not isr:
        raise ConfigError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "Unable to change the partition assignment because it would require an unclean "
            "leader election.",
        )
    leader, epoch = state.leader, state.leader_epoch
    if leader != NO_LEADER and leader not in replicas:
        leader = next(r for r in replicas if r in isr)
        epoch += 1
    return replace(
        state, replicas=replicas, isr=isr, leader=leader, leader_epoch=epoch,
        adding=adding, removing=removing,
    )
