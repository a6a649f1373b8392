"""The machine's own limits, measured in the same run as the brokers, and its description.

* loopback TCP: one process writes 1 MiB buffers into a 127.0.0.1 socket, another reads them
  (``recv_into``), so the figure is the kernel's copy in and out, on both cores, as for a broker;
* sendfile: ``os.sendfile`` of a file that is in the page cache into a loopback socket drained
  by another process (a Kafka fetch's zero-copy path);
* sequential disk write of 1 MiB blocks: into the page cache with no sync, with one
  ``fdatasync`` at the end, and with ``fdatasync`` after every block.

MB/s is 10**6 bytes per second. Each figure is the median of 3 runs (1 with --quick).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def _drain(port: int, total: int, conn: Any) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        got = 0
        while got < total:
            n = s.recv_into(view)
            if n == 0:
                break
            got += n
    conn.send(got)


def _listener() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    return srv, srv.getsockname()[1]


def _with_reader(total: int, send: Any) -> float:
    """Run ``send(sock)`` against a reader process; seconds until the reader has it all."""
    ctx = mp.get_context("fork")
    srv, port = _listener()
    parent, child = ctx.Pipe()
    reader = ctx.Process(target=_drain, args=(port, total, child), daemon=True)
    reader.start()
    try:
        srv.settimeout(30)
        sock, _ = srv.accept()
        with sock:
            t0 = time.perf_counter()
            send(sock)
            if not parent.poll(60):
                raise TimeoutError("reader did not finish")
            got = parent.recv()
            elapsed = time.perf_counter() - t0
        if got != total:
            raise RuntimeError(f"reader got {got} of {total} bytes")
        return elapsed
    finally:
        srv.close()
        reader.join(10)
        if reader.is_alive():
            reader.kill()


def loopback_tcp(total: int) -> float:
    data = memoryview(b"\0" * CHUNK)

    def send(sock: socket.socket) -> None:
        left = total
        while left > 0:
            n = min(left, CHUNK)
            sock.sendall(data[:n])
            left -= n

    return total / _with_reader(total, send) / 1e6


def sendfile_socket(path: Path, total: int) -> float:
    with open(path, "rb") as f:  # read it once so it is in the page cache
        while f.read(8 * CHUNK):
            pass

    def send(sock: socket.socket) -> None:
        with open(path, "rb") as f:
            fd, out, offset = f.fileno(), sock.fileno(), 0
            while offset < total:
                n = os.sendfile(out, fd, offset, min(CHUNK, total - offset))
                if n == 0:
                    break
                offset += n

    return total / _with_reader(total, send) / 1e6


def disk_write(path: Path, total: int, sync: str) -> float:
    block = os.urandom(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        written = 0
        while written < total:
            written += os.write(fd, block)
            if sync == "every":
                os.fdatasync(fd)
        if sync == "end":
            os.fdatasync(fd)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd)
    if sync == "none":  # leave no dirty pages behind for the next measurement
        fd = os.open(path, os.O_WRONLY)
        os.fsync(fd)
        os.close(fd)
    return total / elapsed / 1e6


def measure_limits(total: int, repeats: int, workdir: Path) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="machine-") as tmp:
        path = Path(tmp) / "blob"
        every_total = min(total, 256 << 20)  # fdatasync per block is slow on some disks: bounded

        def fill() -> None:
            disk_write(path, total, "end")

        cases = [
            ("loopback TCP (1 MiB writes, reader process)", lambda: loopback_tcp(total)),
            ("os.sendfile page cache -> loopback socket", lambda: sendfile_socket(path, total)),
            ("disk write 1 MiB blocks, no sync (page cache)", lambda: disk_write(path, total, "none")),
            ("disk write 1 MiB blocks + fdatasync at end", lambda: disk_write(path, total, "end")),
            ("disk write 1 MiB blocks + fdatasync every block",
             lambda: disk_write(path, every_total, "every")),
        ]
        for name, fn in cases:
            if "sendfile" in name:
                fill()
            runs = [fn() for _ in range(repeats)]
            out.append({"name": name, "mb_per_s": statistics.median(runs), "runs": runs})
            print(f"  machine: {name}: {statistics.median(runs):,.0f} MB/s", file=sys.stderr, flush=True)
    return out


def _first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def context() -> dict[str, Any]:
    from benchmarks.clients import librdkafka_version

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        ck = version("confluent-kafka")
    except Exception:  # noqa: BLE001
        ck = "?"
    root = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "librdkafka": librdkafka_version(),
        "confluent_kafka": ck,
        "strom_commit": commit,
        "load_average_start": os.getloadavg(),
    }
