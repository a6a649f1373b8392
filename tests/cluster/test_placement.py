"""Replica placement: Kafka's assignments, spread and rack properties, manual assignment checks."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.cluster.placement import assign_replicas, continuation_start_index, validate_assignment
from strom.metadata.configs import ConfigError
from strom.metadata.image import BrokerRegistration
from strom.protocol.errors import ErrorCode


def brokers(ids, racks=None):
    racks = racks or {}
    return {i: BrokerRegistration(i, "localhost", 9092 + i, rack=racks.get(i)) for i in ids}


def test_rack_unaware_matches_kafka():
    # Kafka's AdminUtils test expectation: 5 brokers, 10 partitions, RF 3, fixed start 0.
    assert assign_replicas(brokers(range(5)), 10, 3, start_index=0) == [
        [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0], [4, 0, 1],
        [0, 2, 3], [1, 3, 4], [2, 4, 0], [3, 0, 1], [4, 1, 2],
    ]


def test_rack_aware_matches_kafkas_example():
    # AdminUtils' doc: racks 0:rack1 1:rack3 2:rack3 3:rack2 4:rack2 5:rack1 alternate as
    # 0, 3, 1, 5, 4, 2; partition 6 shifts its followers.
    racks = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    assert assign_replicas(brokers(range(6), racks), 7, 3, start_index=0) == [
        [0, 3, 1], [3, 1, 5], [1, 5, 4], [5, 4, 2], [4, 2, 0], [2, 0, 3], [0, 4, 2],
    ]


def test_broker_ids_are_taken_in_order_whatever_the_mapping_order():
    shuffled = {i: BrokerRegistration(i, "h", 1) for i in (30, 10, 20)}
    assert assign_replicas(shuffled, 3, 2, start_index=0) == [[10, 20], [20, 30], [30, 10]]


def test_some_brokers_without_rack_place_rack_unaware():
    partial = brokers(range(4), {0: "a", 1: "a", 2: "b"})
    assert assign_replicas(partial, 8, 2, start_index=1) == assign_replicas(
        brokers(range(4)), 8, 2, start_index=1
    )


def test_random_start_comes_from_rng():
    one = assign_replicas(brokers(range(7)), 20, 3, rng=random.Random(42))
    two = assign_replicas(brokers(range(7)), 20, 3, rng=random.Random(42))
    assert one == two
    starts = {
        assign_replicas(brokers(range(7)), 1, 1, rng=random.Random(s))[0][0] for s in range(50)
    }
    assert len(starts) > 1


def test_followers_shift_is_drawn_apart_from_the_leaders_start():
    # Kafka draws both: a leader does not always get the same follower.
    pairs = {
        tuple(assign_replicas(brokers(range(5)), 1, 2, rng=random.Random(s))[0])
        for s in range(200)
    }
    followers_of_0 = {follower for leader, follower in pairs if leader == 0}
    assert followers_of_0 == {1, 2, 3, 4}


def test_start_partition_continues_the_round_robin():
    full = assign_replicas(brokers(range(5)), 10, 3, start_index=2)
    assert assign_replicas(brokers(range(5)), 4, 3, start_index=2) == full[:4]
    assert assign_replicas(brokers(range(5)), 6, 3, start_index=2, start_partition=4) == full[4:]


def test_continuation_start_index():
    bs = brokers([1, 3, 5])
    assert continuation_start_index(bs, 3) == 1
    assert continuation_start_index(bs, 4) == 2
    assert continuation_start_index(bs, 9) == 0  # partition 0's leader is gone: start over


def test_replication_factor_errors():
    with pytest.raises(ConfigError) as error:
        assign_replicas(brokers([0, 1]), 1, 3)
    assert error.value.error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert error.value.message == "Replication factor: 3 larger than available brokers: 2."
    with pytest.raises(ConfigError) as error:
        assign_replicas(brokers([0, 1]), 1, 0)
    assert error.value.error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert assign_replicas(brokers([0, 1]), 0, 2) == []


@given(
    n=st.integers(1, 12),
    partitions=st.integers(1, 60),
    data=st.data(),
)
def test_rack_unaware_spread(n, partitions, data):
    rf = data.draw(st.integers(1, n))
    start = data.draw(st.integers(0, n - 1))
    result = assign_replicas(brokers(range(n)), partitions, rf, start_index=start)
    assert len(result) == partitions
    assert all(len(r) == rf and len(set(r)) == rf for r in result)
    leaders = Counter(r[0] for r in result)
    assert max(leaders.values()) - min(leaders.get(b, 0) for b in range(n)) <= 1
    if partitions % n == 0:
        # Whole rounds: every broker holds the same number of replicas.
        assert set(Counter(b for r in result for b in r).values()) == {partitions * rf // n}


@given(
    rack_of=st.lists(st.sampled_from("abcd"), min_size=1, max_size=12),
    partitions=st.integers(1, 40),
    data=st.data(),
)
def test_rack_aware_spread(rack_of, partitions, data):
    n = len(rack_of)
    rf = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**32))
    racks = dict(enumerate(rack_of))
    rack_count = len(set(rack_of))
    result = assign_replicas(brokers(range(n), racks), partitions, rf, rng=random.Random(seed))
    for replicas in result:
        assert len(replicas) == rf and len(set(replicas)) == rf
        used = [racks[b] for b in replicas]
        if rf <= rack_count:
            assert len(set(used)) == rf  # one replica per rack
        else:
            assert len(set(used)) == rack_count  # every rack has one


def test_validate_assignment_accepts_good_lists():
    validate_assignment([[0, 1], [1, 2], [2, 0]], brokers(range(3)))
    validate_assignment([[2]], brokers(range(3)), replication_factor=1)


@pytest.mark.parametrize(
    ("assignments", "replication_factor", "message"),
    [
        ([[0, 1], []], None, "The manual partition assignment includes an empty replica list."),
        ([[9, 1, 7]], None,
         "The manual partition assignment includes broker 7, but no such broker is registered."),
        ([[2, 1, 2]], None,
         "The manual partition assignment includes the broker 2 more than once."),
        ([[0, 1], [0]], None,
         "The manual partition assignment includes a partition with 1 replica(s), but this is "
         "not consistent with previous partitions, which have 2 replica(s)."),
        ([[0, 1, 2]], 2,
         "The manual partition assignment includes a partition with 3 replica(s), but this is "
         "not consistent with previous partitions, which have 2 replica(s)."),
    ],
)
def test_validate_assignment_refuses_with_kafkas_messages(assignments, replication_factor, message):
    with pytest.raises(ConfigError) as error:
        validate_assignment(assignments, brokers(range(3)), replication_factor)
    assert error.value.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert error.value.message == message
