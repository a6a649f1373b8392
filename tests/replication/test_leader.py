"""LeaderReplicas: follower progress, the maximal ISR, the high watermark, ISR proposals."""

from __future__ import annotations

from dataclasses import replace

from strom.metadata.image import PartitionState
from strom.replication.leader import UNKNOWN, LeaderReplicas

LEADER = 1
LAG_MAX_MS = 1000


def state(isr: tuple[int, ...] = (1, 2, 3), replicas: tuple[int, ...] = (1, 2, 3), epoch: int = 4) -> PartitionState:
    return PartitionState(replicas=replicas, leader=LEADER, leader_epoch=epoch, isr=isr)


def leading(isr: tuple[int, ...] = (1, 2, 3), replicas: tuple[int, ...] = (1, 2, 3), now_ms: int = 0) -> LeaderReplicas:
    return LeaderReplicas(LEADER, state(isr, replicas), now_ms)


# --- high watermark ------------------------------------------------------------------------------


def test_followers_start_unknown_with_the_lag_clock_at_the_leadership_change():
    leader = leading(now_ms=5000)
    assert sorted(leader.followers) == [2, 3]
    assert leader.followers[2].log_end_offset == UNKNOWN
    assert leader.followers[2].last_caught_up_ms == 5000
    assert leader.leader_epoch == 4


def test_high_watermark_is_unknown_until_every_isr_follower_has_fetched():
    leader = leading()
    assert leader.high_watermark(10) == UNKNOWN
    assert leader.record_fetch(2, 7, 10, now_ms=100)
    assert leader.high_watermark(10) == UNKNOWN  # 3 is in the ISR and has not fetched yet
    assert leader.record_fetch(3, 5, 10, now_ms=100)
    assert leader.high_watermark(10) == 5


def test_high_watermark_is_the_smallest_log_end_over_the_isr_including_the_leader():
    leader = leading()
    leader.record_fetch(2, 9, 10, now_ms=100)
    leader.record_fetch(3, 8, 10, now_ms=100)
    assert leader.high_watermark(10) == 8
    leader.record_fetch(3, 10, 10, now_ms=200)
    assert leader.high_watermark(10) == 9
    leader.record_fetch(2, 10, 10, now_ms=200)
    assert leader.high_watermark(10) == 10
    # The leader's own log end bounds it (e.g. just after its log was truncated).
    assert leader.high_watermark(6) == 6


def test_high_watermark_ignores_followers_outside_the_isr():
    leader = leading(isr=(1, 2))
    leader.record_fetch(2, 12, 12, now_ms=100)
    leader.record_fetch(3, 1, 12, now_ms=100)
    assert leader.high_watermark(12) == 12
    assert leading(isr=(1,)).high_watermark(30) == 30  # alone in the ISR: its own log end


# --- caught-up tracking ---------------------------------------------------------------------------


def test_a_follower_fetching_at_the_leaders_end_is_caught_up_now():
    leader = leading()
    assert leader.record_fetch(2, 10, 10, now_ms=700)
    progress = leader.followers[2]
    assert (progress.log_end_offset, progress.last_caught_up_ms, progress.last_fetch_ms) == (10, 700, 700)
    assert progress.leader_end_at_last_fetch == 10


def test_a_follower_behind_is_not_caught_up_on_its_first_fetch():
    leader = leading(now_ms=50)
    leader.record_fetch(2, 3, 10, now_ms=100)
    assert leader.followers[2].last_caught_up_ms == 50
    assert leader.followers[2].log_end_offset == 3


def test_reaching_the_leaders_end_of_the_previous_fetch_is_caught_up_as_of_that_fetch():
    """Kafka's Replica.updateFetchState: fetching at or past the leader's log end as of the
    previous fetch means the follower was caught up at the previous fetch time."""
    leader = leading()
    leader.record_fetch(2, 5, 10, now_ms=100)  # behind; the leader's end was 10
    assert leader.followers[2].last_caught_up_ms == 0
    leader.record_fetch(2, 10, 15, now_ms=300)  # has 10 (the previous end), the leader has 15
    assert leader.followers[2].last_caught_up_ms == 100
    leader.record_fetch(2, 12, 20, now_ms=400)  # below 15 (the previous end): no progress
    assert leader.followers[2].last_caught_up_ms == 100
    leader.record_fetch(2, 20, 20, now_ms=500)
    assert leader.followers[2].last_caught_up_ms == 500


