"""LocalMetadataStore: topics and dynamic configs survive a reopen; Kafka's name rules."""

from __future__ import annotations

import pytest

from strom.metadata.configs import ConfigError
from strom.metadata.store import LocalMetadataStore, validate_topic_name
from strom.protocol.errors import ErrorCode


def test_topics_and_configs_survive_reopen(tmp_path):
    store = LocalMetadataStore(tmp_path)
    topic = store.create_topic("orders", 3, {"retention.ms": "1000"})
    store.set_partitions("orders", 5)
    store.set_topic_configs("orders", {"cleanup.policy": "compact"})
    store.set_broker_configs(None, {"log.retention.ms": "5000"})
    store.set_broker_configs(0, {"log.cleaner.backoff.ms": "100"})
    store.create_topic("gone", 1, {})
    store.delete_topic("gone")
    again = LocalMetadataStore(tmp_path)
    assert again.cluster_id == store.cluster_id
    assert list(again.topics()) == ["orders"]
    orders = again.topic("orders")
    assert (orders.topic_id, orders.partitions, dict(orders.configs)) == (topic.topic_id, 5, {"cleanup.policy": "compact"})
    assert again.broker_configs() == {"log.retention.ms": "5000"}
    assert again.node_configs(0) == {"log.cleaner.backoff.ms": "100"}
    assert (tmp_path / "meta.properties").read_text().startswith("version=1\ncluster.id=")


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 250, "bad name", "bad/name", "ü"])
def test_illegal_topic_names(name):
    with pytest.raises(ConfigError) as info:
        validate_topic_name(name)
    assert info.value.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_existing_and_colliding_names(tmp_path):
    store = LocalMetadataStore(tmp_path)
    store.create_topic("a.b", 1, {})
    with pytest.raises(ConfigError) as info:
        store.create_topic("a.b", 1, {})
    assert info.value.error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    with pytest.raises(ConfigError) as info:
        store.create_topic("a_b", 1, {})  # '.' and '_' collide in Kafka's metric names
    assert info.value.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_partitions_only_grow(tmp_path):
    store = LocalMetadataStore(tmp_path)
    store.create_topic("t", 3, {})
    with pytest.raises(ConfigError):
        store.set_partitions("t", 2)


def test_damaged_metadata_refuses_to_start(tmp_path):
    LocalMetadataStore(tmp_path)
    (tmp_path / "strom-metadata.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot read cluster metadata"):
        LocalMetadataStore(tmp_path)


def test_producer_ids_are_never_reused_across_restarts(tmp_path):
    store = LocalMetadataStore(tmp_path)
    first = [store.allocate_producer_id() for _ in range(3)]
    assert first == [0, 1, 2]
    again = LocalMetadataStore(tmp_path)  # e.g. after a crash: the rest of the block is skipped
    assert again.allocate_producer_id() > max(first)
