"""KIP-932 share groups with a real client: confluent-kafka's ShareConsumer (librdkafka 2.16)
against a real broker process. Three consumers share the work of one partition; implicit and
explicit acknowledgement; a released record comes back, a rejected one never does; a consumer
killed mid-batch (kill -9) has its records redelivered once their locks expire; the delivery
count limit stops a poison record; after a broker restart no accepted record is delivered
again and no unacknowledged one is lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests.conftest import Broker

LOCK_MS = 5_000  # long enough that a kill -9 shows up well before it on a busy machine
LIMIT = 3  # group.share.delivery.count.limit


def share_broker(data_dir: Any) -> Broker:
    return Broker(data_dir, extra_args=[
        "-o", "group.share.min.session.timeout.ms=1000", "-o", "group.share.session.timeout.ms=6000",
        "-o", "group.share.min.heartbeat.interval.ms=100", "-o", "group.share.heartbeat.interval.ms=300",
        "-o", "group.share.min.record.lock.duration.ms=1000", "-o", f"group.share.record.lock.duration.ms={LOCK_MS}",
        "-o", f"group.share.delivery.count.limit={LIMIT}"])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = share_broker(tmp_path_factory.mktemp("kip932") / "data")
    broker.start()
    yield broker
    broker.stop()


def make_topic(broker: Broker, records: int, partitions: int = 1) -> str:
    name = f"queue-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(records):
        producer.produce(name, value=f"job-{i}", partition=i % partitions)
        producer.flush(10)  # one record a batch: a fetch takes whole batches
    return name


def new_group(broker: Broker) -> str:
    """A share group reading from the start (Kafka's default share.auto.offset.reset is latest)."""
    group = f"workers-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(10)
    return group


def share_consumer(broker: Broker, group: str, **conf: Any) -> ShareConsumer:
    return ShareConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "max.poll.records": 5, **conf})


