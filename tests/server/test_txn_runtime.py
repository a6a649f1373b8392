"""The transaction coordinator runtime in an in-process broker: markers reach the partitions
(skipped for deleted ones, retried after a storage error), the timeout check runs on asyncio
timers, and produce verification waits while __transaction_state loads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from handlers.group_harness import call, run, running  # tests/ is on sys.path (rootdir conftest)

from strom.coordinator.txn_records import TRANSACTION_STATE_TOPIC, TransactionState, deserialize
from strom.log.partition import PartitionLog
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.records import decode_records
from strom.server.coordinator_runtime import ShardState

SETTINGS = {
    "transaction_state_log_num_partitions": 1,
    "offsets_topic_num_partitions": 1,
    "transaction_abort_timed_out_transaction_cleanup_interval_ms": 50,
}


async def begin(ctx: Any, partitions: dict[str, list[int]], timeout_ms: int = 10_000) -> tuple[int, int]:
    await call(ctx, ApiKey.FIND_COORDINATOR, 1, {"key": "tx", "key_type": 1})
    started = await call(ctx, ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": "tx", "transaction_timeout": timeout_ms,
                                                         "producer_id": -1, "producer_epoch": -1})
    body = {"v3_and_below_transactional_id": "tx", "v3_and_below_producer_id": started.producer_id,
            "v3_and_below_producer_epoch": started.producer_epoch,
            "v3_and_below_topics": [{"name": t, "partitions": ps} for t, ps in partitions.items()]}
    await call(ctx, ApiKey.ADD_PARTITIONS_TO_TXN, 3, body)
    return started.producer_id, started.producer_epoch


async def end(ctx: Any, pid: int, epoch: int, commit: bool) -> int:
    body = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": commit}
    return (await call(ctx, ApiKey.END_TXN, 3, body)).error_code


def states(ctx: Any) -> list[str]:
    """The transaction states stored in __transaction_state, in order."""
    data = ctx.partition_log(TRANSACTION_STATE_TOPIC, 0).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
        for r in decode_records(data[pos : pos + size]):
            record = deserialize(r.key, r.value)
            out.append(TransactionState(record.value.transaction_status).display_name)
        pos += size
    return out


def markers(log: PartitionLog) -> list[int]:
    return [h.base_offset for _s, _p, h in log.batches(0) if h.is_control]


def test_markers_skip_deleted_partitions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("kept", 1, {})
            await ctx.create_topic("doomed", 1, {})
            pid, epoch = await begin(ctx, {"kept": [0], "doomed": [0]})
            await ctx.metadata.delete_topic("doomed")
            assert await end(ctx, pid, epoch, commit=True) == ErrorCode.NONE
            assert markers(ctx.partition_log("kept", 0)) == [0]
            assert states(ctx)[-2:] == ["PrepareCommit", "CompleteCommit"]

    run(main)


def test_a_failed_marker_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 1, {})
            pid, epoch = await begin(ctx, {"t": [0]})
            real = PartitionLog.append_control
            failures = iter([OSError("disk"), None])

            def flaky(self: PartitionLog, *args: Any, **kwargs: Any) -> Any:
                failure = next(failures, None)
                if failure is not None:
                    raise failure
                return real(self, *args, **kwargs)

            monkeypatch.setattr(PartitionLog, "append_control", flaky)
            assert await end(ctx, pid, epoch, commit=False) == ErrorCode.NONE  # decided, stored
            assert states(ctx)[-1] == "PrepareAbort" and markers(ctx.partition_log("t", 0)) == []
            for _ in range(40):  # retried after markers_retry_backoff_ms (1 s)
                await asyncio.sleep(0.05)
                if states(ctx)[-1] == "CompleteAbort":
                    break
            assert states(ctx)[-1] == "CompleteAbort" and markers(ctx.partition_log("t", 0)) == [0]

    run(main)


def test_the_timeout_check_runs_on_timers(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 1, {})
            pid, epoch = await begin(ctx, {"t": [0]}, timeout_ms=100)
            await asyncio.sleep(0.4)
            assert states(ctx)[-2:] == ["PrepareAbort", "CompleteAbort"]
            assert await end(ctx, pid, epoch, commit=True) == ErrorCode.PRODUCER_FENCED
            assert ctx.partition_log("t", 0).producer_state.producers[pid].epoch == epoch + 1

    run(main)


def test_verification_waits_while_the_coordinator_loads(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await ctx.create_topic("t", 1, {})
            pid, epoch = await begin(ctx, {"t": [0]})
            assert ctx.transactions.verify(pid, epoch, "t", 0) == ErrorCode.NONE
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await asyncio.sleep(0.05)
            assert ctx.transactions.state(0) is ShardState.ACTIVE  # reloaded from the log
            assert ctx.transactions.verify(pid, epoch, "t", 0) == ErrorCode.NONE
            ctx.transactions._shards[0].state = ShardState.LOADING  # as during a load
            assert ctx.transactions.verify(pid, epoch, "t", 0) == ErrorCode.NOT_ENOUGH_REPLICAS
            ctx.transactions._shards[0].state = ShardState.ACTIVE
            assert ctx.transactions.verify(pid, epoch + 1, "t", 0) == ErrorCode.INVALID_PRODUCER_EPOCH

    run(main)
