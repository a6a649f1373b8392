"""An in-process broker (no client sockets) for the group handlers: requests go through the
codec at the version asked, to the registered handler, and the answer is encoded at that
version and decoded again, so every test also checks the wire format.

The coordinator runtimes load a partition of __consumer_offsets / __transaction_state in the
background once the replica manager reports this broker leads it, also when FindCoordinator
has just created the topic (requests for it get COORDINATOR_LOAD_IN_PROGRESS meanwhile, which
clients retry). ``call`` therefore waits, after a FindCoordinator, until the coordinators
have loaded every partition they lead, as a client's retries would; ``coordinators_loaded``
does the same on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Delayed, Request, registrations
from strom.metadata.broker_config import BrokerConfig
from strom.protocol.api import ApiKey
from strom.protocol.codec import decode_request, decode_response, encode_request, encode_response
from strom.protocol.framing import RequestHeader
from strom.server.broker import Broker
from strom.server.coordinator_runtime import ShardState

from .harness import session_of

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


async def call(
    ctx: BrokerContext, key: int, version: int, body: dict[str, Any], client_id: str = "test", principal: str | None = None
) -> Any:
    request = Request(
        RequestHeader(key, version, 7, client_id),
        decode_request(key, version, encode_request(key, version, body)),
        "127.0.0.1", session_of(principal),
    )
    result = await registrations()[key].handler(ctx, request)
    if isinstance(result, Delayed):  # acks=all, flush.messages: answered once complete
        result = await result.result
    if key == ApiKey.FIND_COORDINATOR:
        await coordinators_loaded(ctx)
    return decode_response(key, version, encode_response(key, version, result))


async def coordinators_loaded(ctx: BrokerContext, timeout: float = 5) -> None:
    """Wait until the group and transaction coordinators have loaded every partition this
    broker leads (they load in the background)."""

    def loading() -> bool:
        for runtime in (ctx.groups, ctx.transactions):
            if runtime is None:
                continue
            topic = ctx.metadata.topic(runtime.topic)  # type: ignore[attr-defined]
            for p in range(topic.partitions if topic is not None else 0):
                led, _ = ctx.leader_log(topic.name, p)  # type: ignore[union-attr]
                if led is not None and runtime.state(p) is not ShardState.ACTIVE:  # type: ignore[attr-defined]
                    return True
        return False

    async with asyncio.timeout(timeout):
        while loading():
            await asyncio.sleep(0.001)


def run(main: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(main(), timeout))
