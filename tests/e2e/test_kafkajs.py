"""kafkajs (the Node.js Kafka client) over TLS and SASL against a real broker process.

The broker is test_security's: its fixtures (``secure``, ``pki``) and its librdkafka-style
``sasl_conf`` are reused, and tests/js/kafkajs_client.js turns one JSON request into kafkajs
calls (``ssl: {ca, cert, key}``, ``sasl: {mechanism, username, password}``). kafkajs is pinned
in tests/js/package.json; scripts/test.sh installs Node (Debian's nodejs and npm) and runs
``npm ci --prefix tests/js``. Without them the tests skip, or fail when CI is set (as kcat's)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e import test_security
from tests.e2e.helpers import consume, running_in_ci
from tests.e2e.test_security import sasl_conf

pytestmark = pytest.mark.timeout(180)

pki = test_security.pki  # the trustme certificates
secure = test_security.secure  # one broker with PLAINTEXT, SSL, MTLS, SASL_SSL and SASL_PLAINTEXT listeners

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "kafkajs_client.js"
NODE = shutil.which("node") or shutil.which("nodejs")


@pytest.fixture(scope="module")
def node() -> str:
    missing = None
    if NODE is None:
        missing = "node is not installed (scripts/test.sh installs Debian's nodejs)"
    elif not (JS_DIR / "node_modules" / "kafkajs" / "package.json").is_file():
        missing = "kafkajs is not installed (scripts/test.sh runs npm ci --prefix tests/js)"
    if missing:
        if running_in_ci():
            pytest.fail(f"{missing}; required under CI")
        pytest.skip(f"{missing}; required under CI")
    return NODE


def kafkajs_options(conf: dict[str, str]) -> dict:
    """kafkajs's ``ssl`` / ``sasl`` options for a librdkafka-style security conf (``sasl_conf``)."""
    protocol = conf.get("security.protocol", "PLAINTEXT")
    options: dict = {}
    if protocol in ("SSL", "SASL_SSL"):
        ssl = {"ca": conf["ssl.ca.location"]}
        if "ssl.certificate.location" in conf:
            ssl |= {"cert": conf["ssl.certificate.location"], "key": conf["ssl.key.location"]}
        options["ssl"] = ssl
    if protocol.startswith("SASL_"):
        options["sasl"] = {"mechanism": conf["sasl.mechanism"].lower(), "username": conf["sasl.username"],
                           "password": conf["sasl.password"]}
    return options


def kafkajs(node: str, bootstrap: str, conf: dict[str, str], action: str, timeout: float = 60, **request) -> dict:
    """Run one action of tests/js/kafkajs_client.js; its JSON result (``ok`` true or an ``error``)."""
    req = {"brokers": [bootstrap], "action": action, "timeoutMs": int((timeout - 10) * 1000),
           **kafkajs_options(conf), **request}
    proc = subprocess.run([node, str(SCRIPT)], input=json.dumps(req), capture_output=True, text=True,
                          timeout=timeout, cwd=JS_DIR)
    assert proc.returncode == 0 and proc.stdout.strip(), f"node exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def ok(result: dict) -> dict:
    assert result["ok"], f"kafkajs failed: {result['error']}\nkafkajs log:\n{result['stderr']}"
    return result


