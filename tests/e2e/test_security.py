"""TLS and SASL with real clients against a real broker process.

One broker serves five listeners: PLAINTEXT, SSL (client certificates requested), MTLS (SSL
with certificates required and a principal mapping rule), SASL_SSL (SCRAM-SHA-256/512 and
PLAIN) and SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256, sessions re-authenticated every 2 s).
Certificates come from trustme; the first user is added offline before the first start."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import trustme
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from tests.conftest import Broker, free_port
from tests.e2e.helpers import admin, consumer, producer

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"


class SecureBroker(Broker):
    def __init__(self, data_dir: Path, ports: dict[str, int], settings: dict[str, str]) -> None:
        super().__init__(data_dir, port=ports["PLAINTEXT"])
        self.ports = ports
        self.settings = settings

    def command(self) -> list[str]:
        listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.ports.items())
        args = [sys.executable, "-m", "strom", "serve", "--data-dir", str(self.data_dir), "-o", f"listeners={listeners}"]
        for key, value in self.settings.items():
            args += ["-o", f"{key}={value}"]
        return args

    def address(self, listener: str) -> str:  # type: ignore[override]
        return f"127.0.0.1:{self.ports[listener]}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.example", common_name="alice", organization_unit_name="ServiceUsers")
    paths = {"ca": d / "ca.pem", "server": d / "server.pem", "client_cert": d / "client.crt", "client_key": d / "client.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths["server"]))
    for i, blob in enumerate(client.cert_chain_pems):
        blob.write_to_path(str(paths["client_cert"]), append=i > 0)
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    return {k: str(v) for k, v in paths.items()}


def strom_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strom", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, str]):
    data_dir = tmp_path_factory.mktemp("secure") / "data"
    # the first user, offline, before the first start (kafka-storage format --add-scram)
    added = strom_cli("user", "add", ADMIN, "--password", ADMIN_PASSWORD, "--mechanism", "SCRAM-SHA-256",
                      "--mechanism", "SCRAM-SHA-512", "--data-dir", str(data_dir))
    assert added.returncode == 0, added.stderr
    ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "MTLS", "SASL_SSL", "SASL_PLAINTEXT")}
    settings = {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "ssl.keystore.location": pki["server"],
        "ssl.truststore.location": pki["ca"],
        "ssl.client.auth": "requested",
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.principal.mapping.rules": "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "listener.name.sasl_plaintext.connections.max.reauth.ms": "2000",
        "connection.failed.authentication.delay.ms": "300",
    }
    broker = SecureBroker(data_dir, ports, settings)
    broker.start()
    yield broker
    broker.stop()


def sasl_conf(pki: dict[str, str], mechanism: str = "SCRAM-SHA-512", user: str = ADMIN, password: str = ADMIN_PASSWORD,
              protocol: str = "SASL_SSL") -> dict[str, str]:
    conf = {"security.protocol": protocol, "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    if protocol.endswith("SSL"):
        conf["ssl.ca.location"] = pki["ca"]
    return conf


def roundtrip(bootstrap: str, conf: dict[str, str], count: int = 20) -> list[bytes]:
    """Create a topic, produce ``count`` records and read them back, all with ``conf``."""
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    p = producer(bootstrap, **{k.replace(".", "_"): v for k, v in conf.items()})
    for i in range(count):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = consumer(bootstrap, **{k.replace(".", "_"): v for k, v in conf.items()})
    c.assign([__import__("confluent_kafka").TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < count and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
    c.close()
    return values


def expect_auth_failure(bootstrap: str, conf: dict[str, str]) -> KafkaError:
    """A producer whose credentials are refused: its error callback reports it."""
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": bootstrap, "error_cb": errors.append, **conf})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    assert errors, "no error reported"
    return errors[0]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_confluent_over_sasl_ssl(secure, pki, mechanism):
    expected = [f"v{i}".encode() for i in range(20)]
    assert roundtrip(secure.address("SASL_SSL"), sasl_conf(pki, mechanism)) == expected


def test_metadata_names_the_listener_the_client_used(secure, pki):
    a = admin(secure.address("SASL_SSL"), **sasl_conf(pki))
    brokers = a.list_topics(timeout=10).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [("127.0.0.1", secure.ports["SASL_SSL"])]
    plain = admin(secure.bootstrap).list_topics(timeout=10).brokers
    assert [b.port for b in plain.values()] == [secure.ports["PLAINTEXT"]]


def test_tls_without_sasl_and_mutual_tls(secure, pki):
    tls = {"security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    assert len(roundtrip(secure.address("SSL"), tls, 5)) == 5
    mtls = {**tls, "ssl.certificate.location": pki["client_cert"], "ssl.key.location": pki["client_key"]}
    assert len(roundtrip(secure.address("MTLS"), mtls, 5)) == 5
    # no client certificate where one is required: the TLS handshake fails
    err = expect_auth_failure(secure.address("MTLS"), tls)
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err


def test_a_client_that_does_not_trust_the_broker_fails(secure, tmp_path):
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    err = expect_auth_failure(secure.address("SSL"), {"security.protocol": "SSL", "ssl.ca.location": str(tmp_path / "other.pem")})
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err


@pytest.mark.parametrize(("mechanism", "password"), [("SCRAM-SHA-256", "wrong"), ("PLAIN", "wrong")])
def test_wrong_passwords_are_refused_and_the_broker_keeps_serving(secure, pki, mechanism, password):
    started = time.monotonic()
    err = expect_auth_failure(secure.address("SASL_SSL"), sasl_conf(pki, mechanism, password=password))
    assert err.code() == KafkaError._AUTHENTICATION, err
    assert "invalid credentials" in err.str()
    assert time.monotonic() - started >= 0.3  # connection.failed.authentication.delay.ms
    assert "failed authentication from 127.0.0.1 on listener SASL_SSL" in secure.log_text(0)
    assert secure.alive
    assert len(roundtrip(secure.address("SASL_SSL"), sasl_conf(pki), 3)) == 3


def test_a_mechanism_not_enabled_on_the_listener_is_refused(secure, pki):
    err = expect_auth_failure(secure.address("SASL_PLAINTEXT"),
                              sasl_conf(pki, "SCRAM-SHA-512", protocol="SASL_PLAINTEXT"))
    assert err.code() == KafkaError._AUTHENTICATION, err
    assert "SCRAM-SHA-512" in err.str()


def _raw_request(api_key: int, version: int, body: bytes = b"") -> bytes:
    header = struct.pack(">hhih", api_key, version, 7, 4) + b"test"
    return struct.pack(">i", len(header) + len(body)) + header + body


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(4) == b""
    except ConnectionResetError:
        return True


def test_requests_before_authentication_close_the_connection(secure):
    with socket.create_connection(("127.0.0.1", secure.ports["SASL_PLAINTEXT"])) as s:
        s.sendall(_raw_request(3, 1, struct.pack(">i", -1)))  # Metadata before SASL
        assert _closed(s)
    with socket.create_connection(("127.0.0.1", secure.ports["SASL_PLAINTEXT"])) as s:
        s.sendall(struct.pack(">i", 600 * 1024))  # larger than sasl.server.max.receive.size
        assert _closed(s)
    with socket.create_connection(("127.0.0.1", secure.ports["SASL_PLAINTEXT"])) as s:
        s.sendall(_raw_request(18, 0))  # ApiVersions is allowed
        s.settimeout(5)
        (size,) = struct.unpack(">i", s.recv(4))
        assert size > 0
    assert secure.alive


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_plaintext_on_a_tls_port_is_refused(secure):
    with socket.create_connection(("127.0.0.1", secure.ports["SSL"])) as s:
        s.sendall(_raw_request(18, 0))
        assert _closed(s)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", secure.ports["SSL"])) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw).do_handshake()  # TLS 1.1 is refused
    assert secure.alive


def test_users_added_online_and_deleted(secure, pki):
    bootstrap = secure.address("SASL_SSL")
    as_admin = [f"-X{k}={v}" for k, v in sasl_conf(pki).items()]
    added = strom_cli("user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-256",
                      "-b", bootstrap, *as_admin)
    assert added.returncode == 0, added.stderr
    listed = strom_cli("user", "list", "-b", bootstrap, "--output", "json", *as_admin)
    assert listed.returncode == 0, listed.stderr
    users = {u["user"]: u["mechanisms"] for u in __import__("json").loads(listed.stdout)}
    assert users["bob"] == [{"mechanism": "SCRAM-SHA-256", "iterations": 4096}]
    assert {m["mechanism"] for m in users[ADMIN]} == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
    bob = sasl_conf(pki, "SCRAM-SHA-256", "bob", "bob-secret")
    assert len(roundtrip(bootstrap, bob, 3)) == 3
    assert len(roundtrip(bootstrap, sasl_conf(pki, "PLAIN", "bob", "bob-secret"), 3)) == 3  # PLAIN: same users
    deleted = strom_cli("user", "delete", "bob", "-b", bootstrap, *as_admin)
    assert deleted.returncode == 0, deleted.stderr
    assert expect_auth_failure(bootstrap, bob).code() == KafkaError._AUTHENTICATION


def test_admin_api_errors(secure, pki):
    a = admin(secure.address("SASL_SSL"), **sasl_conf(pki))
    futures = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw"),
    ])
    with pytest.raises(Exception, match="Too few iterations"):
        futures["carol"].result(10)
    described = a.describe_user_scram_credentials(["nobody"])
    with pytest.raises(Exception, match="does not exist"):
        described["nobody"].result(10)


def test_sessions_are_reauthenticated(secure, pki):
    """connections.max.reauth.ms=2000 on SASL_PLAINTEXT: the client re-authenticates on the
    same connection (KIP-368) and keeps producing past several session lifetimes."""
    conf = sasl_conf(pki, "SCRAM-SHA-256", protocol="SASL_PLAINTEXT")
    topic = f"reauth-{uuid.uuid4().hex[:8]}"
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": secure.address("SASL_PLAINTEXT"), "error_cb": errors.append, **conf})
    delivered = []
    for _ in range(14):
        p.produce(topic, value=b"x", on_delivery=lambda err, msg: delivered.append(err))
        p.flush(10)
        time.sleep(0.5)
    assert delivered == [None] * 14 and not errors
    assert "expired" not in secure.log_text(0)


MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _kafka_python_conf(secure, pki, mechanism: str | None) -> dict[str, Any]:
    """kafka-python's settings: SASL_SSL with a mechanism, or mutual TLS (None)."""
    if mechanism is None:
        return {"bootstrap_servers": secure.address("MTLS"), "security_protocol": "SSL", "ssl_cafile": pki["ca"],
                "ssl_certfile": pki["client_cert"], "ssl_keyfile": pki["client_key"]}
    return {"bootstrap_servers": secure.address("SASL_SSL"), "security_protocol": "SASL_SSL", "ssl_cafile": pki["ca"],
            "sasl_mechanism": mechanism, "sasl_plain_username": ADMIN, "sasl_plain_password": ADMIN_PASSWORD}


