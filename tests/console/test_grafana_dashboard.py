"""The shipped Grafana dashboard against a real broker's /metrics: every metric and label its
queries use is one the broker exposes, and every strom_* family is on some panel, so the
dashboard cannot drift from the code. The broker is a one-broker cluster (etcd), the mode in
which every metric exists, after produce, consume and a group commit so every series does."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import strom
from tests.conftest import running_in_ci

HAVE_ETCD = shutil.which("etcd") is not None or Path("/usr/bin/etcd").exists()

METRIC = re.compile(r"\bstrom_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")
LABEL_VALUES = re.compile(r"label_values\((?:[^,]*),\s*(\w+)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# labels Prometheus adds to every scraped series
TARGET_LABELS = {"instance", "job"}


def dashboard() -> dict[str, Any]:
    return json.loads(files("strom.console").joinpath("grafana/strom-dashboard.json").read_text())


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included, rows left out."""
    out = []
    for panel in items:
        if panel["type"] == "row":
            out += panels(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, PromQL, legend) of every panel target and query variable."""
    found = [(p["title"], t["expr"], t.get("legendFormat", "")) for p in panels(board["panels"]) for t in p["targets"]]
    found += [(f"${v['name']}", v["query"]["query"], "") for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def exposed(text: str) -> dict[str, set[str]]:
    """Sample names of a scrape (``_total``, ``_bucket`` ... as queried) and their labels."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels.setdefault(s.name, set()).update(s.labels)
    return labels


def test_dashboard_is_valid_and_wired_to_its_variables():
    board = dashboard()
    assert board["schemaVersion"] >= 39 and board["uid"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["query"]["query"] == "label_values(strom_connections, instance)"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board["panels"]):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), (panel["title"], target["expr"])


@pytest.mark.skipif(not HAVE_ETCD and not running_in_ci(), reason="etcd is not installed (apt-get install etcd-server)")
def test_every_query_uses_metrics_and_labels_a_broker_exposes(tmp_path):
    with strom.Cluster(1, data_dir=tmp_path / "cluster") as cluster:  # re-picks a port taken meanwhile
        http = cluster.http_address(0)
        topic = cluster.create_topic("dash", partitions=2)
        p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5})
        for i in range(20):
            p.produce(topic, b"x", partition=i % 2)
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "dash", "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + 30
            while (msg := c.poll(0.5)) is None or msg.error() is not None:
                assert time.monotonic() < deadline, "nothing consumed"
            c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        finally:
            c.close()
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    names = exposed(text)
    used: set[str] = set()
    for where, expr, legend in queries(dashboard()):
        metrics = set(METRIC.findall(expr))
        unknown = metrics - names.keys()
        assert not unknown, f"{where}: {sorted(unknown)} not in /metrics ({sorted(n for n in names if n.startswith('strom_'))})"
        used |= metrics
        known = TARGET_LABELS.union(*(names[m] for m in metrics))
        referenced = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
        referenced |= set(MATCHER.findall(expr)) | set(LABEL_VALUES.findall(expr)) | set(LEGEND.findall(legend))
        assert referenced <= known, f"{where}: labels {sorted(referenced - known)} not on {sorted(metrics)}"
    # (prometheus-client's ``_created`` timestamps of counters and histograms aside)
    families = {f.name for f in text_string_to_metric_families(text)
                if f.name.startswith("strom_") and not f.name.endswith("_created")}
    missing = {f for f in families if not any(u.startswith(f) for u in used)}
    assert not missing, f"exposed but on no panel: {sorted(missing)}"
