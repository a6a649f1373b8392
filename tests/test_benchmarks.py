"""Smoke test of the benchmark runner: `python -m benchmarks run --quick` works from a checkout.

It measures nothing against a threshold (DESIGN.md: never a timed unit test); it checks that
the runner finishes, prints every row of the table and writes its JSON and PNG.
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
