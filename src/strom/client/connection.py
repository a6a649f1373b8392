"""One pipelined connection to a Kafka broker, for broker-to-broker calls.

Requests are written as soon as they are made and matched to responses by a correlation-id
FIFO, as in aiokafka's ``conn.py``: Kafka answers each connection's requests in order, so the
head of the FIFO must be the next response; anything else is out of sync and closes the
connection. A closed connection fails every pending request with ``BrokerConnectionError``
(never a hang), and a request timeout closes it too, since the FIFO cannot skip the late
answer. Every close records a ``CloseReason`` for the log line.

Reading uses ``asyncio.BufferedProtocol``: small responses are sliced out of one reused
buffer, and a response too large for it (a fetch) is received straight into a buffer of its
own size, then decoded from a read-only view of it, with no copy in between.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import sys
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from strom.protocol.api import ApiKey
from strom.protocol.codec import decode_response, encode_request, response_is_flexible
from strom.protocol.errors import RemoteProtocolError
from strom.protocol.framing import encode_request_frame
from strom.protocol.primitives import INT32, skip_tagged_fields
from strom.security.client import ClientSecurity

__all__ = [
    "DEFAULT_CLIENT_ID",
    "BrokerConnection",
    "BrokerConnectionError",
    "CloseReason",
]

log = logging.getLogger(__name__)

DEFAULT_CLIENT_ID: Final = "strom-replica"
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0
# Kafka's socket.request.max.bytes is 100 MiB; a response claiming more is garbage.
DEFAULT_MAX_FRAME_SIZE: Final = 100 * 1024 * 1024
_READ_BUFFER_SIZE: Final = 64 * 1024
_SPARE_MAX: Final = 16 << 20  # a large frame's buffer is kept for the next one up to this size
# The rest of a frame at least this large is waited for with SO_RCVLOWAT (BrokerConnection).
_RCVLOWAT_MIN: Final = 64 * 1024
_CORRELATION_ID_MASK: Final = 0x7FFF_FFFF

Frame = bytes | memoryview


class CloseReason(enum.Enum):
    SHUTDOWN = "closed by us"
    PEER_CLOSED = "peer closed"
    CONNECTION_BROKEN = "connection broken"
    REQUEST_TIMEOUT = "request timed out"
    OUT_OF_SYNC = "response out of sync"
    MALFORMED_RESPONSE = "malformed response"


class BrokerConnectionError(ConnectionError):
    """The connection failed or was closed; ``reason`` says why (None: it never opened)."""

    def __init__(self, message: str, reason: CloseReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class _FrameReader:
    """Sans-IO splitter of a byte stream into frame bodies, shaped for BufferedProtocol.

    ``get_buffer()`` says where the next bytes go, ``buffer_updated(n)`` returns the frames
    they completed: ``bytes`` copied out of the shared buffer, or a read-only ``memoryview``
    of a frame big enough (half the buffer or more) to get a buffer of its own. That buffer
    is used again for a later large frame once no view of it is left (a follower receives a
    large fetch response after another, and a fresh bytearray is zeroed and faulted in).

    Invariant: outside a large frame, ``_buffer[_start:_end]`` holds less than one frame.
    """

    def __init__(self, max_frame_size: int, buffer_size: int = _READ_BUFFER_SIZE) -> None:
        self._max_frame_size = max_frame_size
        self._buffer = bytearray(buffer_size)
        self._view = memoryview(self._buffer)
        self._start = 0  # first byte not yet consumed
        self._end = 0  # end of the bytes received
        self._large: memoryview | None = None  # a large frame's body, filled in place
        self._large_filled = 0
        self._spare: bytearray | None = None  # the last large frame's buffer

    def get_buffer(self) -> memoryview:
        large = self._large
        if large is not None:
            return large[self._large_filled :]
        size = len(self._buffer)
        if self._start == self._end:
            self._start = self._end = 0
        elif size - self._end < size // 2:
            # Leftovers are under half the buffer (bigger frames go large), so this frees
            # room for the rest of the frame.
            pending = self._end - self._start
            self._buffer[:pending] = self._view[self._start : self._end]
            self._start, self._end = 0, pending
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        large = self._large
        if large is not None:
            self._large_filled += nbytes
            if self._large_filled < len(large):
                return []
            self._large = None
            return [large.toreadonly()]
        self._end += nbytes
        frames: list[Frame] = []
        view, start, end = self._view, self._start, self._end
        while end - start >= 4:
            (size,) = INT32.unpack_from(view, start)
            if size < 0 or size > self._max_frame_size:
                raise RemoteProtocolError(f"frame size {size} outside 0..{self._max_frame_size}")
            body = start + 4
            if end - body >= size:
                frames.append(bytes(view[body : body + size]))  # the buffer will be reused
                start = body + size
            elif size >= len(self._buffer) // 2:
                large = self._large = self._large_buffer(size)
                received = end - body
                large[:received] = view[body:end]
                self._large_filled = received
                start = end = 0
                break
            else:
                break
        self._start, self._end = start, end
        return frames

    @property
    def missing(self) -> int:
        """Bytes still to come for the large frame being received (0: none in progress)."""
        large = self._large
        return 0 if large is None else len(large) - self._large_filled

    def _large_buffer(self, size: int) -> memoryview:
        spare = self._spare
        # Its references: self._spare, ``spare`` and getrefcount's argument; a frame view
        # still alive anywhere holds one more (through its memoryview's buffer).
        if spare is None or len(spare) < size or sys.getrefcount(spare) > 3:
            spare = bytearray(size)
            self._spare = spare if size <= _SPARE_MAX else None
        return memoryview(spare)[:size]


def _time_out(future: asyncio.Future[Frame]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Pending:
    __slots__ = ("correlation_id", "api_key", "api_version", "future")

    def __init__(
        self, correlation_id: int, api_key: int, api_version: int, future: asyncio.Future[Frame]
    ) -> None:
        self.correlation_id = correlation_id
        self.api_key = api_key
        self.api_version = api_version
        self.future = future


class BrokerConnection(asyncio.BufferedProtocol):
    """A pipelined client connection; make one with ``await BrokerConnection.open(...)``.

    Owned by the event loop it was opened on; all methods run there. ``_pending`` holds the
    requests written and not yet answered, oldest first: ``request`` appends, the response
    path pops the head, ``_close`` fails and empties it. ``close_reason`` is set once, by the
    first close, and never changes after.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = DEFAULT_CLIENT_ID,
        request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.request_timeout_s = request_timeout_s
        self.close_reason: CloseReason | None = None
        self.close_detail = ""
        self._reader = _FrameReader(max_frame_size)
        self._pending: deque[_Pending] = deque()
        self._next_correlation_id = 0
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._closed_waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiter: asyncio.Future[None] | None = None  # set while writing is paused
        self._lowat_socket: Any = None  # a plain TCP socket: see _wait_for_rest
        self._rcvlowat = 1

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str | None = DEFAULT_CLIENT_ID,
        timeout_s: float | None = DEFAULT_CONNECT_TIMEOUT_S,
        request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        security: ClientSecurity | None = None,
    ) -> BrokerConnection:
        """Connect within ``timeout_s`` (with TLS and SASL when ``security`` says so); raise
        ``BrokerConnectionError`` if that fails.

        ``request_timeout_s`` is the default of ``request``'s ``timeout_s`` (None: no limit).
        """
        conn = cls(
            host,
            port,
            client_id=client_id,
            request_timeout_s=request_timeout_s,
            max_frame_size=max_frame_size,
        )
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                tls = security.ssl if security is not None else None
                await loop.create_connection(lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None)
                if security is not None and security.mechanism is not None:
                    await conn._authenticate(security)
        except TimeoutError:
            raise BrokerConnectionError(
                f"connecting to {host}:{port} timed out after {timeout_s}s"
            ) from None
        except OSError as exc:
            conn.close()
            raise BrokerConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    async def _authenticate(self, security: ClientSecurity) -> None:
        """SaslHandshake v1 then SaslAuthenticate v2 (KIP-152), PLAIN or SCRAM (scramp)."""
        mechanism = security.mechanism
        handshake = await self.request(ApiKey.SASL_HANDSHAKE, 1, {"mechanism": mechanism})
        if handshake.error_code:
            self.close()
            raise BrokerConnectionError(f"{self.host}:{self.port} does not offer SASL {mechanism}")

        async def step(token: bytes) -> bytes:
            answer = await self.request(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})
            if answer.error_code:
                self.close()
                raise BrokerConnectionError(f"{self.host}:{self.port}: {answer.error_message or 'SASL authentication failed'}")
            return bytes(answer.auth_bytes)

        if mechanism == "PLAIN":
            await step(f"\0{security.username}\0{security.password}".encode())
            return
        from scramp import ScramClient  # only for SASL inter-broker listeners

        scram = ScramClient([mechanism], security.username, security.password)
        scram.set_server_first((await step(scram.get_client_first().encode())).decode())
        scram.set_server_final((await step(scram.get_client_final().encode())).decode())

    # --- public API -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def in_flight(self) -> int:
        """Requests written and not yet answered."""
        return len(self._pending)

    async def request(
        self,
        api_key: int,
        api_version: int,
        body: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        decode: Callable[[int, Frame, int], Any] | None = None,
    ) -> Any:
        """Send one request and return the decoded response entity (kio's dataclass), or
        what ``decode(api_version, frame, body offset)`` makes of it (a hand-written decoder,
        e.g. one that leaves fetched records as views of the frame).

        ``body`` is a dict tree with Kafka's field names in snake_case, as ``encode_request``
        takes it. Produce with ``acks=0`` gets no response: it returns None once written.
        Raises ``BrokerConnectionError`` when the connection is or becomes closed,
        ``TimeoutError`` after ``timeout_s`` (None: the connection's ``request_timeout_s``),
        which also closes the connection, ``RemoteProtocolError`` for a response
        that does not decode (closing the connection), and ``LocalProtocolError`` /
        ``UnsupportedVersion`` for a body that cannot be encoded (the connection stays up).
        """
        if timeout_s is None:
            timeout_s = self.request_timeout_s
        self._check_open()
        payload = encode_request(api_key, api_version, body)
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & _CORRELATION_ID_MASK
        frame = encode_request_frame(api_key, api_version, correlation_id, self.client_id, payload)
        assert self._transport is not None
        if api_key == ApiKey.PRODUCE and body.get("acks") == 0:
            self._transport.write(frame)
            await self._drain()
            return None
        future: asyncio.Future[Frame] = self._loop.create_future()
        # Append and write with no await between, so the FIFO order is the wire order.
        self._pending.append(_Pending(correlation_id, api_key, api_version, future))
        self._transport.write(frame)
        deadline = None if timeout_s is None else self._loop.time() + timeout_s
        try:
            if self._drain_waiter is not None:
                async with asyncio.timeout_at(deadline):
                    await self._drain()
            # A timer rather than asyncio.timeout: a follower sends a request after another.
            timer = None if deadline is None else self._loop.call_at(deadline, _time_out, future)
            try:
                response = await future
            finally:
                if timer is not None:
                    timer.cancel()
        except TimeoutError:
            message = (
                f"no response to api_key={api_key} v{api_version} "
                f"(correlation_id={correlation_id}) within {timeout_s}s"
            )
            self._close(CloseReason.REQUEST_TIMEOUT, message)
            raise TimeoutError(f"{self.host}:{self.port}: {message}") from None
        return self._decode(api_key, api_version, response, decode)

    def close(self) -> None:
        """Close now; pending requests fail with ``BrokerConnectionError``. Idempotent."""
        self._close(CloseReason.SHUTDOWN)

    async def wait_closed(self) -> None:
        """Wait until the transport is gone (after ``close`` or any other end)."""
        await asyncio.shield(self._closed_waiter)

    def __repr__(self) -> str:
        state = f"closed: {self.close_reason.value}" if self.close_reason else "open"
        return f"<BrokerConnection {self.host}:{self.port} {state} in_flight={self.in_flight}>"

    # --- asyncio.BufferedProtocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        # Not under TLS: there the kernel holds ciphertext, and plaintext may wait in the
        # TLS layer, so a byte count on the socket could wait for bytes that never come.
        if (
            sock is not None
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and transport.get_extra_info("sslcontext") is None
        ):
            self._lowat_socket = sock

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self._reader.buffer_updated(nbytes)
        except RemoteProtocolError as exc:
            self._close(CloseReason.MALFORMED_RESPONSE, str(exc))
            return
        if self._lowat_socket is not None:
            self._wait_for_rest()
        for frame in frames:
            if not self._pending:
                self._close(CloseReason.OUT_OF_SYNC, "a response with no request pending")
                return
            pending = self._pending[0]
            if len(frame) < 4:
                self._close(CloseReason.MALFORMED_RESPONSE, f"a {len(frame)}-byte response")
                return
            (correlation_id,) = INT32.unpack_from(frame, 0)
            if correlation_id != pending.correlation_id:
                self._close(
                    CloseReason.OUT_OF_SYNC,
                    f"correlation_id {correlation_id}, expected {pending.correlation_id}",
                )
                return
            self._pending.popleft()
            if not pending.future.done():  # done: the caller was cancelled, drop the answer
                pending.future.set_result(frame)

    def eof_received(self) -> bool:
        self._close(CloseReason.PEER_CLOSED)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._close(CloseReason.PEER_CLOSED)
        else:
            self._close(CloseReason.CONNECTION_BROKEN, str(exc) or type(exc).__name__)
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    def pause_writing(self) -> None:
        if self._drain_waiter is None:
            self._drain_waiter = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- internals --------------------------------------------------------------------------

    def _wait_for_rest(self) -> None:
        """Have the kernel report the socket readable only once the rest of a large frame is
        in (SO_RCVLOWAT), and from any byte again after it. A follower's 1 MiB fetch response
        otherwise arrives in many reads, each waking this event loop, and each wake-up is also
        paid by the sender's network stack (on one host, by the leader, through a cross-CPU
        wake-up that is dear on a VM; docs/performance.md). The kernel caps the mark at half
        the largest receive buffer and grows the buffer to hold it, so the sender is never
        stalled by it."""
        missing = self._reader.missing
        want = missing if missing >= _RCVLOWAT_MIN else 1
        if want != self._rcvlowat:
            try:
                self._lowat_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
            except OSError:  # closed meanwhile, or a kernel without it
                self._lowat_socket = None
                return
            self._rcvlowat = want

    def _check_open(self) -> None:
        if self.close_reason is not None:
            raise self._error()
        if self._transport is None:
            raise BrokerConnectionError(f"{self.host}:{self.port}: not connected")

    def _error(self) -> BrokerConnectionError:
        reason = self.close_reason
        assert reason is not None
        detail = f" ({self.close_detail})" if self.close_detail else ""
        return BrokerConnectionError(
            f"connection to {self.host}:{self.port} closed: {reason.value}{detail}", reason
        )

    async def _drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        waiter = self._drain_waiter
        if waiter is not None:
            await asyncio.shield(waiter)
            self._check_open()

    def _decode(self, api_key: int, api_version: int, frame: Frame, decode: Callable[[int, Frame, int], Any] | None) -> Any:
        try:
            offset = 4
            # KIP-511: ApiVersions responses always use header v0, so any client can read them.
            if api_key != ApiKey.API_VERSIONS and response_is_flexible(api_key, api_version):
                offset = skip_tagged_fields(frame, offset)
            if decode is not None:
                return decode(api_version, frame, offset)
            return decode_response(api_key, api_version, frame, offset)
        except RemoteProtocolError as exc:
            self._close(CloseReason.MALFORMED_RESPONSE, f"api_key={api_key} v{api_version}: {exc}")
            raise

    def _close(self, reason: CloseReason, detail: str = "") -> None:
        """Record why the connection ended (the first reason wins), close the transport and
        fail every pending request. Idempotent."""
        if self.close_reason is None:
            self.close_reason = reason
            self.close_detail = detail
            level = logging.DEBUG if reason is CloseReason.SHUTDOWN else logging.INFO
            log.log(
                level,
                "connection to %s:%d closed: %s%s (%d requests pending)",
                self.host,
                self.port,
                reason.value,
                f" ({detail})" if detail else "",
                len(self._pending),
            )
            transport = self._transport
            if transport is not None:
                # After a timeout or a protocol error the queued bytes are worthless.
                if reason is CloseReason.SHUTDOWN:
                    transport.close()
                else:
                    transport.abort()
            elif not self._closed_waiter.done():
                self._closed_waiter.set_result(None)
        if self._pending:
            error = self._error()
            pending, self._pending = self._pending, deque()
            for entry in pending:
                if not entry.future.done():
                    entry.future.set_exception(error)
                    # Retrieve it so a cancelled caller's future logs no "never retrieved".
                    entry.future.exception()
        self.resume_writing()
