"""strom.Broker in this process and as a subprocess, driven by confluent-kafka."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import strom

pytestmark = pytest.mark.timeout(60)


def round_trip(bootstrap: str, topic: str) -> bytes:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    p.produce(topic, b"hello")
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "embedded", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        for _ in range(200):
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                return m.value()
    finally:
        c.close()
    raise AssertionError("nothing consumed")


@pytest.mark.parametrize("subprocess", [False, True], ids=["thread", "subprocess"])
def test_context_manager_round_trip_and_cleanup(subprocess):
    with strom.Broker(subprocess=subprocess, config={"num.partitions": 2}) as broker:
        host, port = broker.bootstrap_servers.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        data_dir = broker.data_dir
        topic = broker.create_topic(partitions=1)
        assert round_trip(broker.bootstrap_servers, topic) == b"hello"
        md = broker.admin().list_topics(timeout=10)
        assert md.brokers[0].port == int(port)  # the advertised address is the bound one
    assert not data_dir.exists()
    assert not broker.running


def test_given_data_dir_is_kept_and_reused(tmp_path):
    with strom.Broker(tmp_path / "data") as broker:
        topic = broker.create_topic("kept")
        round_trip(broker.bootstrap_servers, topic)
    assert (tmp_path / "data" / "kept-0").is_dir()
    with strom.Broker(tmp_path / "data") as broker:
        low, high = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "w"}) \
            .get_watermark_offsets(TopicPartition("kept", 0), timeout=10)
        assert (low, high) == (0, 1)


def test_reset_deletes_user_topics():
    with strom.Broker() as broker:
        for _ in range(3):
            broker.create_topic()
        broker.reset()
        topics = broker.admin().list_topics(timeout=10).topics
        assert not [t for t in topics if not t.startswith("__")]


def test_bad_config_is_reported():
    with pytest.raises(Exception, match="num.partitions"):
        strom.Broker(config={"num.partitions": "zero"}).start()
