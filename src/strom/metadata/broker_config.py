"""The broker's static configuration: Kafka's names, from a TOML file, the environment and flags.

Sources, lowest priority first:
  1. a TOML file whose keys are Kafka's config names (``num.partitions = 3``,
     ``log.retention.hours = 24``, ``log.dirs = "/var/lib/strom"``,
     ``listeners = "PLAINTEXT://0.0.0.0:9092"``); dotted keys and tables both work, so
     ``[log] retention.hours = 24`` means ``log.retention.hours``;
  2. environment variables ``STROM_<NAME>``: the Kafka name upper-cased with '.' replaced by
     '_' (``STROM_NUM_PARTITIONS=3``, ``STROM_LOG_RETENTION_HOURS=24``, ``STROM_LOG_DIRS=...``).
     Kafka's names hold no '_', so the mapping is one to one. ``STROM_BROKERS`` (the CLI's
     bootstrap address) and the test harness's ``STROM_TEST_*`` are not broker configs;
  3. ``overrides`` (the CLI flags, already translated to Kafka names).

Every value is checked against its definition in ``strom.metadata.configs.BROKER_CONFIGS``;
an unknown name or a bad value raises BrokerConfigError with a sentence naming the key and
where it came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from strom.metadata.configs import BROKER_CONFIGS, InvalidValue, format_value, parse_value
from strom.security.listeners import (
    Endpoint,
    Listener,
    format_endpoints,
    parse_endpoints,
    parse_protocol_map,
    resolve,
)

ENV_PREFIX = "STROM_"
# STROM_* variables that are not broker configs.
ENV_IGNORED = frozenset({"STROM_BROKERS"})
ENV_IGNORED_PREFIXES = ("STROM_TEST_",)
ENV_NAMES: dict[str, str] = {ENV_PREFIX + n.upper().replace(".", "_"): n for n in BROKER_CONFIGS}

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092


class BrokerConfigError(ValueError):
    """A static broker config could not be loaded; the message is a full sentence."""


@dataclass
class BrokerConfig:
    """Typed static settings the broker reads, plus ``values``: the Kafka-named static values
    that were set explicitly (DescribeConfigs reports them as STATIC_BROKER_CONFIG).

    Attributes without a special note are the Kafka config of the same name with '_' for '.'.
    Dynamic (DescribeConfigs-altered) values live in the MetadataStore, not here."""

    node_id: int = 0
    data_dir: str | Path = "./data"  # log.dirs, else log.dir
    listen_host: str = DEFAULT_HOST  # listeners
    listen_port: int = DEFAULT_PORT
    advertised_host: str | None = None  # advertised.listeners
    advertised_port: int | None = None
    broker_rack: str | None = None
    num_partitions: int = 1
    default_replication_factor: int = 1
    auto_create_topics_enable: bool = True
    delete_topic_enable: bool = True
    socket_request_max_bytes: int = 104857600
    fetch_max_bytes: int = 57671680
    connections_max_idle_ms: int = 600000
    message_max_bytes: int = 1048588
    offsets_topic_num_partitions: int = 50
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_max_size: int = 2**31 - 1
    group_consumer_session_timeout_ms: int = 45000
    group_consumer_min_session_timeout_ms: int = 45000
    group_consumer_max_session_timeout_ms: int = 60000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_min_heartbeat_interval_ms: int = 5000
    group_consumer_max_heartbeat_interval_ms: int = 15000
    group_consumer_max_size: int = 2**31 - 1
    transaction_state_log_num_partitions: int = 50
    transaction_max_timeout_ms: int = 900000
    transactional_id_expiration_ms: int = 604800000
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10000
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3600000
    producer_id_expiration_ms: int = 86400000
    producer_id_expiration_check_interval_ms: int = 600000
    log_retention_check_interval_ms: int = 300000
    log_flush_scheduler_interval_ms: int = 2**63 - 1
    log_flush_offset_checkpoint_interval_ms: int = 60000
    etcd_endpoints: str | None = None  # cluster mode when set
    cluster_id: str = "strom"
    broker_session_timeout_ms: int = 9000
    offsets_topic_replication_factor: int = 3
    transaction_state_log_replication_factor: int = 3
    transaction_state_log_min_isr: int = 2
    share_coordinator_state_topic_num_partitions: int = 50
    share_coordinator_state_topic_replication_factor: int = 3
    share_coordinator_state_topic_min_isr: int = 2
    replica_lag_time_max_ms: int = 30000
    replica_fetch_wait_max_ms: int = 500
    replica_fetch_max_bytes: int = 1048576
    replica_fetch_response_max_bytes: int = 10485760
    replica_fetch_backoff_ms: int = 1000
    auto_leader_rebalance_enable: bool = True
    leader_imbalance_check_interval_seconds: int = 300
    log_cleaner_enable: bool = True
    log_cleaner_backoff_ms: int = 15000
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> BrokerConfig:
        """Build from Kafka-named static values (already validated by load_broker_config)."""
        kwargs: dict[str, Any] = {}
        for attr, name in _PLAIN_ATTRS.items():
            if name in values:
                kwargs[attr] = parse_value(BROKER_CONFIGS[name], values[name])
        data_dir = values.get("log.dirs") or values.get("log.dir")
        if data_dir is not None:
            kwargs["data_dir"] = data_dir
        if "listeners" in values:
            first = parse_endpoints(values["listeners"])[0]
            kwargs.update(listen_host=first.host or "0.0.0.0", listen_port=first.port)
            advertised = {e.name: e for e in parse_endpoints(values.get("advertised.listeners") or values["listeners"])}
            if first.name in advertised:
                kwargs.update(advertised_host=advertised[first.name].host or None,
                              advertised_port=advertised[first.name].port or None)
        elif "advertised.listeners" in values:
            first = parse_endpoints(values["advertised.listeners"])[0]
            kwargs.update(advertised_host=first.host or None, advertised_port=first.port)
        return cls(**kwargs, values=dict(values))

    def listeners(self) -> list[Listener]:
        """Every listener; the first is the one ``listen_host``/``listen_port`` name (the CLI's
        --host/--port set it)."""
        protocols = parse_protocol_map(self.values.get("listener.security.protocol.map"))
        first = Endpoint("PLAINTEXT", self.listen_host, self.listen_port)
        if "listeners" not in self.values:
            return resolve([first], protocols)
        endpoints = parse_endpoints(self.values["listeners"])
        endpoints[0] = Endpoint(endpoints[0].name, self.listen_host, self.listen_port)
        return resolve(endpoints, protocols)

    def advertised(self, bound: Mapping[str, int]) -> dict[str, tuple[str, int]]:
        """Each listener's advertised (host, port), given the ports bound (for port 0)."""
        out: dict[str, tuple[str, int]] = {}
        explicit = {e.name: e for e in parse_endpoints(self.values["advertised.listeners"])} \
            if "advertised.listeners" in self.values else {}
        for i, listener in enumerate(self.listeners()):
            host, port = listener.host, bound[listener.name]
            if listener.name in explicit:
                host, port = explicit[listener.name].host, explicit[listener.name].port or port
            if i == 0:  # the CLI's --advertise
                host, port = self.advertised_host or host, self.advertised_port or port
            out[listener.name] = (host or "0.0.0.0", port)
        return out

    def inter_broker_listener(self) -> str:
        """inter.broker.listener.name, else the listener named PLAINTEXT, else the first."""
        names = [listener.name for listener in self.listeners()]
        wanted = self.values.get("inter.broker.listener.name")
        if wanted is not None:
            return wanted.upper()
        return "PLAINTEXT" if "PLAINTEXT" in names else names[0]

    def static_configs(self) -> dict[str, str]:
        """The explicitly set static values by Kafka name, including typed attributes that a
        caller set directly (``BrokerConfig(data_dir=...)`` in tests)."""
        out = dict(self.values)
        for attr, name in _PLAIN_ATTRS.items():
            value = getattr(self, attr)
            if name not in out and value is not None and value != _ATTR_DEFAULTS[attr]:
                out[name] = format_value(BROKER_CONFIGS[name], value)
        if "log.dirs" not in out and "log.dir" not in out and str(self.data_dir) != "./data":
            out["log.dirs"] = str(self.data_dir)
        if (self.listen_host, self.listen_port) != (DEFAULT_HOST, DEFAULT_PORT) or "listeners" in out:
            out["listeners"] = format_endpoints(self.listeners())
        if "advertised.listeners" not in out and (self.advertised_host or self.advertised_port):
            port = self.advertised_port or self.listen_port
            out["advertised.listeners"] = f"{self.listeners()[0].name}://{_host(self.advertised_host or '')}:{port}"
        return out


