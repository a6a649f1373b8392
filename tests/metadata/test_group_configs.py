"""strom.metadata.group_configs on its own: the effective value of a group config, Kafka's
checks of a group's set, ISO-8601 durations as Java reads them, and the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.metadata import group_configs
from strom.metadata.broker_config import BrokerConfig, BrokerConfigError, load_broker_config
from strom.metadata.configs import ConfigError, ConfigSource
from strom.metadata.group_configs import GROUP_CONFIGS, effective, effective_int, iso_duration_ms
from strom.metadata.image import ClusterImage
from strom.protocol.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]


def test_effective_is_the_groups_then_the_brokers_then_the_default() -> None:
    broker = BrokerConfig(values={"group.share.record.lock.duration.ms": "20000"})
    image = ClusterImage(group_configs={"g": {"share.auto.offset.reset": "earliest",
                                              "share.record.lock.duration.ms": "40000"}})
    assert effective(image, broker, "g", "share.auto.offset.reset") == "earliest"
    assert effective(image, broker, "other", "share.auto.offset.reset") == "latest"
    assert effective_int(image, broker, "g", "share.record.lock.duration.ms") == 40000
    assert effective_int(image, broker, "other", "share.record.lock.duration.ms") == 20000
    assert effective_int(image, BrokerConfig(), "other", "share.record.lock.duration.ms") == 30000
    # typed BrokerConfig attributes (group.consumer.*) count as the broker's setting too
    assert effective_int(image, BrokerConfig(group_consumer_session_timeout_ms=50000), "g",
                         "consumer.session.timeout.ms") == 50000
    with pytest.raises(KeyError):
        effective(image, broker, "g", "no.such.config")
    with pytest.raises(TypeError):
        effective_int(image, broker, "g", "share.isolation.level")


def test_the_broker_settings_behind_the_group_configs_exist() -> None:
    config = load_broker_config(None, {"STROM_GROUP_SHARE_RECORD_LOCK_DURATION_MS": "25000"},
                                {"group.share.max.record.lock.duration.ms": "90000"})
    image = ClusterImage()
    assert effective_int(image, config, "g", "share.record.lock.duration.ms") == 25000
    assert group_configs.validate_group_configs({"share.record.lock.duration.ms": "90000"}, config, {}) == {
        "share.record.lock.duration.ms": "90000"}


def test_checks_run_in_kafkas_order() -> None:
    broker = BrokerConfig()

    def error(configs: dict[str, str | None]) -> str:
        with pytest.raises(ConfigError) as info:
            group_configs.validate_group_configs(configs, broker, {})
        assert info.value.error_code == ErrorCode.INVALID_CONFIG
        return info.value.message

    assert error({"a": None, "share.isolation.level": None}) == "Null value not supported for group configs: a,share.isolation.level"
    assert error({"share.isolation.level": "x", "nope": "1"}) == "Unknown group config name: nope"
    # parsed in definition order: consumer.* before share.*
    assert error({"share.isolation.level": "x", "consumer.session.timeout.ms": "x"}).startswith(
        "Invalid value x for configuration consumer.session.timeout.ms")
    # bounds before session > heartbeat; heartbeat bounds before session bounds
    assert error({"consumer.session.timeout.ms": "1", "consumer.heartbeat.interval.ms": "1"}) == (
        "consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms")


def test_describe_sources() -> None:
    entries = group_configs.describe_group_configs({"share.isolation.level": "read_committed"}, BrokerConfig(), {})
    assert [e.name for e in entries] == sorted(GROUP_CONFIGS)
    sources = {e.name: e.source for e in entries}
    assert sources.pop("share.isolation.level") == ConfigSource.DYNAMIC_GROUP_CONFIG == 8
    assert set(sources.values()) == {ConfigSource.DEFAULT_CONFIG}


@pytest.mark.parametrize(("text", "ms"), [
    ("PT0S", 0), ("P1D", 86_400_000), ("PT1H", 3_600_000), ("pt1h30m", 5_400_000), ("PT1.5S", 1500),
    ("PT1,5S", 1500), ("PT1.S", 1000), ("PT0.0001S", 0), ("P1DT2H3M4.005S", 93_784_005), ("+PT1M", 60_000),
    ("-PT1S", -1000), ("PT-1S", -1000), ("-PT-1S", 1000), ("PT-0.5S", -500), ("P-1DT24H", 0),
    ("PT-0S", 0), ("PT9223372036854775807S", 9_223_372_036_854_775_807_000),
    ("P", None), ("PT", None), ("P1DT", None), ("1D", None), ("P1H", None), ("P1D1H", None), ("PT1.1234567891S", None),
    ("P1.5D", None), ("PT1H ", None), ("", None), ("P106751991167301D", None), ("PT9223372036854775808S", None),
])
def test_iso_durations_as_java_reads_them(text: str, ms: int | None) -> None:
    assert iso_duration_ms(text) == ms


def test_configuration_md_lists_every_group_config() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index("## Group configs"):]
    for name in GROUP_CONFIGS:
        assert f"`{name}`" in section, name


@pytest.mark.parametrize(("settings", "problem"), [
    ({}, None),
    ({"group.share.record.lock.duration.ms": "70000"},
     "group.share.max.record.lock.duration.ms must be greater than or equal to group.share.record.lock.duration.ms"),
    ({"group.share.record.lock.duration.ms": "10000"},
     "group.share.record.lock.duration.ms must be greater than or equal to group.share.min.record.lock.duration.ms"),
    ({"group.share.session.timeout.ms": "70000"},
     "group.share.session.timeout.ms must be less than or equal to group.share.max.session.timeout.ms"),
    ({"group.share.min.heartbeat.interval.ms": "20000"},
     "group.share.max.heartbeat.interval.ms must be greater than or equal to group.share.min.heartbeat.interval.ms"),
    ({"group.share.min.session.timeout.ms": "1000", "group.share.session.timeout.ms": "5000"},
     "group.share.heartbeat.interval.ms must be less than group.share.session.timeout.ms"),
    ({"group.share.max.share.sessions": "100"}, "group.share.max.share.sessions must be greater than or equal to group.share.max.size"),
    ({"group.streams.num.standby.replicas": "3"},
     "group.streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas"),
])
def test_broker_group_settings(settings: dict[str, str], problem: str | None) -> None:
    """Checked when the broker's config loads: a broker with inconsistent settings does not start."""
    if problem is None:
        group_configs.check_broker_group_settings(load_broker_config(None, {}, settings))
        return
    with pytest.raises(BrokerConfigError, match="^" + problem + "$"):
        load_broker_config(None, {}, settings)
