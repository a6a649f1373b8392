"""Shared test fixtures: a real strom broker in a subprocess.

`Broker` starts `python -m strom serve --data-dir DIR --listen 127.0.0.1:PORT` on a free port,
waits until the port accepts connections and stops it with SIGTERM (expecting exit code 0).

Fixtures:
  broker          module-scoped broker, shared by the tests of one module (fast path)
  fresh_broker    function-scoped broker, for tests that restart or kill it
  broker_factory  function-scoped factory: broker_factory(*extra_args) -> started Broker
  unique_topic    function returning a fresh, valid topic name on every call
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = float(os.environ.get("STROM_TEST_START_TIMEOUT", "10"))
STOP_TIMEOUT = float(os.environ.get("STROM_TEST_STOP_TIMEOUT", "15"))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# What strom.server.connection logs when a handler's response cannot be encoded (e.g. a field
# no version of the response has) before it closes the connection: clients retry past that,
# so a test may pass regardless; stopping the broker fails it.
UNENCODABLE_RESPONSE = "cannot be encoded"


class BrokerError(AssertionError):
    pass


class Broker:
    """One strom broker process; can be stopped, killed and started again on the same port/dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        extra_args: tuple[str, ...] | list[str] = (),
        log_dir: Path | None = None,
        http: bool = False,
    ) -> None:
        """``http``: an HTTP listener (/metrics, the console) on a free port, ``http_port``."""
        self.host = host
        self._port_given = port is not None
        self.port = port or free_port(host)
        self.http_port = free_port(host) if http else None
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_path: Path | None = None
        self._log_file = None

    # -- addresses -----------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "strom",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            *(["--http", f"{self.host}:{self.http_port}"] if self.http_port is not None else []),
            *self.extra_args,
        ]

    # -- logs ----------------------------------------------------------------------------------
    def log_text(self, tail: int = 8000) -> str:
        """The last `tail` characters of this broker's combined stdout/stderr (current start)."""
        if self._log_path is None or not self._log_path.exists():
            return "<no output>"
        text = self._log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def all_logs(self, tail: int = 8000) -> str:
        parts = []
        for p in sorted(self.log_dir.glob(f"broker-{self.port}-*.log")):
            parts.append(f"--- {p.name} ---\n{p.read_text(errors='replace')}")
        text = "\n".join(parts) or "<no output>"
        return text[-tail:] if tail else text

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> Broker:
        for attempt in range(3):
            try:
                return self._start(timeout)
            except BrokerError as exc:
                # free_port() races with other test processes: a port taken meanwhile is picked
                # again on a first start (a restart keeps its ports).
                if "address already in use" not in str(exc) or self.starts > 1 or attempt == 2:
                    raise
                if not self._port_given:
                    self.port = free_port(self.host)
                if self.http_port is not None:
                    self.http_port = free_port(self.host)
                self.starts = 0
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Broker:
        if self.alive:
            raise BrokerError("broker already running")
        self.starts += 1
        self._close_log()
        self._log_path = self.log_dir / f"broker-{self.port}-{self.starts}.log"
        self._log_file = open(self._log_path, "wb")  # noqa: SIM115
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        src = str(REPO_ROOT / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.data_dir.parent),
            start_new_session=True,  # a Ctrl-C on pytest does not hit the broker directly
        )
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise BrokerError(
                    f"broker exited with code {code} during startup\n"
                    f"command: {' '.join(self.command())}\noutput:\n{self.log_text()}"
                )
            if port_open(self.host, self.port):
                return self
            if time.monotonic() > deadline:
                self._force_kill()
                raise BrokerError(
                    f"broker did not accept connections on {self.bootstrap} within {timeout}s\n"
                    f"command: {' '.join(self.command())}\noutput:\n{self.log_text()}"
                )
            time.sleep(0.02)

    def check_responses(self) -> None:
        """Fail if the broker could not encode a response (every start so far)."""
        logs = self.all_logs(tail=0)
        if UNENCODABLE_RESPONSE in logs:
            at = logs.index(UNENCODABLE_RESPONSE)
            raise BrokerError(f"the broker could not encode a response:\n{logs[max(0, at - 200):at + 3000]}")

    def stop(self, timeout: float = STOP_TIMEOUT, *, check: bool = True) -> int | None:
        """SIGTERM, wait; SIGKILL after `timeout`. With check, a non-zero exit is an error, and
        so is a response the broker could not encode."""
        if self.proc is None:
            return None
        if check:
            self.check_responses()
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._force_kill()
                if check:
                    raise BrokerError(
                        f"broker did not exit within {timeout}s of SIGTERM\n"
                        f"output:\n{self.log_text()}"
                    ) from None
                return proc.returncode
            code = proc.returncode
            self._close_log()
            if check and code != 0:
                raise BrokerError(
                    f"broker exited with code {code} on SIGTERM (expected 0)\noutput:\n{self.log_text()}"
                )
            return code
        # it had already exited on its own: that is a crash unless someone killed it on purpose
        code = proc.returncode
        self._close_log()
        if check:
            raise BrokerError(
                f"broker had already exited (code {code}) before it was stopped\n"
                f"output:\n{self.log_text()}"
            )
        return code

    def restart(self, timeout: float = STOP_TIMEOUT) -> Broker:
        """SIGTERM (expecting exit 0), then start again on the same port and data dir."""
        self.stop(timeout)
        return self.start()

    def kill9(self) -> None:
        """SIGKILL the broker (no clean shutdown) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self._force_kill()
        self._close_log()

    def _force_kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<Broker {self.bootstrap} {state} data_dir={self.data_dir}>"


def _finish(broker: Broker) -> None:
    """Teardown: a broker that crashed, hung, or exited non-zero on SIGTERM fails the test."""
    if broker.proc is None:
        return
    if broker.proc.poll() is not None and broker.proc.returncode in (-signal.SIGKILL,):
        broker.check_responses()
        return  # killed on purpose (kill9) and not started again
    broker.stop(check=True)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    """A broker shared by all tests of one module."""
    base = tmp_path_factory.mktemp("broker")
    b = Broker(base / "data", log_dir=base)
    b.start()
    yield b
    _finish(b)


@pytest.fixture
def fresh_broker(tmp_path: Path):
    """A broker of its own for one test (restart / kill tests)."""
    b = Broker(tmp_path / "data", log_dir=tmp_path)
    b.start()
    yield b
    _finish(b)


@pytest.fixture
def broker_factory(tmp_path: Path):
    """broker_factory(*extra_args) starts a broker with extra CLI arguments; all stopped at teardown."""
    started: list[Broker] = []

    def make(*extra_args: str, start: bool = True) -> Broker:
        n = len(started)
        d = tmp_path / f"b{n}"
        b = Broker(d / "data", extra_args=extra_args, log_dir=d)
        started.append(b)
        if start:
            b.start()
        return b

    yield make
    errors = []
    for b in started:
        try:
            _finish(b)
        except BrokerError as exc:
            errors.append(str(exc))
    if errors:
        raise BrokerError("\n\n".join(errors))


_NAME_CLEAN = re.compile(r"[^a-zA-Z0-9._-]+")


def make_topic_name(hint: str = "t") -> str:
    hint = _NAME_CLEAN.sub("-", hint).strip("-.")[:60] or "t"
    return f"{hint}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest):
    """unique_topic() / unique_topic("hint") -> a new valid topic name on every call."""
    base = request.node.name.removeprefix("test_")

    def make(hint: str | None = None) -> str:
        return make_topic_name(f"{base}-{hint}" if hint else base)

    return make


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
