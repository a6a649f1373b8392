"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs against a BrokerContext over a
temporary directory: requests go through the codec both ways, and every answer must encode
and decode at the version asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strom.handlers.context import BrokerContext
from strom.handlers.registry import registrations
from strom.metadata.configs import ConfigSource, ConfigType
from strom.metadata.store import LocalMetadataStore
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode

from .harness import call, create_topic, make_ctx

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3

DESCRIBE_VERSIONS = range(1, 5)
ALTER_VERSIONS = range(0, 3)
INCREMENTAL_VERSIONS = range(0, 2)


@pytest.fixture
def ctx(tmp_path: Path) -> BrokerContext:
    context = make_ctx(tmp_path)
    create_topic(context, "t", 2, {"segment.bytes": "1048576"})
    return context


def describe(
    ctx: BrokerContext,
    resources: list[tuple[int, str, list[str] | None]],
    version: int = 4,
    *,
    synonyms: bool = False,
    documentation: bool = False,
) -> Any:
    body: dict[str, Any] = {
        "resources": [
            {"resource_type": t, "resource_name": n, "configuration_keys": keys} for t, n, keys in resources
        ],
        "include_synonyms": synonyms,
        "include_documentation": documentation,
    }
    return call(ctx, ApiKey.DESCRIBE_CONFIGS, version, body).results


def describe_one(ctx: BrokerContext, resource_type: int, name: str, **kwargs: Any) -> Any:
    (result,) = describe(ctx, [(resource_type, name, None)], **kwargs)
    return result


def topic_configs(ctx: BrokerContext, name: str = "t") -> dict[str, Any]:
    result = describe_one(ctx, TOPIC, name, synonyms=True)
    assert result.error_code == ErrorCode.NONE, result
    return {c.name: c for c in result.configs}


def alter(
    ctx: BrokerContext,
    resources: list[tuple[int, str, dict[str, str | None]]],
    version: int = 2,
    validate_only: bool = False,
) -> Any:
    body = {
        "resources": [
            {
                "resource_type": t,
                "resource_name": n,
                "configs": [{"name": k, "value": v} for k, v in configs.items()],
            }
            for t, n, configs in resources
        ],
        "validate_only": validate_only,
    }
    return call(ctx, ApiKey.ALTER_CONFIGS, version, body).responses


def incremental(
    ctx: BrokerContext,
    resources: list[tuple[int, str, list[tuple[str, int, str | None]]]],
    version: int = 1,
    validate_only: bool = False,
) -> Any:
    body = {
        "resources": [
            {
                "resource_type": t,
                "resource_name": n,
                "configs": [{"name": k, "config_operation": op, "value": v} for k, op, v in ops],
            }
            for t, n, ops in resources
        ],
        "validate_only": validate_only,
    }
    return call(ctx, ApiKey.INCREMENTAL_ALTER_CONFIGS, version, body).responses


def test_registered_versions() -> None:
    regs = registrations()
    assert (regs[ApiKey.DESCRIBE_CONFIGS].min_version, regs[ApiKey.DESCRIBE_CONFIGS].max_version) == (1, 4)
    assert (regs[ApiKey.ALTER_CONFIGS].min_version, regs[ApiKey.ALTER_CONFIGS].max_version) == (0, 2)
    regs_inc = regs[ApiKey.INCREMENTAL_ALTER_CONFIGS]
    assert (regs_inc.min_version, regs_inc.max_version) == (0, 1)


