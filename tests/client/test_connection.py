"""strom.client against a real in-process broker on loopback, plus its frame reader sans-IO.

The socket tests run on both asyncio's loop and uvloop (the broker's loop, where replication
will call this client from).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import strom
from strom.client import BrokerConnection, BrokerConnectionError, CloseReason, ConnectionPool
from strom.client.connection import _FrameReader
from strom.protocol import ApiKey, ErrorCode, RemoteProtocolError
from strom.protocol.records import build_batch, read_header

T = TypeVar("T")
# ApiVersions v3+ must name the client software (KIP-511), or the answer is INVALID_REQUEST.
CLIENT_SOFTWARE = {"client_software_name": "strom-test", "client_software_version": "0"}
Runner = Callable[[Awaitable[T]], T]


@pytest.fixture(scope="module")
def broker() -> Iterator[strom.Broker]:
    with strom.Broker() as broker:
        yield broker


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop

    def run(coro: Awaitable[T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def create_topic(conn: BrokerConnection, name: str) -> uuid.UUID:
    body = {
        "topics": [{"name": name, "num_partitions": 1, "replication_factor": 1}],
        "timeout": 5000,
    }
    response = await conn.request(ApiKey.CREATE_TOPICS, 7, body)
    (result,) = response.topics
    assert result.error_code == ErrorCode.NONE, result.error_message
    return result.topic_id


def fetch_body(topic_id: uuid.UUID, offset: int, max_wait_ms: int) -> dict[str, Any]:
    return {
        "max_wait": max_wait_ms,
        "min_bytes": 1,
        "max_bytes": 8 << 20,
        "session_epoch": -1,
        "topics": [
            {
                "topic_id": topic_id,
                "partitions": [
                    {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 8 << 20}
                ],
            }
        ],
    }


# --- against a real broker --------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3])
def test_api_versions(broker: strom.Broker, run: Runner[Any], version: int) -> None:
    """v3 has a flexible request (header v2) but, per KIP-511, a header-v0 response."""

    async def main() -> None:
        conn = await BrokerConnection.open(broker.host, broker.port)
        response = await conn.request(ApiKey.API_VERSIONS, version, CLIENT_SOFTWARE)
        assert response.error_code == ErrorCode.NONE
        keys = {int(k.api_key): (k.min_version, k.max_version) for k in response.api_keys}
        assert keys[ApiKey.FETCH][1] >= 15 and keys[ApiKey.METADATA][1] >= 12
        conn.close()
        await conn.wait_closed()
        assert conn.closed and conn.close_reason is CloseReason.SHUTDOWN

    run(main())


@pytest.mark.parametrize("version", [8, 12])  # v8: classic headers; v12: flexible ones
def test_metadata(broker: strom.Broker, run: Runner[Any], version: int) -> None:
    async def main() -> None:
        conn = await BrokerConnection.open(broker.host, broker.port)
        name = f"meta-{uuid.uuid4().hex[:8]}"
        await create_topic(conn, name)
        body = {"topics": [{"name": name}], "allow_auto_topic_creation": False}
        response = await conn.request(ApiKey.METADATA, version, body)
        assert [b.port for b in response.brokers] == [broker.port]
        (topic,) = response.topics
        assert topic.name == name and topic.error_code == ErrorCode.NONE
        assert [p.partition_index for p in topic.partitions] == [0]
        conn.close()

    run(main())


@pytest.mark.parametrize("value_size", [10, 300_000])  # the second takes the large-frame path
def test_produce_then_fetch(broker: strom.Broker, run: Runner[Any], value_size: int) -> None:
    async def main() -> None:
        conn = await BrokerConnection.open(broker.host, broker.port)
        name = f"data-{uuid.uuid4().hex[:8]}"
        topic_id = await create_topic(conn, name)
        values = [random.randbytes(value_size) for _ in range(3)]
        batch = build_batch([(b"k", v, [], 1_700_000_000_000) for v in values])
        produce = {
            "acks": -1,
            "timeout": 5000,
            "topic_data": [{"name": name, "partition_data": [{"index": 0, "records": batch}]}],
        }
        response = await conn.request(ApiKey.PRODUCE, 9, produce)
        (partition,) = response.responses[0].partition_responses
        assert partition.error_code == ErrorCode.NONE and partition.base_offset == 0

        response = await conn.request(ApiKey.FETCH, 15, fetch_body(topic_id, 0, 500))
        assert response.error_code == ErrorCode.NONE
        (fetched,) = response.responses[0].partitions
        assert fetched.error_code == ErrorCode.NONE and fetched.high_watermark == 3
        records = fetched.records
        assert isinstance(records, bytes)
        header = read_header(records, 0)
        assert (header.base_offset, header.last_offset_delta) == (0, 2)
        # Past the partition leader epoch (which a broker may stamp) it is our batch, CRC and all.
        assert header.size == len(batch) and batch[16:] in records
        conn.close()

    run(main())


def test_pipelined_requests(broker: strom.Broker, run: Runner[Any]) -> None:
    """50 requests written at once on one connection, each answered with its own response."""

    async def main() -> None:
        conn = await BrokerConnection.open(broker.host, broker.port)
        names = [f"absent-{i}-{uuid.uuid4().hex[:6]}" for i in range(50)]

        async def ask(i: int, name: str) -> None:
            if i % 5 == 0:
                response = await conn.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE)
                assert response.error_code == ErrorCode.NONE
                return
            body = {"topics": [{"name": name}], "allow_auto_topic_creation": False}
            response = await conn.request(ApiKey.METADATA, 12, body)
            (topic,) = response.topics
            assert topic.name == name
            assert topic.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

        tasks = [asyncio.create_task(ask(i, name)) for i, name in enumerate(names)]
        await asyncio.sleep(0)  # every task has written its request; none is answered yet
        assert conn.in_flight == 50
        await asyncio.gather(*tasks)
        assert conn.in_flight == 0 and not conn.closed
        conn.close()

    run(main())


def test_cancelled_request_keeps_the_connection_in_sync(
    broker: strom.Broker, run: Runner[Any]
) -> None:
    async def main() -> None:
        conn = await BrokerConnection.open(broker.host, broker.port)
        task = asyncio.create_task(conn.request(ApiKey.METADATA, 12, {"topics": []}))
        await asyncio.sleep(0)
        task.cancel()
        # Answered after the cancelled one, whose response is dropped.
        response = await conn.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE)
        assert response.error_code == ErrorCode.NONE and not conn.closed
        conn.close()

    run(main())


def test_broker_stop_fails_pending_requests(run: Runner[Any]) -> None:
    async def main() -> None:
        with strom.Broker() as broker:
            conn = await BrokerConnection.open(broker.host, broker.port)
            topic_id = await create_topic(conn, "parked")
            pending = [
                asyncio.create_task(conn.request(ApiKey.FETCH, 15, fetch_body(topic_id, 0, 10_000)))
                for _ in range(3)
            ]
            await asyncio.sleep(0.1)
            assert conn.in_flight == 3
            start = time.monotonic()
            await asyncio.to_thread(broker.stop)
            for task in pending:
                with pytest.raises(ConnectionError):
                    await task
            assert time.monotonic() - start < 5
            assert conn.close_reason in (CloseReason.PEER_CLOSED, CloseReason.CONNECTION_BROKEN)
            with pytest.raises(BrokerConnectionError):
                await conn.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE)

    run(main())


def test_open_closed_port_fails_fast(run: Runner[Any]) -> None:
    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(ConnectionError):
            await BrokerConnection.open("127.0.0.1", free_port(), timeout_s=5)
        assert time.monotonic() - start < 1

    run(main())


# --- a misbehaving peer -----------------------------------------------------------------------


async def fake_broker(answer: Callable[[int], bytes | None]) -> tuple[asyncio.Server, int]:
    """A server answering each request frame with ``answer(correlation_id)`` (a whole frame),
    or not at all when that is None."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                frame = await reader.readexactly(size)
                (correlation_id,) = struct.unpack_from(">i", frame, 4)
                response = answer(correlation_id)
                if response is not None:
                    writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _api_versions_v0(correlation_id: int) -> bytes:
    body = struct.pack(">ihi", correlation_id, 0, 0)  # correlation_id, error_code, no api_keys
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda cid: _api_versions_v0(cid + 1), CloseReason.OUT_OF_SYNC),
        (lambda cid: struct.pack(">i", -7), CloseReason.MALFORMED_RESPONSE),
        (lambda cid: struct.pack(">ii", 4, cid), CloseReason.MALFORMED_RESPONSE),  # no body
    ],
    ids=["wrong-correlation-id", "negative-size", "truncated-body"],
)
def test_misbehaving_peer_closes_the_connection(
    run: Runner[Any], answer: Callable[[int], bytes], reason: CloseReason
) -> None:
    async def scenario() -> None:
        server, port = await fake_broker(answer)
        async with server:
            conn = await BrokerConnection.open("127.0.0.1", port)
            with pytest.raises((ConnectionError, RemoteProtocolError)):
                await conn.request(ApiKey.API_VERSIONS, 0, {})
            assert conn.close_reason is reason
            await conn.wait_closed()

    run(scenario())