@pytest.mark.parametrize("mechanism", [*MECHANISMS, None], ids=[*MECHANISMS, "mTLS"])
def test_kafka_python(secure, pki, mechanism):
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"kp-{uuid.uuid4().hex[:8]}"
    conf = _kafka_python_conf(secure, pki, mechanism)
    kp = KafkaProducer(**conf)
    for i in range(5):
        kp.send(topic, f"kp{i}".encode()).get(timeout=20)
    kp.close()
    kc = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000, **conf)
    assert [m.value for m in kc] == [f"kp{i}".encode() for i in range(5)]
    kc.close()


@pytest.mark.parametrize("mechanism", [*MECHANISMS, None], ids=[*MECHANISMS, "mTLS"])
def test_aiokafka(secure, pki, mechanism):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    topic = f"aio-{uuid.uuid4().hex[:8]}"

    async def main() -> list[bytes]:
        if mechanism is None:
            conf: dict[str, Any] = {"bootstrap_servers": secure.address("MTLS"), "security_protocol": "SSL",
                                    "ssl_context": create_ssl_context(cafile=pki["ca"], certfile=pki["client_cert"],
                                                                      keyfile=pki["client_key"])}
        else:
            conf = {"bootstrap_servers": secure.address("SASL_SSL"), "security_protocol": "SASL_SSL",
                    "ssl_context": create_ssl_context(cafile=pki["ca"]), "sasl_mechanism": mechanism,
                    "sasl_plain_username": ADMIN, "sasl_plain_password": ADMIN_PASSWORD}
        producer = AIOKafkaProducer(**conf)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"aio{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **conf)
        await consumer.start()
        try:
            got: list[bytes] = []
            while len(got) < 5:
                batch = await consumer.getmany(timeout_ms=1000)
                got += [m.value for msgs in batch.values() for m in msgs]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [f"aio{i}".encode() for i in range(5)]


