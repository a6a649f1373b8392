"""Idempotent producers: retries after broken connections write every record exactly once.

A small TCP proxy sits between the clients and the broker (the broker advertises the proxy's
address, so every connection goes through it). Now and then it swallows the broker's
next response and cuts that connection: the broker has appended the batch, the client never
hears so and sends it again. Without idempotence that duplicates records (checked below).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from conftest import free_port
from kafka import KafkaProducer

from strom.protocol.records import read_header

from .helpers import DeliveryLog, ask, consume, create_topic, producer

pytestmark = pytest.mark.timeout(180)


class DroppingProxy:
    """Forwards 127.0.0.1:port to the broker. Every ``cut_every``-th chunk the broker sends
    (up to ``max_cuts``) vanishes along with its connection."""

    def __init__(self, port: int, target_port: int, cut_every: int = 8, max_cuts: int = 12) -> None:
        self.cut_every = cut_every
        self.max_cuts = max_cuts
        self._chunks = 0
        self.target_port = target_port
        self.port = port
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.drops = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_broker: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_broker and self._should_cut():
                    break  # the response is lost with the connection
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _should_cut(self) -> bool:
        with self._lock:
            self._chunks += 1
            if self.drops < self.max_cuts and self._chunks % self.cut_every == 0:
                self.drops += 1
                return True
            return False

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def proxied(broker_factory):
    port = free_port()
    b = broker_factory("--advertise", f"127.0.0.1:{port}", start=False)
    proxy = DroppingProxy(port, b.port)
    b.start()
    yield b, proxy
    proxy.close()


def test_confluent_idempotent_producer_survives_dropped_connections(proxied, unique_topic):
    b, proxy = proxied
    bootstrap = f"127.0.0.1:{proxy.port}"
    topic = unique_topic()
    create_topic(bootstrap, topic, partitions=3)
    p = producer(bootstrap, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                               "message.timeout.ms": 60000, "retry.backoff.ms": 20,
                               "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100})
    log = DeliveryLog()
    total = 20_000
    for i in range(total):
        while True:
            try:
                p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 3, on_delivery=log)
                break
            except BufferError:
                p.poll(0.01)
        if i % 200 == 0:
            p.poll(0)
            time.sleep(0.03)  # spread the sends over a few seconds, so the drops hit them
    assert p.flush(60) == 0
    assert proxy.drops >= 5, f"the proxy cut only {proxy.drops} responses"
    assert not log.errors, f"{len(log.errors)} delivery errors, e.g. {log.errors[0].error}"

    msgs = consume(bootstrap, topic, [0, 1, 2], timeout=60)
    values = [m.value() for m in msgs]
    assert len(values) == total and set(values) == {f"v{i}".encode() for i in range(total)}, (
        f"{len(values)} stored for {total} sent: duplicates or losses"
    )
    for partition in range(3):
        mine = [int(m.value()[1:]) for m in msgs if m.partition() == partition]
        assert mine == sorted(mine), f"partition {partition} out of order"
    reported = {(r.partition, r.offset): r.value for r in log.reports}
    assert all(reported[(m.partition(), m.offset())] == m.value() for m in msgs)


def test_kafka_python_default_producer_is_idempotent(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)  # defaults: idempotence, acks=all
    metas = [p.send(topic, value=f"v{i}".encode()).get(timeout=30) for i in range(10)]
    p.close()
    assert [m.offset for m in metas] == list(range(10))
    data = (broker.data_dir / f"{topic}-0" / "00000000000000000000.log").read_bytes()
    header = read_header(data)
    assert header.producer_id >= 0 and header.base_sequence == 0


def test_every_in_flight_batch_is_still_a_duplicate_after_a_clean_restart(broker_factory, unique_topic):
    """A producer with five batches in flight when the broker stops sends them all again
    afterwards: each is answered with its first offsets and none is written twice."""
    from strom.protocol.api import ApiKey
    from strom.protocol.records import build_batch

    broker = broker_factory()
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    init = ask(*broker.address, ApiKey.INIT_PRODUCER_ID, 4, {
        "transactional_id": None, "transaction_timeout": 60_000, "producer_id": -1, "producer_epoch": -1,
    })
    now = int(time.time() * 1000)

    def produce(seq: int) -> tuple[int, int]:
        batch = build_batch([(None, f"v{seq + i}".encode(), (), now) for i in range(3)],
                            producer_id=init.producer_id, producer_epoch=init.producer_epoch, base_sequence=seq)
        response = ask(*broker.address, ApiKey.PRODUCE, 9, {
            "transactional_id": None, "acks": -1, "timeout": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
        })
        (part,) = response.responses[0].partition_responses
        return part.error_code, part.base_offset

    first = [produce(seq) for seq in range(0, 15, 3)]
    assert first == [(0, offset) for offset in range(0, 15, 3)]
    broker.restart()
    assert [produce(seq) for seq in range(0, 15, 3)] == first
    assert produce(15) == (0, 15)
    assert [m.value() for m in consume(broker.bootstrap, topic)] == [f"v{i}".encode() for i in range(18)]
