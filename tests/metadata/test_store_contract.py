"""One contract for every MetadataStore: LocalMetadataStore and EtcdMetadataStore pass the same
tests (STYLE.md: one suite, parameterised over every store).

Each test gets a factory that opens a store of one kind with the same identity every time (the
local store: the same directory; etcd: the same cluster name), started as node 0."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from strom.metadata.configs import ConfigError
from strom.metadata.etcd_store import EtcdMetadataStore
from strom.metadata.image import BrokerRegistration, ClusterImage, PartitionState, ScramCredential
from strom.metadata.store import LocalMetadataStore, MetadataStore
from strom.protocol.errors import ErrorCode

from .conftest import run_async

REGISTRATION = BrokerRegistration(0, "127.0.0.1", 9092, rack="r1")

Factory = Callable[[], MetadataStore]


@pytest.fixture(params=["local", "etcd"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "local":
        return lambda: LocalMetadataStore(tmp_path)
    etcd = request.getfixturevalue("etcd")
    name = request.getfixturevalue("cluster_name")
    return lambda: EtcdMetadataStore([etcd.endpoint], name, node_id=0)


def with_store(new_store: Factory, test: Callable[[MetadataStore], object]) -> None:
    """Run ``await test(store)`` on a started store, closed afterwards."""

    async def main() -> None:
        store = new_store()
        await store.start(REGISTRATION)
        try:
            await test(store)  # type: ignore[misc]
        finally:
            await store.close()

    run_async(main)


async def rejects(code: int, awaitable: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        await awaitable  # type: ignore[misc]
    assert info.value.error_code == code, info.value.message
    return info.value


def test_a_started_store_knows_itself(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        image = store.image
        assert len(store.cluster_id) == 22 and store.cluster_id == image.cluster_id
        assert image.topics == {} and image.partitions == {}
        registered = image.brokers[0]
        assert (registered.host, registered.port, registered.rack) == ("127.0.0.1", 9092, "r1")
        assert image.controller_id == 0
        assert store.broker_configs() == {} and store.node_configs(0) == {}

    with_store(new_store, test)


def test_create_and_read_topics(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        orders = await store.create_topic("orders", [[0]] * 3, {"cleanup.policy": "compact"})
        assert (orders.name, orders.partitions, dict(orders.configs)) == (
            "orders",
            3,
            {"cleanup.policy": "compact"},
        )
        assert store.topic("orders") == orders and list(store.topics()) == ["orders"]
        for p in range(3):
            state = store.image.partition("orders", p)
            assert state is not None
            assert (state.replicas, state.leader, state.leader_epoch, state.isr) == (
                (0,),
                0,
                0,
                (0,),
            )
        assert store.image.partition("orders", 3) is None
        assert store.image.topic_by_id(orders.topic_id) == orders

        chosen = uuid.uuid4()
        given = await store.create_topic("given-id", [[0]], {}, topic_id=chosen)
        assert given.topic_id == chosen == store.topic("given-id").topic_id
        # A replica that is not a live broker is not in the ISR; with none live: offline.
        mixed = await store.create_topic("mixed", [[7, 0], [7]], {})
        assert store.image.partition("mixed", 0).leader == 0
        assert store.image.partition("mixed", 0).isr == (0,)
        assert store.image.partition("mixed", 1).leader == -1
        assert mixed.partitions == 2

    with_store(new_store, test)


def test_topic_name_errors(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        await store.create_topic("a.b", [[0]], {})
        before = store.image
        await rejects(ErrorCode.TOPIC_ALREADY_EXISTS, store.create_topic("a.b", [[0]], {}))
        # '.' and '_' collide in Kafka's metric names
        await rejects(ErrorCode.INVALID_TOPIC_EXCEPTION, store.create_topic("a_b", [[0]], {}))
        await rejects(ErrorCode.INVALID_TOPIC_EXCEPTION, store.create_topic("bad name", [[0]], {}))
        await rejects(ErrorCode.INVALID_TOPIC_EXCEPTION, store.create_topic("", [[0]], {}))
        await rejects(ErrorCode.INVALID_PARTITIONS, store.create_topic("empty", [], {}))
        assert store.image.topics == before.topics and store.image.partitions == before.partitions

    with_store(new_store, test)


def test_delete_topic(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        first = await store.create_topic("t", [[0]] * 2, {"retention.ms": "10"})
        await store.create_topic("kept", [[0]], {})
        await store.delete_topic("t")
        assert store.topic("t") is None and list(store.topics()) == ["kept"]
        assert [key for key in store.image.partitions if key[0] == "t"] == []
        await store.delete_topic("t")  # already gone: nothing happens
        await store.delete_topic("never-was")
        # Recreated: a new id, no configs and fresh partition states.
        again = await store.create_topic("t", [[0]], {})
        assert again.topic_id != first.topic_id and dict(again.configs) == {}
        assert store.image.partition("t", 0).leader_epoch == 0
        assert store.image.partition("t", 1) is None

    with_store(new_store, test)


def test_create_partitions(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        created = await store.create_topic("t", [[0]] * 2, {"retention.ms": "10"})
        grown = await store.create_partitions("t", [[0]] * 3)
        assert (grown.partitions, grown.topic_id, dict(grown.configs)) == (
            5,
            created.topic_id,
            {"retention.ms": "10"},
        )
        assert store.topic("t") == grown
        assert all(store.image.partition("t", p) is not None for p in range(5))
        assert store.image.partition("t", 4).leader == 0
        await rejects(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, store.create_partitions("nope", [[0]]))

    with_store(new_store, test)


def test_topic_configs(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        await store.create_topic("t", [[0]], {"retention.ms": "10"})
        updated = await store.set_topic_configs(
            "t", {"cleanup.policy": "compact", "segment.ms": "5"}
        )
        assert dict(updated.configs) == {"cleanup.policy": "compact", "segment.ms": "5"}
        assert store.topic("t") == updated
        cleared = await store.set_topic_configs("t", {})
        assert dict(cleared.configs) == {} and dict(store.topic("t").configs) == {}
        await rejects(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, store.set_topic_configs("nope", {"a": "b"})
        )

    with_store(new_store, test)


def test_broker_configs(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        await store.set_broker_configs(None, {"log.retention.ms": "5000"})
        await store.set_broker_configs(0, {"log.cleaner.backoff.ms": "100"})
        await store.set_broker_configs(3, {"num.io.threads": "4"})
        assert store.broker_configs() == {"log.retention.ms": "5000"}
        assert store.node_configs(0) == {"log.cleaner.backoff.ms": "100"}
        assert store.node_configs(3) == {"num.io.threads": "4"}
        await store.set_broker_configs(3, {})
        await store.set_broker_configs(None, {})
        assert store.node_configs(3) == {} and store.broker_configs() == {}
        assert store.node_configs(0) == {"log.cleaner.backoff.ms": "100"}

    with_store(new_store, test)


def test_alter_partition_is_compare_and_set(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        await store.create_topic("t", [[0]] * 2, {})
        read = store.image.partition("t", 1)
        moved = PartitionState(
            read.replicas, 0, read.leader_epoch + 1, read.isr, read.partition_epoch
        )
        stored = await store.alter_partition("t", 1, moved)
        assert stored is not None and stored.partition_epoch > read.partition_epoch
        assert stored.leader_epoch == 1 and store.image.partition("t", 1) == stored
        assert store.image.partition("t", 0).partition_epoch == read.partition_epoch  # untouched
        # The same write again is stale: its epoch is the one just replaced.
        assert await store.alter_partition("t", 1, moved) is None
        assert store.image.partition("t", 1) == stored
        # The controller guard: only the current controller epoch passes.
        epoch = store.image.controller_epoch
        assert await store.alter_partition("t", 1, stored, controller_epoch=epoch + 1) is None
        guarded = await store.alter_partition("t", 1, stored, controller_epoch=epoch)
        assert guarded is not None and guarded.partition_epoch > stored.partition_epoch
        # Unknown topics and partitions never match.
        assert await store.alter_partition("nope", 0, stored) is None
        assert await store.alter_partition("t", 2, stored) is None

    with_store(new_store, test)


def test_concurrent_alter_partition_has_one_winner(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        await store.create_topic("t", [[0]], {})
        read = store.image.partition("t", 0)
        attempts = [
            PartitionState(read.replicas, 0, read.leader_epoch + n, read.isr, read.partition_epoch)
            for n in range(1, 6)
        ]
        results = await asyncio.gather(*(store.alter_partition("t", 0, s) for s in attempts))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and store.image.partition("t", 0) == winners[0]

    with_store(new_store, test)


def test_producer_id_blocks_never_overlap(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        sizes = [1000, 1, 50, 1000, 7]
        firsts = [await store.allocate_producer_ids(n) for n in sizes[:2]]
        firsts += await asyncio.gather(*(store.allocate_producer_ids(n) for n in sizes[2:]))
        blocks = sorted(zip(firsts, sizes, strict=True))
        for (first, size), (next_first, _) in zip(blocks, blocks[1:], strict=False):
            assert first + size <= next_first
        assert blocks[0][0] >= 0

    with_store(new_store, test)


def test_listeners_get_old_and_new_images(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        seen: list[tuple[ClusterImage, ClusterImage]] = []
        store.add_listener(lambda old, new: seen.append((old, new)))
        before = store.image
        await store.create_topic("t", [[0]], {})
        assert seen and seen[0][0] is before
        assert "t" not in seen[0][0].topics and seen[-1][1] is store.image
        for (_, new), (old, _) in zip(seen, seen[1:], strict=False):
            assert new is old  # a chain: every change announced once
        count = len(seen)
        await store.set_topic_configs("t", {"retention.ms": "1"})
        assert len(seen) > count and dict(seen[-1][1].topics["t"].configs) == {"retention.ms": "1"}
        assert dict(seen[-1][0].topics["t"].configs) == {}

    with_store(new_store, test)


def test_a_reopened_store_sees_everything(new_store: Factory) -> None:
    async def main() -> None:
        store = new_store()
        await store.start(REGISTRATION)
        orders = await store.create_topic("orders", [[0]] * 3, {"retention.ms": "1000"})
        await store.create_partitions("orders", [[0]])
        await store.set_topic_configs("orders", {"cleanup.policy": "compact"})
        await store.create_topic("gone", [[0]], {})
        await store.delete_topic("gone")
        await store.set_broker_configs(None, {"log.retention.ms": "5000"})
        await store.set_broker_configs(0, {"log.cleaner.backoff.ms": "100"})
        read = store.image.partition("orders", 2)
        altered = await store.alter_partition(
            "orders", 2, PartitionState((0,), 0, 4, (0,), read.partition_epoch)
        )
        first = await store.allocate_producer_ids(100)
        cluster_id = store.cluster_id
        await store.close()

        again = new_store()
        await again.start(REGISTRATION)
        try:
            assert again.cluster_id == cluster_id
            assert list(again.topics()) == ["orders"]
            reopened = again.topic("orders")
            assert (reopened.topic_id, reopened.partitions) == (orders.topic_id, 4)
            assert dict(reopened.configs) == {"cleanup.policy": "compact"}
            assert again.image.partition("orders", 2) == altered
            assert again.broker_configs() == {"log.retention.ms": "5000"}
            assert again.node_configs(0) == {"log.cleaner.backoff.ms": "100"}
            assert await again.allocate_producer_ids(10) >= first + 100
        finally:
            await again.close()

    run_async(main)


def test_many_partitions(new_store: Factory) -> None:
    async def test(store: MetadataStore) -> None:
        # More partitions than etcd allows operations in one transaction (128).
        topic = await store.create_topic("wide", [[0]] * 300, {})
        assert topic.partitions == 300 and store.topic("wide") == topic
        assert sum(1 for key in store.image.partitions if key[0] == "wide") == 300
        grown = await store.create_partitions("wide", [[0]] * 150)
        assert grown.partitions == 450 and store.image.partition("wide", 449) is not None
        await store.delete_topic("wide")
        assert store.image.partitions == {}

    with_store(new_store, test)


def test_scram_credentials(new_store: Factory) -> None:
    """Set, replace and delete per (user, mechanism); a reopened store still has them."""
    sha256 = ScramCredential("SCRAM-SHA-256", b"salt", b"stored", b"server", 4096)
    sha512 = ScramCredential("SCRAM-SHA-512", b"salt2", b"stored2", b"server2", 8192)
    odd = "CN=a/b,O=x"  # a user name with a slash and a comma (a certificate-style name)

    async def main() -> None:
        store = new_store()
        await store.start(REGISTRATION)
        await store.alter_scram_credentials([("alice", sha256), ("alice", sha512), (odd, sha256)], [])
        assert store.image.scram_credential("alice", "SCRAM-SHA-512") == sha512
        assert store.image.scram_credential(odd, "SCRAM-SHA-256") == sha256
        replaced = ScramCredential("SCRAM-SHA-256", b"new", b"k1", b"k2", 4096)
        await store.alter_scram_credentials([("alice", replaced)], [("alice", "SCRAM-SHA-512"), (odd, "SCRAM-SHA-256")])
        assert dict(store.image.scram) == {"alice": {"SCRAM-SHA-256": replaced}}
        await store.close()
        again = new_store()
        await again.start(REGISTRATION)
        try:
            assert dict(again.image.scram) == {"alice": {"SCRAM-SHA-256": replaced}}
        finally:
            await again.close()

    run_async(main)


def test_registration_keeps_every_listener(new_store: Factory) -> None:
    endpoints = (("PLAINTEXT", "127.0.0.1", 9092), ("SASL_SSL", "broker.example", 9093))
    registration = BrokerRegistration(0, "127.0.0.1", 9092, endpoints=endpoints)

    async def main() -> None:
        store = new_store()
        await store.start(registration)
        try:
            registered = store.image.brokers[0]
            assert registered.endpoints == endpoints
            assert registered.endpoint("SASL_SSL") == ("broker.example", 9093)
            assert registered.endpoint("OTHER") == ("127.0.0.1", 9092)
        finally:
            await store.close()

    run_async(main)


def test_acls(new_store: Factory) -> None:
    from strom.security.acl import AclBinding, Operation, PatternType, Permission, ResourceType

    read = AclBinding(ResourceType.TOPIC, "orders", PatternType.LITERAL, "User:alice", "*", Operation.READ, Permission.ALLOW)
    deny = AclBinding(ResourceType.GROUP, "g", PatternType.PREFIXED, "User:*", "10.0.0.1", Operation.ALL, Permission.DENY)

    async def main() -> None:
        store = new_store()
        await store.start(REGISTRATION)
        await store.alter_acls([read, deny], [])
        await store.alter_acls([read], [])  # present already: no change
        assert store.image.acls == {read, deny}
        await store.alter_acls([], [deny])
        assert store.image.acls == {read}
        await store.close()
        again = new_store()
        await again.start(REGISTRATION)
        try:
            assert again.image.acls == {read}
        finally:
            await again.close()

    run_async(main)


def test_group_configs(new_store: Factory) -> None:
    """Set, replace and delete per group (no group needs to exist); any string is a group id;
    a reopened store still has them."""
    odd = "team/a b%c"

    async def main() -> None:
        store = new_store()
        await store.start(REGISTRATION)
        await store.set_group_configs("g1", {"share.auto.offset.reset": "earliest"})
        await store.set_group_configs(odd, {"share.isolation.level": "read_committed"})
        await store.set_group_configs("g2", {"consumer.session.timeout.ms": "50000"})
        assert store.group_configs("g1") == {"share.auto.offset.reset": "earliest"}
        assert store.group_configs(odd) == {"share.isolation.level": "read_committed"}
        await store.set_group_configs("g1", {"share.record.lock.duration.ms": "20000"})
        await store.set_group_configs("g2", {})
        await store.set_group_configs("never-set", {})  # removing nothing is fine
        expected = {"g1": {"share.record.lock.duration.ms": "20000"}, odd: {"share.isolation.level": "read_committed"}}
        assert dict(store.image.group_configs) == expected
        assert store.group_configs("g2") == {} and store.group_configs("unknown") == {}
        await store.close()
        again = new_store()
        await again.start(REGISTRATION)
        try:
            assert dict(again.image.group_configs) == expected
            assert again.group_configs(odd) == {"share.isolation.level": "read_committed"}
        finally:
            await again.close()

    run_async(main)
