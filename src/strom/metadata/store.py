"""Cluster metadata behind one interface (docs/architecture.md, "Layers"): a local file for a
single node, etcd for a cluster (``strom.metadata.etcd_store``).

Readers use the current ``image`` (strom.metadata.image.ClusterImage), which a store replaces
whole on every change and announces to its listeners. Writers await the async mutations: each
is durable, and reflected in ``image``, when it returns. Partition state changes are
compare-and-set on the partition epoch the writer read (``alter_partition``), so that two
writers (a leader shrinking its ISR, the controller moving leadership) never both win.

``LocalMetadataStore`` is the single-node store: one JSON document in the data directory,
replaced atomically (temp file, fsync, rename, fsync dir) in a worker thread on every change,
plus Kafka's ``meta.properties`` naming the cluster and node. Changes are rare (admin calls),
so writing the whole document each time is simpler than a log and cheap enough. The node is
the only broker and always the controller; it leads every partition.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from strom.log.checkpoint import write_atomic
from strom.metadata.configs import ConfigError
from strom.metadata.image import (
    INTERNAL_TOPICS,
    BrokerRegistration,
    ClusterImage,
    PartitionState,
    ScramCredential,
    TopicMetadata,
    collision_key,
    initial_state,
    new_topic_id,
    validate_topic_name,
)
from strom.protocol.errors import ErrorCode
from strom.security.acl import AclBinding
from strom.security.quotas import QuotaEntity

log = logging.getLogger(__name__)

METADATA_FILE = "strom-metadata.json"
META_PROPERTIES = "meta.properties"
FORMAT_VERSION = 2  # 1: no partition states (every partition led by the node at epoch 0)

ImageListener = Callable[[ClusterImage, ClusterImage], None]  # (old, new)

__all__ = [
    "INTERNAL_TOPICS",
    "ImageListener",
    "LocalMetadataStore",
    "MetadataStore",
    "TopicMetadata",
    "check_new_topic",
    "validate_topic_name",
]


class MetadataStore(Protocol):
    """What the broker needs from cluster metadata. Mutations raise ConfigError with a Kafka
    error code for bad requests (TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION, ...)."""

    @property
    def image(self) -> ClusterImage: ...

    @property
    def cluster_id(self) -> str: ...

    def topics(self) -> Mapping[str, TopicMetadata]: ...

    def topic(self, name: str) -> TopicMetadata | None: ...

    def broker_configs(self) -> Mapping[str, str]:
        """Dynamic cluster-wide broker defaults (DescribeConfigs resource name '')."""
        ...

    def node_configs(self, node_id: int) -> Mapping[str, str]:
        """Dynamic configs of one broker (resource name '<node id>')."""
        ...

    def group_configs(self, group_id: str) -> Mapping[str, str]:
        """The configs set on one group (resource type GROUP), {} when none."""
        ...

    def add_listener(self, listener: ImageListener) -> None:
        """Call ``listener(old, new)`` on the event loop after every image change."""
        ...

    async def start(self, registration: BrokerRegistration) -> None:
        """Register this broker (cluster: on a lease) and load the image."""
        ...

    async def close(self) -> None: ...

    async def create_topic(
        self,
        name: str,
        replicas: Sequence[Sequence[int]],
        configs: Mapping[str, str],
        topic_id: uuid.UUID | None = None,
    ) -> TopicMetadata:
        """A topic with one partition per entry of ``replicas`` (each partition's replicas,
        preferred leader first), started as image.initial_state over the live brokers."""
        ...

    async def delete_topic(self, name: str) -> None: ...

    async def create_partitions(self, name: str, replicas: Sequence[Sequence[int]]) -> TopicMetadata:
        """Add one partition per entry of ``replicas`` after the existing ones."""
        ...

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicMetadata: ...

    async def set_broker_configs(self, node_id: int | None, configs: Mapping[str, str]) -> None:
        """Replace the dynamic configs of one node, or the cluster defaults when None."""
        ...

    async def set_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        """Replace the configs of one group (the group need not exist); {} removes them."""
        ...

    async def alter_partition(
        self, topic: str, partition: int, state: PartitionState, *, controller_epoch: int | None = None
    ) -> PartitionState | None:
        """Store ``state`` if the partition's epoch is still ``state.partition_epoch`` (and,
        with ``controller_epoch``, if that controller still holds its lease); returns the
        stored state with its new partition epoch, or None when the compare failed."""
        ...

    async def allocate_producer_ids(self, count: int) -> int:
        """The first of ``count`` producer ids never handed out before in this cluster."""
        ...

    async def alter_scram_credentials(
        self, upserts: Sequence[tuple[str, ScramCredential]], deletions: Sequence[tuple[str, str]]
    ) -> None:
        """Set (user, credential) pairs and delete (user, mechanism) pairs, all at once."""
        ...

    async def alter_acls(self, creations: Sequence[AclBinding], deletions: Sequence[AclBinding]) -> None:
        """Add and remove ACL bindings (adding one present or removing one absent is a no-op)."""
        ...

    async def alter_client_quotas(self, changes: Mapping[QuotaEntity, Mapping[str, float | None]]) -> None:
        """Set (a value) or remove (None) quota values of entities, all at once."""
        ...


def check_new_topic(image: ClusterImage, name: str, partitions: int) -> None:
    """Kafka's checks for a new topic's name and partition count (ConfigError)."""
    validate_topic_name(name)
    if name in image.topics:
        raise ConfigError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
    key = collision_key(name)
    clash = next((t for t in image.topics if collision_key(t) == key), None)
    if clash is not None:
        raise ConfigError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic '{name}' collides with existing topic: {clash}")
    if partitions < 1:
        raise ConfigError(ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")


def require_topic(image: ClusterImage, name: str) -> TopicMetadata:
    topic = image.topics.get(name)
    if topic is None:
        raise ConfigError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")
    return topic


class ImageHolder:
    """The current image and its listeners; stores derive from it."""

    def __init__(self) -> None:
        self._image = ClusterImage()
        self._listeners: list[ImageListener] = []

    @property
    def image(self) -> ClusterImage:
        return self._image

    @property
    def cluster_id(self) -> str:
        return self._image.cluster_id

    def topics(self) -> Mapping[str, TopicMetadata]:
        return self._image.topics

    def topic(self, name: str) -> TopicMetadata | None:
        return self._image.topics.get(name)

    def broker_configs(self) -> Mapping[str, str]:
        return self._image.broker_configs

    def node_configs(self, node_id: int) -> Mapping[str, str]:
        return self._image.node_configs.get(node_id, {})

    def group_configs(self, group_id: str) -> Mapping[str, str]:
        return self._image.group_configs.get(group_id, {})

    def add_listener(self, listener: ImageListener) -> None:
        self._listeners.append(listener)

    def _publish(self, image: ClusterImage) -> None:
        old, self._image = self._image, image
        for listener in self._listeners:
            # One failing listener must neither stop the others nor break the writer (or the
            # etcd watch) that published.
            try:
                listener(old, image)
            except Exception:
                log.exception("metadata image listener %r failed", listener)


def _partition_doc(state: PartitionState) -> dict[str, Any]:
    return {**state.to_json(), "partition_epoch": state.partition_epoch}


class LocalMetadataStore(ImageHolder):
    """Single-node MetadataStore in ``<data_dir>/strom-metadata.json``.

    Owned by the event loop: each mutation builds the next image on the loop (so concurrent
    mutations see each other), writes the file in a worker thread, then publishes it. Writes
    are serialised by a lock so the file always holds the latest image."""

    def __init__(self, data_dir: Path, node_id: int = 0) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / METADATA_FILE
        self.node_id = node_id
        self._producer_id_block_end = 0
        self._lock = asyncio.Lock()
        if self.path.exists():
            self._image = self._load()
        else:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self._image = ClusterImage(cluster_id=cluster_id, controller_id=node_id)
            write_atomic(self.path, self._document(self._image))
        self._write_meta_properties()

    async def start(self, registration: BrokerRegistration) -> None:
        self._publish(self._image.with_changes(brokers={registration.node_id: registration}))

    async def close(self) -> None:
        pass

    # --- mutations ------------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        replicas: Sequence[Sequence[int]],
        configs: Mapping[str, str],
        topic_id: uuid.UUID | None = None,
    ) -> TopicMetadata:
        async with self._lock:
            image = self._image
            check_new_topic(image, name, len(replicas))
            topic = TopicMetadata(name, topic_id or new_topic_id(), len(replicas), dict(configs))
            partitions = dict(image.partitions)
            for p, assigned in enumerate(replicas):
                partitions[(name, p)] = initial_state(assigned, image.brokers)
            await self._save(image.with_changes(topics={**image.topics, name: topic}, partitions=partitions))
            return topic

    async def delete_topic(self, name: str) -> None:
        async with self._lock:
            image = self._image
            if name not in image.topics:
                return
            topics = {k: v for k, v in image.topics.items() if k != name}
            partitions = {k: v for k, v in image.partitions.items() if k[0] != name}
            await self._save(image.with_changes(topics=topics, partitions=partitions))

    async def create_partitions(self, name: str, replicas: Sequence[Sequence[int]]) -> TopicMetadata:
        async with self._lock:
            image = self._image
            topic = require_topic(image, name)
            partitions = dict(image.partitions)
            for offset, assigned in enumerate(replicas):
                partitions[(name, topic.partitions + offset)] = initial_state(assigned, image.brokers)
            topic = replace(topic, partitions=topic.partitions + len(replicas))
            await self._save(image.with_changes(topics={**image.topics, name: topic}, partitions=partitions))
            return topic

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicMetadata:
        async with self._lock:
            image = self._image
            topic = replace(require_topic(image, name), configs=dict(configs))
            await self._save(image.with_changes(topics={**image.topics, name: topic}))
            return topic

    async def set_broker_configs(self, node_id: int | None, configs: Mapping[str, str]) -> None:
        async with self._lock:
            image = self._image
            if node_id is None:
                await self._save(image.with_changes(broker_configs=dict(configs)))
                return
            nodes = {k: v for k, v in image.node_configs.items() if k != node_id}
            if configs:
                nodes[node_id] = dict(configs)
            await self._save(image.with_changes(node_configs=nodes))

    async def set_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        async with self._lock:
            groups = {k: v for k, v in self._image.group_configs.items() if k != group_id}
            if configs:
                groups[group_id] = dict(configs)
            await self._save(self._image.with_changes(group_configs=groups))

    async def alter_partition(
        self, topic: str, partition: int, state: PartitionState, *, controller_epoch: int | None = None
    ) -> PartitionState | None:
        async with self._lock:
            image = self._image
            current = image.partition(topic, partition)
            if current is None or current.partition_epoch != state.partition_epoch:
                return None
            if controller_epoch is not None and controller_epoch != image.controller_epoch:
                return None
            stored = replace(state, partition_epoch=current.partition_epoch + 1)
            await self._save(image.with_changes(partitions={**image.partitions, (topic, partition): stored}))
            return stored

    async def alter_scram_credentials(
        self, upserts: Sequence[tuple[str, ScramCredential]], deletions: Sequence[tuple[str, str]]
    ) -> None:
        async with self._lock:
            users = {user: dict(creds) for user, creds in self._image.scram.items()}
            for user, mechanism in deletions:
                users.get(user, {}).pop(mechanism, None)
            for user, credential in upserts:
                users.setdefault(user, {})[credential.mechanism] = credential
            await self._save(self._image.with_changes(scram={u: c for u, c in users.items() if c}))

    async def alter_acls(self, creations: Sequence[AclBinding], deletions: Sequence[AclBinding]) -> None:
        async with self._lock:
            acls = (self._image.acls - frozenset(deletions)) | frozenset(creations)
            await self._save(self._image.with_changes(acls=acls))

    async def alter_client_quotas(self, changes: Mapping[QuotaEntity, Mapping[str, float | None]]) -> None:
        async with self._lock:
            quotas = dict(self._image.client_quotas)
            for entity, values in changes.items():
                merged = {**quotas.get(entity, {}), **values}
                quotas[entity] = {k: v for k, v in merged.items() if v is not None}
                if not quotas[entity]:
                    del quotas[entity]
            await self._save(self._image.with_changes(client_quotas=quotas))

    async def allocate_producer_ids(self, count: int) -> int:
        async with self._lock:
            first = self._producer_id_block_end
            self._producer_id_block_end += count
            await self._save(self._image)
            return first

    # --- persistence ------------------------------------------------------------------------------

    async def _save(self, image: ClusterImage) -> None:
        """Write the image, then make it current (the caller holds the lock). A cancelled
        caller (its client went away) still waits for the write and publishes it before the
        lock is released: else the next write could race this one's thread, and the file
        and the image could disagree."""
        document = self._document(image)
        write = asyncio.ensure_future(asyncio.to_thread(write_atomic, self.path, document))
        cancelled = False
        while not write.done():
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                cancelled = True
        write.result()
        self._publish(image)
        if cancelled:
            raise asyncio.CancelledError

    def _document(self, image: ClusterImage) -> bytes:
        doc: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "cluster_id": image.cluster_id,
            "topics": [
                {
                    "name": t.name,
                    "topic_id": str(t.topic_id),
                    "configs": dict(t.configs),
                    "partitions": [_partition_doc(image.partitions[(t.name, p)]) for p in range(t.partitions)],
                }
                for t in image.topics.values()
            ],
            "broker_configs": dict(image.broker_configs),
            "node_configs": {str(k): dict(v) for k, v in image.node_configs.items()},
            "group_configs": {g: dict(v) for g, v in image.group_configs.items()},
            "producer_id_block_end": self._producer_id_block_end,
            "scram": {u: {m: c.to_json() for m, c in creds.items()} for u, creds in image.scram.items()},
            "acls": sorted(b.to_json() for b in image.acls),
            "client_quotas": [{"entity": [list(p) for p in e], "values": dict(v)} for e, v in sorted(image.client_quotas.items())],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    def _load(self) -> ClusterImage:
        try:
            doc = json.loads(self.path.read_bytes())
            version = doc.get("version")
            if version not in (1, FORMAT_VERSION):
                raise ValueError(f"unknown format version {version!r}")
            topics: dict[str, TopicMetadata] = {}
            partitions: dict[tuple[str, int], PartitionState] = {}
            for t in doc["topics"]:
                name = t["name"]
                if version == 1:  # every partition on this node, led at epoch 0
                    states = [initial_state([self.node_id], [self.node_id]) for _ in range(int(t["partitions"]))]
                else:
                    states = [PartitionState.from_json(p, int(p.get("partition_epoch", 0))) for p in t["partitions"]]
                topics[name] = TopicMetadata(name, uuid.UUID(t["topic_id"]), len(states), dict(t["configs"]))
                partitions.update(((name, p), state) for p, state in enumerate(states))
            self._producer_id_block_end = int(doc.get("producer_id_block_end", 0))
            return ClusterImage(
                cluster_id=str(doc["cluster_id"]),
                controller_id=self.node_id,
                topics=topics,
                partitions=partitions,
                broker_configs=dict(doc.get("broker_configs", {})),
                node_configs={int(k): dict(v) for k, v in doc.get("node_configs", {}).items()},
                group_configs={str(g): {str(k): str(v) for k, v in c.items()}
                               for g, c in doc.get("group_configs", {}).items()},
                scram={u: {m: ScramCredential.from_json(c) for m, c in creds.items()}
                       for u, creds in doc.get("scram", {}).items()},
                acls=frozenset(AclBinding.from_json(b) for b in doc.get("acls", [])),
                client_quotas={tuple((str(t), str(n)) for t, n in q["entity"]): {str(k): float(v) for k, v in q["values"].items()}
                               for q in doc.get("client_quotas", [])},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Refuse to start rather than serve an empty cluster over existing data.
            raise RuntimeError(f"cannot read cluster metadata {self.path}: {exc}") from exc

    def _write_meta_properties(self) -> None:
        path = self.data_dir / META_PROPERTIES
        text = f"version=1\ncluster.id={self.cluster_id}\nnode.id={self.node_id}\n"
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        write_atomic(path, text.encode())
