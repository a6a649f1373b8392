"""Topic and broker config definitions with Kafka's names, types, defaults and validation.

The topic configs are those Kafka 4.0 reports for a topic in DescribeConfigs (LogConfig /
TopicConfig); each names its broker-level synonyms (ServerTopicConfigSynonyms) in priority
order, so that e.g. ``retention.ms`` falls back to ``log.retention.ms``, then
``log.retention.minutes``, then ``log.retention.hours`` (converted to milliseconds).

An effective value comes from the first layer that sets it: topic override, dynamic broker
config for this node, dynamic cluster-default broker config, static broker config (file, env,
flags), and finally the config's default. DescribeConfigs reports the layers as synonyms with
Kafka's ConfigSource codes. One deliberate difference: Kafka drops the leading synonyms whose
name differs from the primary broker name (a side effect of trimming listener overrides), so it
reports ``retention.ms`` with no synonyms at all; strom lists every layer that is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from strom.metadata.kafka_broker_configs import (
    KAFKA_BROKER_CONFIGS,
    LISTENER_PREFIX_ONLY,
    PER_BROKER,
    READ_ONLY,
)
from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.log.config import LogConfig
    from strom.metadata.broker_config import BrokerConfig

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class ConfigError(Exception):
    """A config (or topic name) was rejected; ``error_code`` is the Kafka error to answer."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class ConfigSource(IntEnum):
    """DescribeConfigs' ConfigSource codes (AdminClient's ConfigEntry.ConfigSource names)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    DYNAMIC_CLIENT_METRICS_CONFIG = 7
    DYNAMIC_GROUP_CONFIG = 8  # a group config set on the group (Kafka's wire name: GROUP_CONFIG)


class ConfigType(IntEnum):
    """DescribeConfigs v3+ config_type (KIP-569)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


# A validator gets the parsed value and returns Kafka's complaint, or None when it is fine.
Validator = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: str  # boolean | string | int | short | long | double | list | class | password | unknown
    default: str | None
    doc: str
    validator: Validator | None = None
    # Broker configs this one falls back to, highest priority first (a broker config lists
    # itself first, then its lower-priority synonyms: log.retention.ms, .minutes, .hours).
    broker_synonyms: tuple[str, ...] = ()
    read_only: bool = False  # broker configs: not updatable dynamically
    sensitive: bool = False

    @property
    def config_type(self) -> ConfigType:
        return ConfigType[self.type.upper()]


@dataclass(frozen=True)
class ConfigSynonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True)
class ConfigEntry:
    """One DescribeConfigs result entry; the handler drops synonyms/documentation on request."""

    name: str
    value: str | None
    read_only: bool
    source: ConfigSource
    is_sensitive: bool
    synonyms: tuple[ConfigSynonym, ...]
    config_type: ConfigType
    documentation: str


# --- validators (messages as Kafka's ConfigDef validators word them) -----------------------


def at_least(minimum: float) -> Validator:
    return lambda v: None if v >= minimum else f"Value must be at least {minimum}"


def between(low: float, high: float) -> Validator:
    def check(v: Any) -> str | None:
        if v < low:
            return f"Value must be at least {low}"
        return None if v <= high else f"Value must be no more than {high}"

    return check


def one_of(*options: str) -> Validator:
    return lambda v: None if v in options else f"String must be one of: {', '.join(options)}"


def each_of(*options: str) -> Validator:
    def check(items: list[str]) -> str | None:
        bad = [i for i in items if i not in options]
        return f"String must be one of: {', '.join(options)}" if bad else None

    return check


def _gzip_level(v: int) -> str | None:
    return None if v == -1 or 1 <= v <= 9 else "Value must be between 1 and 9, or -1"


_THROTTLED = re.compile(r"\d+:\d+")


def _throttled_replicas(items: list[str]) -> str | None:
    if items == ["*"] or all(_THROTTLED.fullmatch(i) for i in items):
        return None
    return (
        "must be the literal '*' or a list of replicas in the following format: "
        "[partitionId]:[brokerId],[partitionId]:[brokerId],..."
    )


# The message format versions Kafka 3.9 accepts (its MetadataVersion ids); each may also be
# named by its release alone ("2.8" is its latest IV) or with more segments ("0.10.0.0").
_METADATA_VERSIONS = frozenset({
    "0.8.0", "0.8.1", "0.8.2", "0.9.0", "0.10.0-IV0", "0.10.0-IV1", "0.10.1-IV0",
    "0.10.1-IV1", "0.10.1-IV2", "0.10.2-IV0", "0.11.0-IV0", "0.11.0-IV1", "0.11.0-IV2",
    "1.0-IV0", "1.1-IV0", "2.0-IV0", "2.0-IV1", "2.1-IV0", "2.1-IV1", "2.1-IV2",
    "2.2-IV0", "2.2-IV1", "2.3-IV0", "2.3-IV1", "2.4-IV0", "2.4-IV1", "2.5-IV0",
    "2.6-IV0", "2.7-IV0", "2.7-IV1", "2.7-IV2", "2.8-IV0", "2.8-IV1", "3.0-IV0",
    "3.0-IV1", "3.1-IV0", "3.2-IV0", "3.3-IV0", "3.3-IV1", "3.3-IV2", "3.3-IV3",
    "3.4-IV0", "3.5-IV0", "3.5-IV1", "3.5-IV2", "3.6-IV0", "3.6-IV1", "3.6-IV2",
    "3.7-IV0", "3.7-IV1", "3.7-IV2", "3.7-IV3", "3.7-IV4", "3.8-IV0", "3.9-IV0",
    "4.0-IV0", "4.0-IV1",
})
_RELEASES = frozenset(v.split("-")[0] for v in _METADATA_VERSIONS)


