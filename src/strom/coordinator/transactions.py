"""The transaction coordinator of one ``__transaction_state`` partition, as a pure state machine
(KIP-98; Kafka's TransactionCoordinator, TransactionMetadata and TransactionStateManager).

Every operation takes ``now_ms`` and returns a ``Result`` (shard.py): TxnRecords to append to
the partition (the transactional id's whole new state; only ``replay`` changes the durable
state), markers to write to the partitions of a transaction, parked answers and timers.

A transaction's life::

    Empty/CompleteCommit/CompleteAbort --AddPartitionsToTxn / AddOffsetsToTxn--> Ongoing
    Ongoing --EndTxn(commit)--> PrepareCommit --markers written--> CompleteCommit
    Ongoing --EndTxn(abort), timeout, fencing--> PrepareAbort --markers written--> CompleteAbort

EndTxn stores PrepareCommit/PrepareAbort, asks for the markers, and when the runtime reports
them written (``markers_written``) stores CompleteCommit/CompleteAbort and answers. On one node
the runtime writes the markers synchronously, so the answer follows the whole transition
(Kafka answers after the Prepare record and completes in the background; clients accept
both). Markers that could not be written are retried on a timer; meanwhile the transaction
stays Prepare* and requests for it get CONCURRENT_TRANSACTIONS, as in Kafka.

Epochs and fencing: InitProducerId for a known id bumps the epoch (KIP-360 rules for v3+
callers that name their current producer id and epoch); when a transaction is Ongoing it is
aborted first with a bumped epoch and the caller gets CONCURRENT_TRANSACTIONS and retries,
which bumps again. An epoch that reaches 32766 gets a new producer id. Requests with an older
epoch get PRODUCER_FENCED (handlers map it to INVALID_PRODUCER_EPOCH for old versions).

Timers (keys): ("abort-timed-out",) every transaction.abort.timed.out.transaction.cleanup
.interval.ms aborts Ongoing transactions older than their timeout, with an epoch bump that
fences the producer; ("expire-transactional-ids",) every transaction.remove.expired
.transaction.cleanup.interval.ms writes tombstones for ids idle in Empty/Complete* longer than
transactional.id.expiration.ms; ("markers", id) retries failed markers; ("complete", id)
retries a Complete record whose append failed.

Not done: transaction version 2 (KIP-890 part 2: an epoch bump on every EndTxn), two-phase
writes across coordinators (there is one node).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

from strom.coordinator.shard import (
    TXN_APPEND_ERRORS,
    CoordinatorShard,
    Result,
    TxnMarker,
    write_error,
)
from strom.coordinator.txn_records import (
    TransactionLogKey,
    TransactionLogValue,
    TransactionState,
    TxnRecord,
    partitions_field,
)
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

NO_PRODUCER_ID: Final = -1
NO_EPOCH: Final = -1
MAX_EPOCH: Final = 32767
ABORT_KEY: Final = ("abort-timed-out",)
EXPIRE_KEY: Final = ("expire-transactional-ids",)

EMPTY, ONGOING = TransactionState.EMPTY, TransactionState.ONGOING
PREPARE_COMMIT, PREPARE_ABORT = TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT
COMPLETE_COMMIT, COMPLETE_ABORT = TransactionState.COMPLETE_COMMIT, TransactionState.COMPLETE_ABORT
_IDLE = (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT)
_PREPARE = (PREPARE_COMMIT, PREPARE_ABORT)

TopicPartition = tuple[str, int]


def epoch_exhausted(epoch: int) -> bool:
    """Kafka never hands out the last epoch, so that a producer can always be fenced."""
    return epoch >= MAX_EPOCH - 1


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """Kafka's transaction.* and transactional.id.* broker settings."""

    max_timeout_ms: int = 900000
    transactional_id_expiration_ms: int = 604800000
    abort_timed_out_interval_ms: int = 10000
    remove_expired_interval_ms: int = 3600000
    markers_retry_backoff_ms: int = 1000


