"""End to end on a 3-broker cluster (the ``strom_cluster`` fixture: a throwaway etcd and three
``strom serve`` processes) with confluent-kafka (librdkafka), kcat and raw requests
(strom.client.BrokerConnection, for answers that only one named broker gives).

Topics spread over every broker, produce and consume through any single bootstrap broker,
NOT_LEADER_OR_FOLLOWER from a broker that does not lead, replication factors and their
defaults, auto-creation, internal topics and coordinators on the leader of their partition,
consumer groups, transactions, admin calls seen from every broker, DescribeLogDirs per broker,
min.insync.replicas with a broker down, and a broker stopped cleanly under load and back.

kafka-python and aiokafka are in test_cluster_python_clients.py. Tests that stop a broker come
last and start it again, so the others see three live brokers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from strom.coordinator.records import partition_for
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.records import build_batch

from .helpers import DeliveryLog, ask, consume, produce_many, producer, running_in_ci

SESSION_MS = 3000
INTERNAL_PARTITIONS = 6
CLUSTER_CONFIG = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 1000,
    "offsets.topic.num.partitions": INTERNAL_PARTITIONS,
    "transaction.state.log.num.partitions": INTERNAL_PARTITIONS,
    "default.replication.factor": 3,
}
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
HAVE_ETCD = shutil.which("etcd") is not None or Path("/usr/bin/etcd").exists()

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.strom_cluster(brokers=3, session_timeout_ms=SESSION_MS, config=CLUSTER_CONFIG),
    pytest.mark.skipif(not HAVE_ETCD and not running_in_ci(), reason="etcd is not installed (apt-get install etcd-server)"),
]

T = TypeVar("T")
COMMITTED = {"isolation.level": "read_committed"}


# --- helpers ------------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Call ``probe`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # a broker restarting, a metadata answer in flux
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def new_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def host_port(cluster: Any, node: int) -> tuple[str, int]:
    host, port = cluster.address(node).rsplit(":", 1)
    return host, int(port)


def raw(cluster: Any, node: int, api_key: int, version: int, body: dict[str, Any], timeout: float = 15.0) -> Any:
    """One request to one named broker, its decoded response."""
    return ask(*host_port(cluster, node), api_key, version, body, timeout)


def metadata(cluster: Any, node: int, topics: list[str] | None) -> Any:
    """Metadata v12 from one broker (``topics`` None: every topic), never auto-creating."""
    body = {
        "topics": None if topics is None else [{"name": t, "topic_id": None} for t in topics],
        "allow_auto_topic_creation": False,
        "include_topic_authorized_operations": False,
    }
    return raw(cluster, node, ApiKey.METADATA, 12, body)


def topic_view(cluster: Any, node: int, topic: str) -> dict[int, Any]:
    """partition -> MetadataResponsePartition, as one broker sees the topic ({} if unknown)."""
    (t,) = metadata(cluster, node, [topic]).topics
    if t.error_code != ErrorCode.NONE:
        return {}
    return {int(p.partition_index): p for p in t.partitions}


def assert_fully_replicated(view: dict[int, Any], partitions: int, rf: int = 3) -> None:
    assert sorted(view) == list(range(partitions)), sorted(view)
    for p, part in view.items():
        assert part.error_code == ErrorCode.NONE, (p, part.error_code)
        assert len(part.replica_nodes) == rf and len(set(part.replica_nodes)) == rf, (p, part.replica_nodes)
        assert sorted(part.isr_nodes) == sorted(part.replica_nodes), (p, part.isr_nodes)
        assert part.leader_id in part.replica_nodes, (p, part.leader_id)


def group_consumer(bootstrap: str, group: str, **conf: Any) -> Consumer:
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    }
    c.update(conf)
    return Consumer(c)


def txn_producer(bootstrap: str, **conf: Any) -> Producer:
    c = {
        "bootstrap.servers": bootstrap,
        "transactional.id": new_name("txn"),
        "linger.ms": 5,
        "socket.timeout.ms": 10000,
        "retry.backoff.ms": 20,
    }
    c.update(conf)
    return Producer(c)


def error_code(future: Any, timeout: float = 30) -> int | None:
    try:
        future.result(timeout)
    except KafkaException as exc:
        return exc.args[0].code()
    return None


def run_kcat(*args: str, input: bytes | None = None, timeout: float = 30) -> bytes:
    assert KCAT is not None
    proc = subprocess.run([KCAT, *args], input=input, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}\n{proc.stderr.decode(errors='replace')}"
    return proc.stdout


def local_replicas(cluster: Any, node: int, topic: str) -> list[str]:
    """The entries of one broker's data directory that belong to the topic (logs, or logs
    renamed for deletion)."""
    broker_dir = Path(cluster.data_dir) / f"broker-{node}"
    return sorted(p.name for p in broker_dir.iterdir() if p.name.startswith(f"{topic}-"))


def tails(cluster: Any, lines: int = 40) -> str:
    return "\n".join(f"--- broker {n} ---\n" + "\n".join(cluster.logs(n).splitlines()[-lines:]) for n in cluster.nodes)


# --- metadata: topics over every broker ---------------------------------------------------------


@pytest.mark.skipif(KCAT is None and not running_in_ci(), reason="kcat is not installed (apt-get install kcat)")
def test_kcat_lists_three_brokers_and_partitions_led_by_each(strom_cluster):
    topic = strom_cluster.create_topic(new_name("spread"), partitions=6, replication_factor=3)
    md = json.loads(run_kcat("-b", strom_cluster.address(1), "-L", "-J", "-t", topic))
    assert sorted(b["id"] for b in md["brokers"]) == [0, 1, 2]
    assert sorted(b["name"] for b in md["brokers"]) == sorted(strom_cluster.address(n) for n in strom_cluster.nodes)
    assert md["controllerid"] in (0, 1, 2)
    (t,) = md["topics"]
    assert t["topic"] == topic
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == list(range(6))
    for p in parts:
        replicas = [r["id"] for r in p["replicas"]]
        assert sorted(replicas) == [0, 1, 2], p
        assert sorted(r["id"] for r in p["isrs"]) == [0, 1, 2], p
        assert p["leader"] == replicas[0], p  # the preferred leader leads a new topic
    assert sorted({p["leader"] for p in parts}) == [0, 1, 2]  # every broker leads some
    text = run_kcat("-b", strom_cluster.address(2), "-L").decode()
    assert " 3 brokers:" in text and "(controller)" in text, text
    assert f'topic "{topic}" with 6 partitions' in text

    # kcat produces through one broker and consumes through another.
    lines = [f"line {i}" for i in range(30)]
    run_kcat("-b", strom_cluster.address(0), "-P", "-t", topic, "-p", "4", "-X", "acks=all",
             input=("\n".join(lines) + "\n").encode())
    out = run_kcat("-b", strom_cluster.address(2), "-C", "-t", topic, "-p", "4", "-e", "-o", "beginning", "-q")
    assert out.decode().splitlines() == lines


def test_every_broker_reports_the_same_metadata(strom_cluster):
    topic = strom_cluster.create_topic(new_name("same"), partitions=6, replication_factor=3)
    views = {}
    for node in strom_cluster.nodes:
        md = metadata(strom_cluster, node, [topic])
        assert sorted(b.node_id for b in md.brokers) == [0, 1, 2]
        assert {(b.node_id, f"{b.host}:{b.port}") for b in md.brokers} == {
            (n, strom_cluster.address(n)) for n in strom_cluster.nodes
        }
        views[node] = (
            md.cluster_id,
            md.controller_id,
            {int(p.partition_index): (p.leader_id, list(p.replica_nodes), sorted(p.isr_nodes)) for p in md.topics[0].partitions},
        )
        assert_fully_replicated(topic_view(strom_cluster, node, topic), 6)
    assert views[0] == views[1] == views[2], views


# --- produce / consume through any one broker ---------------------------------------------------


def test_produce_and_consume_through_each_single_bootstrap_broker(strom_cluster):
    topic = strom_cluster.create_topic(new_name("boot"), partitions=6, replication_factor=3)
    by_partition: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(6)}
    for node in strom_cluster.nodes:
        p = producer(strom_cluster.address(node), acks="all")
        log = produce_many(p, topic, [{"key": f"k{i}".encode(), "value": f"via{node}-{i}".encode(), "partition": i % 6}
                                      for i in range(60)])
        for r in log.reports:
            by_partition[r.partition].append((r.offset, r.value))
    expected = {part: [v for _, v in sorted(recs)] for part, recs in by_partition.items()}
    for part, recs in by_partition.items():
        assert sorted(o for o, _ in recs) == list(range(30)), part  # 3 brokers x 10 each, no gap
        # each producer's records kept their order within the partition
        for node in strom_cluster.nodes:
            mine = [v for v in expected[part] if v.startswith(f"via{node}-".encode())]
            assert mine == sorted(mine, key=lambda v: int(v.split(b"-")[1]))
    for node in strom_cluster.nodes:
        msgs = consume(strom_cluster.address(node), topic, range(6))
        got: dict[int, list[bytes]] = {p: [] for p in range(6)}
        for m in msgs:
            got[m.partition()].append(m.value())
        assert got == expected, f"consumed through broker {node}"


def test_a_broker_that_does_not_lead_answers_not_leader_or_follower(strom_cluster):
    topic = strom_cluster.create_topic(new_name("nl"), partitions=1, replication_factor=3)
    leader = strom_cluster.leader(topic, 0)
    others = [n for n in strom_cluster.nodes if n != leader]
    batch = build_batch([(b"k", b"v", (), int(time.time() * 1000))])
    produce = {
        "transactional_id": None,
        "acks": -1,
        "timeout": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    list_offsets = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}],
    }
    for node in others:  # followers: replicas that do not lead
        response = raw(strom_cluster, node, ApiKey.PRODUCE, 9, produce)
        (part,) = response.responses[0].partition_responses
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, (node, part)
        response = raw(strom_cluster, node, ApiKey.LIST_OFFSETS, 7, list_offsets)
        (part,) = response.topics[0].partitions
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, (node, part)
    # The leader takes the same requests; the record was written once.
    response = raw(strom_cluster, leader, ApiKey.PRODUCE, 9, produce)
    (part,) = response.responses[0].partition_responses
    assert (part.error_code, part.base_offset) == (ErrorCode.NONE, 0)
    response = raw(strom_cluster, leader, ApiKey.LIST_OFFSETS, 7, list_offsets)
    (part,) = response.topics[0].partitions
    assert (part.error_code, part.offset) == (ErrorCode.NONE, 1)

    # A topic with one replica: the two brokers that hold nothing answer the same.
    single = strom_cluster.create_topic(new_name("rf1"), partitions=1, replication_factor=1)
    holder = strom_cluster.leader(single, 0)
    produce["topic_data"][0]["name"] = single
    for node in strom_cluster.nodes:
        response = raw(strom_cluster, node, ApiKey.PRODUCE, 9, produce)
        (part,) = response.responses[0].partition_responses
        want = ErrorCode.NONE if node == holder else ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert part.error_code == want, (node, holder, part)


def test_not_leader_answers_name_the_current_leader_and_its_endpoint(strom_cluster):
    """KIP-951: Produce v10+ and Fetch v16+ answered NOT_LEADER_OR_FOLLOWER carry the partition's
    current leader and epoch, and the response lists that leader's endpoint; older versions
    and the leader's own answers carry neither."""
    topic = strom_cluster.create_topic(new_name("kip951"), partitions=1, replication_factor=3)
    leader = strom_cluster.leader(topic, 0)
    (described,) = metadata(strom_cluster, leader, [topic]).topics
    epoch = described.partitions[0].leader_epoch
    host, port = host_port(strom_cluster, leader)
    batch = build_batch([(b"k", b"v", (), int(time.time() * 1000))])
    produce = {"transactional_id": None, "acks": -1, "timeout": 5000,
               "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}]}
    fetch = {"replica_id": -1, "max_wait": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
             "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
             "topics": [{"topic_id": described.topic_id, "partitions": [{
                 "partition": 0, "current_leader_epoch": -1, "fetch_offset": 0, "last_fetched_epoch": -1,
                 "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}]}
    for node in (n for n in strom_cluster.nodes if n != leader):
        response = raw(strom_cluster, node, ApiKey.PRODUCE, 10, produce)
        (part,) = response.responses[0].partition_responses
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (leader, epoch)
        assert [(e.node_id, e.host, e.port) for e in response.node_endpoints] == [(leader, host, port)]
        response = raw(strom_cluster, node, ApiKey.FETCH, 16, fetch)
        (part,) = response.responses[0].partitions
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (leader, epoch)
        assert [(e.node_id, e.host, e.port) for e in response.node_endpoints] == [(leader, host, port)]
        response = raw(strom_cluster, node, ApiKey.FETCH, 15, fetch)  # before KIP-951: no hint
        (part,) = response.responses[0].partitions
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (-1, -1)
    response = raw(strom_cluster, leader, ApiKey.PRODUCE, 10, produce)
    (part,) = response.responses[0].partition_responses
    assert part.error_code == ErrorCode.NONE and part.current_leader.leader_id == -1 and not response.node_endpoints
    response = raw(strom_cluster, leader, ApiKey.FETCH, 16, fetch)
    (part,) = response.responses[0].partitions
    assert part.error_code == ErrorCode.NONE and part.current_leader.leader_id == -1 and not response.node_endpoints


# --- replication factors ------------------------------------------------------------------------


def test_replication_factor_limits_and_defaults(strom_cluster):
    adm = strom_cluster.admin()
    too_many = new_name("rf4")
    futs = adm.create_topics([NewTopic(too_many, num_partitions=1, replication_factor=4)], request_timeout=30)
    assert error_code(futs[too_many]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic_view(strom_cluster, 0, too_many) == {}

    # -1: default.replication.factor (3 in this cluster, against Kafka's default of 1)
    defaulted = new_name("rfdefault")
    futs = adm.create_topics([NewTopic(defaulted, num_partitions=2, replication_factor=-1)], request_timeout=30)
    assert error_code(futs[defaulted]) is None
    view = wait_for("the defaulted topic led", lambda: (v := topic_view(strom_cluster, 2, defaulted))
                    and all(p.leader_id >= 0 for p in v.values()) and v)
    assert_fully_replicated(view, 2, rf=3)

    explicit = new_name("rf2")
    futs = adm.create_topics([NewTopic(explicit, num_partitions=3, replication_factor=2)], request_timeout=30)
    assert error_code(futs[explicit]) is None
    view = wait_for("the rf2 topic led", lambda: (v := topic_view(strom_cluster, 1, explicit))
                    and all(p.leader_id >= 0 for p in v.values()) and v)
    assert_fully_replicated(view, 3, rf=2)


def test_auto_created_topic_gets_the_default_replication_factor(strom_cluster):
    topic = new_name("auto")
    p = producer(strom_cluster.address(0), acks="all")  # librdkafka's producer may auto-create
    log = produce_many(p, topic, [{"value": f"a{i}".encode()} for i in range(10)])
    assert sorted(r.offset for r in log.reports) == list(range(10))
    for node in strom_cluster.nodes:
        view = wait_for(f"broker {node} to see {topic}", lambda n=node: topic_view(strom_cluster, n, topic))
        assert_fully_replicated(view, 1, rf=3)  # num.partitions 1, default.replication.factor 3
    assert [m.value() for m in consume(strom_cluster.address(2), topic, [0])] == [f"a{i}".encode() for i in range(10)]


# --- coordinators -------------------------------------------------------------------------------


def find_coordinator(cluster: Any, node: int, key_type: int, key: str) -> int:
    """The coordinator node id one broker names for a key, once it has one."""

    def ask() -> int | None:
        response = raw(cluster, node, ApiKey.FIND_COORDINATOR, 4, {"key_type": key_type, "coordinator_keys": [key]})
        (c,) = response.coordinators
        return int(c.node_id) if c.error_code == ErrorCode.NONE else None

    return wait_for(f"a coordinator for {key!r} from broker {node}", lambda: (n := ask()) is not None and (n,))[0]


@pytest.mark.parametrize(("key_type", "internal"), [(0, "__consumer_offsets"), (1, "__transaction_state")])
def test_internal_topics_are_replicated_and_coordinators_lead_their_partition(strom_cluster, key_type, internal):
    keys = [new_name("key") for _ in range(4)]
    answers = {(key, node): find_coordinator(strom_cluster, node, key_type, key) for key in keys for node in strom_cluster.nodes}
    for node in strom_cluster.nodes:
        md = metadata(strom_cluster, node, [internal])
        (t,) = md.topics
        assert t.error_code == ErrorCode.NONE and t.is_internal
        view = {int(p.partition_index): p for p in t.partitions}
        assert_fully_replicated(view, INTERNAL_PARTITIONS, rf=3)  # *.replication.factor: 3
        for key in keys:
            assert answers[(key, node)] == view[partition_for(key, INTERNAL_PARTITIONS)].leader_id, (key, node)
    # Leaders of the internal partitions are spread: every broker coordinates some.
    leaders = {p.leader_id for p in topic_view(strom_cluster, 0, internal).values()}
    assert leaders == {0, 1, 2}


# --- consumer groups ----------------------------------------------------------------------------


def test_group_of_three_consumers_reads_every_record_once_and_commits(strom_cluster):
    topic = strom_cluster.create_topic(new_name("grp"), partitions=6, replication_factor=3)
    group = new_name("group")
    # Each consumer knows one broker only.
    consumers = [group_consumer(strom_cluster.address(n), group) for n in strom_cluster.nodes]
    try:
        for c in consumers:
            c.subscribe([topic])

        def settled() -> bool:
            for c in consumers:
                c.poll(0.05)
            owned = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
            return all(len(o) == 2 for o in owned) and sorted(p for o in owned for p in o) == list(range(6))

        wait_for("three consumers owning two partitions each", settled, timeout=60)
        produce_many(producer(strom_cluster.address(1), acks="all"), topic,
                     [{"value": f"g{i}".encode(), "partition": i % 6} for i in range(300)])
        seen: list[tuple[int, int, bytes]] = []

        def drain() -> bool:
            for c in consumers:
                batch = [m for m in c.consume(num_messages=500, timeout=0.05) if m.error() is None]
                if batch:
                    seen.extend((m.partition(), m.offset(), m.value()) for m in batch)
                    c.commit(asynchronous=False)
            return len(seen) >= 300

        wait_for("300 records consumed", drain, timeout=60)
        for c in consumers:  # nothing more shows up
            assert [m for m in c.consume(num_messages=100, timeout=0.3) if m.error() is None] == []
        assert sorted(v for _, _, v in seen) == sorted(f"g{i}".encode() for i in range(300))
        assert len({(p, o) for p, o, _ in seen}) == 300  # each record exactly once
        for part in range(6):
            offsets = [o for p, o, _ in seen if p == part]
            assert offsets == list(range(50)), part
        committed = consumers[0].committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
        assert sorted((tp.partition, tp.offset) for tp in committed) == [(p, 50) for p in range(6)]
    finally:
        for c in consumers:
            c.close()
    # The commits are readable through another broker, by the admin client and by a new member.
    adm = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(2)})
    listed = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=30)[group].result(30)
    assert sorted((tp.partition, tp.offset) for tp in listed.topic_partitions) == [(p, 50) for p in range(6)]
    late = group_consumer(strom_cluster.address(0), group)
    try:
        late.subscribe([topic])
        again: list[Any] = []

        def assigned() -> bool:
            again.extend(m for m in late.consume(num_messages=100, timeout=0.1) if m.error() is None)
            return len(late.assignment()) == 6

        wait_for("the late member's assignment", assigned, timeout=60)
        again.extend(m for m in late.consume(num_messages=100, timeout=0.5) if m.error() is None)
        assert again == []  # it starts at the committed offsets: nothing left to read
    finally:
        late.close()


# --- transactions -------------------------------------------------------------------------------


def test_transactions_commit_and_abort_across_brokers(strom_cluster):
    topic = strom_cluster.create_topic(new_name("txn"), partitions=3, replication_factor=3)
    p = txn_producer(strom_cluster.address(0))
    p.init_transactions(30)
    sent: list[bytes] = []
    for round_, commit in enumerate([True, False, True, True]):
        p.begin_transaction()
        values = [f"r{round_}-{i}".encode() for i in range(15)]
        for i, v in enumerate(values):
            p.produce(topic, value=v, partition=i % 3)
        if commit:
            p.commit_transaction(30)
            sent += values
        else:
            p.flush(30)
            p.abort_transaction(30)
    committed = consume(strom_cluster.address(2), topic, [0, 1, 2], **COMMITTED)
    assert sorted(m.value() for m in committed) == sorted(sent)
    uncommitted = consume(strom_cluster.address(1), topic, [0, 1, 2], **{"isolation.level": "read_uncommitted"})
    assert len(uncommitted) == 60
    # 4 transactions x (5 records + 1 marker) in each partition
    c = Consumer({"bootstrap.servers": strom_cluster.address(1), "group.id": new_name("wm")})
    try:
        for part in range(3):
            assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False) == (0, 24)
    finally:
        c.close()


def test_consume_transform_produce_with_send_offsets_to_transaction(strom_cluster):
    source = strom_cluster.create_topic(new_name("src"), partitions=3, replication_factor=3)
    sink = strom_cluster.create_topic(new_name("sink"), partitions=3, replication_factor=3)
    produce_many(producer(strom_cluster.address(2), acks="all"), source,
                 [{"value": f"m{i}".encode(), "partition": i % 3} for i in range(60)])
    group = new_name("ctp")
    c = group_consumer(strom_cluster.address(1), group, **COMMITTED)
    p = txn_producer(strom_cluster.address(0))
    p.init_transactions(30)
    try:
        c.subscribe([source])
        done = 0
        aborted_once = False
        deadline = time.monotonic() + 60
        while done < 60 and time.monotonic() < deadline:
            batch = [m for m in c.consume(num_messages=20, timeout=0.5) if m.error() is None]
            if not batch:
                continue
            p.begin_transaction()
            for m in batch:
                p.produce(sink, value=m.value().upper(), partition=m.partition())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            if not aborted_once:  # the first batch is aborted and read again from the commits
                p.abort_transaction(30)
                aborted_once = True
                committed = c.committed(c.assignment(), timeout=10)
                c.assign([TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)) for tp in committed])
                continue
            p.commit_transaction(30)
            done += len(batch)
        assert done == 60
        committed = c.committed([TopicPartition(source, part) for part in range(3)], timeout=10)
        assert sorted(tp.offset for tp in committed) == [20, 20, 20]
    finally:
        c.close()
    out = consume(strom_cluster.address(2), sink, [0, 1, 2], **COMMITTED)
    assert sorted(m.value() for m in out) == sorted(f"M{i}".encode() for i in range(60))


# --- admin --------------------------------------------------------------------------------------


def test_describe_cluster_from_every_broker(strom_cluster):
    seen = set()
    for node in strom_cluster.nodes:
        adm = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(node)})
        desc = adm.describe_cluster(request_timeout=30).result(30)
        assert sorted((n.id, f"{n.host}:{n.port}") for n in desc.nodes) == [
            (n, strom_cluster.address(n)) for n in strom_cluster.nodes
        ]
        assert desc.controller is not None and desc.controller.id in (0, 1, 2)
        seen.add((desc.cluster_id, desc.controller.id))
        raw_desc = raw(strom_cluster, node, ApiKey.DESCRIBE_CLUSTER, 1, {"include_cluster_authorized_operations": False,
                                                                           "endpoint_type": 1})
        assert raw_desc.error_code == ErrorCode.NONE
        assert (raw_desc.cluster_id, raw_desc.controller_id) == (desc.cluster_id, desc.controller.id)
    assert len(seen) == 1, seen  # one cluster, one controller, whoever is asked


