"""pytest plugin (entry point ``pytest11``), active wherever strom is installed.

Fixtures:

``strom_broker`` (session)
    a running ``strom.Broker`` in this process, on an OS-assigned port with a temporary data
    directory; ``strom_broker.bootstrap_servers`` is its address. Under pytest-xdist every
    worker gets its own broker.
``strom_topic`` (function)
    ``strom_topic(name=None, partitions=1, config=None) -> str``: a new topic, ready to use.
``strom_reset`` (function)
    after the test, deletes every non-internal topic and every consumer group, so the next
    test starts from an empty broker (request it, or make it autouse in your conftest.py).

ini options: ``strom_config`` (lines of KEY=VALUE broker settings, Kafka's names) and
``strom_subprocess`` (run ``strom serve`` in a subprocess instead of a thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("strom_config", "strom broker settings for strom_broker, KEY=VALUE per line", type="linelist", default=[])
    parser.addini("strom_subprocess", "run strom_broker as a subprocess", type="bool", default=False)


@pytest.fixture(scope="session")
def strom_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from strom.embedded import Broker

    config = {}
    for line in request.config.getini("strom_config"):
        key, sep, value = line.partition("=")
        if not sep:
            raise pytest.UsageError(f"strom_config: '{line}' is not KEY=VALUE")
        config[key.strip()] = value.strip()
    broker = Broker(
        tmp_path_factory.mktemp("strom") / "data",
        config=config,
        subprocess=request.config.getini("strom_subprocess"),
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def strom_topic(strom_broker: Any) -> Callable[..., str]:
    def make(name: str | None = None, partitions: int = 1, config: dict[str, Any] | None = None) -> str:
        return strom_broker.create_topic(name, partitions, config)

    return make


@pytest.fixture
def strom_reset(strom_broker: Any) -> Iterator[None]:
    yield
    strom_broker.reset()
