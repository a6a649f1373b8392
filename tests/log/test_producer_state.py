"""Idempotent producer state: sequence and epoch rules, retries, snapshots, recovery."""

from __future__ import annotations

import pytest

from strom.log.config import LogConfig
from strom.log.partition import PartitionLog
from strom.log.producer_state import (
    INT32_MAX,
    InvalidProducerEpoch,
    OutOfOrderSequence,
    ProducerStateManager,
)
from strom.protocol.records import build_batch, read_header, validate_batches

from .helpers import NOW, values
from .test_recovery import crash


def idempotent(pid: int, epoch: int, seq: int, count: int = 1, timestamp: int = NOW, transactional: bool = False) -> bytes:
    records = [(b"k", f"{pid}-{epoch}-{seq + i}".encode(), [], timestamp) for i in range(count)]
    return build_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                       is_transactional=transactional)


def send(log: PartitionLog, data: bytes, now_ms: int = NOW):
    return log.append(data, validate_batches(data, 1 << 20), now_ms)


def test_sequences_must_follow_each_other(open_log):
    log = open_log()
    assert send(log, idempotent(1, 0, 0, 3)).base_offset == 0
    assert send(log, idempotent(1, 0, 3, 2)).base_offset == 3
    with pytest.raises(OutOfOrderSequence):
        send(log, idempotent(1, 0, 7))  # a gap
    assert send(log, idempotent(2, 0, 0)).base_offset == 5  # producers are independent
    assert log.log_end_offset == 6


def test_a_retried_batch_gets_its_original_offsets_and_is_not_written_again(open_log):
    log = open_log()
    first = send(log, idempotent(1, 0, 0, 2))
    send(log, idempotent(1, 0, 2, 2))
    end = log.log_end_offset
    again = send(log, idempotent(1, 0, 0, 2))
    assert (again.base_offset, again.last_offset) == (first.base_offset, first.last_offset)
    assert log.log_end_offset == end
    assert len(values(log)) == 4


def test_only_the_last_five_batches_are_remembered(open_log):
    log = open_log()
    for seq in range(6):
        send(log, idempotent(1, 0, seq))
    with pytest.raises(OutOfOrderSequence):
        send(log, idempotent(1, 0, 0))  # too old to be recognised as a retry
    assert send(log, idempotent(1, 0, 1)).base_offset == 1  # still within the last five


def test_epochs(open_log):
    log = open_log()
    send(log, idempotent(1, 3, 0, 2))
    with pytest.raises(InvalidProducerEpoch):
        send(log, idempotent(1, 2, 2))
    with pytest.raises(OutOfOrderSequence):
        send(log, idempotent(1, 4, 5))  # a new epoch starts at sequence 0
    assert send(log, idempotent(1, 4, 0)).base_offset == 2


def test_unknown_producer_may_start_anywhere_and_sequences_wrap(open_log):
    log = open_log()
    send(log, idempotent(9, 0, INT32_MAX - 1, 2))
    assert send(log, idempotent(9, 0, 0)).base_offset == 2  # after 2**31 - 1 comes 0


def test_state_survives_clean_restart_through_a_snapshot(open_log, tmp_path):
    log = open_log()
    send(log, idempotent(1, 0, 0, 2))
    log.close()
    assert list((tmp_path / "t-0").glob("*.snapshot"))
    again = open_log()
    assert again.producer_state.producers[1].last_seq == 1
    assert send(again, idempotent(1, 0, 0, 2)).base_offset == 0  # the retry is still recognised
    with pytest.raises(OutOfOrderSequence):
        send(again, idempotent(1, 0, 5))


