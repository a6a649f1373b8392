"""The pytest plugin as a user sees it: a test module using strom_broker, strom_topic and
strom_reset, run in a fresh pytest process, also under pytest-xdist."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(180)

USER_TESTS = '''
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition


@pytest.fixture(autouse=True)
def clean(strom_reset):
    yield


@pytest.mark.parametrize("n", range(4))
def test_round_trip(strom_broker, strom_topic, n):
    topic = strom_topic(partitions=2)
    p = Producer({"bootstrap.servers": strom_broker.bootstrap_servers})
    for i in range(10):
        p.produce(topic, f"{n}-{i}".encode(), partition=i % 2)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": strom_broker.bootstrap_servers, "group.id": "g",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = []
    while len(got) < 10:
        m = c.poll(5)
        assert m is not None
        got.append(m.value())
    c.close()
    assert sorted(got) == sorted(f"{n}-{i}".encode() for i in range(10))


def test_topics_do_not_leak_between_tests(strom_broker):
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": strom_broker.bootstrap_servers}).list_topics(timeout=10).topics
    assert not [t for t in topics if not t.startswith("__")]


def test_config_from_ini(strom_broker, strom_topic):
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    res = ConfigResource(ResourceType.BROKER, "0")
    admin = AdminClient({"bootstrap.servers": strom_broker.bootstrap_servers})
    cfg = admin.describe_configs([res])[res].result(10)
    assert cfg["num.partitions"].value == "3"
'''

INI = """
[pytest]
strom_config =
    num.partitions=3
"""


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_user_suite_passes(pytester, args):
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=6)
