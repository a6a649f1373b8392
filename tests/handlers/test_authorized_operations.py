"""KIP-430 authorized operations in Metadata, DescribeCluster and DescribeGroups: without an
authorizer Kafka allows, and so reports, every operation the resource type supports
(AclEntry.supportedOperations); a request that does not ask gets the schema default INT32_MIN."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode

from .group_harness import call, run, running
from .harness import call as call_sync
from .harness import create_topic, make_ctx

OMITTED = -(2**31)
# AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
# DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
TOPIC_OPERATIONS = {3, 4, 5, 6, 7, 8, 10, 11}
CLUSTER_OPERATIONS = {5, 7, 8, 9, 10, 11, 12}
GROUP_OPERATIONS = {3, 6, 8}  # Kafka 3.9: Read, Delete, Describe (4.0 adds group configs)


def operations(bits: int) -> set[int] | int:
    return bits if bits == OMITTED else {op for op in range(32) if bits >> op & 1}


@pytest.mark.parametrize("version", range(8, 14))
@pytest.mark.parametrize("include", [False, True])
def test_metadata(tmp_path: Path, version: int, include: bool) -> None:
    ctx = make_ctx(tmp_path)
    create_topic(ctx, "t")
    body = {
        "topics": [{"name": "t"}, {"name": "missing"}],
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": include,
        "include_topic_authorized_operations": include,
    }
    response = call_sync(ctx, ApiKey.METADATA, version, body)
    topic, missing = response.topics
    assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    # Kafka fills in every topic entry it authorized, an unknown name included.
    expected = TOPIC_OPERATIONS if include else OMITTED
    assert operations(topic.topic_authorized_operations) == operations(missing.topic_authorized_operations) == expected
    if version <= 10:  # the cluster's operations moved to DescribeCluster in v11
        assert operations(response.cluster_authorized_operations) == (CLUSTER_OPERATIONS if include else OMITTED)


def test_metadata_unknown_topic_id_is_not_described(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    body = {"topics": [{"topic_id": uuid.uuid4(), "name": None}],
            "allow_auto_topic_creation": False, "include_topic_authorized_operations": True}
    (topic,) = call_sync(ctx, ApiKey.METADATA, 12, body).topics
    assert topic.error_code == ErrorCode.UNKNOWN_TOPIC_ID
    assert topic.topic_authorized_operations == OMITTED


@pytest.mark.parametrize("version", range(0, 3))
@pytest.mark.parametrize("include", [False, True])
def test_describe_cluster(tmp_path: Path, version: int, include: bool) -> None:
    ctx = make_ctx(tmp_path)
    body = {"include_cluster_authorized_operations": include, "endpoint_type": 1}
    response = call_sync(ctx, ApiKey.DESCRIBE_CLUSTER, version, body)
    assert operations(response.cluster_authorized_operations) == (CLUSTER_OPERATIONS if include else OMITTED)


@pytest.mark.parametrize("version", range(3, 7))
def test_describe_groups(tmp_path: Path, version: int) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            await call(ctx, ApiKey.FIND_COORDINATOR, 0, {"key": "g"})
            join = {"group_id": "g", "session_timeout": 10_000, "member_id": "", "protocol_type": "consumer",
                    "protocols": [{"name": "range", "metadata": b""}]}
            assert (await call(ctx, ApiKey.JOIN_GROUP, 0, join)).error_code == ErrorCode.NONE
            body = {"groups": ["g", ""], "include_authorized_operations": True}
            group, invalid = (await call(ctx, ApiKey.DESCRIBE_GROUPS, version, body)).groups
            assert group.error_code == ErrorCode.NONE and operations(group.authorized_operations) == GROUP_OPERATIONS
            # Only groups described without an error get them, as in Kafka.
            assert invalid.error_code == ErrorCode.INVALID_GROUP_ID
            assert invalid.authorized_operations == OMITTED
            body = {"groups": ["g"], "include_authorized_operations": False}
            (group,) = (await call(ctx, ApiKey.DESCRIBE_GROUPS, version, body)).groups
            assert group.authorized_operations == OMITTED

    run(main)
