"""How the etcd store's keys make a ``ClusterImage`` (strom.metadata.etcd_store lists and
watches the keys; this module only parses them). Key layout: see etcd_store's docstring."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aetcd import rpc

from strom.metadata.image import (
    BrokerRegistration,
    ClusterImage,
    PartitionState,
    ScramCredential,
    TopicMetadata,
)
from strom.security.acl import AclBinding
from strom.security.quotas import QuotaEntity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _TopicKey:
    topic_id: uuid.UUID
    partitions: int
    create_revision: int
    mod_revision: int


class Projection:
    """The cluster's keys, parsed, and the image they make.

    Owned by the event loop. ``apply`` records one key's change and what it affects; ``build``
    then makes the next image from the previous one, copying only the mappings that changed
    and re-checking only the topics touched."""

    def __init__(self) -> None:
        self.cluster_id = ""
        self.brokers: dict[int, BrokerRegistration] = {}
        self.controller: tuple[int, int] = (-1, 0)  # broker id, epoch
        self.topic_keys: dict[str, _TopicKey] = {}
        self.names: dict[uuid.UUID, str] = {}  # topic id -> name, for the topic keys present
        self.topic_configs: dict[str, dict[str, str]] = {}
        self.partitions: dict[uuid.UUID, dict[int, PartitionState]] = {}
        self.broker_configs: dict[str, str] = {}
        self.node_configs: dict[int, dict[str, str]] = {}
        self.group_configs: dict[str, dict[str, str]] = {}  # by group id
        self.scram: dict[str, dict[str, ScramCredential]] = {}
        self.acls: dict[str, AclBinding] = {}  # by key
        self.client_quotas: dict[str, tuple[QuotaEntity, dict[str, float]]] = {}  # by key
        self._changed: set[str] = set()  # ClusterImage fields to rebuild
        self._topics: set[str] = set()  # topics whose visibility to re-check
        self._states: set[tuple[uuid.UUID, int]] = set()  # partition states to copy

    def apply(self, key: str, kv: rpc.KeyValue, deleted: bool) -> None:
        """``key`` (relative to the cluster prefix) was put (``kv``) or deleted."""
        try:
            self._apply(key, kv, None if deleted else json.loads(kv.value))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring malformed metadata key %r: %s", key, exc)

    def _apply(self, key: str, kv: rpc.KeyValue, doc: Any) -> None:
        kind, _, rest = key.partition("/")
        if key == "cluster":
            self.cluster_id = str(doc["cluster_id"]) if doc is not None else ""
            self._changed.add("cluster_id")
        elif kind == "brokers":
            node_id = int(rest)
            if doc is None:
                self.brokers.pop(node_id, None)
            else:
                rack = doc.get("rack")
                self.brokers[node_id] = BrokerRegistration(
                    node_id,
                    str(doc["host"]),
                    int(doc["port"]),
                    None if rack is None else str(rack),
                    epoch=kv.create_revision,
                    endpoints=tuple((str(n), str(h), int(p)) for n, h, p in doc.get("endpoints", ())),
                )
            self._changed.add("brokers")
        elif key == "controller":
            self.controller = (
                (-1, 0) if doc is None else (int(doc["broker_id"]), kv.create_revision)
            )
            self._changed.add("controller")
        elif kind == "topics":
            old = self.topic_keys.pop(rest, None)
            if old is not None:
                self.names.pop(old.topic_id, None)
            if doc is not None:
                topic = _TopicKey(
                    uuid.UUID(doc["topic_id"]),
                    int(doc["partitions"]),
                    kv.create_revision,
                    kv.mod_revision,
                )
                self.topic_keys[rest] = topic
                self.names[topic.topic_id] = rest
            self._topics.add(rest)
        elif kind == "partitions":
            id_text, _, index = rest.partition("/")
            topic_id, partition = uuid.UUID(id_text), int(index)
            states = self.partitions.setdefault(topic_id, {})
            if doc is None:
                states.pop(partition, None)
                if not states:
                    del self.partitions[topic_id]
                if topic_id in self.names:  # a visible topic lost a partition: re-check it
                    self._topics.add(self.names[topic_id])
            else:
                states[partition] = PartitionState.from_json(doc, kv.mod_revision)
                self._states.add((topic_id, partition))
        elif kind == "configs":
            scope, _, name = rest.partition("/")
            configs = {} if doc is None else {str(k): str(v) for k, v in doc.items()}
            if scope == "topic":
                _set_or_drop(self.topic_configs, name, configs)
                self._topics.add(name)
            elif scope == "broker" and name == "default":
                self.broker_configs = configs
                self._changed.add("broker_configs")
            elif scope == "broker":
                _set_or_drop(self.node_configs, int(name), configs)
                self._changed.add("node_configs")
            elif scope == "group":
                _set_or_drop(self.group_configs, unquote(name), configs)
                self._changed.add("group_configs")
        elif kind == "scram":
            encoded, _, mechanism = rest.rpartition("/")
            user = unquote(encoded)
            credentials = self.scram.setdefault(user, {})
            if doc is None:
                credentials.pop(mechanism, None)
            else:
                credentials[mechanism] = ScramCredential.from_json(doc)
            if not credentials:
                del self.scram[user]
            self._changed.add("scram")
        elif kind == "quotas":
            if doc is None:
                self.client_quotas.pop(rest, None)
            else:
                entity = tuple((str(t), str(n)) for t, n in doc["entity"])
                self.client_quotas[rest] = (entity, {str(k): float(v) for k, v in doc["values"].items()})
            self._changed.add("client_quotas")
        elif kind == "acls":
            if doc is None:
                self.acls.pop(rest, None)
            else:
                self.acls[rest] = AclBinding.from_json(doc)
            self._changed.add("acls")
        # Other keys (counters/, and kinds added later) are not part of the image.

    def _visible(self, name: str) -> TopicMetadata | None:
        topic = self.topic_keys.get(name)
        if topic is None:
            return None
        states = self.partitions.get(topic.topic_id, {})
        if any(p not in states for p in range(topic.partitions)):
            return None  # still being created
        return TopicMetadata(
            name, topic.topic_id, topic.partitions, self.topic_configs.get(name, {})
        )

    def build(self, old: ClusterImage, revision: int) -> ClusterImage:
        changes: dict[str, object] = {"revision": revision}
        if "cluster_id" in self._changed:
            changes["cluster_id"] = self.cluster_id
        if "brokers" in self._changed:
            changes["brokers"] = dict(self.brokers)
        if "controller" in self._changed:
            changes["controller_id"], changes["controller_epoch"] = self.controller
        if "broker_configs" in self._changed:
            changes["broker_configs"] = dict(self.broker_configs)
        if "client_quotas" in self._changed:
            changes["client_quotas"] = dict(self.client_quotas.values())
        if "acls" in self._changed:
            changes["acls"] = frozenset(self.acls.values())
        if "scram" in self._changed:
            changes["scram"] = {user: dict(creds) for user, creds in self.scram.items()}
        if "node_configs" in self._changed:
            changes["node_configs"] = dict(self.node_configs)  # inner dicts are never mutated
        if "group_configs" in self._changed:
            changes["group_configs"] = dict(self.group_configs)
        for topic_id, _ in self._states:
            name = self.names.get(topic_id)
            shown = old.topics.get(name) if name is not None else None
            if name is not None and (shown is None or shown.topic_id != topic_id):
                self._topics.add(name)  # a partition of a topic not yet complete: is it now?
        if self._topics or self._states:
            topics = dict(old.topics)
            partitions = dict(old.partitions)
            for name in self._topics:
                gone = topics.pop(name, None)
                if gone is not None:
                    for p in range(gone.partitions):
                        partitions.pop((name, p), None)
                topic = self._visible(name)
                if topic is not None:
                    topics[name] = topic
                    states = self.partitions[topic.topic_id]
                    partitions.update(((name, p), states[p]) for p in range(topic.partitions))
            for topic_id, p in self._states:
                name = self.names.get(topic_id)
                if name is None or name in self._topics:
                    continue  # no topic yet, or rebuilt whole above
                topic = topics.get(name)
                state = self.partitions.get(topic_id, {}).get(p)
                if (
                    topic is not None
                    and topic.topic_id == topic_id
                    and p < topic.partitions
                    and state
                ):
                    partitions[(name, p)] = state
            changes["topics"] = topics
            changes["partitions"] = partitions
        self._changed.clear()
        self._topics.clear()
        self._states.clear()
        return old.with_changes(**changes)


# --- the store ------------------------------------------------------------------------------------


def _set_or_drop(configs_by_name: dict[Any, dict[str, str]], name: Any, configs: dict[str, str]) -> None:
    """An entity's configs, or none kept once the last one is deleted."""
    if configs:
        configs_by_name[name] = configs
    else:
        configs_by_name.pop(name, None)
