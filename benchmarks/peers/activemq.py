"""ActiveMQ 5.17 "Classic" (Debian's activemq), persistent messages in KahaDB, one queue.

Client: ActiveMQ's own Java tools from activemq-console (``activemq.jar producer|consumer``,
OpenWire, the broker's native protocol and its fastest client here). A persistent send over
OpenWire is synchronous: the broker answers once the message is in KahaDB's journal (synced),
so the producer runs 8 threads to let the journal batch its syncs. The figures are the tools'
own elapsed times (the slowest thread); their CPU includes the JVM's start.
End-to-end latency is not measured for ActiveMQ (the tools do not report it).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

HOME = Path("/usr/share/activemq")
THREADS = 8
TOOL_LOG4J = """log4j.rootLogger=WARN, out
log4j.logger.org.apache.activemq.util.ProducerThread=INFO
log4j.logger.org.apache.activemq.util.ConsumerThread=INFO
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%r %c{1} %m%n
"""


def _elapsed_ms(output: str) -> float:
    """The producer threads' own 'Elapsed time' (the slowest), else the span of the consumer's
    'Received' lines (log4j's %r: ms since the JVM started)."""
    times = [float(m) for m in re.findall(r"Elapsed time in milli second : (\d+)", output)]
    if times:
        return max(times)
    stamps = [int(m) for m in re.findall(r"^(\d+) \S+ .* Received ", output, re.M)]
    return float(max(stamps) - min(stamps)) if len(stamps) > 1 else 0.0


def run(client: object, sizes: object, workloads: set[str]) -> list:
    from benchmarks.brokers import ServerProcess, free_port, wait_port
    from benchmarks.clients import run_parallel
    from benchmarks.model import Row
    from benchmarks.peers import apt_install
    from benchmarks.procstat import ProcTree
    from benchmarks.workloads import log

    apt_install(["activemq"], [str(HOME / "bin" / "activemq.jar")])
    java = shutil.which("java") or "/usr/lib/jvm/default-java/bin/java"
    jar = next(Path("/usr/share/java").glob("activemq-broker-*.jar"), None)
    version = jar.stem.rsplit("-", 1)[-1] if jar else "5.17"
    system = f"activemq {version}"
    rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-activemq-"))
    server = None
    try:
        port = free_port()
        conf = tmp / "conf"
        conf.mkdir()
        xml = Path("/etc/activemq/instances-available/main/activemq.xml").read_text()
        xml = re.sub(r'<transportConnector name="openwire" uri="[^"]*"/>',
                     f'<transportConnector name="openwire" uri="tcp://127.0.0.1:{port}"/>', xml)
        (conf / "activemq.xml").write_text(xml)
        (tmp / "tool-log4j.properties").write_text(TOOL_LOG4J)
        props = [f"-Dactivemq.home={HOME}", f"-Dactivemq.base={tmp}", f"-Dactivemq.conf={conf}",
                 f"-Dactivemq.data={tmp / 'data'}"]
        server = ServerProcess([java, "-Xms512M", "-Xmx512M", *props, "-jar", str(HOME / "bin" / "activemq.jar"),
                                "start", f"xbean:file:{conf / 'activemq.xml'}"], cwd=str(tmp))
        wait_port(port, time.monotonic() + 120, server.proc)
        proc = ProcTree(server.pid)
        time.sleep(1.0)
        idle = proc.sample()
        rows.append(Row(system=system, workload="idle", client="-", broker_rss=idle.rss,
                        broker_cpu_s=idle.cpu_s, note="RSS after start (JVM, -Xmx512M as Debian ships); CPU: start-up"))
        tool = [java, f"-Dlog4j.configuration=file:{tmp / 'tool-log4j.properties'}", f"-Dactivemq.home={HOME}",
                "-jar", str(HOME / "bin" / "activemq.jar")]
        url = f"tcp://127.0.0.1:{port}"
        cap = 40_000 if getattr(sizes, "repeats", 1) > 1 else 4_000
        for size, n in ((100, sizes.peer_records_100), (1024, sizes.peer_records_1k)):  # type: ignore[attr-defined]
            n = min(n, cap) // THREADS * THREADS
            dest = f"queue://bench{size}"
            cases = []
            if workloads & {"produce", "consume"}:
                cases.append(("produce", [*tool, "producer", "--brokerUrl", url, "--destination", dest,
                                          "--messageCount", str(n // THREADS), "--messageSize", str(size),
                                          "--persistent", "true", "--parallelThreads", str(THREADS)],
                              f"activemq producer (Java, OpenWire), {THREADS} threads", "persistent, sync send"))
            if "consume" in workloads:
                cases.append(("consume", [*tool, "consumer", "--brokerUrl", url, "--destination", dest,
                                          "--messageCount", str(n), "--parallelThreads", "1"],
                              "activemq consumer (Java, OpenWire)", "auto-ack, from the queue"))
            for workload, cmd, name, note in cases:
                before = proc.sample()
                done = run_parallel([cmd], 600)[0]
                after = proc.sample()
                ms = _elapsed_ms(done.stdout + done.stderr)
                row = Row(system=system, workload=workload, client=name, record_size=size,
                          acks="persistent" if workload == "produce" else "", partitions=1, records=n,
                          bytes=n * size, seconds=ms / 1000, broker_cpu_s=after.cpu_s - before.cpu_s,
                          client_cpu_s=done.cpu_s, broker_rss=after.rss,
                          note=note + ("" if ms else f"; no timing in output (exit {done.returncode})"))
                log(f"{system}: {workload} {size}B: {row.records_per_s:,.0f} rec/s broker {row.broker_cpu_s:.2f}s")
                rows.append(row)
    finally:
        if server is not None:
            server.stop(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