def produce_and_consume(node: str, bootstrap: str, conf: dict[str, str], count: int = 10) -> list[dict]:
    """kafkajs produces ``count`` keyed records to a new topic, then reads them in a consumer group."""
    topic, group = f"js-{uuid.uuid4().hex[:8]}", f"js-g-{uuid.uuid4().hex[:8]}"
    sent = [{"key": f"k{i}", "value": f"v{i}"} for i in range(count)]
    produced = ok(kafkajs(node, bootstrap, conf, "produce", topic=topic, messages=sent))
    assert [r["errorCode"] for r in produced["records"]] == [0]
    got = ok(kafkajs(node, bootstrap, conf, "consume", topic=topic, groupId=group, count=count))
    assert [(m["key"], m["value"]) for m in got["messages"]] == [(m["key"], m["value"]) for m in sent]
    assert [m["offset"] for m in got["messages"]] == [str(i) for i in range(count)]
    assert got["committed"] == [{"partition": 0, "offset": str(count)}]  # the group's offsets, committed
    return got["messages"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafkajs_over_sasl_ssl(node, secure, pki, mechanism):
    conf = sasl_conf(pki, mechanism)
    produce_and_consume(node, secure.address("SASL_SSL"), conf)
    info = ok(kafkajs(node, secure.address("SASL_SSL"), conf, "admin"))
    # the metadata names the listener kafkajs came in on
    assert [(b["host"], b["port"]) for b in info["brokers"]] == [("127.0.0.1", secure.ports["SASL_SSL"])]


def test_kafkajs_records_read_by_librdkafka(node, secure, pki):
    """What kafkajs writes over SASL_SSL is what confluent-kafka reads (and the reverse direction
    is the consume above): the record batches kafkajs builds are stored as they came."""
    conf = sasl_conf(pki, "SCRAM-SHA-256")
    topic = f"js-x-{uuid.uuid4().hex[:8]}"
    ok(kafkajs(node, secure.address("SASL_SSL"), conf, "produce", topic=topic,
               messages=[{"key": "a", "value": "x" * 1000}, {"value": "no key"}]))
    msgs = consume(secure.address("SASL_SSL"), topic, [0], **{k.replace(".", "_"): v for k, v in conf.items()})
    assert [(m.key(), m.value()) for m in msgs] == [(b"a", b"x" * 1000), (None, b"no key")]


def test_kafkajs_over_mutual_tls(node, secure, pki):
    mtls = {"security.protocol": "SSL", "ssl.ca.location": pki["ca"],
            "ssl.certificate.location": pki["client_cert"], "ssl.key.location": pki["client_key"]}
    produce_and_consume(node, secure.address("MTLS"), mtls, count=5)
    # without a client certificate the broker ends the TLS handshake
    no_cert = {"security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    refused = kafkajs(node, secure.address("MTLS"), no_cert, "admin", retries=0)
    assert not refused["ok"], refused
    error = refused["error"].get("cause") or refused["error"]  # retries exceeded, caused by the closed connection
    assert error["name"] in ("KafkaJSConnectionClosedError", "KafkaJSConnectionError"), refused["error"]
    assert secure.alive


def test_kafkajs_wrong_password_is_refused_and_the_broker_keeps_serving(node, secure, pki):
    started = time.monotonic()
    refused = kafkajs(node, secure.address("SASL_SSL"), sasl_conf(pki, "SCRAM-SHA-512", password="wrong"), "admin")
    assert not refused["ok"], refused
    assert refused["error"]["name"] == "KafkaJSSASLAuthenticationError", refused["error"]
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in refused["error"]["message"], refused["error"]
    assert time.monotonic() - started >= 0.3  # connection.failed.authentication.delay.ms
    assert "failed authentication from 127.0.0.1 on listener SASL_SSL" in secure.log_text(0)
    refused_plain = kafkajs(node, secure.address("SASL_SSL"), sasl_conf(pki, "PLAIN", password="wrong"), "admin")
    assert refused_plain["error"]["name"] == "KafkaJSSASLAuthenticationError", refused_plain["error"]
    assert "invalid credentials with SASL mechanism PLAIN" in refused_plain["error"]["message"], refused_plain["error"]
    assert secure.alive
    # the right password still works, with kafkajs and librdkafka
    produce_and_consume(node, secure.address("SASL_SSL"), sasl_conf(pki, "SCRAM-SHA-512"), count=3)
    assert len(test_security.roundtrip(secure.address("SASL_SSL"), sasl_conf(pki), 3)) == 3
