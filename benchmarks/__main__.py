"""strom's benchmark runner.

    python -m benchmarks run [--quick] [--peers] [--cluster] [--only NAME ...] [--out DIR] [--profile]
    python -m benchmarks show RESULTS.json [--png CHART.png]

Measures the machine's limits (loopback TCP, sendfile, disk), then strom with the Kafka
workloads of benchmarks/workloads.py, then (``--peers``) the same workloads against Tansu and
the nearest equivalents against RabbitMQ streams, ActiveMQ, Redis Streams and NATS JetStream,
all on 127.0.0.1 in this one run, and (full runs, or ``--cluster``) a 3-broker strom cluster
beside one broker (benchmarks/cluster.py: replicated produce, latency, leader kills). Prints
markdown tables and writes ``<date>.json`` and ``<date>.png`` into ``--out`` (default
benchmarks/results/). ``--only`` keeps some parts: machine, produce, consume, latency,
partitions, cluster, security (TLS + SASL beside plaintext), metrics (the cost of /metrics
scrapes), queues (share groups beside a classic group, rebalance times of both group
protocols), and the system names strom, tansu, rabbitmq, activemq, redis, nats.
``--profile`` records py-spy profiles of the strom broker during the produce (100 B, acks=all)
and consume workloads (py-spy must be installed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from benchmarks import report
from benchmarks.brokers import StromBroker
from benchmarks.clients import KafkaClient, build_rdkperf
from benchmarks.machine import context, measure_limits
from benchmarks.model import Row, Sizes
from benchmarks.workloads import run_kafka_suite

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"machine", "produce", "consume", "latency", "partitions", "cluster", "security", "metrics", "queues"}
PEERS = ("tansu", "rabbitmq", "activemq", "redis", "nats")
SYSTEMS = {"strom", *PEERS}


class LoadSampler:
    """The 1-minute load average every 5 s while the run lasts (other work on the machine)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(1)
        s = self.samples or [os.getloadavg()[0]]
        return {"min": min(s), "mean": round(sum(s) / len(s), 2), "max": max(s), "samples": len(s)}


def _only(values: list[str]) -> tuple[set[str] | None, set[str] | None]:
    names = {v.strip().lower() for item in values for v in item.split(",") if v.strip()}
    unknown = names - WORKLOADS - SYSTEMS
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}; choose from {sorted(WORKLOADS | SYSTEMS)}")
    workloads = names & WORKLOADS or None
    systems = names & SYSTEMS or None
    return workloads, systems


