"""/readyz's answer in cluster mode: loaded, registered in etcd, and shown by the metadata image."""

from __future__ import annotations

from types import SimpleNamespace

from strom.metadata.broker_config import load_broker_config
from strom.server.broker import Broker


def test_a_cluster_broker_is_ready_once_registered_and_in_its_image() -> None:
    broker = Broker(load_broker_config(None, {}, {"etcd.endpoints": "http://127.0.0.1:2379", "node.id": "2"}))
    assert broker._not_ready() == "loading"
    broker.ctx = SimpleNamespace(image=SimpleNamespace(brokers={}))  # type: ignore[assignment]
    broker._tasks = [object()]  # type: ignore[list-item]
    broker.metadata = SimpleNamespace(registration=None)  # type: ignore[assignment]
    assert broker._not_ready() == "not registered in the cluster (etcd)"
    broker.metadata = SimpleNamespace(registration=object())  # type: ignore[assignment]
    assert broker._not_ready() == "the metadata image does not show this broker yet"
    broker.ctx.image.brokers[2] = object()
    assert broker._not_ready() is None