@pytest.mark.parametrize("mechanism", [*MECHANISMS, None], ids=[*MECHANISMS, "mTLS"])
def test_kcat(secure, pki, mechanism):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat is not installed (scripts/test.sh installs it)")
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    if mechanism is None:
        address, settings = secure.address("MTLS"), {"security.protocol": "SSL", "ssl.ca.location": pki["ca"],
                                                     "ssl.certificate.location": pki["client_cert"],
                                                     "ssl.key.location": pki["client_key"]}
    else:
        address, settings = secure.address("SASL_SSL"), sasl_conf(pki, mechanism)
    conf = [arg for k, v in settings.items() for arg in ("-X", f"{k}={v}")]
    produced = subprocess.run([kcat, "-b", address, *conf, "-P", "-t", topic],
                              input=b"one\ntwo\n", capture_output=True, timeout=30)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run([kcat, "-b", address, *conf, "-C", "-t", topic, "-o", "beginning", "-e", "-q"],
                              capture_output=True, timeout=30)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == [b"one", b"two"]


def test_expired_sessions(secure, pki):
    """SASL_PLAINTEXT has 2 s sessions: kafka-python re-authenticates on its connection
    (KIP-368); aiokafka does not, so its connection is closed at its first request after the
    session ended, and it reconnects, authenticates again and its send succeeds."""
    from aiokafka import AIOKafkaProducer
    from kafka import KafkaProducer

    topic = f"expire-{uuid.uuid4().hex[:8]}"
    settings = {"bootstrap_servers": secure.address("SASL_PLAINTEXT"), "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": ADMIN, "sasl_plain_password": ADMIN_PASSWORD}
    kp = KafkaProducer(**settings)
    kp.send(topic, b"kafka-python before").get(timeout=20)
    time.sleep(2.5)
    kp.send(topic, b"kafka-python after").get(timeout=30)
    kp.close()
    assert "SASL session expired" not in secure.log_text(0)

    async def main() -> None:
        producer = AIOKafkaProducer(**settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"aiokafka before")
            await asyncio.sleep(2.5)
            await producer.send_and_wait(topic, b"aiokafka after")
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert "SASL session expired" in secure.log_text(0)
