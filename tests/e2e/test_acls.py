"""ACLs with real clients against a real broker process (issue 13's "Done when").

The broker has ONLY a SASL_SSL listener and the authorizer on, ``super.users=User:admin``. The
admin is created offline before the first start and works over TLS + SCRAM; it creates alice
over the admin API (``strom user add`` online) and gives her, with ``strom acl add``, READ on
the topics prefixed ``alice-`` and READ on the group ``alice-g``. Alice then reads exactly
that: she consumes alice-orders in alice-g, and confluent-kafka, kafka-python and aiokafka each
show a refusal with Kafka's error for everything else."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from tests.conftest import Broker, free_port
from tests.e2e import test_security
from tests.e2e.helpers import admin, consumer, producer
from tests.e2e.test_security import SecureBroker, sasl_conf, strom_cli

pki = test_security.pki  # the trustme certificates fixture, shared

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
ALICE, ALICE_PASSWORD = "alice", "alice-secret"
COUNT = 10


class SaslSslOnlyBroker(SecureBroker):
    """One SASL_SSL listener and nothing else (SecureBroker's other listeners left out)."""

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        port = free_port()
        Broker.__init__(self, data_dir, port=port)
        self.ports = {"SASL_SSL": port}
        self.settings = settings


def conf(pki: dict[str, str], user: str, password: str) -> dict[str, str]:
    return sasl_conf(pki, "SCRAM-SHA-512", user, password)


def as_cli(pki: dict[str, str]) -> list[str]:
    return [f"-X{k}={v}" for k, v in conf(pki, ADMIN, ADMIN_PASSWORD).items()]


def cli_ok(*args: str) -> str:
    done = strom_cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, str]):
    data_dir = tmp_path_factory.mktemp("acls") / "data"
    cli_ok("user", "add", ADMIN, "--password", ADMIN_PASSWORD, "--mechanism", "SCRAM-SHA-512", "--data-dir", str(data_dir))
    broker = SaslSslOnlyBroker(data_dir, {
        "ssl.keystore.location": pki["server"],
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
    })
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def world(secured, pki):
    """As the admin, over TLS + SCRAM: topics alice-orders and secret with records, user alice
    added online, and her ACLs added with the CLI."""
    bootstrap = secured.address("SASL_SSL")
    a = admin(bootstrap, **conf(pki, ADMIN, ADMIN_PASSWORD))
    for future in a.create_topics([NewTopic("alice-orders", 1), NewTopic("secret", 1)]).values():
        future.result(30)
    p = producer(bootstrap, **{k.replace(".", "_"): v for k, v in conf(pki, ADMIN, ADMIN_PASSWORD).items()})
    for topic in ("alice-orders", "secret"):
        for i in range(COUNT):
            p.produce(topic, value=f"{topic}-{i}".encode())
    assert p.flush(30) == 0
    cli_ok("user", "add", ALICE, "--password", ALICE_PASSWORD, "--mechanism", "SCRAM-SHA-512", "-b", bootstrap, *as_cli(pki))
    cli_ok("acl", "add", f"User:{ALICE}", "--operation", "Read", "--topic", "alice-", "--prefixed", "-b", bootstrap, *as_cli(pki))
    cli_ok("acl", "add", f"User:{ALICE}", "--operation", "Read", "--group", "alice-g", "-b", bootstrap, *as_cli(pki))
    return bootstrap


def alice_conf(pki: dict[str, str]) -> dict[str, str]:
    return conf(pki, ALICE, ALICE_PASSWORD)


def snake(c: dict[str, str]) -> dict[str, str]:
    return {k.replace(".", "_"): v for k, v in c.items()}


def test_acls_listed_by_the_cli(world, pki):
    listed = json.loads(cli_ok("acl", "list", "--principal", f"User:{ALICE}", "-b", world, "--output", "json", *as_cli(pki)))
    assert sorted((r["resource_type"], r["resource"], r["pattern"], r["operation"], r["permission"]) for r in listed) == [
        ("GROUP", "alice-g", "LITERAL", "READ", "ALLOW"),
        ("TOPIC", "alice-", "PREFIXED", "READ", "ALLOW"),
    ]


def test_alice_consumes_her_topic_in_her_group(world, pki):
    c = consumer(world, **snake(alice_conf(pki)), group_id="alice-g", enable_partition_eof=False)
    c.subscribe(["alice-orders"])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < COUNT and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
        assert values == [f"alice-orders-{i}".encode() for i in range(COUNT)]
        (committed,) = c.commit(offsets=[TopicPartition("alice-orders", 0, COUNT)], asynchronous=False)
        assert (committed.topic, committed.offset, committed.error) == ("alice-orders", COUNT, None)
    finally:
        c.close()


