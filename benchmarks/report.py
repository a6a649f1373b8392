"""The run's output: a markdown table on stdout, ``<date>.json`` and ``<date>.png`` (matplotlib)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.model import Row

HEADER = (
    "| system | workload | record | acks | partitions | client | records/s | MB/s "
    "| latency p50 / p99 / p99.9 ms | broker CPU s | broker CPU s per M records "
    "| broker CPU s per GiB | broker RSS MB | client CPU s | note |"
)


def _num(v: float, fmt: str = ",.0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def label(row: Row) -> str:
    """A short name for a row's workload, shared by every system (the chart's categories)."""
    if row.workload == "latency":
        return f"latency @{row.rate:,.0f}/s" + (f" linger.ms={row.linger_ms}" if row.linger_ms >= 0 else "")
    if row.workload in ("produce", "consume"):
        acks = f" acks={row.acks}" if row.workload == "produce" and row.acks else ""
        size = "1 KiB" if row.record_size == 1024 else f"{row.record_size} B"
        return f"{row.workload} {size} {row.partitions}p{acks}"
    return row.workload


def chart_label(row: Row) -> str:
    """label(), with a non-Kafka peer's acknowledgement (publisher confirms, persistent, ...)
    put with acks=all, its nearest Kafka equivalent, so the systems share the chart's bars."""
    if row.workload == "produce" and row.acks not in ("", "1", "all"):
        return label(Row(**{**row.__dict__, "acks": "all"}))
    return label(row)


def markdown(rows: list[Row]) -> str:
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for r in rows:
        size = "-" if not r.record_size else ("1 KiB" if r.record_size == 1024 else f"{r.record_size} B")
        lat = "-" if math.isnan(r.p50_ms) else f"{r.p50_ms:.2f} / {r.p99_ms:.2f} / {r.p999_ms:.2f}"
        work = label(r) if r.workload == "latency" else r.workload
        timed = r.workload not in ("idle",) and r.seconds > 0
        lines.append(
            f"| {r.system} | {work} | {size} | {r.acks or '-'} | {r.partitions or '-'} | {r.client} "
            f"| {_num(r.records_per_s) if timed and r.workload != 'latency' else '-'} "
            f"| {_num(r.mb_per_s, ',.1f') if timed and r.workload != 'latency' else '-'} | {lat} "
            f"| {_num(r.broker_cpu_s, '.2f')} "
            f"| {_num(r.cpu_per_million, '.2f') if r.records else '-'} "
            f"| {_num(r.cpu_per_gib, '.2f') if r.bytes else '-'} "
            f"| {_num(r.broker_rss / 1e6, '.0f')} | {_num(r.client_cpu_s, '.2f') if timed else '-'} "
            f"| {r.note} |"
        )
    return "\n".join(lines)


def machine_markdown(limits: list[dict[str, Any]]) -> str:
    lines = ["| machine limit | MB/s |", "|---|---|"]
    lines += [f"| {m['name']} | {m['mb_per_s']:,.0f} |" for m in limits]
    return "\n".join(lines)


def context_markdown(ctx: dict[str, Any]) -> str:
    load = ctx.get("load_average_start", ())
    load_end = ctx.get("load_average_end", ())

    def fmt(t: Any) -> str:
        return " / ".join(f"{x:.2f}" for x in t) if t else "?"

    return (
        f"{ctx['date']}: {ctx['nproc']} x {ctx['cpu']}, {ctx['memory_gib']} GiB, {ctx['os']}, "
        f"kernel {ctx['kernel']}, Python {ctx['python']}, librdkafka {ctx['librdkafka']} "
        f"(confluent-kafka {ctx['confluent_kafka']}), strom {ctx['strom_commit']}; "
        f"load average (1/5/15 min) {fmt(load)} at start, {fmt(load_end)} at end"
        + (f"; 1-min load during the run: mean {during['mean']:.2f}, max {during['max']:.2f}"
           if (during := ctx.get("load_1min_during")) else "")
    )


def write_json(path: Path, ctx: dict[str, Any], limits: list[dict[str, Any]], rows: list[Row],
               extra: dict[str, Any]) -> None:
    path.write_text(json.dumps({"context": ctx, "machine": limits, "rows": [r.as_dict() for r in rows],
                                **extra}, indent=1, default=str) + "\n")