def drain(consumers: list[ShareConsumer], done: Callable[[], bool], timeout: float = 30.0,
          on_message: Callable[[ShareConsumer, Any], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for c in consumers:
            for message in c.poll(0.2):
                if message.error() is None and on_message is not None:
                    on_message(c, message)


def test_three_consumers_share_one_partition(broker: Broker) -> None:
    topic, group = make_topic(broker, 60), None
    group = new_group(broker)
    consumers = [share_consumer(broker, group) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    got: dict[int, list[str]] = {i: [] for i in range(3)}

    def take(c: ShareConsumer, message: Any) -> None:
        got[consumers.index(c)].append(message.value().decode())
        time.sleep(0.01)  # some work: the others get their turn

    drain(consumers, lambda: sum(map(len, got.values())) >= 60, on_message=take)
    values = [v for vs in got.values() for v in vs]
    assert sorted(values) == sorted(f"job-{i}" for i in range(60))  # each exactly once (implicit: accepted)
    assert sum(1 for vs in got.values() if vs) >= 2, {i: len(v) for i, v in got.items()}
    for c in consumers:
        c.close()


def test_explicit_release_redelivers_and_reject_archives(broker: Broker) -> None:
    topic, group = make_topic(broker, 10), new_group(broker)
    c = share_consumer(broker, group, **{"share.acknowledgement.mode": "explicit"})
    c.subscribe([topic])
    deliveries: dict[str, list[int]] = {}

    def act(consumer: ShareConsumer, message: Any) -> None:
        value = message.value().decode()
        deliveries.setdefault(value, []).append(message.delivery_count())
        if value == "job-3" and len(deliveries[value]) == 1:
            consumer.acknowledge(message, AcknowledgeType.RELEASE)
        elif value == "job-5":
            consumer.acknowledge(message, AcknowledgeType.REJECT)
        else:
            consumer.acknowledge(message, AcknowledgeType.ACCEPT)

    drain([c], lambda: len(deliveries) == 10 and len(deliveries["job-3"]) == 2, on_message=act)
    c.commit_sync()
    assert deliveries["job-3"] == [1, 2]  # released, then delivered again
    time.sleep(LOCK_MS / 1000 + 0.5)
    assert all(m.error() is not None for m in c.poll(1.0))  # nothing more: job-5 was archived
    assert deliveries["job-5"] == [1]
    c.close()


def _victim(broker: Broker, group: str, topic: str, tmp_path: Any) -> subprocess.Popen[str]:
    """A share consumer in its own process that takes records and never acknowledges them."""
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from confluent_kafka import ShareConsumer
        c = ShareConsumer({{"bootstrap.servers": "{broker.bootstrap}", "group.id": "{group}",
                            "share.acknowledgement.mode": "explicit"}})
        c.subscribe(["{topic}"])
        while True:
            got = [m for m in c.poll(0.5) if m.error() is None]
            if got:
                print(len(got), flush=True)
                time.sleep(600)
    """))
    victim = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    assert int(victim.stdout.readline()) == 5  # it holds all five
    return victim


def _redelivered(broker: Broker, group: str, topic: str) -> tuple[dict[str, int], float]:
    started = time.monotonic()
    survivor = share_consumer(broker, group)
    survivor.subscribe([topic])
    counts: dict[str, int] = {}
    drain([survivor], lambda: len(counts) == 5,
          on_message=lambda _c, m: counts.setdefault(m.value().decode(), m.delivery_count()))
    survivor.close()
    return counts, time.monotonic() - started


def test_a_hung_consumers_records_come_back_when_their_locks_expire(broker: Broker, tmp_path: Any) -> None:
    topic, group = make_topic(broker, 5), new_group(broker)
    victim = _victim(broker, group, topic, tmp_path)
    try:
        victim.send_signal(signal.SIGSTOP)  # hung mid-batch: its connection stays open
        counts, waited = _redelivered(broker, group, topic)
        assert set(counts.values()) == {2}  # the second delivery of each
        assert waited >= LOCK_MS / 1000 * 0.8  # not before the acquisition locks ran out
    finally:
        victim.kill()
        victim.wait(10)


def test_a_killed_consumers_records_come_back_at_once(broker: Broker, tmp_path: Any) -> None:
    topic, group = make_topic(broker, 5), new_group(broker)
    victim = _victim(broker, group, topic, tmp_path)
    victim.kill()  # kill -9: its connection closes, which ends its share session (as in Kafka)
    victim.wait(10)
    counts, waited = _redelivered(broker, group, topic)
    assert set(counts.values()) == {2}
    assert waited < LOCK_MS / 1000


def test_the_delivery_count_limit_archives_a_poison_record(broker: Broker) -> None:
    topic, group = make_topic(broker, 1), new_group(broker)
    c = share_consumer(broker, group, **{"share.acknowledgement.mode": "explicit"})
    c.subscribe([topic])
    counts: list[int] = []

    def release(consumer: ShareConsumer, message: Any) -> None:
        counts.append(message.delivery_count())
        consumer.acknowledge(message, AcknowledgeType.RELEASE)

    drain([c], lambda: len(counts) >= LIMIT, on_message=release)
    c.commit_sync()
    time.sleep(0.5)
    drain([c], lambda: True)
    for _ in range(5):
        assert all(m.error() is not None for m in c.poll(0.3))
    assert counts == list(range(1, LIMIT + 1))
    c.close()


def test_a_broker_restart_loses_nothing_and_redelivers_no_accepted_record(tmp_path: Any) -> None:
    broker = share_broker(tmp_path / "data")
    broker.start()
    try:
        topic, group = make_topic(broker, 20), new_group(broker)
        c = share_consumer(broker, group, **{"share.acknowledgement.mode": "explicit", "max.poll.records": 20})
        c.subscribe([topic])
        accepted: list[str] = []

        def accept_half(consumer: ShareConsumer, message: Any) -> None:
            value = message.value().decode()
            if int(value.split("-")[1]) < 10:
                consumer.acknowledge(message, AcknowledgeType.ACCEPT)
                accepted.append(value)
            else:
                consumer.acknowledge(message, AcknowledgeType.RELEASE)

        drain([c], lambda: len(accepted) == 10, on_message=accept_half)
        assert c.commit_sync() is not None
        c.close()
        broker.restart()
        after = share_consumer(broker, group)
        after.subscribe([topic])
        seen: list[str] = []
        drain([after], lambda: len(seen) >= 10, on_message=lambda _c, m: seen.append(m.value().decode()))
        time.sleep(1)
        drain([after], lambda: True)
        assert sorted(seen) == sorted(f"job-{i}" for i in range(10, 20))
        after.close()
    finally:
        broker.stop()


def test_share_groups_in_listings(broker: Broker) -> None:
    topic, group = make_topic(broker, 3), new_group(broker)
    c = share_consumer(broker, group)
    c.subscribe([topic])
    drain([c], lambda: True)
    seen: list[Any] = []
    drain([c], lambda: len(seen) >= 3, on_message=lambda _c, m: seen.append(m))
    c.commit_sync()  # implicit mode: the records polled are accepted
    listed = subprocess.run([sys.executable, "-m", "strom", "group", "list", "-b", broker.bootstrap, "--output", "json"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert {"group": group, "type": "share"}.items() <= next(g for g in json.loads(listed.stdout)
                                                               if g["group"] == group).items()
    described = subprocess.run([sys.executable, "-m", "strom", "group", "describe", group, "-b", broker.bootstrap,
                                "--output", "json"], capture_output=True, text=True, timeout=60)
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert (info["type"], info["state"], len(info["members"])) == ("share", "STABLE", 1)
    [partition] = info["partitions"]
    assert (partition["committed_offset"], partition["end_offset"], partition["lag"]) == (3, 3, 0)
    c.close()
    described = subprocess.run([sys.executable, "-m", "strom", "group", "describe", group, "-b", broker.bootstrap,
                                "--output", "json"], capture_output=True, text=True, timeout=60)
    info = json.loads(described.stdout)  # no member now: the partitions it read are still shown
    assert (info["state"], info["members"], len(info["partitions"])) == ("EMPTY", [], 1)
