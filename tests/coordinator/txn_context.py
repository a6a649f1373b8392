"""A test context for one transaction coordinator shard: a fake clock (``sleep(ms)`` runs the
timers that fall due), a list standing in for the __transaction_state partition (records go
through their byte format both ways), the markers "written" to data partitions, and the
answers of parked requests by ticket. ``apply`` does what server.txn_runtime does with a
Result. No event loop, no files."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from strom.coordinator.shard import Result, TxnMarker
from strom.coordinator.transactions import TransactionConfig, TransactionCoordinator
from strom.coordinator.txn_records import TxnRecord, deserialize, serialize

CONFIG = TransactionConfig(
    max_timeout_ms=60_000,
    transactional_id_expiration_ms=100_000,
    abort_timed_out_interval_ms=1_000,
    remove_expired_interval_ms=10_000,
    markers_retry_backoff_ms=500,
)


@dataclass
class TxnTestContext:
    config: TransactionConfig = CONFIG
    time: int = 1_000
    log: list[TxnRecord] = field(default_factory=list)
    markers: list[TxnMarker] = field(default_factory=list)  # written (successfully or not)
    answers: dict[int, Any] = field(default_factory=dict)
    fail_appends: int = 0  # error code every append fails with (0: they succeed)
    fail_markers: set[tuple[str, int]] = field(default_factory=set)  # partitions whose markers fail
    first_producer_id: int = 100

    def __post_init__(self) -> None:
        self.tickets = itertools.count(1)
        self.coordinator = self._new_coordinator()
        self.apply(self.coordinator.loaded(self.time))

    def _new_coordinator(self) -> TransactionCoordinator:
        ids = itertools.count(self.first_producer_id)
        return TransactionCoordinator(self.config, coordinator_epoch=3, new_producer_id=lambda: next(ids))

    # --- the runtime's part ------------------------------------------------------------------

    def apply(self, result: Result) -> Result:
        error = 0
        if result.records:
            error = self.fail_appends
            if not error:
                for record in result.records:
                    stored = deserialize(*serialize(record))  # through the bytes, as the log does
                    assert stored == record
                    self.log.append(stored)
                    self.coordinator.replay(stored)
        if result.markers and not error:
            for marker in result.markers:
                self.markers.append(marker)
                failed = frozenset(marker.partitions & self.fail_markers)
                self.apply(self.coordinator.markers_written(
                    marker.transactional_id, marker.producer_id, marker.producer_epoch, failed, self.time
                ))
        for ticket, response in result.completions:
            self.answers.setdefault(ticket, response)
        if result.append_token is not None:
            self.apply(self.coordinator.appended(result.append_token, error, self.time))
        return result

    def respond(self, result: Result, ticket: int) -> Any:
        """The operation's answer: its response, or what its ticket got."""
        self.apply(result)
        if result.response is not None:
            return result.response
        return self.answers.get(ticket)

    def sleep(self, ms: int) -> None:
        """Advance the clock, running each timer at its own deadline."""
        end = self.time + ms
        while True:
            due = [at for at in self.coordinator.deadlines().values() if at <= end]
            if not due:
                break
            self.time = max(self.time, min(due))
            self.apply(self.coordinator.expire(self.time))
        self.time = end

    # --- requests -----------------------------------------------------------------------------

    def init(self, txn_id: str, timeout_ms: int = 10_000, producer_id: int = -1, producer_epoch: int = -1) -> dict[str, Any]:
        ticket = next(self.tickets)
        result = self.coordinator.init_producer_id(txn_id, timeout_ms, producer_id, producer_epoch, ticket, self.time)
        return self.respond(result, ticket)

    def add(self, txn_id: str, producer_id: int, epoch: int, *partitions: tuple[str, int]) -> int:
        result = self.coordinator.add_partitions(txn_id, producer_id, epoch, partitions, self.time)
        return self.respond(result, 0)["error_code"]

    def end(self, txn_id: str, producer_id: int, epoch: int, commit: bool) -> int:
        ticket = next(self.tickets)
        result = self.coordinator.end_txn(txn_id, producer_id, epoch, commit, ticket, self.time)
        answer = self.respond(result, ticket)
        return -1 if answer is None else answer["error_code"]

    def state(self, txn_id: str) -> str:
        return self.coordinator.transactions[txn_id].state.display_name

    def reloaded(self) -> TransactionCoordinator:
        """A new shard that replayed this log (what a restart loads)."""
        fresh = self._new_coordinator()
        for record in self.log:
            fresh.replay(record)
        return fresh
