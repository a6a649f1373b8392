"""Kafka-protocol brokers under test, each a child process on 127.0.0.1 in a temporary directory.

``StromBroker`` runs ``python -m strom serve`` (what a user runs); peers/tansu.py adds Tansu.
Each broker runs in its own process group, which ``stop()`` ends (SIGTERM, then SIGKILL after
a bounded wait), and the temporary directory goes with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from benchmarks.procstat import ProcTree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    # anything left in the group (helpers that outlived the leader)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class ServerProcess:
    """A server started in its own session, its output kept (bounded) for error messages."""

    def __init__(self, command: list[str], *, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.command = command
        self.output: deque[str] = deque(maxlen=300)
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace").rstrip())

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                m = regex.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.command[0]} did not start:\n" + "\n".join(self.output))

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.proc, timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid


class KafkaBroker:
    """A Kafka-protocol broker process; subclasses say how to start it."""

    name = "?"
    version = ""

    def __init__(self) -> None:
        self.port = 0
        self.server: ServerProcess | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.name.lower()}-"))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def proc(self) -> ProcTree:
        assert self.server is not None
        return ProcTree(self.server.pid)

    def start(self) -> KafkaBroker:
        raise NotImplementedError

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def admin(self):  # noqa: ANN201 - confluent_kafka.admin.AdminClient
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})

    def create_topic(self, name: str, partitions: int, timeout: float = 60.0) -> None:
        from confluent_kafka.admin import NewTopic

        admin = self.admin()  # kept referenced: the futures fail if the client is collected
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)], request_timeout=timeout
        )
        futures[name].result(timeout)
        # wait until the metadata shows every partition with a leader
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            md = admin.list_topics(name, timeout=10).topics.get(name)
            if md is not None and md.error is None and len(md.partitions) == partitions and all(
                p.leader >= 0 for p in md.partitions.values()
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"topic {name} not ready")

    def delete_topic(self, name: str, timeout: float = 30.0) -> None:
        with contextlib.suppress(Exception):  # only to free space; a failure changes no figure
            admin = self.admin()
            admin.delete_topics([name], request_timeout=timeout)[name].result(timeout)


class StromBroker(KafkaBroker):
    name = "strom"

    def __init__(self, overrides: dict[str, str] | None = None, src: Path | None = None) -> None:
        super().__init__()
        self.overrides = overrides or {}
        # the strom source tree to run (default: this checkout's src/)
        self.src = src or Path(__file__).resolve().parent.parent / "src"
        try:
            from importlib.metadata import version

            self.version = version("strom")
        except Exception:  # noqa: BLE001
            self.version = "?"

    # the line that says it is up; group 2 is the (first listener's) port
    listening = r"strom listening on (\S+):(\d+)"

    def start(self) -> StromBroker:
        command = [sys.executable, "-m", "strom", "serve", "--data-dir", str(self.tmp / "data")]
        if "listeners" not in self.overrides:
            command += ["--listen", "127.0.0.1:0"]
        for key, value in self.overrides.items():
            command += ["-o", f"{key}={value}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.src), env.get("PYTHONPATH", "")) if p)
        self.server = ServerProcess(command, env=env)
        self.started(self.server.wait_for(self.listening, 30))
        return self

    def started(self, listening: re.Match[str]) -> None:
        """Read what the start line tells (the port, here)."""
        self.port = int(listening.group(2))
