"""Client-side helpers shared by the end-to-end tests (confluent-kafka and raw sockets)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

# Generous but bounded waits: every loop in this suite ends by itself.
DEFAULT_TIMEOUT = 30.0


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# -- confluent-kafka -------------------------------------------------------------------------------


def producer(bootstrap: str, **conf) -> Producer:
    c = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "enable.idempotence": False,  # idempotence is a later issue
        "socket.timeout.ms": 10000,
        "message.timeout.ms": 20000,
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(c)


def consumer(bootstrap: str, **conf) -> Consumer:
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": f"strom-e2e-{uuid.uuid4().hex[:8]}",  # required by the client; never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(c)


def admin(bootstrap: str, **conf) -> AdminClient:
    c = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}
    c.update(conf)
    return AdminClient(c)


@dataclass
class Delivered:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: KafkaError | None = None
    timestamp: tuple[int, int] | None = None


@dataclass
class DeliveryLog:
    reports: list[Delivered] = field(default_factory=list)

    def __call__(self, err, msg) -> None:
        self.reports.append(
            Delivered(
                msg.topic(),
                msg.partition(),
                msg.offset(),
                msg.key(),
                msg.value(),
                err,
                msg.timestamp(),
            )
        )

    @property
    def errors(self) -> list[Delivered]:
        return [r for r in self.reports if r.error is not None]


def flush(p: Producer, timeout: float = DEFAULT_TIMEOUT) -> None:
    left = p.flush(timeout)
    assert left == 0, f"{left} messages still undelivered after {timeout}s"


def produce_many(
    p: Producer,
    topic: str,
    records: Iterable[dict],
    timeout: float = DEFAULT_TIMEOUT,
) -> DeliveryLog:
    """Produce dicts of Producer.produce kwargs (value=, key=, partition=, headers=, ...).

    Returns the delivery log after flush; any delivery error fails the test.
    """
    log = DeliveryLog()
    for rec in records:
        while True:
            try:
                p.produce(topic, on_delivery=log, **rec)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    flush(p, timeout)
    assert not log.errors, f"delivery errors: {[(r.partition, r.error) for r in log.errors[:5]]}"
    return log


def consume(
    bootstrap: str,
    topic: str,
    partitions: dict[int, int] | Iterable[int] = (0,),
    *,
    count: int | None = None,
    until_eof: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    **conf,
) -> list:
    """assign() the partitions (dict partition -> start offset, or list = from beginning) and read.

    Stops when `count` messages arrived, or (if count is None and until_eof) when every partition
    has reported EOF. Returns confluent Message objects in arrival order.
    """
    if not isinstance(partitions, dict):
        partitions = {p: OFFSET_BEGINNING for p in partitions}
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, off) for p, off in partitions.items()])
        out: list = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while True:
            if count is not None and len(out) >= count:
                break
            if count is None and until_eof and eof >= set(partitions):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"consume timed out after {timeout}s: got {len(out)} messages"
                    + (f" of {count}" if count is not None else "")
                    + f", eof on {sorted(eof)} of {sorted(partitions)}"
                )
            batch = c.consume(num_messages=10000, timeout=0.2)
            for m in batch:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise KafkaException(err)
                eof.discard(m.partition())
                out.append(m)
        return out
    finally:
        c.close()


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    a = admin(bootstrap)
    futs = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=timeout,
    )
    futs[topic].result(timeout)
    wait_for_topic(a, topic, partitions, timeout)


def wait_for_topic(a, topic: str, partitions: int | None = None, timeout: float = DEFAULT_TIMEOUT):
    """Poll metadata until the topic is visible with a leader on every partition."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        last = t
        if (
            t is not None
            and t.error is None
            and t.partitions
            and (partitions is None or len(t.partitions) == partitions)
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return t
        time.sleep(0.05)
    raise AssertionError(f"topic {topic} not ready after {timeout}s: {last}")


def watermarks(bootstrap: str, topic: str, partition: int = 0, timeout: float = 10) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    finally:
        c.close()


# -- raw protocol ----------------------------------------------------------------------------------


def api_versions_v3_frame(correlation_id: int = 1, client_id: str = "strom-e2e") -> bytes:
    """A hand-built ApiVersions v3 request (independent of strom's own codec)."""
    cid = client_id.encode()
    header = struct.pack(">hhih", 18, 3, correlation_id, len(cid)) + cid + b"\x00"  # header v2
    name, ver = b"strom-e2e", b"1.0"
    body = bytes([len(name) + 1]) + name + bytes([len(ver) + 1]) + ver + b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 0 <= size < 64 * 1024 * 1024, f"bad response size {size}"
    return recv_exact(sock, size)


def read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def check_api_versions(host: str, port: int, timeout: float = 5.0, correlation_id: int = 424242) -> dict:
    """Send a raw ApiVersions v3 request on a fresh connection and validate the response.

    Returns {api_key: (min, max)}. Raises AssertionError / OSError when the broker misbehaves.
    """
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(api_versions_v3_frame(correlation_id))
        resp = recv_frame(s)
    (corr,) = struct.unpack_from(">i", resp, 0)  # ApiVersions responses always use header v0
    assert corr == correlation_id, f"correlation id {corr} != {correlation_id}"
    (err,) = struct.unpack_from(">h", resp, 4)
    assert err == 0, f"ApiVersions error_code {err}"
    n, pos = read_uvarint(resp, 6)
    keys = {}
    for _ in range(n - 1):
        k, lo, hi = struct.unpack_from(">hhh", resp, pos)
        pos += 6
        tags, pos = read_uvarint(resp, pos)
        assert tags == 0
        keys[k] = (lo, hi)
    assert 18 in keys, f"ApiVersions not advertised: {keys}"
    return keys


def ask(host: str, port: int, api_key: int, version: int, body: dict[str, Any], timeout: float = 15.0) -> Any:
    """One request on a connection of its own to one broker, its decoded response."""
    from strom.client.connection import BrokerConnection

    async def request() -> Any:
        conn = await BrokerConnection.open(host, port, client_id="strom-e2e", request_timeout_s=timeout)
        try:
            return await conn.request(api_key, version, body)
        finally:
            conn.close()

    return asyncio.run(asyncio.wait_for(request(), timeout + 5))