_SPECIAL_ATTRS = frozenset(
    {"data_dir", "listen_host", "listen_port", "advertised_host", "advertised_port", "values"}
)
_PLAIN_ATTRS: dict[str, str] = {
    f.name: f.name.replace("_", ".") for f in fields(BrokerConfig) if f.name not in _SPECIAL_ATTRS
}
_ATTR_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(BrokerConfig)}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_listeners(values: Mapping[str, str]) -> None:
    """The listener settings together: names with a security protocol, advertised names among
    the listeners, the inter-broker listener among them. Raises ValueError."""
    protocols = parse_protocol_map(values.get("listener.security.protocol.map"))
    listeners = resolve(parse_endpoints(values.get("listeners", f"PLAINTEXT://{DEFAULT_HOST}:{DEFAULT_PORT}")), protocols)
    names = {listener.name for listener in listeners}
    if "advertised.listeners" in values:
        unknown = [e.name for e in parse_endpoints(values["advertised.listeners"]) if e.name not in names]
        if unknown:
            raise ValueError(f"advertised.listeners names {', '.join(unknown)}, not in listeners")
    inter = values.get("inter.broker.listener.name")
    if inter is not None and inter.upper() not in names:
        raise ValueError(f"inter.broker.listener.name {inter} is not in listeners")


