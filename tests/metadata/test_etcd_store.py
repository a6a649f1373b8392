"""EtcdMetadataStore beyond the shared contract: several brokers on one etcd, leases and broker
epochs, controller election, the key layout, and surviving etcd restarts, pauses and
compactions. Sessions are 1 s here (etcd's minimum lease TTL) to keep expiry tests short."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aetcd
import pytest

from strom.cluster import etcd_server
from strom.cluster.etcd_server import EtcdNotFound, EtcdServer
from strom.metadata.configs import ConfigError
from strom.metadata.etcd_store import DuplicateBrokerId, EtcdMetadataStore
from strom.metadata.image import BrokerRegistration
from strom.protocol.errors import ErrorCode

from .conftest import run_async


def registration(node_id: int, rack: str | None = None) -> BrokerRegistration:
    return BrokerRegistration(node_id, "127.0.0.1", 9092 + node_id, rack)


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> float:
    """Seconds until ``predicate()`` holds; fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def started(
    etcd: EtcdServer, name: str, node_id: int, **options: int
) -> AsyncIterator[EtcdMetadataStore]:
    store = EtcdMetadataStore([etcd.endpoint], name, node_id, **options)
    await store.start(registration(node_id, rack=f"rack-{node_id}"))
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def raw_client(etcd: EtcdServer) -> AsyncIterator[aetcd.Client]:
    async with aetcd.Client("127.0.0.1", etcd.client_port, timeout=5) as client:
        yield client


