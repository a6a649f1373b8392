"""The share coordinator's RPCs (handlers.share_state) against an in-process broker, through
the codec at each version: Initialize/Read/Write/Delete/ReadShareGroupStateSummary, Kafka's
fencing, INVALID_REQUEST, NOT_COORDINATOR, and CLUSTER_ACTION authorization."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from strom.handlers.context import BrokerContext
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import AclBinding, Operation, PatternType, Permission, ResourceType
from strom.share.records import SHARE_STATE_TOPIC

from .group_harness import call, run, running

SETTINGS: dict[str, Any] = {"share_coordinator_state_topic_num_partitions": 3}
ADMIN, ALICE = "User:admin", "User:alice"
SECURED = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": ADMIN}
T1 = uuid.UUID("0a0b0c0d-0e0f-4011-8213-141516171819")
T2 = uuid.UUID("1a0b0c0d-0e0f-4011-8213-141516171819")

E = ErrorCode
READ, WRITE, DELETE = ApiKey.READ_SHARE_GROUP_STATE, ApiKey.WRITE_SHARE_GROUP_STATE, ApiKey.DELETE_SHARE_GROUP_STATE
INIT, SUMMARY = ApiKey.INITIALIZE_SHARE_GROUP_STATE, ApiKey.READ_SHARE_GROUP_STATE_SUMMARY


def batch(first: int, last: int, state: int = 0, count: int = 1) -> dict[str, int]:
    return {"first_offset": first, "last_offset": last, "delivery_state": state, "delivery_count": count}


def write_body(group: str = "g", topic: uuid.UUID | None = T1, partition: int = 0, *, state_epoch: int = 0, leader_epoch: int = 0,
               start_offset: int = 0, batches: tuple[dict[str, int], ...] = (), dcc: int = -1) -> dict[str, Any]:
    data = {"partition": partition, "state_epoch": state_epoch, "leader_epoch": leader_epoch, "start_offset": start_offset,
            "delivery_complete_count": dcc, "state_batches": list(batches)}
    return {"group_id": group, "topics": [{"topic_id": topic, "partitions": [data]}]}


def read_body(group: str = "g", topic: uuid.UUID | None = T1, *partitions: int, leader_epoch: int = -1) -> dict[str, Any]:
    parts = [{"partition": p, "leader_epoch": leader_epoch} for p in partitions or (0,)]
    return {"group_id": group, "topics": [{"topic_id": topic, "partitions": parts}]}


def delete_body(group: str = "g", topic: uuid.UUID | None = T1, partition: int = 0) -> dict[str, Any]:
    return {"group_id": group, "topics": [{"topic_id": topic, "partitions": [{"partition": partition}]}]}


def init_body(group: str = "g", topic: uuid.UUID | None = T1, partition: int = 0, state_epoch: int = 0, start_offset: int = 0) -> dict[str, Any]:
    data = {"partition": partition, "state_epoch": state_epoch, "start_offset": start_offset}
    return {"group_id": group, "topics": [{"topic_id": topic, "partitions": [data]}]}


def only(response: Any) -> Any:
    (topic,) = response.results
    (partition,) = topic.partitions
    return partition


def batches_of(result: Any) -> list[tuple[int, int, int, int]]:
    return [(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count) for b in result.state_batches]


async def topic_created(ctx: BrokerContext) -> None:
    await ctx.share_state.ensure_topic()  # type: ignore[union-attr]  # what the persister does first


def test_write_read_summary_delete(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await topic_created(ctx)
            written = await call(ctx, WRITE, 1, write_body(state_epoch=1, leader_epoch=2, start_offset=10, dcc=5,
                                                           batches=(batch(10, 14, 2), batch(15, 19, 0, 2))))
            assert only(written).error_code == E.NONE and only(written).error_message is None
            assert only(written).partition == 0 and written.results[0].topic_id == T1
            read = only(await call(ctx, READ, 0, read_body()))
            assert (read.error_code, read.state_epoch, read.start_offset) == (E.NONE, 1, 10)
            assert batches_of(read) == [(10, 14, 2, 1), (15, 19, 0, 2)]
            summary = only(await call(ctx, SUMMARY, 1, read_body()))
            assert (summary.state_epoch, summary.leader_epoch, summary.start_offset, summary.delivery_complete_count) == (1, 2, 10, 5)
            summary_v0 = only(await call(ctx, SUMMARY, 0, read_body()))
            assert (summary_v0.error_code, summary_v0.state_epoch, summary_v0.start_offset) == (E.NONE, 1, 10)
            # v0 carries no delivery complete count: the new state has none (-1).
            assert only(await call(ctx, WRITE, 0, write_body(state_epoch=1, leader_epoch=2, start_offset=12))).error_code == E.NONE
            summary = only(await call(ctx, SUMMARY, 1, read_body()))
            assert (summary.start_offset, summary.delivery_complete_count) == (12, -1)
            assert batches_of(only(await call(ctx, READ, 0, read_body()))) == []  # the request's batches are the state
            assert only(await call(ctx, DELETE, 0, delete_body())).error_code == E.NONE
            gone = only(await call(ctx, READ, 0, read_body()))
            assert (gone.error_code, gone.error_message, gone.state_epoch, gone.start_offset) == (
                E.INVALID_REQUEST, "uninitialized share partition", 0, -1)
            summary = only(await call(ctx, SUMMARY, 1, read_body()))
            assert (summary.error_code, summary.state_epoch, summary.leader_epoch, summary.start_offset) == (E.NONE, 0, -1, -1)
            assert only(await call(ctx, DELETE, 0, delete_body())).error_code == E.NONE  # nothing to delete

    run(main)


def test_fencing_and_leader_epochs(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await topic_created(ctx)
            assert only(await call(ctx, WRITE, 1, write_body(state_epoch=2, leader_epoch=5))).error_code == E.NONE
            fenced = only(await call(ctx, WRITE, 1, write_body(state_epoch=2, leader_epoch=4)))
            assert fenced.error_code == E.FENCED_LEADER_EPOCH and fenced.error_message
            assert only(await call(ctx, WRITE, 1, write_body(state_epoch=1, leader_epoch=5))).error_code == E.FENCED_STATE_EPOCH
            # -1: not checked, kept.
            assert only(await call(ctx, WRITE, 1, write_body(state_epoch=-1, leader_epoch=-1, start_offset=3))).error_code == E.NONE
            assert only(await call(ctx, READ, 0, read_body(leader_epoch=4))).error_code == E.FENCED_LEADER_EPOCH
            # A newer leader reading records its epoch: the old leader is fenced from then on.
            read = only(await call(ctx, READ, 0, read_body(leader_epoch=6)))
            assert (read.error_code, read.state_epoch, read.start_offset) == (E.NONE, 2, 3)
            assert only(await call(ctx, SUMMARY, 1, read_body())).leader_epoch == 6
            assert only(await call(ctx, WRITE, 1, write_body(state_epoch=2, leader_epoch=5))).error_code == E.FENCED_LEADER_EPOCH

    run(main)


def test_initialize(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await topic_created(ctx)
            assert only(await call(ctx, INIT, 0, init_body(state_epoch=1, start_offset=40))).error_code == E.NONE
            read = only(await call(ctx, READ, 0, read_body()))
            assert (read.error_code, read.state_epoch, read.start_offset, batches_of(read)) == (E.NONE, 1, 40, [])
            assert only(await call(ctx, INIT, 0, init_body(state_epoch=0))).error_code == E.FENCED_STATE_EPOCH

    run(main)


def test_several_partitions_and_topics_in_one_request(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await topic_created(ctx)
            for topic in (T1, T2):
                for p in range(4):
                    assert only(await call(ctx, WRITE, 1, write_body("g", topic, p, start_offset=p * 10))).error_code == E.NONE
            body = {"group_id": "g", "topics": [
                {"topic_id": t, "partitions": [{"partition": p, "leader_epoch": -1} for p in (0, 1, 2, 3, 9)]} for t in (T1, T2)
            ]}
            response = await call(ctx, READ, 0, body)
            assert [r.topic_id for r in response.results] == [T1, T2]
            for result in response.results:
                assert [(p.partition, p.error_code, p.start_offset) for p in result.partitions] == [
                    (0, E.NONE, 0), (1, E.NONE, 10), (2, E.NONE, 20), (3, E.NONE, 30), (9, E.INVALID_REQUEST, -1)]

    run(main)


def test_invalid_requests(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await topic_created(ctx)
            for body in (write_body(group=""), write_body(partition=-1), write_body(topic=None)):
                result = only(await call(ctx, WRITE, 1, body))
                assert result.error_code == E.INVALID_REQUEST and result.error_message
            assert only(await call(ctx, READ, 0, read_body(""))).error_code == E.INVALID_REQUEST
            assert only(await call(ctx, DELETE, 0, delete_body(topic=None))).error_code == E.INVALID_REQUEST
            assert only(await call(ctx, INIT, 0, init_body(partition=-2))).error_code == E.INVALID_REQUEST
            assert only(await call(ctx, SUMMARY, 1, read_body("", T1))).error_code == E.INVALID_REQUEST

    run(main)


def test_not_coordinator(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            # No __share_group_state: the handlers never create it (the persister does).
            for key, version, body in ((WRITE, 1, write_body()), (READ, 0, read_body()), (DELETE, 0, delete_body()),
                                       (INIT, 0, init_body()), (SUMMARY, 1, read_body())):
                assert only(await call(ctx, key, version, body)).error_code == E.NOT_COORDINATOR
            assert ctx.metadata.topic(SHARE_STATE_TOPIC) is None
            # The key's partition led elsewhere (here: this broker's replica manager says so).
            await topic_created(ctx)
            replicas: Any = ctx.replicas
            leader_log = replicas.leader_log
            replicas.leader_log = lambda topic, p: (None, E.NOT_LEADER_OR_FOLLOWER) if topic == SHARE_STATE_TOPIC else leader_log(topic, p)
            try:
                assert only(await call(ctx, WRITE, 1, write_body())).error_code == E.NOT_COORDINATOR
                assert only(await call(ctx, READ, 0, read_body())).error_code == E.NOT_COORDINATOR
            finally:
                replicas.leader_log = leader_log
            assert only(await call(ctx, WRITE, 1, write_body())).error_code == E.NONE
            # A broker without a share coordinator.
            ctx.share_state = None
            try:
                assert only(await call(ctx, READ, 0, read_body())).error_code == E.NOT_COORDINATOR
            finally:
                ctx.share_state = broker._share_state

    run(main)


def test_only_cluster_action_may_send_them(tmp_path: Path) -> None:
    cases = ((WRITE, 0, write_body()), (WRITE, 1, write_body()), (READ, 0, read_body()), (DELETE, 0, delete_body()),
             (INIT, 0, init_body()), (SUMMARY, 0, read_body()), (SUMMARY, 1, read_body()))

    async def main() -> None:
        async with running(tmp_path, **SETTINGS, values=SECURED) as broker:
            ctx = broker.ctx
            await topic_created(ctx)
            for key, version, body in cases:
                refused = only(await call(ctx, key, version, body, principal=ALICE))
                assert refused.error_code == E.CLUSTER_AUTHORIZATION_FAILED, (key, version)
                assert only(await call(ctx, key, version, body, principal=ADMIN)).error_code != E.CLUSTER_AUTHORIZATION_FAILED
            # Nothing was written for alice: her write was refused.
            await call(ctx, DELETE, 0, delete_body(), principal=ADMIN)
            assert only(await call(ctx, WRITE, 1, write_body(), principal=ALICE)).error_code == E.CLUSTER_AUTHORIZATION_FAILED
            assert only(await call(ctx, READ, 0, read_body(), principal=ADMIN)).error_code == E.INVALID_REQUEST
            # Other ACLs on the cluster do not do.
            await grant(ctx, Operation.ALTER)
            assert only(await call(ctx, WRITE, 1, write_body(), principal=ALICE)).error_code == E.CLUSTER_AUTHORIZATION_FAILED
            await grant(ctx, Operation.CLUSTER_ACTION)
            for key, version, body in cases:
                assert only(await call(ctx, key, version, body, principal=ALICE)).error_code != E.CLUSTER_AUTHORIZATION_FAILED

    run(main)


async def grant(ctx: BrokerContext, operation: Operation) -> None:
    await ctx.metadata.alter_acls(
        [AclBinding(ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL, ALICE, "*", operation, Permission.ALLOW)], [])
