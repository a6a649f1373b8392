"""Fetch sessions (KIP-227): the broker remembers a consumer's partitions, so later fetches
send only what changed and get back only partitions with news.

Plain state, no I/O. One FetchSessionCache per broker, owned by the event loop.
Epoch rules: session 0 + epoch 0 opens a session, epoch -1 is a sessionless full fetch (and
closes a named session); any other epoch must be the session's next expected one.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

from strom.protocol.errors import ErrorCode

INITIAL_EPOCH = 0
FINAL_EPOCH = -1


class PartitionKey(NamedTuple):
    topic: str | None  # None when a topic id is unknown
    topic_id: uuid.UUID | None  # on v13+, None before
    partition: int


@dataclass(slots=True)
class FetchPosition:
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1  # KIP-320 (v9+); -1: not checked
    # What the last response said, so an incremental response can skip unchanged partitions.
    sent_high_watermark: int = -2
    sent_log_start_offset: int = -2
    sent_last_stable_offset: int = -2


@dataclass
class FetchSession:
    session_id: int
    next_epoch: int
    partitions: OrderedDict[PartitionKey, FetchPosition] = field(default_factory=OrderedDict)


@dataclass(frozen=True, slots=True)
class SessionStart:
    error: int
    session: FetchSession | None  # None: a sessionless (full) fetch
    partitions: OrderedDict[PartitionKey, FetchPosition]
    incremental: bool

    @property
    def session_id(self) -> int:
        return self.session.session_id if self.session else 0


class FetchSessionCache:
    """Sessions by id, least recently used first; at most ``max_slots`` (Kafka's default for
    ``max.incremental.fetch.session.cache.slots``)."""

    def __init__(self, max_slots: int = 1000) -> None:
        self.max_slots = max_slots
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._ids = itertools.count(random.randint(1, 2**30))

    def __len__(self) -> int:
        return len(self._sessions)

    def begin(
        self,
        session_id: int,
        epoch: int,
        requested: list[tuple[PartitionKey, FetchPosition]],
        forgotten: list[PartitionKey],
    ) -> SessionStart:
        fresh = OrderedDict(requested)
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id:
                self._sessions.pop(session_id, None)
            if epoch == FINAL_EPOCH:
                return SessionStart(ErrorCode.NONE, None, fresh, False)
            return SessionStart(ErrorCode.NONE, self._open(fresh), fresh, False)
        if session_id == 0:
            return SessionStart(ErrorCode.INVALID_FETCH_SESSION_EPOCH, None, OrderedDict(), False)
        session = self._sessions.get(session_id)
        if session is None:
            return SessionStart(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, None, OrderedDict(), False)
        if epoch != session.next_epoch:
            return SessionStart(ErrorCode.INVALID_FETCH_SESSION_EPOCH, None, OrderedDict(), False)
        self._sessions.move_to_end(session_id)
        for key in forgotten:
            session.partitions.pop(key, None)
        for key, position in fresh.items():
            known = session.partitions.get(key)
            if known is None:
                session.partitions[key] = position
            else:
                known.fetch_offset = position.fetch_offset
                known.partition_max_bytes = position.partition_max_bytes
                known.current_leader_epoch = position.current_leader_epoch
        session.next_epoch = session.next_epoch + 1 if session.next_epoch < 2**31 - 1 else 1
        return SessionStart(ErrorCode.NONE, session, session.partitions, True)

    def _open(self, partitions: OrderedDict[PartitionKey, FetchPosition]) -> FetchSession | None:
        if self.max_slots <= 0:
            return None
        if len(self._sessions) >= self.max_slots:
            self._sessions.popitem(last=False)
        session_id = next(self._ids) % (2**31 - 1) or 1
        session = FetchSession(session_id, 1, partitions)
        self._sessions[session_id] = session
        return session
