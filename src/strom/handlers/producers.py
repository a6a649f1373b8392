"""InitProducerId (key 22), versions 0-5.

An idempotent producer (no transactional id) gets a new producer id with epoch 0 on every call,
as Kafka's coordinator does; the ids come from the metadata store, which reserves them in
blocks, so they are never reused across restarts. v3+ carries the caller's current id and epoch
(KIP-360), which only matter to transactional producers.
Not done yet: transactional ids (the transaction coordinator) answer COORDINATOR_NOT_AVAILABLE.
"""

from __future__ import annotations

from typing import Any

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode


@handles(ApiKey.INIT_PRODUCER_ID, 0, 5)
async def init_producer_id(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    response: dict[str, Any] = {"throttle_time": 0, "error_code": ErrorCode.NONE, "producer_id": -1, "producer_epoch": -1}
    if body.transactional_id is not None:
        response["error_code"] = ErrorCode.COORDINATOR_NOT_AVAILABLE
        return response
    response.update(producer_id=ctx.metadata.allocate_producer_id(), producer_epoch=0)
    return response
