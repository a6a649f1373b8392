"""The transaction coordinator as a state machine, with a fake clock: every transition,
fencing, timeouts, marker failures, expiry, and that replaying the log gives the same state."""

from __future__ import annotations

from dataclasses import astuple, replace

import pytest

from strom.coordinator.transactions import MAX_EPOCH, TransactionMetadata
from strom.coordinator.txn_records import (
    TransactionLogKey,
    TransactionLogValue,
    TransactionState,
    TxnRecord,
)
from strom.protocol.errors import ErrorCode

from .txn_context import TxnTestContext

T0, T1, U0 = ("t", 0), ("t", 1), ("u", 0)


@pytest.fixture
def ctx() -> TxnTestContext:
    return TxnTestContext()


def started(ctx: TxnTestContext, txn_id: str = "tx", *partitions: tuple[str, int]) -> tuple[int, int]:
    """An initialized producer with an open transaction over ``partitions`` (default t-0)."""
    answer = ctx.init(txn_id)
    pid, epoch = answer["producer_id"], answer["producer_epoch"]
    assert ctx.add(txn_id, pid, epoch, *(partitions or (T0,))) == ErrorCode.NONE
    return pid, epoch


def durable(meta: TransactionMetadata) -> tuple:
    """The fields a restart restores (the last epoch is memory only, as in Kafka)."""
    return astuple(meta)[:8]


# --- InitProducerId ----------------------------------------------------------------------------


def test_a_new_transactional_id_gets_a_producer_id_and_epoch_zero(ctx):
    assert ctx.init("tx", 5_000) == {"error_code": 0, "producer_id": 100, "producer_epoch": 0}
    (record,) = ctx.log
    assert record.key == TransactionLogKey("tx")
    assert record.value == TransactionLogValue(100, 0, 5_000, TransactionState.EMPTY, None, ctx.time, -1)


def test_init_again_bumps_the_epoch_and_keeps_the_producer_id(ctx):
    ctx.init("tx")
    assert ctx.init("tx", 20_000) == {"error_code": 0, "producer_id": 100, "producer_epoch": 1}
    assert ctx.coordinator.transactions["tx"].timeout_ms == 20_000


@pytest.mark.parametrize("timeout", [0, -1, 60_001])
def test_timeouts_outside_the_maximum_are_refused(ctx, timeout):
    assert ctx.init("tx", timeout)["error_code"] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert not ctx.log


def test_empty_transactional_id_and_half_given_producer_are_invalid(ctx):
    assert ctx.init("")["error_code"] == ErrorCode.INVALID_REQUEST
    assert ctx.init("tx", producer_id=5)["error_code"] == ErrorCode.INVALID_REQUEST


def test_kip_360_resume_retry_and_fencing(ctx):
    ctx.init("tx")  # epoch 0
    # The producer resumes with its current epoch: bumped, and the old one remembered.
    assert ctx.init("tx", producer_id=100, producer_epoch=0)["producer_epoch"] == 1
    # Its answer was lost and it retries with the same epoch: the same bump again.
    assert ctx.init("tx", producer_id=100, producer_epoch=0)["producer_epoch"] == 1
    # Another producer id, or an epoch that is neither current nor last: fenced.
    assert ctx.init("tx", producer_id=7, producer_epoch=1)["error_code"] == ErrorCode.PRODUCER_FENCED
    ctx.init("tx")  # a new instance bumps without naming itself: last epoch forgotten
    assert ctx.init("tx", producer_id=100, producer_epoch=0)["error_code"] == ErrorCode.PRODUCER_FENCED