# --- DescribeConfigs ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", DESCRIBE_VERSIONS)
def test_describe_topic_defaults_and_overrides(ctx: BrokerContext, version: int) -> None:
    result = describe_one(ctx, TOPIC, "t", version=version, synonyms=True, documentation=True)
    assert result.error_code == ErrorCode.NONE and result.error_message is None
    assert result.resource_type == TOPIC and result.resource_name == "t"
    configs = {c.name: c for c in result.configs}
    assert [c.name for c in result.configs] == sorted(configs)
    seg = configs["segment.bytes"]
    assert seg.value == "1048576" and seg.config_source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not seg.read_only and not seg.is_sensitive
    assert seg.synonyms[0].name == "segment.bytes" and seg.synonyms[0].source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    mmb = configs["max.message.bytes"]
    assert mmb.value == "1048588" and mmb.config_source == ConfigSource.DEFAULT_CONFIG
    assert configs["cleanup.policy"].value == "delete"
    if version >= 3:
        assert configs["cleanup.policy"].config_type == ConfigType.LIST
        assert configs["retention.ms"].config_type == ConfigType.LONG
        assert configs["retention.ms"].documentation


def test_describe_synonyms_and_documentation_only_on_request(ctx: BrokerContext) -> None:
    configs = {c.name: c for c in describe_one(ctx, TOPIC, "t").configs}
    assert configs["segment.bytes"].synonyms == ()
    assert configs["segment.bytes"].config_source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["segment.bytes"].documentation is None
    assert configs["segment.bytes"].config_type == ConfigType.INT


def test_describe_configuration_keys_filter(ctx: BrokerContext) -> None:
    (only, empty) = describe(ctx, [(TOPIC, "t", ["retention.ms", "no.such", "segment.bytes"]), (TOPIC, "t", [])])
    assert [c.name for c in only.configs] == ["retention.ms", "segment.bytes"]
    assert len(empty.configs) > 20  # an empty list means every config, as null does


def test_describe_unknown_and_invalid_topic(ctx: BrokerContext) -> None:
    unknown, invalid, empty = describe(ctx, [(TOPIC, "nope", None), (TOPIC, "bad/name", None), (TOPIC, "", None)])
    assert unknown.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and unknown.error_message is None
    assert unknown.configs == () and unknown.resource_name == "nope"
    assert invalid.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION and invalid.error_message
    assert empty.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


@pytest.mark.parametrize("version", DESCRIBE_VERSIONS)
def test_describe_this_broker(ctx: BrokerContext, version: int) -> None:
    result = describe_one(ctx, BROKER, "0", version=version, synonyms=True)
    assert result.error_code == ErrorCode.NONE
    configs = {c.name: c for c in result.configs}
    assert configs["num.partitions"].value == "1" and configs["num.partitions"].read_only
    assert configs["num.partitions"].config_source == ConfigSource.DEFAULT_CONFIG
    assert not configs["log.retention.ms"].read_only
    assert configs["log.dirs"].config_source == ConfigSource.STATIC_BROKER_CONFIG


def test_describe_other_broker_names(ctx: BrokerContext) -> None:
    default, other, text, logger, unknown = describe(
        ctx, [(BROKER, "", None), (BROKER, "1", None), (BROKER, "abc", None), (BROKER_LOGGER, "0", None), (99, "x", None)]
    )
    assert default.error_code == ErrorCode.NONE and default.configs == ()  # no dynamic defaults yet
    assert other.error_code == ErrorCode.INVALID_REQUEST
    assert other.error_message == "Unexpected broker id, expected 0 or empty string, but received 1"
    assert text.error_code == ErrorCode.INVALID_REQUEST
    assert text.error_message == "Broker id must be an integer, but it is: abc"
    assert logger.error_code == ErrorCode.INVALID_REQUEST
    assert logger.error_message == "Unsupported resource type: BROKER_LOGGER"
    assert unknown.error_code == ErrorCode.INVALID_REQUEST and unknown.resource_type == 99


def test_describe_sensitive_values_are_hidden(ctx: BrokerContext) -> None:
    for result in describe(ctx, [(TOPIC, "t", None), (BROKER, "0", None)], synonyms=True):
        for c in result.configs:
            assert not c.is_sensitive or (c.value is None and all(s.value is None for s in c.synonyms))


