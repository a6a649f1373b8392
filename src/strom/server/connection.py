"""One client connection: bytes in, frames, handlers, responses out in request order.

Frames are decoded as they arrive (data_received), queued, and served one at a time by the
connection's task, so responses leave in the order requests came (the Kafka protocol's rule;
clients pipeline). Reading pauses while too many requests are queued. A frame that fails to
decode, an unknown API key, or an unsupported version closes this connection with one log
line; the broker keeps serving everyone else. Record data of large fetch responses goes out
with os.sendfile when the socket's buffer is empty, else by a pread copy; small responses are
sent as one buffer. A follower on this host gets its records copied, not sent with sendfile
(see ``_write_raw``).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from strom.handlers.api_versions import unsupported_version_response
from strom.handlers.auth import quota_throttle
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Delayed, RawResponse, Registration, Request
from strom.protocol.api import ApiKey
from strom.protocol.codec import (
    decode_produce_topics_v0_2,
    decode_request,
    encode_produce_error_response_v0_2,
    encode_response,
)
from strom.protocol.errors import (
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedVersion,
)
from strom.protocol.framing import (
    FrameDecoder,
    encode_response_frame,
    parse_request_header,
    response_header,
)
from strom.security.listeners import Listener
from strom.security.quotas import REQUEST_PERCENTAGE
from strom.security.session import PRE_AUTH_APIS, ListenerSecurity, Session
from strom.security.tls import certificate_dn, map_principal

log = logging.getLogger(__name__)

MAX_QUEUED_REQUESTS = 64
# Fetch responses up to this size are copied into one buffer and sent with one write;
# larger ones are sent zero copy (os.sendfile), which saves copying but costs more syscalls.
COPY_BELOW = 64 * 1024
COPY_BUFFER_MAX = 16 << 20  # a connection keeps a buffer for copied regions up to this size


PLAINTEXT = ListenerSecurity(Listener("PLAINTEXT", "PLAINTEXT", "", 0))


def _pread(region: Any) -> bytes:
    return os.pread(region.fd, region.length, region.position)


def _read_into(region: Any, view: memoryview) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(region.fd, [view[done:]], region.position + done)
        if n <= 0:  # the file was cut meanwhile: keep the frame's length, the CRC tells
            view[done:] = bytes(len(view) - done)
            return
        done += n


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a Unix socket path or no address


class CloseReason(enum.Enum):
    PEER_CLOSED = "peer closed"
    MALFORMED = "malformed request"
    UNKNOWN_API = "unknown API key"
    UNSUPPORTED_VERSION = "unsupported version"
    HANDLER_FAILED = "handler failed"
    IDLE = "idle for connections.max.idle.ms"
    SHUTDOWN = "broker shutdown"
    AUTHENTICATION = "not authenticated"
    AUTHENTICATION_FAILED = "authentication failed"


class KafkaConnection(asyncio.Protocol):
    def __init__(
        self,
        ctx: BrokerContext,
        registry: dict[int, Registration],
        max_frame_size: int,
        on_close: Callable[[KafkaConnection], None] = lambda conn: None,
        max_idle_ms: int = 600_000,
        security: ListenerSecurity | None = None,
    ) -> None:
        self.ctx = ctx
        self.session = Session(security or PLAINTEXT)
        self._max_frame_size = max_frame_size
        # Under TLS the bytes must pass through the SSL object: no sendfile.
        self._zero_copy = not self.session.security.listener.tls
        self._local_peer = False  # a loopback peer (connection_made)
        self._copy_buffer: memoryview | None = None  # see _write_copied
        self._on_close = on_close
        self.registry = registry
        self.decoder = FrameDecoder(max_frame_size if self.session.authenticated
                                    else min(max_frame_size, self.session.security.max_receive_before_auth))
        self.frames: deque[bytes] = deque()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host = ""
        self.close_reason: CloseReason | None = None
        self._loop = asyncio.get_running_loop()  # made by the server's protocol factory
        # Set while the serving task waits for a frame (a bare future: cheaper than an Event).
        self._frame_waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._muted = 0  # quota throttles in force (no request is read or served while any is)
        self._unmuted = asyncio.Event()
        self._unmuted.set()
        # Set while the transport's buffer is below its high-water mark: the next request is
        # served only then, so a slow reader cannot pile up fetch responses in memory.
        self._writable = asyncio.Event()
        self._writable.set()
        self._max_idle_s = max_idle_ms / 1000
        self._last_active = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        # Responses still owed, in request order: while any is delayed, later ones queue
        # behind it (each is a task that writes after its predecessor).
        self._owed: deque[asyncio.Task[None]] = deque()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.peer_host = str(peer[0]) if peer else ""
        self._local_peer = _is_loopback(self.peer_host)
        if self.session.security.listener.tls and not self.session.security.listener.sasl:
            self._certificate_principal(transport)
        loop = self._loop
        self._task = loop.create_task(self._serve())
        self._last_active = loop.time()
        if self._max_idle_s > 0:
            self._idle_timer = loop.call_later(self._max_idle_s, self._check_idle)

    def _certificate_principal(self, transport: asyncio.BaseTransport) -> None:
        """An SSL listener's principal: the client certificate's subject mapped by
        ssl.principal.mapping.rules (no certificate: ANONYMOUS)."""
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return
        dn = certificate_dn(der)
        name = map_principal(dn, self.session.security.principal_rules)
        if name is None:
            self.close(CloseReason.AUTHENTICATION_FAILED, f"no ssl.principal.mapping.rules rule matches {dn}")
            return
        self.session.principal = f"User:{name}"

    def _mute(self, throttle_ms: int) -> None:
        """A client over its quota: read nothing more from it for the throttle time, after
        its response went out (KIP-219; the response carries the time too)."""
        if throttle_ms <= 0 or self.transport is None or self.transport.is_closing():
            return
        self._muted += 1
        self._unmuted.clear()
        self.transport.pause_reading()
        self._loop.call_later(throttle_ms / 1000, self._unmute)

    def _unmute(self) -> None:
        self._muted -= 1
        if not self._muted:
            self._unmuted.set()
        if not self._muted and not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _check_idle(self) -> None:
        """connections.max.idle.ms: close a connection that has been silent that long."""
        loop = self._loop
        idle = loop.time() - self._last_active
        if idle >= self._max_idle_s and not self.frames:
            self.close(CloseReason.IDLE)
        else:
            self._idle_timer = loop.call_later(max(self._max_idle_s - idle, 0.01), self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._last_active = self._loop.time()
        try:
            frames = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self.close(CloseReason.MALFORMED, str(exc))
            return
        if frames:
            self.frames.extend(frames)
            waiter = self._frame_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(self.frames) >= MAX_QUEUED_REQUESTS and not self._paused and self.transport:
                self._paused = True
                self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_reason is None:
            self.close_reason = CloseReason.PEER_CLOSED
        if self._task is not None:
            self._task.cancel()
        for owed in self._owed:
            owed.cancel()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._writable.set()
        self._on_close(self)

    def close(self, reason: CloseReason, detail: str = "") -> None:
        if self.close_reason is None:
            self.close_reason = reason
            if reason not in (CloseReason.PEER_CLOSED, CloseReason.SHUTDOWN, CloseReason.IDLE):
                log.warning("closing connection from %s: %s%s", self.peer, reason.value, f" ({detail})" if detail else "")
        if self.transport is not None:
            self.transport.close()

    # --- the request pipeline -----------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self.close_reason is None:
                if not self.frames:
                    self._frame_waiter = self._loop.create_future()
                    await self._frame_waiter
                    continue
                if self._muted:  # requests already received wait out the throttle too
                    await self._unmuted.wait()
                frame = self.frames.popleft()
                if self._paused and len(self.frames) < MAX_QUEUED_REQUESTS // 2 and self.transport:
                    self._paused = False
                    if not self._muted:
                        self.transport.resume_reading()
                await self._handle(frame)
                self._last_active = self._loop.time()
                if not self._writable.is_set():
                    await self._writable.wait()
        except asyncio.CancelledError:
            pass

    async def _handle(self, frame: bytes) -> None:
        try:
            header, offset = parse_request_header(frame)
        except RemoteProtocolError as exc:
            self.close(CloseReason.MALFORMED, str(exc))
            return
        key, version = header.api_key, header.api_version
        session = self.session
        refusal = session.refusal(key)
        if refusal is not None:
            self.close(CloseReason.AUTHENTICATION, refusal)
            return
        registration = self.registry.get(key)
        if registration is None:
            self.close(CloseReason.UNKNOWN_API, f"api_key={key}")
            return
        if not registration.min_version <= version <= registration.max_version:
            if key == ApiKey.API_VERSIONS:  # KIP-511: answer v0 so any client can read it
                body = encode_response(key, 0, unsupported_version_response())
                self._write(encode_response_frame(key, 0, header.correlation_id, body))
            else:
                self.close(CloseReason.UNSUPPORTED_VERSION, f"api_key={key} version={version}")
            return
        if version < registration.decodable_from:  # Produce v0-2 (see handlers.produce)
            try:
                topics = decode_produce_topics_v0_2(memoryview(frame)[offset:])
            except RemoteProtocolError as exc:
                self.close(CloseReason.MALFORMED, str(exc))
                return
            body = encode_produce_error_response_v0_2(version, topics, ErrorCode.UNSUPPORTED_VERSION)
            self._write(encode_response_frame(key, version, header.correlation_id, body))
            return
        try:
            request = decode_request(key, version, memoryview(frame)[offset:])
        except (RemoteProtocolError, UnsupportedVersion) as exc:
            self.close(CloseReason.MALFORMED, f"api_key={key} version={version}: {exc}")
            return
        request_ = Request(header, request, self.peer_host, session)
        quotas = self.ctx.image.client_quotas
        cpu, wall = time.thread_time() if quotas else 0.0, time.perf_counter()
        try:
            result = await registration.handler(self.ctx, request_)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler for api_key=%d version=%d failed", key, version)
            self.close(CloseReason.HANDLER_FAILED)
            return
        if quotas and key not in PRE_AUTH_APIS:
            # request_percentage: the event-loop thread's time in the handler (CPU, at most
            # the wall time: a parked fetch costs nothing)
            used_ms = min(time.thread_time() - cpu, time.perf_counter() - wall) * 1000
            self._mute(quota_throttle(self.ctx, request_, REQUEST_PERCENTAGE, used_ms))
        while self._owed and self._owed[0].done():
            self._owed.popleft()
        if isinstance(result, Delayed) or self._owed:
            previous = self._owed[-1] if self._owed else None
            if previous is not None and len(self._owed) >= MAX_QUEUED_REQUESTS:
                await asyncio.wait([previous])
            self._owed.append(self._loop.create_task(self._respond_later(previous, header, result, wall)))
            return
        if session.authenticated and self.decoder.max_frame_size < self._max_frame_size:
            self.decoder.max_frame_size = self._max_frame_size  # SASL done: the full limit
        self._respond(header, result, wall)

    async def _respond_later(self, previous: asyncio.Task[None] | None, header: Any, result: Any, started: float) -> None:
        if previous is not None:
            try:
                await asyncio.wait([previous])
            except asyncio.CancelledError:
                if isinstance(result, Delayed) and asyncio.iscoroutine(result.result):
                    result.result.close()  # the connection is gone: never started, never awaited
                raise
        if isinstance(result, Delayed):
            try:
                result = await result.result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delayed response for api_key=%d failed", header.api_key)
                self.close(CloseReason.HANDLER_FAILED)
                return
        self._respond(header, result, started)

    def _respond(self, header: Any, result: Any, started: float) -> None:
        key, version = header.api_key, header.api_version
        error = result.get("error_code", 0) if type(result) is dict else 0
        self.ctx.metrics.request(key, error, time.perf_counter() - started)
        if result is None or self.close_reason is not None:
            return
        if isinstance(result, RawResponse):
            self._write_raw(response_header(key, version, header.correlation_id, result.size), result)
            self._mute(result.throttle_ms)
        else:
            try:
                body = encode_response(key, version, result)
            except LocalProtocolError:
                # A response the schema cannot carry (e.g. a misspelled field): never send a
                # part of it; the client sees a closed connection and retries.
                log.exception("response for api_key=%d version=%d cannot be encoded", key, version)
                self.close(CloseReason.HANDLER_FAILED)
                return
            self._write(encode_response_frame(key, version, header.correlation_id, body))
            self._mute(result.get("throttle_time", 0) if type(result) is dict else 0)
        if self.session.failed:
            self.close(CloseReason.AUTHENTICATION_FAILED)

    def _write(self, data: Any) -> None:
        if self.transport is not None and not self.transport.is_closing() and data:
            self.transport.write(data)

    def _write_raw(self, head: bytes, result: RawResponse) -> None:
        """A response with file regions. A small one is read into one buffer and sent with one
        write: a send costs more than copying a few KiB. A large one goes out zero copy: the
        bytes between regions are joined into one write, each region sent with os.sendfile.

        Except to a follower on this host: it fetches what was appended moments ago, and
        copying that (pread, then an ordinary send) cost the leader and the follower less than
        sendfile's page references did (docs/performance.md, "What replication costs"), while
        sendfile stays cheaper for consumers, which mostly read older data."""
        if result.size <= COPY_BELOW:
            parts: list[bytes | bytearray | memoryview] = [head]
            for chunk in result.chunks:
                parts.append(chunk if isinstance(chunk, bytes | bytearray | memoryview) else _pread(chunk))
            self._write(b"".join(parts))
            return
        if not self._zero_copy or (result.to_follower and self._local_peer):
            self._write_copied(head, result.chunks)
            return
        pending: list[bytes | bytearray | memoryview] = [head]
        for chunk in result.chunks:
            if isinstance(chunk, bytes | bytearray | memoryview):
                pending.append(chunk)
            else:
                self._write(b"".join(pending))
                pending = []
                self._write(self._region(chunk))
        self._write(b"".join(pending))

    def _write_copied(self, head: bytes, chunks: list[Any]) -> None:
        """The regions read into one buffer, sent with the rest in one writev. The buffer is
        kept for the next response unless the transport still holds it (a fresh one each time
        cost page faults: the heap hands large blocks back to the kernel and takes them again)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        size = sum(c.length for c in chunks if not isinstance(c, bytes | bytearray | memoryview))
        buffer = self._copy_buffer
        if buffer is None or len(buffer) < size:
            buffer = memoryview(bytearray(size))
            self._copy_buffer = buffer if size <= COPY_BUFFER_MAX else None
        parts: list[bytes | bytearray | memoryview] = [head]
        at = 0
        for chunk in chunks:
            if isinstance(chunk, bytes | bytearray | memoryview):
                parts.append(chunk)
            else:
                view = buffer[at : at + chunk.length]
                _read_into(chunk, view)
                parts.append(view)
                at += chunk.length
        transport.writelines(parts)
        if transport.get_write_buffer_size():
            self._copy_buffer = None  # not all sent: the transport keeps (views of) it

    def _region(self, region: Any) -> bytes:
        """A file region's bytes: sent here with os.sendfile when the transport has nothing
        buffered (so ordering holds), otherwise read for an ordinary buffered write."""
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() == 0:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sent = os.sendfile(sock.fileno(), region.fd, region.position, region.length)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    sent = 0
                if sent == region.length:
                    return b""
                return os.pread(region.fd, region.length - sent, region.position + sent)
        return _pread(region)
