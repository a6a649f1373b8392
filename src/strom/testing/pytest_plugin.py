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
``strom_cluster`` (module)
    a running ``strom.Cluster``: a throwaway etcd and 3 ``strom serve`` subprocesses, for
    tests that kill, pause and restart brokers. A module changes it with
    ``pytestmark = pytest.mark.strom_cluster(brokers=5, session_timeout_ms=3000, ...)`` (any
    ``strom.Cluster`` argument), a suite with the ini option ``strom_cluster_brokers``.

ini options: ``strom_config`` (lines of KEY=VALUE broker settings, Kafka's names; for
``strom_cluster`` too), ``strom_subprocess`` (run ``strom serve`` in a subprocess instead of a
thread) and ``strom_cluster_brokers`` (the size of ``strom_cluster``, 3 by default).

The fixtures' brokers differ from Kafka's defaults in ``FIXTURE_DEFAULTS`` only (overridden by
``strom_config`` or a module's marker): ``group.initial.rebalance.delay.ms=0``, so that a test's
first consumer joins its group at once instead of after 3 s, as Kafka's test containers do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

FIXTURE_DEFAULTS = {"group.initial.rebalance.delay.ms": "0"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("strom_config", "strom broker settings for strom_broker, KEY=VALUE per line", type="linelist", default=[])
    parser.addini("strom_subprocess", "run strom_broker as a subprocess", type="bool", default=False)
    parser.addini("strom_cluster_brokers", "how many brokers strom_cluster has", default="3")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "strom_cluster(brokers=3, **kwargs): strom.Cluster arguments for the module's "
        "strom_cluster fixture (put it in the module's pytestmark)",
    )


def _ini_config(config: pytest.Config) -> dict[str, str]:
    settings = {}
    for line in config.getini("strom_config"):
        key, sep, value = line.partition("=")
        if not sep:
            raise pytest.UsageError(f"strom_config: '{line}' is not KEY=VALUE")
        settings[key.strip()] = value.strip()
    return settings


@pytest.fixture(scope="session")
def strom_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from strom.embedded import Broker

    config = {**FIXTURE_DEFAULTS, **_ini_config(request.config)}
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
        created: str = strom_broker.create_topic(name, partitions, config)
        return created

    return make


@pytest.fixture
def strom_reset(strom_broker: Any) -> Iterator[None]:
    yield
    strom_broker.reset()


@pytest.fixture(scope="module")
def strom_cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    from strom.testing.cluster import Cluster

    # The fixture is built once per module, so only the module's own marker (pytestmark) can
    # shape it; a marker on one test function would come too late.
    marker = request.node.get_closest_marker("strom_cluster")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        kwargs.setdefault("brokers", marker.args[0])
    if "brokers" not in kwargs:
        try:
            kwargs["brokers"] = int(request.config.getini("strom_cluster_brokers"))
        except ValueError:
            raise pytest.UsageError("strom_cluster_brokers must be a number") from None
    kwargs["config"] = {**FIXTURE_DEFAULTS, **_ini_config(request.config), **(kwargs.get("config") or {})}
    cluster = Cluster(**kwargs)
    cluster.start()
    yield cluster
    cluster.stop()
