"""The cluster metadata image: what every broker knows about the cluster at one revision.

A ``ClusterImage`` is immutable by convention: a store builds a new one for every change it
applies (a local write, or a batch of etcd watch events) and hands it to its listeners, so a
reader never sees half an update. Mappings are plain dicts that nobody mutates after the
image is built.

Partition state follows KRaft's PartitionRecord (and ZooKeeper-era Kafka's LeaderAndIsr):
replicas (preferred leader first), leader, leader epoch, ISR, and a ``partition_epoch`` that
changes on every write, so that writers can compare-and-set on it (the etcd key's
mod_revision; a counter in the local store). KIP-455 reassignments are carried as
``adding`` / ``removing`` replicas, both included in ``replicas`` while they run.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from strom.metadata.configs import ConfigError
from strom.protocol.errors import ErrorCode
from strom.security.acl import AclBinding

NO_LEADER = -1
MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})

# leader_recovery (KIP-704): RECOVERING marks a partition whose leader came from an unclean
# election (data may have been lost); strom records it but, unlike Kafka, does not yet hold
# back ISR growth until the leader has recovered.
RECOVERED = 0
RECOVERING = 1


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


def collision_key(name: str) -> str:
    # Kafka refuses topics whose names differ only in '.' versus '_' (metric names collide).
    return name.replace(".", "_")


def new_topic_id() -> uuid.UUID:
    """A random topic id whose base64 form does not start with '-' (Kafka's Uuid.randomUuid)."""
    while True:
        topic_id = uuid.uuid4()
        if not base64.urlsafe_b64encode(topic_id.bytes).startswith(b"-"):
            return topic_id


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """A live broker. ``epoch`` is its broker epoch (KIP-380): the etcd create_revision of
    its registration, new on every registration; 0 on a single node."""

    node_id: int
    host: str
    port: int
    rack: str | None = None
    epoch: int = 0
    # every advertised listener: (name, host, port); host/port above are the inter-broker one
    endpoints: tuple[tuple[str, str, int], ...] = ()

    def endpoint(self, listener: str | None) -> tuple[str, int]:
        for name, host, port in self.endpoints:
            if name == listener:
                return host, port
        return self.host, self.port


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """A user's salted SCRAM credential (RFC 5802): never the password itself."""

    mechanism: str  # SCRAM-SHA-256 | SCRAM-SHA-512
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_json(self) -> dict[str, object]:
        def b64(b: bytes) -> str:
            return base64.b64encode(b).decode()

        return {"mechanism": self.mechanism, "salt": b64(self.salt), "stored_key": b64(self.stored_key),
                "server_key": b64(self.server_key), "iterations": self.iterations}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> ScramCredential:
        return cls(str(doc["mechanism"]), base64.b64decode(str(doc["salt"])), base64.b64decode(str(doc["stored_key"])),
                   base64.b64decode(str(doc["server_key"])), int(doc["iterations"]))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class PartitionState:
    replicas: tuple[int, ...]  # assigned replicas, preferred leader first
    leader: int  # NO_LEADER (-1) while offline
    leader_epoch: int
    isr: tuple[int, ...]  # never empty once set: the last ISR is kept while offline
    partition_epoch: int = 0  # changes on every write; writers compare-and-set on it
    leader_recovery: int = RECOVERED
    adding: tuple[int, ...] = ()  # KIP-455: replicas being added by a reassignment
    removing: tuple[int, ...] = ()  # ... and being removed once the new ones are in sync

    @property
    def target_replicas(self) -> tuple[int, ...]:
        """Where a running reassignment goes (the replicas otherwise)."""
        return tuple(r for r in self.replicas if r not in self.removing)

    @property
    def reassigning(self) -> bool:
        return bool(self.adding or self.removing)

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "replicas": list(self.replicas),
            "leader": self.leader,
            "leader_epoch": self.leader_epoch,
            "isr": list(self.isr),
            "leader_recovery": self.leader_recovery,
        }
        if self.adding or self.removing:
            doc.update(adding=list(self.adding), removing=list(self.removing))
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], partition_epoch: int) -> PartitionState:
        def ints(name: str) -> tuple[int, ...]:
            return tuple(int(x) for x in doc.get(name, ()))

        return cls(
            replicas=ints("replicas"),
            leader=int(doc["leader"]),
            leader_epoch=int(doc["leader_epoch"]),
            isr=ints("isr"),
            partition_epoch=partition_epoch,
            leader_recovery=int(doc.get("leader_recovery", RECOVERED)),
            adding=ints("adding"),
            removing=ints("removing"),
        )


def initial_state(replicas: Iterable[int], live: Iterable[int]) -> PartitionState:
    """A new partition: the first live replica leads at epoch 0, the live replicas are the
    ISR (CLUSTER.md, "The controller" 3). With no live replica it starts offline with every
    replica in the ISR: they are all empty, so any of them may lead without loss."""
    replicas = tuple(replicas)
    alive = set(live)
    isr = tuple(r for r in replicas if r in alive)
    if not isr:
        return PartitionState(replicas, NO_LEADER, 0, replicas)
    return PartitionState(replicas, isr[0], 0, isr)


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)  # topic-level overrides

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


@dataclass(frozen=True, slots=True)
class ClusterImage:
    """Fields (all read-only once built):

    ``brokers``: the live (registered) brokers by node id. ``controller_id``: the broker
    holding the controller lease (-1: none), ``controller_epoch`` its lease key's
    create_revision. ``topics`` by name; ``partitions`` by (topic name, index), present for
    every partition of every topic. ``revision``: the store revision the image reflects."""

    cluster_id: str = ""
    brokers: Mapping[int, BrokerRegistration] = field(default_factory=dict)
    controller_id: int = -1
    controller_epoch: int = 0
    topics: Mapping[str, TopicMetadata] = field(default_factory=dict)
    partitions: Mapping[tuple[str, int], PartitionState] = field(default_factory=dict)
    broker_configs: Mapping[str, str] = field(default_factory=dict)
    node_configs: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    # group configs (strom.metadata.group_configs) by group id: only the groups that set some
    group_configs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # SCRAM credentials by user name, then mechanism
    scram: Mapping[str, Mapping[str, ScramCredential]] = field(default_factory=dict)
    acls: frozenset[AclBinding] = frozenset()
    # client quotas by entity (security.quotas: sorted (type, name) pairs, DEFAULT for <default>)
    client_quotas: Mapping[tuple[tuple[str, str], ...], Mapping[str, float]] = field(default_factory=dict)
    revision: int = 0

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        return self.partitions.get((topic, partition))

    def topic_by_id(self, topic_id: uuid.UUID | None) -> TopicMetadata | None:
        for topic in self.topics.values():
            if topic.topic_id == topic_id:
                return topic
        return None

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.scram.get(user, {}).get(mechanism)

    def live(self, node_id: int) -> bool:
        return node_id in self.brokers

    def with_changes(self, **changes: object) -> ClusterImage:
        return replace(self, **changes)  # type: ignore[arg-type]
