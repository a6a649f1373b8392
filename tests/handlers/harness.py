"""Handlers called in-process: a BrokerContext over a temporary directory, requests that go
through the codec at the version asked, and answers encoded and decoded again, so every test
also checks the wire format."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from strom.handlers.context import BrokerContext, Node
from strom.handlers.registry import Request, registrations
from strom.log.manager import LogManager
from strom.metadata.broker_config import BrokerConfig
from strom.metadata.store import LocalMetadataStore
from strom.protocol.codec import decode_request, decode_response, encode_request, encode_response
from strom.protocol.framing import RequestHeader


def make_ctx(data_dir: Path, **settings: Any) -> BrokerContext:
    return BrokerContext(
        config=BrokerConfig(data_dir=data_dir, **settings),
        metadata=LocalMetadataStore(data_dir),
        logs=LogManager(data_dir),
        node=Node(0, "127.0.0.1", 9092),
    )


def call(ctx: BrokerContext, key: int, version: int, body: dict[str, Any]) -> Any:
    """Run the handler on an encoded-then-decoded request; return the decoded response."""
    request = Request(
        RequestHeader(key, version, 7, "test"), decode_request(key, version, encode_request(key, version, body))
    )
    result = asyncio.run(registrations()[key].handler(ctx, request))
    return decode_response(key, version, encode_response(key, version, result))
