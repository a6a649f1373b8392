"""The console's Kafka client: requests to this broker run its own handlers in process (no
socket, the logged-in principal's session, so every ACL check a client gets applies), and
requests for another broker (a partition led there, a group it coordinates) go over the
inter-broker connection pool, after the console has authorized them itself (pages.py).

Requests and responses are Kafka's: a dict tree in, kio's response entity out."""

from __future__ import annotations

import os
from typing import Any

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Delayed, RawResponse, Registration, Request, registrations
from strom.protocol.codec import decode_request, decode_response, encode_request, encode_response
from strom.protocol.framing import RequestHeader
from strom.security.session import ListenerSecurity, Session

CLIENT_ID = "strom-console"


class ConsoleError(Exception):
    """A request the console could not serve; the message is for the page."""


class ConsoleClient:
    def __init__(self, ctx: BrokerContext, security: ListenerSecurity) -> None:
        self.ctx = ctx
        self.security = security  # the listener whose addresses local answers name
        self._registry: dict[int, Registration] = registrations()
        self._pool: Any = None  # strom.client.pool.ConnectionPool, opened on the first remote call

    def session(self, principal: str) -> Session:
        session = Session(self.security, principal=principal)
        session.authenticated = True  # the console logged the principal in (auth.py)
        return session

    async def call(self, node_id: int, api_key: int, version: int, body: dict[str, Any],
                   session: Session, host: str) -> Any:
        """One request to ``node_id``, answered as Kafka answers it."""
        if node_id == self.ctx.node.node_id:
            return await self._local(api_key, version, body, session, host)
        return await self._remote(node_id, api_key, version, body)

    async def _local(self, api_key: int, version: int, body: dict[str, Any], session: Session, host: str) -> Any:
        # Encoded and decoded as on the wire: handlers get exactly what a client would send.
        request = decode_request(api_key, version, encode_request(api_key, version, body))
        header = RequestHeader(api_key, version, 0, CLIENT_ID)
        result = await self._registry[api_key].handler(self.ctx, Request(header, request, host, session))
        if isinstance(result, Delayed):
            result = await result.result
        if isinstance(result, RawResponse):
            data = b"".join(bytes(c) if isinstance(c, bytes | bytearray | memoryview)
                            else os.pread(c.fd, c.length, c.position) for c in result.chunks)
        else:
            assert result is not None  # the console never sends acks=0
            data = encode_response(api_key, version, result)
        return decode_response(api_key, version, data)

    async def _remote(self, node_id: int, api_key: int, version: int, body: dict[str, Any]) -> Any:
        from strom.client.connection import BrokerConnectionError
        from strom.client.pool import ConnectionPool

        node = self.ctx.node_by_id(node_id)
        if node is None:
            raise ConsoleError(f"broker {node_id} is not registered (down?)")
        if self._pool is None:
            self._pool = ConnectionPool(client_id=CLIENT_ID, security=self.ctx.inter_broker, request_timeout_s=10)
        try:
            conn = await self._pool.get(node.node_id, node.host, node.port)
            return await conn.request(api_key, version, body)
        except (BrokerConnectionError, TimeoutError) as exc:
            raise ConsoleError(f"broker {node_id} did not answer: {exc}") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close_all()
