"""The controller state machine: elections, ISR shrinks, re-registrations, KIP-455 steps,
preferred elections and the rebalance threshold, on hand-built images with a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from strom.cluster.controller import (
    Controller,
    PartitionChange,
    cancel_reassignment,
    start_reassignment,
)
from strom.metadata.configs import ConfigError
from strom.metadata.image import (
    NO_LEADER,
    RECOVERING,
    BrokerRegistration,
    ClusterImage,
    PartitionState,
)
from strom.protocol.errors import ErrorCode

NOW = 1_000_000


def image(live, partitions, epochs=None):
    """``live``: node ids; ``epochs``: broker epochs by id (default 1);
    ``partitions``: {(topic, p): PartitionState} or a single state for ("t", 0)."""
    epochs = epochs or {}
    if isinstance(partitions, PartitionState):
        partitions = {("t", 0): partitions}
    return ClusterImage(
        brokers={
            i: BrokerRegistration(i, "localhost", 9090 + i, epoch=epochs.get(i, 1)) for i in live
        },
        partitions=partitions,
    )


def state(replicas, leader, isr, leader_epoch=5, partition_epoch=10, **extra):
    return PartitionState(
        tuple(replicas), leader, leader_epoch, tuple(isr), partition_epoch, **extra
    )


def clean(topic):
    return False


def unclean(topic):
    return True


def only(changes):
    assert len(changes) == 1 and (changes[0].topic, changes[0].partition) == ("t", 0)
    return changes[0].state


def test_healthy_partition_needs_nothing():
    healthy = image([1, 2, 3], state([1, 2, 3], 1, [1, 2, 3]))
    assert Controller().reconcile(healthy, NOW, clean) == []


def test_leader_death_elects_the_next_isr_member():
    changes = Controller().reconcile(image([2, 3], state([1, 2, 3], 1, [1, 2, 3])), NOW, clean)
    assert changes == [PartitionChange("t", 0, state([1, 2, 3], 2, [2, 3], leader_epoch=6))]


def test_election_follows_replica_order_not_isr_order():
    changes = Controller().reconcile(image([2, 3], state([1, 3, 2], 1, [1, 2, 3])), NOW, clean)
    assert only(changes) == state([1, 3, 2], 3, [2, 3], leader_epoch=6)


def test_follower_death_shrinks_the_isr_only():
    changes = Controller().reconcile(image([1, 2], state([1, 2, 3], 1, [1, 2, 3])), NOW, clean)
    assert only(changes) == state([1, 2, 3], 1, [1, 2], leader_epoch=5)


def test_dead_replica_outside_the_isr_changes_nothing():
    assert Controller().reconcile(image([1, 2], state([1, 2, 3], 1, [1, 2])), NOW, clean) == []


def test_last_isr_member_dead_goes_offline_then_leads_again_when_back():
    controller = Controller()
    before = state([1, 2, 3], 1, [1])
    offline = only(controller.reconcile(image([2, 3], before), NOW, clean))
    # Offline: no leader, the ISR keeps its last member, the epoch fences the old leader.
    assert offline == state([1, 2, 3], NO_LEADER, [1], leader_epoch=6)
    written = replace(offline, partition_epoch=11)
    assert controller.reconcile(image([2, 3], written), NOW + 1, clean) == []
    assert controller.reconcile(image([2, 3], written), NOW + 60_000, clean) == []
    # Broker 1 comes back with a new broker epoch: it holds the data, it leads.
    back = only(controller.reconcile(image([1, 2, 3], written, {1: 2}), NOW + 60_001, clean))
    assert back == state([1, 2, 3], 1, [1], leader_epoch=7, partition_epoch=11)


def test_offline_partition_elects_a_returning_isr_member_and_drops_the_dead_one():
    changes = Controller().reconcile(image([1, 3], state([1, 2, 3], NO_LEADER, [2, 1])), NOW, clean)
    assert only(changes) == state([1, 2, 3], 1, [1], leader_epoch=6)


def test_whole_isr_dead_keeps_the_isr():
    changes = Controller().reconcile(image([3], state([1, 2, 3], 1, [1, 2])), NOW, clean)
    assert only(changes) == state([1, 2, 3], NO_LEADER, [1, 2], leader_epoch=6)


def test_offline_partition_with_its_whole_isr_dead_is_left_alone():
    # Leader -1, ISR (1, 2), both dead: removing them would empty the ISR; nothing to write.
    assert Controller().reconcile(image([3], state([1, 2, 3], NO_LEADER, [1, 2])), NOW, clean) == []


def test_unclean_election_elects_the_first_live_replica_recovering():
    seen = []

    def unclean_for(topic):
        seen.append(topic)
        return True

    changes = Controller().reconcile(image([2, 3], state([1, 2, 3], 1, [1])), NOW, unclean_for)
    assert only(changes) == state(
        [1, 2, 3], 2, [2], leader_epoch=6, leader_recovery=RECOVERING
    )
    assert seen == ["t"]


def test_unclean_election_of_an_offline_partition():
    offline = state([1, 2, 3], NO_LEADER, [1], leader_epoch=6)
    assert Controller().reconcile(image([2, 3], offline), NOW, clean) == []
    changes = Controller().reconcile(image([3], offline), NOW, unclean)
    assert only(changes) == state([1, 2, 3], 3, [3], leader_epoch=7, leader_recovery=RECOVERING)


def test_unclean_is_not_asked_when_an_isr_member_is_live():
    def never(topic):
        raise AssertionError("clean election possible")

    changes = Controller().reconcile(image([2, 3], state([1, 2, 3], 1, [1, 2])), NOW, never)
    assert only(changes).leader == 2


def test_unclean_without_live_replica_stays_offline():
    changes = Controller().reconcile(image([4], state([1, 2, 3], 1, [1])), NOW, unclean)
    assert only(changes) == state([1, 2, 3], NO_LEADER, [1], leader_epoch=6)


def test_clean_election_keeps_a_recovering_state():
    before = state([1, 2, 3], 1, [1, 2], leader_recovery=RECOVERING)
    changes = Controller().reconcile(image([2, 3], before), NOW, clean)
    assert only(changes) == state([1, 2, 3], 2, [2], leader_epoch=6, leader_recovery=RECOVERING)


def test_reregistered_leader_is_treated_as_gone():
    controller = Controller()
    healthy = state([1, 2, 3], 1, [1, 2, 3])
    assert controller.reconcile(image([1, 2, 3], healthy), NOW, clean) == []
    # Broker 1 died and registered again between two images: same id, new epoch.
    changes = controller.reconcile(image([1, 2, 3], healthy, {1: 9}), NOW + 1, clean)
    assert only(changes) == state([1, 2, 3], 2, [2, 3], leader_epoch=6)


def test_reregistered_follower_leaves_the_isr_even_if_the_write_fails():
    controller = Controller()
    healthy = state([1, 2, 3], 1, [1, 2, 3])
    assert controller.reconcile(image([1, 2, 3], healthy), NOW, clean) == []
    changes = controller.reconcile(image([1, 2, 3], healthy, {3: 9}), NOW + 1, clean)
    assert only(changes) == state([1, 2, 3], 1, [1, 2])
    # The write lost a race with another one (partition epoch 11) that kept 3 in the ISR:
    # 3's seat still belongs to its old incarnation, so it is removed again.
    raced = replace(healthy, partition_epoch=11)
    changes = controller.reconcile(image([1, 2, 3], raced, {3: 9}), NOW + 2, clean)
    assert only(changes) == state([1, 2, 3], 1, [1, 2], partition_epoch=11)
    # Once an image shows it out, the leader may take it back in (it caught up).
    out = state([1, 2, 3], 1, [1, 2], partition_epoch=12)
    assert controller.reconcile(image([1, 2, 3], out, {3: 9}), NOW + 3, clean) == []
    rejoined = state([1, 2, 3], 1, [1, 2, 3], partition_epoch=13)
    assert controller.reconcile(image([1, 2, 3], rejoined, {3: 9}), NOW + 4, clean) == []


def test_reregistered_sole_leader_goes_offline_then_leads_with_a_new_epoch():
    controller = Controller()
    alone = state([1], 1, [1])
    assert controller.reconcile(image([1], alone), NOW, clean) == []
    offline = only(controller.reconcile(image([1], alone, {1: 9}), NOW + 1, clean))
    assert offline == state([1], NO_LEADER, [1], leader_epoch=6)
    written = replace(offline, partition_epoch=11)
    back = only(controller.reconcile(image([1], written, {1: 9}), NOW + 2, clean))
    assert back == state([1], 1, [1], leader_epoch=7, partition_epoch=11)


def test_same_image_twice_proposes_nothing_new_until_the_retry_time():
    controller = Controller(retry_ms=5_000)
    dead_leader = image([2, 3], state([1, 2, 3], 1, [1, 2, 3]))
    first = controller.reconcile(dead_leader, NOW, clean)
    assert len(first) == 1
    assert controller.reconcile(dead_leader, NOW, clean) == []
    assert controller.reconcile(dead_leader, NOW + 4_999, clean) == []
    # The write went nowhere (no new image): propose it again.
    assert controller.reconcile(dead_leader, NOW + 5_000, clean) == first


def test_changed_partition_is_decided_again_at_once():
    controller = Controller()
    controller.reconcile(image([2, 3], state([1, 2, 3], 1, [1, 2, 3])), NOW, clean)
    # Someone else wrote first (the old leader shrank the ISR): new epoch, new decision.
    raced = state([1, 2, 3], 1, [1, 3], partition_epoch=11)
    changes = controller.reconcile(image([2, 3], raced), NOW + 1, clean)
    assert only(changes) == state([1, 2, 3], 3, [3], leader_epoch=6, partition_epoch=11)


def test_every_partition_gets_at_most_one_change_in_order():
    partitions = {
        ("b", 0): state([1, 2], 1, [1, 2]),
        ("a", 1): state([2, 1], 2, [2, 1]),
        ("a", 0): state([3, 1], 3, [3, 1]),
    }
    changes = Controller().reconcile(image([2, 3], partitions), NOW, clean)
    assert changes == [
        PartitionChange("a", 0, state([3, 1], 3, [3])),
        PartitionChange("a", 1, state([2, 1], 2, [2])),
        PartitionChange("b", 0, state([1, 2], 2, [2], leader_epoch=6)),
    ]


# -- KIP-455 ---------------------------------------------------------------------------------


def test_start_reassignment():
    before = state([1, 2, 3], 1, [1, 2, 3])
    assert start_reassignment(before, (2, 3, 4)) == state(
        [2, 3, 4, 1], 1, [1, 2, 3], adding=(4,), removing=(1,)
    )


def test_start_reassignment_to_the_same_replicas_is_a_no_op():
    before = state([1, 2, 3], 1, [1, 2, 3])
    assert start_reassignment(before, [1, 2, 3]) is before


def test_reordering_replicas_completes_at_once():
    before = state([1, 2, 3], 1, [1, 2, 3])
    assert start_reassignment(before, (3, 1, 2)) == state([3, 1, 2], 1, [1, 2, 3])


def test_new_target_while_running_starts_from_the_original_replicas():
    running = state([2, 3, 4, 1], 1, [1, 2, 3, 4], adding=(4,), removing=(1,))
    assert start_reassignment(running, (3, 5)) == state(
        [3, 5, 2, 1], 1, [1, 2, 3], adding=(5,), removing=(2, 1)
    )


def test_new_target_moves_leadership_off_a_dropped_adding_replica():
    running = state([2, 3, 4, 1], 4, [1, 2, 3, 4], adding=(4,), removing=(1,))
    assert start_reassignment(running, (3, 5)) == state(
        [3, 5, 2, 1], 3, [1, 2, 3], leader_epoch=6, adding=(5,), removing=(2, 1)
    )


def test_reassignment_waits_for_the_adding_replicas_then_completes():
    controller = Controller()
    running = state([2, 3, 4, 1], 1, [1, 2, 3], adding=(4,), removing=(1,))
    assert controller.reconcile(image([1, 2, 3, 4], running), NOW, clean) == []
    caught_up = replace(running, isr=(1, 2, 3, 4), partition_epoch=11)
    done = only(controller.reconcile(image([1, 2, 3, 4], caught_up), NOW + 1, clean))
    # Leader 1 is removed: the first target replica in the ISR takes over.
    assert done == state([2, 3, 4], 2, [2, 3, 4], leader_epoch=6, partition_epoch=11)


def test_reassignment_completion_keeps_a_leader_that_stays():
    caught_up = state([2, 3, 4, 1], 3, [1, 2, 3, 4], adding=(4,), removing=(1,))
    done = only(Controller().reconcile(image([1, 2, 3, 4], caught_up), NOW, clean))
    assert done == state([2, 3, 4], 3, [2, 3, 4])


def test_reassignment_completion_skips_a_dead_target_for_leader():
    caught_up = state([2, 3, 4, 1], 1, [1, 2, 3, 4], adding=(4,), removing=(1,))
    done = only(Controller().reconcile(image([1, 3, 4], caught_up), NOW, clean))
    assert done == state([2, 3, 4], 3, [3, 4], leader_epoch=6)


def test_leader_death_and_completion_make_one_change():
    caught_up = state([2, 3, 4, 1], 1, [1, 2, 3, 4], adding=(4,), removing=(1,))
    done = only(Controller().reconcile(image([2, 3, 4], caught_up), NOW, clean))
    assert done == state([2, 3, 4], 2, [2, 3, 4], leader_epoch=6)


def test_removing_only_completes_without_the_dead_replica():
    # Kafka's condition: the adding replicas (none) are in the ISR and a target one is too.
    shrinking = state([1, 2, 3], 1, [1, 2], removing=(3,))
    done = only(Controller().reconcile(image([1, 2], shrinking), NOW, clean))
    assert done == state([1, 2], 1, [1, 2])


def test_cancel_reassignment():
    running = state([2, 3, 4, 1], 4, [1, 2, 3, 4], adding=(4,), removing=(1,))
    assert cancel_reassignment(running) == state([2, 3, 1], 2, [1, 2, 3], leader_epoch=6)
    kept = replace(running, leader=3)
    assert cancel_reassignment(kept) == state([2, 3, 1], 3, [1, 2, 3])
    assert cancel_reassignment(state([1, 2, 3], 1, [1, 2, 3])) is None


def test_cancel_refuses_an_unclean_revert():
    running = state([4, 5, 1], 4, [4, 5], adding=(4, 5), removing=(1,))
    with pytest.raises(ConfigError) as error:
        cancel_reassignment(running)
    assert error.value.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT


# -- preferred leaders ---------------------------------------------------------------------


def test_preferred_elections_and_their_errors():
    partitions = {
        ("t", 0): state([1, 2], 1, [1, 2]),
        ("t", 1): state([1, 2], 2, [1, 2]),
        ("t", 2): state([1, 2], 2, [2]),
        ("t", 3): state([3, 2], 2, [2, 3]),
    }
    changes, errors = Controller().preferred_elections(
        image([1, 2], partitions), [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("t", 4), ("u", 0)]
    )
    assert changes == [PartitionChange("t", 1, state([1, 2], 1, [1, 2], leader_epoch=6))]
    assert errors == {
        ("t", 0): ErrorCode.ELECTION_NOT_NEEDED,
        ("t", 2): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
        ("t", 3): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
        ("t", 4): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("u", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }


def test_preferred_elections_of_every_partition():
    partitions = {("t", 1): state([1, 2], 2, [1, 2]), ("t", 0): state([2, 1], 2, [1, 2])}
    changes, errors = Controller().preferred_elections(image([1, 2], partitions))
    assert [(c.topic, c.partition, c.state.leader) for c in changes] == [("t", 1, 1)]
    assert errors == {("t", 0): ErrorCode.ELECTION_NOT_NEEDED}


def test_preferred_election_skips_a_just_restarted_broker():
    controller = Controller()
    led_elsewhere = state([1, 2], 2, [1, 2])
    assert controller.reconcile(image([1, 2], led_elsewhere), NOW, clean) == []
    restarted = image([1, 2], led_elsewhere, {1: 9})
    # Before reconcile has taken in the new epoch ...
    _, errors = controller.preferred_elections(restarted)
    assert errors == {("t", 0): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}
    # ... and after, while its old ISR seat is still being cleared.
    assert only(controller.reconcile(restarted, NOW + 1, clean)) == state([1, 2], 2, [2])
    _, errors = controller.preferred_elections(restarted)
    assert errors == {("t", 0): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}


def rebalance_image(led_elsewhere):
    """Broker 1 is the preferred leader of 10 partitions; ``led_elsewhere`` are led by 2."""
    partitions = {
        ("t", p): state([1, 2], 2 if p < led_elsewhere else 1, [1, 2]) for p in range(10)
    }
    partitions[("u", 0)] = state([2, 1], 1, [1, 2])  # broker 2: 1 of 1 elsewhere
    return image([1, 2], partitions)


def test_rebalance_threshold():
    controller = Controller()
    # Broker 1: 10% led elsewhere is not above 10%; broker 2: 100% is.
    changes = controller.rebalance(rebalance_image(1))
    assert changes == [PartitionChange("u", 0, state([2, 1], 2, [1, 2], leader_epoch=6))]
    changes = controller.rebalance(rebalance_image(2))
    assert [(c.topic, c.partition, c.state.leader, c.state.leader_epoch) for c in changes] == [
        ("t", 0, 1, 6), ("t", 1, 1, 6), ("u", 0, 2, 6),
    ]
    assert controller.rebalance(rebalance_image(2), imbalance_percentage=100) == []


def test_rebalance_leaves_reassigning_partitions_alone():
    moving = state([1, 2, 3], 2, [1, 2, 3], adding=(3,))
    assert Controller().rebalance(image([1, 2, 3], moving)) == []
