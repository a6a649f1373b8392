"""The share-state persister on a real 3-broker cluster: etcd and three strom brokers in this
process (strom.server.broker.Broker, each with its own data directory, listener, replica
fetchers and controller candidacy), talking to each other over TCP as separate processes do.

Every broker's RuntimePersister writes and reads the same share partitions whichever broker
leads their ``__share_group_state`` partition: locally through its share coordinator, or with
Read/Write/DeleteShareGroupState to the leader. Over the wire, only the leader answers those
RPCs (the others say NOT_COORDINATOR). When a leader stops, the state is read back from the new
leader, which loaded it from its replica of the partition."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from strom.client.connection import BrokerConnection
from strom.cluster.etcd_server import EtcdNotFound, EtcdServer
from strom.metadata.broker_config import BrokerConfig
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.server.broker import Broker
from strom.share.persister import SharePersister
from strom.share.records import SHARE_STATE_TOPIC, PersistedBatch, ShareSnapshotValue, partition_for

pytestmark = pytest.mark.timeout(180)

BROKERS = 3
PARTITIONS = 6  # of __share_group_state
TOPIC_ID = uuid.UUID("5f1e2d3c-4b5a-4697-8877-665544332211")
B = PersistedBatch


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    try:
        server = EtcdServer().start()
    except EtcdNotFound as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{exc} (CI is set: etcd tests must run)")
        pytest.skip(str(exc))
    yield server
    server.stop()


@asynccontextmanager
async def cluster(etcd: EtcdServer, data_dir: Path) -> AsyncIterator[list[Broker]]:
    name = f"share-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        brokers = []
        for node_id in range(BROKERS):
            config = BrokerConfig(
                node_id=node_id, data_dir=data_dir / str(node_id), listen_port=0, etcd_endpoints=etcd.endpoint,
                cluster_id=name, broker_session_timeout_ms=3000, share_coordinator_state_topic_num_partitions=PARTITIONS,
                replica_fetch_wait_max_ms=50, replica_fetch_backoff_ms=50,
            )
            broker = Broker(config, http_required=False)
            await broker.start()
            stack.push_async_callback(broker.stop)  # stopping twice is harmless
            brokers.append(broker)
        await eventually(lambda: all(len(b.ctx.image.brokers) == BROKERS for b in brokers if b.ctx is not None))
        yield brokers


async def eventually(probe: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not probe():
            await asyncio.sleep(0.02)


def persister(broker: Broker) -> SharePersister:
    assert broker.ctx is not None and broker.ctx.share_persister is not None
    return broker.ctx.share_persister


def leader_of(broker: Broker, group: str, partition: int) -> int:
    assert broker.ctx is not None
    state = broker.ctx.partition_state(SHARE_STATE_TOPIC, partition_for(group, TOPIC_ID, partition, PARTITIONS))
    return -1 if state is None else state.leader


def keys_on_every_partition() -> list[str]:
    """A group per __share_group_state partition (share partition 0 of each)."""
    found: dict[int, str] = {}
    for i in itertools.count():
        found.setdefault(partition_for(f"group-{i}", TOPIC_ID, 0, PARTITIONS), f"group-{i}")
        if len(found) == PARTITIONS:
            return [found[p] for p in range(PARTITIONS)]
    raise AssertionError("unreachable")


def written(group: str, epoch: int = 0) -> ShareSnapshotValue:
    first = 10 * len(group) + epoch
    return ShareSnapshotValue(-1, 1, epoch, first, -1, -1, (B(first, first + 4, 2, 1), B(first + 5, first + 9, 0, 2)))


def read_back(value: ShareSnapshotValue) -> ShareSnapshotValue:
    return ShareSnapshotValue(-1, value.state_epoch, -1, value.start_offset, -1, -1, value.state_batches)


async def rpc_read(broker: Broker, group: str) -> Any:
    assert broker.ctx is not None
    conn = await BrokerConnection.open("127.0.0.1", broker.port, client_id="test")
    try:
        body = {"group_id": group, "topics": [{"topic_id": TOPIC_ID, "partitions": [{"partition": 0, "leader_epoch": -1}]}]}
        response = await conn.request(ApiKey.READ_SHARE_GROUP_STATE, 0, body)
    finally:
        conn.close()
    (result,) = response.results
    (partition,) = result.partitions
    return partition


def test_every_brokers_persister_reads_and_writes_every_share_partition(etcd: EtcdServer, tmp_path: Path) -> None:
    groups = keys_on_every_partition()

    async def main() -> None:
        async with cluster(etcd, tmp_path) as brokers:
            # Each share partition written through a different broker: the first write creates
            # __share_group_state (replication factor 3, min ISR 2).
            for i, group in enumerate(groups):
                assert await persister(brokers[i % BROKERS]).write(group, TOPIC_ID, 0, written(group)) == ErrorCode.NONE
            ctx = brokers[0].ctx
            assert ctx is not None
            topic = ctx.metadata.topic(SHARE_STATE_TOPIC)
            assert topic is not None and topic.partitions == PARTITIONS
            assert topic.configs["min.insync.replicas"] == "2" and topic.configs["cleanup.policy"] == "compact"
            assert all(len(ctx.image.partition(SHARE_STATE_TOPIC, p).replicas) == BROKERS for p in range(PARTITIONS))  # type: ignore[union-attr]
            leaders = {leader_of(brokers[0], g, 0) for g in groups}
            assert leaders == set(range(BROKERS))  # every broker leads some: local and remote paths both run

            # Every broker reads every share partition, wherever its state lives.
            for broker in brokers:
                for group in groups:
                    assert await persister(broker).read(group, TOPIC_ID, 0) == read_back(written(group)), (broker.config.node_id, group)
                assert await persister(broker).read("never-written", TOPIC_ID, 0) is None

            # Over the wire, only the leader of the key's partition answers.
            for group in groups:
                for broker in brokers:
                    result = await rpc_read(broker, group)
                    if broker.config.node_id == leader_of(broker, group, 0):
                        assert (result.error_code, result.start_offset) == (ErrorCode.NONE, written(group).start_offset)
                    else:
                        assert result.error_code == ErrorCode.NOT_COORDINATOR

            # Fencing reaches a writer wherever it is; a newer leader epoch passes.
            for i, group in enumerate(groups):
                writer = persister(brokers[(i + 1) % BROKERS])
                stale = ShareSnapshotValue(-1, 1, -5, 0, -1, -1, ())
                assert await writer.write(group, TOPIC_ID, 0, stale) == ErrorCode.FENCED_LEADER_EPOCH
                assert await writer.write(group, TOPIC_ID, 0, written(group, 1)) == ErrorCode.NONE
            for broker in brokers:
                for group in groups:
                    assert await persister(broker).read(group, TOPIC_ID, 0) == read_back(written(group, 1))

            # Deletes, through brokers that do not lead.
            doomed = groups[:2]
            for group in doomed:
                deleter = next(b for b in brokers if b.config.node_id != leader_of(b, group, 0))
                assert await persister(deleter).delete(group, TOPIC_ID, 0) == ErrorCode.NONE
            for broker in brokers:
                for group in groups:
                    expected = None if group in doomed else read_back(written(group, 1))
                    assert await persister(broker).read(group, TOPIC_ID, 0) == expected

            # A leader stops: the state is read back from the new leader's replica.
            kept = [g for g in groups if g not in doomed]
            victim_id = leader_of(brokers[0], kept[0], 0)
            victim = brokers[victim_id]
            moved = [g for g in kept if leader_of(victim, g, 0) == victim_id]
            await victim.stop()
            survivors = [b for b in brokers if b is not victim]
            await eventually(lambda: all(leader_of(b, g, 0) not in (-1, victim_id) for b in survivors for g in moved))
            for broker in survivors:
                for group in kept:
                    assert await persister(broker).read(group, TOPIC_ID, 0) == read_back(written(group, 1))
                for group in doomed:
                    assert await persister(broker).read(group, TOPIC_ID, 0) is None
            # ... and written there (two in-sync replicas left: min.insync.replicas is met).
            for i, group in enumerate(moved):
                assert await persister(survivors[i % 2]).write(group, TOPIC_ID, 0, written(group, 2)) == ErrorCode.NONE
                assert await persister(survivors[(i + 1) % 2]).read(group, TOPIC_ID, 0) == read_back(written(group, 2))

    asyncio.run(asyncio.wait_for(main(), 150))
