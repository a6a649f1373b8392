"""Group configs (KIP-848, KIP-932, KIP-1071): per-group overrides of the broker's group
settings, with Kafka 4.2's names, types, defaults and checks (its GroupConfig).

A group's configs are set with IncrementalAlterConfigs or AlterConfigs on resource type GROUP
(32), before or after the group exists, and kept in the metadata store
(``ClusterImage.group_configs``: group id -> the configs set on it), so they survive restarts
and reach every broker of a cluster.

The value a group works with is the group's own, else the broker's setting the config is named
after (``share.record.lock.duration.ms`` -> ``group.share.record.lock.duration.ms``), else the
config's default::

    from strom.metadata import group_configs
    group_configs.effective(ctx.image, ctx.config, "g1", "share.auto.offset.reset")  # "latest"
    group_configs.effective_int(ctx.image, ctx.config, "g1", "share.record.lock.duration.ms")  # 30000

Checks, as Kafka's GroupConfig.validate: every name must be a group config ("Unknown group
config name: X"), every value must parse and pass its validator, and then, over the group's
whole set with the broker's values for what it does not set, each timing must lie within the
broker's min..max (``share.record.lock.duration.ms must be less than or equal to
group.share.max.record.lock.duration.ms``) and each session timeout must exceed its heartbeat
interval. Failures are ConfigError(INVALID_CONFIG). One difference: for the configs a group does
not set, Kafka checks its compiled-in defaults of the share.* and streams.* ones; strom checks
the broker's values, which are the ones the group then works with.

DescribeConfigs on a group lists every group config, sorted by name, with its effective value;
the source is DYNAMIC_GROUP_CONFIG (8) for the ones set on the group, else DEFAULT_CONFIG (5),
as Kafka's ConfigHelper reports it (also when the value comes from a broker setting).

``iso_duration_ms`` reads the duration of ``share.auto.offset.reset=by_duration:<duration>``.
``check_broker_group_settings`` is Kafka's start-up check of the broker's group.share.* and
group.streams.* settings (their defaults within their bounds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from strom.metadata.configs import (
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    Validator,
    at_least,
    broker_config_value,
    normalize,
    one_of,
)
from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.metadata.broker_config import BrokerConfig
    from strom.metadata.image import ClusterImage

__all__ = [
    "GROUP_CONFIGS",
    "check_broker_group_settings",
    "describe_group_configs",
    "effective",
    "effective_configs",
    "effective_int",
    "iso_duration_ms",
    "validate_group_configs",
]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

# Java's Duration.parse pattern: [-+]P[nD][T[nH][nM][n[.f]S]], case-insensitive.
_ISO_DURATION = re.compile(
    r"([-+]?)P(?:([-+]?[0-9]+)D)?(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
    re.IGNORECASE,
)


def iso_duration_ms(text: str) -> int | None:
    """A duration in Java's ``Duration.parse`` format (ISO-8601 ``PnDTnHnMn.nS``) in
    milliseconds, rounded toward negative infinity; None when Java would refuse it."""
    m = _ISO_DURATION.fullmatch(text)
    if m is None:
        return None
    negate, days, t_part, hours, minutes, seconds, fraction = m.groups()
    if (t_part is not None and len(t_part) == 1) or (days, hours, minutes, seconds) == (None, None, None, None):
        return None  # "P", "PT", "P1DT": nothing after the designator
    total = 0
    for part, unit in ((days, 86400), (hours, 3600), (minutes, 60), (seconds, 1)):
        if part is None:
            continue
        value = int(part)
        if not _LONG_MIN <= value <= _LONG_MAX or not _LONG_MIN <= value * unit <= _LONG_MAX:
            return None  # Java: NumberFormatException / ArithmeticException
        total += value * unit
        if not _LONG_MIN <= total <= _LONG_MAX:
            return None
    nanos = int((fraction or "").ljust(9, "0")) if fraction else 0
    if seconds is not None and seconds.startswith("-"):
        nanos = -nanos
    total_nanos = total * 1_000_000_000 + nanos
    if negate == "-":
        total_nanos = -total_nanos
    return total_nanos // 1_000_000


def _share_auto_offset_reset(value: str) -> str | None:
    """Kafka's ShareGroupAutoOffsetResetStrategy.Validator."""
    if value in ("earliest", "latest"):
        return None
    if value.startswith("by_duration:"):
        ms = iso_duration_ms(value[len("by_duration:"):])
        if ms is not None and ms >= 0:
            return None
    return (
        f"Invalid value `{value}` for configuration share.auto.offset.reset. The value must be either "
        "'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'."
    )


def _g(name: str, broker_name: str, default: str, doc: str, validator: Validator) -> ConfigDef:
    """An int group config whose default is the broker setting ``broker_name`` (kept as its
    ``broker_synonyms``)."""
    return ConfigDef(name, "int", default, doc, validator, (broker_name,))


def _s(name: str, default: str, doc: str, validator: Validator) -> ConfigDef:
    return ConfigDef(name, "string", default, doc, validator)


