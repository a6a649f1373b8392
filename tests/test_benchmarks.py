"""Smoke test of the benchmark runner: `python -m benchmarks run --quick` works from a checkout.

It measures nothing against a threshold (docs/architecture.md, "Tests": never a timed unit
test); it checks that the runner finishes, prints every row of the table and writes its JSON
and PNG.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = [
    "| strom | idle |",
    "| strom | produce | 100 B | 1 | 1 |",
    "| strom | produce | 100 B | all | 1 |",
    "| strom | produce | 100 B | all | 6 |",
    "| strom | produce | 1 KiB | all | 1 |",
    "| strom | produce | 1 KiB | 1 | 6 |",
    "| strom | consume | 100 B | - | 1 |",
    "| strom | consume | 100 B | - | 6 |",
    "| strom | consume | 1 KiB | - | 1 |",
    "| strom | consume | 1 KiB | - | 6 |",
    "| strom | latency @5,000/s linger.ms=0 |",
    "| strom | latency @5,000/s linger.ms=1 |",
    "| strom | latency @20,000/s linger.ms=0 |",
    "| strom | produce-1000p |",
    "| strom | consume-1000p |",
    "| loopback TCP",
    "| os.sendfile",
    "| disk write 1 MiB blocks + fdatasync at end |",
]


def test_quick_run_prints_the_table_and_writes_json_and_png(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for row in EXPECTED_ROWS:
        assert row in proc.stdout, f"missing {row!r} in:\n{proc.stdout}"
    jsons, pngs = sorted(out.glob("*.json")), sorted(out.glob("*.png"))
    assert len(jsons) == 1 and len(pngs) == 1, list(out.iterdir())
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(jsons[0].read_text())
    assert data["context"]["nproc"] >= 1
    produce = [r for r in data["rows"] if r["workload"] == "produce"]
    assert len(produce) == 8
    assert all(r["records"] > 0 and r["records_per_s"] > 0 and r["broker_cpu_s"] >= 0 for r in produce)
    assert {m["name"].split(" ")[0] for m in data["machine"]} >= {"loopback", "os.sendfile", "disk"}


CLUSTER_ROWS = [
    "| produce 100 B acks=all: records/s |",
    "| produce 100 B acks=all: broker CPU s per M records (cluster: sum of 3 brokers) |",
    "| produce 1 KiB acks=all: records/s |",
    "| latency @5,000/s linger.ms=1: e2e p50 / p99 ms |",
    "| floor: the produce bytes moved by a minimal program (no broker), CPU s per GB; the leader sends to 2 followers with sendfile",
    "| idle: broker RSS MB",
    "| broker.session.timeout.ms=3000 | 1 |",
    "| target (cluster) | this run | met |",
]


def test_quick_cluster_run_prints_one_broker_beside_three_and_a_failover(tmp_path: Path) -> None:
    """`--quick --only cluster`: a 3-broker cluster (etcd from PATH) beside one broker, and one
    leader kill with the short session timeout (a separate run, so each test stays short)."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--only", "cluster", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for row in CLUSTER_ROWS:
        assert row in proc.stdout, f"missing {row!r} in:\n{proc.stdout}"
    data = json.loads(next(out.glob("*.json")).read_text())
    assert data["rows"] == [] and data["failures"] == {}
    cluster = data["cluster"]
    assert [p["workload"] for p in cluster["pairs"]] == [
        "produce 100 B acks=all", "produce 1 KiB acks=all", "latency @5,000/s linger.ms=1"]
    for pair in cluster["pairs"]:
        assert pair["single"]["records"] > 0 and pair["cluster"]["records"] > 0
        assert pair["cluster"]["broker_cpu_s"] > 0 and pair["etcd_cpu_s"] >= 0
    floor = cluster["floor"]  # three copies cost more than one
    assert all(floor[m]["cluster_cpu_s_per_gb"] > floor["single_cpu_s_per_gb"] > 0 for m in ("sendfile", "copy"))
    assert all(floor[m]["leader_cpu_s_per_gb"] > 0 and len(floor[m]["followers_cpu_s_per_gb"]) == 2 for m in ("sendfile", "copy"))
    [failover] = cluster["failover"]
    assert failover["session_timeout_ms"] == 3000 and failover["failed_kills"] == 0
    assert len(failover["kills"]) == 1 and failover["kills"][0]["seconds"] > 0
    assert failover["delivery_errors"] == 0 and failover["acked"] > 0
    # The two CPU targets; the failover target is the default timeout's, which only full runs
    # measure (the short timeout is shown as an option).
    assert [t["target"].split(":")[0] for t in cluster["targets"]] == ["produce 100 B acks=all", "produce 1 KiB acks=all"]


