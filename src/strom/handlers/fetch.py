"""Fetch (key 1), versions 4-18.

For each partition: find the batch holding fetch_offset, return file regions up to
partition_max_bytes and the request's max_bytes, always at least one whole batch for the
first partition that has data (KIP-74), stopping at the high watermark (read_uncommitted) or
the last stable offset (read_committed). If fewer than min_bytes are ready the request waits
for appends until max_wait_ms (docs/architecture.md, "A fetch"). Fetch sessions (KIP-227, v7+) are in
fetch_sessions.py. v13+ names topics by id. The response is encoded by hand
(protocol.fetch_response) so records go out with os.sendfile.
read_committed (KIP-98) also lists the aborted transactions overlapping the returned range
(producer id, first offset), from the segments' transaction indexes; every response carries
the partition's last stable offset.
Only the leader serves a partition (NOT_LEADER_OR_FOLLOWER elsewhere, with the current leader
in the v12+ ``CurrentLeader`` tag when known). A follower's fetch (``replica_id`` before v15,
``replica_state`` from v15) reads up to the log end instead of the high watermark,
reports the follower's fetch offset to the replica manager (ISR and high watermark), and is
answered ``DivergingEpoch`` when its ``last_fetched_epoch`` shows a log that parted from the
leader's (KIP-320: the largest epoch <= the follower's and where it ends here).
Not done: preferred read replicas (KIP-392), rack awareness.
"""

from __future__ import annotations

import uuid
from typing import Any

from strom.handlers.auth import allowed, cluster_allowed, quota_identity, quota_throttle
from strom.handlers.context import BrokerContext
from strom.handlers.fetch_sessions import (
    FetchPosition,
    PartitionKey,
    SessionStart,
)
from strom.handlers.groups import milliseconds
from strom.handlers.leader_epoch import check_leader_epoch
from strom.handlers.leader_hints import FETCH_ERRORS, LeaderHints
from strom.handlers.registry import RawResponse, Request, handles
from strom.log.partition import OffsetOutOfRange
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.fetch_response import (
    FetchPartitionResult,
    FetchTopicResult,
    encode_fetch_response,
)
from strom.security.acl import Operation, ResourceType
from strom.security.quotas import CONSUMER_BYTE_RATE

READ_COMMITTED = 1


def _key(ctx: BrokerContext, version: int, topic: Any) -> tuple[str | None, uuid.UUID | None]:
    if version >= 13:
        return ctx.topic_name(topic.topic_id), topic.topic_id
    return topic.topic, None


def _start(ctx: BrokerContext, request: Request) -> SessionStart:
    body = request.body
    version = request.version
    requested = []
    for topic in body.topics:
        name, topic_id = _key(ctx, version, topic)
        for p in topic.partitions:
            position = FetchPosition(p.fetch_offset, p.partition_max_bytes, getattr(p, "current_leader_epoch", -1))
            requested.append((PartitionKey(name, topic_id, p.partition), position))
    if version < 7:
        return ctx.fetch_sessions.begin(0, -1, requested, [])
    forgotten: list[PartitionKey] = []
    for topic in body.forgotten_topics_data:
        name, topic_id = _key(ctx, version, topic)
        forgotten.extend(PartitionKey(name, topic_id, p) for p in topic.partitions)
    return ctx.fetch_sessions.begin(body.session_id, body.session_epoch, requested, forgotten)


def replica_id_of(request: Request) -> int:
    """The fetching follower's broker id, -1 for a consumer."""
    body = request.body
    if request.version >= 15:
        state = getattr(body, "replica_state", None)
        replica_id: int = state.replica_id if state is not None else -1
    else:
        replica_id = body.replica_id
    return replica_id


