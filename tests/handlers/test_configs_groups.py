"""Group configs (resource type GROUP, 32) through DescribeConfigs, AlterConfigs and
IncrementalAlterConfigs, against a BrokerContext over a temporary directory (the harness of
test_configs: requests and answers go through the codec at the version asked)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from strom.handlers.context import BrokerContext
from strom.metadata import group_configs
from strom.metadata.configs import ConfigSource, ConfigType
from strom.metadata.store import LocalMetadataStore
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.security.acl import AclBinding, Operation, PatternType, Permission, ResourceType

from .harness import call, make_ctx
from .test_configs import (
    ALTER_VERSIONS,
    DESCRIBE_VERSIONS,
    INCREMENTAL_VERSIONS,
    TOPIC,
    alter,
    describe,
    incremental,
)

GROUP = 32
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
NAMES = sorted(group_configs.GROUP_CONFIGS)
DEFAULTS = {
    "consumer.heartbeat.interval.ms": "5000",
    "consumer.session.timeout.ms": "45000",
    "share.auto.offset.reset": "latest",
    "share.heartbeat.interval.ms": "5000",
    "share.isolation.level": "read_uncommitted",
    "share.record.lock.duration.ms": "30000",
    "share.session.timeout.ms": "45000",
    "streams.heartbeat.interval.ms": "5000",
    "streams.initial.rebalance.delay.ms": "3000",
    "streams.num.standby.replicas": "0",
    "streams.session.timeout.ms": "45000",
}


@pytest.fixture
def ctx(tmp_path: Path) -> BrokerContext:
    return make_ctx(tmp_path)


def group_describe(ctx: BrokerContext, group: str = "g1", version: int = 4, **kwargs: Any) -> dict[str, Any]:
    (result,) = describe(ctx, [(GROUP, group, None)], version, **kwargs)
    assert (result.error_code, result.error_message) == (ErrorCode.NONE, None), result
    assert (result.resource_type, result.resource_name) == (GROUP, group)
    return {c.name: c for c in result.configs}


def values(ctx: BrokerContext, group: str = "g1") -> dict[str, tuple[str, int]]:
    return {name: (c.value, c.config_source) for name, c in group_describe(ctx, group).items()}


def test_the_group_configs_are_kafkas() -> None:
    assert sorted(DEFAULTS) == NAMES


# --- DescribeConfigs ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", DESCRIBE_VERSIONS)
def test_describe_a_group_without_configs(ctx: BrokerContext, version: int) -> None:
    """Every group config with its default, for a group that does not exist (as in Kafka)."""
    configs = group_describe(ctx, "nobody-here", version, synonyms=True, documentation=True)
    assert list(configs) == NAMES
    for name, c in configs.items():
        assert (c.value, c.config_source) == (DEFAULTS[name], ConfigSource.DEFAULT_CONFIG)
        assert not c.read_only and not c.is_sensitive
        assert [(s.name, s.value, s.source) for s in c.synonyms] == [(name, DEFAULTS[name], ConfigSource.DEFAULT_CONFIG)]
        if version >= 3:
            assert c.config_type == (ConfigType.STRING if name.startswith("share.") and not name.endswith(".ms")
                                     else ConfigType.INT)
            assert c.documentation


def test_describe_takes_the_brokers_group_settings(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, group_consumer_session_timeout_ms=50000,
                   values={"group.share.record.lock.duration.ms": "20000", "group.streams.num.standby.replicas": "1"})
    configs = values(ctx)
    assert configs["consumer.session.timeout.ms"] == ("50000", ConfigSource.DEFAULT_CONFIG)
    assert configs["share.record.lock.duration.ms"] == ("20000", ConfigSource.DEFAULT_CONFIG)
    assert configs["streams.num.standby.replicas"] == ("1", ConfigSource.DEFAULT_CONFIG)
    assert group_configs.effective_int(ctx.image, ctx.config, "g1", "share.record.lock.duration.ms") == 20000


def test_describe_filters_and_leaves_out_synonyms_unless_asked(ctx: BrokerContext) -> None:
    (result,) = describe(ctx, [(GROUP, "g1", ["share.isolation.level", "nope"])])
    assert [(c.name, c.value, c.synonyms, c.documentation) for c in result.configs] == [
        ("share.isolation.level", "read_uncommitted", (), None)]


def test_describe_an_empty_group_name(ctx: BrokerContext) -> None:
    empty, fine = describe(ctx, [(GROUP, "", None), (GROUP, "g1", None)])
    assert (empty.error_code, empty.error_message, empty.configs) == (
        ErrorCode.INVALID_REQUEST, "Group name must not be empty", ())
    assert fine.error_code == ErrorCode.NONE and len(fine.configs) == len(NAMES)


# --- IncrementalAlterConfigs -----------------------------------------------------------------------


@pytest.mark.parametrize("version", INCREMENTAL_VERSIONS)
def test_incremental_set_and_delete(ctx: BrokerContext, version: int) -> None:
    ops = [("share.auto.offset.reset", SET, "earliest"), ("share.record.lock.duration.ms", SET, "15000")]
    (ok,) = incremental(ctx, [(GROUP, "g1", ops)], version)
    assert (ok.error_code, ok.error_message, ok.resource_type, ok.resource_name) == (ErrorCode.NONE, None, GROUP, "g1")
    assert ctx.metadata.group_configs("g1") == {"share.auto.offset.reset": "earliest",
                                                "share.record.lock.duration.ms": "15000"}
    configs = group_describe(ctx, synonyms=True)
    reset = configs["share.auto.offset.reset"]
    assert (reset.value, reset.config_source) == ("earliest", ConfigSource.DYNAMIC_GROUP_CONFIG)
    assert [(s.name, s.value, s.source) for s in reset.synonyms] == [
        ("share.auto.offset.reset", "earliest", ConfigSource.DYNAMIC_GROUP_CONFIG)]
    assert configs["share.isolation.level"].config_source == ConfigSource.DEFAULT_CONFIG
    assert values(ctx, "g2")["share.auto.offset.reset"] == ("latest", ConfigSource.DEFAULT_CONFIG)  # other groups
    assert group_configs.effective(ctx.image, ctx.config, "g1", "share.auto.offset.reset") == "earliest"
    assert group_configs.effective(ctx.image, ctx.config, "g2", "share.auto.offset.reset") == "latest"

    ops = [("share.auto.offset.reset", DELETE, None), ("share.isolation.level", SET, "read_committed"),
           ("consumer.heartbeat.interval.ms", DELETE, None)]  # not set: nothing to delete, no error
    (ok,) = incremental(ctx, [(GROUP, "g1", ops)], version)
    assert ok.error_code == ErrorCode.NONE, ok.error_message
    assert ctx.metadata.group_configs("g1") == {"share.record.lock.duration.ms": "15000",
                                                "share.isolation.level": "read_committed"}
    ops = [("share.record.lock.duration.ms", DELETE, None), ("share.isolation.level", DELETE, None)]
    (ok,) = incremental(ctx, [(GROUP, "g1", ops)], version)
    assert ok.error_code == ErrorCode.NONE and ctx.metadata.group_configs("g1") == {}
    assert dict(ctx.image.group_configs) == {}


def test_values_are_stored_canonically(ctx: BrokerContext) -> None:
    (ok,) = incremental(ctx, [(GROUP, "g1", [("share.session.timeout.ms", SET, " 50000 "),
                                             ("share.auto.offset.reset", SET, " by_duration:PT1H ")])])
    assert ok.error_code == ErrorCode.NONE, ok.error_message
    assert ctx.metadata.group_configs("g1") == {"share.session.timeout.ms": "50000",
                                                "share.auto.offset.reset": "by_duration:PT1H"}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("share.record.lock.duration.ms", "14999",
     "share.record.lock.duration.ms must be greater than or equal to group.share.min.record.lock.duration.ms"),
    ("share.record.lock.duration.ms", "60001",
     "share.record.lock.duration.ms must be less than or equal to group.share.max.record.lock.duration.ms"),
    ("share.record.lock.duration.ms", "999",
     "Invalid value 999 for configuration share.record.lock.duration.ms: Value must be at least 1000"),
    ("share.session.timeout.ms", "44999",
     "share.session.timeout.ms must be greater than or equal to group.share.min.session.timeout.ms"),
    ("share.session.timeout.ms", "60001",
     "share.session.timeout.ms must be less than or equal to group.share.max.session.timeout.ms"),
    ("share.heartbeat.interval.ms", "4999",
     "share.heartbeat.interval.ms must be greater than or equal to group.share.min.heartbeat.interval.ms"),
    ("share.heartbeat.interval.ms", "15001",
     "share.heartbeat.interval.ms must be less than or equal to group.share.max.heartbeat.interval.ms"),
    ("consumer.session.timeout.ms", "30000",
     "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"),
    ("consumer.heartbeat.interval.ms", "20000",
     "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"),
    ("consumer.heartbeat.interval.ms", "0",
     "Invalid value 0 for configuration consumer.heartbeat.interval.ms: Value must be at least 1"),
    ("consumer.session.timeout.ms", "abc",
     "Invalid value abc for configuration consumer.session.timeout.ms: Not a number of type INT"),
    ("streams.num.standby.replicas", "3",
     "streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas"),
    ("streams.session.timeout.ms", "61000",
     "streams.session.timeout.ms must be less than or equal to group.streams.max.session.timeout.ms"),
    ("share.isolation.level", "READ_COMMITTED",
     "Invalid value READ_COMMITTED for configuration share.isolation.level: "
     "String must be one of: read_committed, read_uncommitted"),
    ("share.auto.offset.reset", "none",
     "Invalid value none for configuration share.auto.offset.reset: Invalid value `none` for configuration "
     "share.auto.offset.reset. The value must be either 'earliest', 'latest' or of the format "
     "'by_duration:<PnDTnHnMn.nS>'."),
    ("no.such.config", "1", "Unknown group config name: no.such.config"),
])
def test_invalid_values(ctx: BrokerContext, name: str, value: str, message: str) -> None:
    (bad,) = incremental(ctx, [(GROUP, "g1", [(name, SET, value)])])
    assert (bad.error_code, bad.error_message) == (ErrorCode.INVALID_CONFIG, message)
    (legacy,) = alter(ctx, [(GROUP, "g1", {name: value})])
    assert (legacy.error_code, legacy.error_message) == (ErrorCode.INVALID_CONFIG, message)
    assert ctx.metadata.group_configs("g1") == {}


@pytest.mark.parametrize(("value", "valid"), [
    ("earliest", True), ("latest", True), ("by_duration:PT0S", True), ("by_duration:P1DT2H30M", True),
    ("by_duration:pt1.5s", True), ("by_duration:PT-0S", True), ("by_duration:-PT-1H", True),
    ("by_duration:-PT1H", False), ("by_duration:PT-0.5S", False), ("by_duration:P-1D", False),
    ("by_duration:", False), ("by_duration", False), ("by_duration:P", False), ("by_duration:PT", False),
    ("by_duration:P1DT", False), ("by_duration:1H", False), ("by_duration:P1H", False), ("Earliest", False),
    ("BY_DURATION:PT1H", False), ("", False),
])
def test_share_auto_offset_reset(ctx: BrokerContext, value: str, valid: bool) -> None:
    (response,) = incremental(ctx, [(GROUP, "g1", [("share.auto.offset.reset", SET, value)])])
    assert response.error_code == (ErrorCode.NONE if valid else ErrorCode.INVALID_CONFIG), response.error_message


def test_session_timeouts_must_exceed_heartbeats(tmp_path: Path) -> None:
    # Bounds wide enough that only the session > heartbeat rule can fail.
    ctx = make_ctx(tmp_path, values={"group.share.min.session.timeout.ms": "1000",
                                     "group.share.max.heartbeat.interval.ms": "60000"})
    ops = [("share.session.timeout.ms", SET, "10000"), ("share.heartbeat.interval.ms", SET, "10000")]
    (bad,) = incremental(ctx, [(GROUP, "g1", ops)])
    assert (bad.error_code, bad.error_message) == (
        ErrorCode.INVALID_CONFIG, "share.session.timeout.ms must be greater than share.heartbeat.interval.ms")
    # The rule holds over the group's whole set: a heartbeat alone above the broker's session timeout.
    (alone,) = incremental(ctx, [(GROUP, "g1", [("share.heartbeat.interval.ms", SET, "50000")])])
    assert alone.error_code == ErrorCode.INVALID_CONFIG
    ops = [("share.session.timeout.ms", SET, "10000"), ("share.heartbeat.interval.ms", SET, "9000")]
    (ok,) = incremental(ctx, [(GROUP, "g1", ops)])
    assert ok.error_code == ErrorCode.NONE, ok.error_message


def test_bounds_are_the_brokers(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, values={"group.share.max.record.lock.duration.ms": "120000"})
    (ok,) = incremental(ctx, [(GROUP, "g1", [("share.record.lock.duration.ms", SET, "100000")])])
    assert ok.error_code == ErrorCode.NONE, ok.error_message
    assert group_configs.effective_int(ctx.image, ctx.config, "g1", "share.record.lock.duration.ms") == 100000


def test_incremental_errors_change_nothing(ctx: BrokerContext) -> None:
    (ok,) = incremental(ctx, [(GROUP, "g1", [("share.isolation.level", SET, "read_committed")])])
    assert ok.error_code == ErrorCode.NONE
    before = {"share.isolation.level": "read_committed"}
    ops = [("share.auto.offset.reset", SET, "earliest"), ("share.record.lock.duration.ms", SET, "1")]
    (bad,) = incremental(ctx, [(GROUP, "g1", ops)])
    assert bad.error_code == ErrorCode.INVALID_CONFIG
    (append,) = incremental(ctx, [(GROUP, "g1", [("share.isolation.level", APPEND, "read_committed")])])
    assert (append.error_code, append.error_message) == (
        ErrorCode.INVALID_CONFIG, "Can't APPEND to key share.isolation.level because its type is not LIST.")
    (subtract,) = incremental(ctx, [(GROUP, "g1", [("no.such", SUBTRACT, "x")])])
    assert (subtract.error_code, subtract.error_message) == (
        ErrorCode.INVALID_CONFIG, "Can't SUBTRACT to key no.such because its type is not LIST.")
    null, dup, default = incremental(ctx, [
        (GROUP, "g1", [("share.auto.offset.reset", SET, None)]),
        (GROUP, "g2", [("share.auto.offset.reset", SET, "earliest"), ("share.auto.offset.reset", DELETE, None)]),
        (GROUP, "", [("share.auto.offset.reset", SET, "earliest")]),
    ])
    assert (null.error_code, null.error_message) == (
        ErrorCode.INVALID_REQUEST, "Null value not supported for : share.auto.offset.reset")
    assert (dup.error_code, dup.error_message) == (ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    assert (default.error_code, default.error_message) == (
        ErrorCode.INVALID_REQUEST, "Default group resources are not allowed.")
    first, second = incremental(ctx, [(GROUP, "g1", []), (GROUP, "g1", [])])
    assert first.error_code == second.error_code == ErrorCode.INVALID_REQUEST
    assert dict(ctx.image.group_configs) == {"g1": before}


def test_validate_only(ctx: BrokerContext) -> None:
    ops = [("share.auto.offset.reset", SET, "earliest")]
    (ok,) = incremental(ctx, [(GROUP, "g1", ops)], validate_only=True)
    (bad,) = incremental(ctx, [(GROUP, "g1", [("share.auto.offset.reset", SET, "soon")])], validate_only=True)
    (legacy,) = alter(ctx, [(GROUP, "g1", {"share.auto.offset.reset": "earliest"})], validate_only=True)
    assert (ok.error_code, bad.error_code, legacy.error_code) == (
        ErrorCode.NONE, ErrorCode.INVALID_CONFIG, ErrorCode.NONE)
    assert dict(ctx.image.group_configs) == {}


def test_groups_and_topics_in_one_request(ctx: BrokerContext) -> None:
    group, topic = incremental(ctx, [(GROUP, "g1", [("share.auto.offset.reset", SET, "earliest")]),
                                     (TOPIC, "nope", [("retention.ms", SET, "1")])])
    assert (group.error_code, topic.error_code) == (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    assert ctx.metadata.group_configs("g1") == {"share.auto.offset.reset": "earliest"}


# --- AlterConfigs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALTER_VERSIONS)
def test_alter_replaces_the_whole_set(ctx: BrokerContext, version: int) -> None:
    incremental(ctx, [(GROUP, "g1", [("share.auto.offset.reset", SET, "earliest")])])
    (ok,) = alter(ctx, [(GROUP, "g1", {"share.isolation.level": "read_committed",
                                       "consumer.session.timeout.ms": "50000"})], version)
    assert (ok.error_code, ok.resource_type, ok.resource_name) == (ErrorCode.NONE, GROUP, "g1")
    assert ctx.metadata.group_configs("g1") == {"share.isolation.level": "read_committed",
                                                "consumer.session.timeout.ms": "50000"}
    configs = values(ctx)
    assert configs["share.auto.offset.reset"] == ("latest", ConfigSource.DEFAULT_CONFIG)
    assert configs["consumer.session.timeout.ms"] == ("50000", ConfigSource.DYNAMIC_GROUP_CONFIG)
    (cleared,) = alter(ctx, [(GROUP, "g1", {})], version)
    assert cleared.error_code == ErrorCode.NONE and ctx.metadata.group_configs("g1") == {}
    (default,) = alter(ctx, [(GROUP, "", {"share.isolation.level": "read_committed"})], version)
    assert (default.error_code, default.error_message) == (
        ErrorCode.INVALID_REQUEST, "Default group resources are not allowed.")


# --- persistence ----------------------------------------------------------------------------------


def test_group_configs_survive_a_restart(ctx: BrokerContext, tmp_path: Path) -> None:
    odd = "team/a b%c"  # any string is a group id
    incremental(ctx, [(GROUP, "g1", [("share.auto.offset.reset", SET, "by_duration:P1D")]),
                      (GROUP, odd, [("share.isolation.level", SET, "read_committed")])])
    reopened = LocalMetadataStore(tmp_path)
    assert reopened.group_configs("g1") == {"share.auto.offset.reset": "by_duration:P1D"}
    assert reopened.group_configs(odd) == {"share.isolation.level": "read_committed"}
    assert group_configs.effective(reopened.image, ctx.config, odd, "share.isolation.level") == "read_committed"


# --- authorization --------------------------------------------------------------------------------

ALICE = "User:alice"
SECURED = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
           "super.users": "User:admin"}


def _grant(ctx: BrokerContext, name: str, operation: Operation, pattern: PatternType = PatternType.LITERAL) -> None:
    binding = AclBinding(ResourceType.GROUP, name, pattern, ALICE, "*", operation, Permission.ALLOW)
    asyncio.run(ctx.metadata.alter_acls([binding], []))


def _as_alice(ctx: BrokerContext, key: int, body: dict[str, Any], version: int) -> Any:
    return call(ctx, key, version, body, principal=ALICE)


def _alice_describes(ctx: BrokerContext, group: str) -> Any:
    body = {"resources": [{"resource_type": GROUP, "resource_name": group, "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False}
    (result,) = _as_alice(ctx, ApiKey.DESCRIBE_CONFIGS, body, 4).results
    return result


def _alice_alters(ctx: BrokerContext, group: str) -> tuple[Any, Any]:
    incremental_body = {"validate_only": False, "resources": [{"resource_type": GROUP, "resource_name": group, "configs": [
        {"name": "share.auto.offset.reset", "config_operation": SET, "value": "earliest"}]}]}
    legacy_body = {"validate_only": False, "resources": [{"resource_type": GROUP, "resource_name": group, "configs": [
        {"name": "share.auto.offset.reset", "value": "earliest"}]}]}
    (inc,) = _as_alice(ctx, ApiKey.INCREMENTAL_ALTER_CONFIGS, incremental_body, 1).responses
    (legacy,) = _as_alice(ctx, ApiKey.ALTER_CONFIGS, legacy_body, 2).responses
    return inc, legacy


def test_describe_needs_describe_configs_on_the_group(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, values=SECURED)
    refused = _alice_describes(ctx, "g1")
    assert (refused.error_code, refused.error_message, refused.configs) == (
        ErrorCode.GROUP_AUTHORIZATION_FAILED, "Group authorization failed.", ())
    _grant(ctx, "g1", Operation.DESCRIBE)  # DESCRIBE is not DESCRIBE_CONFIGS
    assert _alice_describes(ctx, "g1").error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    _grant(ctx, "g1", Operation.DESCRIBE_CONFIGS)
    allowed = _alice_describes(ctx, "g1")
    assert allowed.error_code == ErrorCode.NONE and len(allowed.configs) == len(NAMES)
    assert _alice_describes(ctx, "g2").error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    # ALTER_CONFIGS implies DESCRIBE_CONFIGS, as in Kafka; so does a prefixed ACL.
    _grant(ctx, "g2", Operation.ALTER_CONFIGS)
    _grant(ctx, "team-", Operation.DESCRIBE_CONFIGS, PatternType.PREFIXED)
    assert _alice_describes(ctx, "g2").error_code == ErrorCode.NONE
    assert _alice_describes(ctx, "team-a").error_code == ErrorCode.NONE


def test_alter_needs_alter_configs_on_the_group(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, values=SECURED)
    _grant(ctx, "g1", Operation.DESCRIBE_CONFIGS)
    for refused in _alice_alters(ctx, "g1"):
        assert (refused.error_code, refused.error_message) == (
            ErrorCode.GROUP_AUTHORIZATION_FAILED, "Group authorization failed.")
    assert dict(ctx.image.group_configs) == {}
    _grant(ctx, "g1", Operation.ALTER_CONFIGS)
    for allowed in _alice_alters(ctx, "g1"):
        assert allowed.error_code == ErrorCode.NONE, allowed.error_message
    assert ctx.metadata.group_configs("g1") == {"share.auto.offset.reset": "earliest"}
    assert [r.error_code for r in _alice_alters(ctx, "g2")] == [ErrorCode.GROUP_AUTHORIZATION_FAILED] * 2