def test_brokers_see_each_other(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(etcd, cluster_name, 1) as a, started(etcd, cluster_name, 2) as b:
            await eventually(lambda: set(a.image.brokers) == {1, 2})
            assert a.registration is not None and b.registration is not None
            assert b.registration.epoch > a.registration.epoch > 0
            for store in (a, b):
                assert store.image.brokers[1] == a.registration
                assert store.image.brokers[2] == BrokerRegistration(
                    2, "127.0.0.1", 9094, "rack-2", b.registration.epoch
                )
            assert a.cluster_id == b.cluster_id
        async with started(etcd, f"{cluster_name}-other", 1) as other:
            assert set(other.image.brokers) == {1} and other.cluster_id != a.cluster_id

    run_async(main)


def test_clean_close_leaves_at_once_and_hands_over_control(
    etcd: EtcdServer, cluster_name: str
) -> None:
    async def main() -> None:
        async with started(etcd, cluster_name, 1) as a, started(etcd, cluster_name, 2) as b:
            assert a.image.controller_id == b.image.controller_id == 1
            first_epoch = b.image.controller_epoch
            await a.close()  # revokes the lease: the broker and controller keys go with it
            elapsed = await eventually(lambda: b.image.controller_id == 2, timeout=1.0)
            assert 1 not in b.image.brokers and elapsed < 1.0
            assert b.image.controller_epoch > first_epoch

    run_async(main)


def test_an_expired_lease_removes_the_broker(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with (
            started(etcd, cluster_name, 1, session_timeout_ms=1000) as a,
            started(etcd, cluster_name, 2) as b,
        ):
            await a.close(revoke=False)  # as if killed: the lease runs out
            elapsed = await eventually(lambda: 1 not in b.image.brokers, timeout=3.0)
            assert elapsed < 2.5
            await eventually(lambda: b.image.controller_id == 2, timeout=1.0)

    run_async(main)


def test_a_live_duplicate_node_id_is_refused(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(etcd, cluster_name, 2, session_timeout_ms=1000) as live:
            duplicate = EtcdMetadataStore([etcd.endpoint], cluster_name, 2, session_timeout_ms=1000)
            with pytest.raises(DuplicateBrokerId) as info:
                await duplicate.start(registration(2))
            assert str(info.value) == (
                f"node id 2 is already registered by a live broker at 127.0.0.1:9094 "
                f"in cluster '{cluster_name}'"
            )
            await duplicate.close()
            assert live.image.brokers[2] == live.registration  # untouched

    run_async(main)


def test_a_restarted_node_waits_out_its_old_lease(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        crashed = EtcdMetadataStore([etcd.endpoint], cluster_name, 3, session_timeout_ms=1000)
        await crashed.start(registration(3))
        old_epoch = crashed.registration.epoch
        await crashed.close(revoke=False)
        start = time.monotonic()
        async with started(etcd, cluster_name, 3, session_timeout_ms=1000) as restarted:
            assert time.monotonic() - start < 3.0
            assert restarted.registration.epoch > old_epoch
            assert restarted.image.brokers[3].epoch == restarted.registration.epoch

    run_async(main)


def test_a_lost_lease_registers_again_with_a_new_epoch(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(etcd, cluster_name, 1) as a, started(etcd, cluster_name, 2) as b:
            old = a.registration
            assert a.image.controller_id == 1
            async with raw_client(etcd) as client:
                await client.revoke_lease(a.lease_id)  # as if it expired during a long pause
            await eventually(
                lambda: a.registration is not None and a.registration.epoch > old.epoch
            )
            await eventually(lambda: b.image.brokers.get(1) == a.registration)
            # Its controllership went with the lease; someone (maybe it again) took over.
            await eventually(
                lambda: b.image.controller_id in (1, 2) and b.image.controller_epoch > old.epoch
            )

    run_async(main)


def test_one_controller_at_a_time(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        stores = [EtcdMetadataStore([etcd.endpoint], cluster_name, n) for n in range(4)]
        await asyncio.gather(*(s.start(registration(n)) for n, s in enumerate(stores)))
        try:
            for store in stores:
                await eventually(lambda s=store: s.image.controller_id != -1)
            controllers = {s.image.controller_id for s in stores}
            assert len(controllers) == 1
            (winner,) = controllers
            await stores[winner].close()
            rest = [s for n, s in enumerate(stores) if n != winner]
            await eventually(lambda: all(s.image.controller_id not in (-1, winner) for s in rest))
            assert len({(s.image.controller_id, s.image.controller_epoch) for s in rest}) == 1
        finally:
            for store in stores:
                await store.close()

    run_async(main)


def test_keys_and_values(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(etcd, cluster_name, 1) as store, raw_client(etcd) as client:
            topic = await store.create_topic("t", [[1]] * 2, {"retention.ms": "5"})
            await store.set_broker_configs(None, {"a": "1"})
            prefix = f"/strom/{cluster_name}/".encode()
            kvs = {kv.key[len(prefix) :].decode(): kv for kv in await client.get_prefix(prefix)}
            docs = {key: json.loads(kv.value) for key, kv in kvs.items()}
            assert docs["cluster"] == {"cluster_id": store.cluster_id, "version": 1}
            assert docs["brokers/1"] == {
                "host": "127.0.0.1",
                "port": 9093,
                "rack": "rack-1",
                "incarnation": docs["brokers/1"]["incarnation"],
                "endpoints": [],
            }
            assert kvs["brokers/1"].create_revision == store.registration.epoch
            assert kvs["brokers/1"].lease == store.lease_id == kvs["controller"].lease
            assert docs["controller"] == {"broker_id": 1}
            assert kvs["controller"].create_revision == store.image.controller_epoch
            assert docs["topics/t"] == {"topic_id": str(topic.topic_id), "partitions": 2}
            assert docs["configs/topic/t"] == {"retention.ms": "5"}
            assert docs["configs/broker/default"] == {"a": "1"}
            for p in range(2):
                key = f"partitions/{topic.topic_id}/{p}"
                assert docs[key] == store.image.partition("t", p).to_json()
                assert kvs[key].mod_revision == store.image.partition("t", p).partition_epoch

    run_async(main)


def test_a_topic_shows_only_once_complete(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(etcd, cluster_name, 1) as store, raw_client(etcd) as client:
            prefix = f"/strom/{cluster_name}/"
            topic_id = uuid.uuid4()
            state = json.dumps(
                {"replicas": [1], "leader": 1, "leader_epoch": 0, "isr": [1]}
            ).encode()
            await client.put(f"{prefix}partitions/{topic_id}/0".encode(), state)
            await client.put(
                f"{prefix}topics/half".encode(),
                json.dumps({"topic_id": str(topic_id), "partitions": 2}).encode(),
            )
            await client.put(f"{prefix}partitions/{uuid.uuid4()}/0".encode(), state)  # an orphan
            await store.set_broker_configs(
                None, {"sync": "1"}
            )  # a write of ours: the image is current
            assert "half" not in store.image.topics and store.image.partitions == {}
            await client.put(f"{prefix}partitions/{topic_id}/1".encode(), state)
            await eventually(lambda: "half" in store.image.topics)
            assert store.topic("half").partitions == 2 and len(store.image.partitions) == 2

    run_async(main)


def test_concurrent_creates_of_one_name_have_one_winner(
    etcd: EtcdServer, cluster_name: str
) -> None:
    async def main() -> None:
        async with (
            started(etcd, cluster_name, 1) as a,
            started(etcd, cluster_name, 2) as b,
            raw_client(etcd) as client,
        ):
            results = await asyncio.gather(
                a.create_topic("race", [[1]] * 150, {}),
                b.create_topic("race", [[2]] * 150, {}),
                return_exceptions=True,
            )
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1 and len(lost) == 1
            assert (
                isinstance(lost[0], ConfigError)
                and lost[0].error_code == ErrorCode.TOPIC_ALREADY_EXISTS
            )
            await eventually(lambda: a.topic("race") == b.topic("race") == won[0])
            # The loser removed its partition keys.
            keys = await client.get_prefix(
                f"/strom/{cluster_name}/partitions/".encode(), keys_only=True
            )
            assert len(keys) == 150

    run_async(main)


def test_resync_after_an_etcd_restart(private_etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with (
            started(private_etcd, cluster_name, 1) as a,
            started(private_etcd, cluster_name, 2) as b,
        ):
            await a.create_topic("before", [[1]], {})
            images: list[int] = []
            a.add_listener(lambda old, new: images.append(new.revision))
            private_etcd.kill()  # a crash: the data stays
            private_etcd.start()
            await b.create_topic("after", [[2]], {})  # b's writes retry until etcd is back
            await eventually(lambda: "after" in a.image.topics, timeout=5.0)
            assert set(a.image.topics) == {"before", "after"} and set(a.image.brokers) == {1, 2}
            assert images  # the watch came back (by a fresh list, or by resuming)
            private_etcd.restart()  # and a clean restart
            await a.create_topic("later", [[1]], {})
            await eventually(lambda: "later" in b.image.topics, timeout=5.0)

    run_async(main)


def test_resync_after_a_compaction(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with (
            started(etcd, cluster_name, 1) as store,
            started(etcd, cluster_name, 2) as writer,
        ):
            # Hold this store's watch back: stop it, let history move on and compact it away,
            # then resume watching from where it stopped.
            follow = store._tasks[0]
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            behind = store.image.revision
            await writer.create_topic("meanwhile", [[2]], {})
            await writer.set_broker_configs(None, {"x": "1"})
            async with raw_client(etcd) as client:
                current = (
                    await client.get(f"/strom/{cluster_name}/cluster".encode())
                ).header.revision
                await client.compact(current)
            store._tasks[0] = asyncio.get_running_loop().create_task(store._follow(behind))
            await eventually(lambda: "meanwhile" in store.image.topics, timeout=5.0)
            assert store.broker_configs() == {"x": "1"}
            await store.create_topic("after", [[1]], {})  # and the watch follows again
            assert "after" in store.image.topics

    run_async(main)


def test_writes_time_out_while_etcd_is_paused(private_etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(private_etcd, cluster_name, 1, request_timeout_ms=500) as store:
            private_etcd.pause()
            try:
                start = time.monotonic()
                with pytest.raises(ConfigError) as info:
                    await store.create_topic("t", [[1]], {})
                assert info.value.error_code == ErrorCode.REQUEST_TIMED_OUT
                assert time.monotonic() - start < 1.5
                with pytest.raises(ConfigError) as info:
                    await store.allocate_producer_ids(1)
                assert info.value.error_code == ErrorCode.REQUEST_TIMED_OUT
            finally:
                private_etcd.resume()
            # A timed-out write may still happen (it may have reached etcd before the pause),
            # as with Kafka's REQUEST_TIMED_OUT; either way the store goes on.
            await store.create_topic("t2", [[1]], {})
            assert "t2" in store.image.topics
            assert store.image.partition("t", 0) is not None or "t" not in store.image.topics

    run_async(main)


def test_writes_time_out_while_etcd_is_down(private_etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        async with started(private_etcd, cluster_name, 1, request_timeout_ms=500) as store:
            private_etcd.kill()
            start = time.monotonic()
            with pytest.raises(ConfigError) as info:
                await store.set_broker_configs(None, {"a": "b"})
            assert info.value.error_code == ErrorCode.REQUEST_TIMED_OUT
            assert time.monotonic() - start < 1.5
            private_etcd.start()

    run_async(main)


def test_start_fails_clearly_without_etcd(cluster_name: str) -> None:
    async def main() -> None:
        store = EtcdMetadataStore(["http://127.0.0.1:9"], cluster_name, 1, request_timeout_ms=300)
        with pytest.raises(RuntimeError, match="cannot reach etcd at 127.0.0.1:9"):
            await store.start(registration(1))
        await store.close()

    run_async(main)


def test_a_dead_endpoint_is_skipped(etcd: EtcdServer, cluster_name: str) -> None:
    async def main() -> None:
        endpoints = ["http://127.0.0.1:9", etcd.endpoint]  # nothing listens on port 9
        store = EtcdMetadataStore(endpoints, cluster_name, 1, request_timeout_ms=2000)
        await store.start(registration(1))
        try:
            await store.create_topic("t", [[1]], {})
            assert "t" in store.image.topics and store.image.controller_id == 1
        finally:
            await store.close()

    run_async(main)


def test_a_missing_etcd_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(etcd_server, "_DEBIAN_ETCD", str(tmp_path / "etcd"))
    with pytest.raises(EtcdNotFound, match="apt-get install etcd-server"):
        EtcdServer().start()
    with pytest.raises(ValueError, match="loopback"):
        EtcdServer(host="0.0.0.0")
