"""``strom.Cluster``: a local strom cluster (a throwaway etcd and N brokers) for tests and demos.

Every broker is the same ``python -m strom serve --etcd ...`` a user runs, in a subprocess of
its own, so a test can kill it (SIGKILL), pause it (SIGSTOP, a hung or partitioned broker),
resume it and restart it, and check that the application survives::

    with strom.Cluster(brokers=3) as cluster:
        topic = cluster.create_topic(partitions=1, config={"min.insync.replicas": 2})
        cluster.kill(cluster.leader(topic, 0))
        ...

Node ids are 0..N-1. Each broker's port, and the port of its HTTP listener (``/metrics``,
``/healthz``, ``/readyz`` and the web console; ``http_address(node)``), is chosen once, before
the first start, and kept across restarts, so the addresses clients have cached stay valid.
etcd (Debian's ``etcd-server``) is started from PATH unless ``etcd_endpoints`` names a running
one. The data directory is a temporary one (removed by ``stop()``) unless given; a given one
keeps ``cluster.json`` (cluster id and ports), ``etcd/`` and ``broker-<id>/``, so that a
cluster started again on the same directory is the same cluster, with its data, at the same
addresses.

The children get SIGTERM when the thread that started them ends (Linux's PR_SET_PDEATHSIG):
start a cluster from a thread that lives as long as the cluster should, such as the main one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from strom.embedded import _LISTENING, _die_with_parent, _kafka_value

__all__ = ["Cluster"]

HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")
_LOG_LINES = 1000

# librdkafka reports every refused connection to a killed broker on stderr: the harness's own
# clients keep quiet (the callers' clients log as they are configured to).
_QUIET = logging.getLogger("strom.testing.cluster.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel handed out a moment ago (all held until all are
    picked, so that no two are the same)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_state(pid: int, *, stopped: bool, timeout: float = 5.0) -> None:
    """Wait until the kernel has delivered SIGSTOP / SIGCONT (asynchronous), so a test that
    pauses a broker knows it no longer runs (Linux; elsewhere a no-op)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if (state in ("T", "t")) == stopped:
            return
        time.sleep(0.001)


