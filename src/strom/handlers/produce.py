"""Produce (key 0), versions 0-13; v0-2 are advertised but answered UNSUPPORTED_VERSION.

Kafka 4 accepts Produce v3+ only (KIP-896) yet advertises v0, because older librdkafka turns
compression off unless v0 is advertised (KAFKA-18659); the server answers v0-2 through
protocol.codec's v0-2 helpers. v13 names topics by id.

Each partition's records are validated by log.validator (magic 2, CRC-32C, lengths,
max.message.bytes, timestamp bounds; records are decoded only for compacted topics,
message.timestamp.before.max.ms or a topic compression.type to convert to), then appended as
they arrived with offsets patched in (docs/architecture.md, "A produce"). acks=0 sends no response; acks=1 and acks=all answer once the batch is in the
log: on a single node the high watermark is the log end, so both are satisfied at append.
Idempotent producers (producer id >= 0) are checked against the partition's producer state
(log.producer_state): a stale epoch is INVALID_PRODUCER_EPOCH, a sequence gap
OUT_OF_ORDER_SEQUENCE_NUMBER, and a retried batch is answered with its original offsets without
being written twice (Kafka's behaviour).
Only the partition's leader appends (NOT_LEADER_OR_FOLLOWER elsewhere). acks=all needs
min.insync.replicas in-sync replicas before appending (NOT_ENOUGH_REPLICAS), then waits until
the high watermark covers the batch, i.e. every in-sync replica has it (the delayed produce:
NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below the minimum meanwhile,
REQUEST_TIMED_OUT at the request's timeout). The wait is a ``Delayed`` response, so the
connection goes on reading and appending the requests behind it. Transactional batches must belong to their
producer's open transaction, with this partition added to it (the transaction coordinator's
verification, KIP-890 part 1): otherwise INVALID_TXN_STATE, INVALID_PRODUCER_EPOCH for a
fenced producer, or the retriable NOT_ENOUGH_REPLICAS while the coordinator loads; a plain
write while the producer's transaction is open is INVALID_TXN_STATE.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from strom.handlers.auth import allowed, quota_throttle
from strom.handlers.context import BrokerContext, Commit
from strom.handlers.groups import milliseconds
from strom.handlers.leader_hints import NOT_LEADER, LeaderHints
from strom.handlers.registry import Delayed, Request, handles
from strom.log.producer_state import ProducerStateError
from strom.log.validator import validate_append
from strom.metadata.store import INTERNAL_TOPICS
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.records import InvalidRecords
from strom.security.acl import Operation, ResourceType
from strom.security.quotas import PRODUCER_BYTE_RATE

log = logging.getLogger(__name__)


def _partition_result(index: int, error: int, message: str | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": error,
        "base_offset": -1,
        "log_append_time": -1,
        "log_start_offset": -1,
        "error_message": message,
    }


ACKS_ALL = -1


# (partition result, what its acks=all answer waits for)
Wait = tuple[dict[str, Any], Commit]


def _append(
    ctx: BrokerContext, topic: str, index: int, records: Any, now_ms: int, acks: int, to_flush: list[Any],
    waits: list[Wait],
) -> dict[str, Any]:
    log_, error = ctx.leader_log(topic, index)
    if log_ is None:
        return _partition_result(index, error)
    if topic in INTERNAL_TOPICS:  # only the coordinators write there, as in Kafka
        return _partition_result(index, ErrorCode.INVALID_TOPIC_EXCEPTION, f"Cannot append to internal topic {topic}")
    if not records:
        return _partition_result(index, ErrorCode.INVALID_RECORD, "No records in the request")
    replicas = ctx.replica_view
    if acks == ACKS_ALL and len(isr := replicas.isr(topic, index)) < log_.config.min_insync_replicas:
        return _partition_result(
            index, ErrorCode.NOT_ENOUGH_REPLICAS,
            f"The size of the current ISR {list(isr)} is insufficient to satisfy the min.isr requirement "
            f"of {log_.config.min_insync_replicas} for partition {topic}-{index}",
        )
    try:
        records, headers = validate_append(records, log_.config, now_ms)
    except InvalidRecords as exc:
        result = _partition_result(index, exc.error_code, str(exc) or None)
        result["record_errors"] = [{"batch_index": i, "batch_index_error_message": m} for i, m in exc.record_errors]
        return result
    transactional = next((h for h in headers if h.is_transactional), None)
    if transactional is not None:
        if ctx.transactions is None:
            return _partition_result(index, ErrorCode.INVALID_TXN_STATE, "no transaction coordinator")
        error = ctx.transactions.verify(transactional.producer_id, transactional.producer_epoch, topic, index)
        if error:
            return _partition_result(index, error, f"transactional write of producer {transactional.producer_id} refused")
    try:
        info = log_.append(records, headers, now_ms)
    except ProducerStateError as exc:
        return _partition_result(index, exc.error_code, str(exc))
    except OSError:
        log.exception("append to %s-%d failed", topic, index)
        return _partition_result(index, ErrorCode.KAFKA_STORAGE_ERROR)
    replicas.appended(topic, index)
    ctx.metrics.produced(topic, info.last_offset - info.base_offset + 1, len(records))
    if log_.unflushed_messages >= log_.config.flush_messages:
        to_flush.append(log_)
    result = {
        "index": index,
        "error_code": ErrorCode.NONE,
        "base_offset": info.base_offset,
        "log_append_time": info.log_append_time,
        "log_start_offset": info.log_start_offset,
    }
    if acks == ACKS_ALL and info.last_offset >= log_.high_watermark:
        waits.append((result, Commit(topic, index, info.last_offset + 1, log_.leader_epoch, log_.config.min_insync_replicas)))
    return result


@handles(ApiKey.PRODUCE, 0, 13, decodable_from=3)
async def produce(ctx: BrokerContext, request: Request) -> dict[str, Any] | Delayed | None:
    body = request.body
    now_ms = ctx.now_ms()
    responses = []
    to_flush: list[Any] = []
    waits: list[Wait] = []
    secured = ctx.authorizer is not None
    txn_refusal = _refusal(ctx, request) if secured else 0
    for topic_data in body.topic_data:
        name = getattr(topic_data, "name", None)
        topic_id = getattr(topic_data, "topic_id", None)
        if name is None:
            name = ctx.topic_name(topic_id)
        denied = txn_refusal
        if secured and not denied and name is not None and not allowed(ctx, request, Operation.WRITE, ResourceType.TOPIC, name):
            denied = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        partitions = []
        for data in topic_data.partition_data:
            if denied:
                partitions.append(_partition_result(data.index, denied))
            elif name is None:
                partitions.append(_partition_result(data.index, ErrorCode.UNKNOWN_TOPIC_ID))
            else:
                partitions.append(_append(ctx, name, data.index, data.records, now_ms, body.acks, to_flush, waits))
        responses.append({"name": name, "topic_id": topic_id, "partition_responses": partitions})
    throttle = 0
    if ctx.image.client_quotas:  # producer_byte_rate: the records' bytes (KIP-13)
        size = sum(len(d.records or b"") for t in body.topic_data for d in t.partition_data)
        throttle = quota_throttle(ctx, request, PRODUCER_BYTE_RATE, size)
    if not to_flush and not waits:
        return None if body.acks == 0 else _answer(ctx, request, responses, throttle)
    return Delayed(_complete(ctx, request, responses, to_flush, waits, throttle))


def _answer(ctx: BrokerContext, request: Request, responses: list[dict[str, Any]], throttle: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"responses": responses, "throttle_time": throttle}
    if request.version < 10:
        return answer
    hints = None  # KIP-951: where the partitions this broker does not lead are led
    for topic in responses:
        for result in topic["partition_responses"]:
            if result["error_code"] == NOT_LEADER:
                hints = hints or LeaderHints(ctx, request)
                result["current_leader"] = hints.leader_field(topic["name"], result["index"])
    if hints is not None and hints.node_endpoints:
        answer["node_endpoints"] = hints.node_endpoints
    return answer


def _refusal(ctx: BrokerContext, request: Request) -> int:
    """A transactional produce needs WRITE on its transactional id (every partition fails
    without it, as in Kafka); 0 when allowed."""
    txn_id = getattr(request.body, "transactional_id", None)
    if txn_id is not None and not allowed(ctx, request, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    return 0


async def _complete(
    ctx: BrokerContext, request: Request, responses: list[dict[str, Any]], to_flush: list[Any], waits: list[Wait],
    throttle: int = 0,
) -> dict[str, Any] | None:
    body = request.body
    # flush.messages: Kafka fsyncs in the append path once that many messages are unflushed,
    # so the acknowledgement waits for it (in a worker thread, not on the event loop).
    for log_ in to_flush:
        await ctx.flush(log_)
    if waits:
        timeout_ms = milliseconds(body.timeout)
        errors = await asyncio.gather(*(ctx.replica_view.wait_for_commit(commit, timeout_ms) for _, commit in waits))
        for (result, _), error in zip(waits, errors, strict=True):
            if error:
                result.update(error_code=error, base_offset=-1, log_append_time=-1, log_start_offset=-1)
    if body.acks == 0:
        return None
    return _answer(ctx, request, responses, throttle)
