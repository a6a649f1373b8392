"""ElectLeaders, AlterPartitionReassignments and ListPartitionReassignments through the codec,
on a single node's local metadata store. Several-broker cases register more brokers in the
image (as the etcd store would list them) and create topics through the store; every answer
is checked against the partition state the store then holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from strom.handlers.context import BrokerContext
from strom.handlers.registry import registrations
from strom.metadata.image import (
    NO_LEADER,
    RECOVERED,
    RECOVERING,
    BrokerRegistration,
    PartitionState,
)
from strom.metadata.store import LocalMetadataStore
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode

from .harness import call, create_topic, make_ctx

PREFERRED, UNCLEAN = 0, 1


@pytest.fixture
def ctx(tmp_path: Path) -> BrokerContext:
    context = make_ctx(tmp_path)
    create_topic(context, "t", 2)
    return context


# --- helpers ----------------------------------------------------------------------------------


def register(ctx: BrokerContext, *node_ids: int) -> None:
    """Other brokers join the image (the etcd store lists them from their registrations)."""

    async def publish() -> None:
        image = ctx.image
        brokers = dict(image.brokers)
        for node_id in node_ids:
            brokers[node_id] = BrokerRegistration(node_id, "127.0.0.1", 9100 + node_id, epoch=node_id)
        cast(LocalMetadataStore, ctx.metadata)._publish(image.with_changes(brokers=brokers))

    asyncio.run(publish())


def unregister(ctx: BrokerContext, *node_ids: int) -> None:
    async def publish() -> None:
        image = ctx.image
        brokers = {k: v for k, v in image.brokers.items() if k not in node_ids}
        cast(LocalMetadataStore, ctx.metadata)._publish(image.with_changes(brokers=brokers))

    asyncio.run(publish())


def write(ctx: BrokerContext, topic: str, partition: int, **changes: Any) -> PartitionState:
    """Another writer (the controller, a leader) changes the partition."""
    state = ctx.image.partitions[(topic, partition)]
    stored = asyncio.run(ctx.metadata.alter_partition(topic, partition, replace(state, **changes)))
    assert stored is not None
    return stored


def state(ctx: BrokerContext, topic: str = "r", partition: int = 0) -> PartitionState:
    return ctx.image.partitions[(topic, partition)]


def elect(ctx: BrokerContext, partitions: dict[str, list[int]] | None, election_type: int = PREFERRED, version: int = 2) -> Any:
    body: dict[str, Any] = {
        "election_type": election_type,
        "topic_partitions": None if partitions is None else [
            {"topic": t, "partitions": ps} for t, ps in partitions.items()
        ],
        "timeout": 60_000,
    }
    return call(ctx, ApiKey.ELECT_LEADERS, version, body)


def election_errors(response: Any) -> dict[tuple[str, int], int]:
    return {
        (r.topic, p.partition_id): p.error_code
        for r in response.replica_election_results for p in r.partition_result
    }


def alter(ctx: BrokerContext, moves: dict[tuple[str, int], list[int] | None], version: int = 0, **extra: Any) -> Any:
    topics: dict[str, list[dict[str, Any]]] = {}
    for (topic, partition), replicas in moves.items():
        topics.setdefault(topic, []).append({"partition_index": partition, "replicas": replicas})
    body = {"timeout": 60_000, "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()], **extra}
    return call(ctx, ApiKey.ALTER_PARTITION_REASSIGNMENTS, version, body)


def alter_errors(response: Any) -> dict[tuple[str, int], int]:
    return {(t.name, p.partition_index): p.error_code for t in response.responses for p in t.partitions}


def listing(ctx: BrokerContext, topics: dict[str, list[int]] | None = None) -> dict[tuple[str, int], tuple[list[int], list[int], list[int]]]:
    body = {
        "timeout": 60_000,
        "topics": None if topics is None else [{"name": t, "partition_indexes": ps} for t, ps in topics.items()],
    }
    response = call(ctx, ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, body)
    assert response.error_code == ErrorCode.NONE
    return {
        (t.name, p.partition_index): (list(p.replicas), list(p.adding_replicas), list(p.removing_replicas))
        for t in response.topics for p in t.partitions
    }


Alter = Callable[..., Awaitable[PartitionState | None]]


def race_writes(ctx: BrokerContext, times: int) -> list[int]:
    """Make the next ``times`` partition writes lose their compare-and-set: just before each,
    another writer changes the partition (a leader expanding its ISR, say). Returns a list
    that counts the handler's attempts."""
    store = ctx.metadata
    real: Alter = store.alter_partition
    attempts: list[int] = []

    async def racing(topic: str, partition: int, new: PartitionState, **kwargs: Any) -> PartitionState | None:
        attempts.append(partition)
        if len(attempts) <= times:
            current = store.image.partitions[(topic, partition)]
            assert await real(topic, partition, replace(current)) is not None  # bumps the epoch
        return await real(topic, partition, new, **kwargs)

    store.alter_partition = racing  # type: ignore[method-assign]
    return attempts