def test_quick_metrics_run_prints_scrape_and_page_costs(tmp_path: Path) -> None:
    """`--quick --only metrics`: /metrics and the console's pages against a broker with topics
    and groups, and produce with a scrape every second beside none."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--only", "metrics", "--out", str(out),
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for row in ("| broker CPU per scrape (net of idle", "| records/s with scrapes / without",
                "| console overview: broker CPU per load", "| console topic search (10,000 records)"):
        assert row in proc.stdout, f"missing {row!r} in:\n{proc.stdout}"
    metrics = json.loads(next(out.glob("*.json")).read_text())["metrics"]
    assert metrics["scrape"]["lag_series"] == metrics["settings"]["groups"] * 10
    assert set(metrics["pages"]) == {"overview", "topic page (latest 20)", "topic search (10,000 records)", "group page"}
    assert metrics["produce"]["none"]["records"] > 0 and metrics["produce"]["scraped"]["records"] > 0


def test_quick_queues_run_prints_share_groups_beside_classic_and_rebalance_times(tmp_path: Path) -> None:
    """`--quick --only queues`: 1, 2 and 4 share consumers beside a classic consumer on one
    partition (every record once), then an 11th member joining and leaving a 10-member group
    under the classic and the consumer protocol."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--only", "queues", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for row in ("| classic group, 1 Consumer (commit per poll) |", "| share group, 1 ShareConsumer (implicit ack) |",
                "| share group, 2 ShareConsumers (implicit ack) |", "| share group, 4 ShareConsumers (implicit ack) |",
                "| classic, range (eager) | 3000 ms |", "| consumer (KIP-848), uniform | 500 ms |"):
        assert row in proc.stdout, f"missing {row!r} in:\n{proc.stdout}"
    data = json.loads(next(out.glob("*.json")).read_text())
    assert data["rows"] == [] and data["failures"] == {}
    queues = data["queues"]
    records = queues["settings"]["records"]
    median = queues["share"]["median"]
    assert [(m["kind"], m["consumers"]) for m in median.values()] == [("classic", 1), ("share", 1), ("share", 2), ("share", 4)]
    for m in median.values():
        assert m["all_complete"] and m["records"] == m["distinct"] == records and m["errors"] == []
        assert m["records_per_s"] > 0 and m["broker_cpu_s"] >= 0 and sum(m["per_consumer"]) == records
    assert [m["committed_offset"] for m in median.values()] == [None, records, records, records]
    assert set(queues["share"]["ratios"]) == set(list(median)[1:])
    assert all(r["rate"] > 0 for r in queues["share"]["ratios"].values())
    protocols = queues["rebalance"]["protocols"]
    assert [p["protocol"] for p in protocols] == ["classic, range (eager)", "consumer (KIP-848), uniform"]
    assert all(p["join_s"] > 0 and p["leave_s"] > 0 and len(p["joins"]) == 1 for p in protocols)


def test_the_replication_floor_gives_every_follower_the_leaders_bytes(tmp_path: Path) -> None:
    from benchmarks import replication_floor

    for mode in replication_floor.MODES:
        result = replication_floor.run_once(8 << 20, 2, mode, str(tmp_path))
        assert len(result["follower_cpu_s"]) == 2 and result["cpu_s"] > 0
        leader = (tmp_path / "leader").read_bytes()
        assert len(leader) == 8 << 20
        assert (tmp_path / "follower-0").read_bytes() == leader == (tmp_path / "follower-1").read_bytes()