def run(args: argparse.Namespace) -> int:
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.producers:
        sizes.producers = args.producers
    workloads, systems = _only(args.only)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ctx = context()
    load = LoadSampler()
    ctx["mode"] = "quick" if args.quick else "full"
    if args.strom_src:
        ctx["strom_src"] = str(args.strom_src)
    print(f"# strom benchmarks ({ctx['mode']})\n", flush=True)
    print(report.context_markdown({**ctx, "load_average_end": ()}) + "\n", file=sys.stderr, flush=True)

    limits = []
    if workloads is None or "machine" in workloads:
        print("machine limits", file=sys.stderr, flush=True)
        limits = measure_limits(sizes.machine_bytes, 1 if args.quick else 3, Path(args.workdir or "/tmp"))

    client = KafkaClient(build_rdkperf())
    print(f"Kafka client: {client.name}", file=sys.stderr, flush=True)
    kafka_workloads = (workloads or WORKLOADS) - {"machine", "cluster", "security", "metrics", "queues"}
    # the cluster group: in full runs unless --only leaves it out; in --quick runs when asked
    asked_cluster = args.cluster or "cluster" in (workloads or ())
    want_cluster = (systems is None or "strom" in systems) and (
        asked_cluster or (workloads is None and not args.quick))
    if want_cluster and not asked_cluster and not (shutil.which("etcd") or Path("/usr/bin/etcd").exists()):
        print("cluster group skipped: etcd is not installed (apt-get install etcd-server)", file=sys.stderr)
        want_cluster = False
    rows: list[Row] = []
    failures: dict[str, str] = {}
    profiles: dict[str, str] = {}
    kafka = []
    if kafka_workloads and (systems is None or "strom" in systems):
        kafka.append("strom")
    if kafka_workloads and args.peers and (systems is None or "tansu" in systems):
        kafka.append("tansu")
    if kafka:
        # strom and Tansu run side by side, taking turns workload by workload
        print(" and ".join(kafka), file=sys.stderr, flush=True)
        with contextlib.ExitStack() as stack:
            brokers = []
            if "strom" in kafka:
                strom = StromBroker(src=Path(args.strom_src) if args.strom_src else None)
                brokers.append(stack.enter_context(strom))
            if "tansu" in kafka:
                try:
                    from benchmarks.peers.tansu import TansuBroker

                    brokers.append(stack.enter_context(TansuBroker()))
                except Exception as exc:  # noqa: BLE001 - strom's rows still count
                    traceback.print_exc()
                    failures["tansu"] = f"{type(exc).__name__}: {exc}"
                    rows.append(Row(system="tansu", workload="failed", client="-", note=failures["tansu"][:300]))
            rows += run_kafka_suite(brokers, client, sizes, kafka_workloads)
            for broker in brokers:
                if broker.name == "tansu":
                    for row in rows:
                        if row.system == "tansu":
                            row.note = "; ".join(x for x in (row.note, broker.version, "memory storage") if x)
            if args.profile and "strom" in kafka:  # after the suite: a warm broker
                from benchmarks.profiling import profile_strom

                profiles = profile_strom(brokers[0], client, sizes, out)

    security: dict = {}
    if (systems is None or "strom" in systems) and ("security" in (workloads or ()) or (workloads is None and not args.quick)):
        print("strom: plaintext beside SASL_SSL", file=sys.stderr, flush=True)
        try:
            from benchmarks.security import run_security_suite

            security = run_security_suite(client, sizes)
        except Exception as exc:  # noqa: BLE001 - the other rows still count
            traceback.print_exc()
            failures["security"] = f"{type(exc).__name__}: {exc}"

    metrics: dict = {}
    if (systems is None or "strom" in systems) and ("metrics" in (workloads or ()) or (workloads is None and not args.quick)):
        print("strom: the cost of /metrics scrapes", file=sys.stderr, flush=True)
        try:
            from benchmarks.metrics_cost import run_metrics_suite

            metrics = run_metrics_suite(client, sizes)
        except Exception as exc:  # noqa: BLE001 - the other rows still count
            traceback.print_exc()
            failures["metrics"] = f"{type(exc).__name__}: {exc}"

    queues: dict = {}  # filled part by part: a failure keeps the part measured before it
    if (systems is None or "strom" in systems) and ("queues" in (workloads or ()) or (workloads is None and not args.quick)):
        print("strom: share groups beside a classic group, rebalance times", file=sys.stderr, flush=True)
        try:
            from benchmarks.queues import run_queues_suite

            run_queues_suite(sizes, queues)
            for failed in queues["share"]["failed"]:
                failures.setdefault("queues", failed)
        except Exception as exc:  # noqa: BLE001 - the other rows still count
            traceback.print_exc()
            failures["queues"] = f"{type(exc).__name__}: {exc}"

    cluster: dict = {}  # filled part by part: a failure keeps the parts measured before it
    if want_cluster:
        print("strom cluster (3 brokers) beside one broker", file=sys.stderr, flush=True)
        try:
            from benchmarks.cluster import run_cluster_suite

            run_cluster_suite(client, sizes, args.strom_src, cluster)
        except Exception as exc:  # noqa: BLE001 - the other rows still count
            traceback.print_exc()
            failures["cluster"] = f"{type(exc).__name__}: {exc}"

    if args.peers:
        from benchmarks.peers import run_peer

        for peer in PEERS:
            if peer == "tansu" or (systems is not None and peer not in systems):
                continue
            print(peer, file=sys.stderr, flush=True)
            try:
                rows += run_peer(peer, client, sizes, kafka_workloads)
            except Exception as exc:  # noqa: BLE001 - one peer failing keeps the others
                traceback.print_exc()
                failures[peer] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(system=peer, workload="failed", client="-", note=failures[peer][:300]))

    ctx["load_average_end"] = os.getloadavg()
    ctx["load_1min_during"] = load.stop()
    ctx["seconds"] = round(time.monotonic() - started, 1)
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    json_path, png_path = out / f"{stamp}.json", out / f"{stamp}.png"
    print(report.context_markdown(ctx) + "\n")
    if limits:
        print(report.machine_markdown(limits) + "\n")
    if rows or not (cluster or security or metrics or queues):
        print(report.markdown(rows) + "\n")
    goals = report.targets(rows)
    if any(g["met"] is not None for g in goals):
        print(report.targets_markdown(goals) + "\n")
    if cluster:
        cluster["targets"] = report.cluster_targets(cluster)
        print(report.cluster_markdown(cluster) + "\n")
        print(report.targets_markdown(cluster["targets"], "target (cluster)") + "\n")
    if security:
        from benchmarks.security import markdown as security_markdown

        print(security_markdown(security) + "\n")
    if metrics:
        from benchmarks.metrics_cost import markdown as metrics_markdown

        print(metrics_markdown(metrics) + "\n")
    if queues.get("share") or queues.get("rebalance"):
        from benchmarks.queues import markdown as queues_markdown

        print(queues_markdown(queues) + "\n")
    if "cluster" in failures:
        print(f"cluster: failed: {failures['cluster']}\n")
    report.write_json(json_path, ctx, limits, rows, {"failures": failures, "profiles": profiles,
                                                     "targets": goals, "cluster": cluster, "security": security,
                                                     "metrics": metrics, "queues": queues})
    report.chart(png_path, ctx, limits, rows)
    print(f"wrote {json_path} and {png_path} in {ctx['seconds']:.0f}s", flush=True)
    return 1 if failures and not args.keep_going else 0


