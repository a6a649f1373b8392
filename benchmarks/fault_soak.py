"""The long run of the fault suite: random failures from docs/CLUSTER.md's nine, one after the
other, on a 3-broker ``strom.Cluster`` under acks=all idempotent load, judged at the end by the
checker of tests/fault/checker.py.

    python -m benchmarks.fault_soak --minutes 30 --seed 1 [--etcd-down 30] [--rate 300]

Two topics take load the whole time, each from its own producer (unique values, one thread
each): ``main`` (replication factor 3, ``min.insync.replicas`` 2, six partitions) and ``aux``
(replication factor 2, ``min.insync.replicas`` 1, unclean election off; failure 8 needs a
partition whose every replica can die while a broker stays up). Each round injects one
failure, drawn with the seed:

1. ``kill-leader``: kill -9 a partition's leader, wait for the next, restart it;
2. ``pause-leader``: SIGSTOP a leader past its lease, wait for the next, SIGCONT;
3. ``double-failover``: kill the leader, kill the next as soon as it is elected, restart both;
4. ``slow-follower``: SIGSTOP a follower until the ISR drops it, SIGCONT, wait until it rejoins;
5. ``controller``: kill -9 or SIGSTOP the controller past its lease, then restart or SIGCONT;
6. ``etcd-down``: SIGSTOP or kill -9 etcd for ``--etcd-down`` seconds, then SIGCONT or restart;
7. ``wipe``: stop a broker, delete its data directory, start it (it copies everything again);
8. ``isr-dead``: kill an ``aux`` partition's follower, then its leader (the partition is
   offline: leader -1 on the broker left), restart the follower (still offline: no unclean
   election), then the leader;
9. ``full-restart``: stop every broker and etcd, start them all again.

After each round the cluster must heal (every partition led, every replica in the ISR) within
``--heal-timeout`` seconds; a round that does not heal ends the run (the brokers' log tails are
printed). At the end the loads stop, every record is read back and checked (lost, inconsistent
offsets, duplicates, reordering) and, after a clean stop, every replica's bytes below its high
watermark are compared. The summary table gives the failures injected per kind and the figures.
Exit status 0 when nothing acknowledged was lost, duplicated or reordered and the replicas
agree; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fault.checker import (  # noqa: E402  (the repository root goes on sys.path first)
    FAST_FAILOVER,
    Load,
    Report,
    broker_dir,
    check_topic,
    compare_replicas,
    describe,
    healed,
    leader_of,
    views,
    wait_new_controller,
    wait_new_leader,
    wait_until,
)

KINDS = (
    "kill-leader", "pause-leader", "double-failover", "slow-follower", "controller",
    "etcd-down", "wipe", "isr-dead", "full-restart",
)
MAIN_PARTITIONS = 6


class Soak:
    """One cluster, two loads, a seeded random sequence of failures."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        import strom

        self.args = args
        self.rng = random.Random(args.seed)
        # A lease a little longer than replica.lag.time.max.ms: a paused follower leaves the ISR
        # for its lag (failure 4) before its lease expires.
        config = {**FAST_FAILOVER, "broker.session.timeout.ms": 3000, "replica.lag.time.max.ms": 2000}
        for item in args.override:
            key, _, value = item.partition("=")
            config[key] = value
        self.cluster: Any = strom.Cluster(3, data_dir=data_dir, config=config)
        self.injected: Counter[str] = Counter()
        self.heal_times: dict[str, list[float]] = defaultdict(list)
        self.notes: list[str] = []
        self.main = ""
        self.aux = ""
        self.loads: list[Load] = []

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> Report:
        c = self.cluster
        c.start()
        try:
            self.main = c.create_topic("soak-main", partitions=MAIN_PARTITIONS, replication_factor=3,
                                       config={"min.insync.replicas": 2})
            self.aux = c.create_topic("soak-aux", partitions=1, replication_factor=2,
                                      config={"min.insync.replicas": 1, "unclean.leader.election.enable": False})
            rate = self.args.rate
            self.loads = [
                Load(c.bootstrap_servers, self.main, MAIN_PARTITIONS, rate=rate * 0.8,
                     max_seconds=self.args.minutes * 60 + 600).start(),
                Load(c.bootstrap_servers, self.aux, 1, rate=rate * 0.2,
                     max_seconds=self.args.minutes * 60 + 600).start(),
            ]
            self.loads[0].wait_acked(100)
            deadline = time.monotonic() + self.args.minutes * 60
            rounds = 0
            while time.monotonic() < deadline:
                kind = self.rng.choice(self.args.kinds)
                rounds += 1
                started = time.monotonic()
                detail = self.inject(kind)
                self.wait_healed(kind, started)
                self.injected[kind] += 1
                self.heal_times[kind].append(time.monotonic() - started)
                print(f"[{time.strftime('%H:%M:%S')}] round {rounds}: {kind} {detail} "
                      f"({time.monotonic() - started:.1f}s); {self.loads[0].summary()}", flush=True)
                time.sleep(self.rng.uniform(0.5, 2.0))
            return self.finish()
        finally:
            for load in self.loads:
                if load._producer is not None:
                    load.stop(flush_timeout=1)
            c.stop()

    def wait_healed(self, kind: str, started: float) -> None:
        c = self.cluster

        def all_healed() -> bool:
            return healed(c, self.main, MAIN_PARTITIONS) and healed(c, self.aux, 1)

        try:
            wait_until(all_healed, self.args.heal_timeout, lambda: f"after {kind}: not healed: "
                       f"{views(c, self.main)} {views(c, self.aux)}", interval=0.5)
        except TimeoutError:
            print(self.tails(), file=sys.stderr)
            raise

    def finish(self) -> Report:
        c = self.cluster
        report = Report(failures=Counter(self.injected))
        for load in self.loads:
            load.stop()
        self.wait_healed("the loads stopped", time.monotonic())
        check_topic(c.bootstrap_servers, [self.loads[0]], report, timeout=300)
        check_topic(c.bootstrap_servers, [self.loads[1]], report, timeout=300)
        data_dirs = {n: broker_dir(c, n) for n in c.nodes}
        c.stop()
        compare_replicas(data_dirs, self.main, MAIN_PARTITIONS, report)
        compare_replicas(data_dirs, self.aux, 1, report)
        return report

    def tails(self, lines: int = 150) -> str:
        return "\n".join(
            f"--- broker {n} ---\n" + "\n".join(self.cluster.logs(n).splitlines()[-lines:]) for n in self.cluster.nodes
        )

    # --- the failures ---------------------------------------------------------------------------

    def inject(self, kind: str) -> str:
        action: Callable[[], str] = getattr(self, "_" + kind.replace("-", "_"))
        return action()

    def _partition(self) -> int:
        return self.rng.randrange(MAIN_PARTITIONS)

    def _leader(self, p: int) -> int:
        def probe() -> int | None:
            leader = leader_of(self.cluster, self.main, p)
            return leader if leader >= 0 else None

        return wait_until(probe, 30, f"a leader for {self.main}-{p}")

    def _kill_leader(self) -> str:
        c, p = self.cluster, self._partition()
        victim = self._leader(p)
        c.kill(victim)
        new = wait_new_leader(c, self.main, p, victim, timeout=30)
        time.sleep(self.rng.uniform(0.0, 2.0))
        c.start_broker(victim)
        return f"p{p}: leader {victim} killed, {new} leads, {victim} restarted"

    def _pause_leader(self) -> str:
        c, p = self.cluster, self._partition()
        victim = self._leader(p)
        c.pause(victim)
        new = wait_new_leader(c, self.main, p, victim, timeout=30)
        time.sleep(self.rng.uniform(0.5, 2.0))
        c.resume(victim)
        return f"p{p}: leader {victim} paused, {new} leads, {victim} resumed"

    def _double_failover(self) -> str:
        c, p = self.cluster, self._partition()
        first = self._leader(p)
        c.kill(first)
        second = wait_new_leader(c, self.main, p, first, timeout=30, interval=0.02)
        c.kill(second)
        third = wait_new_leader(c, self.main, p, second, timeout=30)
        for node in self.rng.sample([first, second], 2):
            c.start_broker(node, ready=False)
        c.wait_ready()
        return f"p{p}: leaders {first} -> {second} -> {third}, both restarted"

    def _slow_follower(self) -> str:
        c, p = self.cluster, self._partition()
        view = describe(c, self.main)
        assert view is not None
        follower = self.rng.choice([r for r in view[p].replicas if r != view[p].leader])
        c.pause(follower)

        def dropped() -> bool:
            current = describe(c, self.main)
            return current is not None and follower not in current[p].isr

        wait_until(dropped, 30, f"the ISR of p{p} to drop the paused follower {follower}", interval=0.2)
        c.resume(follower)
        return f"p{p}: follower {follower} paused until the ISR dropped it, resumed"

    def _controller(self) -> str:
        c = self.cluster
        old = wait_new_controller(c)
        how = self.rng.choice(["kill -9", "SIGSTOP"])
        (c.kill if how == "kill -9" else c.pause)(old)
        new = wait_new_controller(c, old, timeout=30)
        time.sleep(self.rng.uniform(0.0, 2.0))
        if how == "kill -9":
            c.start_broker(old)
        else:
            c.resume(old)
        return f"controller {old} ({how}), {new} took over"

    def _etcd_down(self) -> str:
        c = self.cluster
        how = self.rng.choice(["SIGSTOP", "kill -9"])
        if how == "SIGSTOP":
            c.etcd.pause()
        else:
            c.etcd.kill()
        time.sleep(self.args.etcd_down)
        if how == "SIGSTOP":
            c.etcd.resume()
        else:
            c.etcd.restart()
        return f"etcd {how} for {self.args.etcd_down:.0f}s"

    def _wipe(self) -> str:
        c = self.cluster
        victim = self.rng.choice(c.nodes)
        c.stop_broker(victim)
        c.restart(victim, wipe=True)
        return f"broker {victim} restarted with an empty data directory"

    def _isr_dead(self) -> str:
        c = self.cluster
        view = describe(c, self.aux)
        assert view is not None
        leader = view[0].leader
        follower = next(r for r in view[0].replicas if r != leader)
        bystander = next(n for n in c.nodes if n not in view[0].replicas)
        c.kill(follower)

        def isr() -> tuple[int, ...] | None:
            current = describe(c, self.aux, [bystander])
            return None if current is None else current[0].isr

        wait_until(lambda: isr() == (leader,), 30, lambda: f"the ISR {isr()} to drop the dead follower {follower}")
        time.sleep(self.rng.uniform(0.5, 1.5))  # acknowledged by the leader alone meanwhile
        c.kill(leader)

        def offline() -> bool:
            current = describe(c, self.aux, [bystander])
            return current is not None and current[0].leader == -1

        wait_until(offline, 30, f"{self.aux}-0 offline once its whole ISR died")
        c.start_broker(follower)
        time.sleep(1.0)
        current = describe(c, self.aux, [bystander])
        if current is not None and current[0].leader == follower:
            raise AssertionError(f"{self.aux}-0: the out-of-sync replica {follower} was elected (unclean)")
        c.start_broker(leader)
        return f"aux: follower {follower}, then leader {leader} killed; offline; both restarted"

    def _full_restart(self) -> str:
        c = self.cluster
        for node in self.rng.sample(c.nodes, len(c.nodes)):
            c.stop_broker(node)
        c.etcd.restart()
        for node in self.rng.sample(c.nodes, len(c.nodes)):
            c.start_broker(node, ready=False)
        c.wait_ready()
        return "every broker and etcd stopped and started"