def describe_topic_config(cluster: Any, node: int, topic: str) -> dict[str, str | None]:
    body = {"resources": [{"resource_type": 2, "resource_name": topic, "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False}
    (result,) = raw(cluster, node, ApiKey.DESCRIBE_CONFIGS, 4, body).results
    assert result.error_code == ErrorCode.NONE, result
    return {c.name: c.value for c in result.configs}


def test_topic_config_altered_through_one_broker_is_seen_by_every_broker(strom_cluster):
    topic = strom_cluster.create_topic(new_name("cfg"), partitions=1, replication_factor=3, config={"retention.ms": 60000})
    adm = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(0)})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7777", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
    ])
    assert error_code(adm.incremental_alter_configs([res], request_timeout=30)[res]) is None
    for node in strom_cluster.nodes:
        cfg = wait_for(f"broker {node} to see the new config",
                       lambda n=node: (c := describe_topic_config(strom_cluster, n, topic))["retention.ms"] == "7777" and c)
        assert cfg["max.message.bytes"] == "2000"
    # The confluent admin client, bootstrapped elsewhere, reads the same.
    other = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(2)})
    cres = ConfigResource(ResourceType.TOPIC, topic)
    cfg = other.describe_configs([cres], request_timeout=30)[cres].result(30)
    assert (cfg["retention.ms"].value, cfg["max.message.bytes"].value) == ("7777", "2000")
    # The leader enforces it, wherever it is.
    p = producer(strom_cluster.address(1), **{"compression.type": "none", "message.timeout.ms": 10000, "acks": "all"})
    log = DeliveryLog()
    p.produce(topic, value=b"x" * 10_000, on_delivery=log)
    assert p.flush(20) == 0
    (report,) = log.reports
    assert report.error is not None and report.error.code() == KafkaError.MSG_SIZE_TOO_LARGE, report