def test_timeout_closes_the_connection(run: Runner[Any]) -> None:
    async def main() -> None:
        server, port = await fake_broker(lambda correlation_id: None)  # never answers
        async with server:
            conn = await BrokerConnection.open("127.0.0.1", port, request_timeout_s=5)
            late = conn.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE, timeout_s=0.1)
            behind = asyncio.create_task(conn.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE))
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await late
            assert time.monotonic() - start < 1
            assert conn.closed and conn.close_reason is CloseReason.REQUEST_TIMEOUT
            # The FIFO cannot skip the late answer, so the request behind it fails too.
            with pytest.raises(BrokerConnectionError) as info:
                await behind
            assert info.value.reason is CloseReason.REQUEST_TIMEOUT
            with pytest.raises(ConnectionError):
                await conn.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE)
            await conn.wait_closed()

    run(main())


def test_produce_acks_0_expects_no_response(run: Runner[Any]) -> None:
    async def main() -> None:
        server, port = await fake_broker(_api_versions_v0)  # would desync if it were read
        async with server:
            conn = await BrokerConnection.open("127.0.0.1", port)
            produce = {"acks": 0, "timeout": 1000, "topic_data": []}
            assert await conn.request(ApiKey.PRODUCE, 9, produce) is None
            assert conn.in_flight == 0
            conn.close()

    run(main())


