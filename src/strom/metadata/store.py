"""Cluster metadata: topics (name, id, partition count, config overrides) and dynamic broker
configs, behind one interface so that cluster mode can put them in etcd (DESIGN.md).

``LocalMetadataStore`` is the single-node store: one JSON document in the data directory,
replaced atomically (temp file, fsync, rename, fsync dir) on every change, plus Kafka's
``meta.properties`` naming the cluster and node. Changes are rare (admin calls), so writing the
whole document each time is simpler than a log and cheap enough.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from strom.log.checkpoint import write_atomic
from strom.metadata.configs import ConfigError
from strom.protocol.errors import ErrorCode

METADATA_FILE = "strom-metadata.json"
PRODUCER_ID_BLOCK = 1000  # ids reserved per metadata write, as Kafka's controller hands out blocks
META_PROPERTIES = "meta.properties"
FORMAT_VERSION = 1

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


def validate_topic_name(name: str | None) -> None:
    """Kafka's Topic.validate: raises ConfigError(INVALID_TOPIC_EXCEPTION) with its wording."""
    if not name:
        raise ConfigError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise ConfigError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Topic name cannot be \".\" or \"..\"")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise ConfigError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, "
            f"topic name: {name}",
        )
    if not _LEGAL_TOPIC_NAME.fullmatch(name):
        raise ConfigError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name \"{name}\" is illegal, it contains a character other than ASCII "
            "alphanumerics, '.', '_' and '-'",
        )


def _collision_key(name: str) -> str:
    # Kafka refuses topics whose names differ only in '.' versus '_' (metric names collide).
    return name.replace(".", "_")


def new_topic_id() -> uuid.UUID:
    """A random topic id whose base64 form does not start with '-' (Kafka's Uuid.randomUuid)."""
    while True:
        topic_id = uuid.uuid4()
        if not base64.urlsafe_b64encode(topic_id.bytes).startswith(b"-"):
            return topic_id


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)  # topic-level overrides

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


