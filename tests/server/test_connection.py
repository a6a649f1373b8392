"""How a connection sends a fetch response's file regions: os.sendfile, except a pread copy to
a follower on this host (server.connection._write_raw)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from strom.handlers.registry import RawResponse
from strom.log.segment import FileRegion
from strom.server import connection as connection_module
from strom.server.connection import KafkaConnection


class _Socket:
    def fileno(self) -> int:
        return -1


class _Transport:
    def __init__(self, host: str) -> None:
        self.host = host
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> Any:
        return {"peername": (self.host, 40000), "socket": _Socket()}.get(name)

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def writelines(self, parts: list[Any]) -> None:
        self.written.append(b"".join(parts))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, to_follower: bool) -> tuple[bytes, int]:
    """The bytes a connection to ``host`` puts on the wire for a 200 KB region, and how many
    of them went out with os.sendfile."""
    records = os.urandom(200_000)
    path = tmp_path / "segment"
    path.write_bytes(records)
    sent_with_sendfile: list[int] = []

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        sent_with_sendfile.append(count)
        return count

    monkeypatch.setattr(connection_module.os, "sendfile", sendfile)

    async def main() -> list[bytes]:
        conn = KafkaConnection(None, {}, 1 << 20, max_idle_ms=0)  # type: ignore[arg-type]  # no request is served
        transport = _Transport(host)
        conn.connection_made(transport)  # type: ignore[arg-type]
        fd = os.open(path, os.O_RDONLY)
        try:
            conn._write_raw(b"head", RawResponse([b"tags", FileRegion(fd, 0, len(records)), b"tail"], 200_012,
                                                 to_follower=to_follower))
        finally:
            os.close(fd)
            conn.connection_lost(None)
        return transport.written

    written = asyncio.run(main())
    wire = b"".join(written)
    if sent_with_sendfile:
        assert wire == b"headtagstail" and sent_with_sendfile == [len(records)]
    else:
        assert wire == b"headtags" + records + b"tail"
    return wire, sum(sent_with_sendfile)


def test_a_follower_on_this_host_gets_its_records_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("127.0.0.1", "::1"):
        _, by_sendfile = _send(tmp_path, monkeypatch, host, to_follower=True)
        assert by_sendfile == 0


def test_consumers_and_remote_followers_get_sendfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for host, to_follower in (("127.0.0.1", False), ("10.1.2.3", True), ("10.1.2.3", False)):
        _, by_sendfile = _send(tmp_path, monkeypatch, host, to_follower)
        assert by_sendfile == 200_000


class _SlowTransport(_Transport):
    """Keeps what it is given unsent, as a transport with a full socket buffer does."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.held: list[Any] = []

    def writelines(self, parts: list[Any]) -> None:
        self.held.append(parts)

    def get_write_buffer_size(self) -> int:
        return sum(len(p) for parts in self.held for p in parts)


def test_the_copy_buffer_is_reused_only_once_the_transport_has_let_go(tmp_path: Path) -> None:
    first, second = os.urandom(100_000), os.urandom(90_000)
    (tmp_path / "a").write_bytes(first)
    (tmp_path / "b").write_bytes(second)

    async def main() -> None:
        for transport in (_Transport("127.0.0.1"), _SlowTransport("127.0.0.1")):
            conn = KafkaConnection(None, {}, 1 << 20, max_idle_ms=0)  # type: ignore[arg-type]
            conn.connection_made(transport)  # type: ignore[arg-type]
            fds = [os.open(tmp_path / name, os.O_RDONLY) for name in ("a", "b")]
            try:
                conn._write_raw(b"h1", RawResponse([FileRegion(fds[0], 0, len(first))], 100_000, to_follower=True))
                kept = conn._copy_buffer
                conn._write_raw(b"h2", RawResponse([FileRegion(fds[1], 0, len(second))], 90_000, to_follower=True))
            finally:
                for fd in fds:
                    os.close(fd)
                conn.connection_lost(None)
            if isinstance(transport, _SlowTransport):
                assert kept is None  # the first response is still in the transport: not overwritten
                assert [b"".join(bytes(p) for p in parts) for parts in transport.held] == [b"h1" + first, b"h2" + second]
            else:
                assert kept is not None and conn._copy_buffer is kept
                assert transport.written == [b"h1" + first, b"h2" + second]

    asyncio.run(main())