def _read(
    ctx: BrokerContext, start: SessionStart, max_bytes: int, isolation: int, replica_id: int = -1,
    last_fetched: dict[tuple[str | None, int], int] | None = None, denied: frozenset[str] = frozenset(),
) -> tuple[list[FetchTopicResult], int, bool]:
    """Read every partition once; returns topics, total record bytes, and whether any
    partition has an error (errors are answered at once, without waiting)."""
    topics: dict[Any, FetchTopicResult] = {}
    budget = max_bytes
    total = 0
    errors = False
    for key, position in start.partitions.items():
        result = FetchPartitionResult(key.partition)
        if key.topic in denied:
            result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            errors = True
            topics.setdefault(key.topic_id or key.topic, FetchTopicResult(key.topic, key.topic_id, [])).partitions.append(result)
            continue
        log, error = ctx.leader_log(key.topic, key.partition) if key.topic is not None else (None, ErrorCode.UNKNOWN_TOPIC_ID)
        if log is None or (error := check_leader_epoch(log, position.current_leader_epoch)):
            result.error_code = error
            errors = True
        elif replica_id >= 0 and (diverging := _diverging(log, position.fetch_offset, (last_fetched or {}).get((key.topic, key.partition), -1))):
            result.diverging_epoch = diverging
            result.high_watermark = log.high_watermark
            result.log_start_offset = log.log_start_offset
            result.last_stable_offset = log.last_stable_offset
            errors = True
        elif replica_id >= 0 and (error := _follower_fetched(ctx, log, replica_id, position.fetch_offset)):
            result.error_code = error
            result.high_watermark = log.high_watermark
            result.log_start_offset = log.log_start_offset
            errors = True
        else:
            result.high_watermark = log.high_watermark
            result.last_stable_offset = log.last_stable_offset
            result.log_start_offset = log.log_start_offset
            limit = min(position.partition_max_bytes, budget)
            committed = isolation == READ_COMMITTED
            try:
                read = log.read(
                    position.fetch_offset,
                    max(limit, 0),
                    max_offset=log.log_end_offset if replica_id >= 0 else result.last_stable_offset if committed else log.high_watermark,
                    min_one_batch=total == 0,
                )
            except OffsetOutOfRange:
                result.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
                errors = True
            else:
                result.records = read.regions
                result.records_size = read.size
                budget -= read.size
                total += read.size
                if committed:
                    aborted = log.aborted_transactions(position.fetch_offset, read.upper_bound) if read.size else []
                    result.aborted_transactions = [(a.producer_id, a.first_offset) for a in aborted]
            if committed and result.aborted_transactions is None:
                result.aborted_transactions = []
        if start.incremental and not _changed(result, position):
            continue
        topic = topics.get(key.topic_id or key.topic)
        if topic is None:
            topic = topics[key.topic_id or key.topic] = FetchTopicResult(key.topic, key.topic_id, [])
        topic.partitions.append(result)
    return list(topics.values()), total, errors


def _follower_fetched(ctx: BrokerContext, log: Any, replica_id: int, fetch_offset: int) -> int:
    """Report a follower's fetch offset to the replica manager; an error code."""
    if fetch_offset > log.log_end_offset:
        return ErrorCode.OFFSET_OUT_OF_RANGE  # ahead of the leader: no proof of being in sync
    return ctx.replica_view.follower_fetched(log.topic, log.partition, replica_id, fetch_offset)


def _diverging(log: Any, fetch_offset: int, last_fetched_epoch: int) -> tuple[int, int] | None:
    """KIP-320: where a follower's log parts from this one, given the epoch of its last
    batch; None when the follower's log is a prefix of this one."""
    if last_fetched_epoch < 0:
        return None
    epoch, end_offset = log.epochs.end_offset_for(last_fetched_epoch, log.log_end_offset)
    if epoch < 0 or (epoch == last_fetched_epoch and end_offset >= fetch_offset):
        return None  # (-1, -1) would read as "no divergence" anyway: it is the tag's default
    return epoch, end_offset


def _changed(result: FetchPartitionResult, position: Any) -> bool:
    return bool(
        result.records_size
        or result.error_code
        or result.high_watermark != position.sent_high_watermark
        or result.log_start_offset != position.sent_log_start_offset
        or result.last_stable_offset != position.sent_last_stable_offset
    )


def _remember(start: SessionStart, topics: list[FetchTopicResult]) -> None:
    if start.session is None:
        return
    for topic in topics:
        for result in topic.partitions:
            position = start.partitions.get(PartitionKey(topic.name, topic.topic_id, result.partition_index))
            if position is not None:
                position.sent_high_watermark = result.high_watermark
                position.sent_log_start_offset = result.log_start_offset
                position.sent_last_stable_offset = result.last_stable_offset


