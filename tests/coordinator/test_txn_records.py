"""__transaction_state record formats (Kafka's TransactionLogKey / TransactionLogValue)."""

from __future__ import annotations

import struct

import pytest

from strom.coordinator.records import RecordFormatError
from strom.coordinator.txn_records import (
    TransactionLogKey,
    TransactionLogValue,
    TransactionPartitions,
    TransactionState,
    TxnRecord,
    deserialize,
    partitions_field,
    serialize,
    serialize_value,
)

ONGOING = TransactionLogValue(
    42, 3, 60_000, TransactionState.ONGOING, partitions_field({("t", 2), ("t", 0), ("u", 1)}), 1_700_000_000_500, 1_700_000_000_000
)


def test_v0_layout_is_kafkas() -> None:
    key, value = serialize(TxnRecord(TransactionLogKey("tx"), ONGOING))
    assert key == b"\x00\x00" + b"\x00\x02tx"
    expected = (
        struct.pack(">hqhib", 0, 42, 3, 60_000, 1)
        + struct.pack(">i", 2)  # two topics
        + struct.pack(">h", 1) + b"t" + struct.pack(">iii", 2, 0, 2)
        + struct.pack(">h", 1) + b"u" + struct.pack(">ii", 1, 1)
        + struct.pack(">qq", 1_700_000_000_500, 1_700_000_000_000)
    )
    assert value == expected


def test_round_trips_and_empty_state_has_null_partitions() -> None:
    for value in (ONGOING, TransactionLogValue(7, 0, 1000, TransactionState.EMPTY, None, 5, -1)):
        record = TxnRecord(TransactionLogKey("tx"), value)
        assert deserialize(*serialize(record)) == record
    assert ONGOING.partitions() == {("t", 0), ("t", 2), ("u", 1)}
    assert ONGOING.transaction_partitions == (TransactionPartitions("t", (0, 2)), TransactionPartitions("u", (1,)))


def test_flexible_v1_with_tagged_fields_is_read() -> None:
    flexible = serialize_value(ONGOING, 1)
    # Kafka 4's v1 may carry tagged fields (previous/next producer id, client transaction
    # version): inject one before the final empty tag section and check it is skipped.
    tagged = flexible[:-1] + bytes([1, 0, 8]) + struct.pack(">q", 41)
    record = deserialize(serialize(TxnRecord(TransactionLogKey("tx"), None))[0], tagged)
    assert record is not None and record.value == ONGOING


def test_tombstones_unknown_keys_and_bad_values() -> None:
    key = serialize(TxnRecord(TransactionLogKey("gone"), None))[0]
    assert deserialize(key, None) == TxnRecord(TransactionLogKey("gone"), None)
    assert deserialize(b"\x00\x05whatever", b"") is None
    bad = serialize(TxnRecord(TransactionLogKey("x"), ONGOING))[1]
    assert bad is not None
    with pytest.raises(RecordFormatError):
        deserialize(key, bad[:12])
    with pytest.raises(RecordFormatError):
        deserialize(key, bad[:2 + 14] + b"\x09" + bad[2 + 15 :])  # transaction status 9


def test_state_names_are_kafkas() -> None:
    names = [s.display_name for s in TransactionState]
    assert names == ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"]
    assert TransactionState.from_name("CompleteAbort") is TransactionState.COMPLETE_ABORT
    assert TransactionState.from_name("complete_abort") is None