def test_create_partitions_spreads_new_replicas(strom_cluster):
    topic = strom_cluster.create_topic(new_name("grow"), partitions=3, replication_factor=3)
    adm = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(1)})
    futs = adm.create_partitions([NewPartitions(topic, 6)], request_timeout=30)
    assert error_code(futs[topic]) is None
    for node in strom_cluster.nodes:
        view = wait_for(f"broker {node} to see 6 led partitions",
                        lambda n=node: (v := topic_view(strom_cluster, n, topic)) and len(v) == 6
                        and all(p.leader_id >= 0 for p in v.values()) and v)
        assert_fully_replicated(view, 6)
    log = produce_many(producer(strom_cluster.address(2), acks="all"), topic,
                       [{"value": f"p{i}".encode(), "partition": i} for i in range(6)])
    assert sorted((r.partition, r.offset) for r in log.reports) == [(i, 0) for i in range(6)]
    for node in strom_cluster.nodes:
        wait_for(f"broker {node} to hold 6 replicas",
                 lambda n=node: local_replicas(strom_cluster, n, topic) == [f"{topic}-{i}" for i in range(6)])


def describe_log_dirs(cluster: Any, node: int, topics: list[str]) -> set[tuple[str, int]]:
    body = {"topics": [{"topic": t, "partitions": list(range(8))} for t in topics]}
    response = raw(cluster, node, ApiKey.DESCRIBE_LOG_DIRS, 4, body)
    assert response.error_code == ErrorCode.NONE
    (result,) = response.results  # one data directory per broker
    assert result.error_code == ErrorCode.NONE
    assert Path(result.log_dir) == (Path(cluster.data_dir) / f"broker-{node}").resolve()
    return {(t.name, int(p.partition_index)) for t in result.topics for p in t.partitions}


