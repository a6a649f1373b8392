"""The peers of ``--peers``: one module per system, each installing (on request), starting on
127.0.0.1 in a temporary directory, driving and stopping its server. ``run_peer(name, ...)``
returns that peer's rows."""

from __future__ import annotations

import importlib

from benchmarks.clients import KafkaClient
from benchmarks.model import Row, Sizes


def run_peer(name: str, client: KafkaClient, sizes: Sizes, workloads: set[str]) -> list[Row]:
    module = importlib.import_module(f"benchmarks.peers.{name}")
    return module.run(client, sizes, workloads)