def test_fetches_from_non_replicas_are_refused():
    leader = leading()
    assert leader.record_fetch(7, 10, 10, now_ms=100) is False
    assert leader.record_fetch(LEADER, 10, 10, now_ms=100) is False  # the leader is no follower
    assert 7 not in leader.followers
    assert leader.high_watermark(10) == UNKNOWN


# --- ISR shrink ------------------------------------------------------------------------------------


def test_shrink_drops_followers_not_caught_up_for_longer_than_the_lag_maximum():
    leader = leading(now_ms=0)
    leader.record_fetch(2, 10, 10, now_ms=800)
    leader.record_fetch(3, 4, 10, now_ms=800)
    assert leader.isr_to_shrink(1000, LAG_MAX_MS) is None  # 3: exactly lag max, not more
    assert leader.isr_to_shrink(1001, LAG_MAX_MS) == (1, 2)
    assert leader.isr_to_shrink(1801, LAG_MAX_MS) == (1,)


def test_shrink_never_drops_the_leader():
    leader = leading(isr=(1,), replicas=(1, 2))
    assert leader.isr_to_shrink(10**9, LAG_MAX_MS) is None
    leader = leading(isr=(2, 1, 3))  # the leader's place in the ISR does not matter
    assert leader.isr_to_shrink(10**9, LAG_MAX_MS) == (1,)


def test_a_caught_up_follower_is_kept_after_a_quiet_period():
    leader = leading()
    leader.record_fetch(2, 10, 10, now_ms=5000)
    leader.record_fetch(3, 10, 10, now_ms=5000)
    assert leader.isr_to_shrink(5900, LAG_MAX_MS) is None
    assert leader.isr_to_shrink(6001, LAG_MAX_MS) == (1,)


# --- ISR expansion (judged for the replica that just fetched, as Kafka's maybeExpandIsr) -------------


def test_expansion_adds_a_follower_at_the_high_watermark_and_the_epoch_start():
    leader = leading(isr=(1, 2))
    leader.record_fetch(3, 7, 10, now_ms=100)
    assert leader.isr_to_expand(3, high_watermark=8, epoch_start_offset=0) is None  # below the HW
    leader.record_fetch(3, 8, 10, now_ms=200)
    assert leader.isr_to_expand(3, high_watermark=8, epoch_start_offset=0) == (1, 2, 3)
    assert leader.isr_to_expand(3, high_watermark=8, epoch_start_offset=9) is None  # below the epoch start
    leader.record_fetch(3, 9, 10, now_ms=300)
    assert leader.isr_to_expand(3, high_watermark=8, epoch_start_offset=9) == (1, 2, 3)


def test_expansion_ignores_followers_that_never_fetched():
    leader = leading(isr=(1,))
    assert leader.isr_to_expand(2, high_watermark=UNKNOWN, epoch_start_offset=0) is None
    assert leader.isr_to_expand(2, high_watermark=0, epoch_start_offset=0) is None


def test_expansion_adds_only_the_replica_asked_about_at_the_end_of_the_isr():
    leader = leading(isr=(1, 3), replicas=(1, 2, 3, 4))
    leader.record_fetch(4, 5, 5, now_ms=100)
    leader.record_fetch(2, 4, 5, now_ms=100)
    assert leader.isr_to_expand(4, high_watermark=5, epoch_start_offset=2) == (1, 3, 4)
    assert leader.isr_to_expand(2, high_watermark=5, epoch_start_offset=2) is None  # one behind


def test_nothing_to_expand_for_isr_members_non_replicas_or_the_leader():
    leader = leading()
    leader.record_fetch(2, 5, 5, now_ms=100)
    assert leader.isr_to_expand(2, high_watermark=5, epoch_start_offset=0) is None
    assert leader.isr_to_expand(7, high_watermark=0, epoch_start_offset=0) is None
    leader = leading(isr=(2,))  # an odd committed state: the leader itself outside the ISR
    assert leader.isr_to_expand(LEADER, high_watermark=0, epoch_start_offset=0) is None


# --- pending ISR changes ---------------------------------------------------------------------------


def test_a_pending_expansion_blocks_new_proposals_and_counts_for_the_high_watermark():
    leader = leading(isr=(1, 2))
    leader.record_fetch(2, 10, 10, now_ms=100)
    leader.record_fetch(3, 8, 10, now_ms=100)
    assert leader.high_watermark(10) == 10  # 3 is not in the ISR yet
    leader.pending_isr = (1, 2, 3)
    assert leader.maximal_isr() == (1, 2, 3)
    assert leader.high_watermark(10) == 8  # ... but may be any moment now
    assert leader.isr_to_expand(3, high_watermark=8, epoch_start_offset=0) is None
    assert leader.isr_to_shrink(10**9, LAG_MAX_MS) is None