# --- AlterConfigs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALTER_VERSIONS)
def test_alter_replaces_the_whole_set(ctx: BrokerContext, version: int) -> None:
    (response,) = alter(ctx, [(TOPIC, "t", {"retention.ms": "123456", "cleanup.policy": "compact, delete"})], version)
    assert response.error_code == ErrorCode.NONE and response.error_message is None
    assert response.resource_type == TOPIC and response.resource_name == "t"
    configs = topic_configs(ctx)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].config_source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].value == "compact,delete"  # stored canonically
    assert configs["segment.bytes"].config_source == ConfigSource.DEFAULT_CONFIG
    assert ctx.metadata.topic("t").configs == {"retention.ms": "123456", "cleanup.policy": "compact,delete"}


def test_alter_invalid_value_changes_nothing(ctx: BrokerContext) -> None:
    (bad,) = alter(ctx, [(TOPIC, "t", {"retention.ms": "abc"})])
    assert bad.error_code == ErrorCode.INVALID_CONFIG
    assert bad.error_message == "Invalid value abc for configuration retention.ms: Not a number of type LONG"
    (unknown,) = alter(ctx, [(TOPIC, "t", {"no.such.config": "1"})])
    assert unknown.error_code == ErrorCode.INVALID_CONFIG
    assert unknown.error_message == "Unknown topic config name: no.such.config"
    assert ctx.metadata.topic("t").configs == {"segment.bytes": "1048576"}


def test_alter_validate_only(ctx: BrokerContext) -> None:
    (ok,) = alter(ctx, [(TOPIC, "t", {"retention.ms": "999"})], validate_only=True)
    assert ok.error_code == ErrorCode.NONE
    (bad,) = alter(ctx, [(TOPIC, "t", {"retention.ms": "-5"})], validate_only=True)
    assert bad.error_code == ErrorCode.INVALID_CONFIG
    assert ctx.metadata.topic("t").configs == {"segment.bytes": "1048576"}


def test_alter_request_level_errors(ctx: BrokerContext) -> None:
    unknown, null, dup_key = alter(
        ctx,
        [
            (TOPIC, "nope", {"retention.ms": "1"}),
            (TOPIC, "t", {"retention.ms": None}),
            (BROKER, "", {}),
        ],
    )
    assert unknown.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert unknown.error_message == "The topic 'nope' does not exist."
    assert null.error_code == ErrorCode.INVALID_REQUEST
    assert null.error_message == "Null value not supported for : retention.ms"
    assert dup_key.error_code == ErrorCode.NONE
    first, second = alter(ctx, [(TOPIC, "t", {"retention.ms": "1"}), (TOPIC, "t", {"retention.ms": "2"})])
    assert first.error_code == second.error_code == ErrorCode.INVALID_REQUEST
    assert first.error_message == "Each resource must appear at most once."
    body = {
        "resources": [
            {
                "resource_type": TOPIC,
                "resource_name": "t",
                "configs": [{"name": "retention.ms", "value": "1"}, {"name": "retention.ms", "value": "2"}],
            }
        ],
        "validate_only": False,
    }
    (dup,) = call(ctx, ApiKey.ALTER_CONFIGS, 1, body).responses
    assert dup.error_code == ErrorCode.INVALID_REQUEST and dup.error_message == "Error due to duplicate config keys"
    (logger,) = alter(ctx, [(BROKER_LOGGER, "0", {"root": "DEBUG"})])
    assert logger.error_code == ErrorCode.INVALID_REQUEST and logger.error_message == "Unknown resource type 8"
    (default_topic,) = alter(ctx, [(TOPIC, "", {"retention.ms": "1"})])
    assert default_topic.error_code == ErrorCode.INVALID_REQUEST
    assert ctx.metadata.topic("t").configs == {"segment.bytes": "1048576"}