@dataclass(slots=True)
class TransactionMetadata:
    """A transactional id's state: the fields of its last record, plus what Kafka keeps in
    memory only (the producer id and epoch before the last bump, for InitProducerId retries)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TransactionState
    partitions: frozenset[TopicPartition]
    last_update_ms: int
    start_ms: int
    last_producer_id: int = NO_PRODUCER_ID
    last_producer_epoch: int = NO_EPOCH

    def record(self, **changes: Any) -> TxnRecord:
        """This state with ``changes``, as the record that stores it."""
        new = replace(self, **changes)
        stored_partitions = None if new.state == EMPTY else partitions_field(new.partitions)
        value = TransactionLogValue(
            new.producer_id, new.producer_epoch, new.timeout_ms, int(new.state), stored_partitions,
            new.last_update_ms, new.start_ms,
        )
        return TxnRecord(TransactionLogKey(self.transactional_id), value)


@dataclass(slots=True)
class _Waiting:
    """A request answered once the transaction's markers are written."""

    ticket: int
    answer: int  # NONE for EndTxn, CONCURRENT_TRANSACTIONS for a fencing InitProducerId


def init_response(error: int, producer_id: int = NO_PRODUCER_ID, producer_epoch: int = NO_EPOCH) -> dict[str, Any]:
    return {"error_code": error, "producer_id": producer_id, "producer_epoch": producer_epoch}


