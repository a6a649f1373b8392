"""Producer ids handed out from blocks reserved in the metadata store ahead of need.

The transaction coordinator's core and InitProducerId ask synchronously (``next_id``); the
store's write is async (etcd in a cluster), so the next block is fetched in the background
once half of the current one is used (Kafka's RPCProducerIdManager prefetch). An exhausted
block with the next one not there yet is reported as a retriable error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from strom.coordinator.shard import CoordinatorError
from strom.metadata.configs import ConfigError
from strom.metadata.store import MetadataStore
from strom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

BLOCK_SIZE = 1000


class ProducerIdBlocks:
    """Fields: ``_next`` / ``_end``: the current block's next id and end; ``_prefetched``:
    the following block once reserved. Owned by the event loop."""

    def __init__(self, store: MetadataStore, block_size: int = BLOCK_SIZE) -> None:
        self.store = store
        self.block_size = block_size
        self._next = self._end = 0
        self._prefetched: int | None = None
        self._fetching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._next = await self.store.allocate_producer_ids(self.block_size)
        self._end = self._next + self.block_size

    async def stop(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetching

    def next_id(self) -> int:
        if self._next >= self._end:
            if self._prefetched is None:
                self._prefetch()
                raise CoordinatorError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, "reserving producer ids")
            self._next, self._end, self._prefetched = self._prefetched, self._prefetched + self.block_size, None
        producer_id = self._next
        self._next += 1
        if self._prefetched is None and self._end - self._next <= self.block_size // 2:
            self._prefetch()
        return producer_id

    def _prefetch(self) -> None:
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        try:
            self._prefetched = await self.store.allocate_producer_ids(self.block_size)
        except ConfigError as exc:
            log.warning("cannot reserve producer ids: %s", exc)