def _listener_override(name: str) -> str | None:
    """``listener.name.<listener>.<config>`` -> ``<config>`` when that config may be set per
    listener (ssl.*, sasl.*, connections.max.reauth.ms), else None."""
    if not name.startswith("listener.name."):
        return None
    _, _, rest = name[len("listener.name."):].partition(".")
    mechanism, _, jaas = rest.partition(".")
    if jaas == "sasl.jaas.config" and mechanism in ("plain", "scram-sha-256", "scram-sha-512"):
        return jaas  # listener.name.<listener>.<mechanism>.sasl.jaas.config
    if rest in BROKER_CONFIGS and (rest.startswith(("ssl.", "sasl.")) or rest == "connections.max.reauth.ms"):
        return rest
    return None


def _toml_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_toml_string(v) for v in value)
    return str(value)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # TOML turns `num.partitions = 3` into {"num": {"partitions": 3}}; join the keys back.
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _read_file(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise BrokerConfigError(f"The config file {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BrokerConfigError(f"The config file {path} could not be read: {exc}.") from None
    return {name: _toml_string(value) for name, value in _flatten(table).items()}


def load_broker_config(
    config_file: Path | None, env: Mapping[str, str], overrides: Mapping[str, str]
) -> BrokerConfig:
    """Merge file < environment < flags, check every value, and build the BrokerConfig."""
    raw: dict[str, tuple[str, str]] = {}  # name -> (value, where it came from)
    if config_file is not None:
        for name, value in _read_file(config_file).items():
            raw[name] = (value, f"in the config file {config_file}")
    for var, value in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var in ENV_IGNORED or var.startswith(ENV_IGNORED_PREFIXES):
            continue
        env_name = ENV_NAMES.get(var)
        if env_name is None:
            raise BrokerConfigError(
                f"The environment variable {var} names no broker config strom knows "
                f"(STROM_<NAME> maps to the Kafka config name, e.g. STROM_NUM_PARTITIONS)."
            )
        raw[env_name] = (value, f"from the environment variable {var}")
    for name, value in overrides.items():
        raw[name] = (value, "from the command line")

    values: dict[str, str] = {}
    for name, (value, where) in raw.items():
        defn = BROKER_CONFIGS.get(name) or BROKER_CONFIGS.get(_listener_override(name) or "")
        if defn is None:
            raise BrokerConfigError(f"The broker config '{name}' {where} is not one strom knows.")
        try:
            values[name] = format_value(defn, parse_value(defn, value))
            if name in ("log.dirs", "log.dir") and "," in values[name]:
                raise ValueError("strom uses a single data directory")
            if name in ("listeners", "advertised.listeners"):
                parse_endpoints(values[name])
            if name == "listener.security.protocol.map":
                parse_protocol_map(values[name])
        except ValueError as exc:
            reason = exc.reason if isinstance(exc, InvalidValue) else str(exc)
            raise BrokerConfigError(f"The value '{value}' of {name} {where} is invalid: {reason}.") from None
    try:
        check_listeners(values)
    except ValueError as exc:
        raise BrokerConfigError(f"The listener settings are invalid: {exc}.") from None
    config = BrokerConfig.from_values(values)
    _check_consumer_groups(config)
    from strom.metadata.group_configs import check_broker_group_settings

    try:
        check_broker_group_settings(config)
    except ValueError as exc:
        raise BrokerConfigError(str(exc)) from None
    return config


def _check_consumer_groups(config: BrokerConfig) -> None:
    """Kafka's GroupCoordinatorConfig checks: each timing within its bounds, heartbeats more
    often than sessions end."""
    session, heartbeat = config.group_consumer_session_timeout_ms, config.group_consumer_heartbeat_interval_ms
    if not config.group_consumer_min_session_timeout_ms <= session <= config.group_consumer_max_session_timeout_ms:
        raise BrokerConfigError("group.consumer.session.timeout.ms must be between group.consumer.min.session.timeout.ms "
                                "and group.consumer.max.session.timeout.ms.")
    if not config.group_consumer_min_heartbeat_interval_ms <= heartbeat <= config.group_consumer_max_heartbeat_interval_ms:
        raise BrokerConfigError("group.consumer.heartbeat.interval.ms must be between "
                                "group.consumer.min.heartbeat.interval.ms and group.consumer.max.heartbeat.interval.ms.")
    if heartbeat >= session:
        raise BrokerConfigError("group.consumer.heartbeat.interval.ms must be less than group.consumer.session.timeout.ms.")
    unknown = set(consumer_assignors(config)) - {"uniform", "range"}
    if unknown or not consumer_assignors(config):
        raise BrokerConfigError(f"group.consumer.assignors names unknown assignors ({', '.join(sorted(unknown))}): "
                                "strom has uniform and range.")


# Kafka's class names of its assignors, accepted as the short names
_ASSIGNOR_CLASSES = {"org.apache.kafka.coordinator.group.assignor.UniformAssignor": "uniform",
                     "org.apache.kafka.coordinator.group.assignor.RangeAssignor": "range"}


def consumer_assignors(config: BrokerConfig) -> tuple[str, ...]:
    """group.consumer.assignors, as short names (the first is the default)."""
    names = (a.strip() for a in config.values.get("group.consumer.assignors", "uniform,range").split(","))
    return tuple(_ASSIGNOR_CLASSES.get(n, n) for n in names if n)