def _metadata_version(value: str) -> str | None:
    """Kafka's MetadataVersion.fromVersionString: a release has 3 segments before 1.0, else 2."""
    parts = value.rstrip(".").split(".")  # Java's split drops trailing empty parts
    length = 3 if value.startswith("0.") else 2
    key = value if len(parts) <= length else ".".join(parts[:length])
    return None if key in _METADATA_VERSIONS or key in _RELEASES else f"Version {value} is not a valid version"


# --- topic configs (Kafka 4.0 LogConfig) -----------------------------------------------------

_COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")


def _t(name: str, type_: str, default: str | None, doc: str, validator: Validator | None = None,
       synonyms: tuple[str, ...] = ()) -> ConfigDef:
    return ConfigDef(name, type_, default, doc, validator, synonyms)


_TOPIC_DEFS = (
    _t("cleanup.policy", "list", "delete",
       "Retention policy for old segments: delete, compact, or both.",
       each_of("compact", "delete"), ("log.cleanup.policy",)),
    _t("compression.gzip.level", "int", "-1", "Compression level when compression.type is gzip.",
       _gzip_level, ("compression.gzip.level",)),
    _t("compression.lz4.level", "int", "9", "Compression level when compression.type is lz4.",
       between(1, 17), ("compression.lz4.level",)),
    _t("compression.type", "string", "producer",
       "Final compression of the topic's data; 'producer' keeps the producer's codec.",
       one_of(*_COMPRESSION_TYPES), ("compression.type",)),
    _t("compression.zstd.level", "int", "3", "Compression level when compression.type is zstd.",
       between(-131072, 22), ("compression.zstd.level",)),
    _t("delete.retention.ms", "long", "86400000",
       "How long delete tombstones are kept in a compacted topic.",
       at_least(0), ("log.cleaner.delete.retention.ms",)),
    _t("file.delete.delay.ms", "long", "60000",
       "How long to wait before deleting a segment file from the filesystem.",
       at_least(0), ("log.segment.delete.delay.ms",)),
    _t("flush.messages", "long", str(LONG_MAX),
       "Number of messages appended to a partition before it is fsynced.",
       at_least(1), ("log.flush.interval.messages",)),
    _t("flush.ms", "long", str(LONG_MAX), "Maximum time data stays unfsynced.",
       at_least(0), ("log.flush.interval.ms", "log.flush.scheduler.interval.ms")),
    _t("follower.replication.throttled.replicas", "list", "",
       "Replicas whose follower-side replication is throttled ('*' for all).", _throttled_replicas),
    _t("index.interval.bytes", "int", "4096", "Bytes of log between offset index entries.",
       at_least(0), ("log.index.interval.bytes",)),
    _t("leader.replication.throttled.replicas", "list", "",
       "Replicas whose leader-side replication is throttled ('*' for all).", _throttled_replicas),
    _t("local.retention.bytes", "long", "-2",
       "Local size limit with tiered storage; -2 means retention.bytes.",
       at_least(-2), ("log.local.retention.bytes",)),
    _t("local.retention.ms", "long", "-2",
       "Local time limit with tiered storage; -2 means retention.ms.",
       at_least(-2), ("log.local.retention.ms",)),
    _t("max.compaction.lag.ms", "long", str(LONG_MAX),
       "Maximum time a message stays ineligible for compaction.",
       at_least(1), ("log.cleaner.max.compaction.lag.ms",)),
    _t("max.message.bytes", "int", "1048588", "Largest record batch size allowed.",
       at_least(0), ("message.max.bytes",)),
    # Deprecated, removed in Kafka 4.0; Kafka 3.x accepts and ignores them, and tools still set
    # them. strom ignores them too: it writes record format v2 only and serves no fetch version
    # old enough to need down-conversion.
    _t("message.downconversion.enable", "boolean", "true",
       "Kafka 3.x: down-convert records for old consumers. Accepted and ignored.",
       None, ("log.message.downconversion.enable",)),
    _t("message.format.version", "string", "3.0-IV1",
       "Kafka 3.x, deprecated: the record format version. Accepted and ignored (always v2).",
       _metadata_version, ("log.message.format.version",)),
    _t("message.timestamp.after.max.ms", "long", "3600000",
       "How far a CreateTime timestamp may lie ahead of the broker's clock.",
       at_least(0), ("log.message.timestamp.after.max.ms",)),
    _t("message.timestamp.before.max.ms", "long", str(LONG_MAX),
       "How far a CreateTime timestamp may lie behind the broker's clock.",
       at_least(0), ("log.message.timestamp.before.max.ms",)),
    _t("message.timestamp.type", "string", "CreateTime",
       "Whether record timestamps are the producer's (CreateTime) or the broker's.",
       one_of("CreateTime", "LogAppendTime"), ("log.message.timestamp.type",)),
    _t("min.cleanable.dirty.ratio", "double", "0.5",
       "Dirty log ratio above which the compactor cleans the log.",
       between(0, 1), ("log.cleaner.min.cleanable.ratio",)),
    _t("min.compaction.lag.ms", "long", "0",
       "Minimum time a message stays uncompacted.", at_least(0),
       ("log.cleaner.min.compaction.lag.ms",)),
    _t("min.insync.replicas", "int", "1",
       "Replicas that must acknowledge an acks=all write.", at_least(1), ("min.insync.replicas",)),
    _t("preallocate", "boolean", "false", "Preallocate segment files on creation.",
       None, ("log.preallocate",)),
    _t("remote.log.copy.disable", "boolean", "false",
       "Stop copying segments to tiered storage."),
    _t("remote.log.delete.on.disable", "boolean", "false",
       "Delete tiered data when tiered storage is disabled for the topic."),
    _t("remote.storage.enable", "boolean", "false", "Enable tiered storage for the topic."),
    _t("retention.bytes", "long", "-1",
       "Maximum partition size before old segments are deleted; -1 means no limit.",
       None, ("log.retention.bytes",)),
    _t("retention.ms", "long", "604800000",
       "Maximum age of a segment before it is deleted; -1 means no limit.", at_least(-1),
       ("log.retention.ms", "log.retention.minutes", "log.retention.hours")),
    _t("segment.bytes", "int", "1073741824", "Segment file size.",
       at_least(1024 * 1024), ("log.segment.bytes",)),
    _t("segment.index.bytes", "int", "10485760", "Size of a segment's offset index file.",
       at_least(4), ("log.index.size.max.bytes",)),
    _t("segment.jitter.ms", "long", "0", "Random jitter subtracted from segment.ms.",
       at_least(0), ("log.roll.jitter.ms", "log.roll.jitter.hours")),
    _t("segment.ms", "long", "604800000", "Time after which a segment is rolled even if not full.",
       at_least(1), ("log.roll.ms", "log.roll.hours")),
    _t("unclean.leader.election.enable", "boolean", "false",
       "Allow an out-of-sync replica to become leader (may lose data).",
       None, ("unclean.leader.election.enable",)),
)
TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in _TOPIC_DEFS}

