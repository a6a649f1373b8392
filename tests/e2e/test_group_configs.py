"""Group configs (ConfigResource type GROUP) with confluent-kafka's AdminClient against real
strom brokers: set before the group exists, described with their source, refused when out of
the broker's bounds, kept across a restart, and seen by every broker of a cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from strom.cli.wire import _Connection
from strom.cluster.etcd_server import EtcdNotFound
from strom.protocol.api import ApiKey
from strom.testing.cluster import Cluster

from .helpers import admin

pytestmark = pytest.mark.timeout(120)

T = 30  # seconds for any single admin future


def set_group_config(adm: AdminClient, group: str, name: str, value: str | None,
                     op: AlterConfigOpType = AlterConfigOpType.SET) -> None:
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[ConfigEntry(name, value, incremental_operation=op)])
    adm.incremental_alter_configs([res], request_timeout=T)[res].result(T)


def describe_group(adm: AdminClient, group: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.GROUP, group)
    return adm.describe_configs([res], request_timeout=T)[res].result(T)


@pytest.fixture(scope="module")
def adm(broker) -> AdminClient:
    return admin(broker.bootstrap)


def test_set_then_describe(adm: AdminClient) -> None:
    """The brief's example: a group that does not exist gets share.auto.offset.reset."""
    set_group_config(adm, "g1", "share.auto.offset.reset", "earliest")
    configs = describe_group(adm, "g1")
    reset = configs["share.auto.offset.reset"]
    assert reset.value == "earliest"
    assert ConfigSource(reset.source) == ConfigSource.GROUP_CONFIG
    assert not reset.is_read_only and not reset.is_sensitive
    lock = configs["share.record.lock.duration.ms"]
    assert (lock.value, ConfigSource(lock.source)) == ("30000", ConfigSource.DEFAULT_CONFIG)
    assert {"consumer.session.timeout.ms", "share.isolation.level", "share.session.timeout.ms"} <= set(configs)
    # another group keeps the defaults
    assert describe_group(adm, "g-other")["share.auto.offset.reset"].value == "latest"


def test_delete_goes_back_to_the_default(adm: AdminClient) -> None:
    set_group_config(adm, "g-delete", "share.isolation.level", "read_committed")
    assert describe_group(adm, "g-delete")["share.isolation.level"].value == "read_committed"
    set_group_config(adm, "g-delete", "share.isolation.level", None, AlterConfigOpType.DELETE)
    level = describe_group(adm, "g-delete")["share.isolation.level"]
    assert (level.value, ConfigSource(level.source)) == ("read_uncommitted", ConfigSource.DEFAULT_CONFIG)


@pytest.mark.parametrize(("name", "value"), [
    ("share.record.lock.duration.ms", "90000"),  # above group.share.max.record.lock.duration.ms
    ("share.auto.offset.reset", "by_duration:-PT1H"),
    ("share.isolation.level", "serializable"),
    ("no.such.config", "1"),
])
def test_invalid_values_are_refused(adm: AdminClient, name: str, value: str) -> None:
    with pytest.raises(KafkaException) as info:
        set_group_config(adm, "g-invalid", name, value)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert all(ConfigSource(e.source) == ConfigSource.DEFAULT_CONFIG for e in describe_group(adm, "g-invalid").values())


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_legacy_alter_configs(adm: AdminClient) -> None:
    res = ConfigResource(ResourceType.GROUP, "g-legacy", set_config={"share.session.timeout.ms": "50000"})
    adm.alter_configs([res], request_timeout=T)[res].result(T)
    timeout = describe_group(adm, "g-legacy")["share.session.timeout.ms"]
    assert (timeout.value, ConfigSource(timeout.source)) == ("50000", ConfigSource.GROUP_CONFIG)


def test_group_configs_survive_a_restart(fresh_broker) -> None:
    set_group_config(admin(fresh_broker.bootstrap), "g1", "share.auto.offset.reset", "by_duration:P1D")
    fresh_broker.restart()
    reset = describe_group(admin(fresh_broker.bootstrap), "g1")["share.auto.offset.reset"]
    assert (reset.value, ConfigSource(reset.source)) == ("by_duration:P1D", ConfigSource.GROUP_CONFIG)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(2)
    try:
        cluster.start()
    except EtcdNotFound:
        pytest.skip("etcd is not installed")
    try:
        yield cluster
    finally:
        cluster.stop()


def _described_by(cluster: Cluster, node: int, group: str) -> dict[str, str | None]:
    """DescribeConfigs answered by one broker (the AdminClient picks any broker)."""
    host, _, port = cluster.address(node).rpartition(":")
    conn = _Connection(host, int(port), 10.0)
    try:
        body = {"resources": [{"resource_type": 32, "resource_name": group, "configuration_keys": None}],
                "include_synonyms": False, "include_documentation": False}
        (result,) = conn.call(ApiKey.DESCRIBE_CONFIGS, 4, body).results  # type: ignore[attr-defined]
    finally:
        conn.close()
    assert result.error_code == 0, result
    return {c.name: c.value for c in result.configs if c.config_source == 8}


def test_every_broker_of_a_cluster_sees_them(cluster: Cluster) -> None:
    set_group_config(cluster.admin(), "g1", "share.auto.offset.reset", "earliest")
    deadline = time.monotonic() + 30
    for node in cluster.nodes:
        while (seen := _described_by(cluster, node, "g1")) != {"share.auto.offset.reset": "earliest"}:
            assert time.monotonic() < deadline, (node, seen)
            time.sleep(0.1)