def test_alice_cannot_produce_to_her_topic(world, pki):
    reports: list[KafkaError | None] = []
    p = producer(world, **snake(alice_conf(pki)))
    p.produce("alice-orders", value=b"nope", on_delivery=lambda err, msg: reports.append(err))
    p.flush(30)
    assert len(reports) == 1 and reports[0] is not None
    assert reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, reports[0]


def test_alice_cannot_read_secret_and_does_not_see_it(world, pki):
    a = admin(world, **alice_conf(pki))
    assert set(a.list_topics(timeout=10).topics) == {"alice-orders"}  # not secret, nor the internal topics
    c = consumer(world, **snake(alice_conf(pki)), group_id="alice-g")
    c.subscribe(["secret"])
    error = None
    deadline = time.monotonic() + 30
    try:
        while error is None and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is not None, f"alice read {msg.value()!r} from secret"
                error = msg.error()
    finally:
        c.close()
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_alice_cannot_create_topics_nor_describe_acls(world, pki):
    a = admin(world, **alice_conf(pki))
    (future,) = a.create_topics([NewTopic("alice-new", 1)]).values()
    with pytest.raises(KafkaException) as created:
        future.result(30)
    assert created.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    # The broker answers CLUSTER_AUTHORIZATION_FAILED; librdkafka drops DescribeAcls' top-level
    # error and returns no ACLs (kafka-python raises it, below): alice sees none either way.
    assert a.describe_acls(everything, request_timeout=30).result(30) == []


def kafka_python_conf(pki: dict[str, str]) -> dict[str, str]:
    return {"security_protocol": "SASL_SSL", "ssl_cafile": pki["ca"], "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": ALICE, "sasl_plain_password": ALICE_PASSWORD}


def test_kafka_python_refuses_acls_and_another_group(world, pki):
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
    )
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import ClusterAuthorizationFailedError, GroupAuthorizationFailedError

    ka = KafkaAdminClient(bootstrap_servers=world, **kafka_python_conf(pki))
    try:
        everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                               ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY))
        with pytest.raises(ClusterAuthorizationFailedError):
            ka.describe_acls(everything)
    finally:
        ka.close()
    kc = KafkaConsumer("alice-orders", group_id="bob-g", bootstrap_servers=world, auto_offset_reset="earliest",
                       **kafka_python_conf(pki))
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                kc.poll(timeout_ms=500)
    finally:
        kc.close()


def test_aiokafka_refuses_secret(world, pki):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import TopicAuthorizationFailedError
    from aiokafka.helpers import create_ssl_context

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=world, security_protocol="SASL_SSL",
                             ssl_context=create_ssl_context(cafile=pki["ca"]), sasl_mechanism="SCRAM-SHA-512",
                             sasl_plain_username=ALICE, sasl_plain_password=ALICE_PASSWORD)
        await p.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await p.send_and_wait("secret", b"nope")
        finally:
            await p.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_acl_add_list_remove_round_trip(world, pki):
    """WRITE on alice- lets alice produce; removed, she is refused again."""
    topic = f"alice-{uuid.uuid4().hex[:6]}"
    a = admin(world, **conf(pki, ADMIN, ADMIN_PASSWORD))
    (future,) = a.create_topics([NewTopic(topic, 1)]).values()
    future.result(30)

    def produce_as_alice() -> KafkaError | None:
        reports: list[KafkaError | None] = []
        p = producer(world, **snake(alice_conf(pki)))
        p.produce(topic, value=b"x", on_delivery=lambda err, msg: reports.append(err))
        p.flush(30)
        assert len(reports) == 1
        return reports[0]

    cli_ok("acl", "add", f"User:{ALICE}", "--operation", "Write", "--topic", "alice-", "--prefixed", "-b", world, *as_cli(pki))
    listed = json.loads(cli_ok("acl", "list", "--topic", "alice-", "--prefixed", "-b", world, "--output", "json", *as_cli(pki)))
    assert sorted(r["operation"] for r in listed) == ["READ", "WRITE"]
    assert produce_as_alice() is None
    cli_ok("acl", "remove", f"User:{ALICE}", "--operation", "Write", "--topic", "alice-", "--prefixed", "-b", world, *as_cli(pki))
    listed = json.loads(cli_ok("acl", "list", "--topic", "alice-", "--prefixed", "-b", world, "--output", "json", *as_cli(pki)))
    assert [r["operation"] for r in listed] == ["READ"]
    refused = produce_as_alice()
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
