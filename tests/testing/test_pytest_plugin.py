"""The pytest plugin as a user sees it: a test module using strom_broker, strom_topic and
strom_reset, run in a fresh pytest process, also under pytest-xdist."""

from __future__ import annotations

from pathlib import Path

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
    assert cfg["auto.create.topics.enable"].value == "false"
    assert cfg["group.initial.rebalance.delay.ms"].value == "0"  # the fixtures' default
'''

ROOT = Path(__file__).resolve().parents[2]


def _block(path: str, after: str, language: str) -> str:
    """The first ```language block after the line ``after`` of a document, as a user copies it."""
    text = (ROOT / path).read_text()
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start:text.index("```", start)]


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_user_suite_passes(pytester, args):
    # With the ini example of docs/testing.md and the test of the README, copied as they are.
    pytester.makepyfile(test_user=USER_TESTS, test_readme=_block("README.md", "## In your test suite", "python"))
    pytester.makeini(_block("docs/testing.md", "Broker settings go in the ini file", "ini"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=7)


def test_fixture_defaults_can_be_overridden(pytester):
    pytester.makepyfile(test_delay='''
def test_kafkas_delay(strom_broker):
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    res = ConfigResource(ResourceType.BROKER, "0")
    admin = AdminClient({"bootstrap.servers": strom_broker.bootstrap_servers})
    cfg = admin.describe_configs([res])[res].result(10)
    assert cfg["group.initial.rebalance.delay.ms"].value == "3000"
''')
    pytester.makeini("[pytest]\nstrom_config =\n    group.initial.rebalance.delay.ms=3000\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
