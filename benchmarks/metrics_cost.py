"""What /metrics costs the broker (``python -m benchmarks run --only metrics``): one ``strom
serve`` with its HTTP listener, 1,000 partitions (100 topics x 10) holding records and 100
consumer groups with committed offsets on every partition of one topic each (simple groups, as
admin tools and assign() consumers make them: no member, every partition lagging), so a scrape
writes every gauge there is: a log end offset and a size per partition, a lag per group and
partition, the members per group.

* scrape cost: ``metrics_scrapes`` scrapes one after the other over one keep-alive connection,
  as Prometheus scrapes; the broker's CPU seconds (/proc) over them minus its idle CPU over as
  long, per scrape, and the latency of each (p50 / p99);
* page cost: the same for the web console's pages (the overview, a topic page with its latest
  messages, a search over a topic, a group page), ``metrics_pages`` loads each;
* its effect on producing: 100 B records, acks=all, one partition (rdkperf, as the produce
  rows), with no scrape and with a scrape every second, ``metrics_repeats`` pairs of runs back
  to back (the order swapped every pair); the median of the pairs' ratios.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from typing import Any

from benchmarks.brokers import StromBroker, free_port
from benchmarks.clients import KafkaClient
from benchmarks.model import Row, Sizes, median_row
from benchmarks.workloads import log, produce

PARTITIONS_PER_TOPIC = 10
RECORDS_PER_PARTITION = 10
COMMITTED = RECORDS_PER_PARTITION // 2  # every group lags by the other half


class MeteredStrom(StromBroker):
    """strom with its HTTP listener (/metrics) on a free port."""

    def start(self) -> MeteredStrom:
        self.http_port = free_port()
        self.overrides = {**self.overrides, "http.listener": f"127.0.0.1:{self.http_port}"}
        super().start()
        return self


class Scraper:
    """GET a path (/metrics unless told) over one keep-alive connection."""

    def __init__(self, port: int, path: str = "/metrics") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = path

    def scrape(self) -> bytes:
        self.conn.request("GET", self.path)
        answer = self.conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{self.path} answered {answer.status}: {body[:300]!r}")
        return body

    def close(self) -> None:
        self.conn.close()


class EverySecond:
    """A scrape every second in a thread, until ``stop``; the latencies of those scrapes."""

    def __init__(self, port: int) -> None:
        self.latencies: list[float] = []
        self._port = port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        scraper = Scraper(self._port)
        try:
            due = time.monotonic()
            while not self._stop.is_set():
                started = time.perf_counter()
                scraper.scrape()
                self.latencies.append(time.perf_counter() - started)
                due += 1.0
                self._stop.wait(max(0.0, due - time.monotonic()))
        finally:
            scraper.close()

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(60)
        return self.latencies


def populate(broker: StromBroker, topics: int, groups: int) -> None:
    """``topics`` x 10 partitions with 10 records each; ``groups`` groups, group i committing
    offset 5 on every partition of topic i % topics."""
    from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    admin = broker.admin()
    names = [f"metered-{i:03d}" for i in range(topics)]
    created = admin.create_topics([NewTopic(n, PARTITIONS_PER_TOPIC, 1) for n in names], request_timeout=120)
    for future in created.values():
        future.result(120)
    failed: list[str] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "log_level": 3})
    for name in names:
        for p in range(PARTITIONS_PER_TOPIC):
            for _ in range(RECORDS_PER_PARTITION):
                producer.produce(name, b"x" * 100, partition=p,
                                 on_delivery=lambda err, _msg: err is not None and failed.append(str(err)))
    admin.create_topics([NewTopic("searched", 1, 1)])["searched"].result(60)
    for i in range(SEARCHED):
        producer.produce("searched", b'{"order": %d, "item": "pear", "note": "%s"}' % (i, b"x" * 50), key=b"k%d" % i,
                         on_delivery=lambda err, _msg: err is not None and failed.append(str(err)))
    if producer.flush(120) or failed:
        raise RuntimeError(f"setup records not delivered: {failed[:3]}")
    for g in range(groups):
        offsets = [TopicPartition(names[g % topics], p, COMMITTED) for p in range(PARTITIONS_PER_TOPIC)]
        for future in admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(f"metered-{g:03d}", offsets)]).values():
            future.result(60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


PAGES = {"overview": "/", "topic page (latest 20)": "/topics/metered-000",
         "topic search (10,000 records)": "/topics/searched?q=no-such-text", "group page": "/groups/metered-000"}
SEARCHED = 20_000  # JSON records of ~100 B in the topic "searched": a search scans the last 10,000


def scrape_cost(broker: MeteredStrom, scrapes: int, path: str = "/metrics") -> dict[str, Any]:
    """``scrapes`` GETs back to back, then as long idle: CPU per GET net of the idle CPU."""
    scraper = Scraper(broker.http_port, path)
    try:
        body = scraper.scrape()  # warm: the connection, the code paths
        proc = broker.proc
        latencies = []
        before, started = proc.sample(), time.monotonic()
        for _ in range(scrapes):
            t = time.perf_counter()
            scraper.scrape()
            latencies.append(time.perf_counter() - t)
        after, wall = proc.sample(), time.monotonic() - started
    finally:
        scraper.close()
    idle_from = proc.sample()
    time.sleep(max(wall, 1.0))
    idle_cpu = (proc.sample().cpu_s - idle_from.cpu_s) * wall / max(wall, 1.0)
    cpu = after.cpu_s - before.cpu_s
    lines = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    return {"scrapes": scrapes, "seconds": wall, "cpu_s": cpu, "idle_cpu_s": idle_cpu,
            "cpu_ms_per_scrape": max(cpu - idle_cpu, 0.0) / scrapes * 1000,
            "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000, "bytes": len(body), "samples": len(lines),
            "lag_series": sum(line.startswith("strom_consumer_group_lag{") for line in lines),
            "partition_series": sum(line.startswith("strom_partition_log_end_offset{") for line in lines)}


def produce_with_and_without(broker: MeteredStrom, client: KafkaClient, sizes: Sizes) -> dict[str, Any]:
    """Pairs of runs, one with and one without scrapes, back to back (the order swapped every
    pair); the ratio is the median of the pairs' ratios, which holds better than a ratio of
    medians when other work on the machine comes and goes."""
    runs: dict[str, list[Row]] = {"none": [], "scraped": []}
    under_load: list[float] = []
    for rep in range(sizes.metrics_repeats):
        for mode in ("none", "scraped") if rep % 2 == 0 else ("scraped", "none"):
            topic = f"scrape-{mode}-{rep}"
            broker.create_topic(topic, 1)
            scraping = EverySecond(broker.http_port) if mode == "scraped" else None
            try:
                runs[mode].append(produce(broker, client, topic, 100, "all", 1, sizes.metrics_records, 1))
            finally:
                if scraping is not None:
                    under_load += scraping.stop()
            broker.delete_topic(topic)
        log(f"produce 100 B acks=all: {runs['none'][-1].records_per_s:,.0f} rec/s without scrapes, "
            f"{runs['scraped'][-1].records_per_s:,.0f} with")
    ratios = [s.records_per_s / n.records_per_s for n, s in zip(runs["none"], runs["scraped"], strict=True)]
    cpu_ratios = [s.cpu_per_million / n.cpu_per_million for n, s in zip(runs["none"], runs["scraped"], strict=True)]
    none, scraped = median_row(runs["none"]), median_row(runs["scraped"])
    return {"none": none.as_dict(), "scraped": scraped.as_dict(), "ratio": statistics.median(ratios),
            "ratios": ratios, "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios,
            "scrapes_under_load": len(under_load),
            "scrape_p50_ms_under_load": percentile(under_load, 0.5) * 1000 if under_load else None}


def run_metrics_suite(client: KafkaClient, sizes: Sizes) -> dict[str, Any]:
    with MeteredStrom() as broker:
        started = time.monotonic()
        populate(broker, sizes.metrics_topics, sizes.metrics_groups)
        log(f"{sizes.metrics_topics * PARTITIONS_PER_TOPIC} partitions and {sizes.metrics_groups} groups "
            f"in {time.monotonic() - started:.1f}s")
        scrape = scrape_cost(broker, sizes.metrics_scrapes)
        expected = sizes.metrics_groups * PARTITIONS_PER_TOPIC
        if scrape["lag_series"] != expected:  # a coordinator shard still loading, say
            raise RuntimeError(f"{scrape['lag_series']} lag series scraped, {expected} expected")
        log(f"scrape: {scrape['cpu_ms_per_scrape']:.1f} ms broker CPU, p50 {scrape['p50_ms']:.1f} ms "
            f"p99 {scrape['p99_ms']:.1f} ms, {scrape['samples']:,} samples, {scrape['bytes'] / 1e3:,.0f} kB")
        pages = {name: scrape_cost(broker, sizes.metrics_pages, path) for name, path in PAGES.items()}
        for name, cost in pages.items():
            log(f"{name}: {cost['cpu_ms_per_scrape']:.1f} ms broker CPU, p50 {cost['p50_ms']:.1f} ms")
        produced = produce_with_and_without(broker, client, sizes)
    return {"settings": {"topics": sizes.metrics_topics, "partitions": sizes.metrics_topics * PARTITIONS_PER_TOPIC,
                         "groups": sizes.metrics_groups, "scrapes": sizes.metrics_scrapes,
                         "records": sizes.metrics_records, "repeats": sizes.metrics_repeats, "client": client.name},
            "scrape": scrape, "pages": pages, "produce": produced}


def markdown(data: dict[str, Any]) -> str:
    s, scrape, produced = data["settings"], data["scrape"], data["produce"]
    none, scraped = produced["none"], produced["scraped"]

    def cpu(row: dict[str, Any]) -> str:
        return f"{row['broker_cpu_s'] / row['records'] * 1e6:.2f}" if row["records"] else "-"

    under_load = produced["scrape_p50_ms_under_load"]
    return "\n".join([
        f"| /metrics: {s['partitions']:,} partitions, {s['groups']} groups ({scrape['lag_series']:,} lag series, "
        f"{scrape['samples']:,} samples, {scrape['bytes'] / 1e3:,.0f} kB) | value |",
        "|---|---|",
        f"| broker CPU per scrape (net of idle, {scrape['scrapes']} scrapes) | {scrape['cpu_ms_per_scrape']:.1f} ms |",
        f"| scrape latency p50 / p99 (one keep-alive connection) | {scrape['p50_ms']:.1f} / {scrape['p99_ms']:.1f} ms |",
        f"| produce 100 B acks=all, no scrapes: records/s | {none['records_per_s']:,.0f} |",
        f"| produce 100 B acks=all, a scrape every second: records/s | {scraped['records_per_s']:,.0f} |",
        f"| records/s with scrapes / without (median of {len(produced['ratios'])} back-to-back pairs; "
        f"range) | {produced['ratio']:.2f} x ({min(produced['ratios']):.2f} to {max(produced['ratios']):.2f}) |",
        f"| broker CPU s per M records: no scrapes / a scrape every second | {cpu(none)} / {cpu(scraped)} |",
        f"| broker CPU per record with scrapes / without (median of the pairs; range) | {produced['cpu_ratio']:.2f} x "
        f"({min(produced['cpu_ratios']):.2f} to {max(produced['cpu_ratios']):.2f}) |",
        f"| scrape latency p50 while producing ({produced['scrapes_under_load']} scrapes) | "
        + (f"{under_load:.1f} ms |" if under_load is not None else "- |"),
        *(f"| console {name}: broker CPU per load / p50 latency ({cost['scrapes']} loads) | "
          f"{cost['cpu_ms_per_scrape']:.1f} ms / {cost['p50_ms']:.1f} ms |" for name, cost in data.get("pages", {}).items()),
    ])