class MetadataStore(Protocol):
    """What the broker needs from cluster metadata. Every mutation is durable on return."""

    @property
    def cluster_id(self) -> str: ...

    def topics(self) -> Mapping[str, TopicMetadata]: ...

    def topic(self, name: str) -> TopicMetadata | None: ...

    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, str], topic_id: uuid.UUID | None = None
    ) -> TopicMetadata: ...

    def delete_topic(self, name: str) -> None: ...

    def set_partitions(self, name: str, partitions: int) -> TopicMetadata: ...

    def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicMetadata: ...

    def broker_configs(self) -> Mapping[str, str]:
        """Dynamic cluster-wide broker defaults (DescribeConfigs resource name '')."""
        ...

    def node_configs(self, node_id: int) -> Mapping[str, str]:
        """Dynamic configs of one broker (resource name '<node id>')."""
        ...

    def set_broker_configs(self, node_id: int | None, configs: Mapping[str, str]) -> None:
        """Replace the dynamic configs of one node, or the cluster defaults when None."""
        ...

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before in this cluster (survives restarts)."""
        ...


class LocalMetadataStore:
    """Single-node MetadataStore in ``<data_dir>/strom-metadata.json``.

    Owned by the event loop; every mutation rewrites the file before returning.
    A collision check (``a.b`` vs ``a_b``) is part of create_topic, as in Kafka.
    """

    def __init__(self, data_dir: Path, node_id: int = 0) -> None:
        self.path = Path(data_dir) / METADATA_FILE
        self._topics: dict[str, TopicMetadata] = {}
        self._broker_configs: dict[str, str] = {}
        self._node_configs: dict[int, dict[str, str]] = {}
        self._cluster_id = ""
        # Producer ids below _producer_id_block_end are reserved; the next one to hand out.
        self._next_producer_id = 0
        self._producer_id_block_end = 0
        if self.path.exists():
            self._load()
        else:
            self._cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self._save()
        self._write_meta_properties(Path(data_dir), node_id)

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    def topics(self) -> Mapping[str, TopicMetadata]:
        return self._topics

    def topic(self, name: str) -> TopicMetadata | None:
        return self._topics.get(name)

    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, str], topic_id: uuid.UUID | None = None
    ) -> TopicMetadata:
        validate_topic_name(name)
        if name in self._topics:
            raise ConfigError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        key = _collision_key(name)
        clash = next((t for t in self._topics if _collision_key(t) == key), None)
        if clash is not None:
            raise ConfigError(
                ErrorCode.INVALID_TOPIC_EXCEPTION,
                f"Topic '{name}' collides with existing topic: {clash}",
            )
        if partitions < 1:
            raise ConfigError(ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        topic = TopicMetadata(name, topic_id or new_topic_id(), partitions, dict(configs))
        self._topics[name] = topic
        self._save()
        return topic

    def delete_topic(self, name: str) -> None:
        if self._topics.pop(name, None) is not None:
            self._save()

    def set_partitions(self, name: str, partitions: int) -> TopicMetadata:
        topic = self._require(name)
        if partitions < topic.partitions:
            raise ConfigError(ErrorCode.INVALID_PARTITIONS, "The number of partitions can only grow.")
        topic = self._topics[name] = replace(topic, partitions=partitions)
        self._save()
        return topic

    def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicMetadata:
        topic = self._topics[name] = replace(self._require(name), configs=dict(configs))
        self._save()
        return topic

    def broker_configs(self) -> Mapping[str, str]:
        return self._broker_configs

    def node_configs(self, node_id: int) -> Mapping[str, str]:
        return self._node_configs.get(node_id, {})

    def set_broker_configs(self, node_id: int | None, configs: Mapping[str, str]) -> None:
        if node_id is None:
            self._broker_configs = dict(configs)
        elif configs:
            self._node_configs[node_id] = dict(configs)
        else:
            self._node_configs.pop(node_id, None)
        self._save()

    def allocate_producer_id(self) -> int:
        if self._next_producer_id >= self._producer_id_block_end:
            # Reserve a block durably first: after a restart ids continue past it, never reused.
            self._producer_id_block_end = self._next_producer_id + PRODUCER_ID_BLOCK
            self._save()
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        return producer_id

    # --- persistence ------------------------------------------------------------------------

    def _require(self, name: str) -> TopicMetadata:
        topic = self._topics.get(name)
        if topic is None:
            raise ConfigError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")
        return topic

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            if doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown format version {doc.get('version')!r}")
            self._cluster_id = str(doc["cluster_id"])
            for t in doc["topics"]:
                self._topics[t["name"]] = TopicMetadata(
                    t["name"], uuid.UUID(t["topic_id"]), int(t["partitions"]), dict(t["configs"])
                )
            self._broker_configs = dict(doc.get("broker_configs", {}))
            self._node_configs = {int(k): dict(v) for k, v in doc.get("node_configs", {}).items()}
            self._next_producer_id = self._producer_id_block_end = int(doc.get("producer_id_block_end", 0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Refuse to start rather than serve an empty cluster over existing data.
            raise RuntimeError(f"cannot read cluster metadata {self.path}: {exc}") from exc

    def _save(self) -> None:
        doc = {
            "version": FORMAT_VERSION,
            "cluster_id": self._cluster_id,
            "topics": [
                {"name": t.name, "topic_id": str(t.topic_id), "partitions": t.partitions, "configs": dict(t.configs)}
                for t in self._topics.values()
            ],
            "broker_configs": self._broker_configs,
            "node_configs": {str(k): v for k, v in self._node_configs.items()},
            "producer_id_block_end": self._producer_id_block_end,
        }
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())

    def _write_meta_properties(self, data_dir: Path, node_id: int) -> None:
        path = data_dir / META_PROPERTIES
        text = f"version=1\ncluster.id={self._cluster_id}\nnode.id={node_id}\n"
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        write_atomic(path, text.encode())