def test_describe_log_dirs_lists_only_what_each_broker_holds(strom_cluster):
    spread, pairs = new_name("ld1"), new_name("ld2")
    adm = strom_cluster.admin()
    futs = adm.create_topics([
        NewTopic(spread, num_partitions=3, replica_assignment=[[0], [1], [2]]),
        NewTopic(pairs, num_partitions=3, replica_assignment=[[0, 1], [1, 2], [2, 0]]),
    ], request_timeout=30)
    assert error_code(futs[spread]) is None and error_code(futs[pairs]) is None
    expected = {
        0: {(spread, 0), (pairs, 0), (pairs, 2)},
        1: {(spread, 1), (pairs, 0), (pairs, 1)},
        2: {(spread, 2), (pairs, 1), (pairs, 2)},
    }
    for node in strom_cluster.nodes:
        got = wait_for(f"broker {node}'s replicas", lambda n=node: (s := describe_log_dirs(strom_cluster, n, [spread, pairs]))
                       == expected[n] and s)
        assert got == expected[node]


def test_deleted_topic_leaves_every_data_dir(strom_cluster):
    topic = strom_cluster.create_topic(new_name("gone"), partitions=3, replication_factor=3)
    produce_many(producer(strom_cluster.address(0), acks="all"), topic,
                 [{"value": b"x" * 100, "partition": i % 3} for i in range(30)])
    for node in strom_cluster.nodes:
        assert local_replicas(strom_cluster, node, topic) == [f"{topic}-{i}" for i in range(3)]
    adm = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(1)})
    assert error_code(adm.delete_topics([topic], request_timeout=30)[topic]) is None
    for node in strom_cluster.nodes:
        wait_for(f"broker {node} to forget {topic}", lambda n=node: topic_view(strom_cluster, n, topic) == {})
        wait_for(f"broker {node} to delete {topic}'s logs", lambda n=node: local_replicas(strom_cluster, n, topic) == [])
        assert describe_log_dirs(strom_cluster, node, [topic]) == set()


