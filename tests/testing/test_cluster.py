"""strom.Cluster, the strom_cluster fixture and ``strom cluster up``.

The tests named ``test_e2e_*`` need cluster mode end to end (brokers that replicate and see
each other through etcd); the others also hold with one broker, or test only the harness
(etcd, processes, ports, arguments, messages). Select the former with ``-k e2e``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import strom
from strom.cluster.etcd_server import EtcdNotFound, EtcdServer
from strom.testing import cluster as cluster_module
from strom.testing.cluster import Cluster, _free_ports

pytestmark = pytest.mark.timeout(180)
pytest_plugins = ["pytester"]

REPO_SRC = str(Path(__file__).resolve().parents[2] / "src")
SESSION_MS = 3000  # a killed broker's leaderships move after this long (the default is 9 s)

# Makes etcd look absent in a child process: off PATH, and not at Debian's /usr/bin/etcd
# either (EtcdServer looks there too).
HIDE_ETCD = '''
import pathlib, shutil
_which = shutil.which
shutil.which = lambda cmd, *a, **k: None if cmd == "etcd" else _which(cmd, *a, **k)
_exists = pathlib.Path.exists
pathlib.Path.exists = lambda self, *a, **k: (
    False if str(self) == "/usr/bin/etcd" else _exists(self, *a, **k))
'''


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STROM_") or k.startswith("STROM_TEST_")}
    env["PYTHONPATH"] = REPO_SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def strom_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strom", *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


class Up:
    """``strom cluster up`` in a session of its own (as a terminal runs a job), with its
    stdout and stderr collected by threads."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "strom", "cluster", "up", *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _env(),
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        streams = ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        for stream, sink in streams:
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()

    def bootstrap(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout):
                if line.startswith("Bootstrap servers"):
                    return line.split()[-1]
            assert self.process.poll() is None, f"cluster up exited:\n{self.output()}"
            time.sleep(0.05)
        raise AssertionError(f"no bootstrap line within {timeout}s:\n{self.output()}")

    def ctrl_c(self, timeout: float = 10) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C; the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)

    def output(self) -> str:
        time.sleep(0.1)
        return "".join(self.stdout) + "".join(self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def http_get(address: str, path: str) -> tuple[int, str]:
    """GET http://address/path: the status and the body."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as answer:
        return answer.status, answer.read().decode()


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _cmdline(pid: int | None) -> str:
    return " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0"))


def _gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too: it only waits for its parent to reap it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] == "Z"


# --- the harness itself -------------------------------------------------------------------------


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="at least one broker"):
        Cluster(0)
    with pytest.raises(ValueError, match="racks"):
        Cluster(3, racks=[])
    with pytest.raises(ValueError, match="base_port"):
        Cluster(3, base_port=65534)
    cluster = Cluster(2)
    assert cluster.nodes == [0, 1]
    with pytest.raises(RuntimeError, match="not running"):
        _ = cluster.bootstrap_servers
    with pytest.raises(RuntimeError, match="not running"):
        cluster.kill(0)
    cluster.stop()  # stopping a cluster that never started is harmless
    assert strom.Cluster is Cluster


def test_one_broker_start_kill_restart_pause_stop():
    http = _free_ports(1)[0]  # an http.listener of the caller's is used as it is
    config = {"num.partitions": 2, "http.listener": f"0.0.0.0:{http}"}
    with Cluster(1, session_timeout_ms=SESSION_MS, config=config) as cluster:
        assert cluster.http_address(0) == f"127.0.0.1:{http}"
        assert "--http" not in _cmdline(cluster.pid(0))
        assert http_get(cluster.http_address(0), "/healthz")[0] == 200
        data_dir = cluster.data_dir
        assert data_dir is not None and (data_dir / "broker-0").is_dir()
        assert cluster.etcd is not None and cluster.etcd.running
        assert cluster.etcd_endpoint == cluster.etcd.endpoint
        assert cluster.bootstrap_servers == cluster.address(0)
        port = int(cluster.address(0).split(":")[1])
        assert cluster.admin().list_topics(timeout=10).brokers[0].port == port
        assert "strom listening on" in cluster.logs(0)
        with pytest.raises(ValueError, match="no broker 7"):
            cluster.kill(7)
        topic = cluster.create_topic(partitions=2)
        assert cluster.leader(topic, 1) == 0

        pid = cluster.pid(0)
        cluster.kill(0)
        assert not cluster.alive(0) and cluster.pid(0) is None and _gone(pid)
        with pytest.raises(RuntimeError, match="not running"):
            cluster.pause(0)
        address = cluster.address(0)
        cluster.restart(0)  # waits out the killed incarnation's registration
        assert cluster.alive(0) and cluster.address(0) == address and cluster.pid(0) != pid
        assert topic in cluster.admin().list_topics(timeout=10).topics

        cluster.pause(0)
        assert cluster.paused(0) and cluster.alive(0)
        with open(f"/proc/{cluster.pid(0)}/stat") as f:
            assert f.read().split(")")[-1].split()[0] == "T"  # stopped
        cluster.resume(0)
        assert not cluster.paused(0)
        cluster.wait_ready(10)

        assert cluster.stop_broker(0) == 0  # a clean shutdown
        cluster.start_broker(0)
        with pytest.raises(RuntimeError, match="already running"):
            cluster.start_broker(0)
        pids = [cluster.pid(0), cluster.etcd.pid]
        cluster.pause(0)  # stop() must resume a paused broker to stop it cleanly
    assert not data_dir.exists()
    assert all(_gone(pid) for pid in pids)
    assert cluster.etcd is None


def test_given_data_dir_is_kept_and_is_the_same_cluster_again(tmp_path):
    first = Cluster(1, data_dir=tmp_path / "c", session_timeout_ms=SESSION_MS).start()
    try:
        topic = first.create_topic()
        bootstrap, cluster_id, http = first.bootstrap_servers, first.cluster_id, first.http_address(0)
    finally:
        first.stop()
    state = json.loads((tmp_path / "c" / "cluster.json").read_text())
    assert state["cluster_id"] == cluster_id and (tmp_path / "c" / "etcd").is_dir()
    assert state["http_ports"] == {"0": _port(http)}
    with Cluster(1, data_dir=tmp_path / "c") as again:
        assert again.cluster_id == cluster_id and again.bootstrap_servers == bootstrap
        assert again.http_address(0) == http
        assert topic in again.admin().list_topics(timeout=10).topics
    assert (tmp_path / "c" / "broker-0").is_dir()


def test_wipe_deletes_the_broker_data(tmp_path):
    with Cluster(1, data_dir=tmp_path, session_timeout_ms=SESSION_MS) as cluster:
        marker = tmp_path / "broker-0" / "left-behind"
        marker.write_text("x")
        cluster.restart(0, wipe=True)
        assert not marker.exists() and cluster.alive(0)


def test_external_etcd_is_used_and_left_running():
    with EtcdServer() as etcd:
        with Cluster(1, etcd_endpoints=etcd.endpoint, http=False) as cluster:
            assert cluster.etcd is None and cluster.etcd_endpoint == etcd.endpoint
            cmdline = _cmdline(cluster.pid(0))
            assert f"--etcd {etcd.endpoint}" in cmdline
            assert "--http off" in cmdline  # http=False: no HTTP listener
            with pytest.raises(RuntimeError, match="no HTTP listener"):
                cluster.http_address(0)
        assert etcd.running


def test_busy_picked_ports_are_picked_again(monkeypatch):
    """A free port taken by someone else before the broker binds it: the Kafka one, then the
    HTTP one (the broker exits naming http.listener), each picked again."""
    busy = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy.append(s)
    taken = [s.getsockname()[1] for s in busy]
    calls = []

    def free_ports(count: int) -> list[int]:
        calls.append(count)
        return taken if len(calls) == 1 else _free_ports(count)  # 1st: [Kafka, HTTP] of broker 0

    monkeypatch.setattr(cluster_module, "_free_ports", free_ports)
    try:
        with Cluster(1) as cluster:
            assert _port(cluster.address(0)) != taken[0]
            assert _port(cluster.http_address(0)) != taken[1]
            logs = cluster.logs(0)
            assert f"127.0.0.1:{taken[0]} is already in use" in logs
            assert f"http.listener 127.0.0.1:{taken[1]}" in logs
            assert http_get(cluster.http_address(0), "/healthz")[0] == 200
    finally:
        for s in busy:
            s.close()


def test_start_failure_cleans_up_and_shows_the_broker_output():
    cluster = Cluster(1, config={"no.such.setting": 1}, startup_timeout=20)
    with pytest.raises(RuntimeError, match="exited during start-up") as raised:
        cluster.start()
    assert "no.such.setting" in str(raised.value)
    assert cluster.etcd is None and cluster.data_dir is None


def test_missing_etcd_names_the_debian_package(monkeypatch):
    import pathlib
    import shutil

    which, exists = shutil.which, pathlib.Path.exists
    monkeypatch.setattr(shutil, "which",
                        lambda cmd, *a, **k: None if cmd == "etcd" else which(cmd, *a, **k))
    monkeypatch.setattr(pathlib.Path, "exists",
                        lambda path, *a: str(path) != "/usr/bin/etcd" and exists(path, *a))
    cluster = Cluster(1)
    with pytest.raises(EtcdNotFound, match="etcd-server"):
        cluster.start()
    assert cluster.data_dir is None  # the temporary directory is gone again


def test_cluster_up_without_etcd_says_what_to_install(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HIDE_ETCD)
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not (Path(p) / "etcd").exists())
    done = subprocess.run([sys.executable, "-m", "strom", "cluster", "up", "--brokers", "1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "etcd-server" in done.stderr and "Traceback" not in done.stderr
    assert "apt-get install etcd-server" in done.stderr


# --- strom cluster up ---------------------------------------------------------------------------


def _console(up: Up, timeout: float = 10) -> str:
    """The address in the "Console: http://ADDRESS/ (broker 0)" line (printed after the
    bootstrap servers, so it may not have been read yet)."""
    deadline = time.monotonic() + timeout
    while (match := re.search(r"^Console: http://(\S+)/ \(broker 0\)$", "".join(up.stdout), re.M)) is None:
        assert time.monotonic() < deadline, up.output()
        time.sleep(0.05)
    return match.group(1)


def test_cluster_up_serves_until_ctrl_c(tmp_path):
    up = Up("--brokers", "1", "--data-dir", str(tmp_path / "c"), "--rack-count", "2")
    try:
        bootstrap = up.bootstrap()
        info = json.loads(strom_cli("cluster", "info", "-b", bootstrap, "--output", "json").stdout)
        assert [b["id"] for b in info["brokers"]] == [0]
        console = _console(up)
        header = next(line for line in up.stdout if line.startswith("ID "))
        assert header.split() == ["ID", "ADDRESS", "HTTP", "RACK", "PID"]
        assert any(line.split()[:3] == ["0", bootstrap, console] for line in up.stdout), up.output()
        assert http_get(console, "/healthz")[0] == 200
        started = time.monotonic()
        assert up.ctrl_c() == 0, up.output()
        assert time.monotonic() - started < 10
        assert "Stopped; the data stays in" in up.output()
    finally:
        up.kill()
    # Started again on the same directory: the same cluster at the same address, at once
    # (its brokers gave their registrations up when they stopped).
    again = Up("--brokers", "1", "--data-dir", str(tmp_path / "c"))
    try:
        started = time.monotonic()
        assert again.bootstrap() == bootstrap
        assert time.monotonic() - started < 8, again.output()
        assert _console(again) == console  # the HTTP port is kept in cluster.json too
        again.process.send_signal(signal.SIGTERM)  # SIGTERM to the command alone stops it too
        assert again.process.wait(10) == 0, again.output()
    finally:
        again.kill()


def _json_up_on_base_port(brokers: int, attempts: int = 3) -> tuple[Up, int]:
    """``cluster up --output json --base-port P`` once its document is out. A base port is the
    user's choice, never picked again, so another test's socket taking P + i between our check
    and the broker's bind fails the start: then the test tries another P."""
    for _ in range(attempts):
        port = _free_ports(1)[0]
        up = Up("--brokers", str(brokers), "--output", "json", "--base-port", str(port))
        deadline = time.monotonic() + 60
        while not any(line.startswith("}") for line in up.stdout):
            if up.process.poll() is not None and "already in use" in up.output():
                break
            assert time.monotonic() < deadline and up.process.poll() is None, up.output()
            time.sleep(0.05)
        else:
            return up, port
        up.kill()
    raise AssertionError(f"no free base port in {attempts} attempts:\n{up.output()}")


def test_cluster_up_json_and_temporary_data():
    up, port = _json_up_on_base_port(2)
    try:
        document = json.loads("".join(up.stdout))
        addresses = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
        assert document["bootstrap_servers"] == ",".join(addresses)
        assert document["etcd"].startswith("http://127.0.0.1:") and document["data_dir"] is None
        assert [b["address"] for b in document["brokers"]] == addresses
        # Every broker's HTTP listener, on free ports (--base-port places the Kafka ones only).
        https = [b["http"] for b in document["brokers"]]
        assert all(re.fullmatch(r"127\.0\.0\.1:\d+", h) for h in https), https
        assert len(set(https) | set(addresses)) == 4
        for http in https:
            status, metrics = http_get(http, "/metrics")
            assert status == 200 and "strom_is_controller" in metrics
        pids = [b["pid"] for b in document["brokers"]]
        assert up.ctrl_c() == 0, up.output()
        assert all(_gone(pid) for pid in pids)
    finally:
        up.kill()


def test_cluster_up_usage_errors():
    done = strom_cli("cluster", "up", "--brokers", "0")
    assert done.returncode == 2 and "--brokers" in done.stderr
    done = strom_cli("cluster", "up", "--brokers", "3", "--base-port", "65534")
    assert done.returncode == 2 and "65535" in done.stderr
    done = strom_cli("cluster", "up", "-o", "nokeyvalue")
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr


# --- cluster mode end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def three() -> Iterator[Cluster]:
    with Cluster(3, racks=["rack-a", "rack-b"], session_timeout_ms=SESSION_MS) as cluster:
        yield cluster


def test_e2e_every_broker_serves_http(three):
    addresses = [three.http_address(n) for n in three.nodes]
    assert len(set(addresses)) == 3
    assert not set(addresses) & set(three.bootstrap_servers.split(","))
    deadline = time.monotonic() + 15
    while True:  # exactly one says it is the controller (once every broker knows which)
        controllers = []
        for node, address in enumerate(addresses):
            assert http_get(address, "/healthz")[0] == 200
            assert http_get(address, "/readyz") == (200, "ready\n")  # registered, and its image shows it
            status, metrics = http_get(address, "/metrics")
            assert status == 200 and "strom_is_controller" in metrics
            if re.search(r"^strom_is_controller 1(\.0)?$", metrics, re.M):
                controllers.append(node)
        if len(controllers) == 1:
            break
        assert time.monotonic() < deadline, f"brokers {controllers} say they are the controller"
        time.sleep(0.2)


def test_e2e_three_brokers_list_each_other(three):
    md = three.admin().list_topics(timeout=10)
    assert sorted(md.brokers) == [0, 1, 2]
    assert three.bootstrap_servers == ",".join(three.address(n) for n in (0, 1, 2))
    done = strom_cli("cluster", "info", "-b", three.address(2), "--output", "json")
    info = json.loads(done.stdout)
    assert {b["id"]: b["rack"] for b in info["brokers"]} == {0: "rack-a", 1: "rack-b", 2: "rack-a"}
    assert info["controller_id"] in (0, 1, 2)
    table = strom_cli("cluster", "info", "-b", three.bootstrap_servers).stdout
    assert "Controller" in table and "rack-b" in table


def test_e2e_topic_create_r3_and_describe(three):
    name = f"cli-{time.monotonic_ns()}"
    done = strom_cli("topic", "create", name, "-p", "2", "-r", "3", "-b", three.bootstrap_servers)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while True:
        done = strom_cli("topic", "describe", name, "--output", "json",
                         "-b", three.bootstrap_servers)
        described = json.loads(done.stdout)
        partitions = described["partitions"]
        if all(len(p["isr"]) == 3 and p["leader"] >= 0 for p in partitions):
            break
        assert time.monotonic() < deadline, described
        time.sleep(0.2)
    assert described["replication_factor"] == 3
    assert all(sorted(p["replicas"]) == [0, 1, 2] for p in partitions)
    assert all(p["offline_replicas"] == [] for p in partitions)
    table = strom_cli("topic", "describe", name, "-b", three.bootstrap_servers).stdout
    assert "ISR" in table and "OFFLINE" not in table
    # --replication-factor is the long name, --replicas still works
    for flag, count in (("--replication-factor", "2"), ("--replicas", "1")):
        done = strom_cli("topic", "create", f"{name}{flag}", flag, count, "-b", three.address(0))
        assert done.returncode == 0, done.stderr
        described = json.loads(strom_cli("topic", "describe", f"{name}{flag}", "--output", "json",
                                         "-b", three.address(0)).stdout)
        assert described["replication_factor"] == int(count)

    # A killed broker's replicas show as offline once its session ends.
    victim = 2
    three.kill(victim)
    try:
        deadline = time.monotonic() + 30
        while True:
            done = strom_cli("topic", "describe", name, "--output", "json", "-b", three.address(0))
            # Until the controller moves the dead broker's leaderships, asking it for offsets
            # fails: the command then says so and exits non-zero. Ask again.
            partitions = json.loads(done.stdout)["partitions"] if done.returncode == 0 else None
            if partitions and all(p["offline_replicas"] == [victim] and victim not in p["isr"]
                                  for p in partitions):
                break
            assert time.monotonic() < deadline, (partitions, done.stderr)
            time.sleep(0.2)
        table = strom_cli("topic", "describe", name, "-b", three.address(0)).stdout
        assert "OFFLINE" in table
    finally:
        three.restart(victim)


def test_e2e_kill_leader_under_acks_all_loses_nothing(three):
    # The example of docs/testing.md, "Testing against broker failures".
    topic = three.create_topic(replication_factor=3, config={"min.insync.replicas": 2})
    producer = Producer({
        "bootstrap.servers": three.bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
    })
    acked: list[tuple[int, bytes]] = []

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.offset(), msg.value()))

    leader = three.leader(topic, 0)
    for i in range(2000):
        producer.produce(topic, str(i).encode(), partition=0, on_delivery=on_delivery)
        producer.poll(0)
        if i == 1000:
            three.kill(leader)  # a crash in the middle of the stream
    assert producer.flush(60) == 0
    assert three.leader(topic, 0) not in (leader, -1)

    consumer = Consumer({"bootstrap.servers": three.bootstrap_servers, "group.id": "check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    stored: dict[int, bytes] = {}
    last = max(offset for offset, _ in acked)
    while last not in stored:
        message = consumer.poll(10)
        assert message is not None, "the records stopped coming"
        if message.error() is None:
            stored[message.offset()] = message.value()
    consumer.close()
    for offset, value in acked:
        assert stored[offset] == value, f"acknowledged record {value!r} lost at offset {offset}"
    assert len(acked) == 2000

    three.restart(leader)  # the next tests get three brokers again


def test_e2e_pause_and_resume(three):
    leader = three.leader(three.create_topic(), 0)  # once: inside the generator it ran per node
    victim = next(n for n in three.nodes if n != leader)
    three.pause(victim)
    try:
        three.wait_ready(10)  # a paused broker is not waited for
        assert three.paused(victim)
    finally:
        three.resume(victim)
    three.wait_ready(30)
    assert sorted(three.admin().list_topics(timeout=10).brokers) == [0, 1, 2]


def test_e2e_restart_with_wiped_data_rejoins(three):
    topic = three.create_topic(partitions=1)
    producer = Producer({"bootstrap.servers": three.bootstrap_servers, "acks": "all"})
    for i in range(100):
        producer.produce(topic, str(i).encode(), partition=0)
    assert producer.flush(30) == 0
    follower = next(n for n in three.nodes if n != three.leader(topic, 0))
    three.restart(follower, wipe=True)
    assert three.alive(follower)
    deadline = time.monotonic() + 30
    while True:  # back in the ISR once it has copied the log again
        partition = three.admin().list_topics(topic=topic, timeout=10).topics[topic].partitions[0]
        if follower in partition.isrs:
            break
        assert time.monotonic() < deadline, f"{follower} never rejoined the ISR {partition.isrs}"
        time.sleep(0.1)
    assert follower in partition.replicas


USER_MODULE = '''
import pytest

pytestmark = pytest.mark.strom_cluster(brokers=2, session_timeout_ms=3000)


def test_two_brokers(strom_cluster):
    md = strom_cluster.admin().list_topics(timeout=10)
    assert sorted(md.brokers) == [0, 1]
    topic = strom_cluster.create_topic(partitions=2)
    assert strom_cluster.leader(topic, 0) in (0, 1)


def test_same_cluster_for_the_module(strom_cluster):
    assert len(strom_cluster.nodes) == 2
    assert all(strom_cluster.alive(n) for n in strom_cluster.nodes)
'''

DEFAULT_MODULE = '''
def test_size_from_the_ini(strom_cluster):
    from confluent_kafka.admin import ConfigResource, ResourceType

    assert strom_cluster.nodes == [0]
    admin = strom_cluster.admin()
    assert admin.list_topics(timeout=10).brokers
    res = ConfigResource(ResourceType.BROKER, "0")
    assert admin.describe_configs([res])[res].result(10)["group.initial.rebalance.delay.ms"].value == "0"
'''


def _docs_example() -> str:
    """The ``# test_failover.py`` example of docs/testing.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    start = text.index("# test_failover.py")
    return text[start:text.index("```", start)]


def test_e2e_strom_cluster_fixture_and_the_docs_example(pytester):
    pytester.makepyfile(test_marked=USER_MODULE, test_default=DEFAULT_MODULE,
                        test_failover=_docs_example())
    pytester.makeini("[pytest]\nstrom_cluster_brokers = 1\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
