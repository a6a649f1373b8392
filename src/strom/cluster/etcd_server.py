"""``EtcdServer``: a throwaway single-member etcd for tests, demos and ``strom.Cluster``.

It runs Debian's ``etcd`` 3.4 binary (package ``etcd-server``) on loopback, with a temporary
data directory unless given one, and tuned to start fast (``--heartbeat-interval 10
--election-timeout 100``: a single member elects itself in a few milliseconds, so the server
answers within about 0.1 s). Ports are picked by the OS unless given and kept for
``restart()``, so clients can reconnect to the same endpoint. ``pause()`` / ``resume()``
(SIGSTOP / SIGCONT) and ``kill()`` are there for fault-injection tests::

    with EtcdServer() as etcd:
        store = EtcdMetadataStore([etcd.endpoint], "test", node_id=0)

The process gets SIGTERM when the thread that started it dies (Linux's PR_SET_PDEATHSIG), so a
killed test run leaves no etcd behind; start it from a thread that lives as long as it should.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from types import TracebackType

from strom.embedded import _die_with_parent

_NOT_FOUND = (
    "etcd was not found on PATH: install Debian's etcd-server package (apt-get install etcd-server)"
)
_DEBIAN_ETCD = "/usr/bin/etcd"  # where etcd-server installs it, should PATH lack /usr/bin
# A health probe must never go through an HTTP proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EtcdNotFound(RuntimeError):
    """The etcd binary is not installed."""

    def __init__(self) -> None:
        super().__init__(_NOT_FOUND)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EtcdServer:
    """One etcd member listening on loopback only.

    ``client_port`` / ``peer_port`` are 0 until the first ``start()`` picks them (when not
    given), then fixed for the server's lifetime. ``data_dir`` is None until then when not
    given; a temporary one is created by ``start()`` and removed by ``stop()``."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        client_port: int = 0,
        peer_port: int = 0,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"EtcdServer listens on loopback only, not {host!r}")
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._own_data_dir = data_dir is None
        self._temp_dir: Path | None = None
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=200)

    # --- state ---------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The client URL, ``http://127.0.0.1:PORT`` (known once started)."""
        if not self.client_port:
            raise RuntimeError("the etcd server has not been started")
        return f"http://{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """The process exists (paused counts as running)."""
        return self._process is not None and self._process.poll() is None

    @property
    def output(self) -> str:
        """The last lines etcd wrote (errors only, at the log level used)."""
        return "\n".join(self._output)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> EtcdServer:
        """Start etcd and return once it answers ``/health``; raises EtcdNotFound, or
        RuntimeError with etcd's output when it exits or does not become healthy in time."""
        if self.running:
            raise RuntimeError("the etcd server is already running")
        binary = shutil.which("etcd") or (_DEBIAN_ETCD if Path(_DEBIAN_ETCD).exists() else None)
        if binary is None:
            raise EtcdNotFound()
        if self.data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="strom-etcd-"))
            self.data_dir = self._temp_dir / "data"
        given = (self.client_port, self.peer_port)
        attempts = 1 if all(given) else 3  # a picked port can be taken before etcd binds it
        for attempt in range(attempts):
            self.client_port = given[0] or _free_port(self.host)
            self.peer_port = given[1] or _free_port(self.host)
            try:
                self._launch(binary, timeout)
                return self
            except _EarlyExit as exc:
                if attempt + 1 == attempts:
                    raise RuntimeError(f"etcd exited during start-up:\n{exc}") from None
        raise AssertionError("unreachable")

    def _launch(self, binary: str, timeout: float) -> None:
        assert self.data_dir is not None
        name = "strom-etcd"
        client_url = f"http://{self.host}:{self.client_port}"
        peer_url = f"http://{self.host}:{self.peer_port}"
        command = [
            binary,
            "--name", name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}",
            "--heartbeat-interval", "10",
            "--election-timeout", "100",
            "--logger", "zap",
            "--log-level", "error",
        ]
        self._output.clear()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        assert self._process.stdout is not None
        # Keep reading so that a chatty etcd never blocks on a full pipe.
        threading.Thread(target=self._drain, args=(self._process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None:
                self._process.wait()
                self._process = None
                time.sleep(0.05)  # let the drain thread collect the last lines
                raise _EarlyExit(self.output)
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"etcd did not become healthy within {timeout}s:\n{self.output}")
            time.sleep(0.01)

    def _drain(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._output.append(line.rstrip())

    def _healthy(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.endpoint}/health", timeout=0.5) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``); a temporary data dir is removed."""
        self._terminate(timeout)
        if self._own_data_dir and self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self.data_dir = None

    def _terminate(self, timeout: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a paused etcd handles SIGTERM only once resumed
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash: the data dir stays for ``restart()``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or partitioned etcd)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if not self.running:
            raise RuntimeError("the etcd server is not running")
        assert self._process is not None
        self._process.send_signal(signum)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (if running) and start again on the same ports with the same data."""
        self._terminate(timeout)
        self.start(timeout)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint if self.running else "stopped"
        return f"<EtcdServer {where} data_dir={self.data_dir}>"


class _EarlyExit(Exception):
    """etcd exited before it became healthy (message: its output)."""
