"""confluent_kafka.admin.AdminClient against a real strom broker."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclOperation,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from .helpers import (
    admin,
    consume,
    create_topic,
    produce_many,
    producer,
    wait_for_topic,
    watermarks,
)

pytestmark = pytest.mark.timeout(120)

T = 30  # seconds for any single admin future


def error_code(fut) -> int | None:
    """The Kafka error code a future fails with, or None on success."""
    try:
        fut.result(T)
    except KafkaException as exc:
        return exc.args[0].code()
    return None


def topic_exists(a, topic: str) -> bool:
    return topic in a.list_topics(timeout=10).topics


def wait_gone(a, topic: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not topic_exists(a, topic):
            return
        time.sleep(0.05)
    raise AssertionError(f"topic {topic} still listed {timeout}s after deletion")


def describe_topic_configs(a, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=T)[res].result(T)


def broker_id(a) -> int:
    md = a.list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    return next(iter(md.brokers))


@pytest.fixture(scope="module")
def adm(broker):
    return admin(broker.bootstrap)


# -- create_topics ---------------------------------------------------------------------------------


def test_create_topic_with_partitions_and_configs(broker, adm, unique_topic):
    topic = unique_topic()
    futs = adm.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000", "cleanup.policy": "delete"})],
        request_timeout=T,
    )
    assert error_code(futs[topic]) is None
    t = wait_for_topic(adm, topic, 3)
    assert sorted(t.partitions) == [0, 1, 2]
    bid = broker_id(adm)
    for p in t.partitions.values():
        assert p.leader == bid
        assert p.replicas == [bid]
        assert p.isrs == [bid]
    cfg = describe_topic_configs(adm, topic)
    assert cfg["retention.ms"].value == "3600000"
    assert ConfigSource(cfg["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not cfg["retention.ms"].is_default


def test_create_topic_replication_factor_minus_one_uses_defaults(adm, unique_topic):
    t1, t2 = unique_topic("a"), unique_topic("b")
    futs = adm.create_topics(
        [NewTopic(t1, num_partitions=2, replication_factor=-1), NewTopic(t2, num_partitions=-1, replication_factor=-1)],
        request_timeout=T,
    )
    assert error_code(futs[t1]) is None
    assert error_code(futs[t2]) is None
    assert len(wait_for_topic(adm, t1).partitions) == 2
    assert len(wait_for_topic(adm, t2).partitions) >= 1  # num.partitions broker default


def test_create_topic_validate_only(adm, unique_topic):
    topic = unique_topic()
    futs = adm.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)], validate_only=True, request_timeout=T)
    assert error_code(futs[topic]) is None
    assert not topic_exists(adm, topic)
    # validate_only still validates
    futs = adm.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)], validate_only=True, request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert not topic_exists(adm, topic)


def test_create_topic_replication_factor_3_fails(adm, unique_topic):
    topic = unique_topic()
    futs = adm.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)], request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert not topic_exists(adm, topic)


def test_create_existing_topic_fails(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    futs = adm.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1)], request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert len(wait_for_topic(adm, topic).partitions) == 2  # unchanged


@pytest.mark.parametrize("name", ["bad/name", "has space", "..", ".", "a" * 250, "ünïcode", "star*"])
def test_create_invalid_topic_name_fails(adm, name):
    futs = adm.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=T)
    assert error_code(futs[name]) == KafkaError.TOPIC_EXCEPTION


def test_create_topics_batch_partial_failure(broker, adm, unique_topic):
    good, existing = unique_topic("good"), unique_topic("existing")
    create_topic(broker.bootstrap, existing)
    futs = adm.create_topics(
        [
            NewTopic(good, num_partitions=1, replication_factor=1),
            NewTopic(existing, num_partitions=1, replication_factor=1),
            NewTopic("bad name", num_partitions=1, replication_factor=1),
        ],
        request_timeout=T,
    )
    assert error_code(futs[good]) is None
    assert error_code(futs[existing]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert error_code(futs["bad name"]) == KafkaError.TOPIC_EXCEPTION
    wait_for_topic(adm, good)


@pytest.mark.parametrize("config", [{"cleanup.policy": "bogus"}, {"retention.ms": "not-a-number"}, {"no.such.config": "1"}])
def test_create_topic_invalid_config_fails(adm, unique_topic, config):
    topic = unique_topic()
    futs = adm.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)], request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.INVALID_CONFIG
    assert not topic_exists(adm, topic)


# -- delete_topics ---------------------------------------------------------------------------------


def test_delete_topics(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_many(producer(broker.bootstrap), topic, [{"value": b"old", "partition": 0}] * 5)
    futs = adm.delete_topics([topic], request_timeout=T)
    assert error_code(futs[topic]) is None
    wait_gone(adm, topic)
    # deleting again: unknown topic
    futs = adm.delete_topics([topic], request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    # the name can be reused; the new topic starts empty
    create_topic(broker.bootstrap, topic, partitions=1)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    produce_many(producer(broker.bootstrap), topic, [{"value": b"new"}])
    assert [m.value() for m in consume(broker.bootstrap, topic, [0])] == [b"new"]


def test_delete_unknown_topic(adm, unique_topic):
    topic = unique_topic()
    futs = adm.delete_topics([topic], request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


# -- create_partitions -----------------------------------------------------------------------------


def test_create_partitions(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    futs = adm.create_partitions([NewPartitions(topic, 5)], request_timeout=T)
    assert error_code(futs[topic]) is None
    t = wait_for_topic(adm, topic, 5)
    assert sorted(t.partitions) == [0, 1, 2, 3, 4]
    log = produce_many(producer(broker.bootstrap), topic, [{"value": b"p4", "partition": 4}])
    assert log.reports[0].partition == 4 and log.reports[0].offset == 0
    assert [m.value() for m in consume(broker.bootstrap, topic, [4])] == [b"p4"]
    # shrinking or keeping the count is invalid
    for n in (3, 5):
        futs = adm.create_partitions([NewPartitions(topic, n)], request_timeout=T)
        assert error_code(futs[topic]) == KafkaError.INVALID_PARTITIONS, n
    # validate_only changes nothing
    futs = adm.create_partitions([NewPartitions(topic, 8)], validate_only=True, request_timeout=T)
    assert error_code(futs[topic]) is None
    assert len(wait_for_topic(adm, topic).partitions) == 5


def test_create_partitions_unknown_topic(adm, unique_topic):
    topic = unique_topic()
    futs = adm.create_partitions([NewPartitions(topic, 3)], request_timeout=T)
    assert error_code(futs[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


# -- configs ---------------------------------------------------------------------------------------


def test_describe_topic_configs_defaults_and_overrides(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "1048576"})
    cfg = describe_topic_configs(adm, topic)
    seg = cfg["segment.bytes"]
    assert seg.value == "1048576"
    assert ConfigSource(seg.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    mmb = cfg["max.message.bytes"]
    assert mmb.value == "1048588"
    assert ConfigSource(mmb.source) == ConfigSource.DEFAULT_CONFIG
    assert mmb.is_default
    assert cfg["cleanup.policy"].value == "delete"
    assert ConfigSource(cfg["cleanup.policy"].source) == ConfigSource.DEFAULT_CONFIG
    for name in ("retention.ms", "retention.bytes", "message.timestamp.type", "min.insync.replicas"):
        assert name in cfg, name
    for entry in cfg.values():
        assert not entry.is_sensitive or entry.value is None


def test_describe_configs_unknown_topic(adm, unique_topic):
    res = ConfigResource(ResourceType.TOPIC, unique_topic())
    fut = adm.describe_configs([res], request_timeout=T)[res]
    assert error_code(fut) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_configs(adm):
    bid = broker_id(adm)
    res = ConfigResource(ResourceType.BROKER, str(bid))
    cfg = adm.describe_configs([res], request_timeout=T)[res].result(T)
    assert cfg, "no broker configs"
    assert "num.partitions" in cfg, sorted(cfg)
    assert "auto.create.topics.enable" in cfg, sorted(cfg)
    for entry in cfg.values():
        assert ConfigSource(entry.source) in (
            ConfigSource.DEFAULT_CONFIG,
            ConfigSource.STATIC_BROKER_CONFIG,
            ConfigSource.DYNAMIC_BROKER_CONFIG,
            ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
        ), (entry.name, entry.source)


def test_alter_configs_replaces_dynamic_configs(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "1048576"})
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "123456"})
    assert error_code(adm.alter_configs([res], request_timeout=T)[res]) is None
    cfg = describe_topic_configs(adm, topic)
    assert cfg["retention.ms"].value == "123456"
    assert ConfigSource(cfg["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    # AlterConfigs (non-incremental) replaces the whole set: segment.bytes is back to its default
    assert ConfigSource(cfg["segment.bytes"].source) == ConfigSource.DEFAULT_CONFIG
    assert cfg["segment.bytes"].value != "1048576"
    # an invalid value is rejected and changes nothing
    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "abc"})
    assert error_code(adm.alter_configs([bad], request_timeout=T)[bad]) == KafkaError.INVALID_CONFIG
    assert describe_topic_configs(adm, topic)["retention.ms"].value == "123456"


def test_alter_configs_validate_only(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "999"})
    assert error_code(adm.alter_configs([res], validate_only=True, request_timeout=T)[res]) is None
    assert ConfigSource(describe_topic_configs(adm, topic)["retention.ms"].source) == ConfigSource.DEFAULT_CONFIG


def test_incremental_alter_configs(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "1048576", "retention.ms": "60000"})
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7777", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    assert error_code(adm.incremental_alter_configs([res], request_timeout=T)[res]) is None
    cfg = describe_topic_configs(adm, topic)
    assert cfg["retention.ms"].value == "7777"
    assert ConfigSource(cfg["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert ConfigSource(cfg["segment.bytes"].source) == ConfigSource.DEFAULT_CONFIG
    assert set(cfg["cleanup.policy"].value.split(",")) == {"delete", "compact"}
    # SUBTRACT from the list
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)],
    )
    assert error_code(adm.incremental_alter_configs([res], request_timeout=T)[res]) is None
    assert describe_topic_configs(adm, topic)["cleanup.policy"].value == "compact"
    # invalid value: rejected, nothing changes
    bad = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "abc", incremental_operation=AlterConfigOpType.SET)],
    )
    assert error_code(adm.incremental_alter_configs([bad], request_timeout=T)[bad]) == KafkaError.INVALID_CONFIG
    assert describe_topic_configs(adm, topic)["retention.ms"].value == "7777"


def test_topic_config_takes_effect_max_message_bytes(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)],
    )
    assert error_code(adm.incremental_alter_configs([res], request_timeout=T)[res]) is None
    p = producer(broker.bootstrap, **{"compression.type": "none", "message.timeout.ms": 5000})
    errors = []
    p.produce(topic, value=b"x" * 10_000, on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_broker_config_strom_does_not_use(adm):
    # librdkafka's 0081: Kafka takes every broker config it defines, also per broker.
    node = str(broker_id(adm))
    name = "sasl.kerberos.min.time.before.relogin"
    res = ConfigResource(ResourceType.BROKER, node, set_config={name: "58000"})
    assert error_code(adm.alter_configs([res], request_timeout=T)[res]) is None
    entry = ConfigEntry(name, "57000", incremental_operation=AlterConfigOpType.SET)
    inc = ConfigResource(ResourceType.BROKER, node, incremental_configs=[entry])
    assert error_code(adm.incremental_alter_configs([inc], request_timeout=T)[inc]) is None
    cfg = adm.describe_configs([ConfigResource(ResourceType.BROKER, node)], request_timeout=T)
    assert next(iter(cfg.values())).result(T)[name].value == "57000"
    cleared = ConfigResource(ResourceType.BROKER, node, set_config={})
    assert error_code(adm.alter_configs([cleared], request_timeout=T)[cleared]) is None


def test_message_format_version_is_accepted(broker, adm, unique_topic):
    # librdkafka's 0092: Kafka 3.x accepts (and ignores) the deprecated message.format.version.
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, config={"message.format.version": "2.8"})
    read_back = {name: e.value for name, e in describe_topic_configs(adm, topic).items() if e.value is not None}
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={**read_back, "message.format.version": "0.10.0.0"})
    assert error_code(adm.alter_configs([res], request_timeout=T)[res]) is None
    assert describe_topic_configs(adm, topic)["message.format.version"].value == "0.10.0.0"


# -- cluster / metadata ----------------------------------------------------------------------------


def test_authorized_operations(broker, adm, unique_topic):
    # librdkafka's 0081: without an authorizer every operation the resource type supports.
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    topics = TopicCollection([topic])
    desc = adm.describe_topics(topics, request_timeout=T, include_authorized_operations=True)[topic].result(T)
    assert set(desc.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE, AclOperation.ALTER,
        AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
    }
    assert adm.describe_topics(topics, request_timeout=T)[topic].result(T).authorized_operations is None
    cluster = adm.describe_cluster(request_timeout=T, include_authorized_operations=True).result(T)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE,
    }
    assert adm.describe_cluster(request_timeout=T).result(T).authorized_operations is None


def test_describe_cluster(broker, adm):
    desc = adm.describe_cluster(request_timeout=T).result(T)
    assert desc.cluster_id
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    assert node.host == broker.host
    assert node.port == broker.port
    assert desc.controller is not None and desc.controller.id == node.id
    assert adm.list_topics(timeout=10).cluster_id == desc.cluster_id


def test_list_topics(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=3)
    md = adm.list_topics(timeout=10)
    assert md.cluster_id
    (bid,) = md.brokers
    assert md.brokers[bid].host == broker.host and md.brokers[bid].port == broker.port
    assert md.controller_id == bid
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    # a single-topic request
    md1 = adm.list_topics(topic=topic, timeout=10)
    assert topic in md1.topics


def test_describe_topics(broker, adm, unique_topic):
    topic = unique_topic()
    missing = unique_topic("missing")
    create_topic(broker.bootstrap, topic, partitions=2)
    futs = adm.describe_topics(TopicCollection([topic, missing]), request_timeout=T)
    desc = futs[topic].result(T)
    assert desc.name == topic
    assert not desc.is_internal
    assert [p.id for p in desc.partitions] == [0, 1]
    bid = broker_id(adm)
    for p in desc.partitions:
        assert p.leader.id == bid
        assert [r.id for r in p.replicas] == [bid]
        assert [r.id for r in p.isr] == [bid]
    assert error_code(futs[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART


# -- records / offsets -----------------------------------------------------------------------------


def test_delete_records(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, **{"linger.ms": 20})
    produce_many(p, topic, [{"value": f"{i}".encode(), "partition": 0} for i in range(100)])
    produce_many(p, topic, [{"value": f"{i}".encode(), "partition": 1} for i in range(10)])
    futs = adm.delete_records([TopicPartition(topic, 0, 40)], request_timeout=T)
    (fut,) = futs.values()
    res = fut.result(T)
    assert res.low_watermark == 40
    assert watermarks(broker.bootstrap, topic, 0) == (40, 100)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 10)  # untouched
    # from earliest: starts at the new low watermark (possibly mid-batch)
    msgs = consume(broker.bootstrap, topic, {0: OFFSET_BEGINNING})
    assert [m.offset() for m in msgs] == list(range(40, 100))
    assert msgs[0].value() == b"40"
    # an offset below the low watermark is out of range -> reset to earliest (40)
    msgs = consume(broker.bootstrap, topic, {0: 5}, **{"auto.offset.reset": "earliest"})
    assert msgs[0].offset() == 40
    # ListOffsets(earliest) agrees
    lo = adm.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()}, request_timeout=T)
    assert next(iter(lo.values())).result(T).offset == 40
    # offset -1 deletes everything up to the high watermark
    futs = adm.delete_records([TopicPartition(topic, 0, -1)], request_timeout=T)
    assert next(iter(futs.values())).result(T).low_watermark == 100
    assert watermarks(broker.bootstrap, topic, 0) == (100, 100)
    # deleting beyond the high watermark fails
    futs = adm.delete_records([TopicPartition(topic, 1, 50)], request_timeout=T)
    assert error_code(next(iter(futs.values()))) == KafkaError.OFFSET_OUT_OF_RANGE
    # new records continue the offsets
    log = produce_many(p, topic, [{"value": b"after", "partition": 0}])
    assert log.reports[0].offset == 100


def test_list_offsets(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    base = 1_700_000_000_000
    stamps = [base + 1000, base + 5000, base + 3000, base + 4000]  # max is at offset 1
    produce_many(producer(broker.bootstrap), topic, [{"value": b"x", "timestamp": ts} for ts in stamps])
    tp = TopicPartition(topic, 0)

    def one(spec):
        futs = adm.list_offsets({tp: spec}, request_timeout=T)
        return next(iter(futs.values())).result(T)

    assert one(OffsetSpec.earliest()).offset == 0
    assert one(OffsetSpec.latest()).offset == 4
    r = one(OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (1, base + 5000)
    r = one(OffsetSpec.for_timestamp(base + 2000))
    assert (r.offset, r.timestamp) == (1, base + 5000)
    r = one(OffsetSpec.for_timestamp(base))
    assert (r.offset, r.timestamp) == (0, base + 1000)
    assert one(OffsetSpec.for_timestamp(base + 6000)).offset == -1


def test_list_offsets_unknown_partition(broker, adm, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    futs = adm.list_offsets({TopicPartition(topic, 7): OffsetSpec.latest()}, request_timeout=T)
    code = error_code(next(iter(futs.values())))
    # librdkafka may refuse locally (_NOENT) once its metadata shows the partition is missing.
    assert code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._NOENT), code
