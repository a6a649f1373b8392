"""Handlers called in-process: a BrokerContext over a temporary directory, requests that go
through the codec at the version asked, and answers encoded and decoded again, so every test
also checks the wire format.

The context is put together as the server does it for a single node (strom.server.broker),
without a listener or coordinator runtimes: the local metadata store with node 0 registered,
the partition logs loaded, a replica manager (no fetchers) that creates and deletes logs as
the metadata image changes, and producer ids from a block reserved in the store. Each
``call`` runs in its own event loop (``asyncio.run``); so does ``create_topic``, the sync
helper for tests that set up topics outside an event loop."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strom.handlers.context import BrokerContext, Node
from strom.handlers.registry import Delayed, Request, registrations
from strom.log.config import LogConfig
from strom.log.manager import LogManager
from strom.metadata.broker_config import BrokerConfig
from strom.metadata.image import BrokerRegistration
from strom.metadata.store import LocalMetadataStore, TopicMetadata
from strom.protocol.codec import decode_request, decode_response, encode_request, encode_response
from strom.protocol.framing import RequestHeader
from strom.security.listeners import Listener
from strom.security.session import ListenerSecurity, Session
from strom.server.replicas import ReplicaManager

# Producer ids reserved in the store per context (the server reserves blocks of 1000 as it goes).
PRODUCER_ID_BLOCK = 1 << 20


def make_ctx(data_dir: Path, **settings: Any) -> BrokerContext:
    config = BrokerConfig(data_dir=data_dir, **settings)
    ctx = BrokerContext(
        config=config,
        metadata=LocalMetadataStore(data_dir, config.node_id),
        logs=LogManager(data_dir),
        node=Node(config.node_id, "127.0.0.1", 9092),
    )
    asyncio.run(start_single_node(ctx))
    return ctx


async def start_single_node(ctx: BrokerContext) -> None:
    """What Broker.start does to the context of a single node, minus listener and runtimes."""
    node, metadata = ctx.node, ctx.metadata
    await metadata.start(BrokerRegistration(node.node_id, node.host, node.port, node.rack))

    def topic_log_config(name: str) -> LogConfig | None:
        topic = metadata.topic(name)
        return ctx.log_config(topic.configs) if topic is not None else None

    ctx.logs.load(topic_log_config, ctx.now_ms())
    first_id = await metadata.allocate_producer_ids(PRODUCER_ID_BLOCK)
    ctx.next_producer_id = itertools.count(first_id).__next__
    replicas = ReplicaManager(ctx)
    ctx.replicas = replicas
    await replicas.start()


def create_topic(
    ctx: BrokerContext, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None, **kwargs: Any
) -> TopicMetadata:
    """ctx.create_topic outside an event loop; the replica manager creates the logs before
    this returns."""
    return asyncio.run(ctx.create_topic(name, partitions, configs or {}, **kwargs))


async def handle(ctx: BrokerContext, request: Request) -> Any:
    """The handler's response as the connection sends it: a Delayed one (acks=all, a
    flush.messages fsync) once it completes."""
    result = await registrations()[request.header.api_key].handler(ctx, request)
    if isinstance(result, Delayed):
        result = await result.result
    return result


def session_of(principal: str | None) -> Session | None:
    """A PLAINTEXT connection's session authenticated as ``principal`` (None: no session)."""
    if principal is None:
        return None
    return Session(ListenerSecurity(Listener("PLAINTEXT", "PLAINTEXT", "", 0)), principal=principal)


def call(ctx: BrokerContext, key: int, version: int, body: dict[str, Any], principal: str | None = None) -> Any:
    """Run the handler on an encoded-then-decoded request (from ``principal`` when given);
    return the decoded response."""
    request = Request(
        RequestHeader(key, version, 7, "test"), decode_request(key, version, encode_request(key, version, body)),
        "127.0.0.1", session_of(principal),
    )
    result = asyncio.run(handle(ctx, request))
    return decode_response(key, version, encode_response(key, version, result))