def test_alter_broker_configs(ctx: BrokerContext) -> None:
    (node,) = alter(ctx, [(BROKER, "0", {"log.retention.ms": "5000"})])
    assert node.error_code == ErrorCode.NONE
    assert ctx.metadata.node_configs(0) == {"log.retention.ms": "5000"}
    configs = {c.name: c for c in describe_one(ctx, BROKER, "0", synonyms=True).configs}
    assert configs["log.retention.ms"].value == "5000"
    assert configs["log.retention.ms"].config_source == ConfigSource.DYNAMIC_BROKER_CONFIG
    # Topics without an override follow the broker's value, in DescribeConfigs and in the logs.
    retention = topic_configs(ctx)["retention.ms"]
    assert retention.value == "5000" and retention.config_source == ConfigSource.DYNAMIC_BROKER_CONFIG
    assert ctx.partition_log("t", 1).config.retention_ms == 5000

    (default,) = alter(ctx, [(BROKER, "", {"log.cleanup.policy": "compact"})])
    assert default.error_code == ErrorCode.NONE and ctx.metadata.broker_configs() == {"log.cleanup.policy": "compact"}
    default_desc = describe_one(ctx, BROKER, "")
    assert [(c.name, c.value, c.config_source) for c in default_desc.configs] == [
        ("log.cleanup.policy", "compact", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    ]
    (cleared,) = alter(ctx, [(BROKER, "0", {})])
    assert cleared.error_code == ErrorCode.NONE and ctx.metadata.node_configs(0) == {}
    assert ctx.partition_log("t", 0).config.retention_ms == 604800000


def test_alter_broker_errors(ctx: BrokerContext) -> None:
    static, bad, other, text = alter(
        ctx,
        [
            (BROKER, "0", {"num.partitions": "3"}),
            (BROKER, "", {"log.retention.bytes": "x"}),
            (BROKER, "1", {"log.retention.ms": "1"}),
            (BROKER, "zero", {"log.retention.ms": "1"}),
        ],
    )
    for response in (static, bad, other, text):
        assert response.error_code == ErrorCode.INVALID_REQUEST, response
    assert static.error_message == "Cannot update these configs dynamically: Set(num.partitions)"
    assert bad.error_message == "Invalid value x for configuration log.retention.bytes: Not a number of type LONG"
    assert other.error_message == "Unexpected broker id, expected 0, but received 1"
    assert text.error_message == "Node id must be an integer, but it is: zero"
    assert ctx.metadata.broker_configs() == {} and ctx.metadata.node_configs(0) == {}


def test_alter_topic_config_reaches_the_open_logs(ctx: BrokerContext) -> None:
    assert ctx.partition_log("t", 0).config.max_message_bytes == 1048588
    (ok,) = alter(ctx, [(TOPIC, "t", {"max.message.bytes": "2000"})])
    assert ok.error_code == ErrorCode.NONE
    assert all(ctx.partition_log("t", p).config.max_message_bytes == 2000 for p in (0, 1))


# --- IncrementalAlterConfigs ----------------------------------------------------------------------


@pytest.mark.parametrize("version", INCREMENTAL_VERSIONS)
def test_incremental_set_delete_append_subtract(ctx: BrokerContext, version: int) -> None:
    ops = [("retention.ms", SET, "7777"), ("segment.bytes", DELETE, None), ("cleanup.policy", APPEND, "compact")]
    (response,) = incremental(ctx, [(TOPIC, "t", ops)], version)
    assert response.error_code == ErrorCode.NONE and response.error_message is None
    assert ctx.metadata.topic("t").configs == {"retention.ms": "7777", "cleanup.policy": "delete,compact"}
    (response,) = incremental(ctx, [(TOPIC, "t", [("cleanup.policy", SUBTRACT, "delete")])], version)
    assert response.error_code == ErrorCode.NONE
    configs = topic_configs(ctx)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].config_source == ConfigSource.DEFAULT_CONFIG
    # Deleting a config that is not set is fine; appending what is there changes nothing.
    ops = [("flush.ms", DELETE, None), ("cleanup.policy", APPEND, "compact,compact")]
    (response,) = incremental(ctx, [(TOPIC, "t", ops)], version)
    assert response.error_code == ErrorCode.NONE
    assert ctx.metadata.topic("t").configs == {"retention.ms": "7777", "cleanup.policy": "compact"}