# --- a broker down ------------------------------------------------------------------------------


def wait_isr(cluster: Any, topic: str, partitions: int, want: set[int], via: int, timeout: float = 30) -> None:
    wait_for(f"ISR {sorted(want)} on {topic} (seen by broker {via})",
             lambda: (v := topic_view(cluster, via, topic)) and len(v) == partitions
             and all(set(p.isr_nodes) == want and p.leader_id in want for p in v.values()), timeout=timeout)


def test_min_insync_replicas_with_a_broker_stopped(strom_cluster):
    strict = strom_cluster.create_topic(new_name("mir3"), partitions=1, replication_factor=3,
                                        config={"min.insync.replicas": 3})
    victim = next(n for n in strom_cluster.nodes if n != strom_cluster.leader(strict, 0))
    survivor = next(n for n in strom_cluster.nodes if n != victim)
    assert strom_cluster.stop_broker(victim) == 0, strom_cluster.logs(victim)
    try:
        live = set(strom_cluster.nodes) - {victim}
        wait_isr(strom_cluster, strict, 1, live, survivor)
        # acks=all: refused before the append; no retries, so the broker's error reaches us.
        p = producer(strom_cluster.address(survivor), acks="all", retries=0, **{"message.timeout.ms": 10000})
        log = DeliveryLog()
        p.produce(strict, value=b"refused", partition=0, on_delivery=log)
        assert p.flush(20) == 0
        (report,) = log.reports
        assert report.error is not None and report.error.code() == KafkaError.NOT_ENOUGH_REPLICAS, report
        # acks=1 does not care about min.insync.replicas.
        one = producer(strom_cluster.address(survivor), acks=1)
        assert [r.offset for r in produce_many(one, strict, [{"value": b"acks1", "partition": 0}]).reports] == [0]
        # The replication factor is bounded by the brokers alive now.
        adm = strom_cluster.admin(**{"bootstrap.servers": strom_cluster.address(survivor)})
        name = new_name("rf3down")
        futs = adm.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)], request_timeout=30)
        assert error_code(futs[name]) == KafkaError.INVALID_REPLICATION_FACTOR
    finally:
        strom_cluster.start_broker(victim)
    wait_isr(strom_cluster, strict, 1, set(strom_cluster.nodes), victim)
    p = producer(strom_cluster.address(victim), acks="all")
    assert [r.offset for r in produce_many(p, strict, [{"value": b"accepted", "partition": 0}]).reports] == [1]
    assert [m.value() for m in consume(strom_cluster.address(victim), strict, [0])] == [b"acks1", b"accepted"]