# --- the pool ---------------------------------------------------------------------------------


def test_pool_reuses_and_reopens(broker: strom.Broker, run: Runner[Any]) -> None:
    async def main() -> None:
        pool = ConnectionPool()
        first, again = await asyncio.gather(
            pool.get(1, broker.host, broker.port), pool.get(1, broker.host, broker.port)
        )
        assert first is again and len(pool) == 1
        first.close()
        second = await pool.get(1, broker.host, broker.port)
        assert second is not first and not second.closed
        response = await second.request(ApiKey.API_VERSIONS, 3, CLIENT_SOFTWARE)
        assert response.error_code == ErrorCode.NONE
        with pytest.raises(ConnectionError):
            await pool.get(2, "127.0.0.1", free_port())
        pool.close_all()
        assert second.closed and len(pool) == 0

    run(main())


# --- the frame reader, without sockets --------------------------------------------------------


def _feed(reader: _FrameReader, stream: bytes, chunk_sizes: Iterator[int]) -> list[bytes]:
    frames: list[bytes] = []
    pos = 0
    while pos < len(stream):
        buffer = reader.get_buffer()
        n = min(next(chunk_sizes), len(buffer), len(stream) - pos)
        buffer[:n] = stream[pos : pos + n]
        pos += n
        frames += [bytes(f) for f in reader.buffer_updated(n)]
    return frames


def test_frame_reader_splits_at_every_offset() -> None:
    sizes = [0, 1, 5, 300, 1000, 3000, 200, 9000, 4]  # around a 2 KiB buffer's half
    bodies = [random.randbytes(n) for n in sizes]
    stream = b"".join(struct.pack(">i", len(b)) + b for b in bodies)
    for first in range(len(stream)):
        reader = _FrameReader(max_frame_size=1 << 20, buffer_size=2048)
        chunks = itertools.chain([first] if first else [], itertools.repeat(len(stream)))
        assert _feed(reader, stream, chunks) == bodies, first
    for seed in range(20):
        rng = random.Random(seed)
        reader = _FrameReader(max_frame_size=1 << 20, buffer_size=2048)
        chunks = (rng.randint(1, 700) for _ in itertools.count())
        assert _feed(reader, stream * 3, chunks) == bodies * 3


def test_frame_reader_rejects_bad_sizes() -> None:
    for size in (-1, 1025):
        reader = _FrameReader(max_frame_size=1024, buffer_size=2048)
        buffer = reader.get_buffer()
        buffer[:4] = struct.pack(">i", size)
        with pytest.raises(RemoteProtocolError):
            reader.buffer_updated(4)


def test_large_frames_are_read_only_views() -> None:
    reader = _FrameReader(max_frame_size=1 << 20, buffer_size=2048)
    body = random.randbytes(5000)
    (frame,) = _feed(reader, struct.pack(">i", len(body)) + body, iter([100, 5000]))
    assert frame == body
    reader = _FrameReader(max_frame_size=1 << 20, buffer_size=2048)
    buffer = reader.get_buffer()
    buffer[:104] = struct.pack(">i", len(body)) + body[:100]
    assert reader.buffer_updated(104) == []
    buffer = reader.get_buffer()
    assert len(buffer) == len(body) - 100  # the rest goes straight into the frame's buffer
    buffer[:] = body[100:]
    (view,) = reader.buffer_updated(len(body) - 100)
    assert isinstance(view, memoryview) and view.readonly and view == body