def test_every_remembered_batch_survives_a_clean_restart(open_log):
    # A producer may have five batches in flight when the broker stops; each retry afterwards
    # must be answered as a duplicate. An out-of-order answer to an older one would make
    # librdkafka bump its epoch (or fail) and send those records again.
    log = open_log()
    offsets = [send(log, idempotent(1, 0, seq, 2)).base_offset for seq in range(0, 12, 2)]
    log.close()
    again = open_log()
    end = again.log_end_offset
    for seq, offset in zip(range(2, 12, 2), offsets[1:], strict=True):
        assert send(again, idempotent(1, 0, seq, 2)).base_offset == offset
    assert again.log_end_offset == end
    with pytest.raises(OutOfOrderSequence):
        send(again, idempotent(1, 0, 0, 2))  # the sixth-newest was not remembered before either


def test_a_version_1_snapshot_still_loads(tmp_path):
    import struct

    from crc32c import crc32c

    # Kafka's ProducerSnapshot v1 entry: the last batch only (the format strom wrote before).
    body = struct.pack(">qhiqiqiq", 7, 2, 9, 40, 4, NOW, 3, -1)
    count = struct.pack(">i", 1)
    (tmp_path / f"{41:020d}.snapshot").write_bytes(struct.pack(">hI", 1, crc32c(count + body)) + count + body)
    state = ProducerStateManager(tmp_path)
    assert state.load_snapshot(41) == 41
    entry = state.producers[7]
    assert (entry.epoch, entry.coordinator_epoch, entry.last_timestamp) == (2, 3, NOW)
    assert [(b.first_seq, b.last_seq, b.first_offset, b.last_offset) for b in entry.batches] == [(5, 9, 36, 40)]


def test_state_is_rebuilt_from_the_log_after_a_crash(open_log, tmp_path):
    log = open_log(LogConfig(segment_bytes=1024))
    for seq in range(0, 60, 3):
        send(log, idempotent(1, 0, seq, 3))
    crash(log)
    again = PartitionLog(tmp_path / "t-0", "t", 0, LogConfig(segment_bytes=1024), now_ms=NOW, clean_shutdown=False)
    assert again.producer_state.producers[1].last_seq == 59
    assert send(again, idempotent(1, 0, 57, 3)).base_offset == 57
    assert send(again, idempotent(1, 0, 60)).base_offset == 60


def test_deleted_records_forget_their_producers(open_log):
    log = open_log()
    send(log, idempotent(1, 0, 0))
    send(log, idempotent(2, 0, 0))
    log.delete_records_before(1)
    assert set(log.producer_state.producers) == {2}
    assert send(log, idempotent(1, 0, 42)).base_offset == 2  # unknown again: any sequence


def test_expiry_keeps_producers_inside_a_transaction(tmp_path):
    state = ProducerStateManager(tmp_path)
    for pid, transactional in ((1, False), (2, True)):
        header = read_header(idempotent(pid, 0, 0, transactional=transactional))._replace(base_offset=pid)
        state.update(header)
    assert state.expire(NOW + 10_000, 5_000) == 1
    assert set(state.producers) == {2}


def test_damaged_snapshot_is_ignored(tmp_path):
    state = ProducerStateManager(tmp_path)
    state.update(read_header(idempotent(1, 0, 0)))
    state.take_snapshot(1)
    path = next(tmp_path.glob("*.snapshot"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = ProducerStateManager(tmp_path)
    assert fresh.load_snapshot(10) == 0 and not fresh.producers
    assert not path.exists()


def test_errors_carry_named_error_codes():
    from strom.log.producer_state import CoordinatorFenced, InvalidTxnState, ProducerStateError
    from strom.protocol.errors import ErrorCode

    named = {
        ProducerStateError: ErrorCode.UNKNOWN_SERVER_ERROR,
        InvalidProducerEpoch: ErrorCode.INVALID_PRODUCER_EPOCH,
        CoordinatorFenced: ErrorCode.TRANSACTION_COORDINATOR_FENCED,
        OutOfOrderSequence: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        InvalidTxnState: ErrorCode.INVALID_TXN_STATE,
    }
    for error, code in named.items():
        assert error.error_code is code, error  # the member itself, so logs show its name