def test_a_pending_shrink_still_counts_the_follower_being_removed():
    leader = leading()
    leader.record_fetch(2, 10, 10, now_ms=100)
    leader.record_fetch(3, 4, 10, now_ms=100)
    leader.pending_isr = (1, 2)
    assert leader.maximal_isr() == (1, 2, 3)
    assert leader.high_watermark(10) == 4
    assert leader.isr_to_shrink(10**9, LAG_MAX_MS) is None


def test_a_pending_isr_change_is_settled_only_by_a_new_partition_epoch():
    leader = leading(isr=(1, 2))
    proposed = leader.propose((1, 2, 3))
    assert proposed.isr == (1, 2, 3) and proposed.partition_epoch == leader.state.partition_epoch
    # The same partition epoch again (an image that did not touch it, or a write whose answer
    # was lost): still pending, and the high watermark still counts follower 3.
    leader.update_state(replace(leader.state), now_ms=100)
    assert leader.pending_isr == (1, 2, 3) and leader.maximal_isr() == (1, 2, 3)
    leader.update_state(replace(proposed, partition_epoch=proposed.partition_epoch + 1), now_ms=200)
    assert leader.pending_isr is None
    assert leader.state.isr == (1, 2, 3) and leader.maximal_isr() == (1, 2, 3)


def test_a_pending_isr_change_lost_to_another_writer_is_settled_too():
    leader = leading(isr=(1, 2, 3))
    leader.propose((1, 2))  # a shrink
    assert leader.maximal_isr() == (1, 2, 3)  # until settled, follower 3 still counts
    other = replace(leader.state, isr=(1, 3), partition_epoch=leader.state.partition_epoch + 1)
    leader.update_state(other, now_ms=100)
    assert leader.pending_isr is None and leader.maximal_isr() == (1, 3)


def test_update_state_follows_replica_changes():
    leader = leading(now_ms=0)
    leader.record_fetch(3, 6, 10, now_ms=100)
    leader.update_state(state(isr=(1, 2), replicas=(1, 2, 4)), now_ms=2500)
    assert sorted(leader.followers) == [2, 4]
    assert leader.followers[4].log_end_offset == UNKNOWN
    assert leader.followers[4].last_caught_up_ms == 2500
    assert leader.record_fetch(3, 6, 10, now_ms=2600) is False  # no longer a replica
    assert leader.record_fetch(4, 10, 10, now_ms=2600)
    assert leader.isr_to_expand(4, high_watermark=10, epoch_start_offset=0) == (1, 2, 4)


def test_update_state_keeps_progress_of_remaining_followers():
    leader = leading()
    leader.record_fetch(2, 9, 10, now_ms=100)
    leader.update_state(state(isr=(1, 2), replicas=(1, 2, 3)), now_ms=200)
    assert leader.followers[2].log_end_offset == 9
    assert leader.followers[2].last_fetch_ms == 100
    assert leader.high_watermark(10) == 9


def test_a_follower_leaving_the_isr_must_fetch_again_before_rejoining():
    """The controller removed a dead broker from the ISR: its earlier fetches prove nothing
    about its next incarnation."""
    leader = leading()
    leader.record_fetch(2, 10, 10, now_ms=100)
    leader.record_fetch(3, 10, 10, now_ms=100)
    leader.update_state(state(isr=(1, 2)), now_ms=500)
    assert leader.followers[3].log_end_offset == UNKNOWN
    assert leader.followers[3].last_caught_up_ms == 500
    assert leader.followers[2].log_end_offset == 10  # still in the ISR: kept
    assert leader.isr_to_expand(3, high_watermark=10, epoch_start_offset=0) is None
    leader.record_fetch(3, 10, 10, now_ms=600)
    assert leader.isr_to_expand(3, high_watermark=10, epoch_start_offset=0) == (1, 2, 3)


def test_forget_voids_a_followers_progress():
    leader = leading()
    leader.record_fetch(2, 8, 10, now_ms=100)
    leader.record_fetch(3, 9, 10, now_ms=100)
    assert leader.high_watermark(10) == 8
    leader.forget(2, now_ms=900)
    progress = leader.followers[2]
    assert (progress.log_end_offset, progress.last_caught_up_ms, progress.leader_end_at_last_fetch) == (UNKNOWN, 900, UNKNOWN)
    assert leader.high_watermark(10) == UNKNOWN  # an ISR member is unknown again
    leader.forget(7, now_ms=900)  # not a follower: nothing happens
    assert sorted(leader.followers) == [2, 3]