def test_an_exhausted_epoch_gets_a_new_producer_id(ctx):
    ctx.init("tx")
    meta = ctx.coordinator.transactions["tx"]
    ctx.apply(ctx.coordinator._run(ctx.time, lambda: ctx.coordinator._append(meta.record(producer_epoch=MAX_EPOCH - 1))))
    resumed = {"producer_id": 100, "producer_epoch": MAX_EPOCH - 1}
    assert ctx.init("tx", **resumed) == {"error_code": 0, "producer_id": 101, "producer_epoch": 0}
    # A retry whose answer was lost names the old id and its exhausted epoch: the same answer.
    assert ctx.init("tx", **resumed) == {"error_code": 0, "producer_id": 101, "producer_epoch": 0}
    assert ctx.coordinator.verify(100, 0, T0) == ErrorCode.INVALID_PRODUCER_ID_MAPPING


def test_init_during_an_open_transaction_aborts_it_and_asks_to_retry(ctx):
    pid, epoch = started(ctx, "tx", T0, T1)
    assert ctx.init("tx")["error_code"] == ErrorCode.CONCURRENT_TRANSACTIONS
    (marker,) = ctx.markers
    assert (marker.commit, marker.producer_epoch, marker.partitions) == (False, epoch + 1, {T0, T1})
    assert ctx.state("tx") == "CompleteAbort"
    assert ctx.init("tx") == {"error_code": 0, "producer_id": pid, "producer_epoch": epoch + 2}
    # The fenced producer's requests now fail.
    assert ctx.add("tx", pid, epoch, U0) == ErrorCode.PRODUCER_FENCED
    assert ctx.end("tx", pid, epoch, True) == ErrorCode.PRODUCER_FENCED


# --- AddPartitionsToTxn ------------------------------------------------------------------------


def test_adding_partitions_starts_and_grows_the_transaction(ctx):
    ctx.init("tx")
    ctx.time += 50
    assert ctx.add("tx", 100, 0, T0) == ErrorCode.NONE
    meta = ctx.coordinator.transactions["tx"]
    assert (meta.state, meta.partitions, meta.start_ms) == (TransactionState.ONGOING, {T0}, ctx.time)
    records = len(ctx.log)
    assert ctx.add("tx", 100, 0, T0) == ErrorCode.NONE and len(ctx.log) == records  # nothing new
    ctx.time += 50
    assert ctx.add("tx", 100, 0, T1, U0) == ErrorCode.NONE
    meta = ctx.coordinator.transactions["tx"]
    assert meta.partitions == {T0, T1, U0} and meta.start_ms == ctx.time - 50 and meta.last_update_ms == ctx.time


def test_add_partitions_errors(ctx):
    assert ctx.add("unknown", 1, 0, T0) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    ctx.init("tx")
    assert ctx.add("tx", 99, 0, T0) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    assert ctx.add("tx", 100, 1, T0) == ErrorCode.PRODUCER_FENCED
    assert ctx.add("", 100, 0, T0) == ErrorCode.INVALID_REQUEST


# --- EndTxn ------------------------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_end_writes_prepare_markers_complete_and_answers(ctx, commit):
    pid, epoch = started(ctx, "tx", T0, U0)
    assert ctx.end("tx", pid, epoch, commit) == ErrorCode.NONE
    prepare, complete = ctx.log[-2:]
    name = "Commit" if commit else "Abort"
    assert TransactionState(prepare.value.transaction_status).display_name == f"Prepare{name}"
    assert prepare.value.partitions() == {T0, U0}
    assert TransactionState(complete.value.transaction_status).display_name == f"Complete{name}"
    assert complete.value.partitions() == set()
    (marker,) = ctx.markers
    assert (marker.commit, marker.producer_id, marker.producer_epoch, marker.coordinator_epoch) == (commit, pid, epoch, 3)
    # A retry of the same EndTxn succeeds; the opposite one is refused.
    assert ctx.end("tx", pid, epoch, commit) == ErrorCode.NONE
    assert ctx.end("tx", pid, epoch, not commit) == ErrorCode.INVALID_TXN_STATE
    # The next transaction starts with the same epoch (no TV2 bump).
    assert ctx.add("tx", pid, epoch, T1) == ErrorCode.NONE


