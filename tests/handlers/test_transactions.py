"""The transaction APIs against an in-process broker, requests and answers through the codec:
InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, produce
verification, read_committed Fetch and ListOffsets, DescribeTransactions, ListTransactions,
DescribeProducers, and the state after a restart."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from strom.coordinator.records import OFFSETS_TOPIC
from strom.handlers.registry import Request, registrations
from strom.protocol.api import ApiKey
from strom.protocol.codec import decode_request, decode_response, encode_request
from strom.protocol.errors import ErrorCode
from strom.protocol.framing import RequestHeader
from strom.protocol.records import build_batch, decode_records, read_header

from .group_harness import call, run, running

SETTINGS = {"transaction_state_log_num_partitions": 2, "offsets_topic_num_partitions": 2}
NOW = int(time.time() * 1000)  # markers carry the broker's clock: far-off timestamps would roll segments


async def init(ctx: Any, txn_id: str, version: int = 4, **extra: Any) -> Any:
    """InitProducerId after FindCoordinator, as clients do (it creates __transaction_state)."""
    await call(ctx, ApiKey.FIND_COORDINATOR, 1, {"key": txn_id, "key_type": 1})
    body = {"transactional_id": txn_id, "transaction_timeout": 10_000, "producer_id": -1, "producer_epoch": -1, **extra}
    return await call(ctx, ApiKey.INIT_PRODUCER_ID, version, body)


async def add(ctx: Any, txn_id: str, pid: int, epoch: int, partitions: dict[str, list[int]], version: int = 3) -> dict[tuple[str, int], int]:
    body = {"v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": pid, "v3_and_below_producer_epoch": epoch,
            "v3_and_below_topics": [{"name": t, "partitions": ps} for t, ps in partitions.items()]}
    response = await call(ctx, ApiKey.ADD_PARTITIONS_TO_TXN, version, body)
    return {(t.name, p.partition_index): p.partition_error_code for t in response.results_by_topic_v3_and_below for p in t.results_by_partition}


async def end(ctx: Any, txn_id: str, pid: int, epoch: int, commit: bool, version: int = 3) -> int:
    body = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "committed": commit}
    return (await call(ctx, ApiKey.END_TXN, version, body)).error_code


async def produce(ctx: Any, topic: str, pid: int, epoch: int, seq: int, *values: bytes, partition: int = 0) -> tuple[int, int]:
    records = build_batch([(b"k", v, [], NOW) for v in values], producer_id=pid, producer_epoch=epoch,
                          base_sequence=seq, is_transactional=True)
    body = {"acks": -1, "timeout": 1000, "transactional_id": "x",
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": records}]}]}
    answer = (await call(ctx, ApiKey.PRODUCE, 9, body)).responses[0].partition_responses[0]
    return answer.error_code, answer.base_offset


async def fetch(ctx: Any, topic: str, isolation: int, offset: int = 0, version: int = 12) -> Any:
    """A Fetch answer decoded from the bytes the server would send (file regions read in)."""
    body = {"replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 1 << 20, "isolation_level": isolation,
            "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
            "topics": [{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": offset, "log_start_offset": -1,
                                                       "partition_max_bytes": 1 << 20, "current_leader_epoch": -1}]}]}
    request = Request(RequestHeader(ApiKey.FETCH, version, 1, "t"), decode_request(ApiKey.FETCH, version, encode_request(ApiKey.FETCH, version, body)))
    raw = await registrations()[ApiKey.FETCH].handler(ctx, request)
    data = b"".join(c if isinstance(c, bytes) else os.pread(c.fd, c.length, c.position) for c in raw.chunks)
    return decode_response(ApiKey.FETCH, version, data).responses[0].partitions[0]


def records_of(partition: Any) -> list[tuple[int, bytes | None, bool]]:
    data, out, pos = bytes(partition.records or b""), [], 0
    while pos + 61 <= len(data):
        header = read_header(data, pos)
        out.extend((r.offset, r.value, header.is_control) for r in decode_records(data[pos : pos + header.size]))
        pos += header.size
    return out


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_find_coordinator_for_a_transactional_id_creates_the_topic(workdir) -> None:
    async def main() -> None:
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            found = await call(ctx, ApiKey.FIND_COORDINATOR, 3, {"key": "tx", "key_type": 1})
            assert found.error_code == ErrorCode.NONE and found.node_id == 0
            topic = ctx.metadata.topic("__transaction_state")
            assert topic.partitions == 2 and topic.configs["cleanup.policy"] == "compact"

    run(main)


def test_commit_and_abort_through_fetch_and_list_offsets(workdir) -> None:
    async def main() -> None:
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 1, {})
            started = await init(ctx, "tx")
            pid, epoch = started.producer_id, started.producer_epoch
            assert (started.error_code, epoch) == (ErrorCode.NONE, 0)
            # Not added yet: the write is refused (verification), so nothing can hang.
            assert (await produce(ctx, "t", pid, epoch, 0, b"early"))[0] == ErrorCode.INVALID_TXN_STATE
            assert await add(ctx, "tx", pid, epoch, {"t": [0]}) == {("t", 0): 0}
            assert await produce(ctx, "t", pid, epoch, 0, b"a1", b"a2") == (ErrorCode.NONE, 0)
            committed = await fetch(ctx, "t", isolation=1)
            assert (committed.high_watermark, committed.last_stable_offset, records_of(committed)) == (2, 0, [])
            assert records_of(await fetch(ctx, "t", isolation=0))[:2] == [(0, b"a1", False), (1, b"a2", False)]
            latest = {"replica_id": -1, "isolation_level": 1, "topics": [{"name": "t", "partitions": [{"partition_index": 0, "timestamp": -1}]}]}
            assert (await call(ctx, ApiKey.LIST_OFFSETS, 5, latest)).topics[0].partitions[0].offset == 0
            assert await end(ctx, "tx", pid, epoch, commit=False) == ErrorCode.NONE  # marker at 2
            assert await add(ctx, "tx", pid, epoch, {"t": [0]}) == {("t", 0): 0}
            assert await produce(ctx, "t", pid, epoch, 2, b"c1") == (ErrorCode.NONE, 3)
            assert await end(ctx, "tx", pid, epoch, commit=True) == ErrorCode.NONE  # marker at 4
            answer = await fetch(ctx, "t", isolation=1)
            assert answer.last_stable_offset == answer.high_watermark == 5
            assert [(a.producer_id, a.first_offset) for a in answer.aborted_transactions] == [(pid, 0)]
            assert [(o, v) for o, v, control in records_of(answer) if not control] == [(0, b"a1"), (1, b"a2"), (3, b"c1")]
            assert (await fetch(ctx, "t", isolation=1, offset=3)).aborted_transactions == ()
            assert (await fetch(ctx, "t", isolation=0)).aborted_transactions is None
            assert (await call(ctx, ApiKey.LIST_OFFSETS, 5, latest)).topics[0].partitions[0].offset == 5
            # A late write of the finished transaction is refused, and a stale epoch fenced.
            assert (await produce(ctx, "t", pid, epoch, 3, b"late"))[0] == ErrorCode.INVALID_TXN_STATE
            assert (await init(ctx, "tx")).producer_epoch == 1
            assert (await produce(ctx, "t", pid, epoch, 3, b"zombie"))[0] == ErrorCode.INVALID_PRODUCER_EPOCH

    run(main)


def test_errors_by_version(workdir) -> None:
    async def main() -> None:
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 2, {})
            first = await init(ctx, "tx")
            await init(ctx, "tx")  # fences epoch 0
            pid = first.producer_id
            assert await add(ctx, "tx", pid, 0, {"t": [0]}, version=1) == {("t", 0): ErrorCode.INVALID_PRODUCER_EPOCH}
            assert await add(ctx, "tx", pid, 0, {"t": [0]}, version=2) == {("t", 0): ErrorCode.PRODUCER_FENCED}
            assert await add(ctx, "tx", pid, 1, {"t": [0, 5], "nope": [0]}) == {
                ("t", 0): ErrorCode.OPERATION_NOT_ATTEMPTED, ("t", 5): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
            assert await end(ctx, "tx", pid, 0, True, version=0) == ErrorCode.INVALID_PRODUCER_EPOCH
            assert await end(ctx, "tx", pid, 1, True, version=4) == ErrorCode.INVALID_TXN_STATE
            kip360 = {"producer_id": 999, "producer_epoch": 3}
            assert (await init(ctx, "tx", version=3, **kip360)).error_code == ErrorCode.INVALID_PRODUCER_EPOCH
            assert (await init(ctx, "tx", version=4, **kip360)).error_code == ErrorCode.PRODUCER_FENCED
            assert (await init(ctx, "tx", version=0, transaction_timeout=900_001)).error_code == ErrorCode.INVALID_TRANSACTION_TIMEOUT

    run(main)


def test_send_offsets_to_transaction_and_require_stable(workdir) -> None:
    async def main() -> None:
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("in", 2, {})
            started = await init(ctx, "tx")
            pid, epoch = started.producer_id, started.producer_epoch
            commit = {"transactional_id": "tx", "group_id": "g", "producer_id": pid, "producer_epoch": epoch,
                      "generation_id": -1, "member_id": "", "group_instance_id": None,
                      "topics": [{"name": "in", "partitions": [{"partition_index": 0, "committed_offset": 7, "committed_leader_epoch": -1,
                                                                "committed_metadata": None}, {"partition_index": 9, "committed_offset": 1,
                                                                                              "committed_leader_epoch": -1, "committed_metadata": None}]}]}
            # Before AddOffsetsToTxn the group's partition is not in the transaction.
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            refused = await call(ctx, ApiKey.TXN_OFFSET_COMMIT, 3, commit)
            assert {p.error_code for p in refused.topics[0].partitions} == {ErrorCode.INVALID_TXN_STATE}
            added = await call(ctx, ApiKey.ADD_OFFSETS_TO_TXN, 3, {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "group_id": "g"})
            assert added.error_code == ErrorCode.NONE
            stored = await call(ctx, ApiKey.TXN_OFFSET_COMMIT, 3, commit)
            assert [(p.partition_index, p.error_code) for p in stored.topics[0].partitions] == [(0, 0), (9, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
            fetch = {"group_id": "g", "topics": [{"name": "in", "partition_indexes": [0]}], "require_stable": True}
            pending = (await call(ctx, ApiKey.OFFSET_FETCH, 7, fetch)).topics[0].partitions[0]
            assert (pending.committed_offset, pending.error_code) == (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)
            unstable_ok = (await call(ctx, ApiKey.OFFSET_FETCH, 7, {**fetch, "require_stable": False})).topics[0].partitions[0]
            assert (unstable_ok.committed_offset, unstable_ok.error_code) == (-1, ErrorCode.NONE)
            described = (await call(ctx, ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx", "nope", ""]})).transaction_states
            assert [d.error_code for d in described] == [0, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, ErrorCode.INVALID_REQUEST]
            assert described[0].transaction_state == "Ongoing" and described[0].topics[0].topic == OFFSETS_TOPIC
            assert await end(ctx, "tx", pid, epoch, commit=True) == ErrorCode.NONE
            done = (await call(ctx, ApiKey.OFFSET_FETCH, 7, fetch)).topics[0].partitions[0]
            assert (done.committed_offset, done.error_code) == (7, ErrorCode.NONE)
            # A stale epoch cannot commit offsets any more.
            await init(ctx, "tx")
            fenced = await call(ctx, ApiKey.TXN_OFFSET_COMMIT, 0, {**commit, "topics": commit["topics"][:1]})
            assert {p.error_code for p in fenced.topics[0].partitions} == {ErrorCode.INVALID_PRODUCER_EPOCH}

    run(main)


def test_list_transactions_and_describe_producers(workdir) -> None:
    async def main() -> None:
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 1, {})
            ongoing = await init(ctx, "a")
            await init(ctx, "b")
            await add(ctx, "a", ongoing.producer_id, 0, {"t": [0]})
            await produce(ctx, "t", ongoing.producer_id, 0, 0, b"x", b"y")

            async def listed(version: int = 1, **filters: Any) -> tuple[list[str], list[str]]:
                body = {"state_filters": [], "producer_id_filters": [], "duration_filter": -1, **filters}
                response = await call(ctx, ApiKey.LIST_TRANSACTIONS, version, body)
                return sorted(t.transactional_id for t in response.transaction_states), list(response.unknown_state_filters)

            assert await listed(version=0) == (["a", "b"], [])
            assert await listed(state_filters=["Ongoing", "Bogus"]) == (["a"], ["Bogus"])
            assert await listed(state_filters=["Bogus"]) == ([], ["Bogus"])
            assert await listed(producer_id_filters=[ongoing.producer_id]) == (["a"], [])
            assert await listed(state_filters=["Ongoing"], duration_filter=3_600_000) == ([], [])

            body = {"topics": [{"name": "t", "partition_indexes": [0, 3]}, {"name": "nope", "partition_indexes": [0]}]}
            response = await call(ctx, ApiKey.DESCRIBE_PRODUCERS, 0, body)
            known, missing = response.topics[0].partitions
            (state,) = known.active_producers
            assert (state.producer_id, state.producer_epoch, state.last_sequence, state.current_txn_start_offset) == (ongoing.producer_id, 0, 1, 0)
            assert missing.error_code == response.topics[1].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    run(main)


def test_a_restart_keeps_open_transactions_and_pending_offsets(workdir) -> None:
    async def main() -> None:
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 1, {})
            started = await init(ctx, "tx")
            pid = started.producer_id
            await add(ctx, "tx", pid, 0, {"t": [0]})
            await call(ctx, ApiKey.ADD_OFFSETS_TO_TXN, 0, {"transactional_id": "tx", "producer_id": pid, "producer_epoch": 0, "group_id": "g"})
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})  # as clients do before TxnOffsetCommit
            await produce(ctx, "t", pid, 0, 0, b"v")
            await call(ctx, ApiKey.TXN_OFFSET_COMMIT, 0, {"transactional_id": "tx", "group_id": "g", "producer_id": pid, "producer_epoch": 0,
                                                          "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}]}]})
        async with running(workdir, **SETTINGS) as broker:
            ctx = broker.ctx
            for _ in range(100):  # the coordinators load in the background
                described = (await call(ctx, ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx"]})).transaction_states[0]
                if described.error_code != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    break
                await asyncio.sleep(0.01)
            assert (described.error_code, described.transaction_state, described.producer_id) == (0, "Ongoing", pid)
            assert ctx.partition_log("t", 0).last_stable_offset == 0
            fetch = {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0]}], "require_stable": True}
            for _ in range(100):
                pending = (await call(ctx, ApiKey.OFFSET_FETCH, 7, fetch))
                if pending.error_code != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    break
                await asyncio.sleep(0.01)
            assert pending.error_code == 0 and pending.topics[0].partitions[0].error_code == ErrorCode.UNSTABLE_OFFSET_COMMIT, pending
            assert await end(ctx, "tx", pid, 0, commit=True) == ErrorCode.NONE
            assert ctx.partition_log("t", 0).last_stable_offset == 2
            assert (await call(ctx, ApiKey.OFFSET_FETCH, 7, fetch)).topics[0].partitions[0].committed_offset == 1

    run(main)