class TransactionCoordinator(CoordinatorShard):
    """One shard: the transactional ids that hash to one __transaction_state partition.

    ``transactions``: by id, changed by ``replay`` only (records appended by the operations,
    or read back while loading). ``_by_producer``: producer id -> transactional id, kept with
    it. ``_waiting`` (parked EndTxn / InitProducerId answers) and ``_unmarked`` (partitions whose
    markers failed) are soft state of transactions in Prepare*.
    """

    def __init__(
        self,
        config: TransactionConfig,
        *,
        coordinator_epoch: int = 0,
        new_producer_id: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.coordinator_epoch = coordinator_epoch
        self.transactions: dict[str, TransactionMetadata] = {}
        self._by_producer: dict[int, str] = {}
        self._waiting: dict[str, _Waiting] = {}
        self._unmarked: dict[str, frozenset[TopicPartition]] = {}
        self._new_producer_id = new_producer_id or _counter()

    # --- loading -------------------------------------------------------------------------------

    def replay(self, record: TxnRecord) -> None:
        """Apply a record that is in the log (appended by us, or read back while loading)."""
        txn_id = record.key.transactional_id
        old = self.transactions.get(txn_id)
        value = record.value
        if value is None:
            if old is not None:
                del self.transactions[txn_id]
                self._by_producer.pop(old.producer_id, None)
            return
        status = TransactionState(value.transaction_status)
        if status == TransactionState.PREPARE_EPOCH_FENCE:
            status = PREPARE_ABORT  # Kafka's in-memory fence; it always ends in an abort
        meta = TransactionMetadata(
            txn_id, value.producer_id, value.producer_epoch, value.transaction_timeout_ms, status,
            value.partitions(), value.transaction_last_update_timestamp_ms, value.transaction_start_timestamp_ms,
        )
        if old is not None:
            if (old.producer_id, old.producer_epoch) == (meta.producer_id, meta.producer_epoch):
                meta.last_producer_id, meta.last_producer_epoch = old.last_producer_id, old.last_producer_epoch
            else:
                meta.last_producer_id = old.producer_id
            if old.producer_id != meta.producer_id:
                self._by_producer.pop(old.producer_id, None)
        self.transactions[txn_id] = meta
        self._by_producer[meta.producer_id] = txn_id

    def loaded(self, now_ms: int) -> Result:
        """The partition is loaded: transactions that were Prepare* get their markers again
        (Kafka resends them too; a repeated marker changes nothing), and the timers start."""

        def run() -> None:
            self.loading = False
            for meta in self.transactions.values():
                if meta.state in _PREPARE:
                    self._send_markers(meta, meta.partitions)
            self._schedule(ABORT_KEY, self.config.abort_timed_out_interval_ms, self._abort_timed_out)
            self._schedule(EXPIRE_KEY, self.config.remove_expired_interval_ms, self._expire_transactional_ids)

        return self._run(now_ms, run)

    def unloaded(self, now_ms: int) -> Result:
        """The partition is no longer ours: answer everyone parked, forget every timer."""

        def run() -> None:
            for waiting in self._waiting.values():
                self._answer(waiting.ticket, {"error_code": ErrorCode.NOT_COORDINATOR})
            self._waiting.clear()
            self._unmarked.clear()
            for key in list(self._timers):
                self._cancel(key)
            self.transactions.clear()
            self._by_producer.clear()

        return self._run(now_ms, run)

    # --- InitProducerId ------------------------------------------------------------------------

    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, producer_id: int, producer_epoch: int, ticket: int, now_ms: int
    ) -> Result:
        """A transactional producer starts (or restarts, KIP-360: ``producer_id`` and
        ``producer_epoch`` are its current ones, or -1)."""
        return self._run(now_ms, lambda: self._init(transactional_id, timeout_ms, producer_id, producer_epoch, ticket))

    def _init(self, txn_id: str, timeout_ms: int, producer_id: int, producer_epoch: int, ticket: int) -> dict[str, Any] | None:
        if not txn_id:
            return init_response(ErrorCode.INVALID_REQUEST)
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return init_response(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
        if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_EPOCH):
            return init_response(ErrorCode.INVALID_REQUEST)
        expected = None if producer_id == NO_PRODUCER_ID else (producer_id, producer_epoch)
        meta = self.transactions.get(txn_id)
        if meta is None:
            new_id = self._new_producer_id()
            fresh = TransactionMetadata(txn_id, new_id, 0, timeout_ms, EMPTY, frozenset(), self._now, -1)
            self._append(fresh.record())
            return init_response(ErrorCode.NONE, new_id, 0)
        if meta.state in _PREPARE:
            return init_response(ErrorCode.CONCURRENT_TRANSACTIONS)
        if expected is not None and not (
            expected[0] == meta.producer_id or (expected[0] == meta.last_producer_id and epoch_exhausted(expected[1]))
        ):
            return init_response(ErrorCode.PRODUCER_FENCED)
        if meta.state == ONGOING:
            # Abort the open transaction under a new epoch; the caller retries, which bumps
            # again (and rotates the producer id if that exhausted the epochs).
            self._end(meta, commit=False, epoch=meta.producer_epoch + 1, waiting=_Waiting(ticket, ErrorCode.CONCURRENT_TRANSACTIONS))
            return None
        return self._bump(meta, timeout_ms, expected)

    def _bump(self, meta: TransactionMetadata, timeout_ms: int, expected: tuple[int, int] | None) -> dict[str, Any]:
        """Kafka's prepareIncrementProducerEpoch / prepareProducerIdRotation."""
        if epoch_exhausted(meta.producer_epoch) and (expected is None or expected[1] == meta.producer_epoch):
            new_id = self._new_producer_id()
            last = (meta.producer_id, meta.producer_epoch if expected is not None else NO_EPOCH)
            epoch = 0
        else:
            new_id = meta.producer_id
            if expected is None:
                epoch, last = meta.producer_epoch + 1, (meta.producer_id, NO_EPOCH)
            elif expected[1] == meta.producer_epoch:
                epoch, last = meta.producer_epoch + 1, (meta.producer_id, meta.producer_epoch)
            elif expected[1] == meta.last_producer_epoch:
                # A retry of a bump whose answer was lost: the current epoch again.
                epoch, last = meta.producer_epoch, (meta.last_producer_id, meta.last_producer_epoch)
            else:
                return init_response(ErrorCode.PRODUCER_FENCED)
        txn_id = meta.transactional_id

        def stored(error: int) -> None:
            current = self.transactions.get(txn_id)
            if not error and current is not None:
                current.last_producer_id, current.last_producer_epoch = last

        self._append(
            meta.record(producer_id=new_id, producer_epoch=epoch, timeout_ms=timeout_ms, state=EMPTY,
                        partitions=frozenset(), last_update_ms=self._now, start_ms=-1),
            stored,
        )
        return init_response(ErrorCode.NONE, new_id, epoch)

    # --- AddPartitionsToTxn / AddOffsetsToTxn --------------------------------------------------

    def add_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: Iterable[TopicPartition], now_ms: int
    ) -> Result:
        """Add partitions to the producer's transaction (starting one); the response is one
        error code for all of them."""
        wanted = frozenset(partitions)
        return self._run(now_ms, lambda: {"error_code": self._add(transactional_id, producer_id, producer_epoch, wanted)})

    def _add(self, txn_id: str, producer_id: int, producer_epoch: int, partitions: frozenset[TopicPartition]) -> int:
        if not txn_id:
            return ErrorCode.INVALID_REQUEST
        meta = self.transactions.get(txn_id)
        error = self._check_producer(meta, producer_id, producer_epoch)
        if error:
            return error
        assert meta is not None
        if meta.state in _PREPARE:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if meta.state == ONGOING and partitions <= meta.partitions:
            return ErrorCode.NONE  # nothing new to store
        start = self._now if meta.state in _IDLE else meta.start_ms
        self._append(meta.record(state=ONGOING, partitions=meta.partitions | partitions, start_ms=start, last_update_ms=self._now))
        return ErrorCode.NONE

    @staticmethod
    def _check_producer(meta: TransactionMetadata | None, producer_id: int, producer_epoch: int) -> int:
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        return ErrorCode.NONE

    # --- EndTxn --------------------------------------------------------------------------------

    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool, ticket: int, now_ms: int) -> Result:
        """Commit or abort; answered (``ticket``) once the markers are written, or at once."""
        return self._run(now_ms, lambda: self._end_txn(transactional_id, producer_id, producer_epoch, commit, ticket))

    def _end_txn(self, txn_id: str, producer_id: int, producer_epoch: int, commit: bool, ticket: int) -> dict[str, Any] | None:
        if not txn_id:
            return {"error_code": ErrorCode.INVALID_REQUEST}
        meta = self.transactions.get(txn_id)
        error = self._check_producer(meta, producer_id, producer_epoch)
        if error:
            return {"error_code": error}
        assert meta is not None
        state = meta.state
        if state == ONGOING:
            self._end(meta, commit, meta.producer_epoch, _Waiting(ticket, ErrorCode.NONE))
            return None
        done, preparing = (COMPLETE_COMMIT, PREPARE_COMMIT) if commit else (COMPLETE_ABORT, PREPARE_ABORT)
        if state == done:
            return {"error_code": ErrorCode.NONE}  # a retry of an EndTxn that went through
        if state == preparing:
            return {"error_code": ErrorCode.CONCURRENT_TRANSACTIONS}
        log.debug("EndTxn(commit=%s) for %s in state %s", commit, txn_id, state.display_name)
        return {"error_code": ErrorCode.INVALID_TXN_STATE}

    def _end(self, meta: TransactionMetadata, commit: bool, epoch: int, waiting: _Waiting | None) -> None:
        """Store PrepareCommit/PrepareAbort (under ``epoch``: bumped when fencing) and ask for
        the markers; ``markers_written`` continues."""
        txn_id = meta.transactional_id
        state = PREPARE_COMMIT if commit else PREPARE_ABORT
        if waiting is not None:
            self._waiting[txn_id] = waiting

        def stored(error: int) -> None:
            if error:
                parked = self._waiting.pop(txn_id, None)
                if parked is not None:
                    self._answer(parked.ticket, {"error_code": write_error(error, TXN_APPEND_ERRORS), **_no_producer(parked)})

        self._append(meta.record(state=state, producer_epoch=epoch, last_update_ms=self._now), stored)
        marker_meta = replace(meta, producer_epoch=epoch, state=state)
        self._send_markers(marker_meta, meta.partitions)

    def _send_markers(self, meta: TransactionMetadata, partitions: frozenset[TopicPartition]) -> None:
        self._write_markers(TxnMarker(
            meta.transactional_id, meta.producer_id, meta.producer_epoch, self.coordinator_epoch,
            meta.state == PREPARE_COMMIT, partitions,
        ))

    def markers_written(
        self, transactional_id: str, producer_id: int, producer_epoch: int, failed: frozenset[TopicPartition], now_ms: int
    ) -> Result:
        """The runtime wrote a TxnMarker; ``failed`` are the partitions it could not write."""
        return self._run(now_ms, lambda: self._markers_written(transactional_id, producer_id, producer_epoch, failed))

    def _markers_written(self, txn_id: str, producer_id: int, producer_epoch: int, failed: frozenset[TopicPartition]) -> None:
        meta = self.transactions.get(txn_id)
        if meta is None or meta.state not in _PREPARE or (meta.producer_id, meta.producer_epoch) != (producer_id, producer_epoch):
            return  # a stale report (the state moved on, or its Prepare record was not stored)
        parked = self._waiting.pop(txn_id, None)
        if parked is not None:
            # The outcome is decided and stored: the client may go on, as Kafka answers after
            # the Prepare record (its next request waits with CONCURRENT_TRANSACTIONS if needed).
            self._answer(parked.ticket, {"error_code": parked.answer, **_no_producer(parked)})
        if failed:
            log.warning("transaction %s: markers to %s failed, retrying", txn_id, sorted(failed))
            self._unmarked[txn_id] = failed
            self._schedule(("markers", txn_id), self.config.markers_retry_backoff_ms, lambda: self._retry_markers(txn_id))
            return
        self._unmarked.pop(txn_id, None)
        self._complete(txn_id)

    def _retry_markers(self, txn_id: str) -> None:
        meta = self.transactions.get(txn_id)
        partitions = self._unmarked.pop(txn_id, frozenset())
        if meta is not None and meta.state in _PREPARE:
            self._send_markers(meta, partitions or meta.partitions)

    def _complete(self, txn_id: str) -> None:
        meta = self.transactions[txn_id]
        done = COMPLETE_COMMIT if meta.state == PREPARE_COMMIT else COMPLETE_ABORT

        def stored(error: int) -> None:
            if error:
                log.warning("transaction %s: storing %s failed (%d), retrying", txn_id, done.display_name, error)
                self._schedule(("complete", txn_id), self.config.markers_retry_backoff_ms, lambda: self._retry_complete(txn_id))

        self._append(meta.record(state=done, partitions=frozenset(), last_update_ms=self._now), stored)

    def _retry_complete(self, txn_id: str) -> None:
        meta = self.transactions.get(txn_id)
        if meta is not None and meta.state in _PREPARE and txn_id not in self._unmarked:
            self._complete(txn_id)

    # --- timers --------------------------------------------------------------------------------

    def _abort_timed_out(self) -> None:
        """Abort Ongoing transactions past their timeout, fencing their producer with a bumped
        epoch (Kafka's abortTimedOutTransactions)."""
        for meta in list(self.transactions.values()):
            if meta.state == ONGOING and meta.start_ms + meta.timeout_ms < self._now and meta.producer_epoch < MAX_EPOCH:
                log.info("aborting transaction %s of producer %d: it timed out after %d ms",
                         meta.transactional_id, meta.producer_id, meta.timeout_ms)
                self._end(meta, commit=False, epoch=meta.producer_epoch + 1, waiting=None)
        self._schedule(ABORT_KEY, self.config.abort_timed_out_interval_ms, self._abort_timed_out)

    def _expire_transactional_ids(self) -> None:
        """transactional.id.expiration.ms: tombstones for ids idle with no transaction."""
        horizon = self._now - self.config.transactional_id_expiration_ms
        for meta in list(self.transactions.values()):
            if meta.state in _IDLE and meta.last_update_ms <= horizon:
                log.info("transactional id %s expired", meta.transactional_id)
                self._append(TxnRecord(TransactionLogKey(meta.transactional_id), None))
        self._schedule(EXPIRE_KEY, self.config.remove_expired_interval_ms, self._expire_transactional_ids)

    # --- reads ---------------------------------------------------------------------------------

    def verify(self, producer_id: int, producer_epoch: int, partition: TopicPartition) -> int:
        """Whether a transactional write of this producer to ``partition`` belongs to its open
        transaction (Kafka 3.6+'s partition verification, KIP-890 part 1): a write after the
        transaction ended would otherwise hang the partition's LSO."""
        txn_id = self._by_producer.get(producer_id)
        meta = self.transactions.get(txn_id) if txn_id is not None else None
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if meta.state != ONGOING or partition not in meta.partitions:
            return ErrorCode.INVALID_TXN_STATE
        return ErrorCode.NONE

    def describe(self, transactional_id: str) -> dict[str, Any]:
        """One DescribeTransactions entry."""
        meta = self.transactions.get(transactional_id)
        if meta is None:
            return describe_error(transactional_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND)
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(partition)
        return {
            "error_code": ErrorCode.NONE,
            "transactional_id": transactional_id,
            "transaction_state": meta.state.display_name,
            "transaction_timeout": meta.timeout_ms,
            "transaction_start_time": meta.start_ms,
            "producer_id": meta.producer_id,
            "producer_epoch": meta.producer_epoch,
            "topics": [{"topic": topic, "partitions": ids} for topic, ids in by_topic.items()],
        }

    def list_transactions(
        self, states: frozenset[TransactionState], producer_ids: frozenset[int], min_duration_ms: int, now_ms: int
    ) -> list[dict[str, Any]]:
        """ListTransactions entries matching every filter given (empty filters match all;
        ``min_duration_ms`` >= 0: only those started longer ago than that, KIP-994, counted
        as Kafka does from the start timestamp whatever the state)."""
        out = []
        for meta in self.transactions.values():
            if states and meta.state not in states:
                continue
            if producer_ids and meta.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and now_ms - meta.start_ms <= min_duration_ms:
                continue
            out.append({"transactional_id": meta.transactional_id, "producer_id": meta.producer_id,
                        "transaction_state": meta.state.display_name})
        return out


def describe_error(transactional_id: str, error: int) -> dict[str, Any]:
    """A DescribeTransactions entry for an error: the other fields at the schema's defaults
    (zero), as Kafka leaves them."""
    return {"error_code": error, "transactional_id": transactional_id, "transaction_state": "", "transaction_timeout": 0,
            "transaction_start_time": 0, "producer_id": 0, "producer_epoch": 0, "topics": []}


def _no_producer(waiting: _Waiting) -> dict[str, Any]:
    # A parked InitProducerId answer carries no producer; EndTxn answers ignore these fields.
    return {"producer_id": NO_PRODUCER_ID, "producer_epoch": NO_EPOCH}


def _counter() -> Callable[[], int]:
    """Producer ids for tests without a metadata store."""
    state = {"next": 0}

    def allocate() -> int:
        state["next"] += 1
        return state["next"] - 1

    return allocate


__all__ = [
    "TransactionConfig",
    "TransactionCoordinator",
    "TransactionMetadata",
    "describe_error",
    "epoch_exhausted",
    "init_response",
]
