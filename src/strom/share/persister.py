"""Where share partitions keep their state (Kafka's Persister, KIP-932), as interfaces.

``SharePersister`` is what the share-partition manager uses: it reads a share partition's
state when it starts serving it and writes the whole state after each change (strom writes
complete states, see share.state_store). server.share_persister.RuntimePersister implements
it over ``__share_group_state``: the share coordinator of this broker when it leads the
share partition's ``__share_group_state`` partition, otherwise Read/Write/DeleteShareGroupState
sent to the broker that does.

``ShareCoordinator`` is the share coordinator runtime (server.share_state_runtime) as the
persister and the RPC handlers (handlers.share_state) see it. Its methods raise
strom.coordinator.shard.CoordinatorError with NOT_COORDINATOR (the key's partition is not led
here, or the topic does not exist), COORDINATOR_LOAD_IN_PROGRESS, or a failed append's error.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from strom.protocol.errors import ErrorCode
from strom.share.records import ShareSnapshotKey, ShareSnapshotValue


class SharePersisterError(Exception):
    """A read that could not be answered (after the persister's retries); ``error_code`` is
    an ErrorCode (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, FENCED_LEADER_EPOCH, ...)."""

    def __init__(self, error_code: int, message: str = "") -> None:
        super().__init__(message or ErrorCode(error_code).name)
        self.error_code = error_code


class SharePersister(Protocol):
    """A share partition's persisted state, by (share group, topic id, partition)."""

    async def read(self, group_id: str, topic_id: uuid.UUID, partition: int, leader_epoch: int = -1) -> ShareSnapshotValue | None:
        """The stored state, None when the share partition was never initialized (or its
        state was deleted). The value holds what ReadShareGroupState carries, wherever the
        state lives: ``state_epoch``, ``start_offset`` and ``state_batches`` as written; the
        other fields are -1. Raises SharePersisterError when the state cannot be read."""
        ...

    async def write(self, group_id: str, topic_id: uuid.UUID, partition: int, value: ShareSnapshotValue) -> int:
        """Store ``value`` as the complete state: its ``state_epoch``, ``leader_epoch``,
        ``start_offset``, ``state_batches`` and ``delivery_complete_count`` (the snapshot epoch
        and timestamps are the coordinator's). Returns an ErrorCode: NONE, FENCED_LEADER_EPOCH
        (a newer leader wrote), FENCED_STATE_EPOCH (the state was reset), or a coordinator
        error left after the retries (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, ...)."""
        ...

    async def delete(self, group_id: str, topic_id: uuid.UUID, partition: int) -> int:
        """Remove the state (a tombstone); NONE also when there was none. An ErrorCode."""
        ...


class ShareCoordinator(Protocol):
    """The share coordinator runtime of this broker (errors: see the module doc)."""

    async def ensure_topic(self) -> None:
        """Create ``__share_group_state`` if it does not exist yet."""
        ...

    def snapshot(self, key: ShareSnapshotKey) -> ShareSnapshotValue | None:
        """The stored state without changing anything (None: none)."""
        ...

    async def read_state(self, key: ShareSnapshotKey, leader_epoch: int = -1) -> tuple[int, ShareSnapshotValue | None]:
        """ReadShareGroupState: (error, state); see ShareStateShard.read_for_leader."""
        ...

    async def write_state(self, key: ShareSnapshotKey, value: ShareSnapshotValue) -> int:
        """Store a complete state once the in-sync replicas have it; see ShareStateShard.write."""
        ...

    async def initialize_state(self, key: ShareSnapshotKey, state_epoch: int, start_offset: int) -> int:
        """InitializeShareGroupState; see ShareStateShard.initialize."""
        ...

    async def delete_state(self, key: ShareSnapshotKey) -> int:
        """DeleteShareGroupState: a tombstone once stored."""
        ...


__all__ = ["ShareCoordinator", "SharePersister", "SharePersisterError"]
