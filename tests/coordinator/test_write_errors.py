"""What a client is told when a coordinator could not store the records of its request: one
function, the three translations of Kafka side by side (the behaviour of the three functions
they replace, error for error)."""

from __future__ import annotations

from strom.coordinator.shard import (
    GROUP_APPEND_ERRORS,
    OPERATION_ERRORS,
    TXN_APPEND_ERRORS,
    write_error,
)
from strom.protocol.errors import ErrorCode as E

# error -> (group metadata append, transaction state append, other operations)
CHANGED = {
    E.UNKNOWN_TOPIC_OR_PARTITION: (E.COORDINATOR_NOT_AVAILABLE,) * 3,
    E.NOT_ENOUGH_REPLICAS: (E.COORDINATOR_NOT_AVAILABLE,) * 3,
    E.NOT_ENOUGH_REPLICAS_AFTER_APPEND: (
        E.COORDINATOR_NOT_AVAILABLE, E.COORDINATOR_NOT_AVAILABLE, E.NOT_ENOUGH_REPLICAS_AFTER_APPEND),
    E.REQUEST_TIMED_OUT: (E.REBALANCE_IN_PROGRESS, E.COORDINATOR_NOT_AVAILABLE, E.COORDINATOR_NOT_AVAILABLE),
    E.NOT_LEADER_OR_FOLLOWER: (E.NOT_COORDINATOR,) * 3,
    E.KAFKA_STORAGE_ERROR: (E.NOT_COORDINATOR,) * 3,
    E.MESSAGE_TOO_LARGE: (E.UNKNOWN_SERVER_ERROR,) * 3,
    E.RECORD_LIST_TOO_LARGE: (E.UNKNOWN_SERVER_ERROR,) * 3,
    E.INVALID_FETCH_SIZE: (E.UNKNOWN_SERVER_ERROR, E.INVALID_FETCH_SIZE, E.UNKNOWN_SERVER_ERROR),
}


def test_the_three_translations() -> None:
    for error in E:
        told = tuple(write_error(error, t) for t in (GROUP_APPEND_ERRORS, TXN_APPEND_ERRORS, OPERATION_ERRORS))
        assert told == CHANGED.get(error, (error,) * 3), error.name