def test_incremental_append_starts_from_the_effective_value(ctx: BrokerContext) -> None:
    alter(ctx, [(BROKER, "", {"log.cleanup.policy": "compact"})])
    (response,) = incremental(ctx, [(TOPIC, "t", [("cleanup.policy", APPEND, "delete")])])
    assert response.error_code == ErrorCode.NONE
    assert ctx.metadata.topic("t").configs["cleanup.policy"] == "compact,delete"
    (response,) = incremental(ctx, [(BROKER, "0", [("log.cleanup.policy", APPEND, "delete")])])
    assert response.error_code == ErrorCode.NONE
    assert ctx.metadata.node_configs(0) == {"log.cleanup.policy": "compact,delete"}


def test_incremental_is_all_or_nothing(ctx: BrokerContext) -> None:
    ops = [("retention.ms", SET, "1000"), ("segment.bytes", SET, "12")]
    (bad,) = incremental(ctx, [(TOPIC, "t", ops)])
    assert bad.error_code == ErrorCode.INVALID_CONFIG
    assert bad.error_message == "Invalid value 12 for configuration segment.bytes: Value must be at least 1048576"
    ops = [("retention.ms", SET, "1000"), ("retention.bytes", APPEND, "5")]
    (not_list,) = incremental(ctx, [(TOPIC, "t", ops)])
    assert not_list.error_code == ErrorCode.INVALID_CONFIG
    assert not_list.error_message == "Can't APPEND to key retention.bytes because its type is not LIST."
    ops = [("min.compaction.lag.ms", SET, "10"), ("max.compaction.lag.ms", SET, "5")]
    (conflict,) = incremental(ctx, [(TOPIC, "t", ops)])
    assert conflict.error_code == ErrorCode.INVALID_CONFIG
    assert ctx.metadata.topic("t").configs == {"segment.bytes": "1048576"}


def test_incremental_request_level_errors(ctx: BrokerContext) -> None:
    null, bad_op, dup_key, unknown, logger = incremental(
        ctx,
        [
            (TOPIC, "t", [("retention.ms", SET, None), ("cleanup.policy", APPEND, None)]),
            (BROKER, "0", [("log.retention.ms", 9, "1")]),
            (BROKER, "", [("log.retention.ms", SET, "1"), ("log.retention.ms", DELETE, None)]),
            (TOPIC, "nope", [("retention.ms", SET, "1")]),
            (BROKER_LOGGER, "0", [("root", SET, "DEBUG")]),
        ],
    )
    assert null.error_code == ErrorCode.INVALID_REQUEST
    assert null.error_message == "Null value not supported for : retention.ms, cleanup.policy"
    assert bad_op.error_code == ErrorCode.INVALID_REQUEST and bad_op.error_message == "Unknown operation type 9"
    assert dup_key.error_code == ErrorCode.INVALID_REQUEST
    assert dup_key.error_message == "Error due to duplicate config keys"
    assert unknown.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert logger.error_code == ErrorCode.INVALID_REQUEST
    first, second = incremental(ctx, [(TOPIC, "t", []), (TOPIC, "t", [])])
    assert first.error_code == second.error_code == ErrorCode.INVALID_REQUEST
    assert ctx.metadata.topic("t").configs == {"segment.bytes": "1048576"}
    assert ctx.metadata.broker_configs() == {} and ctx.metadata.node_configs(0) == {}


def test_incremental_broker_configs(ctx: BrokerContext) -> None:
    (ok,) = incremental(ctx, [(BROKER, "0", [("log.retention.ms", SET, "5000")])])
    assert ok.error_code == ErrorCode.NONE and ctx.partition_log("t", 0).config.retention_ms == 5000
    (not_list,) = incremental(ctx, [(BROKER, "0", [("log.retention.ms", APPEND, "1")])])
    assert not_list.error_code == ErrorCode.INVALID_CONFIG
    assert not_list.error_message == "Config value append is not allowed for config key: log.retention.ms"
    (unknown,) = incremental(ctx, [(BROKER, "0", [("no.such", SUBTRACT, "1")])])
    assert (unknown.error_code, unknown.error_message) == (ErrorCode.INVALID_CONFIG, "Unknown config name: no.such")
    (static,) = incremental(ctx, [(BROKER, "0", [("num.partitions", SET, "4")])])
    assert static.error_code == ErrorCode.INVALID_REQUEST
    (deleted,) = incremental(ctx, [(BROKER, "0", [("log.retention.ms", DELETE, None)])])
    assert deleted.error_code == ErrorCode.NONE and ctx.metadata.node_configs(0) == {}
    assert ctx.partition_log("t", 0).config.retention_ms == 604800000