# --- ElectLeaders -----------------------------------------------------------------------------


def test_registered_versions() -> None:
    assert (registrations()[ApiKey.ELECT_LEADERS].min_version, registrations()[ApiKey.ELECT_LEADERS].max_version) == (0, 2)
    alter_reg = registrations()[ApiKey.ALTER_PARTITION_REASSIGNMENTS]
    assert (alter_reg.min_version, alter_reg.max_version) == (0, 1)
    list_reg = registrations()[ApiKey.LIST_PARTITION_REASSIGNMENTS]
    assert (list_reg.min_version, list_reg.max_version) == (0, 0)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_preferred_election_on_one_broker_is_not_needed(ctx: BrokerContext, version: int) -> None:
    before = state(ctx, "t", 0)
    response = elect(ctx, {"t": [0, 1]}, version=version)
    assert election_errors(response) == {("t", 0): ErrorCode.ELECTION_NOT_NEEDED, ("t", 1): ErrorCode.ELECTION_NOT_NEEDED}
    message = response.replica_election_results[0].partition_result[0].error_message
    assert message == "Leader election not needed for topic partition."
    if version >= 1:
        assert response.error_code == ErrorCode.NONE
    assert state(ctx, "t", 0) == before


def test_every_partition_leaves_out_the_elections_not_needed(ctx: BrokerContext) -> None:
    response = elect(ctx, None)
    assert [(r.topic, list(r.partition_result)) for r in response.replica_election_results] == [("t", [])]


