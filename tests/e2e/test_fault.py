"""kill -9 at random moments while a confluent-kafka producer writes with acks=all.

Every round the broker is SIGKILLed at a random instant (while batches are in flight, or
right after it started), then restarted on the same data directory. At the end every
acknowledged record must be at the offset its delivery report gave, with its value, in send
order per partition, and present exactly once; offsets stay contiguous.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from .helpers import DeliveryLog, consume, create_topic, producer

pytestmark = pytest.mark.timeout(600)

KILLS = int(os.environ.get("STROM_TEST_KILLS", "24"))
PARTITIONS = 3


def test_kill9_under_acks_all_load_loses_nothing_acknowledged(fresh_broker, unique_topic):
    b = fresh_broker
    topic = unique_topic()
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)
    seed = int(os.environ.get("STROM_TEST_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    p = producer(
        b.bootstrap,
        acks="all",
        **{
            "linger.ms": 2,
            "retries": 0,  # a retry after a kill could write a record twice: not this test's subject
            "message.timeout.ms": 8000,
            "socket.timeout.ms": 3000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
        },
    )
    log = DeliveryLog()
    sent = 0

    def kill_and_restart() -> None:
        b.kill9()
        b.start()

    for round_ in range(KILLS):
        if round_ % 6 == 5:
            kill_and_restart()  # right after a start: the broker may still be recovering
            continue
        killer = threading.Timer(rng.uniform(0.02, 0.5), kill_and_restart)
        killer.start()
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # about 2,000 records a round, in small batches
            for _ in range(20):
                p.produce(topic, value=f"{seed}-{sent}".encode(), key=str(sent).encode(),
                          partition=sent % PARTITIONS, on_delivery=log)
                sent += 1
            p.poll(0.005)
        killer.join()
        p.flush(20)  # in-flight requests failed (no retries); the rest reach the new process
    assert p.flush(30) == 0
    acked = [r for r in log.reports if r.error is None]
    assert len(log.reports) == sent, f"{sent - len(log.reports)} sends never got a delivery report"
    assert len(acked) > sent // 4, f"only {len(acked)} of {sent} acknowledged (seed {seed})"

    msgs = consume(b.bootstrap, topic, list(range(PARTITIONS)), timeout=120)
    stored = {(m.partition(), m.offset()): m.value() for m in msgs}
    for partition in range(PARTITIONS):
        offsets = sorted(o for (q, o) in stored if q == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition}: offsets have holes"
    wrong = [(r.partition, r.offset) for r in acked if stored.get((r.partition, r.offset)) != r.value]
    assert not wrong, f"seed {seed}: {len(wrong)} acknowledged records lost or changed, e.g. {wrong[:5]}"
    values = [m.value() for m in msgs]
    assert len(values) == len(set(values)), f"seed {seed}: a record was stored twice"
    for partition in range(PARTITIONS):
        mine = [r.offset for r in acked if r.partition == partition]
        assert mine == sorted(mine), f"seed {seed}: partition {partition} acknowledged out of order"
    print(f"seed {seed}: {KILLS} kills, {sent} sent, {len(acked)} acknowledged and verified, "
          f"{len(msgs)} stored")