def _denied(ctx: BrokerContext, request: Request, start: SessionStart, replica_id: int) -> frozenset[str]:
    """Topics this fetch may not read: a follower needs CLUSTER_ACTION, a consumer READ on
    each topic (TOPIC_AUTHORIZATION_FAILED, as in Kafka)."""
    names = {key.topic for key in start.partitions if key.topic is not None}
    if replica_id >= 0:
        return frozenset() if cluster_allowed(ctx, request, Operation.CLUSTER_ACTION) else frozenset(names)
    return frozenset(n for n in names if not allowed(ctx, request, Operation.READ, ResourceType.TOPIC, n))


@handles(ApiKey.FETCH, 4, 18)
async def fetch(ctx: BrokerContext, request: Request) -> RawResponse:
    body = request.body
    version = request.version
    start = _start(ctx, request)
    if start.error:
        chunks, size = encode_fetch_response(version, [], error_code=start.error)
        return RawResponse(chunks, size)
    max_wait_ms = milliseconds(body.max_wait)
    deadline = ctx.now_ms() + max_wait_ms
    isolation = body.isolation_level
    max_bytes = min(body.max_bytes, ctx.config.fetch_max_bytes)  # the broker's cap (fetch.max.bytes)
    if ctx.image.client_quotas and replica_id_of(request) < 0:
        window = ctx.quotas.max_in_window(ctx.image.client_quotas, CONSUMER_BYTE_RATE, *quota_identity(request))
        if window is not None:
            max_bytes = min(max_bytes, max(int(window), 1))
    replica_id = replica_id_of(request)
    last_fetched = None
    if replica_id >= 0:
        last_fetched = {
            (_key(ctx, version, t)[0], p.partition): getattr(p, "last_fetched_epoch", -1)
            for t in body.topics for p in t.partitions
        }
    denied = _denied(ctx, request, start, replica_id) if ctx.authorizer is not None else frozenset()
    while True:
        topics, total, errors = _read(ctx, start, max_bytes, isolation, replica_id, last_fetched, denied)
        remaining_ms = deadline - ctx.now_ms()
        if total >= body.min_bytes or errors or remaining_ms <= 0:
            break
        # Followers read up to the log end, consumers up to the high watermark.
        await (ctx.appends if replica_id >= 0 else ctx.commits).wait(remaining_ms / 1000)
    throttle = 0
    if replica_id < 0 and total and ctx.image.client_quotas:
        throttle = quota_throttle(ctx, request, CONSUMER_BYTE_RATE, total)
        if throttle:  # over the consumer_byte_rate: an empty answer, the bytes not counted (as Kafka)
            ctx.quotas.unrecord(ctx.image.client_quotas, CONSUMER_BYTE_RATE, *quota_identity(request), total, ctx.now_ms())
            chunks, size = encode_fetch_response(version, [], session_id=start.session_id, throttle_time_ms=throttle)
            return RawResponse(chunks, size, throttle)
    _remember(start, topics)
    if replica_id < 0 and total:
        for topic in topics:
            if (sent := sum(p.records_size for p in topic.partitions if p.records_size)) and topic.name is not None:
                ctx.metrics.fetched(topic.name, sent)
    endpoints = _name_leaders(ctx, request, topics) if errors and version >= 16 else None
    chunks, size = encode_fetch_response(version, topics, session_id=start.session_id, node_endpoints=endpoints)
    return RawResponse(chunks, size, to_follower=replica_id >= 0)


def _name_leaders(ctx: BrokerContext, request: Request, topics: list[FetchTopicResult]) -> list[dict[str, Any]]:
    """KIP-951: the current leader of each partition answered NOT_LEADER_OR_FOLLOWER or
    FENCED_LEADER_EPOCH, and those leaders' endpoints."""
    hints = LeaderHints(ctx, request)
    for topic in topics:
        for result in topic.partitions:
            if result.error_code in FETCH_ERRORS:
                result.current_leader = hints.leader(topic.name, result.partition_index)
    return hints.node_endpoints