# In Kafka's definition order (its checks run in this order).
_DEFS = (
    _g("consumer.session.timeout.ms", "group.consumer.session.timeout.ms", "45000",
       "How long a member of this consumer group may go without a heartbeat before it is removed.", at_least(1)),
    _g("consumer.heartbeat.interval.ms", "group.consumer.heartbeat.interval.ms", "5000",
       "How often the members of this consumer group heartbeat.", at_least(1)),
    _g("share.session.timeout.ms", "group.share.session.timeout.ms", "45000",
       "How long a member of this share group may go without a heartbeat before it is removed.", at_least(1)),
    _g("share.heartbeat.interval.ms", "group.share.heartbeat.interval.ms", "5000",
       "How often the members of this share group heartbeat.", at_least(1)),
    _g("share.record.lock.duration.ms", "group.share.record.lock.duration.ms", "30000",
       "How long a member of this share group holds a record it acquired before the record is released "
       "for another delivery.", at_least(1000)),
    _s("share.auto.offset.reset", "latest",
       "Where this share group starts in a partition it has no state for: earliest, latest, or "
       "by_duration:<ISO-8601 duration, PnDTnHnMn.nS, not negative> (the first record no older than that).",
       _share_auto_offset_reset),
    _s("share.isolation.level", "read_uncommitted",
       "read_committed: this share group gets only committed transactional records; read_uncommitted: "
       "every record, aborted transactional ones too. Non-transactional records are delivered either way.",
       one_of("read_committed", "read_uncommitted")),
    _g("streams.session.timeout.ms", "group.streams.session.timeout.ms", "45000",
       "How long a member of this streams group may go without a heartbeat before it is removed.", at_least(1)),
    _g("streams.heartbeat.interval.ms", "group.streams.heartbeat.interval.ms", "5000",
       "How often the members of this streams group heartbeat.", at_least(1)),
    _g("streams.num.standby.replicas", "group.streams.num.standby.replicas", "0",
       "Standby replicas of each task of this streams group.", at_least(0)),
    _g("streams.initial.rebalance.delay.ms", "group.streams.initial.rebalance.delay.ms", "3000",
       "How long this streams group waits for more members before its first rebalance.", at_least(0)),
)
GROUP_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in _DEFS}

# Kafka's GroupConfig.validateValues, in its order: (group config, broker minimum, broker maximum).
_BOUNDS: tuple[tuple[str, str | None, str | None], ...] = (
    ("consumer.heartbeat.interval.ms", "group.consumer.min.heartbeat.interval.ms",
     "group.consumer.max.heartbeat.interval.ms"),
    ("consumer.session.timeout.ms", "group.consumer.min.session.timeout.ms", "group.consumer.max.session.timeout.ms"),
    ("share.heartbeat.interval.ms", "group.share.min.heartbeat.interval.ms", "group.share.max.heartbeat.interval.ms"),
    ("share.session.timeout.ms", "group.share.min.session.timeout.ms", "group.share.max.session.timeout.ms"),
    ("share.record.lock.duration.ms", "group.share.min.record.lock.duration.ms",
     "group.share.max.record.lock.duration.ms"),
    ("streams.heartbeat.interval.ms", "group.streams.min.heartbeat.interval.ms",
     "group.streams.max.heartbeat.interval.ms"),
    ("streams.session.timeout.ms", "group.streams.min.session.timeout.ms", "group.streams.max.session.timeout.ms"),
    ("streams.num.standby.replicas", None, "group.streams.max.standby.replicas"),
)
_SESSIONS = (
    ("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"),
    ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
    ("streams.session.timeout.ms", "streams.heartbeat.interval.ms"),
)


def _invalid(message: str) -> ConfigError:
    return ConfigError(ErrorCode.INVALID_CONFIG, message)


def _default(defn: ConfigDef, broker: BrokerConfig, broker_dynamic: Mapping[str, str]) -> str:
    """The value of a config the group does not set: the broker's setting, else the default."""
    for name in defn.broker_synonyms:
        value = broker_config_value(name, broker, broker_dynamic)
        if value is not None:
            return value
    assert defn.default is not None, defn.name
    return defn.default


def _broker_int(name: str, broker: BrokerConfig, broker_dynamic: Mapping[str, str]) -> int:
    value = broker_config_value(name, broker, broker_dynamic)
    assert value is not None, name
    return int(value)


def effective(image: ClusterImage, broker: BrokerConfig, group_id: str, name: str) -> str:
    """The value of group config ``name`` for ``group_id``: the group's own, else the broker's
    setting (``group.<name>``), else Kafka's default. KeyError for a name that is not a group
    config."""
    defn = GROUP_CONFIGS[name]
    own = image.group_configs.get(group_id)
    if own is not None and name in own:
        return own[name]
    return _default(defn, broker, image.broker_configs)