def test_unknown_topic_and_partition(ctx: BrokerContext) -> None:
    response = elect(ctx, {"nope": [0], "t": [7]})
    assert election_errors(response) == {
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("t", 7): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert response.error_code == ErrorCode.NONE
    response = elect(ctx, {"nope": [0]}, UNCLEAN)
    assert election_errors(response) == {("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}


def test_unclean_election_of_a_led_partition_is_not_needed(ctx: BrokerContext) -> None:
    response = elect(ctx, {"t": [0]}, UNCLEAN)
    assert election_errors(response) == {("t", 0): ErrorCode.ELECTION_NOT_NEEDED}


def test_unknown_election_type(ctx: BrokerContext) -> None:
    before = dict(ctx.image.partitions)
    response = elect(ctx, {"t": [0]}, election_type=5)
    assert response.error_code == ErrorCode.INVALID_REQUEST
    assert election_errors(response) == {("t", 0): ErrorCode.INVALID_REQUEST}
    assert ctx.image.partitions == before


def test_preferred_election_moves_leadership_back(ctx: BrokerContext) -> None:
    register(ctx, 1, 2)
    create_topic(ctx, "r", 2, assignments=[[0, 1, 2], [1, 2, 0]])
    failed_over = write(ctx, "r", 0, leader=1, leader_epoch=1)
    assert state(ctx, "r", 1).leader == 1  # led by its preferred replica already
    response = elect(ctx, {"r": [0, 1]})
    assert election_errors(response) == {("r", 0): ErrorCode.NONE, ("r", 1): ErrorCode.ELECTION_NOT_NEEDED}
    elected = state(ctx, "r", 0)
    assert (elected.leader, elected.leader_epoch, elected.isr) == (0, 2, (0, 1, 2))
    assert elected.partition_epoch == failed_over.partition_epoch + 1


def test_preferred_election_of_every_partition(ctx: BrokerContext) -> None:
    register(ctx, 1)
    create_topic(ctx, "r", 2, assignments=[[0, 1], [1, 0]])
    write(ctx, "r", 0, leader=1, leader_epoch=1)
    write(ctx, "r", 1, leader=0, leader_epoch=1)
    response = elect(ctx, None)
    assert election_errors(response) == {("r", 0): ErrorCode.NONE, ("r", 1): ErrorCode.NONE}
    assert [state(ctx, "r", p).leader for p in (0, 1)] == [0, 1]


def test_preferred_leader_out_of_the_isr_or_gone(ctx: BrokerContext) -> None:
    register(ctx, 1, 2)
    create_topic(ctx, "r", 2, assignments=[[2, 0], [1, 0]])
    write(ctx, "r", 0, leader=0, leader_epoch=1, isr=(0,))  # 2 fell out of the ISR
    write(ctx, "r", 1, leader=0, leader_epoch=1)
    unregister(ctx, 1)  # 1 is gone, although still in the ISR
    response = elect(ctx, {"r": [0, 1]})
    assert election_errors(response) == {
        ("r", 0): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
        ("r", 1): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
    }
    assert state(ctx, "r", 0).leader == 0 and state(ctx, "r", 1).leader == 0


def test_unclean_election_picks_a_live_isr_member_first(ctx: BrokerContext) -> None:
    register(ctx, 1, 2)
    create_topic(ctx, "r", 1, assignments=[[1, 2, 0]])
    write(ctx, "r", 0, leader=NO_LEADER, leader_epoch=1, isr=(1, 0))
    unregister(ctx, 1)
    response = elect(ctx, {"r": [0]}, UNCLEAN)
    assert election_errors(response) == {("r", 0): ErrorCode.NONE}
    elected = state(ctx)
    assert (elected.leader, elected.leader_epoch, elected.isr, elected.leader_recovery) == (0, 2, (1, 0), RECOVERED)


def test_unclean_election_of_an_offline_partition(ctx: BrokerContext) -> None:
    register(ctx, 1, 2)
    create_topic(ctx, "r", 1, assignments=[[1, 2, 0]])
    write(ctx, "r", 0, leader=NO_LEADER, leader_epoch=3, isr=(1,))
    unregister(ctx, 1)
    assert election_errors(elect(ctx, {"r": [0]})) == {("r", 0): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}
    response = elect(ctx, {"r": [0]}, UNCLEAN)
    assert election_errors(response) == {("r", 0): ErrorCode.NONE}
    elected = state(ctx)
    assert (elected.leader, elected.leader_epoch, elected.isr, elected.leader_recovery) == (2, 4, (2,), RECOVERING)
    assert elected.replicas == (1, 2, 0)


def test_unclean_election_without_a_live_replica(ctx: BrokerContext) -> None:
    register(ctx, 1, 2)
    create_topic(ctx, "r", 1, assignments=[[1, 2]])
    write(ctx, "r", 0, leader=NO_LEADER, leader_epoch=1, isr=(1,))
    unregister(ctx, 1, 2)
    before = state(ctx)
    response = elect(ctx, {"r": [0]}, UNCLEAN)
    assert election_errors(response) == {("r", 0): ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE}
    assert state(ctx) == before


def test_a_lost_compare_and_set_is_decided_again(ctx: BrokerContext) -> None:
    register(ctx, 1)
    create_topic(ctx, "r", 1, assignments=[[0, 1]])
    write(ctx, "r", 0, leader=1, leader_epoch=1)
    attempts = race_writes(ctx, times=1)
    response = elect(ctx, {"r": [0]})
    assert election_errors(response) == {("r", 0): ErrorCode.NONE}
    assert len(attempts) == 2
    assert (state(ctx).leader, state(ctx).leader_epoch) == (0, 2)


def test_compare_and_set_lost_twice(ctx: BrokerContext) -> None:
    register(ctx, 1)
    create_topic(ctx, "r", 1, assignments=[[0, 1]])
    write(ctx, "r", 0, leader=1, leader_epoch=1)
    race_writes(ctx, times=2)
    response = elect(ctx, {"r": [0]})
    assert election_errors(response) == {("r", 0): ErrorCode.REQUEST_TIMED_OUT}
    assert state(ctx).leader == 1


# --- ListPartitionReassignments ------------------------------------------------------------------


def test_list_with_nothing_running(ctx: BrokerContext) -> None:
    assert listing(ctx) == {}
    assert listing(ctx, {"t": [0, 1, 9], "nope": [0]}) == {}


# --- AlterPartitionReassignments -----------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
def test_reassignment_validation(ctx: BrokerContext, version: int) -> None:
    before = dict(ctx.image.partitions)
    response = alter(ctx, {
        ("t", 0): [],
        ("t", 1): [0, 0],
        ("nope", 0): [0],
        ("t", 5): [0],
    }, version)
    assert response.error_code == ErrorCode.NONE
    assert alter_errors(response) == {
        ("t", 0): ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        ("t", 1): ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("t", 5): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    messages = {(t.name, p.partition_index): p.error_message for t in response.responses for p in t.partitions}
    assert messages[("t", 0)] == "The manual partition assignment includes an empty replica list."
    assert messages[("t", 1)] == "The manual partition assignment includes the broker 0 more than once."
    response = alter(ctx, {("t", 0): [0, 3]}, version)
    assert alter_errors(response) == {("t", 0): ErrorCode.INVALID_REPLICA_ASSIGNMENT}
    assert response.responses[0].partitions[0].error_message == (
        "The manual partition assignment includes broker 3, but no such broker is registered."
    )
    assert ctx.image.partitions == before


def test_cancel_with_nothing_running(ctx: BrokerContext) -> None:
    response = alter(ctx, {("t", 0): None})
    assert alter_errors(response) == {("t", 0): ErrorCode.NO_REASSIGNMENT_IN_PROGRESS}
    assert response.responses[0].partitions[0].error_message == "No partition reassignment is in progress."


def test_same_replicas_change_nothing(ctx: BrokerContext) -> None:
    before = state(ctx, "t", 0)
    assert alter_errors(alter(ctx, {("t", 0): [0]})) == {("t", 0): ErrorCode.NONE}
    assert state(ctx, "t", 0) == before


def test_replication_factor_change_refused_in_v1(ctx: BrokerContext) -> None:
    register(ctx, 1)
    response = alter(ctx, {("t", 0): [0, 1]}, 1, allow_replication_factor_change=False)
    assert response.allow_replication_factor_change is False
    assert alter_errors(response) == {("t", 0): ErrorCode.INVALID_REPLICATION_FACTOR}
    assert response.responses[0].partitions[0].error_message == "The replication factor is changed from 1 to 2"
    assert state(ctx, "t", 0).replicas == (0,)
    response = alter(ctx, {("t", 0): [1]}, 1, allow_replication_factor_change=False)
    assert alter_errors(response) == {("t", 0): ErrorCode.NONE}
    assert (state(ctx, "t", 0).replicas, state(ctx, "t", 0).adding, state(ctx, "t", 0).removing) == ((1, 0), (1,), (0,))


def test_reassign_list_and_cancel(ctx: BrokerContext) -> None:
    register(ctx, 1, 2)
    create_topic(ctx, "r", 2, assignments=[[0, 1], [1, 0]])
    before = state(ctx)
    response = alter(ctx, {("r", 0): [1, 2]})
    assert alter_errors(response) == {("r", 0): ErrorCode.NONE}
    moving = state(ctx)
    assert (moving.replicas, moving.adding, moving.removing) == ((1, 2, 0), (2,), (0,))
    assert (moving.leader, moving.isr) == (0, (0, 1))  # nothing moves before 2 is in sync
    assert listing(ctx) == {("r", 0): ([1, 2, 0], [2], [0])}
    assert listing(ctx, {"r": [1]}) == {}
    assert listing(ctx, {"r": [0, 1], "t": [0]}) == {("r", 0): ([1, 2, 0], [2], [0])}

    response = alter(ctx, {("r", 0): None, ("r", 1): None})
    assert alter_errors(response) == {("r", 0): ErrorCode.NONE, ("r", 1): ErrorCode.NO_REASSIGNMENT_IN_PROGRESS}
    cancelled = state(ctx)
    # The original replicas, in the order the reassignment left them (Kafka's revert too).
    assert (cancelled.replicas, cancelled.adding, cancelled.removing) == ((1, 0), (), ())
    assert (cancelled.leader, cancelled.isr) == (before.leader, before.isr)
    assert listing(ctx) == {}


def test_reassignment_that_drops_the_leader(ctx: BrokerContext) -> None:
    """KIP-455: the leader stays until the controller completes the move."""
    register(ctx, 1, 2)
    create_topic(ctx, "r", 1, assignments=[[0, 1]])
    assert alter_errors(alter(ctx, {("r", 0): [2]})) == {("r", 0): ErrorCode.NONE}
    moving = state(ctx)
    assert (moving.replicas, moving.adding, moving.removing, moving.leader) == ((2, 0, 1), (2,), (0, 1), 0)
    # A new target while one runs starts from the original replicas.
    assert alter_errors(alter(ctx, {("r", 0): [1, 2]})) == {("r", 0): ErrorCode.NONE}
    moving = state(ctx)
    assert (moving.replicas, moving.adding, moving.removing) == ((1, 2, 0), (2,), (0,))
    assert listing(ctx) == {("r", 0): ([1, 2, 0], [2], [0])}


def test_reordering_replicas_completes_at_once(ctx: BrokerContext) -> None:
    register(ctx, 1)
    create_topic(ctx, "r", 1, assignments=[[0, 1]])
    assert alter_errors(alter(ctx, {("r", 0): [1, 0]})) == {("r", 0): ErrorCode.NONE}
    reordered = state(ctx)
    assert (reordered.replicas, reordered.adding, reordered.removing, reordered.leader) == ((1, 0), (), (), 0)
    assert listing(ctx) == {}


def test_reassignment_retries_a_lost_compare_and_set(ctx: BrokerContext) -> None:
    register(ctx, 1)
    create_topic(ctx, "r", 1, assignments=[[0]])
    attempts = race_writes(ctx, times=1)
    assert alter_errors(alter(ctx, {("r", 0): [1]})) == {("r", 0): ErrorCode.NONE}
    assert len(attempts) == 2
    assert (state(ctx).replicas, state(ctx).adding) == ((1, 0), (1,))
    race_writes(ctx, times=2)
    assert alter_errors(alter(ctx, {("r", 0): None})) == {("r", 0): ErrorCode.REQUEST_TIMED_OUT}
    assert state(ctx).adding == (1,)
