"""Fixtures for the metadata stores.

  etcd           session-scoped throwaway etcd (strom.cluster.etcd_server.EtcdServer); skipped
                 when the binary is missing, unless the environment variable CI is set
  private_etcd   function-scoped etcd of its own, for tests that restart, pause or compact it
  cluster_name   a fresh cluster name per test, so tests sharing one etcd never see each other

``run_async(body)`` runs an async test body on a fresh event loop, with a time limit (no
pytest-asyncio here).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from strom.cluster.etcd_server import EtcdNotFound, EtcdServer

T = TypeVar("T")


def _start_or_skip() -> EtcdServer:
    try:
        return EtcdServer().start()
    except EtcdNotFound as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{exc} (CI is set: etcd tests must run)")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdServer]:
    server = _start_or_skip()
    yield server
    server.stop()


@pytest.fixture
def private_etcd() -> Iterator[EtcdServer]:
    server = _start_or_skip()
    yield server
    server.stop()


@pytest.fixture
def cluster_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def run_async(body: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(body(), timeout)

    return asyncio.run(main())