# --- the summary ------------------------------------------------------------------------------


def summary_table(soak: Soak, report: Report, minutes: float, seed: int) -> str:
    lines = [
        f"fault soak: {minutes:g} min, seed {seed}",
        "",
        "| failure | injected | heal time median (s) | heal time max (s) |",
        "|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        times = soak.heal_times.get(kind, [])
        median = f"{statistics.median(times):.1f}" if times else "-"
        top = f"{max(times):.1f}" if times else "-"
        lines.append(f"| {kind} | {soak.injected.get(kind, 0)} | {median} | {top} |")
    lines += [
        f"| **total** | **{sum(soak.injected.values())}** | | |",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| records acknowledged | {report.acknowledged} |",
        f"| records failed (not acknowledged) | {report.failed} |",
        f"| records read back | {report.records_read} |",
        f"| lost | {report.lost} |",
        f"| inconsistent offsets | {report.inconsistent} |",
        f"| duplicated | {report.duplicates} |",
        f"| reordered | {report.reordered} |",
        f"| replicas compared (bytes) | {report.replicas_compared} ({report.bytes_compared}) |",
        f"| replica mismatches | {report.replica_mismatches} |",
        f"| producer fatal errors (replaced) | {len(report.producer_fatal)} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fault_soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to inject failures (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="the random sequence of failures (default 1)")
    parser.add_argument("--rate", type=float, default=300.0, help="records per second over both topics (default 300)")
    parser.add_argument("--etcd-down", type=float, default=30.0, help="seconds etcd stays down (default 30)")
    parser.add_argument("--heal-timeout", type=float, default=90.0, help="seconds a round may take to heal (default 90)")
    parser.add_argument("--only", nargs="+", choices=KINDS, dest="kinds", default=list(KINDS),
                        help="draw from these failures only")
    parser.add_argument("-o", dest="override", action="append", default=[], metavar="KEY=VALUE",
                        help="a broker setting for every broker (Kafka's name), e.g. -o broker.session.timeout.ms=2000")
    parser.add_argument("--keep", type=Path, default=None, help="keep the cluster's data here (default: a temporary dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="strom-fault-soak-"))
    soak = Soak(args, data_dir / "cluster")
    try:
        report = soak.run()
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print()
    print(summary_table(soak, report, args.minutes, args.seed))
    print()
    print(report.problems() if not report.ok else report.summary())
    if args.json is not None:
        args.json.write_text(json.dumps({
            "minutes": args.minutes, "seed": args.seed, "injected": dict(soak.injected),
            "heal_times": soak.heal_times, "acknowledged": report.acknowledged, "failed": report.failed,
            "read": report.records_read, "lost": report.lost, "inconsistent": report.inconsistent,
            "duplicated": report.duplicates, "reordered": report.reordered,
            "replicas_compared": report.replicas_compared, "bytes_compared": report.bytes_compared,
            "replica_mismatches": report.replica_mismatches, "producer_fatal": report.producer_fatal,
            "examples": report.examples,
        }, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