@dataclass
class _Node:
    id: int
    port: int
    rack: str | None
    data_dir: Path
    port_fixed: bool  # given (base_port, cluster.json) or bound once: never re-picked
    http_port: int  # the harness's HTTP listener (used unless http=False or http.listener is set)
    http_fixed: bool  # from cluster.json or bound once: never re-picked
    output: deque[str] = field(default_factory=lambda: deque(maxlen=_LOG_LINES))
    run_output: deque[str] = field(default_factory=lambda: deque(maxlen=_LOG_LINES))  # this run's
    process: subprocess.Popen[str] | None = None
    listening: threading.Event = field(default_factory=threading.Event)
    paused: bool = False
    extra_ports: dict[str, int] = field(default_factory=dict)  # more listeners: name -> port

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """N strom brokers sharing a throwaway etcd, each a ``strom serve`` subprocess.

    ``config`` takes Kafka-named broker settings for every broker (``{"min.insync.replicas":
    2}``); ``racks`` are handed out round-robin (broker i gets ``racks[i % len(racks)]``);
    ``session_timeout_ms`` is ``broker.session.timeout.ms``, how long a killed or paused broker
    keeps its place before the controller moves its leaderships (the broker default when None);
    ``base_port`` puts broker i on ``base_port + i`` instead of free ports picked by the OS.

    Every broker gets an HTTP listener (``http.listener``: ``/metrics``, ``/healthz``,
    ``/readyz``, the web console) on a free port of its own, ``http_address(node)``. These are
    free ports picked by the OS even with ``base_port``, which places the Kafka listeners only:
    a base port that worked before needs no second block of free ports beside it, and a picked
    port that something else took before the broker bound it is picked again (the Kafka one
    too, unless given by ``base_port`` or ``cluster.json``). Like the Kafka ports they are kept
    across broker restarts and, with a given ``data_dir``, in ``cluster.json`` (``http_ports``),
    so the same directory brings them back. ``http=False`` starts the brokers with ``--http
    off``; an ``http.listener`` in ``config`` is passed on as it is (every broker gets the same
    value).
    """

    def __init__(
        self,
        brokers: int = 3,
        *,
        data_dir: Path | str | None = None,
        config: Mapping[str, Any] | None = None,
        racks: Sequence[str] | None = None,
        etcd_endpoints: str | None = None,
        session_timeout_ms: int | None = None,
        startup_timeout: float = 30.0,
        cluster_id: str | None = None,
        base_port: int | None = None,
        listeners: Mapping[str, str] | None = None,
        http: bool = True,
    ) -> None:
        """``listeners``: more listeners beside each broker's PLAINTEXT one, as name ->
        security protocol (``{"INTERNAL": "SASL_SSL"}``), each on a free port; their TLS and
        SASL settings go in ``config`` (e.g. ``inter.broker.listener.name``). ``http``: give
        every broker an HTTP listener on a free port (False: none, ``--http off``)."""
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        if racks is not None and (not racks or not all(isinstance(r, str) and r for r in racks)):
            raise ValueError("racks must be a non-empty sequence of non-empty names")
        if base_port is not None and not 0 < base_port <= 65536 - brokers:
            raise ValueError(f"base_port {base_port} leaves no room for {brokers} brokers")
        self.brokers = brokers
        self.config = {k: _kafka_value(v) for k, v in (config or {}).items()}
        if session_timeout_ms is not None:
            self.config["broker.session.timeout.ms"] = str(session_timeout_ms)
        self.racks = list(racks) if racks is not None else None
        self.startup_timeout = startup_timeout
        self.cluster_id = cluster_id
        self.base_port = base_port
        self.listeners = {name.upper(): protocol.upper() for name, protocol in (listeners or {}).items()}
        self.http = http
        self._etcd_endpoints = etcd_endpoints
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.etcd: Any = None  # strom.cluster.etcd_server.EtcdServer, or None with etcd_endpoints
        self._etcd_ports: tuple[int, int] = (0, 0)  # kept in cluster.json with a given data dir
        self._nodes: dict[int, _Node] = {}
        self._started = False

    # --- what tests look at ---------------------------------------------------------------------

    def listener_address(self, node_id: int, listener: str) -> str:
        """``host:port`` of one of ``listeners`` on a broker."""
        return f"{HOST}:{self._nodes[node_id].extra_ports[listener.upper()]}"

    def http_address(self, node_id: int) -> str:
        """``127.0.0.1:PORT`` of a broker's HTTP listener (``/metrics``, ``/healthz``,
        ``/readyz``, the console at ``/``), the same across restarts. With an ``http.listener``
        in ``config``, that address (a wildcard host as 127.0.0.1). RuntimeError when the
        brokers have none (``http=False``, or ``http.listener`` off)."""
        node = self._node(node_id)
        setting = self.config.get("http.listener")
        if setting is None:
            if not self.http:
                raise RuntimeError(f"broker {node_id} has no HTTP listener: the cluster was "
                                   "made with http=False")
            return f"{HOST}:{node.http_port}"
        if setting.strip().lower() == "off":
            raise RuntimeError(f"broker {node_id} has no HTTP listener: http.listener is off")
        host, _, port = setting.strip().rpartition(":")
        return f"{HOST if host in _WILDCARDS else host}:{port}"

    @property
    def nodes(self) -> list[int]:
        """Every broker's node id (running or not)."""
        return list(range(self.brokers))

    @property
    def bootstrap_servers(self) -> str:
        """Every broker's address, comma-separated (a killed one too: clients skip it)."""
        self._require_started()
        return ",".join(n.address for n in self._nodes.values())

    @property
    def etcd_endpoint(self) -> str:
        """The etcd client URL(s) the brokers use."""
        if self._etcd_endpoints is not None:
            return self._etcd_endpoints
        if self.etcd is None:
            raise RuntimeError("the cluster has not been started")
        return str(self.etcd.endpoint)

    def address(self, node: int) -> str:
        """``127.0.0.1:PORT`` of one broker (the same across restarts)."""
        return self._node(node).address

    def pid(self, node: int) -> int | None:
        n = self._node(node)
        return n.process.pid if n.alive and n.process is not None else None

    def alive(self, node: int) -> bool:
        """Whether the broker's process exists (a paused one is alive)."""
        return self._node(node).alive

    def paused(self, node: int) -> bool:
        return self._node(node).alive and self._node(node).paused

    def logs(self, node: int) -> str:
        """The last lines the broker wrote (all its runs, most recent last)."""
        return "\n".join(self._node(node).output)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start etcd (unless given endpoints) and every broker; return once every broker lists
        every other in its Metadata. Raises EtcdNotFound when etcd is not installed."""
        if self._started:
            raise RuntimeError("the cluster is already running")
        self._started = True
        try:
            self._prepare()
            if self._etcd_endpoints is None:
                self._start_etcd()
            self._save_state()
            deadline = time.monotonic() + self.startup_timeout
            for node in self._nodes.values():
                self._launch(node)
            for node in self._nodes.values():
                self._await_listening(node, deadline)
            self._save_state()  # ports re-picked after a clash
            self.wait_ready(max(deadline - time.monotonic(), 1.0))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every broker cleanly (SIGTERM, SIGKILL after ``timeout``), then etcd; a
        temporary data directory is removed. Safe to call more than once."""
        running = [n for n in self._nodes.values() if n.alive]
        for node in running:
            self._signal_stop(node)
        deadline = time.monotonic() + timeout
        for node in running:
            self._reap(node, max(deadline - time.monotonic(), 0.1))
        if self.etcd is not None:
            self.etcd.stop()
            self.etcd = None
        if self._own_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        self._started = False

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        states = []
        for n in self._nodes.values():
            state = "paused" if n.alive and n.paused else "up" if n.alive else "down"
            states.append(f"{n.id}={n.address}({state})")
        return f"<strom.Cluster {' '.join(states) or 'stopped'} data_dir={self.data_dir}>"

    # --- failures -------------------------------------------------------------------------------

    def kill(self, node: int) -> None:
        """SIGKILL, as a crash (the page cache, so the data written, survives)."""
        n = self._running(node)
        assert n.process is not None
        n.process.kill()
        n.process.wait()
        n.paused = False

    def pause(self, node: int) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or partitioned broker).
        Paused past ``session_timeout_ms`` it loses its place in the cluster."""
        n = self._running(node)
        assert n.process is not None
        n.process.send_signal(signal.SIGSTOP)
        n.paused = True
        _wait_state(n.process.pid, stopped=True)

    def resume(self, node: int) -> None:
        """SIGCONT a paused broker."""
        n = self._running(node)
        assert n.process is not None
        n.process.send_signal(signal.SIGCONT)
        n.paused = False
        _wait_state(n.process.pid, stopped=False)

    def stop_broker(self, node: int, timeout: float = 15.0) -> int:
        """Stop one broker cleanly (SIGTERM; SIGKILL after ``timeout``); return its exit code."""
        n = self._running(node)
        self._signal_stop(n)
        return self._reap(n, timeout)

    def start_broker(self, node: int, *, ready: bool = True) -> None:
        """Start a stopped or killed broker again, on its port and with its data; with ``ready``
        return once every live broker lists it (``wait_ready``), else once it listens."""
        self._require_started()
        n = self._node(node)
        if n.alive:
            raise RuntimeError(f"broker {node} is already running")
        n.output.append(f"--- strom.Cluster: starting broker {node} again ---")
        self._launch(n)
        self._await_listening(n, time.monotonic() + self.startup_timeout)
        if ready:
            self.wait_ready()

    def restart(self, node: int, *, wipe: bool = False, ready: bool = True) -> None:
        """Stop a broker cleanly (if it runs), optionally delete its data directory (a replaced
        disk), and start it again on the same port."""
        n = self._node(node)
        if n.alive:
            self.stop_broker(node)
        if wipe:
            shutil.rmtree(n.data_dir, ignore_errors=True)
        self.start_broker(node, ready=ready)

    # --- waiting on the cluster -----------------------------------------------------------------

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once every live (running, not paused) broker lists every other live broker in
        its Metadata; TimeoutError otherwise."""
        self._require_started()
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while True:
            live = [n for n in self._nodes.values() if n.alive and not n.paused]
            wanted = {n.id for n in live}
            views: dict[int, set[int] | None] = {}
            for n in live:
                md = self._metadata([n], timeout=1.0)
                views[n.id] = None if md is None else set(md.brokers)
            if all(seen is not None and wanted <= seen for seen in views.values()):
                return
            if time.monotonic() > deadline:
                lines = [f"broker {i} lists {sorted(v) if v is not None else 'nothing (no answer)'}"
                         for i, v in views.items()]
                raise TimeoutError(
                    f"the cluster did not become ready: want every one of {sorted(wanted)} "
                    f"listed by each, but {'; '.join(lines)}\n{self._tails(live)}"
                )
            time.sleep(0.1)

    def admin(self, **conf: Any) -> Any:
        """A confluent-kafka AdminClient for the cluster."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _QUIET, **conf})  # type: ignore[dict-item]  # a logger is a valid value

    def create_topic(
        self,
        name: str | None = None,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Create a topic (a fresh unique name unless given; ``min(3, brokers)`` replicas unless
        given) and return its name once every live broker's Metadata shows a leader for every
        partition."""
        from confluent_kafka.admin import NewTopic

        name = name or f"topic-{uuid.uuid4().hex[:12]}"
        rf = replication_factor if replication_factor is not None else min(3, self.brokers)
        topic = NewTopic(name, num_partitions=partitions, replication_factor=rf,
                         config={k: _kafka_value(v) for k, v in (config or {}).items()})
        admin = self.admin()  # held: a collected client cancels its pending requests
        admin.create_topics([topic], request_timeout=timeout)[name].result(timeout)
        deadline = time.monotonic() + timeout
        while not self._led_everywhere(name, partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"topic {name} has no leader for every partition after {timeout}s"
                )
            time.sleep(0.05)
        return name

    def leader(self, topic: str, partition: int = 0, timeout: float = 10.0) -> int:
        """The node id leading a partition, as a live broker's Metadata tells it (-1: none)."""
        md = self._metadata(self._live(), timeout=timeout, topic=topic)
        if md is None:
            raise TimeoutError(f"no broker answered Metadata within {timeout}s")
        t = md.topics.get(topic)
        if t is None or partition not in t.partitions:
            raise KeyError(f"no partition {topic}-{partition} in the metadata")
        return int(t.partitions[partition].leader)

    # --- internals ------------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the cluster is not running")

    def _node(self, node: int) -> _Node:
        self._require_started()
        try:
            return self._nodes[node]
        except KeyError:
            raise ValueError(f"no broker {node}: the node ids are {self.nodes}") from None

    def _running(self, node: int) -> _Node:
        n = self._node(node)
        if not n.alive:
            raise RuntimeError(f"broker {node} is not running")
        return n

    def _live(self) -> list[_Node]:
        return [n for n in self._nodes.values() if n.alive and not n.paused]

    def _prepare(self) -> None:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="strom-cluster-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((self.data_dir / STATE_FILE).read_text())
        if self.cluster_id is None:
            self.cluster_id = state.get("cluster_id") or f"strom-{uuid.uuid4().hex[:8]}"
        client_port, peer_port = state.get("etcd_ports") or (0, 0)
        self._etcd_ports = (int(client_port), int(peer_port))
        saved = {int(k): int(v) for k, v in (state.get("broker_ports") or {}).items()}
        saved_http = {int(k): int(v) for k, v in (state.get("http_ports") or {}).items()}
        # All at once, so that no two are the same: per broker its Kafka port, its HTTP port
        # and one per extra listener (the ones given or saved are left unused).
        picked = iter(_free_ports(self.brokers * (2 + len(self.listeners))))
        for i in range(self.brokers):
            free_port, free_http = next(picked), next(picked)
            if self.base_port is not None:
                port, fixed = self.base_port + i, True
            elif i in saved:
                port, fixed = saved[i], True
            else:
                port, fixed = free_port, False
            http_port, http_fixed = (saved_http[i], True) if i in saved_http else (free_http, False)
            rack = self.racks[i % len(self.racks)] if self.racks else None
            self._nodes[i] = _Node(i, port, rack, self.data_dir / f"broker-{i}", fixed, http_port, http_fixed)
            self._nodes[i].extra_ports = {name: next(picked) for name in self.listeners}

    def _save_state(self) -> None:
        """Remember the cluster id and ports, so the same data directory is the same cluster."""
        if self._own_data_dir or self.data_dir is None:
            return
        state = {
            "cluster_id": self.cluster_id,
            "broker_ports": {str(n.id): n.port for n in self._nodes.values()},
            "http_ports": {str(n.id): n.http_port for n in self._nodes.values()},
            "etcd_ports": [self.etcd.client_port, self.etcd.peer_port] if self.etcd else None,
        }
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def _start_etcd(self) -> None:
        from strom.cluster.etcd_server import EtcdServer

        assert self.data_dir is not None
        client_port, peer_port = self._etcd_ports
        self.etcd = EtcdServer(self.data_dir / "etcd", client_port=client_port, peer_port=peer_port)
        self.etcd.start()

    def _launch(self, node: _Node) -> None:
        command = [
            sys.executable, "-m", "strom", "serve",
            "--etcd", self.etcd_endpoint,
            "--cluster-id", str(self.cluster_id),
            "--node-id", str(node.id),
            "--data-dir", str(node.data_dir),
        ]
        if self.listeners:
            named = ",".join(f"{name}://{HOST}:{port}" for name, port in node.extra_ports.items())
            command += ["-o", f"listeners=PLAINTEXT://{node.address},{named}"]
            if "listener.security.protocol.map" not in self.config:
                protocols = ",".join(f"{name}:{protocol}" for name, protocol in self.listeners.items())
                command += ["-o", f"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,{protocols}"]
        else:
            command += ["--listen", node.address]
        if "http.listener" not in self.config:
            command += ["--http", f"{HOST}:{node.http_port}" if self.http else "off"]
        if node.rack is not None:
            command += ["--rack", node.rack]
        for key, value in self.config.items():
            command += ["-o", f"{key}={value}"]
        node.paused = False
        node.listening = threading.Event()
        node.run_output = deque(maxlen=_LOG_LINES)
        # A session of its own: a Ctrl-C at the terminal reaches the harness, which stops the
        # brokers in order, rather than every broker at once.
        node.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        assert node.process.stdout is not None
        threading.Thread(
            target=self._drain, args=(node, node.process.stdout, node.listening, node.run_output),
            name=f"strom-cluster-broker-{node.id}", daemon=True,
        ).start()

    @staticmethod
    def _drain(node: _Node, lines: Iterable[str], listening: threading.Event, run: deque[str]) -> None:
        for line in lines:  # keep reading so the pipe never fills and blocks the broker
            node.output.append(line.rstrip())
            run.append(line.rstrip())
            if not listening.is_set() and _LISTENING.search(line):
                listening.set()

    def _await_listening(self, node: _Node, deadline: float) -> None:
        attempts = 0
        while not node.listening.wait(0.02):
            assert node.process is not None
            if node.process.poll() is not None:
                time.sleep(0.05)  # let the drain thread collect the last lines
                # This run's last words: "... is already in use" for a Kafka listener,
                # "Cannot serve http.listener ...: ... address already in use" for HTTP.
                last = "\n".join(node.run_output).lower()
                clash = "already in use" in last
                http_clash = clash and "http.listener" in last
                if attempts < 3 and http_clash and not node.http_fixed and self._http_managed:
                    # The picked HTTP port was taken before the broker bound it: pick another.
                    attempts += 1
                    node.http_port = _free_ports(1)[0]
                    self._launch(node)
                    continue
                if attempts < 3 and clash and not http_clash and not node.port_fixed:
                    # The picked port (or an extra listener's) was taken before the broker
                    # bound it: pick them again.
                    attempts += 1
                    node.port, *extra = _free_ports(1 + len(node.extra_ports))
                    node.extra_ports = dict(zip(node.extra_ports, extra, strict=True))
                    self._launch(node)
                    continue
                raise RuntimeError(f"broker {node.id} exited during start-up "
                                   f"(code {node.process.returncode}):\n{self.logs(node.id)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker {node.id} did not start within {self.startup_timeout}s:"
                                   f"\n{self.logs(node.id)}")
        # Bound once: clients know them from now on ("strom listening on" comes once the HTTP
        # listener is up too).
        node.port_fixed = node.http_fixed = True

    @property
    def _http_managed(self) -> bool:
        """Whether the harness gives the brokers their HTTP listeners (``--http``)."""
        return self.http and "http.listener" not in self.config

    def _signal_stop(self, node: _Node) -> None:
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            node.process.terminate()
            if node.paused:
                node.process.send_signal(signal.SIGCONT)  # a stopped process handles it on resume

    def _reap(self, node: _Node, timeout: float) -> int:
        assert node.process is not None
        try:
            code = node.process.wait(timeout)
        except subprocess.TimeoutExpired:
            node.process.kill()
            code = node.process.wait()
        node.paused = False
        return code

    def _metadata(self, nodes: Sequence[_Node], timeout: float, topic: str | None = None) -> Any:
        """ClusterMetadata from a fresh client bootstrapped from ``nodes`` only (a fresh one so
        that a single node's own view is what is asked), or None when none answers."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if not nodes:
            return None
        admin = AdminClient({
            "bootstrap.servers": ",".join(n.address for n in nodes),
            "logger": _QUIET,  # type: ignore[dict-item]  # a logger is a valid value
            "socket.connection.setup.timeout.ms": 1000,
            "allow.auto.create.topics": False,
        })
        try:
            return admin.list_topics(topic=topic, timeout=timeout)
        except KafkaException:
            return None

    def _led_everywhere(self, topic: str, partitions: int) -> bool:
        for node in self._live():
            md = self._metadata([node], timeout=1.0, topic=topic)
            t = None if md is None else md.topics.get(topic)
            if t is None or t.error is not None or len(t.partitions) < partitions:
                return False
            if any(p.leader < 0 for p in t.partitions.values()):
                return False
        return True

    def _tails(self, nodes: Sequence[_Node], lines: int = 15) -> str:
        return "\n".join(
            f"--- broker {n.id} (last lines) ---\n" + "\n".join(list(n.output)[-lines:])
            for n in nodes
        )