# --- broker configs ----------------------------------------------------------------------------

# Synonyms expressed in a coarser unit (Kafka converts them to milliseconds).
_UNIT_MS: dict[str, int] = {
    "log.retention.minutes": 60_000,
    "log.retention.hours": 3_600_000,
    "log.roll.hours": 3_600_000,
    "log.roll.jitter.hours": 3_600_000,
}


def _b(name: str, type_: str, default: str | None, doc: str, validator: Validator | None = None,
       *, dynamic: bool = False, lower: tuple[str, ...] = ()) -> ConfigDef:
    return ConfigDef(name, type_, default, doc, validator, (name, *lower), read_only=not dynamic)


def _topic_default(broker_name: str, topic_name: str, *, lower: tuple[str, ...] = ()) -> ConfigDef:
    """A cluster-wide dynamic broker default for a topic config (Kafka's DynamicLogConfig)."""
    topic = TOPIC_CONFIGS[topic_name]
    return _b(broker_name, topic.type, topic.default, f"The default {topic_name} for topics. {topic.doc}",
              topic.validator, dynamic=True, lower=lower)


_BROKER_DEFS = (
    # Static: the broker reads these at start (read-only in DescribeConfigs).
    _b("node.id", "int", "0", "This broker's node id.", at_least(0)),
    _b("log.dirs", "string", None, "The data directory (strom uses one); overrides log.dir."),
    _b("log.dir", "string", "./data", "The data directory, when log.dirs is not set."),
    _b("listeners", "string", "PLAINTEXT://127.0.0.1:9092", "The listener, as NAME://host:port."),
    _b("advertised.listeners", "string", None, "The address clients are told to use."),
    _b("broker.rack", "string", None, "This broker's rack."),
    _b("num.partitions", "int", "1", "Default partition count for new topics.", at_least(1)),
    _b("default.replication.factor", "int", "1", "Default replication factor for new topics."),
    _b("auto.create.topics.enable", "boolean", "true",
       "Create a topic on first Metadata request for it."),
    _b("delete.topic.enable", "boolean", "true", "Allow topics to be deleted."),
    _b("socket.request.max.bytes", "int", "104857600", "Largest request the broker accepts.",
       at_least(1)),
    _b("fetch.max.bytes", "int", "57671680", "Largest fetch response the broker builds.",
       at_least(1024)),
    _b("connections.max.idle.ms", "long", "600000", "Idle connections are closed after this."),
    _b("offsets.topic.num.partitions", "int", "50", "Partitions of __consumer_offsets.",
       at_least(1)),
    _b("offsets.retention.minutes", "int", "10080",
       "How long committed offsets of an empty group are kept.", at_least(1)),
    _b("offsets.retention.check.interval.ms", "long", "600000",
       "How often expired offsets are removed.", at_least(1)),
    _b("offset.metadata.max.bytes", "int", "4096",
       "Largest metadata string an offset commit may carry.", at_least(0)),
    _b("group.initial.rebalance.delay.ms", "int", "3000",
       "Wait before the first rebalance of a new group."),
    _b("group.min.session.timeout.ms", "int", "6000", "Smallest session timeout allowed."),
    _b("group.max.session.timeout.ms", "int", "1800000", "Largest session timeout allowed."),
    _b("group.max.size", "int", str(INT_MAX), "Largest number of members in a group.",
       at_least(1)),
    # KIP-848 consumer groups (group.protocol=consumer)
    _b("group.coordinator.rebalance.protocols", "list", "classic,consumer",
       "The group protocols served: classic, consumer."),
    _b("group.consumer.session.timeout.ms", "int", "45000",
       "How long a consumer-protocol member may go without a heartbeat.", at_least(1)),
    _b("group.consumer.min.session.timeout.ms", "int", "45000", "Smallest group.consumer.session.timeout.ms allowed.",
       at_least(1)),
    _b("group.consumer.max.session.timeout.ms", "int", "60000", "Largest group.consumer.session.timeout.ms allowed.",
       at_least(1)),
    _b("group.consumer.heartbeat.interval.ms", "int", "5000",
       "How often consumer-protocol members heartbeat (told in every heartbeat response).", at_least(1)),
    _b("group.consumer.min.heartbeat.interval.ms", "int", "5000",
       "Smallest group.consumer.heartbeat.interval.ms allowed.", at_least(1)),
    _b("group.consumer.max.heartbeat.interval.ms", "int", "15000",
       "Largest group.consumer.heartbeat.interval.ms allowed.", at_least(1)),
    _b("group.consumer.max.size", "int", str(INT_MAX), "Largest number of members in a consumer group.",
       at_least(1)),
    _b("group.consumer.assignors", "list", "uniform,range",
       "Server-side assignors of consumer groups (uniform, range); the first is the default."),
    # KIP-932 share groups. The session, heartbeat and lock settings are the defaults of the
    # group configs share.* (strom.metadata.group_configs), which must lie within min..max.
    _b("group.share.session.timeout.ms", "int", "45000",
       "How long a share-group member may go without a heartbeat before it is removed.", at_least(1)),
    _b("group.share.min.session.timeout.ms", "int", "45000",
       "Smallest session timeout of share-group members (the group config share.session.timeout.ms).", at_least(1)),
    _b("group.share.max.session.timeout.ms", "int", "60000",
       "Largest session timeout of share-group members (the group config share.session.timeout.ms).", at_least(1)),
    _b("group.share.heartbeat.interval.ms", "int", "5000",
       "How often share-group members heartbeat (told in every heartbeat response).", at_least(1)),
    _b("group.share.min.heartbeat.interval.ms", "int", "5000",
       "Smallest heartbeat interval of share groups (the group config share.heartbeat.interval.ms).", at_least(1)),
    _b("group.share.max.heartbeat.interval.ms", "int", "15000",
       "Largest heartbeat interval of share groups (the group config share.heartbeat.interval.ms).", at_least(1)),
    _b("group.share.record.lock.duration.ms", "int", "30000",
       "How long a share-group consumer holds a record it acquired; unacknowledged by then, the record "
       "becomes available again.", between(1000, 3600000)),
    _b("group.share.min.record.lock.duration.ms", "int", "15000",
       "Smallest record lock duration (the group config share.record.lock.duration.ms).", between(1000, 30000)),
    _b("group.share.max.record.lock.duration.ms", "int", "60000",
       "Largest record lock duration (the group config share.record.lock.duration.ms).", between(30000, 3600000)),
    _b("group.share.delivery.count.limit", "int", "5",
       "How many times a record is delivered to a share group before it is archived (given up on).",
       between(2, 10)),
    _b("group.share.partition.max.record.locks", "int", "2000",
       "Most records in flight (acquired, not yet acknowledged) per share-partition.", between(100, 10000)),
    _b("group.share.max.size", "int", "200", "Largest number of members in a share group.", between(1, 1000)),
    _b("group.share.max.share.sessions", "int", "2000",
       "Most share sessions one broker keeps; at least group.share.max.size.", at_least(1)),
    # KIP-1071 streams groups (not served yet): the defaults and bounds of the group configs streams.*.
    _b("group.streams.session.timeout.ms", "int", "45000",
       "How long a streams-group member may go without a heartbeat (strom has no streams groups yet).", at_least(1)),
    _b("group.streams.min.session.timeout.ms", "int", "45000",
       "Smallest value of the group config streams.session.timeout.ms.", at_least(1)),
    _b("group.streams.max.session.timeout.ms", "int", "60000",
       "Largest value of the group config streams.session.timeout.ms.", at_least(1)),
    _b("group.streams.heartbeat.interval.ms", "int", "5000",
       "How often streams-group members heartbeat (strom has no streams groups yet).", at_least(1)),
    _b("group.streams.min.heartbeat.interval.ms", "int", "5000",
       "Smallest value of the group config streams.heartbeat.interval.ms.", at_least(1)),
    _b("group.streams.max.heartbeat.interval.ms", "int", "15000",
       "Largest value of the group config streams.heartbeat.interval.ms.", at_least(1)),
    _b("group.streams.num.standby.replicas", "int", "0",
       "Standby replicas per task of a streams group (strom has no streams groups yet).", at_least(0)),
    _b("group.streams.max.standby.replicas", "int", "2",
       "Largest value of the group config streams.num.standby.replicas.", at_least(0)),
    _b("group.streams.initial.rebalance.delay.ms", "int", "3000",
       "Wait before the first rebalance of a new streams group (strom has no streams groups yet).", at_least(0)),
    _b("transaction.state.log.num.partitions", "int", "50",
       "Partitions of __transaction_state.", at_least(1)),
    _b("transaction.max.timeout.ms", "int", "900000", "Largest transaction timeout allowed.",
       at_least(1)),
    _b("transactional.id.expiration.ms", "int", "604800000",
       "Idle transactional ids expire after this.", at_least(1)),
    _b("transaction.abort.timed.out.transaction.cleanup.interval.ms", "int", "10000",
       "How often transactions past their timeout are looked for and aborted.", at_least(1)),
    _b("transaction.remove.expired.transaction.cleanup.interval.ms", "int", "3600000",
       "How often expired transactional ids are removed.", at_least(1)),
    _b("producer.id.expiration.ms", "int", "86400000",
       "Idle idempotent producer ids expire after this.", at_least(1)),
    _b("producer.id.expiration.check.interval.ms", "int", "600000",
       "How often idle producer ids are looked for.", at_least(1)),
    _b("log.retention.check.interval.ms", "long", "300000",
       "How often retention is enforced.", at_least(1)),
    _b("log.flush.scheduler.interval.ms", "long", str(LONG_MAX),
       "How often the flusher checks flush.ms."),
    _b("log.flush.offset.checkpoint.interval.ms", "int", "60000",
       "How often recovery points are checkpointed.", at_least(0)),
    # Security (docs/security.md). Every ssl.* and sasl.* name may also be set for one listener
    # as listener.name.<listener>.<name>.
    _b("http.listener", "string", None,
       "strom's HTTP listener (/metrics, /healthz, /readyz, the web console) as HOST:PORT, or off; strom serve defaults to 127.0.0.1:9644."),
    _b("console.sample.interval.ms", "int", "5000",
       "How often the web console samples topic end offsets and group lag for its charts (while it is looked at).", at_least(100)),
    _b("quota.window.num", "int", "11", "Windows over which client quota rates are measured.", at_least(1)),
    _b("quota.window.size.seconds", "int", "1", "Length of one client quota window.", at_least(1)),
    _b("authorizer.class.name", "string", "",
       "Set to Kafka's org.apache.kafka.metadata.authorizer.StandardAuthorizer (or AclAuthorizer) to enforce ACLs; empty: none."),
    _b("super.users", "string", None, "Principals allowed everything, separated by ';' (User:admin;User:ops)."),
    _b("allow.everyone.if.no.acl.found", "boolean", "false",
       "With an authorizer, allow access to a resource that has no ACL at all."),
    _b("listener.security.protocol.map", "string",
       "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
       "Each listener name's security protocol, as NAME:PROTOCOL pairs."),
    _b("inter.broker.listener.name", "string", None,
       "The listener brokers use to reach each other (cluster mode); default: the PLAINTEXT one."),
    _b("sasl.mechanism.inter.broker.protocol", "string", None,
       "The SASL mechanism brokers authenticate with (default: the inter-broker listener's first enabled one)."),
    ConfigDef("sasl.jaas.config", "password", None,
              "A broker's own SASL credentials for the inter-broker listener, as Kafka's JAAS line "
              "(ScramLoginModule/PlainLoginModule required username=... password=...;); usually set per listener and "
              "mechanism: listener.name.<listener>.<mechanism>.sasl.jaas.config.",
              None, ("sasl.jaas.config",), read_only=True, sensitive=True),
    _b("sasl.enabled.mechanisms", "list", "SCRAM-SHA-256,SCRAM-SHA-512",
       "SASL mechanisms served on SASL listeners (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).",
       each_of("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")),
    _b("connections.max.reauth.ms", "long", "0",
       "SASL session lifetime; clients re-authenticate before it ends (KIP-368). 0: no limit.", at_least(0)),
    _b("connection.failed.authentication.delay.ms", "int", "100",
       "How long the answer to a failed authentication is delayed before the connection closes.", at_least(0)),
    _b("sasl.server.max.receive.size", "int", "524288",
       "Largest request accepted before a client has authenticated.", at_least(1)),
    _b("ssl.keystore.type", "string", "PEM", "Key store format: PEM only.", one_of("PEM")),
    _b("ssl.keystore.location", "string", None, "PEM file with the certificate chain and the private key."),
    ConfigDef("ssl.keystore.certificate.chain", "password", None, "The certificate chain, PEM, inline.",
              None, ("ssl.keystore.certificate.chain",), read_only=True, sensitive=True),
    ConfigDef("ssl.keystore.key", "password", None, "The private key, PEM, inline.",
              None, ("ssl.keystore.key",), read_only=True, sensitive=True),
    ConfigDef("ssl.keystore.password", "password", None, "Password of an encrypted private key.",
              None, ("ssl.keystore.password",), read_only=True, sensitive=True),
    ConfigDef("ssl.key.password", "password", None, "Password of an encrypted private key.",
              None, ("ssl.key.password",), read_only=True, sensitive=True),
    _b("ssl.truststore.type", "string", "PEM", "Trust store format: PEM only.", one_of("PEM")),
    _b("ssl.truststore.location", "string", None, "PEM file of the CA certificates trusted for clients."),
    ConfigDef("ssl.truststore.certificates", "password", None, "Trusted CA certificates, PEM, inline.",
              None, ("ssl.truststore.certificates",), read_only=True, sensitive=True),
    ConfigDef("ssl.truststore.password", "password", None, "Unused with PEM trust stores.",
              None, ("ssl.truststore.password",), read_only=True, sensitive=True),
    _b("ssl.client.auth", "string", "none", "Client certificates: none, requested or required.",
       one_of("none", "requested", "required")),
    _b("ssl.enabled.protocols", "list", "TLSv1.2,TLSv1.3", "TLS versions served (1.2 and up).",
       each_of("TLSv1.2", "TLSv1.3")),
    _b("ssl.protocol", "string", "TLSv1.3", "Kafka's SSLContext protocol; strom serves ssl.enabled.protocols."),
    _b("ssl.cipher.suites", "list", "", "OpenSSL cipher names for TLS 1.2 (empty: OpenSSL's defaults)."),
    _b("ssl.principal.mapping.rules", "string", "DEFAULT",
       "Rules mapping a client certificate's distinguished name to a principal name."),
    _b("ssl.endpoint.identification.algorithm", "string", "https",
       "Host name verification of brokers' certificates by brokers (cluster mode)."),
    # Cluster mode (docs/cluster.md): the metadata lives in etcd when etcd.endpoints is set.
    _b("etcd.endpoints", "string", None,
       "etcd client URLs (http://host:port, comma-separated); unset: a single node, no etcd."),
    _b("cluster.id", "string", "strom", "Names the cluster in etcd (its key prefix /strom/<id>/)."),
    _b("broker.session.timeout.ms", "int", "9000",
       "A broker whose etcd lease is not renewed for this long is considered dead.", at_least(100)),
    _b("offsets.topic.replication.factor", "int", "3",
       "Replication factor of __consumer_offsets (capped by the live brokers when it is created).",
       at_least(1)),
    _b("transaction.state.log.replication.factor", "int", "3",
       "Replication factor of __transaction_state (capped by the live brokers).", at_least(1)),
    _b("transaction.state.log.min.isr", "int", "2",
       "min.insync.replicas of __transaction_state (capped by its replication factor).", at_least(1)),
    _b("share.coordinator.state.topic.num.partitions", "int", "50",
       "Partitions of __share_group_state (KIP-932 share-partition state).", at_least(1)),
    _b("share.coordinator.state.topic.replication.factor", "int", "3",
       "Replication factor of __share_group_state (capped by the live brokers).", at_least(1)),
    _b("share.coordinator.state.topic.min.isr", "int", "2",
       "min.insync.replicas of __share_group_state (capped by its replication factor).", at_least(1)),
    _b("replica.lag.time.max.ms", "long", "30000",
       "A follower not caught up for this long leaves the ISR.", at_least(1)),
    _b("replica.fetch.wait.max.ms", "int", "500", "Longest wait of a follower's fetch.", at_least(0)),
    _b("replica.fetch.max.bytes", "int", "1048576", "Bytes a follower asks for per partition.",
       at_least(1)),
    _b("replica.fetch.response.max.bytes", "int", "10485760", "Bytes a follower asks for per fetch.",
       at_least(1)),
    _b("replica.fetch.backoff.ms", "int", "1000", "A follower's pause after a failed fetch.", at_least(0)),
    _b("auto.leader.rebalance.enable", "boolean", "true",
       "Move leadership back to preferred replicas that are in sync."),
    _b("leader.imbalance.check.interval.seconds", "long", "300",
       "How often the controller checks for leadership away from preferred replicas.", at_least(1)),
    _b("log.cleaner.enable", "boolean", "true", "Run the log compactor."),
    _b("log.cleaner.backoff.ms", "long", "15000", "Compactor sleep when there is nothing to clean.",
       at_least(0)),
    _b("log.retention.minutes", "int", None,
       "Retention in minutes, when log.retention.ms is not set.", lower=("log.retention.hours",)),
    _b("log.retention.hours", "int", "168",
       "Retention in hours, when log.retention.ms and .minutes are not set."),
    _b("log.roll.hours", "int", "168", "Segment roll time in hours, when log.roll.ms is not set.",
       at_least(1)),
    _b("log.roll.jitter.hours", "int", "0", "Roll jitter in hours, when log.roll.jitter.ms is not set.",
       at_least(0)),
    # Dynamic, cluster-wide: the broker defaults of topic configs.
    _topic_default("log.cleanup.policy", "cleanup.policy"),
    _topic_default("compression.type", "compression.type"),
    _topic_default("compression.gzip.level", "compression.gzip.level"),
    _topic_default("compression.lz4.level", "compression.lz4.level"),
    _topic_default("compression.zstd.level", "compression.zstd.level"),
    _topic_default("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    _topic_default("log.segment.delete.delay.ms", "file.delete.delay.ms"),
    _topic_default("log.flush.interval.messages", "flush.messages"),
    _b("log.flush.interval.ms", "long", None, "The default flush.ms for topics.", at_least(0),
       dynamic=True, lower=("log.flush.scheduler.interval.ms",)),
    _topic_default("log.index.interval.bytes", "index.interval.bytes"),
    _topic_default("log.local.retention.bytes", "local.retention.bytes"),
    _topic_default("log.local.retention.ms", "local.retention.ms"),
    _topic_default("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    _topic_default("message.max.bytes", "max.message.bytes"),
    _topic_default("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    _topic_default("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    _topic_default("log.message.timestamp.type", "message.timestamp.type"),
    _topic_default("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    _topic_default("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    _topic_default("min.insync.replicas", "min.insync.replicas"),
    _topic_default("log.preallocate", "preallocate"),
    _topic_default("log.retention.bytes", "retention.bytes"),
    _b("log.retention.ms", "long", None, "The default retention.ms for topics.", None,
       dynamic=True, lower=("log.retention.minutes", "log.retention.hours")),
    _topic_default("log.segment.bytes", "segment.bytes"),
    _topic_default("log.index.size.max.bytes", "segment.index.bytes"),
    _b("log.roll.jitter.ms", "long", None, "The default segment.jitter.ms for topics.", at_least(0),
       dynamic=True, lower=("log.roll.jitter.hours",)),
    _b("log.roll.ms", "long", None, "The default segment.ms for topics.", at_least(1),
       dynamic=True, lower=("log.roll.hours",)),
    _topic_default("unclean.leader.election.enable", "unclean.leader.election.enable"),
)
BROKER_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in _BROKER_DEFS}


def broker_config_def(name: str) -> ConfigDef | None:
    """strom's definition of a broker config, else a bare one (type, update mode) for a config
    Kafka defines and strom only stores; None for a name Kafka does not define."""
    defn = BROKER_CONFIGS.get(name)
    if defn is None and name in KAFKA_BROKER_CONFIGS:
        type_, mode = KAFKA_BROKER_CONFIGS[name]
        defn = ConfigDef(name, type_, None, "A Kafka broker config strom does not use.", None, (name,),
                         read_only=mode == READ_ONLY, sensitive=type_ == "password")
    return defn


def _custom_def(name: str) -> ConfigDef:
    # Kafka keeps broker config names it does not define (plugins read them); not knowing
    # their type, it describes them as sensitive and read-only.
    return ConfigDef(name, "unknown", None, "Not a Kafka broker config (a custom one).", None, (name,),
                     read_only=True, sensitive=True)

# --- parsing -------------------------------------------------------------------------------------

_INT_BITS = {"short": 16, "int": 32, "long": 64}
_INTEGER = re.compile(r"[+-]?\d+")


class InvalidValue(ValueError):
    """Kafka's ConfigException sentence; ``reason`` is the part after the colon."""

    def __init__(self, name: str, value: str, reason: str) -> None:
        super().__init__(f"Invalid value {value} for configuration {name}: {reason}")
        self.reason = reason


def parse_value(defn: ConfigDef, value: str) -> Any:
    """Parse like Kafka's ConfigDef.parseType, then validate; raises InvalidValue."""
    text = value.strip()
    parsed: Any
    if defn.type == "boolean":
        if text.lower() not in ("true", "false"):
            raise InvalidValue(defn.name, value, "Expected value to be either true or false")
        parsed = text.lower() == "true"
    elif defn.type in _INT_BITS:
        bits = _INT_BITS[defn.type]
        if not _INTEGER.fullmatch(text) or not -(2 ** (bits - 1)) <= int(text) < 2 ** (bits - 1):
            raise InvalidValue(defn.name, value, f"Not a number of type {defn.type.upper()}")
        parsed = int(text)
    elif defn.type == "double":
        try:
            if "_" in text:  # Python's float() accepts digit separators, Java's does not
                raise ValueError
            parsed = float(text)
        except ValueError:
            raise InvalidValue(defn.name, value, "Not a number of type DOUBLE") from None
    elif defn.type == "list":
        parsed = [] if not text else [item.strip() for item in text.split(",")]
    else:
        parsed = text
    if defn.validator is not None and (why := defn.validator(parsed)) is not None:
        raise InvalidValue(defn.name, value, why)
    return parsed


def format_value(defn: ConfigDef, parsed: Any) -> str:
    """Kafka's ConfigDef.convertToString: the canonical string of a parsed value."""
    if defn.type == "boolean":
        return "true" if parsed else "false"
    if defn.type == "list":
        return ",".join(parsed)
    return str(parsed)


def normalize(defn: ConfigDef, value: str) -> str:
    return format_value(defn, parse_value(defn, value))


# --- topic config validation ---------------------------------------------------------------------


def validate_topic_config(name: str, value: str | None) -> str:
    """Check one topic config override and return its canonical value."""
    defn = TOPIC_CONFIGS.get(name)
    if defn is None:
        raise ConfigError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
    if value is None:
        raise ConfigError(ErrorCode.INVALID_CONFIG, f"Null value not supported for topic configs: {name}")
    try:
        parsed = parse_value(defn, value)
    except ValueError as exc:
        raise ConfigError(ErrorCode.INVALID_CONFIG, str(exc)) from None
    if name == "remote.storage.enable" and parsed:
        raise ConfigError(
            ErrorCode.INVALID_CONFIG,
            "Tiered Storage functionality is disabled in the broker. "
            "Topic cannot be configured with remote log storage.",
        )
    return format_value(defn, parsed)


def validate_topic_configs(
    configs: Mapping[str, str | None],
    broker: BrokerConfig,
    broker_dynamic: Mapping[str, str],
    node_dynamic: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Check a whole override set (each value, then the cross-field rules of Kafka's
    LogConfig.validateValues against the effective values); returns canonical values."""
    checked = {name: validate_topic_config(name, value) for name, value in configs.items()}
    effective = effective_topic_configs(checked, broker, broker_dynamic, node_dynamic)
    min_lag, max_lag = int(effective["min.compaction.lag.ms"]), int(effective["max.compaction.lag.ms"])
    if min_lag > max_lag:
        raise ConfigError(
            ErrorCode.INVALID_CONFIG,
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
            f"max.compaction.lag.ms ({max_lag})",
        )
    return checked


# --- layers: where a value comes from ------------------------------------------------------------


class _Layers:
    """The broker-side sources of a value, highest priority first."""

    def __init__(
        self,
        broker: BrokerConfig,
        broker_dynamic: Mapping[str, str],
        node_dynamic: Mapping[str, str] | None,
    ) -> None:
        self.sources: tuple[tuple[ConfigSource, Mapping[str, str]], ...] = (
            (ConfigSource.DYNAMIC_BROKER_CONFIG, node_dynamic or {}),
            (ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, broker_dynamic),
            (ConfigSource.STATIC_BROKER_CONFIG, broker.static_configs()),
            (ConfigSource.DEFAULT_CONFIG, _BROKER_DEFAULTS),
        )

    def value(self, name: str) -> str | None:
        for _, values in self.sources:
            if name in values:
                return values[name]
        return None

    def synonyms(self, names: Iterable[str]) -> list[ConfigSynonym]:
        # Kafka's order: grouped by source, then by synonym priority within a source.
        names = tuple(names)
        return [
            ConfigSynonym(n, values[n], source)
            for source, values in self.sources
            for n in names
            if n in values
        ]


_BROKER_DEFAULTS: dict[str, str] = {
    d.name: d.default for d in _BROKER_DEFS if d.default is not None
}


def _effective(defn: ConfigDef, overrides: Mapping[str, str], layers: _Layers) -> str:
    if defn.name in overrides:
        return normalize(defn, overrides[defn.name])
    for synonym in defn.broker_synonyms:
        raw = layers.value(synonym)
        if raw is None:
            continue
        if synonym in _UNIT_MS:
            ms = int(raw) * _UNIT_MS[synonym]
            return str(-1 if ms < 0 else ms)
        return normalize(defn, raw)
    assert defn.default is not None, defn.name
    return defn.default


def effective_topic_configs(
    overrides: Mapping[str, str],
    broker: BrokerConfig,
    broker_dynamic: Mapping[str, str],
    node_dynamic: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every topic config with its effective value (canonical strings, Kafka names)."""
    layers = _Layers(broker, broker_dynamic, node_dynamic)
    return {name: _effective(defn, overrides, layers) for name, defn in TOPIC_CONFIGS.items()}


def log_config_for(
    topic_overrides: Mapping[str, str],
    broker: BrokerConfig,
    broker_dynamic: Mapping[str, str],
    node_dynamic: Mapping[str, str] | None = None,
) -> LogConfig:
    from strom.log.config import LogConfig  # log sits below metadata; imported lazily for speed

    return LogConfig.from_kafka(effective_topic_configs(topic_overrides, broker, broker_dynamic, node_dynamic))


# --- DescribeConfigs ------------------------------------------------------------------------------


def describe_topic_configs(
    overrides: Mapping[str, str],
    broker: BrokerConfig,
    broker_dynamic: Mapping[str, str],
    node_dynamic: Mapping[str, str] | None = None,
) -> list[ConfigEntry]:
    """Every topic config, sorted by name, as Kafka's ConfigHelper.createTopicConfigEntry."""
    layers = _Layers(broker, broker_dynamic, node_dynamic)
    entries = []
    for name, defn in sorted(TOPIC_CONFIGS.items()):
        synonyms = layers.synonyms(defn.broker_synonyms)
        if name in overrides:
            synonyms.insert(0, ConfigSynonym(name, overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG))
        entries.append(_entry(defn, _effective(defn, overrides, layers), synonyms, read_only=False))
    return entries


def describe_broker_configs(
    broker: BrokerConfig,
    broker_dynamic: Mapping[str, str],
    node_dynamic: Mapping[str, str] | None = None,
) -> list[ConfigEntry]:
    """Every broker config strom uses, and every other one set dynamically, of this node with
    its current value (a per-broker describe)."""
    layers = _Layers(broker, broker_dynamic, node_dynamic)
    names = BROKER_CONFIGS.keys() | broker_dynamic.keys() | (node_dynamic or {}).keys()
    entries = []
    for name in sorted(names):
        defn = broker_config_def(name) or _custom_def(name)
        entries.append(_entry(defn, layers.value(name), layers.synonyms(defn.broker_synonyms), defn.read_only))
    return entries


def describe_broker_default_configs(broker_dynamic: Mapping[str, str]) -> list[ConfigEntry]:
    """The cluster-default describe (empty broker name): only the dynamic defaults set."""
    entries = []
    for name in sorted(broker_dynamic):
        defn = broker_config_def(name) or _custom_def(name)
        value = broker_dynamic[name]
        synonym = ConfigSynonym(name, value, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
        entries.append(_entry(defn, value, [synonym], defn.read_only))
    return entries


def _entry(defn: ConfigDef, value: str | None, synonyms: list[ConfigSynonym], read_only: bool) -> ConfigEntry:
    if defn.sensitive:
        value = None
        synonyms = [ConfigSynonym(s.name, None, s.source) for s in synonyms]
    return ConfigEntry(
        name=defn.name,
        value=value,
        read_only=read_only,
        source=synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG,
        is_sensitive=defn.sensitive,
        synonyms=tuple(synonyms),
        config_type=defn.config_type,
        documentation=defn.doc,
    )


# --- dynamic broker configs ------------------------------------------------------------------------


def broker_config_value(
    name: str,
    broker: BrokerConfig,
    broker_dynamic: Mapping[str, str],
    node_dynamic: Mapping[str, str] | None = None,
) -> str | None:
    """The current value of a broker config at one level: this node's when ``node_dynamic``
    is given, else the cluster default's (dynamic default, static, definition default)."""
    return _Layers(broker, broker_dynamic, node_dynamic).value(name)


def validate_broker_dynamic_configs(configs: Mapping[str, str | None], *, per_broker: bool) -> dict[str, str]:
    """Check a dynamic broker config set (a node's when ``per_broker``, else the cluster
    default) as Kafka's DynamicBrokerConfig.validateConfigs does; returns canonical values.
    Names Kafka does not define pass unchecked: Kafka keeps them for plugins. Kafka answers
    these failures with INVALID_REQUEST, not INVALID_CONFIG (see KAFKA-13609)."""
    defs = {name: broker_config_def(name) for name in configs}
    # Kafka checks the listener-prefix rule first (its keystores are updatable per listener)
    _refuse([n for n in configs if n in LISTENER_PREFIX_ONLY],
            "These security configs can be dynamically updated only per-listener using the listener prefix")
    _refuse([n for n, d in defs.items() if d is not None and d.read_only], "Cannot update these configs dynamically")
    checked = {}
    for name, value in configs.items():
        if value is None:
            raise ConfigError(ErrorCode.INVALID_REQUEST, f"Null value not supported for : {name}")
        defn = defs[name]
        try:
            checked[name] = value if defn is None else normalize(defn, value)
        except ValueError as exc:
            raise ConfigError(ErrorCode.INVALID_REQUEST, str(exc)) from None
    if not per_broker:
        _refuse([n for n in configs if n in KAFKA_BROKER_CONFIGS and KAFKA_BROKER_CONFIGS[n][1] == PER_BROKER],
                "Cannot update these configs at default cluster level, broker id must be specified")
    return checked


def _refuse(names: list[str], reason: str) -> None:
    if names:
        raise ConfigError(ErrorCode.INVALID_REQUEST, f"{reason}: Set({', '.join(sorted(names))})")
