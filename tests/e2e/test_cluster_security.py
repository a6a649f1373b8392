"""Brokers that reach each other over SASL_SSL (issue 13 item 1): replication and transaction
markers authenticate with the brokers' own SCRAM user, the authorizer on; clients use the
PLAINTEXT listener here. A wrong inter-broker password stops replication, not the cluster."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import trustme
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

import strom

JAAS = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="{}";'


def secure_cluster(tmp: Path, password: str, **config: str) -> strom.Cluster:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp / "broker.pem"))
    return strom.Cluster(brokers=3, listeners={"INTERNAL": "SASL_SSL"}, session_timeout_ms=3000, config={
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.location": str(tmp / "broker.pem"),
        "ssl.truststore.location": str(tmp / "ca.pem"),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.internal.scram-sha-512.sasl.jaas.config": JAAS.format(password),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:broker",
        "allow.everyone.if.no.acl.found": "true",  # the test's clients, on PLAINTEXT, have no ACL
        "group.initial.rebalance.delay.ms": "0",
        **config,
    })


def add_broker_user(admin: AdminClient) -> None:
    # The brokers' user lives in etcd like every user: added once, before replication starts.
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "broker", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"broker-secret")])
    futures["broker"].result(30)


def isr(admin: AdminClient, topic: str) -> list[int]:
    md = admin.list_topics(topic, timeout=10).topics[topic]
    return sorted(md.partitions[0].isrs) if md.error is None and 0 in md.partitions else []


def wait_isr(admin: AdminClient, topic: str, size: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(current := isr(admin, topic)) == size:
            return current
        time.sleep(0.2)
    return isr(admin, topic)


def produce_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(count):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(60) == 0
    return errors


def test_brokers_replicate_over_sasl_ssl(tmp_path):
    with secure_cluster(tmp_path, "broker-secret") as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        add_broker_user(admin)
        topic = f"secure-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
        assert wait_isr(admin, topic, 3) == [0, 1, 2]
        assert produce_all(cluster.bootstrap_servers, topic, 200) == []
        logs = "\n".join(cluster.logs(n) for n in cluster.nodes)
        assert "failed authentication" not in logs
        assert "listening on" in logs and "INTERNAL" in logs


def test_a_wrong_inter_broker_password_stops_replication_only(tmp_path):
    # a new partition's ISR is every replica; the followers drop out after replica.lag.time.max.ms
    with secure_cluster(tmp_path, "not-the-password", **{"replica.lag.time.max.ms": "2000"}) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        add_broker_user(admin)
        topic = f"refused-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "1"})])[topic].result(30)
        assert len(wait_isr(admin, topic, 1)) == 1  # followers cannot authenticate to the leader
        assert produce_all(cluster.bootstrap_servers, topic, 10) == []  # acks=all with min.insync 1
        logs = "\n".join(cluster.logs(n) for n in cluster.nodes)
        assert "failed authentication" in logs and "invalid credentials" in logs


def test_the_authorizer_needs_the_brokers_principal_as_super_user(tmp_path):
    cluster = secure_cluster(tmp_path, "broker-secret")
    cluster.config["super.users"] = "User:admin"
    with pytest.raises(Exception, match="super.users must include User:broker"):
        cluster.start()
    cluster.stop()