def chart(path: Path, ctx: dict[str, Any], limits: list[dict[str, Any]], rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems: list[str] = []
    for r in rows:
        if r.system not in systems:
            systems.append(r.system)
    tput = [r for r in rows if r.workload in ("produce", "consume") or r.workload.endswith("00p")]
    cats: list[str] = []
    for r in tput:
        if chart_label(r) not in cats:
            cats.append(chart_label(r))
    lat = [r for r in rows if r.workload == "latency"]
    fig, axes = plt.subplots(1, 3, figsize=(20, max(6, 0.35 * len(cats) + 2)),
                             gridspec_kw={"width_ratios": [3, 2, 3]})
    height = 0.8 / max(1, len(systems))
    for si, system in enumerate(systems):
        by = {chart_label(r): r for r in tput if r.system == system}
        ys = [i + si * height for i in range(len(cats))]
        color = f"C{si % 10}"
        axes[0].barh(ys, [by[c].records_per_s / 1e6 if c in by else 0 for c in cats], height, label=system,
                     color=color)
        axes[1].barh(ys, [by[c].cpu_per_million if c in by and by[c].records else 0 for c in cats],
                     height, label=system, color=color)
    for ax in axes[:2]:
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(cats))])
        ax.set_yticklabels(cats, fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_xlabel("million records/s (higher is better)")
    axes[0].set_title("throughput")
    if systems:
        axes[0].legend(fontsize=8)
    if any(r.records and r.cpu_per_million > 0 for r in tput):  # a log axis needs a positive value
        axes[1].set_xscale("log")
    axes[1].set_xlabel("broker CPU seconds per million records (log; lower is better)")
    axes[1].set_title("broker cost")
    lat_systems = [s for s in systems if any(r.system == s for r in lat)]
    lat_cats: list[str] = []
    for r in lat:
        if label(r) not in lat_cats:
            lat_cats.append(label(r))
    width = 0.8 / max(1, len(lat_systems))
    for si, system in enumerate(lat_systems):
        by_cat = {label(r): r for r in lat if r.system == system}
        xs = [i + si * width for i in range(len(lat_cats))]
        axes[2].bar(xs, [by_cat[c].p99_ms if c in by_cat and not math.isnan(by_cat[c].p99_ms) else 0
                         for c in lat_cats], width, label=system, color=f"C{systems.index(system) % 10}")
    axes[2].set_xticks([i + 0.4 - width / 2 for i in range(len(lat_cats))])
    axes[2].set_xticklabels([c.replace("latency ", "").replace(" linger", "\nlinger") for c in lat_cats],
                            fontsize=8, rotation=30, ha="right")
    if any(r.p99_ms > 0 for r in lat):  # NaN compares False
        axes[2].set_yscale("log")
    axes[2].set_ylabel("end-to-end p99 ms (log; lower is better)")
    axes[2].set_title("latency at a fixed rate, 100 B")
    if lat_systems:
        axes[2].legend(fontsize=8)
    limit_text = "; ".join(f"{m['name'].split(' (')[0]}: {m['mb_per_s']:,.0f} MB/s" for m in limits[:2])
    fig.suptitle(f"strom benchmarks, {ctx['date']}, {ctx['nproc']} x {ctx['cpu']}; {limit_text}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _find(rows: list[Row], system: str, workload: str, size: int = 100, acks: str = "",
          partitions: int = 1, rate: float = 0, linger: int = -1) -> Row | None:
    for r in rows:
        if (r.system == system and r.workload == workload and (not size or r.record_size == size)
                and (not acks or r.acks == acks) and (not partitions or r.partitions == partitions)
                and (not rate or r.rate == rate) and (linger < 0 or r.linger_ms == linger)):
            return r
    return None


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    """Issue 7's targets for one strom broker process, checked against this run's rows."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, unit: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "unit": unit,
                    "met": None if value is None or (isinstance(value, float) and math.isnan(value)) else ok})

    p100 = _find(rows, "strom", "produce", 100, "all")
    add("produce 100 B acks=all >= 1,000,000 records/s", p100.records_per_s if p100 else None, "records/s",
        bool(p100 and p100.records_per_s >= 1e6))
    p1k = max((r for r in rows if r.system == "strom" and r.workload == "produce" and r.record_size == 1024),
              key=lambda r: r.mb_per_s, default=None)
    add("produce with 1 MiB batches >= 500 MB/s (best 1 KiB row)", p1k.mb_per_s if p1k else None, "MB/s",
        bool(p1k and p1k.mb_per_s >= 500))
    c100 = _find(rows, "strom", "consume", 100)
    add("consume >= 2,000,000 records/s (100 B, 1 partition)", c100.records_per_s if c100 else None,
        "records/s", bool(c100 and c100.records_per_s >= 2e6))
    for linger in (0, 1):
        lat = _find(rows, "strom", "latency", 100, rate=5000, linger=linger)
        add(f"e2e p99 < 5 ms at 5,000 records/s (linger.ms={linger})", lat.p99_ms if lat else None, "ms",
            bool(lat and lat.p99_ms < 5))
    idle = _find(rows, "strom", "idle", 0, partitions=0)
    add("idle RSS < 60 MB", idle.broker_rss / 1e6 if idle else None, "MB", bool(idle and idle.broker_rss < 60e6))
    for workload in ("produce", "consume"):
        for size in (100, 1024):
            s = _find(rows, "strom", workload, size, "all" if workload == "produce" else "")
            t = _find(rows, "tansu", workload, size, "all" if workload == "produce" else "")
            if s and t:
                add(f"ahead of Tansu: {workload} {size} B 1 partition (strom / Tansu)",
                    s.records_per_s / t.records_per_s, "x", s.records_per_s > t.records_per_s)
    return out


def targets_markdown(items: list[dict[str, Any]], title: str = "target (issue 7)") -> str:
    lines = [f"| {title} | this run | met |", "|---|---|---|"]
    for t in items:
        v = t["value"]
        shown = "-" if v is None else (f"{v:,.2f} {t['unit']}" if t["unit"] in ("ms", "x", "s") else f"{v:,.0f} {t['unit']}")
        lines.append(f"| {t['target']} | {shown} | {'-' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    return "\n".join(lines)


# --- the cluster group (benchmarks/cluster.py) -----------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f} x"


def _per_m(row: dict[str, Any]) -> float | None:
    return row.get("broker_cpu_s_per_million")


def _s(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _roles(pair: dict[str, Any], scale: float) -> str:
    """" (leader a, followers b + c)": the cluster's CPU by role, times ``scale``."""
    roles = pair.get("cluster_cpu_s_by_role") or {}
    if roles.get("leader") is None:
        return ""
    followers = " + ".join(f"{f * scale:.2f}" for f in roles["followers"])
    return f" (leader {roles['leader'] * scale:.2f}, followers {followers})"


def _floor_roles(mode: dict[str, Any]) -> str:
    if mode.get("leader_cpu_s_per_gb") is None:  # results written before the split was kept
        return ""
    followers = " + ".join(f"{f:.2f}" for f in mode["followers_cpu_s_per_gb"])
    return f" (leader {mode['leader_cpu_s_per_gb']:.2f}, followers {followers})"


def cluster_markdown(data: dict[str, Any]) -> str:
    """The single broker beside the 3-broker cluster (workload | single | cluster | ratio), then
    the failover rows."""
    st = data.get("settings", {})
    lines = ["| workload | single broker | 3-broker cluster | cluster / single |", "|---|---|---|---|"]
    for pair in data.get("pairs", []):
        one, three, name = pair["single"], pair["cluster"], pair["workload"]
        if name.startswith("produce"):
            lines.append(f"| {name}: records/s | {_num(one['records_per_s'] or math.nan)} "
                         f"| {_num(three['records_per_s'] or math.nan)} "
                         f"| {_ratio(three['records_per_s'], one['records_per_s'])} |")
            lines.append(f"| {name}: broker CPU s per M records (cluster: sum of 3 brokers) "
                         f"| {_s(_per_m(one))} | {_s(_per_m(three))}{_roles(pair, 1e6 / three['records'])} "
                         f"| {_ratio(_per_m(three), _per_m(one))} |")
            etcd = pair.get("etcd_cpu_s")
            per_m = etcd / three["records"] * 1e6 if etcd is not None and three["records"] else None
            lines.append(f"| {name}: etcd CPU s per M records | - | {_s(per_m)} | - |")
        else:
            lines.append(f"| {name}: e2e p50 / p99 ms | {_s(one['p50_ms'])} / {_s(one['p99_ms'])} "
                         f"| {_s(three['p50_ms'])} / {_s(three['p99_ms'])} "
                         f"| {_ratio(three['p50_ms'], one['p50_ms'])} / {_ratio(three['p99_ms'], one['p99_ms'])} |")
            lines.append(f"| {name}: broker CPU s (cluster: sum; etcd {_s(pair.get('etcd_cpu_s'))} s) "
                         f"| {_s(one['broker_cpu_s'])} | {_s(three['broker_cpu_s'])}{_roles(pair, 1.0)} "
                         f"| {_ratio(three['broker_cpu_s'], one['broker_cpu_s'])} |")
    floor = data.get("floor")
    if floor:
        for mode, how in (("sendfile", "with sendfile, as Kafka"), ("copy", "by a pread copy, as strom to a follower on its host"),
                          ("splice", "by a pread copy, and they receive with splice (no copy in user space)")):
            if mode not in floor:  # (results from before the splice mode)
                continue
            lines.append(f"| floor: the produce bytes moved by a minimal program (no broker), CPU s per GB; "
                         f"the leader sends to 2 followers {how} | {_s(floor['single_cpu_s_per_gb'])} "
                         f"| {_s(floor[mode]['cluster_cpu_s_per_gb'])}{_floor_roles(floor[mode])} "
                         f"| {_ratio(floor[mode]['cluster_cpu_s_per_gb'], floor['single_cpu_s_per_gb'])} |")
    idle = data.get("idle")
    if idle:
        secs = idle["seconds"]
        lines.append(f"| idle: broker CPU % of one core over {secs:.0f} s (cluster: sum; etcd "
                     f"{idle['etcd_cpu_s'] / secs * 100:.1f} %) | {idle['single_cpu_s'] / secs * 100:.1f} "
                     f"| {idle['cluster_cpu_s'] / secs * 100:.1f} | - |")
        lines.append(f"| idle: broker RSS MB (cluster: sum; etcd {idle['etcd_rss'] / 1e6:.0f} MB) "
                     f"| {idle['single_rss'] / 1e6:.0f} | {idle['cluster_rss'] / 1e6:.0f} "
                     f"| {_ratio(idle['cluster_rss'], idle['single_rss'])} |")
    out = "\n".join(lines)
    failover = data.get("failover", [])
    if failover:
        rows = ["| failover: leader `kill -9` to the next acknowledged produce | kills | p50 s | p90 s | max s "
                "| Metadata names the new leader, p50 s | target: p50 below | met | back in the ISR after "
                "restart, p50 s | note |", "|---|---|---|---|---|---|---|---|---|---|"]
        for f in failover:
            target = f["session_timeout_ms"] / 1000 + 1
            n = len(f["kills"])
            controller = sum(1 for k in f["kills"] if k["leader"] == k["controller"])
            lost = "" if f.get("end_offset") in (None, f["acked"]) else f"; end offset {f['end_offset']} != acked {f['acked']}"
            note = (f"{controller} of {n} kills hit the controller too; {f['acked']:,} acked, "
                    f"{f['delivery_errors']} delivery errors" + lost
                    + (f"; {f['failed_kills']} kills with no ack" if f["failed_kills"] else "")
                    + (f"; fatal: {f['fatal']}" if f.get("fatal") else ""))
            met = "-" if f["p50_s"] is None else ("yes" if f["p50_s"] < target and not f["failed_kills"] else "no")
            goal = f"{target:.1f} s"
            if not f["default"]:  # an option shown beside the default, not a target
                goal, met = "-", "-"
            rows.append(f"| broker.session.timeout.ms={f['session_timeout_ms']}"
                        f"{' (default)' if f['default'] else ''} | {n} | {_s(f['p50_s'])} | {_s(f['p90_s'])} "
                        f"| {_s(f['max_s'])} | {_s(f.get('leader_moved_p50_s'))} | {goal} | {met} "
                        f"| {_s(f.get('rejoin_p50_s'), '.1f')} | {note} |")
        out += "\n\n" + "\n".join(rows)
    if st:
        out += (f"\n\nCluster settings: {st['brokers']} brokers + etcd, topics with replication factor "
                f"{st['replication_factor']} and min.insync.replicas={st['min_insync_replicas']}, acks=all, "
                f"1 partition; produce {st['records_100']:,} x 100 B and {st['records_1k']:,} x 1 KiB, median of "
                f"{st['repeats']} (single broker and cluster taking turns), client {st['client']}; latency "
                f"{st['latency_seconds']:g} s per row; failover producer: idempotent, acks=all, one 100 B record "
                f"every {st['failover_interval_ms']:g} ms, librdkafka defaults otherwise.")
    return out


def cluster_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The cluster targets: replicated CPU per record <= 3.5 x the single broker's; failover
    p50 below broker.session.timeout.ms + 1 s with the default timeout."""
    out: list[dict[str, Any]] = []
    for pair in data.get("pairs", []):
        if pair["workload"].startswith("produce"):
            one, three = _per_m(pair["single"]), _per_m(pair["cluster"])
            value = three / one if one and three is not None else None
            out.append({"target": f"{pair['workload']}: cluster broker CPU per record <= 3.5 x single broker's",
                        "value": value, "unit": "x", "met": None if value is None else value <= 3.5})
    for f in data.get("failover", []):
        if not f["default"]:
            continue  # the shorter timeout is shown as an option (its own table row), not a target
        limit = f["session_timeout_ms"] / 1000 + 1
        value = f["p50_s"]
        out.append({"target": f"failover p50 < broker.session.timeout.ms + 1 s = {limit:g} s (default)",
                    "value": value, "unit": "s",
                    "met": None if value is None else bool(value < limit and not f["failed_kills"])})
    return out