def show(args: argparse.Namespace) -> int:
    """Print the tables of a results JSON again (e.g. for docs/performance.md)."""
    import dataclasses
    import json
    import math

    data = json.loads(Path(args.json).read_text())
    fields = {f.name for f in dataclasses.fields(Row)}
    rows = [Row(**{k: (math.nan if v is None else v) for k, v in r.items() if k in fields}) for r in data["rows"]]
    print(report.context_markdown(data["context"]) + "\n")
    if data.get("machine"):
        print(report.machine_markdown(data["machine"]) + "\n")
    if rows or not data.get("cluster"):
        print(report.markdown(rows) + "\n")
        print(report.targets_markdown(report.targets(rows)) + "\n")
    if data.get("cluster"):
        print(report.cluster_markdown(data["cluster"]) + "\n")
        print(report.targets_markdown(report.cluster_targets(data["cluster"]), "target (cluster)") + "\n")
    if args.png:
        report.chart(Path(args.png), data["context"], data.get("machine", []), rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the benchmarks and write the report")
    r.add_argument("--quick", action="store_true", help="~10x smaller workloads (a smoke test)")
    r.add_argument("--peers", action="store_true",
                   help="also Tansu, RabbitMQ, ActiveMQ, Redis and NATS (installs them)")
    r.add_argument("--cluster", action="store_true",
                   help="also the 3-broker cluster group in --quick runs (full runs include it; needs etcd)")
    r.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only these workloads/systems (repeat or comma-separate)")
    r.add_argument("--out", help="directory for the JSON and PNG (default benchmarks/results)")
    r.add_argument("--workdir", help="where the machine-limit files go (default /tmp)")
    r.add_argument("--strom-src", help="the strom source tree to benchmark (default: ./src)")
    r.add_argument("--producers", type=int, default=0, help="producer processes per produce row")
    r.add_argument("--profile", action="store_true", help="py-spy profiles of strom (see docs)")
    r.add_argument("--keep-going", action="store_true", help="exit 0 even when a peer failed")
    s = sub.add_parser("show", help="print the tables of a results JSON (and redraw its chart)")
    s.add_argument("json")
    s.add_argument("--png", help="also draw the chart into this file")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    return show(args)


if __name__ == "__main__":
    sys.exit(main())
