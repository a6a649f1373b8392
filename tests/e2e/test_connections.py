"""Connection handling: idle connections are closed, slow readers do not stall the broker."""

from __future__ import annotations

import socket
import time

import pytest

from .helpers import check_api_versions

pytestmark = pytest.mark.timeout(60)


def test_idle_connection_is_closed(broker_factory):
    b = broker_factory("-o", "connections.max.idle.ms=300")
    with socket.create_connection(b.address, timeout=5) as s:
        time.sleep(0.8)
        s.settimeout(5)
        assert s.recv(1) == b""  # closed by the broker
    check_api_versions(*b.address)  # and it keeps serving


def test_pipelined_requests_from_a_reader_that_never_reads(broker):
    """A client that sends many requests and reads nothing must not hurt other clients."""
    from .helpers import api_versions_v3_frame

    with socket.create_connection(broker.address, timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        frame = api_versions_v3_frame()
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                sent += s.send(frame * 50)
            except BlockingIOError:
                break  # the broker stopped reading: back-pressure works
        assert sent > 0
        for _ in range(5):
            check_api_versions(*broker.address)