class _Load:
    """An idempotent acks=all producer and an assigned consumer in threads of their own."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.stop = threading.Event()
        self.acked: dict[int, dict[int, bytes]] = {p: {} for p in range(partitions)}
        self.errors: list[Any] = []
        self.consumed: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
        self.failure: list[BaseException] = []
        self.lock = threading.Lock()
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": 90000, "socket.timeout.ms": 10000, "retry.backoff.ms": 50,
        })
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": new_name("load"), "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100, "socket.timeout.ms": 10000,
        })
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True) for f in (self._produce, self._consume)]

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    @property
    def acked_count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.acked.values())

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            self.failure.append(exc)

    def _report(self, err: Any, msg: Any) -> None:
        with self.lock:
            if err is not None:
                self.errors.append(err)
            else:
                self.acked[msg.partition()][msg.offset()] = msg.value()

    def _produce(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce(self.topic, value=f"v{i}".encode(), partition=i % self.partitions, on_delivery=self._report)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0.01)
        assert self.producer.flush(90) == 0

    def _consume(self) -> None:
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        while not self.stop.is_set():
            for m in self.consumer.consume(num_messages=1000, timeout=0.2):
                if m.error() is None:
                    self.consumed[m.partition()].append((m.offset(), m.value()))

    def read_rest(self, timeout: float = 60) -> None:
        """After the producer flushed: keep reading (in this thread) up to every acknowledged offset."""
        deadline = time.monotonic() + timeout
        ends = {p: max(self.acked[p], default=-1) for p in range(self.partitions)}
        while any((self.consumed[p][-1][0] if self.consumed[p] else -1) < ends[p] for p in ends):
            assert time.monotonic() < deadline, "the consumer did not reach every acknowledged offset"
            for m in self.consumer.consume(num_messages=1000, timeout=0.2):
                if m.error() is None:
                    self.consumed[m.partition()].append((m.offset(), m.value()))


def test_broker_stopped_cleanly_and_back_under_load(strom_cluster):
    topic = strom_cluster.create_topic(new_name("load"), partitions=3, replication_factor=3,
                                       config={"min.insync.replicas": 2})
    victim = strom_cluster.leader(topic, 0)
    survivor = next(n for n in strom_cluster.nodes if n != victim)
    load = _Load(strom_cluster.address(survivor), topic, 3)
    with load:
        wait_for("100 acknowledged records", lambda: load.acked_count >= 100 or load.failure)
        assert strom_cluster.stop_broker(victim) == 0, strom_cluster.logs(victim)
        live = set(strom_cluster.nodes) - {victim}
        wait_isr(strom_cluster, topic, 3, live, survivor)
        before = load.acked_count
        wait_for("100 more acknowledged records with the broker down", lambda: load.acked_count >= before + 100 or load.failure)
        strom_cluster.start_broker(victim)
        wait_isr(strom_cluster, topic, 3, set(strom_cluster.nodes), survivor, timeout=60)
        before = load.acked_count
        wait_for("100 more acknowledged records after the return", lambda: load.acked_count >= before + 100 or load.failure)
    assert not load.failure, load.failure
    assert not load.errors, load.errors[:5]
    try:
        load.read_rest()
    finally:
        load.consumer.close()
    for part in range(3):
        offsets = [o for o, _ in load.consumed[part]]
        assert offsets == sorted(set(offsets)), f"partition {part}: consumed out of order or twice"
        got = dict(load.consumed[part])
        missing = {o: v for o, v in load.acked[part].items() if got.get(o) != v}
        assert not missing, f"partition {part}: acknowledged but not read back: {sorted(missing.items())[:5]}\n{tails(strom_cluster)}"
        # idempotence: every value once, in the order it was produced
        values = [int(v[1:]) for _, v in load.consumed[part]]
        assert values == sorted(set(values)), f"partition {part}: duplicates or reordering"


def lagging_replicas(cluster: Any, node: int, via: int) -> list[tuple[str, int, list[int]]]:
    """(topic, partition, ISR) of every partition, internal ones included, that has ``node``
    among its replicas but not in its ISR, as broker ``via`` sees them."""
    md = metadata(cluster, via, None)
    return [(t.name, int(p.partition_index), sorted(p.isr_nodes)) for t in md.topics for p in t.partitions
            if node in p.replica_nodes and node not in p.isr_nodes]


def test_a_restarted_broker_rejoins_every_isr_idle_partitions_included(strom_cluster):
    idle = strom_cluster.create_topic(new_name("idle"), partitions=6, replication_factor=3)
    victim = strom_cluster.leader(idle, 0)
    survivor = next(n for n in strom_cluster.nodes if n != victim)
    assert strom_cluster.stop_broker(victim) == 0, strom_cluster.logs(victim)
    wait_isr(strom_cluster, idle, 6, set(strom_cluster.nodes) - {victim}, survivor)
    strom_cluster.start_broker(victim)

    def back_everywhere() -> bool:
        lagging = lagging_replicas(strom_cluster, victim, survivor)
        if lagging:
            raise AssertionError(f"not yet in the ISR of {lagging}")  # wait_for shows the last one
        return True

    wait_for(f"broker {victim} back in the ISR of every partition it holds", back_everywhere, timeout=12)