def test_incremental_validate_only(ctx: BrokerContext) -> None:
    ops = [("retention.ms", SET, "1"), ("cleanup.policy", APPEND, "compact")]
    responses = incremental(
        ctx, [(TOPIC, "t", ops), (BROKER, "", [("log.retention.ms", SET, "1")])], validate_only=True
    )
    assert [r.error_code for r in responses] == [ErrorCode.NONE, ErrorCode.NONE]
    assert ctx.metadata.topic("t").configs == {"segment.bytes": "1048576"}
    assert ctx.metadata.broker_configs() == {}


def test_changes_survive_a_restart(ctx: BrokerContext, tmp_path: Path) -> None:
    incremental(ctx, [(TOPIC, "t", [("retention.ms", SET, "4242")]), (BROKER, "", [("log.retention.bytes", SET, "99")])])
    reloaded = LocalMetadataStore(tmp_path)
    assert reloaded.topic("t").configs["retention.ms"] == "4242"
    assert reloaded.broker_configs() == {"log.retention.bytes": "99"}


# --- Kafka's broker configs that strom does not use, custom configs -------------------------------


def test_kafka_broker_configs_strom_does_not_use_are_accepted(ctx: BrokerContext) -> None:
    # librdkafka's 0081 sets a per-broker Kafka config strom has no use for, with both APIs.
    name = "sasl.kerberos.min.time.before.relogin"
    (plain,) = alter(ctx, [(BROKER, "0", {name: "58000"})])
    assert plain.error_code == ErrorCode.NONE, plain.error_message
    (inc,) = incremental(ctx, [(BROKER, "0", [(name, SET, "57000")])])
    assert inc.error_code == ErrorCode.NONE, inc.error_message
    assert ctx.metadata.node_configs(0) == {name: "57000"}
    entry = {c.name: c for c in describe_one(ctx, BROKER, "0", synonyms=True).configs}[name]
    assert (entry.value, entry.config_source, entry.read_only) == ("57000", ConfigSource.DYNAMIC_BROKER_CONFIG, False)
    assert entry.config_type == ConfigType.LONG and not entry.is_sensitive
    # A cluster-wide one may also be the cluster default; a list one takes APPEND.
    (default,) = alter(ctx, [(BROKER, "", {"background.threads": "12", "metric.reporters": "a.B"})])
    assert default.error_code == ErrorCode.NONE, default.error_message
    (appended,) = incremental(ctx, [(BROKER, "", [("metric.reporters", APPEND, "c.D")])])
    assert appended.error_code == ErrorCode.NONE, appended.error_message
    assert ctx.metadata.broker_configs() == {"background.threads": "12", "metric.reporters": "a.B,c.D"}
    described = {c.name: c.value for c in describe_one(ctx, BROKER, "").configs}
    assert described == {"background.threads": "12", "metric.reporters": "a.B,c.D"}


