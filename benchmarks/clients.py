"""The load generators, and running them as child processes with their CPU time measured.

Kafka load comes from librdkafka, the C client every broker here is measured with:

* ``rdkperf`` (benchmarks/rdkperf.c), a ~200-line C driver compiled on first use with the
  system C compiler and linked against the librdkafka inside the confluent-kafka wheel (so it
  is librdkafka 2.x whatever the distribution ships). It is faster than kcat (no line parsing,
  no output formatting) and times itself: produce from the first ``produce()`` to the last
  delivery report, consume from the first fetched batch to the N-th record (the group join is
  reported apart).
* where no C compiler is found, ``python -m benchmarks.pyclient``: the same modes with
  confluent-kafka (the same librdkafka, slower per record in Python); the table says which.

Every client is a child process started in its own process group, reaped with ``os.wait4``
so its CPU time (user + system, all threads) comes from the kernel, and killed with its
group when its deadline passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "strom-benchmarks"


def librdkafka_library() -> Path | None:
    """The librdkafka shared library bundled in the confluent-kafka wheel."""
    try:
        import confluent_kafka
    except ImportError:
        return None
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*")) if libs.is_dir() else []
    return found[0] if found else None


def librdkafka_version() -> str:
    try:
        import confluent_kafka

        return confluent_kafka.libversion()[0]
    except ImportError:
        return "?"


def build_rdkperf() -> Path | None:
    """Compile rdkperf.c (cached by source hash and library path); None when it cannot be built."""
    lib = librdkafka_library()
    cc = shutil.which("cc") or shutil.which("gcc")
    if lib is None or cc is None or os.environ.get("BENCH_KAFKA_CLIENT") == "python":
        return None
    source = HERE / "rdkperf.c"
    key = hashlib.sha256(source.read_bytes() + str(lib).encode()).hexdigest()[:16]
    binary = CACHE / f"rdkperf-{key}"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    cmd = [cc, "-O2", "-o", str(tmp), str(source), str(lib), f"-Wl,-rpath,{lib.parent}"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        print(f"benchmarks: cannot build rdkperf ({exc}); using the Python client\n{err.decode()[-500:]}",
              file=sys.stderr)
        return None
    tmp.replace(binary)
    return binary


@dataclass
class KafkaClient:
    """How Kafka load is generated: the rdkperf binary, or the Python fallback."""

    binary: Path | None

    @property
    def name(self) -> str:
        if self.binary is not None:
            return f"rdkperf (C, librdkafka {librdkafka_version()})"
        return f"confluent-kafka (Python, librdkafka {librdkafka_version()})"

    def command(self, mode: str, args: list[str]) -> list[str]:
        if self.binary is not None:
            return [str(self.binary), mode, *args]
        return [sys.executable, "-m", "benchmarks.pyclient", mode, *args]


@dataclass
class Finished:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float  # user + system of the child, all threads
    wall_s: float

    def json(self) -> dict[str, Any]:
        for line in reversed(self.stdout.strip().splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(
            f"{self.command[0]} printed no result (exit {self.returncode}):\n{self.stderr[-2000:]}"
        )


def spawn(command: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
          stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_parallel(commands: list[list[str]], timeout: float, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> list[Finished]:
    """Start every command at once, wait for all (bounded by ``timeout``), return results."""
    started = time.monotonic()
    procs = [spawn(c, env=env, cwd=cwd) for c in commands]
    return wait_all(procs, commands, started, timeout)


def wait_all(procs: list[subprocess.Popen[bytes]], commands: list[list[str]], started: float,
             timeout: float) -> list[Finished]:
    import threading

    outputs: dict[int, tuple[bytes, bytes]] = {}

    def drain(i: int, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None and p.stderr is not None
        err_chunks: list[bytes] = []
        t = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)  # type: ignore[union-attr]
        t.start()
        out = p.stdout.read()
        t.join()
        outputs[i] = (out, b"".join(err_chunks))

    drainers = [threading.Thread(target=drain, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for t in drainers:
        t.start()
    results: dict[int, Finished] = {}
    deadline = started + timeout
    try:
        while len(results) < len(procs):
            for i, p in enumerate(procs):
                if i in results:
                    continue
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid == 0:
                    continue
                p.returncode = os.waitstatus_to_exitcode(status)
                drainers[i].join(10)
                out, err = outputs.get(i, (b"", b""))
                results[i] = Finished(commands[i], p.returncode, out.decode(errors="replace"),
                                      err.decode(errors="replace"), usage.ru_utime + usage.ru_stime,
                                      time.monotonic() - started)
            if len(results) < len(procs):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"client did not finish within {timeout:.0f}s: {commands[0]}")
                time.sleep(0.005)
    finally:
        for i, p in enumerate(procs):
            if i not in results:
                kill_group(p)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(p.pid, 0)
    return [results[i] for i in range(len(procs))]
