"""Client quotas with real clients: strom quota set/list/remove (also over SASL_SSL), a
producer and a consumer over their byte rates get throttle times (KIP-219), errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from strom.cli.wire import call
from strom.protocol import ApiKey
from tests.e2e import test_security
from tests.e2e.test_security import sasl_conf

pki, secure = test_security.pki, test_security.secure  # the fixtures


def strom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strom", *args], capture_output=True, text=True, timeout=60)


def test_set_list_remove(broker):
    b = ["-b", broker.bootstrap]
    assert strom("quota", "set", "producer_byte_rate=1048576", "consumer_byte_rate=2097152", "--user", "alice", *b).returncode == 0
    assert strom("quota", "set", "request_percentage=25.5", "--client-id", "<default>", *b).returncode == 0
    listed = json.loads(strom("quota", "list", "--output", "json", *b).stdout)
    assert {"user": "alice", "client_id": None, "quotas": {"consumer_byte_rate": 2097152.0, "producer_byte_rate": 1048576.0}} in listed
    assert {"user": None, "client_id": "<default>", "quotas": {"request_percentage": 25.5}} in listed
    only = json.loads(strom("quota", "list", "--user", "alice", "--output", "json", *b).stdout)
    assert [r["user"] for r in only] == ["alice"]
    assert strom("quota", "remove", "producer_byte_rate", "consumer_byte_rate", "--user", "alice", *b).returncode == 0
    assert strom("quota", "remove", "request_percentage", "--client-id", "<default>", *b).returncode == 0
    assert json.loads(strom("quota", "list", "--output", "json", *b).stdout) == []
    bad = strom("quota", "set", "producer_byte_rate=1.5", "--user", "alice", *b)
    assert bad.returncode != 0 and "whole number" in bad.stderr


def test_refused_requests(broker):
    answer = call(broker.bootstrap, 5, {}, ApiKey.ALTER_CLIENT_QUOTAS, 1, {"entries": [
        {"entity": [{"entity_type": "user", "entity_name": "x"}], "ops": [{"key": "nonsense", "value": 1.0, "remove": False}]},
        {"entity": [{"entity_type": "ip", "entity_name": "1.2.3.4"}], "ops": [{"key": "producer_byte_rate", "value": 1.0, "remove": False}]},
    ], "validate_only": False})
    assert [(e.error_code, e.error_message) for e in answer.entries] == [
        (42, "Unknown quota key: nonsense"), (42, "Unsupported quota entity type: ip (strom serves user and client-id)")]


def test_quota_commands_over_sasl_ssl(secure, pki):
    conf = [f"-X{k}={v}" for k, v in sasl_conf(pki).items()]
    b = ["-b", secure.address("SASL_SSL"), *conf]
    assert strom("quota", "set", "producer_byte_rate=5000", "--user", "bob", *b).returncode == 0
    listed = json.loads(strom("quota", "list", "--output", "json", *b).stdout)
    assert {"user": "bob", "client_id": None, "quotas": {"producer_byte_rate": 5000.0}} in listed
    assert strom("quota", "remove", "producer_byte_rate", "--user", "bob", *b).returncode == 0
    wrong_conf = [f"-X{k}={v}" for k, v in sasl_conf(pki, password="wrong").items()]
    wrong = strom("quota", "list", "-b", secure.address("SASL_SSL"), *wrong_conf)
    assert wrong.returncode != 0 and "invalid credentials" in wrong.stderr


def test_producer_and_consumer_over_their_byte_rates_are_throttled(broker):
    """20 KB/s quotas, 300 KB each way: the broker answers with throttle times (the client's
    throttle_cb sees them) and mutes the connection; everything still arrives."""
    b = ["-b", broker.bootstrap]
    client = f"throttled-{uuid.uuid4().hex[:6]}"
    assert strom("quota", "set", "producer_byte_rate=20000", "consumer_byte_rate=20000", "--client-id", client, *b).returncode == 0
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    throttles: list[int] = []
    # small batches: a fetch answer is capped at the quota's window (200 KB here) but always
    # carries at least one batch, and a batch over the window could never be fetched unthrottled
    p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": client, "linger.ms": 5, "batch.size": 16384,
                  "throttle_cb": lambda event: throttles.append(event.throttle_time)})
    for _ in range(300):
        p.produce(topic, b"x" * 1000)
    assert p.flush(60) == 0
    p.poll(0.5)
    assert throttles and max(throttles) > 0
    seen: list[int] = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "client.id": client, "group.id": client,
                  "throttle_cb": lambda event: seen.append(event.throttle_time), "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = 0, time.monotonic() + 120
    while got < 300 and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is not None and msg.error() is None:
            got += 1
    c.close()
    assert got == 300
    assert seen and max(seen) > 0
    strom("quota", "remove", "producer_byte_rate", "consumer_byte_rate", "--client-id", client, *b)
