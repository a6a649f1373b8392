"""TLS and SASL beside plaintext: one strom broker with a PLAINTEXT and a SASL_SSL listener
(SCRAM-SHA-512 over TLS, certificates from trustme), the same produce and consume workloads
on each, taking turns (``python -m benchmarks run --only security``).

Plaintext fetches go out zero copy (os.sendfile); under TLS every byte passes through the
SSL object, so the consume rows show what that costs. The SCRAM exchange happens once per
connection and is not in the timed part."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.brokers import ServerProcess, StromBroker
from benchmarks.clients import KafkaClient
from benchmarks.model import Row, Sizes, median_row
from benchmarks.procstat import ProcTree
from benchmarks.workloads import consume, log, produce

USER, PASSWORD = "bench", "bench-secret"


@dataclass
class Listener:
    """What the workloads need of a broker: a name, a bootstrap address, the process, and
    the client settings for this listener."""

    name: str
    bootstrap: str
    server: ServerProcess
    client_conf: dict[str, str]

    @property
    def proc(self) -> ProcTree:
        return ProcTree(self.server.pid)


class SecureStrom(StromBroker):
    """strom with PLAINTEXT and SASL_SSL listeners on free ports."""

    listening = r"strom listening on (\S+):(\d+) \(also SASL_SSL on port (\d+)\)"

    def start(self) -> SecureStrom:
        import trustme

        pki = Path(tempfile.mkdtemp(prefix="bench-pki-", dir=self.tmp))
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(pki / "ca.pem"))
        ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pki / "server.pem"))
        self.ca = str(pki / "ca.pem")
        subprocess.run([sys.executable, "-m", "strom", "user", "add", USER, "--password", PASSWORD,
                        "--mechanism", "SCRAM-SHA-512", "--data-dir", str(self.tmp / "data")], check=True, capture_output=True)
        self.overrides = {**self.overrides, "listeners": "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
                          "ssl.keystore.location": str(pki / "server.pem"), "sasl.enabled.mechanisms": "SCRAM-SHA-512"}
        super().start()
        return self

    def started(self, listening: re.Match[str]) -> None:
        super().started(listening)
        self.tls_port = int(listening.group(3))

    def listeners(self) -> list[Listener]:
        assert self.server is not None
        sasl = {"security.protocol": "SASL_SSL", "ssl.ca.location": self.ca, "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": USER, "sasl.password": PASSWORD}
        return [Listener("plaintext", self.bootstrap, self.server, {}),
                Listener("SASL_SSL (SCRAM-SHA-512)", f"127.0.0.1:{self.tls_port}", self.server, sasl)]


def run_security_suite(client: KafkaClient, sizes: Sizes) -> dict[str, Any]:
    """Produce then consume 1 KiB records on each listener, ``sizes.security_repeats`` turns."""
    pairs: list[dict[str, Any]] = []
    with SecureStrom() as broker:
        listeners = broker.listeners()
        for size, records in ((100, sizes.security_records_100), (1024, sizes.security_records_1k)):
            produced: dict[str, list[Row]] = {ls.name: [] for ls in listeners}
            consumed: dict[str, list[Row]] = {ls.name: [] for ls in listeners}
            for rep in range(sizes.security_repeats):
                for ls in listeners:
                    topic = f"sec-{size}-{rep}-{len(ls.name)}"
                    broker.create_topic(topic, 1)
                    produced[ls.name].append(produce(ls, client, topic, size, "all", 1, records, 1,  # type: ignore[arg-type]
                                                     extra=ls.client_conf))
                    consumed[ls.name].append(consume(ls, client, topic, size, 1, records,  # type: ignore[arg-type]
                                                     extra=ls.client_conf))
            for workload, rows in (("produce", produced), ("consume", consumed)):
                chosen = {name: median_row(r) for name, r in rows.items()}
                for name, row in chosen.items():
                    log(f"{name}: {workload} {size} B: {row.records_per_s:,.0f} rec/s, "
                        f"{row.cpu_per_million:.2f} broker CPU s per M records")
                pairs.append({"workload": f"{workload} {size} B", "rows": {n: r.as_dict() for n, r in chosen.items()}})
        with contextlib.suppress(Exception):
            broker.delete_topic("unused")
    quota = run_quota(client, sizes)
    return {"quota": quota, "settings": {"repeats": sizes.security_repeats, "records_100": sizes.security_records_100,
                         "records_1k": sizes.security_records_1k, "client": client.name,
                         "listeners": [ls.name for ls in listeners]}, "pairs": pairs}


def run_quota(client: KafkaClient, sizes: Sizes, rate: int = 1_000_000) -> dict[str, Any]:
    """A producer that could go much faster, under producer_byte_rate: the rate it gets over
    the whole run. Kafka's rate assumes a full window from the first record on, so a new client
    may first send a window's worth (10 s at the quota) at full speed: the run lasts
    ``quota_seconds`` at the quota so that burst weighs little."""
    from strom.cli.wire import call
    from strom.protocol import ApiKey

    with StromBroker() as broker:
        call(broker.bootstrap, 10, {}, ApiKey.ALTER_CLIENT_QUOTAS, 1, {"entries": [{
            "entity": [{"entity_type": "client-id", "entity_name": "bench-quota"}],
            "ops": [{"key": "producer_byte_rate", "value": float(rate), "remove": False}]}], "validate_only": False})
        broker.create_topic("quota", 1)
        records = rate * sizes.quota_seconds // 1024
        row = produce(broker, client, "quota", 1024, "all", 1, records, 1,
                      extra={"client.id": "bench-quota", "batch.size": "65536"})
    achieved = row.records * 1024 / row.seconds
    log(f"producer_byte_rate={rate:,}: {achieved:,.0f} B/s over {row.seconds:.1f} s")
    return {"quota_bytes_per_s": rate, "achieved_bytes_per_s": achieved, "seconds": row.seconds,
            "records": row.records, "record_size": 1024}


def markdown(data: dict[str, Any]) -> str:
    names = data["settings"]["listeners"]
    plain, tls = names
    lines = [f"| workload | {plain}: records/s | {tls}: records/s | {tls} / {plain} | "
             f"broker CPU s per M records: {plain} | {tls} | ratio |", "|---|---|---|---|---|---|---|"]
    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f} x" if y and x == x and y == y else "-"

    for pair in data["pairs"]:
        a, b = pair["rows"][plain], pair["rows"][tls]
        rate_a, rate_b = (r["records"] / r["seconds"] if r["seconds"] else float("nan") for r in (a, b))
        cpu_a, cpu_b = (r["broker_cpu_s"] / r["records"] * 1e6 if r["records"] else float("nan") for r in (a, b))
        lines.append(f"| {pair['workload']} | {rate_a:,.0f} | {rate_b:,.0f} | {ratio(rate_b, rate_a)} | "
                     f"{cpu_a:.2f} | {cpu_b:.2f} | {ratio(cpu_b, cpu_a)} |")
    quota = data.get("quota")
    if quota:
        lines += ["", "| quota | set | achieved by a producer that could go faster | achieved / set |", "|---|---|---|---|",
                  f"| producer_byte_rate (1 KiB records, {quota['records'] * 1024 / 1e6:.0f} MB in {quota['seconds']:.0f} s) | {quota['quota_bytes_per_s']:,} B/s "
                  f"| {quota['achieved_bytes_per_s']:,.0f} B/s | {quota['achieved_bytes_per_s'] / quota['quota_bytes_per_s']:.2f} x |"]
    return "\n".join(lines)
