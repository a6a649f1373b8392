"""Committed offsets: OffsetCommit (key 8) 2-10, OffsetFetch (key 9) 1-10, OffsetDelete
(key 47) 0, TxnOffsetCommit (key 28) 0-4.

Offsets live in __consumer_offsets as OffsetCommit records (strom.coordinator.records); the
group's coordinator shard validates the commit (member, generation, static member fencing,
offset.metadata.max.bytes) and the runtime stores and replays the records before answering.
Partitions of unknown topics, or beyond a topic's partition count, are answered here with
UNKNOWN_TOPIC_OR_PARTITION (v10: unknown topic ids with UNKNOWN_TOPIC_ID) and never reach
the coordinator.

Per version:
- OffsetCommit v2-4 carry retention_time (an expire timestamp per offset, KIP-211 removed it
  in v5); v6+ the leader epoch; v7+ group.instance.id; v9+ answers GROUP_ID_NOT_FOUND for a
  generation-carrying commit to an unknown group (ILLEGAL_GENERATION before); v10 names topics
  by id.
- OffsetFetch v1 answers errors per partition; v2+ adds a top-level error and a null topic list
  meaning every committed partition; v5+ leader epochs; v7+ require_stable (KIP-447: a
  partition with a pending transactional offset answers UNSTABLE_OFFSET_COMMIT); v8+ several
  groups (group-level errors);
  v9's member id / epoch are for KIP-848 groups and ignored for classic ones, as Kafka does;
  v10 names topics by id (topics that no longer exist are left out of "all" answers).
- OffsetDelete refuses groups with members unless they are consumer groups that do not
  subscribe to the topic (GROUP_SUBSCRIBED_TO_TOPIC, NON_EMPTY_GROUP).
- TxnOffsetCommit (KIP-98, send_offsets_to_transaction) stores the offsets as part of the
  producer's transaction; they become committed with its commit marker. The transaction
  coordinator first checks that the group's partition was added to the producer's open
  transaction (AddOffsetsToTxn) under this epoch: a stale epoch answers INVALID_PRODUCER_EPOCH.
  v2+ carries leader epochs, v3+ the member, generation and instance id (KIP-447, checked as
  for OffsetCommit); v0-2 commit without them. v5 (TV2) is not advertised.
Authorization as Kafka's KafkaApis, before any other check of the group or its topics:
OffsetCommit needs READ on the group (else every partition answers GROUP_AUTHORIZATION_FAILED)
and READ on each topic (TOPIC_AUTHORIZATION_FAILED); OffsetFetch DESCRIBE on the group (v1: in
each partition, v2-7: the top-level error, v8+: the group's) and DESCRIBE on the topics: named
ones answer TOPIC_AUTHORIZATION_FAILED, "every topic" leaves them out; OffsetDelete DELETE on the
group (top-level error) and READ on each topic; TxnOffsetCommit WRITE on the transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then READ on the group, then READ on each topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from strom.coordinator.offset_manager import CommitPartition, CommitRequest, TxnCommitRequest
from strom.coordinator.records import OFFSETS_TOPIC, partition_for
from strom.coordinator.shard import CoordinatorError
from strom.handlers.auth import allowed
from strom.handlers.context import BrokerContext
from strom.handlers.groups import call, group_allowed, milliseconds
from strom.handlers.registry import Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import OffsetDeleteResponse
from strom.security.acl import Operation, ResourceType


def _partitions_exist(ctx: BrokerContext, topic: str | None, partitions: list[int]) -> list[bool]:
    metadata = ctx.metadata.topic(topic) if topic is not None else None
    count = metadata.partitions if metadata is not None else 0
    return [0 <= p < count for p in partitions]


def _topic_allowed(ctx: BrokerContext, request: Request, operation: Operation, name: str) -> bool:
    return allowed(ctx, request, operation, ResourceType.TOPIC, name)


def _topic_id(ctx: BrokerContext, name: str) -> uuid.UUID | None:
    topic = ctx.metadata.topic(name)
    return topic.topic_id if topic is not None else None


# --- OffsetCommit -----------------------------------------------------------------------------


def _commit_error_response(topics: Any, error: int, ids: bool) -> dict[str, Any]:
    return {
        "throttle_time": 0,
        "topics": [
            {
                "name": None if ids else topic.name,
                "topic_id": topic.topic_id if ids else None,
                "partitions": [{"partition_index": p.partition_index, "error_code": error} for p in topic.partitions],
            }
            for topic in topics
        ],
    }


@handles(ApiKey.OFFSET_COMMIT, 2, 10)
async def offset_commit(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    by_id = version >= 10
    if not group_allowed(ctx, request, Operation.READ, body.group_id):
        return _commit_error_response(body.topics, ErrorCode.GROUP_AUTHORIZATION_FAILED, by_id)
    if not body.group_id:
        return _commit_error_response(body.topics, ErrorCode.INVALID_GROUP_ID, by_id)
    # Partition results in request order: errors known here, or None for the coordinator's.
    answers: list[tuple[Any, str | None, list[tuple[int, int | None]]]] = []
    valid: list[tuple[str, tuple[CommitPartition, ...]]] = []
    for topic in body.topics:
        name = ctx.topic_name(topic.topic_id) if by_id else topic.name
        indexes = [p.partition_index for p in topic.partitions]
        if name is None:
            answers.append((topic, name, [(i, ErrorCode.UNKNOWN_TOPIC_ID) for i in indexes]))
            continue
        if not _topic_allowed(ctx, request, Operation.READ, name):
            answers.append((topic, name, [(i, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for i in indexes]))
            continue
        exists = _partitions_exist(ctx, name, indexes)
        answers.append((topic, name, [(i, None if ok else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) for i, ok in zip(indexes, exists, strict=True)]))
        committed = tuple(
            CommitPartition(
                p.partition_index,
                p.committed_offset,
                getattr(p, "committed_leader_epoch", -1),
                p.committed_metadata,
            )
            for p, ok in zip(topic.partitions, exists, strict=True)
            if ok
        )
        if committed:
            valid.append((name, committed))
    results: dict[tuple[str, int], int] = {}
    if valid:
        commit = CommitRequest(
            group_id=body.group_id,
            topics=tuple(valid),
            member_id=body.member_id,
            generation_id=body.generation_id_or_member_epoch,
            group_instance_id=getattr(body, "group_instance_id", None),
            retention_time_ms=milliseconds(body.retention_time) if version <= 4 else -1,
            api_version=version,
        )
        try:
            response = await call(ctx, commit.group_id, lambda c, now, _ticket: c.commit_offsets(commit, now))
            for topic_result in response["topics"]:
                for p in topic_result["partitions"]:
                    results[(topic_result["name"], p["partition_index"])] = p["error_code"]
        except CoordinatorError as exc:
            results = {(name, p.partition): exc.error_code for name, partitions in valid for p in partitions}
    return {
        "throttle_time": 0,
        "topics": [
            {
                "name": None if by_id else topic.name,
                "topic_id": topic.topic_id if by_id else None,
                "partitions": [
                    {"partition_index": i, "error_code": error if error is not None else results[(name, i)]}  # type: ignore[index]
                    for i, error in partitions
                ],
            }
            for topic, name, partitions in answers
        ],
    }


# --- OffsetFetch ------------------------------------------------------------------------------


def _unfetched(partitions: Any, error: int) -> list[dict[str, Any]]:
    return [{"partition_index": p, "committed_offset": -1, "committed_leader_epoch": -1, "metadata": "", "error_code": error}
            for p in partitions]


async def _fetch_group(ctx: BrokerContext, request: Request, group_id: str, topics: Any, require_stable: bool = False) -> dict[str, Any]:
    """One group's answer in the v8+ shape (v10: topics named by id), topics in the request's order."""
    by_id = request.version >= 10
    if not group_allowed(ctx, request, Operation.DESCRIBE, group_id):
        return {"group_id": group_id, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "topics": []}
    wanted: list[tuple[str, list[int]]] | None = None
    names: list[str | None] = []
    denied: set[str] = set()
    if topics is not None:
        names = [ctx.topic_name(t.topic_id) if by_id else t.name for t in topics]
        # Topics the principal may not describe are answered here and never looked up.
        denied = {n for n in names if n is not None and not _topic_allowed(ctx, request, Operation.DESCRIBE, n)}
        wanted = [(name, list(t.partition_indexes)) for name, t in zip(names, topics, strict=True)
                  if name is not None and name not in denied]
    if not group_id:
        return {"group_id": group_id, "error_code": ErrorCode.INVALID_GROUP_ID, "topics": []}
    try:
        response = await call(
            ctx, group_id, lambda c, now, _ticket: c.fetch_offsets(group_id, wanted, now, require_stable=require_stable)
        )
    except CoordinatorError as exc:
        return {"group_id": group_id, "error_code": exc.error_code, "topics": []}
    found = iter(response["topics"])
    resolved = []
    if topics is None:
        # Every committed topic the principal may describe (v10: that still exists, by id).
        for topic in found:
            if not _topic_allowed(ctx, request, Operation.DESCRIBE, topic["name"]):
                continue
            if not by_id:
                resolved.append(topic)
            elif (topic_id := _topic_id(ctx, topic["name"])) is not None:
                resolved.append({**topic, "topic_id": topic_id})
    else:
        for name, topic in zip(names, topics, strict=True):
            key = {"topic_id": topic.topic_id} if by_id else {"name": name}
            if name is None:
                resolved.append({**key, "partitions": _unfetched(topic.partition_indexes, ErrorCode.UNKNOWN_TOPIC_ID)})
            elif name in denied:
                resolved.append({**key, "partitions": _unfetched(topic.partition_indexes, ErrorCode.TOPIC_AUTHORIZATION_FAILED)})
            else:
                resolved.append({**next(found), **key})
    return {**response, "topics": resolved}


@handles(ApiKey.OFFSET_FETCH, 1, 10)
async def offset_fetch(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    require_stable = bool(getattr(body, "require_stable", False))
    if version >= 8:
        groups = [await _fetch_group(ctx, request, g.group_id, g.topics, require_stable) for g in body.groups]
        return {"throttle_time": 0, "groups": groups}
    group = await _fetch_group(ctx, request, body.group_id, body.topics, require_stable)
    error = group["error_code"]
    if error and version < 2:
        # v1 has no top-level error: each partition asked for carries it.
        return {
            "topics": [
                {"name": t.name, "partitions": [{"partition_index": p, "committed_offset": -1, "metadata": "", "error_code": error} for p in t.partition_indexes]}
                for t in body.topics
            ]
        }
    return {"throttle_time": 0, "topics": group["topics"], "error_code": error}


# --- OffsetDelete -----------------------------------------------------------------------------


@handles(ApiKey.OFFSET_DELETE, 0, 0)
async def offset_delete(ctx: BrokerContext, request: Request) -> OffsetDeleteResponse:
    body = request.body
    group_id = body.group_id
    if not group_allowed(ctx, request, Operation.DELETE, group_id):
        return {"throttle_time": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "topics": []}
    if not group_id:
        return {"throttle_time": 0, "error_code": ErrorCode.INVALID_GROUP_ID, "topics": []}
    answers: list[tuple[str, list[tuple[int, int | None]]]] = []
    valid: list[tuple[str, list[int]]] = []
    for topic in body.topics:
        indexes = [p.partition_index for p in topic.partitions]
        if not _topic_allowed(ctx, request, Operation.READ, topic.name):
            answers.append((topic.name, [(i, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for i in indexes]))
            continue
        exists = _partitions_exist(ctx, topic.name, indexes)
        answers.append((topic.name, [(i, None if ok else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) for i, ok in zip(indexes, exists, strict=True)]))
        known = [i for i, ok in zip(indexes, exists, strict=True) if ok]
        if known:
            valid.append((topic.name, known))
    operation: Callable[..., Any] = lambda c, now, _ticket: c.delete_offsets(group_id, valid, now)  # noqa: E731
    try:
        response = await call(ctx, group_id, operation)
    except CoordinatorError as exc:
        return {"throttle_time": 0, "error_code": exc.error_code, "topics": []}
    if response["error_code"]:
        return {"throttle_time": 0, "error_code": response["error_code"], "topics": []}
    results = {(t["name"], p["partition_index"]): p["error_code"] for t in response["topics"] for p in t["partitions"]}
    return {
        "throttle_time": 0,
        "error_code": ErrorCode.NONE,
        "topics": [
            {"name": name, "partitions": [{"partition_index": i, "error_code": e if e is not None else results[(name, i)]} for i, e in partitions]}
            for name, partitions in answers
        ],
    }



# --- TxnOffsetCommit --------------------------------------------------------------------------


def _txn_commit_errors(topics: Any, error_for: Callable[[str, int], int]) -> dict[str, Any]:
    return {
        "throttle_time": 0,
        "topics": [
            {"name": t.name, "partitions": [{"partition_index": p.partition_index, "error_code": error_for(t.name, p.partition_index)} for p in t.partitions]}
            for t in topics
        ],
    }


def _verify_txn_commit(ctx: BrokerContext, group_id: str, producer_id: int, producer_epoch: int) -> int:
    """Whether the group's partition is in the producer's open transaction."""
    offsets = ctx.metadata.topic(OFFSETS_TOPIC)
    if ctx.transactions is None or offsets is None:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    error = ctx.transactions.verify(producer_id, producer_epoch, OFFSETS_TOPIC, partition_for(group_id, offsets.partitions))
    # The produce path's retriable error means the transaction coordinator is still loading.
    return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if error == ErrorCode.NOT_ENOUGH_REPLICAS else error


@handles(ApiKey.TXN_OFFSET_COMMIT, 0, 4)
async def txn_offset_commit(ctx: BrokerContext, request: Request) -> dict[str, Any]:
    body = request.body
    version = request.version
    if not allowed(ctx, request, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, body.transactional_id):
        return _txn_commit_errors(body.topics, lambda _t, _p: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if not group_allowed(ctx, request, Operation.READ, body.group_id):
        return _txn_commit_errors(body.topics, lambda _t, _p: ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if not body.group_id:
        return _txn_commit_errors(body.topics, lambda _t, _p: ErrorCode.INVALID_GROUP_ID)
    denied = {t.name for t in body.topics if not _topic_allowed(ctx, request, Operation.READ, t.name)}

    def answer(error_for: Callable[[str, int], int]) -> dict[str, Any]:
        # Refused topics answer so whatever happens to the others (Kafka merges them in).
        return _txn_commit_errors(
            body.topics, lambda t, p: ErrorCode.TOPIC_AUTHORIZATION_FAILED if t in denied else error_for(t, p)
        )

    error = _verify_txn_commit(ctx, body.group_id, body.producer_id, body.producer_epoch)
    if error:
        return answer(lambda _t, _p: error)
    known: list[tuple[str, tuple[CommitPartition, ...]]] = []
    for topic in body.topics:
        if topic.name in denied:
            continue
        exists = _partitions_exist(ctx, topic.name, [p.partition_index for p in topic.partitions])
        committed = tuple(
            CommitPartition(p.partition_index, p.committed_offset, getattr(p, "committed_leader_epoch", -1), p.committed_metadata)
            for p, ok in zip(topic.partitions, exists, strict=True)
            if ok
        )
        if committed:
            known.append((topic.name, committed))
    commit = TxnCommitRequest(
        group_id=body.group_id,
        producer_id=body.producer_id,
        producer_epoch=body.producer_epoch,
        topics=tuple(known),
        member_id=body.member_id if version >= 3 else "",
        generation_id=body.generation_id if version >= 3 else -1,
        group_instance_id=body.group_instance_id if version >= 3 else None,
    )
    results: dict[tuple[str, int], int] = {}
    if known:
        try:
            response = await call(ctx, commit.group_id, lambda c, now, _ticket: c.txn_commit_offsets(commit, now))
            for topic_result in response["topics"]:
                for p in topic_result["partitions"]:
                    results[(topic_result["name"], p["partition_index"])] = p["error_code"]
        except CoordinatorError as exc:
            results = {(name, p.partition): exc.error_code for name, partitions in known for p in partitions}
    return answer(lambda t, p: results.get((t, p), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
