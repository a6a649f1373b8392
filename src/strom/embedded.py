"""``strom.Broker``: a broker you start from Python, in this process or as a subprocess.

In-process (the default) the broker runs its own event loop in a daemon thread, so it works
beside any application or test framework, asyncio or not. As a subprocess it is the same
``strom serve`` a user runs. Either way the port is chosen by the OS unless given, the
advertised address is the bound one, and the data directory is a temporary one (removed on
stop) unless given::

    with strom.Broker() as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap_servers})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import subprocess
import subprocess as _subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_LISTENING = re.compile(r"strom listening on (\S+):(\d+)")


def _die_with_parent() -> None:
    """In the child before exec: a SIGTERM when the parent dies, so that a killed test run
    leaves no broker behind (Linux's PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _kafka_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class Broker:
    """A single-node strom broker.

    ``config`` takes Kafka-named broker settings (``{"num.partitions": 3}``), as ``strom.toml``
    does; ``subprocess=True`` runs ``python -m strom serve`` instead of a thread.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: Mapping[str, Any] | None = None,
        subprocess: bool = False,
        startup_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.config = {k: _kafka_value(v) for k, v in (config or {}).items()}
        self.use_subprocess = subprocess
        self.startup_timeout = startup_timeout
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._process: _subprocess.Popen[str] | None = None  # (``subprocess`` is the flag here)
        self._output: deque[str] = deque(maxlen=200)

    @property
    def bootstrap_servers(self) -> str:
        if not self.running:
            raise RuntimeError("the broker is not running")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._thread is not None and self._thread.is_alive()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Broker:
        if self.running:
            raise RuntimeError("the broker is already running")
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="strom-")) / "data"
        if self.use_subprocess:
            self._start_process()
        else:
            self._start_thread()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Shut down cleanly (the data is flushed); the temporary data directory goes too."""
        if self._process is not None:
            self._stop_process(timeout)
        elif self._thread is not None:
            if self._loop is not None and self._stop_event is not None and self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the broker did not stop within {timeout}s")
            self._thread = None
        if self._own_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.running else "stopped"
        return f"<strom.Broker {where} data_dir={self.data_dir}>"

    # --- in this process -----------------------------------------------------------------------

    def _start_thread(self) -> None:
        from strom.metadata.broker_config import load_broker_config

        settings = dict(self.config)
        settings["log.dirs"] = str(self.data_dir)
        settings["listeners"] = f"PLAINTEXT://{self.host}:{self.port}"
        broker_config = load_broker_config(None, {}, settings)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop: asyncio.AbstractEventLoop
            try:
                import uvloop

                loop = uvloop.new_event_loop()
            except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
                loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(broker_config, ready))
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"strom-broker-{uuid.uuid4().hex[:6]}", daemon=True)
        self._thread.start()
        if not ready.wait(self.startup_timeout):
            raise RuntimeError(f"the broker did not start within {self.startup_timeout}s")
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"the broker failed to start: {failure[0]}") from failure[0]

    async def _serve(self, broker_config: Any, ready: threading.Event) -> None:
        from strom.server.broker import Broker as ServerBroker

        server = ServerBroker(broker_config)
        self._stop_event = asyncio.Event()
        await server.start()
        try:
            self.port = server.port
            ready.set()
            await self._stop_event.wait()
        finally:
            await server.stop()

    # --- as a subprocess -----------------------------------------------------------------------

    def _start_process(self) -> None:
        command = [
            sys.executable, "-m", "strom", "serve",
            "--data-dir", str(self.data_dir), "--listen", f"{self.host}:{self.port}",
        ]
        for key, value in self.config.items():
            command += ["-o", f"{key}={value}"]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        found = threading.Event()

        def drain(lines: Iterable[str]) -> None:
            for line in lines:  # keep reading so the pipe never fills and blocks the broker
                self._output.append(line.rstrip())
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.port = int(match.group(2))
                    found.set()

        assert self._process.stderr is not None
        threading.Thread(target=drain, args=(self._process.stderr,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not found.wait(0.02):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._stop_process(1.0)
                output = "\n".join(self._output)
                raise RuntimeError(f"strom serve did not start:\n{output}")

    def _stop_process(self, timeout: float) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # --- conveniences for tests ----------------------------------------------------------------

    def admin(self, **conf: Any) -> Any:
        """A confluent-kafka AdminClient for this broker."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap_servers, **conf})

    def create_topic(
        self,
        name: str | None = None,
        partitions: int = 1,
        config: Mapping[str, Any] | None = None,
        timeout: float = 15.0,
    ) -> str:
        """Create a topic (a fresh unique name unless given) and return its name once ready."""
        from confluent_kafka.admin import NewTopic

        name = name or f"topic-{uuid.uuid4().hex[:12]}"
        admin = self.admin()
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1,
                         config={k: _kafka_value(v) for k, v in (config or {}).items()})
        admin.create_topics([topic], request_timeout=timeout)[name].result(timeout)
        return name

    def reset(self, timeout: float = 15.0) -> None:
        """Delete every topic except the internal ones, and every consumer group."""
        admin = self.admin()
        topics = [t for t in admin.list_topics(timeout=timeout).topics if not t.startswith("__")]
        if topics:
            for future in admin.delete_topics(topics, request_timeout=timeout).values():
                future.result(timeout)
        with contextlib.suppress(Exception):  # brokers without group support have no groups
            listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
            groups = [g.group_id for g in listed.valid]
            if groups:
                for future in admin.delete_consumer_groups(groups, request_timeout=timeout).values():
                    future.result(timeout)