def test_end_without_a_transaction_is_an_invalid_state(ctx):
    ctx.init("tx")
    assert ctx.end("tx", 100, 0, True) == ErrorCode.INVALID_TXN_STATE
    assert ctx.end("tx", 100, 1, True) == ErrorCode.PRODUCER_FENCED
    assert ctx.end("other", 100, 0, True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING


def test_a_failed_prepare_append_answers_the_error_and_changes_nothing(ctx):
    pid, epoch = started(ctx)
    ctx.fail_appends = ErrorCode.KAFKA_STORAGE_ERROR
    assert ctx.end("tx", pid, epoch, True) == ErrorCode.NOT_COORDINATOR
    assert ctx.state("tx") == "Ongoing" and not ctx.markers
    ctx.fail_appends = 0
    assert ctx.end("tx", pid, epoch, True) == ErrorCode.NONE and ctx.state("tx") == "CompleteCommit"


def test_failed_markers_are_retried_while_requests_wait(ctx):
    pid, epoch = started(ctx, "tx", T0, T1)
    ctx.fail_markers = {T1}
    assert ctx.end("tx", pid, epoch, True) == ErrorCode.NONE  # the outcome is decided and stored
    assert ctx.state("tx") == "PrepareCommit"
    assert ctx.add("tx", pid, epoch, T0) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert ctx.end("tx", pid, epoch, True) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert ctx.init("tx")["error_code"] == ErrorCode.CONCURRENT_TRANSACTIONS
    ctx.sleep(500)  # still failing: retried for T1 only
    assert [m.partitions for m in ctx.markers] == [{T0, T1}, {T1}]
    ctx.fail_markers = set()
    ctx.sleep(500)
    assert ctx.state("tx") == "CompleteCommit" and ctx.markers[-1].partitions == {T1}


def test_a_failed_complete_append_is_retried(ctx):
    pid, epoch = started(ctx)
    result = ctx.coordinator.end_txn("tx", pid, epoch, False, 99, ctx.time)
    ctx.apply(replace(result, markers=()))  # the markers are reported written below
    assert ctx.state("tx") == "PrepareAbort" and len(result.markers) == 1
    ctx.fail_appends = ErrorCode.NOT_ENOUGH_REPLICAS
    ctx.apply(ctx.coordinator.markers_written("tx", pid, epoch, frozenset(), ctx.time))
    assert ctx.state("tx") == "PrepareAbort" and ctx.answers[99] == {"error_code": 0, "producer_id": -1, "producer_epoch": -1}
    ctx.fail_appends = 0
    ctx.sleep(500)
    assert ctx.state("tx") == "CompleteAbort"


# --- timers ------------------------------------------------------------------------------------


def test_a_transaction_past_its_timeout_is_aborted_with_an_epoch_bump(ctx):
    pid, epoch = started(ctx, "tx", T0)
    ctx.init("idle")
    ctx.sleep(9_000)
    assert ctx.state("tx") == "Ongoing"
    ctx.sleep(2_000)  # 10 s timeout, checked every second
    assert ctx.state("tx") == "CompleteAbort" and ctx.state("idle") == "Empty"
    (marker,) = ctx.markers
    assert (marker.commit, marker.producer_epoch, marker.partitions) == (False, epoch + 1, {T0})
    assert ctx.end("tx", pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    assert ctx.init("tx", producer_id=pid, producer_epoch=epoch)["error_code"] == ErrorCode.PRODUCER_FENCED
    assert ctx.init("tx")["producer_epoch"] == epoch + 2


def test_idle_transactional_ids_expire(ctx):
    ctx.init("old")
    pid, epoch = started(ctx, "busy", T0)
    ctx.sleep(50_000)
    ctx.init("young")
    ctx.end("busy", pid, epoch, True)
    ctx.sleep(55_000)  # "old" idle for 105 s > 100 s; the others less
    assert set(ctx.coordinator.transactions) == {"busy", "young"}
    assert ctx.log[-1] == TxnRecord(TransactionLogKey("old"), None)
    assert ctx.coordinator.verify(100, 0, T0) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    assert ctx.init("old")["producer_id"] == 103  # a new id, from scratch


# --- replay and loading ------------------------------------------------------------------------


def test_replaying_the_log_gives_the_same_state(ctx):
    p1, e1 = started(ctx, "a", T0, T1)
    started(ctx, "b", U0)
    ctx.end("a", p1, e1, True)
    ctx.init("c")
    ctx.init("c")
    ctx.sleep(11_000)  # "b" times out
    fresh = ctx.reloaded()
    assert {k: durable(v) for k, v in fresh.transactions.items()} == {k: durable(v) for k, v in ctx.coordinator.transactions.items()}
    assert fresh._by_producer == ctx.coordinator._by_producer


def test_loading_a_prepared_transaction_sends_its_markers_again(ctx):
    pid, epoch = started(ctx, "tx", T0, T1)
    ctx.fail_markers = {T0, T1}
    ctx.end("tx", pid, epoch, False)
    reloaded = TxnTestContext(log=list(ctx.log))
    fresh = reloaded.reloaded()
    reloaded.coordinator = fresh
    reloaded.apply(fresh.loaded(reloaded.time))
    assert reloaded.markers[-1].partitions == {T0, T1} and not reloaded.markers[-1].commit
    assert reloaded.state("tx") == "CompleteAbort"


def test_a_stored_epoch_fence_loads_as_an_abort(ctx):
    value = TransactionLogValue(5, 2, 1000, TransactionState.PREPARE_EPOCH_FENCE, (), 1, 1)
    ctx.coordinator.replay(TxnRecord(TransactionLogKey("f"), value))
    assert ctx.coordinator.transactions["f"].state == TransactionState.PREPARE_ABORT


# --- reads -------------------------------------------------------------------------------------


def test_verify_checks_producer_epoch_state_and_partition(ctx):
    pid, epoch = started(ctx, "tx", T0)
    assert ctx.coordinator.verify(pid, epoch, T0) == ErrorCode.NONE
    assert ctx.coordinator.verify(pid, epoch, T1) == ErrorCode.INVALID_TXN_STATE
    assert ctx.coordinator.verify(pid, epoch + 1, T0) == ErrorCode.PRODUCER_FENCED
    assert ctx.coordinator.verify(pid + 1, epoch, T0) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    ctx.end("tx", pid, epoch, True)
    assert ctx.coordinator.verify(pid, epoch, T0) == ErrorCode.INVALID_TXN_STATE  # a late write


def test_describe_and_list(ctx):
    ctx.init("idle")
    ctx.time += 100
    pid, epoch = started(ctx, "open", T1, T0, U0)
    described = ctx.coordinator.describe("open")
    assert described["transaction_state"] == "Ongoing" and described["producer_id"] == pid
    assert described["transaction_start_time"] == ctx.time and described["transaction_timeout"] == 10_000
    assert described["topics"] == [{"topic": "t", "partitions": [0, 1]}, {"topic": "u", "partitions": [0]}]
    assert ctx.coordinator.describe("nope")["error_code"] == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND

    def listed(states=(), pids=(), duration=-1):
        found = ctx.coordinator.list_transactions(frozenset(states), frozenset(pids), duration, ctx.time + 1_000)
        return sorted(t["transactional_id"] for t in found)

    assert listed() == ["idle", "open"]
    assert listed(states=[TransactionState.ONGOING]) == ["open"]
    assert listed(pids=[100]) == ["idle"]
    assert listed(duration=999) == ["idle", "open"]  # Empty counts from start -1, as in Kafka
    assert listed(states=[TransactionState.ONGOING], duration=1_000) == []
