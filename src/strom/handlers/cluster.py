"""DescribeCluster (key 60), versions 0-2, and DescribeLogDirs (key 35), versions 1-4.

The controller is the broker holding the controller lease in etcd (a single node is its own). DescribeCluster with endpoint_type 2 (controllers,
KIP-919) is for KRaft controllers, which strom does not have: UNSUPPORTED_ENDPOINT_TYPE.
DescribeLogDirs reports the one data directory with each partition's size on disk; strom has
no replica moves between directories, so offset_lag is 0 and is_future_key false.
Authorization as Kafka's: DescribeCluster is open to every principal (its cluster authorized
operations are 0 without DESCRIBE on the cluster); DescribeLogDirs needs DESCRIBE on the cluster
(else CLUSTER_AUTHORIZATION_FAILED and no directories).
"""

from __future__ import annotations

import os

from strom.handlers.auth import cluster_allowed
from strom.handlers.authorized_operations import cluster_authorized_operations
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles, listener_of
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    DescribeClusterResponse,
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsTopic,
)
from strom.security.acl import Operation

BROKER_ENDPOINTS = 1


@handles(ApiKey.DESCRIBE_CLUSTER, 0, 2)
async def describe_cluster(ctx: BrokerContext, request: Request) -> DescribeClusterResponse:
    endpoint_type = request.body.endpoint_type if request.version >= 1 else BROKER_ENDPOINTS
    response: DescribeClusterResponse = {
        "throttle_time": 0,
        "error_code": ErrorCode.NONE,
        "endpoint_type": endpoint_type,
        "cluster_id": ctx.cluster_id,
        "controller_id": ctx.image.controller_id,
        "brokers": [
            {"broker_id": n.node_id, "host": n.host, "port": n.port, "rack": n.rack, "is_fenced": False}
            for n in ctx.nodes(listener_of(request))
        ],
        "cluster_authorized_operations": cluster_authorized_operations(
            ctx, request, request.body.include_cluster_authorized_operations
        ),
    }
    if endpoint_type != BROKER_ENDPOINTS:
        response.update({
            "error_code": ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            "error_message": "strom has no KRaft controllers; ask for broker endpoints",
            "brokers": [],
        })
    return response


@handles(ApiKey.DESCRIBE_LOG_DIRS, 1, 4)
async def describe_log_dirs(ctx: BrokerContext, request: Request) -> DescribeLogDirsResponse:
    if not cluster_allowed(ctx, request, Operation.DESCRIBE):
        return {"throttle_time": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "results": []}
    wanted = request.body.topics
    selected: dict[str, set[int] | None]
    if wanted is None:
        selected = {name: None for name in ctx.metadata.topics()}
    else:
        selected = {t.topic: set(t.partitions) for t in wanted}
    topics: list[DescribeLogDirsTopic] = []
    for name, partitions in selected.items():
        topic = ctx.metadata.topic(name)
        if topic is None:
            continue
        entries: list[DescribeLogDirsPartition] = []
        for p in range(topic.partitions):
            log = ctx.partition_log(name, p)
            if log is None or (partitions is not None and p not in partitions):
                continue
            entries.append({"partition_index": p, "partition_size": log.size_bytes, "offset_lag": 0, "is_future_key": False})
        topics.append({"name": name, "partitions": entries})
    stat = os.statvfs(ctx.data_dir)
    return {
        "throttle_time": 0,
        "error_code": ErrorCode.NONE,
        "results": [
            {
                "error_code": ErrorCode.NONE,
                "log_dir": str(ctx.data_dir.resolve()),
                "topics": topics,
                "total_bytes": stat.f_blocks * stat.f_frsize,
                "usable_bytes": stat.f_bavail * stat.f_frsize,
            }
        ],
    }
