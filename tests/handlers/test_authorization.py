"""Every API's ACL checks, as Kafka's KafkaApis makes them, against an in-process broker with
the authorizer on (``super.users=User:admin``).

The table names, per API, the ACLs alice needs and the error she gets without each one; each
row runs once with all of them (the answer is the API's own, never an authorization error) and
once per ACL left out (that ACL's error). Then the filters: Metadata, ListGroups,
ListTransactions, DescribeTransactions and OffsetFetch show alice only what she may describe,
and the KIP-430 authorized operations come from her ACLs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from strom.handlers.context import BrokerContext
from strom.metadata.broker_config import BrokerConfig, BrokerConfigError
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import AclBinding, Operation, PatternType, Permission, ResourceType
from strom.server.broker import inter_broker, listener_securities

from .group_harness import call, run, running

ADMIN, ALICE = "User:admin", "User:alice"
SECURED = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": ADMIN}
SETTINGS = {"transaction_state_log_num_partitions": 1, "offsets_topic_num_partitions": 1, "values": SECURED}

E = ErrorCode
T, G, C, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER, ResourceType.TRANSACTIONAL_ID
Op = Operation
CLUSTER = "kafka-cluster"


class Grant(NamedTuple):
    resource_type: ResourceType
    name: str
    operation: Operation
    error: int  # alice's error without this ACL


class Case(NamedTuple):
    api: int
    version: int
    body: dict[str, Any]
    grants: tuple[Grant, ...]
    allowed: int  # the first error of the answer with every grant (0: none)


def _group(group: str = "g") -> Grant:
    return Grant(G, group, Op.READ, E.GROUP_AUTHORIZATION_FAILED)


def _topic(op: Operation, name: str = "t") -> Grant:
    return Grant(T, name, op, E.TOPIC_AUTHORIZATION_FAILED)


def _txn(op: Operation = Op.WRITE) -> Grant:
    return Grant(X, "tx", op, E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)


def _cluster(op: Operation) -> Grant:
    return Grant(C, CLUSTER, op, E.CLUSTER_AUTHORIZATION_FAILED)


T0 = [{"name": "t", "partition_indexes": [0]}]
TXN = {"transactional_id": "tx", "producer_id": 1, "producer_epoch": 0}
CASES: dict[str, Case] = {
    "FindCoordinator group": Case(ApiKey.FIND_COORDINATOR, 3, {"key": "g", "key_type": 0},
                                  (Grant(G, "g", Op.DESCRIBE, E.GROUP_AUTHORIZATION_FAILED),), E.NONE),
    "FindCoordinator txn": Case(ApiKey.FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": ["tx"]}, (_txn(Op.DESCRIBE),), E.NONE),
    "JoinGroup": Case(ApiKey.JOIN_GROUP, 5, {
        "group_id": "g", "session_timeout": 10_000, "rebalance_timeout": 10_000, "member_id": "", "group_instance_id": None,
        "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]}, (_group(),), E.MEMBER_ID_REQUIRED),
    "SyncGroup": Case(ApiKey.SYNC_GROUP, 3, {"group_id": "g", "generation_id": 1, "member_id": "m", "group_instance_id": None,
                                             "assignments": []}, (_group(),), E.UNKNOWN_MEMBER_ID),
    "Heartbeat": Case(ApiKey.HEARTBEAT, 3, {"group_id": "g", "generation_id": 1, "member_id": "m", "group_instance_id": None},
                      (_group(),), E.UNKNOWN_MEMBER_ID),
    "LeaveGroup": Case(ApiKey.LEAVE_GROUP, 0, {"group_id": "g", "member_id": "m"}, (_group(),), E.UNKNOWN_MEMBER_ID),
    "DescribeGroups": Case(ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["g"], "include_authorized_operations": False},
                           (Grant(G, "g", Op.DESCRIBE, E.GROUP_AUTHORIZATION_FAILED),), E.NONE),
    "DeleteGroups": Case(ApiKey.DELETE_GROUPS, 2, {"groups_names": ["g"]},
                         (Grant(G, "g", Op.DELETE, E.GROUP_AUTHORIZATION_FAILED),), E.NONE),
    "OffsetCommit": Case(ApiKey.OFFSET_COMMIT, 8, {
        "group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "", "group_instance_id": None,
        "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 7}]}]},
        (_group(), _topic(Op.READ)), E.NONE),
    "OffsetFetch v7": Case(ApiKey.OFFSET_FETCH, 7, {"group_id": "g", "topics": T0, "require_stable": False},
                           (Grant(G, "g", Op.DESCRIBE, E.GROUP_AUTHORIZATION_FAILED), _topic(Op.DESCRIBE)), E.NONE),
    "OffsetFetch v8": Case(ApiKey.OFFSET_FETCH, 8, {"groups": [{"group_id": "g", "topics": T0}], "require_stable": False},
                           (Grant(G, "g", Op.DESCRIBE, E.GROUP_AUTHORIZATION_FAILED), _topic(Op.DESCRIBE)), E.NONE),
    "OffsetDelete": Case(ApiKey.OFFSET_DELETE, 0, {"group_id": "g", "topics": [{"name": "t", "partitions": [{"partition_index": 0}]}]},
                         (Grant(G, "g", Op.DELETE, E.GROUP_AUTHORIZATION_FAILED), _topic(Op.READ)), E.NONE),
    "TxnOffsetCommit": Case(ApiKey.TXN_OFFSET_COMMIT, 3, {
        **TXN, "group_id": "g", "generation_id": -1, "member_id": "", "group_instance_id": None,
        "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1, "committed_leader_epoch": -1,
                                                 "committed_metadata": ""}]}]},
        (_txn(), _group(), _topic(Op.READ)), E.INVALID_PRODUCER_ID_MAPPING),
    "InitProducerId transactional": Case(ApiKey.INIT_PRODUCER_ID, 4, {
        "transactional_id": "tx", "transaction_timeout": 10_000, "producer_id": -1, "producer_epoch": -1}, (_txn(),), E.NONE),
    "InitProducerId idempotent": Case(ApiKey.INIT_PRODUCER_ID, 4, {
        "transactional_id": None, "transaction_timeout": 10_000, "producer_id": -1, "producer_epoch": -1},
        (_cluster(Op.IDEMPOTENT_WRITE),), E.NONE),
    # KIP-679: WRITE on any topic is enough for an idempotent producer.
    "InitProducerId idempotent by topic": Case(ApiKey.INIT_PRODUCER_ID, 4, {
        "transactional_id": None, "transaction_timeout": 10_000, "producer_id": -1, "producer_epoch": -1},
        (Grant(T, "t", Op.WRITE, E.CLUSTER_AUTHORIZATION_FAILED),), E.NONE),
    "DescribeProducers": Case(ApiKey.DESCRIBE_PRODUCERS, 0, {"topics": T0}, (_topic(Op.READ),), E.NONE),
    "AddPartitionsToTxn": Case(ApiKey.ADD_PARTITIONS_TO_TXN, 3, {
        "v3_and_below_transactional_id": "tx", "v3_and_below_producer_id": 1, "v3_and_below_producer_epoch": 0,
        "v3_and_below_topics": [{"name": "t", "partitions": [0]}]}, (_txn(), _topic(Op.WRITE)), E.INVALID_PRODUCER_ID_MAPPING),
    "AddOffsetsToTxn": Case(ApiKey.ADD_OFFSETS_TO_TXN, 3, {**TXN, "group_id": "g"}, (_txn(), _group()), E.INVALID_PRODUCER_ID_MAPPING),
    "EndTxn": Case(ApiKey.END_TXN, 3, {**TXN, "committed": False}, (_txn(),), E.INVALID_PRODUCER_ID_MAPPING),
    "DescribeTransactions": Case(ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx"]}, (_txn(Op.DESCRIBE),),
                                 E.TRANSACTIONAL_ID_NOT_FOUND),
    "WriteTxnMarkers": Case(ApiKey.WRITE_TXN_MARKERS, 1, {"markers": [{
        "producer_id": 1, "producer_epoch": 0, "transaction_result": False, "topics": T0, "coordinator_epoch": 0}]},
        (_cluster(Op.CLUSTER_ACTION),), E.NONE),
    "WriteTxnMarkers by ALTER": Case(ApiKey.WRITE_TXN_MARKERS, 1, {"markers": [{
        "producer_id": 1, "producer_epoch": 0, "transaction_result": False, "topics": T0, "coordinator_epoch": 0}]},
        (_cluster(Op.ALTER),), E.NONE),
    "ElectLeaders": Case(ApiKey.ELECT_LEADERS, 2, {"election_type": 0, "topic_partitions": [{"topic": "t", "partitions": [0]}],
                                                   "timeout": 60_000}, (_cluster(Op.ALTER),), E.ELECTION_NOT_NEEDED),
    "AlterPartitionReassignments": Case(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, {
        "timeout": 60_000, "topics": [{"name": "t", "partitions": [{"partition_index": 0, "replicas": None}]}]},
        (_cluster(Op.ALTER),), E.NO_REASSIGNMENT_IN_PROGRESS),
    "ListPartitionReassignments": Case(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, {"timeout": 60_000, "topics": None},
                                       (_cluster(Op.DESCRIBE),), E.NONE),
    "DescribeUserScramCredentials": Case(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, {"users": None}, (_cluster(Op.DESCRIBE),), E.NONE),
    "AlterUserScramCredentials": Case(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, {
        "deletions": [{"name": "bob", "mechanism": 1}], "upsertions": []}, (_cluster(Op.ALTER),), E.RESOURCE_NOT_FOUND),
    "DescribeLogDirs": Case(ApiKey.DESCRIBE_LOG_DIRS, 4, {"topics": None}, (_cluster(Op.DESCRIBE),), E.NONE),
    "DescribeConfigs topic": Case(ApiKey.DESCRIBE_CONFIGS, 4, {
        "resources": [{"resource_type": 2, "resource_name": "t", "configuration_keys": None}],
        "include_synonyms": False, "include_documentation": False}, (_topic(Op.DESCRIBE_CONFIGS),), E.NONE),
    "DescribeConfigs broker": Case(ApiKey.DESCRIBE_CONFIGS, 4, {
        "resources": [{"resource_type": 4, "resource_name": "0", "configuration_keys": None}],
        "include_synonyms": False, "include_documentation": False}, (_cluster(Op.DESCRIBE_CONFIGS),), E.NONE),
    "AlterConfigs topic": Case(ApiKey.ALTER_CONFIGS, 2, {"validate_only": True, "resources": [
        {"resource_type": 2, "resource_name": "t", "configs": [{"name": "retention.ms", "value": "1000"}]}]},
        (_topic(Op.ALTER_CONFIGS),), E.NONE),
    "IncrementalAlterConfigs broker": Case(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, {"validate_only": True, "resources": [
        {"resource_type": 4, "resource_name": "", "configs": [{"name": "log.retention.ms", "config_operation": 0, "value": "1000"}]}]},
        (_cluster(Op.ALTER_CONFIGS),), E.NONE),
    "DeleteRecords": Case(ApiKey.DELETE_RECORDS, 2, {"topics": [{"name": "t", "partitions": [{"partition_index": 0, "offset": 0}]}],
                                                     "timeout": 1000}, (_topic(Op.DELETE),), E.NONE),
    "Metadata": Case(ApiKey.METADATA, 12, {"topics": [{"name": "t"}], "allow_auto_topic_creation": False,
                                           "include_topic_authorized_operations": False}, (_topic(Op.DESCRIBE),), E.NONE),
    "Metadata auto-creation": Case(ApiKey.METADATA, 12, {"topics": [{"name": "new"}], "allow_auto_topic_creation": True,
                                                         "include_topic_authorized_operations": False},
                                   (_topic(Op.DESCRIBE, "new"), _topic(Op.CREATE, "new")), E.NONE),
}


def errors(value: Any) -> list[int]:
    """Every error code in a decoded response, depth first."""
    if isinstance(value, list | tuple):
        return [e for item in value for e in errors(item)]
    if not dataclasses.is_dataclass(value):
        return []
    found = []
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        found += [item] if f.name in ("error_code", "partition_error_code") else errors(item)
    return found


def first_error(response: Any) -> int:
    return next((e for e in errors(response) if e), ErrorCode.NONE)


async def grant(ctx: BrokerContext, *grants: tuple[ResourceType, str, Operation], principal: str = ALICE,
                pattern: PatternType = PatternType.LITERAL) -> None:
    await ctx.metadata.alter_acls(
        [AclBinding(t, name, pattern, principal, "*", op, Permission.ALLOW) for t, name, op in grants], [])


async def admin(ctx: BrokerContext, key: int, version: int, body: dict[str, Any]) -> Any:
    return await call(ctx, key, version, body, principal=ADMIN)


async def alice(ctx: BrokerContext, key: int, version: int, body: dict[str, Any]) -> Any:
    return await call(ctx, key, version, body, principal=ALICE)


async def commit(ctx: BrokerContext, group: str, topics: list[str]) -> None:
    body = {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "", "group_instance_id": None,
            "topics": [{"name": t, "partitions": [{"partition_index": 0, "committed_offset": 5}]} for t in topics]}
    assert first_error(await admin(ctx, ApiKey.OFFSET_COMMIT, 8, body)) == ErrorCode.NONE


async def setup(ctx: BrokerContext) -> None:
    """Topics t and secret, the coordinators loaded (as the admin), and group g with offsets."""
    await ctx.create_topic("t", 1, {})
    await ctx.create_topic("secret", 1, {})
    await admin(ctx, ApiKey.FIND_COORDINATOR, 3, {"key": "g", "key_type": 0})
    await admin(ctx, ApiKey.FIND_COORDINATOR, 3, {"key": "tx", "key_type": 1})
    await commit(ctx, "g", ["t", "secret"])


PARAMS = [pytest.param(name, missing, id=f"{name}-{'all' if missing is None else 'without ' + c.grants[missing].operation.name}")
          for name, c in CASES.items() for missing in [None, *range(len(c.grants))]]


@pytest.mark.parametrize(("name", "missing"), PARAMS)
def test_operation_table(tmp_path: Path, name: str, missing: int | None) -> None:
    case = CASES[name]

    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            given = [g for i, g in enumerate(case.grants) if i != missing]
            await grant(ctx, *((g.resource_type, g.name, g.operation) for g in given))
            response = await alice(ctx, case.api, case.version, case.body)
            expected = case.allowed if missing is None else case.grants[missing].error
            assert first_error(response) == expected, response

    run(main)


def test_unauthorized_clients_learn_nothing_about_existence(tmp_path: Path) -> None:
    """A topic or group alice may not describe answers the same whether it exists or not."""

    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            body = {"topics": [{"name": "secret"}, {"name": "missing"}], "allow_auto_topic_creation": True,
                    "include_topic_authorized_operations": True}
            secret, missing = (await alice(ctx, ApiKey.METADATA, 12, body)).topics
            for entry in (secret, missing):
                assert (entry.error_code, entry.partitions, entry.topic_authorized_operations) == (
                    ErrorCode.TOPIC_AUTHORIZATION_FAILED, (), -(2**31))
            assert secret.topic_id == missing.topic_id  # the zero id: nothing leaks
            assert ctx.metadata.topic("missing") is None  # no DESCRIBE: never auto-created
            # Asked by id, the id is answered (ids are not secret, as in Kafka), not the name.
            secret_id = ctx.metadata.topic("secret").topic_id
            (by_id,) = (await alice(ctx, ApiKey.METADATA, 12, {"topics": [{"name": None, "topic_id": secret_id}],
                                                               "allow_auto_topic_creation": False})).topics
            assert (by_id.error_code, by_id.name, by_id.topic_id) == (ErrorCode.TOPIC_AUTHORIZATION_FAILED, None, secret_id)
            described = await alice(ctx, ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["g", "nothing"], "include_authorized_operations": True})
            assert [(g.error_code, g.group_state) for g in described.groups] == [(ErrorCode.GROUP_AUTHORIZATION_FAILED, "")] * 2

    run(main)


def test_metadata_lists_only_describable_topics_and_their_operations(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            await grant(ctx, (T, "t", Op.READ))
            body = {"topics": None, "allow_auto_topic_creation": False, "include_topic_authorized_operations": True,
                    "include_cluster_authorized_operations": True}
            response = await alice(ctx, ApiKey.METADATA, 10, body)
            assert [t.name for t in response.topics] == ["t"]  # not secret, nor the internal topics
            assert operations(response.topics[0].topic_authorized_operations) == {Op.READ, Op.DESCRIBE}  # READ implies DESCRIBE
            assert response.cluster_authorized_operations == 0  # no DESCRIBE on the cluster: none, as Kafka
            assert {t.name for t in (await admin(ctx, ApiKey.METADATA, 10, body)).topics} >= {"t", "secret", "__consumer_offsets"}
            await grant(ctx, (C, CLUSTER, Op.DESCRIBE), (C, CLUSTER, Op.IDEMPOTENT_WRITE))
            response = await alice(ctx, ApiKey.METADATA, 10, body)
            assert operations(response.cluster_authorized_operations) == {Op.DESCRIBE, Op.IDEMPOTENT_WRITE}
            cluster = await alice(ctx, ApiKey.DESCRIBE_CLUSTER, 1, {"include_cluster_authorized_operations": True, "endpoint_type": 1})
            assert cluster.error_code == ErrorCode.NONE  # DescribeCluster is open to all, as in Kafka
            assert operations(cluster.cluster_authorized_operations) == {Op.DESCRIBE, Op.IDEMPOTENT_WRITE}

    run(main)


def operations(bits: int) -> set[Operation]:
    return {op for op in Operation if bits >> op & 1}


def test_describe_cluster_operations_without_describe(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            body = {"include_cluster_authorized_operations": True, "endpoint_type": 1}
            cluster = await alice(broker.ctx, ApiKey.DESCRIBE_CLUSTER, 1, body)
            assert (cluster.error_code, cluster.cluster_authorized_operations) == (ErrorCode.NONE, 0)
            admin_ops = (await admin(broker.ctx, ApiKey.DESCRIBE_CLUSTER, 1, body)).cluster_authorized_operations
            assert operations(admin_ops) == {Op.CREATE, Op.ALTER, Op.DESCRIBE, Op.CLUSTER_ACTION, Op.DESCRIBE_CONFIGS,
                                             Op.ALTER_CONFIGS, Op.IDEMPOTENT_WRITE}

    run(main)


def test_list_groups_and_describe_groups_operations(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            await commit(ctx, "alice-g", ["t"])
            await commit(ctx, "other", ["t"])
            await grant(ctx, (G, "alice-", Op.READ), pattern=PatternType.PREFIXED)
            listed = await alice(ctx, ApiKey.LIST_GROUPS, 4, {"states_filter": []})
            assert [g.group_id for g in listed.groups] == ["alice-g"]
            described = await alice(ctx, ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["alice-g"], "include_authorized_operations": True})
            assert operations(described.groups[0].authorized_operations) == {Op.READ, Op.DESCRIBE}
            await grant(ctx, (C, CLUSTER, Op.DESCRIBE))  # DESCRIBE on the cluster: every group
            listed = await alice(ctx, ApiKey.LIST_GROUPS, 4, {"states_filter": []})
            assert sorted(g.group_id for g in listed.groups) == ["alice-g", "g", "other"]

    run(main)


def test_offset_fetch_filters_and_refuses_per_version(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            both = [{"name": "t", "partition_indexes": [0]}, {"name": "secret", "partition_indexes": [0]}]
            # v1 has no top-level error: a refused group is in every partition.
            v1 = await alice(ctx, ApiKey.OFFSET_FETCH, 1, {"group_id": "g", "topics": both})
            assert [p.error_code for t in v1.topics for p in t.partitions] == [ErrorCode.GROUP_AUTHORIZATION_FAILED] * 2
            v7 = await alice(ctx, ApiKey.OFFSET_FETCH, 7, {"group_id": "g", "topics": None, "require_stable": False})
            assert (v7.error_code, v7.topics) == (ErrorCode.GROUP_AUTHORIZATION_FAILED, ())
            await grant(ctx, (G, "g", Op.DESCRIBE), (T, "t", Op.DESCRIBE))
            # Named topics: the refused one answers TOPIC_AUTHORIZATION_FAILED.
            named = await alice(ctx, ApiKey.OFFSET_FETCH, 7, {"group_id": "g", "topics": both, "require_stable": False})
            assert [(t.name, p.committed_offset, p.error_code) for t in named.topics for p in t.partitions] == [
                ("t", 5, 0), ("secret", -1, ErrorCode.TOPIC_AUTHORIZATION_FAILED)]
            # Every topic: the refused ones are left out.
            for version in (2, 7):
                every = await alice(ctx, ApiKey.OFFSET_FETCH, version, {"group_id": "g", "topics": None, "require_stable": False})
                assert [t.name for t in every.topics] == ["t"]
            v8 = await alice(ctx, ApiKey.OFFSET_FETCH, 8, {"groups": [{"group_id": "g", "topics": None},
                                                                     {"group_id": "other", "topics": None}],
                                                          "require_stable": False})
            assert [(g.group_id, g.error_code, [t.name for t in g.topics]) for g in v8.groups] == [
                ("g", 0, ["t"]), ("other", ErrorCode.GROUP_AUTHORIZATION_FAILED, [])]
            ids = {n: ctx.metadata.topic(n).topic_id for n in ("t", "secret")}
            v10 = await alice(ctx, ApiKey.OFFSET_FETCH, 10, {"groups": [{"group_id": "g", "topics": [
                {"topic_id": ids["t"], "partition_indexes": [0]}, {"topic_id": ids["secret"], "partition_indexes": [0]}]}],
                "require_stable": False})
            assert [(t.topic_id, t.partitions[0].error_code) for t in v10.groups[0].topics] == [
                (ids["t"], 0), (ids["secret"], ErrorCode.TOPIC_AUTHORIZATION_FAILED)]

    run(main)


def test_transactions_show_only_what_alice_may_describe(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            producers = {}
            for txn_id in ("tx", "other"):
                body = {"transactional_id": txn_id, "transaction_timeout": 60_000, "producer_id": -1, "producer_epoch": -1}
                producers[txn_id] = await admin(ctx, ApiKey.INIT_PRODUCER_ID, 4, body)
            add = {"v3_and_below_transactional_id": "tx", "v3_and_below_producer_id": producers["tx"].producer_id,
                   "v3_and_below_producer_epoch": producers["tx"].producer_epoch,
                   "v3_and_below_topics": [{"name": "t", "partitions": [0]}, {"name": "secret", "partitions": [0]}]}
            assert first_error(await admin(ctx, ApiKey.ADD_PARTITIONS_TO_TXN, 3, add)) == ErrorCode.NONE
            body = {"state_filters": [], "producer_id_filters": [], "duration_filter": -1}
            assert {s.transactional_id for s in (await admin(ctx, ApiKey.LIST_TRANSACTIONS, 1, body)).transaction_states} == {"tx", "other"}
            assert (await alice(ctx, ApiKey.LIST_TRANSACTIONS, 1, body)).transaction_states == ()
            await grant(ctx, (X, "tx", Op.DESCRIBE), (T, "t", Op.DESCRIBE))
            assert [s.transactional_id for s in (await alice(ctx, ApiKey.LIST_TRANSACTIONS, 1, body)).transaction_states] == ["tx"]
            (state,) = (await alice(ctx, ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx"]})).transaction_states
            assert state.error_code == ErrorCode.NONE
            assert [t.topic for t in state.topics] == ["t"]  # not secret

    run(main)


def test_internal_topics_cannot_be_added_to_a_transaction(tmp_path: Path) -> None:
    """Kafka refuses AddPartitionsToTxn for internal topics whatever the ACLs (AddOffsetsToTxn adds them)."""

    async def main() -> None:
        async with running(tmp_path, **SETTINGS) as broker:
            ctx = broker.ctx
            await setup(ctx)
            body = {"v3_and_below_transactional_id": "tx", "v3_and_below_producer_id": 1, "v3_and_below_producer_epoch": 0,
                    "v3_and_below_topics": [{"name": "__consumer_offsets", "partitions": [0]}, {"name": "t", "partitions": [0]}]}
            response = await admin(ctx, ApiKey.ADD_PARTITIONS_TO_TXN, 3, body)
            assert [p.partition_error_code for t in response.results_by_topic_v3_and_below for p in t.results_by_partition] == [
                ErrorCode.TOPIC_AUTHORIZATION_FAILED, ErrorCode.OPERATION_NOT_ATTEMPTED]

    run(main)


@pytest.mark.parametrize(("super_users", "refused"), [(ADMIN, True), (f"{ADMIN};User:ANONYMOUS", False)])
def test_cluster_mode_needs_the_inter_broker_principal_as_super_user(tmp_path: Path, super_users: str, refused: bool) -> None:
    config = BrokerConfig(data_dir=tmp_path, values={**SECURED, "super.users": super_users})
    securities = listener_securities(config, cluster=True)
    if refused:
        with pytest.raises(BrokerConfigError, match="super.users must include User:ANONYMOUS"):
            inter_broker(config, securities)
    else:
        assert inter_broker(config, securities).principal == "User:ANONYMOUS"