def effective_int(image: ClusterImage, broker: BrokerConfig, group_id: str, name: str) -> int:
    """``effective`` of an int config (``*.ms``, ``streams.num.standby.replicas``)."""
    if GROUP_CONFIGS[name].type != "int":
        raise TypeError(f"{name} is not an int config")
    return int(effective(image, broker, group_id, name))


def effective_configs(
    overrides: Mapping[str, str], broker: BrokerConfig, broker_dynamic: Mapping[str, str]
) -> dict[str, str]:
    """Every group config with its effective value, given the configs set on the group."""
    return {
        name: overrides[name] if name in overrides else _default(defn, broker, broker_dynamic)
        for name, defn in GROUP_CONFIGS.items()
    }


def validate_group_configs(
    configs: Mapping[str, str | None], broker: BrokerConfig, broker_dynamic: Mapping[str, str]
) -> dict[str, str]:
    """Check the whole set of configs a group is to have (as Kafka's controller does for a
    GROUP resource); returns canonical values. Raises ConfigError(INVALID_CONFIG)."""
    null = [name for name, value in configs.items() if value is None]
    if null:
        raise _invalid(f"Null value not supported for group configs: {','.join(null)}")
    unknown = next((name for name in configs if name not in GROUP_CONFIGS), None)
    if unknown is not None:
        raise _invalid(f"Unknown group config name: {unknown}")
    checked: dict[str, str] = {}
    for name, defn in GROUP_CONFIGS.items():  # parsed in definition order, as Kafka's ConfigDef.parse
        raw = configs.get(name)
        if raw is None:
            continue
        try:
            checked[name] = normalize(defn, raw)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
    values = effective_configs(checked, broker, broker_dynamic)
    for name, low, high in _BOUNDS:
        value = int(values[name])
        if low is not None and value < _broker_int(low, broker, broker_dynamic):
            raise _invalid(f"{name} must be greater than or equal to {low}")
        if high is not None and value > _broker_int(high, broker, broker_dynamic):
            raise _invalid(f"{name} must be less than or equal to {high}")
    for session, heartbeat in _SESSIONS:
        if int(values[session]) <= int(values[heartbeat]):
            raise _invalid(f"{session} must be greater than {heartbeat}")
    return checked


def describe_group_configs(
    overrides: Mapping[str, str], broker: BrokerConfig, broker_dynamic: Mapping[str, str]
) -> list[ConfigEntry]:
    """Every group config, sorted by name, as Kafka's ConfigHelper.createGroupConfigEntry: the
    one synonym is the config itself, from the group (DYNAMIC_GROUP_CONFIG) or not (DEFAULT_CONFIG)."""
    values = effective_configs(overrides, broker, broker_dynamic)
    entries = []
    for name in sorted(GROUP_CONFIGS):
        defn = GROUP_CONFIGS[name]
        source = ConfigSource.DYNAMIC_GROUP_CONFIG if name in overrides else ConfigSource.DEFAULT_CONFIG
        entries.append(ConfigEntry(
            name=name,
            value=values[name],
            read_only=False,
            source=source,
            is_sensitive=False,
            synonyms=(ConfigSynonym(name, values[name], source),),
            config_type=defn.config_type,
            documentation=defn.doc,
        ))
    return entries


def check_broker_group_settings(broker: BrokerConfig) -> None:
    """Kafka's start-up checks of the broker's share and streams group settings
    (GroupCoordinatorConfig, ShareGroupConfig.validate); raises ValueError with Kafka's sentence.
    The group.consumer.* ones are checked by strom.metadata.broker_config."""

    def value(name: str) -> int:
        return _broker_int(name, broker, {})

    for kind in ("share", "streams"):
        prefix = f"group.{kind}."
        for setting in ("heartbeat.interval.ms", "session.timeout.ms"):
            low, high, default = f"{prefix}min.{setting}", f"{prefix}max.{setting}", prefix + setting
            for big, small in ((high, low), (default, low)):
                if value(big) < value(small):
                    raise ValueError(f"{big} must be greater than or equal to {small}")
            if value(default) > value(high):
                raise ValueError(f"{default} must be less than or equal to {high}")
        if kind == "streams" and value(f"{prefix}num.standby.replicas") > value(f"{prefix}max.standby.replicas"):
            raise ValueError(f"{prefix}num.standby.replicas must be less than or equal to {prefix}max.standby.replicas")
        if value(f"{prefix}heartbeat.interval.ms") >= value(f"{prefix}session.timeout.ms"):
            raise ValueError(f"{prefix}heartbeat.interval.ms must be less than {prefix}session.timeout.ms")
    lock, low, high = ("group.share.record.lock.duration.ms", "group.share.min.record.lock.duration.ms",
                       "group.share.max.record.lock.duration.ms")
    if value(lock) < value(low):
        raise ValueError(f"{lock} must be greater than or equal to {low}")
    if value(high) < value(lock):
        raise ValueError(f"{high} must be greater than or equal to {lock}")
    if value("group.share.max.share.sessions") < value("group.share.max.size"):
        raise ValueError("group.share.max.share.sessions must be greater than or equal to group.share.max.size")