def _raw_frames(reader: _FrameReader, stream: bytes) -> list[Any]:
    frames: list[Any] = []
    pos = 0
    while pos < len(stream):
        buffer = reader.get_buffer()
        n = min(len(buffer), len(stream) - pos)
        buffer[:n] = stream[pos : pos + n]
        pos += n
        frames += reader.buffer_updated(n)
    return frames


def test_a_large_frame_buffer_is_reused_only_once_no_view_of_it_is_left() -> None:
    reader = _FrameReader(max_frame_size=1 << 20, buffer_size=2048)
    bodies = [random.randbytes(n) for n in (5000, 6000, 4000, 7000)]
    framed = [struct.pack(">i", len(b)) + b for b in bodies]
    (first,) = _raw_frames(reader, framed[0])
    (second,) = _raw_frames(reader, framed[1])  # the first is still alive: a new buffer
    assert second.obj is not first.obj and first == bodies[0] and second == bodies[1]
    kept = id(second.obj)
    del first
    part = second[10:20]  # a slice keeps the buffer too
    del second
    (third,) = _raw_frames(reader, framed[2])
    assert id(third.obj) != kept and part == bodies[1][10:20]
    kept = id(third.obj)
    del part, third
    (fourth,) = _raw_frames(reader, framed[3])  # larger than the spare: a new buffer
    assert id(fourth.obj) != kept and fourth == bodies[3]
    kept = id(fourth.obj)
    del fourth
    (fifth,) = _raw_frames(reader, framed[0])  # smaller, no view left: the same buffer
    assert id(fifth.obj) == kept and fifth == bodies[0] and len(fifth) == len(bodies[0]) and fifth.readonly


def test_frame_reader_tells_what_a_large_frame_still_misses() -> None:
    reader = _FrameReader(max_frame_size=1 << 20, buffer_size=2048)
    body = random.randbytes(5000)
    assert reader.missing == 0
    stream = struct.pack(">i", len(body)) + body
    reader.get_buffer()[:104] = stream[:104]
    assert reader.buffer_updated(104) == [] and reader.missing == 4900
    reader.get_buffer()[:900] = stream[104:1004]
    assert reader.buffer_updated(900) == [] and reader.missing == 4000
    reader.get_buffer()[:] = stream[1004:]
    assert reader.buffer_updated(4000) == [body] and reader.missing == 0


@pytest.mark.parametrize("size", [300 * 1024, 20 << 20], ids=["300KiB", "20MiB"])
def test_the_rest_of_a_large_response_is_read_at_once(run: Runner[Any], size: int) -> None:
    """SO_RCVLOWAT: after a large response's first bytes, the socket is reported readable only
    once the rest is in (one read for pieces sent apart), then from any byte again. 20 MiB is
    above the kernel's cap on the mark (half net.ipv4.tcp_rmem's largest, 16 MiB by default):
    the mark comes down as the frame fills, so nothing waits for bytes that never come."""

    async def main() -> None:
        body = struct.pack(">i", 0) + random.randbytes(size - 4)  # correlation id 0
        frame = struct.pack(">i", size) + body
        first, rest = frame[:1000], frame[1000:]
        pieces = [rest[i : i + len(rest) // 4 + 1] for i in range(0, len(rest), len(rest) // 4 + 1)]
        marks: list[int] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(struct.unpack(">i", await reader.readexactly(4))[0])
            writer.write(first)
            await asyncio.sleep(0.1)
            marks.append(conn._lowat_socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.05)
            await reader.read()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        async with server:
            conn = await BrokerConnection.open("127.0.0.1", server.sockets[0].getsockname()[1])
            reads = 0
            updated = conn._reader.buffer_updated

            def counting(nbytes: int) -> Any:
                nonlocal reads
                reads += 1
                return updated(nbytes)

            conn._reader.buffer_updated = counting  # type: ignore[method-assign]
            got = await conn.request(ApiKey.API_VERSIONS, 0, {}, decode=lambda version, frame, offset: frame)
            assert got == body
            cap = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2]) // 2
            assert marks == [min(size + 4 - 1000, cap)]
            assert conn._lowat_socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
            if size + 4 - 1000 <= cap:
                assert reads == 2  # the first bytes, then everything else in one read
            conn.close()

    run(main())
