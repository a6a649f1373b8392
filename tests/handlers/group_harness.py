"""An in-process broker (no client sockets) for the group handlers: requests go through the
codec at the version asked, to the registered handler, and the answer is encoded at that
version and decoded again, so every test also checks the wire format."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, registrations
from strom.metadata.broker_config import BrokerConfig
from strom.protocol.codec import decode_request, decode_response, encode_request, encode_response
from strom.protocol.framing import RequestHeader
from strom.server.broker import Broker

GROUP_SETTINGS = {
    "offsets_topic_num_partitions": 3,
    "group_initial_rebalance_delay_ms": 0,
    "group_min_session_timeout_ms": 10,
}


def broker_config(data_dir: Path, **settings: Any) -> BrokerConfig:
    return BrokerConfig(data_dir=data_dir, listen_port=0, **{**GROUP_SETTINGS, **settings})


@asynccontextmanager
async def running(data_dir: Path, **settings: Any) -> AsyncIterator[Broker]:
    broker = Broker(broker_config(data_dir, **settings))
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def call(ctx: BrokerContext, key: int, version: int, body: dict[str, Any], client_id: str = "test") -> Any:
    request = Request(
        RequestHeader(key, version, 7, client_id),
        decode_request(key, version, encode_request(key, version, body)),
        "127.0.0.1",
    )
    result = await registrations()[key].handler(ctx, request)
    return decode_response(key, version, encode_response(key, version, result))


def run(main: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(main(), timeout))
