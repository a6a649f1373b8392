"""strom: a Kafka-protocol event streaming broker in Python.

``strom.Broker`` starts one from Python (see strom.embedded); it is imported on first use so
that ``import strom`` stays cheap for the command line and the pytest plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.embedded import Broker

__all__ = ["Broker"]


def __getattr__(name: str) -> Any:
    if name == "Broker":
        from strom.embedded import Broker

        return Broker
    raise AttributeError(f"module 'strom' has no attribute {name!r}")