def test_kafka_broker_configs_refused_by_update_mode_and_type(ctx: BrokerContext) -> None:
    cases = [
        ("", {"sasl.kerberos.min.time.before.relogin": "1"},
         "Cannot update these configs at default cluster level, broker id must be specified: "
         "Set(sasl.kerberos.min.time.before.relogin)"),
        ("0", {"zookeeper.connect": "zk:2181"}, "Cannot update these configs dynamically: Set(zookeeper.connect)"),
        ("0", {"ssl.keystore.location": "/ks"},
         "These security configs can be dynamically updated only per-listener using the listener prefix: "
         "Set(ssl.keystore.location)"),
        ("0", {"sasl.kerberos.min.time.before.relogin": "soon"},
         "Invalid value soon for configuration sasl.kerberos.min.time.before.relogin: Not a number of type LONG"),
    ]
    for name, configs, message in cases:
        (response,) = alter(ctx, [(BROKER, name, configs)])
        assert (response.error_code, response.error_message) == (ErrorCode.INVALID_REQUEST, message)
    assert ctx.metadata.broker_configs() == {} and ctx.metadata.node_configs(0) == {}


def test_custom_broker_configs_are_kept_as_kafka_keeps_them(ctx: BrokerContext) -> None:
    # Kafka keeps broker config names it does not define (for plugins) and describes them as
    # sensitive: it cannot tell their type.
    (ok,) = alter(ctx, [(BROKER, "", {"my.plugin.setting": "x"})])
    assert ok.error_code == ErrorCode.NONE and ctx.metadata.broker_configs() == {"my.plugin.setting": "x"}
    (entry,) = describe_one(ctx, BROKER, "").configs
    assert (entry.name, entry.value, entry.is_sensitive, entry.config_type) == (
        "my.plugin.setting", None, True, ConfigType.UNKNOWN)
    (node_entry,) = [c for c in describe_one(ctx, BROKER, "0").configs if c.name == "my.plugin.setting"]
    assert node_entry.config_source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
    (append,) = incremental(ctx, [(BROKER, "0", [("my.plugin.setting", APPEND, "y")])])
    assert (append.error_code, append.error_message) == (ErrorCode.INVALID_CONFIG, "Unknown config name: my.plugin.setting")


# --- deprecated topic configs Kafka 3.x accepts ----------------------------------------------------


def test_message_format_version_is_accepted_and_ignored(ctx: BrokerContext) -> None:
    # librdkafka's 0092 sets message.format.version with AlterConfigs after reading every config back.
    described = topic_configs(ctx)
    assert (described["message.format.version"].value, described["message.format.version"].config_source) == (
        "3.0-IV1", ConfigSource.DEFAULT_CONFIG)
    assert described["message.downconversion.enable"].value == "true"
    read_back = {name: c.value for name, c in described.items() if c.value is not None}
    (ok,) = alter(ctx, [(TOPIC, "t", {**read_back, "message.format.version": "0.10.0.0"})])
    assert ok.error_code == ErrorCode.NONE, ok.error_message
    entry = topic_configs(ctx)["message.format.version"]
    assert (entry.value, entry.config_source) == ("0.10.0.0", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    (ok,) = incremental(ctx, [(TOPIC, "t", [("message.downconversion.enable", SET, "false"),
                                            ("message.format.version", SET, "2.8")])])
    assert ok.error_code == ErrorCode.NONE, ok.error_message
    assert ctx.partition_log("t", 0).config.max_message_bytes == 1048588  # the log is unaffected
    for value in ("foo", "2.8-IV9", "3.0."):
        (bad,) = alter(ctx, [(TOPIC, "t", {"message.format.version": value})])
        assert (bad.error_code, bad.error_message) == (
            ErrorCode.INVALID_CONFIG,
            f"Invalid value {value} for configuration message.format.version: Version {value} is not a valid version",
        )


def test_create_topic_with_deprecated_configs(ctx: BrokerContext) -> None:
    configs = [{"name": "message.format.version", "value": "0.10.0"},
               {"name": "message.downconversion.enable", "value": "false"}]
    body = {"topics": [{"name": "old", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                        "configs": configs}], "timeout": 5000, "validate_only": False}
    (created,) = call(ctx, ApiKey.CREATE_TOPICS, 7, body).topics
    assert created.error_code == ErrorCode.NONE, created.error_message
    assert ctx.metadata.topic("old").configs == {"message.format.version": "0.10.0", "message.downconversion.enable": "false"}
