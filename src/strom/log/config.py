"""Per-log configuration: Kafka's topic-level log configs under snake_case names.

Defaults are Kafka's. ``LogConfig.from_kafka`` maps a topic's effective configs (Kafka's
dotted names, string values, as DescribeConfigs shows them) onto the fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_LONG_MAX = 2**63 - 1
_DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class LogConfig:
    segment_bytes: int = 1024 * 1024 * 1024  # segment.bytes
    segment_ms: int = 7 * _DAY_MS  # segment.ms
    index_interval_bytes: int = 4096  # index.interval.bytes
    segment_index_bytes: int = 10 * 1024 * 1024  # segment.index.bytes
    retention_ms: int = 7 * _DAY_MS  # retention.ms (-1 = forever)
    retention_bytes: int = -1  # retention.bytes (-1 = no limit)
    cleanup_policy: str = "delete"  # cleanup.policy: delete | compact | compact,delete
    delete_retention_ms: int = _DAY_MS  # delete.retention.ms (tombstones)
    min_compaction_lag_ms: int = 0  # min.compaction.lag.ms
    min_cleanable_dirty_ratio: float = 0.5  # min.cleanable.dirty.ratio
    max_message_bytes: int = 1048588  # max.message.bytes
    flush_messages: int = _LONG_MAX  # flush.messages
    flush_ms: int = _LONG_MAX  # flush.ms
    message_timestamp_type: str = "CreateTime"  # message.timestamp.type
    message_timestamp_after_max_ms: int = 3_600_000  # message.timestamp.after.max.ms
    message_timestamp_before_max_ms: int = _LONG_MAX  # message.timestamp.before.max.ms
    max_compaction_lag_ms: int = _LONG_MAX  # max.compaction.lag.ms
    segment_jitter_ms: int = 0  # segment.jitter.ms
    compression_type: str = "producer"  # compression.type: producer keeps the producer's codec
    compression_gzip_level: int = -1  # compression.gzip.level (-1: the codec's default)
    compression_lz4_level: int = 9  # compression.lz4.level
    compression_zstd_level: int = 3  # compression.zstd.level
    file_delete_delay_ms: int = 60_000  # file.delete.delay.ms
    # Replication (read by the produce path and the controller, not by the log itself).
    min_insync_replicas: int = 1  # min.insync.replicas
    unclean_leader_election_enable: bool = False  # unclean.leader.election.enable
    # Derived once from the fields above (the append path reads them for every batch).
    compact: bool = field(init=False, repr=False, compare=False)
    delete: bool = field(init=False, repr=False, compare=False)
    log_append_time: bool = field(init=False, repr=False, compare=False)
    # (codec, level) the topic stores batches in, or None to keep the producer's.
    compression: tuple[int, int | None] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policies = self.cleanup_policy_set
        if not policies <= {"delete", "compact"}:
            raise ValueError(f"invalid cleanup.policy {self.cleanup_policy!r}")
        if self.message_timestamp_type not in ("CreateTime", "LogAppendTime"):
            raise ValueError(f"invalid message.timestamp.type {self.message_timestamp_type!r}")
        if self.segment_bytes < 14:  # Kafka's lower bound (LegacyRecord.RECORD_OVERHEAD_V0)
            raise ValueError(f"segment.bytes {self.segment_bytes} is too small")
        if self.segment_index_bytes < 12:
            raise ValueError(f"segment.index.bytes {self.segment_index_bytes} holds no entry")
        if self.segment_ms < 1 or self.flush_messages < 1 or self.flush_ms < 0:
            raise ValueError("segment.ms and flush.messages must be positive")
        if not 0.0 <= self.min_cleanable_dirty_ratio <= 1.0:
            raise ValueError("min.cleanable.dirty.ratio must lie in [0, 1]")
        codecs = {"uncompressed": (0, None), "gzip": (1, self.compression_gzip_level), "snappy": (2, None),
                  "lz4": (3, self.compression_lz4_level), "zstd": (4, self.compression_zstd_level)}
        found = codecs.get(self.compression_type)
        derived = {
            "compact": "compact" in policies,
            "delete": "delete" in policies,
            "log_append_time": self.message_timestamp_type == "LogAppendTime",
            "compression": None if found is None else (found[0], None if found[1] == -1 else found[1]),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def cleanup_policy_set(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.cleanup_policy.split(",") if p.strip())

    def replace(self, **changes: Any) -> LogConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_kafka(cls, configs: dict[str, str], base: LogConfig | None = None) -> LogConfig:
        """A LogConfig from Kafka config names; names that are not log configs are ignored.

        Missing names keep the value of ``base`` (default: Kafka's defaults).
        """
        changes: dict[str, Any] = {}
        for name, raw in configs.items():
            mapped = KAFKA_NAMES.get(name)
            if mapped is None or raw is None:
                continue
            field_name, kind = mapped
            try:
                changes[field_name] = kind(raw.strip())
            except ValueError as exc:
                raise ValueError(f"invalid value {raw!r} for {name}") from exc
        if "cleanup_policy" in changes:
            parts = sorted({p.strip().lower() for p in str(changes["cleanup_policy"]).split(",")})
            changes["cleanup_policy"] = ",".join(p for p in parts if p)
        return dataclasses.replace(base or cls(), **changes)


def _bool(raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise ValueError(f"{raw!r} is not true or false")
    return raw.lower() == "true"


# Kafka config name -> (field, parser).
KAFKA_NAMES: dict[str, tuple[str, Callable[[str], object]]] = {
    "segment.bytes": ("segment_bytes", int),
    "segment.ms": ("segment_ms", int),
    "index.interval.bytes": ("index_interval_bytes", int),
    "segment.index.bytes": ("segment_index_bytes", int),
    "retention.ms": ("retention_ms", int),
    "retention.bytes": ("retention_bytes", int),
    "cleanup.policy": ("cleanup_policy", str),
    "delete.retention.ms": ("delete_retention_ms", int),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", int),
    "min.cleanable.dirty.ratio": ("min_cleanable_dirty_ratio", float),
    "max.message.bytes": ("max_message_bytes", int),
    "flush.messages": ("flush_messages", int),
    "flush.ms": ("flush_ms", int),
    "message.timestamp.type": ("message_timestamp_type", str),
    "file.delete.delay.ms": ("file_delete_delay_ms", int),
    "message.timestamp.after.max.ms": ("message_timestamp_after_max_ms", int),
    "message.timestamp.before.max.ms": ("message_timestamp_before_max_ms", int),
    "max.compaction.lag.ms": ("max_compaction_lag_ms", int),
    "segment.jitter.ms": ("segment_jitter_ms", int),
    "compression.type": ("compression_type", str),
    "compression.gzip.level": ("compression_gzip_level", int),
    "compression.lz4.level": ("compression_lz4_level", int),
    "compression.zstd.level": ("compression_zstd_level", int),
    "min.insync.replicas": ("min_insync_replicas", int),
    "unclean.leader.election.enable": ("unclean_leader_election_enable", _bool),
}
