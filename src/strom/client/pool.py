"""Connections to other brokers, one per node, reopened on demand after a failure."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

from strom.security.client import ClientSecurity

from .connection import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    BrokerConnection,
)

__all__ = ["ConnectionPool"]


class _Address(NamedTuple):
    node_id: int
    host: str
    port: int


class ConnectionPool:
    """At most one open ``BrokerConnection`` per ``(node_id, host, port)``.

    Owned by one event loop. ``_connections`` maps an address to its connection, which may
    have closed since (``get`` replaces it); ``_opening`` holds the connect in progress per
    address, shared by concurrent ``get`` calls so that they all get the same connection.
    A node seen at a new address loses its connection to the old one.
    """

    def __init__(
        self,
        *,
        client_id: str | None = DEFAULT_CLIENT_ID,
        timeout_s: float | None = DEFAULT_CONNECT_TIMEOUT_S,
        request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S,
        security: ClientSecurity | None = None,
    ) -> None:
        self.client_id = client_id
        self.security = security
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self._connections: dict[_Address, BrokerConnection] = {}
        self._opening: dict[_Address, asyncio.Task[BrokerConnection]] = {}

    async def get(self, node_id: int, host: str, port: int) -> BrokerConnection:
        """The open connection to this node, connecting first if there is none.

        Raises ``BrokerConnectionError`` when connecting fails; the next call tries again.
        """
        address = _Address(node_id, host, port)
        conn = self._connections.get(address)
        if conn is not None and not conn.closed:
            return conn
        task = self._opening.get(address)
        if task is None:
            task = asyncio.create_task(self._open(address), name=f"connect-{node_id}")
            # Retrieve a failure even when every caller was cancelled meanwhile.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._opening[address] = task
        # One caller's cancellation must not cancel the connect the others wait on.
        return await asyncio.shield(task)

    def close(self, node_id: int) -> None:
        """Close the connections to one node (it left the cluster, or moved)."""
        for address in [a for a in self._connections if a.node_id == node_id]:
            self._connections.pop(address).close()
        for address in [a for a in self._opening if a.node_id == node_id]:
            self._opening.pop(address).cancel()

    def close_all(self) -> None:
        """Close every connection and abandon every connect in progress."""
        for task in self._opening.values():
            task.cancel()
        self._opening.clear()
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def __len__(self) -> int:
        return sum(not conn.closed for conn in self._connections.values())

    async def _open(self, address: _Address) -> BrokerConnection:
        try:
            conn = await BrokerConnection.open(
                address.host,
                address.port,
                client_id=self.client_id,
                timeout_s=self.timeout_s,
                request_timeout_s=self.request_timeout_s,
                security=self.security,
            )
        finally:
            if self._opening.get(address) is asyncio.current_task():
                del self._opening[address]
        for other in [a for a in self._connections if a.node_id == address.node_id]:
            if other != address:
                self._connections.pop(other).close()
        with contextlib.suppress(KeyError):
            self._connections.pop(address).close()  # the closed one this replaces
        self._connections[address] = conn
        return conn
