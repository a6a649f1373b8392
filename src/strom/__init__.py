"""strom: a Kafka-protocol event streaming broker in Python.

``strom.Broker`` starts one from Python (see strom.embedded), ``strom.Cluster`` a local cluster
of several with a throwaway etcd (see strom.testing.cluster); both are imported on first use so
that ``import strom`` stays cheap for the command line and the pytest plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.embedded import Broker
    from strom.testing.cluster import Cluster

__all__ = ["Broker", "Cluster"]


def __getattr__(name: str) -> Any:
    if name == "Broker":
        from strom.embedded import Broker

        return Broker
    if name == "Cluster":
        from strom.testing.cluster import Cluster

        return Cluster
    raise AttributeError(f"module 'strom' has no attribute {name!r}")
