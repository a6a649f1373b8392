"""Every ``strom`` command, run as ``python -m strom ...`` in a subprocess against a broker.

The client commands reach the module's broker through STROM_BROKERS (and ``-b`` in a few
tests, to cover both). The consumer-group tests need a broker with a group coordinator; they
are skipped while strom does not register FindCoordinator, and run by themselves once it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strom.protocol.api import ApiKey

pytestmark = pytest.mark.timeout(60)

REPO_SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env(brokers: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_") or k.startswith("STROM_TEST_")}
    env["PYTHONPATH"] = REPO_SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    if brokers is not None:
        env["STROM_BROKERS"] = brokers
    env.update(extra or {})
    return env


def strom(*args: str, brokers: str | None = None, input: str | bytes | None = None,
          env: dict[str, str] | None = None, timeout: float = 30, cwd: Path | None = None) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    return subprocess.run(
        [sys.executable, "-m", "strom", *args], input=input, capture_output=True, text=text,
        env=_env(brokers, env), timeout=timeout, cwd=cwd,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def failed(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The error sentence of a command that had to fail, checked for shape."""
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    if code == 1:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("Error: ") and lines[0].endswith("."), lines[0]
    return proc.stderr.strip()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def group_broker():
    """A broker for the consumer-group tests: ``strom serve`` like the others, but with
    group.initial.rebalance.delay.ms=0 so that a first member joins at once, not after 3 s."""
    from strom import Broker

    with Broker(subprocess=True, config={"group.initial.rebalance.delay.ms": 0}) as b:
        yield b


class Runner:
    """run(*args, ...) runs a strom command against one broker (``bootstrap``)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return strom(*args, brokers=self.bootstrap, **kwargs)


@pytest.fixture(scope="module")
def run(broker) -> Runner:
    return Runner(broker.bootstrap)


@pytest.fixture(scope="module")
def grun(group_broker) -> Runner:
    """run(), against the consumer-group broker."""
    return Runner(group_broker.bootstrap_servers)


def run_json(run, *args: str, **kwargs):
    return json.loads(ok(run(*args, "--output", "json", **kwargs)).stdout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def parallel(run, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    """Run independent commands at the same time (each is a process start; this keeps the
    file fast), results in the order given."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda args: run(*args), commands))


def create(run: Runner, topic: str, partitions: int = 1) -> None:
    """Create a topic for a test, in this process (``strom topic create`` has tests of its
    own; a process start per test would only make the file slower)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": run.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=10)[topic].result(10)


# --- the command itself ---------------------------------------------------------------------------


def test_help_lists_every_command():
    out, topic_help, group_help, consume_help = (
        ok(p).stdout for p in parallel(strom, ("--help",), ("topic", "--help"), ("group", "--help"), ("consume", "--help")))
    for command in ("serve", "topic", "produce", "consume", "group", "cluster"):
        assert command in out
    for sub in ("create", "list", "describe", "alter-config", "add-partitions", "delete"):
        assert sub in topic_help
    for sub in ("list", "describe", "reset-offsets", "delete"):
        assert sub in group_help
    assert "--brokers" in consume_help and "STROM_BROKERS" in consume_help


def test_usage_errors_exit_2(run):
    procs = parallel(
        run,
        ("topic", "create"),
        ("consume", "t", "--format", "%v", "--output", "json"),
        ("consume", "t", "--offset", "sideways"),
        ("topic", "alter-config", "t"),
        ("group", "reset-offsets", "g", "--to-earliest"),
        ("produce", "t", "-H", "no-equals-sign", "--value", "x"),
    )
    for proc in procs:
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("Usage: "), proc.stderr


# --- errors as sentences --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("topic", "list"),
    ("produce", "t", "--value", "x"),
    ("consume", "t"),
])
def test_unreachable_broker_is_one_sentence(args):
    port = closed_port()
    started = time.monotonic()
    message = failed(strom(*args, "-b", f"127.0.0.1:{port}"))
    assert time.monotonic() - started < 10
    assert f"Could not reach a broker at 127.0.0.1:{port}" in message


def test_unreachable_broker_from_env_and_timeout_option():
    port = closed_port()
    message = failed(strom("topic", "list", "--timeout", "1", brokers=f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in message
    assert "Could not resolve the broker address" in failed(strom("topic", "list", "-b", "no-such-host.invalid:9092"))


def test_silent_broker_times_out(tmp_path):
    # A port that accepts connections but never answers: the command gives up after --timeout.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        message = failed(strom("topic", "list", "-b", f"127.0.0.1:{port}", "--timeout", "1"))
        assert time.monotonic() - started < 8
    assert f"127.0.0.1:{port}" in message


def test_unknown_topic_is_one_sentence(run, unique_topic):
    name = unique_topic()
    commands = (
        ("topic", "describe", name),
        ("topic", "alter-config", name, "--set", "retention.ms=1000"),
        ("topic", "add-partitions", name, "-n", "1"),
        ("topic", "delete", name),
        ("produce", name, "--value", "x"),
        ("consume", name),
    )
    for args, proc in zip(commands, parallel(run, *commands), strict=True):
        assert f"Topic '{name}' does not exist." in failed(proc), args


def test_bad_client_setting(run):
    assert "no such configuration property" in failed(run("cluster", "info", "-X", "no.such.setting=1")).lower()


# --- topics ---------------------------------------------------------------------------------------


def test_topic_lifecycle(run, unique_topic):
    name = unique_topic()
    created = run_json(run, "topic", "create", name, "-p", "3", "-c", "retention.ms=3600000")
    assert created == [{"topic": name, "created": True, "error": None}]

    listed, table, described, duplicate, if_not_exists = parallel(
        run,
        ("topic", "list", "--output", "json"),
        ("topic", "list"),
        ("topic", "describe", name, "--output", "json"),
        ("topic", "create", name),
        ("topic", "create", name, "--if-not-exists"),
    )
    assert {t["name"]: t for t in json.loads(ok(listed).stdout)}[name] == {"name": name, "partitions": 3, "replicas": 1}
    assert name in ok(table).stdout
    described = json.loads(ok(described).stdout)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert all(p["leader"] >= 0 and p["high_watermark"] == 0 for p in described["partitions"])
    configs = {c["name"]: c for c in described["configs"]}
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert "already exists" in failed(duplicate)
    ok(if_not_exists)

    ok(run("topic", "alter-config", name, "--set", "cleanup.policy=compact", "--delete", "retention.ms"))
    changed, every = parallel(run, ("topic", "describe", name, "--output", "json"),
                              ("topic", "describe", name, "--all-configs", "--output", "json"))
    configs = {c["name"]: c for c in json.loads(ok(changed).stdout)["configs"]}
    assert configs["cleanup.policy"]["value"] == "compact"
    assert "retention.ms" not in configs
    every = {c["name"] for c in json.loads(ok(every).stdout)["configs"]}
    assert "retention.ms" in every and "segment.bytes" in every

    assert run_json(run, "topic", "add-partitions", name, "-n", "2") == {"topic": name, "partitions": 5, "added": 2}
    assert "already has 5 partitions" in failed(run("topic", "add-partitions", name, "--total", "4"))
    assert "now has 6 partitions" in ok(run("topic", "add-partitions", name, "--total", "6")).stdout

    assert run_json(run, "topic", "delete", name) == [{"topic": name, "deleted": True, "error": None}]
    listed, again = parallel(run, ("topic", "list", "--output", "json"), ("topic", "delete", name, "--if-exists"))
    assert name not in {t["name"] for t in json.loads(ok(listed).stdout)}
    assert "did not exist" in ok(again).stdout


def test_topic_create_errors_name_the_config(run, unique_topic):
    name, other = unique_topic(), unique_topic("c")
    bad_value, bad_name, created = parallel(
        run, ("topic", "create", name, "-c", "retention.ms=soon"),
        ("topic", "create", unique_topic("b"), "-c", "bogus.setting=1"), ("topic", "create", other))
    message = failed(bad_value)
    assert f"Could not create topic '{name}'" in message and "retention.ms" in message
    assert "bogus.setting" in failed(bad_name)
    assert "created" in ok(created).stdout
    message = failed(run("topic", "alter-config", other, "--set", "bogus.setting=1"))
    assert f"Could not change the configs of topic '{other}'" in message and "bogus.setting" in message


def test_topic_describe_shows_offsets_and_sizes(run, unique_topic):
    name = unique_topic()
    create(run, name, 2)
    ok(run("produce", name, "-p", "1", input="a\nb\nc\n"))
    as_json, table = parallel(run, ("topic", "describe", name, "--output", "json"), ("topic", "describe", name))
    described = json.loads(ok(as_json).stdout)
    one = described["partitions"][1]
    assert (one["log_start_offset"], one["high_watermark"], one["messages"]) == (0, 3, 3)
    assert one["size_bytes"] > 0 and described["partitions"][0]["size_bytes"] == 0
    assert described["size_bytes"] == one["size_bytes"]
    table = ok(table).stdout
    for heading in ("PARTITION", "LEADER", "LOG-START", "HIGH-WATERMARK", "SIZE", "All configs have their default values"):
        assert heading in table


# --- produce and consume --------------------------------------------------------------------------


def test_round_trip_with_keys_and_headers(run, unique_topic):
    name = unique_topic()
    create(run, name, 3)
    summary = run_json(run, "produce", name, "-K", ":", "-H", "source=cli", "-H", "n=1",
                       input="user-1:hello\nuser-2:world\nno delimiter here\n")
    assert summary["records"] == 3 and summary["failed"] == 0
    records = json_lines(ok(run("consume", name, "--output", "json")).stdout)
    by_value = {r["value"]: r for r in records}
    assert set(by_value) == {"hello", "world", "no delimiter here"}
    assert by_value["hello"]["key"] == "user-1"
    assert by_value["no delimiter here"]["key"] is None
    assert by_value["world"]["headers"] == [{"key": "source", "value": "cli"}, {"key": "n", "value": "1"}]
    # The same key always goes to the same partition.
    again = run_json(run, "produce", name, "-k", "user-1", "--value", "again")
    assert list(again["partitions"]) == [str(by_value["hello"]["partition"])]


def test_format_string(run, unique_topic):
    name = unique_topic()
    create(run, name)
    ok(run("produce", name, "-k", "k1", "-H", "h=v", "--value", "v1", "--value", "v2"))
    out, stamped, default = (ok(p).stdout for p in parallel(
        run,
        ("consume", name, "--format", "%t|%p|%o|%k|%v|%h|%K|%S|%%"),
        ("consume", name, "-n", "1", "-F", "%T\\t%s\\n"),
        ("consume", name),
    ))
    assert out.splitlines() == [f"{name}|0|0|k1|v1|h=v|2|2|%", f"{name}|0|1|k1|v2|h=v|2|2|%"]
    timestamp, value = stamped.rstrip("\n").split("\t")
    assert value == "v1" and abs(int(timestamp) - time.time() * 1000) < 120_000
    assert default == "v1\nv2\n"  # by default, one value per line


def test_produce_to_partition(run, unique_topic):
    name = unique_topic()
    create(run, name, 3)
    summary = run_json(run, "produce", name, "-p", "2", "--value", "x", "--value", "y")
    assert summary["partitions"] == {"2": {"records": 2, "first_offset": 0, "last_offset": 1}}
    two, others, bad_produce, bad_consume = parallel(
        run, ("consume", name, "-p", "2"), ("consume", name, "-p", "0", "-p", "1"),
        ("produce", name, "-p", "7", "--value", "x"), ("consume", name, "-p", "7"))
    assert ok(two).stdout == "x\ny\n"
    assert ok(others).stdout == ""
    assert "there is no partition 7" in failed(bad_produce)
    assert "there is no partition 7" in failed(bad_consume)


def test_produce_compression_and_acks(run, unique_topic):
    name = unique_topic()
    create(run, name)
    settings = (("gzip", "all"), ("snappy", "1"), ("lz4", "-1"), ("zstd", "all"), ("none", "0"))
    with ThreadPoolExecutor(max_workers=5) as pool:
        procs = list(pool.map(
            lambda s: run("produce", name, "-z", s[0], "--acks", s[1], input=f"{s[0]}-1\n{s[0]}-2\n"), settings))
    for proc in procs:
        ok(proc)
    values = ok(run("consume", name)).stdout.split()
    assert sorted(values) == sorted(f"{c}-{i}" for c, _ in settings for i in (1, 2))
    for codec, _ in settings:  # each producer's records stay in order
        assert values.index(f"{codec}-1") < values.index(f"{codec}-2")


def test_produce_large_input_with_progress(run, unique_topic, tmp_path):
    name = unique_topic()
    create(run, name, 2)
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"record-{i}\n" for i in range(20000)))
    with lines.open() as stdin:
        proc = subprocess.run([sys.executable, "-m", "strom", "produce", name, "--progress", "--output", "json"],
                              stdin=stdin, capture_output=True, text=True, env=_env(run.bootstrap), timeout=60)
    ok(proc)
    assert json.loads(proc.stdout)["records"] == 20000
    assert "records" in proc.stderr  # the progress line
    counted = run_json(run, "topic", "describe", name)
    assert sum(p["messages"] for p in counted["partitions"]) == 20000


def test_binary_values_in_json(run, unique_topic):
    name = unique_topic()
    create(run, name)
    ok(run("produce", name, input=b"\xff\xfe\nplain\n"))
    records = json_lines(ok(run("consume", name, "--output", "json")).stdout)
    assert records[0]["value"] == "//4=" and records[0]["value_encoding"] == "base64"
    assert records[1]["value"] == "plain" and "value_encoding" not in records[1]


def test_consume_num_and_start_positions(run, unique_topic):
    name = unique_topic()
    create(run, name)
    ok(run("produce", name, input="".join(f"m{i}\n" for i in range(5))))
    time.sleep(0.05)
    ok(run("produce", name, input="".join(f"m{i}\n" for i in range(5, 10))))

    records = json_lines(ok(run("consume", name, "--output", "json")).stdout)
    second_batch = records[5]["timestamp"]
    assert all(r["timestamp"] < second_batch for r in records[:5])
    iso = datetime.fromtimestamp(second_batch / 1000, tz=UTC).isoformat(timespec="milliseconds")

    expected = {
        (): [f"m{i}" for i in range(10)],  # from the beginning by default
        ("-n", "3"): ["m0", "m1", "m2"],
        ("-o", "end"): [],
        ("-o", "7"): ["m7", "m8", "m9"],
        ("-o", "-2"): ["m8", "m9"],
        ("-o", "-20"): [f"m{i}" for i in range(10)],  # clamped to the log start
        ("-o", "99"): [],  # past the end: nothing yet
        ("-o", f"@{second_batch}"): [f"m{i}" for i in range(5, 10)],
        ("-o", f"@{iso}"): [f"m{i}" for i in range(5, 10)],
        ("-o", "@2999-01-01T00:00:00Z"): [],
    }
    procs = parallel(run, *(("consume", name, *args) for args in expected))
    for (args, values), proc in zip(expected.items(), procs, strict=True):
        assert ok(proc).stdout.split() == values, args


def _reader(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_consume_follow(run, unique_topic):
    name = unique_topic()
    create(run, name)
    ok(run("produce", name, "--value", "before"))
    follower = subprocess.Popen(
        [sys.executable, "-m", "strom", "consume", name, "-f", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(run.bootstrap),
    )
    try:
        lines = _reader(follower.stdout)
        assert json.loads(lines.get(timeout=15))["value"] == "before"
        ok(run("produce", name, "--value", "after-1", "--value", "after-2"))
        assert json.loads(lines.get(timeout=15))["value"] == "after-1"
        assert json.loads(lines.get(timeout=15))["value"] == "after-2"
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        code = follower.wait(timeout=10)
    assert code == 0, follower.stderr.read()


def test_consume_follow_from_end_with_num(run, unique_topic):
    name = unique_topic()
    create(run, name)
    ok(run("produce", name, "--value", "old"))
    follower = subprocess.Popen(
        [sys.executable, "-m", "strom", "consume", name, "-f", "-o", "end", "-n", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(run.bootstrap),
    )
    try:
        # Records produced before the follower has found the end are (rightly) skipped, so
        # keep producing until one arrives; -n 1 makes it exit after that one.
        deadline = time.monotonic() + 20
        sent = 0
        while follower.poll() is None and time.monotonic() < deadline:
            ok(run("produce", name, "--value", f"new-{sent}"))
            sent += 1
            with contextlib.suppress(subprocess.TimeoutExpired):
                follower.wait(timeout=0.5)
        out, err = follower.communicate(timeout=10)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert out.startswith("new-") and out.count("\n") == 1, out


# --- cluster --------------------------------------------------------------------------------------


def test_cluster_info(run, broker):
    info = run_json(run, "cluster", "info")
    assert info["cluster_id"]
    assert info["controller_id"] == 0
    assert [(b["id"], b["port"]) for b in info["brokers"]] == [(0, broker.port)]
    table = ok(strom("cluster", "info", "-b", broker.bootstrap)).stdout
    assert "Brokers" in table and str(broker.port) in table and info["cluster_id"] in table


def test_internal_topics_are_listed_described_and_counted(grun, unique_topic):
    name = unique_topic()
    create(grun, name)
    ok(grun("produce", name, "--value", "x"))
    ok(grun("consume", name, "-g", f"{name}-group", "-n", "1"))  # creates __consumer_offsets
    listed, everything, described, info = parallel(
        grun, ("topic", "list", "--output", "json"), ("topic", "list", "-i", "--output", "json"),
        ("topic", "describe", "__consumer_offsets", "--output", "json"), ("cluster", "info", "--output", "json"))
    assert "__consumer_offsets" not in {t["name"] for t in json.loads(ok(listed).stdout)}
    assert "__consumer_offsets" in {t["name"] for t in json.loads(ok(everything).stdout)}
    described = json.loads(ok(described).stdout)
    assert described["internal"] and described["partitions"]
    assert json.loads(ok(info).stdout)["internal_topics"] >= 1


def _to_closed_pipe(runner: Runner, *args: str) -> subprocess.CompletedProcess:
    """A command whose stdout is a pipe that nobody reads any more, as in ``| head -1`` once
    head has exited."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "strom", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=_env(runner.bootstrap), timeout=30)
    finally:
        os.close(write)


def test_a_reader_that_goes_away_is_a_normal_end(grun, unique_topic):
    name = unique_topic()
    group = f"{name}-group"
    create(grun, name)
    ok(grun("produce", name, input="a\nb\n"))
    ok(grun("consume", name, "-g", group, "-n", "1"))
    commands = [
        ("group", "describe", group), ("group", "describe", group, "--output", "json"),
        ("topic", "list"), ("topic", "list", "--output", "json"), ("topic", "describe", name),
        ("cluster", "info"), ("consume", name, "-n", "2"), ("serve", "--print-config"), ("--help",),
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        procs = list(pool.map(lambda args: _to_closed_pipe(grun, *args), commands))
    for args, proc in zip(commands, procs, strict=True):
        assert (proc.returncode, proc.stderr) == (0, ""), args


def test_serve_on_a_busy_port_leaves_the_data_dir_untouched(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = failed(strom("serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port} is already in use" in message
    assert list(data_dir.iterdir()) == []  # no .lock, meta.properties nor strom-metadata.json


# --- serve --print-config -------------------------------------------------------------------------


def test_print_config_precedence(tmp_path):
    config = tmp_path / "strom.toml"
    config.write_text('num.partitions = 3\n[log]\nretention.hours = 24\nsegment.bytes = 1048576\n')
    proc = strom("serve", "--config", str(config), "--print-config", "--output", "json",
                 "-o", "log.retention.hours=72", "--data-dir", str(tmp_path / "d"),
                 env={"STROM_NUM_PARTITIONS": "5", "STROM_LOG_RETENTION_HOURS": "48"})
    effective = json.loads(ok(proc).stdout)
    assert effective["num.partitions"] == {"value": "5", "source": "env", "origin": "STROM_NUM_PARTITIONS"}
    assert effective["log.retention.hours"]["value"] == "72" and effective["log.retention.hours"]["source"] == "flag"
    assert effective["log.segment.bytes"] == {"value": "1048576", "source": "file", "origin": str(config)}
    assert effective["log.dirs"] == {"value": str(tmp_path / "d"), "source": "flag", "origin": None}
    assert effective["auto.create.topics.enable"] == {"value": "true", "source": "default", "origin": None}
    assert not (tmp_path / "d").exists()  # printed, not started

    table = ok(strom("serve", "--config", str(config), "--print-config")).stdout
    assert "num.partitions" in table and f"file ({config})" in table

    bad = strom("serve", "--print-config", env={"STROM_NUM_PARTITIONS": "many"})
    assert "STROM_NUM_PARTITIONS" in failed(bad)


# --- consumer groups ------------------------------------------------------------------------------


class GrouplessBroker:
    """A fake Kafka broker that answers ApiVersions and Metadata only (no consumer groups),
    built on strom's own codec, for the CLI's "groups are not supported" path."""

    OFFERED = {ApiKey.API_VERSIONS: (0, 3), ApiKey.METADATA: (0, 12)}

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        from strom.protocol.codec import decode_request, encode_response
        from strom.protocol.framing import encode_response_frame, parse_request_header

        with conn:
            while head := conn.recv(4, socket.MSG_WAITALL):
                frame = conn.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL)
                header, offset = parse_request_header(frame)
                key, version = header.api_key, header.api_version
                if key == ApiKey.API_VERSIONS:
                    body = {"api_keys": [{"api_key": k, "min_version": lo, "max_version": hi}
                                         for k, (lo, hi) in self.OFFERED.items()]}
                elif key == ApiKey.METADATA:
                    decode_request(key, version, memoryview(frame)[offset:])
                    body = {"brokers": [{"node_id": 0, "host": "127.0.0.1", "port": self.port}],
                            "cluster_id": "groupless", "controller_id": 0, "topics": []}
                else:
                    return
                conn.sendall(encode_response_frame(key, version, header.correlation_id,
                                                   encode_response(key, version, body)))

    def close(self) -> None:
        self.listener.close()


def test_group_commands_say_groups_are_unsupported():
    fake = GrouplessBroker()
    try:
        for args in (("group", "list"), ("group", "describe", "g"), ("group", "delete", "g"),
                     ("group", "reset-offsets", "g", "--all-topics", "--to-earliest")):
            proc = strom(*args, brokers=f"127.0.0.1:{fake.port}")
            assert "does not support consumer groups" in failed(proc), args
    finally:
        fake.close()


def _wait_for_members(run, group: str, count: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = run_json(run, "group", "describe", group)
        if len(described["members"]) == count:
            return described
        assert time.monotonic() < deadline, f"group {group} never had {count} member(s): {described}"
        time.sleep(0.3)


def test_group_consume_describe_reset_delete(grun, unique_topic):
    name = unique_topic()
    group = f"{name}-group"
    create(grun, name)
    ok(grun("produce", name, input="".join(f"m{i}\n" for i in range(5))))
    time.sleep(0.05)
    ok(grun("produce", name, input="".join(f"m{i}\n" for i in range(5, 8))))

    assert ok(grun("consume", name, "-g", group, "-n", "3")).stdout.split() == ["m0", "m1", "m2"]
    listed, listed_table, described, table = (ok(p).stdout for p in parallel(
        grun, ("group", "list", "--output", "json"), ("group", "list"),
        ("group", "describe", group, "--output", "json"), ("group", "describe", group)))
    assert group in {g["group"] for g in json.loads(listed)} and group in listed_table
    assert "COMMITTED" in table and "LAG" in table
    described = json.loads(described)
    assert described["state"] == "EMPTY" and described["members"] == []
    assert [(p["topic"], p["partition"], p["committed_offset"], p["end_offset"], p["lag"]) for p in described["partitions"]] \
        == [(name, 0, 3, 8, 5)]
    assert described["total_lag"] == 5

    def reset(*args: str) -> tuple[int, int]:
        """(current, new) offset of partition 0; current is read from the broker, so each
        reset also checks that the previous one was applied."""
        plan = run_json(grun, "group", "reset-offsets", group, *args)
        assert not plan["dry_run"] and len(plan["partitions"]) == 1
        return plan["partitions"][0]["current_offset"], plan["partitions"][0]["new_offset"]

    plan = run_json(grun, "group", "reset-offsets", group, "--topic", name, "--to-earliest", "--dry-run")
    assert plan["dry_run"] and plan["partitions"][0]["current_offset"] == 3 and plan["partitions"][0]["new_offset"] == 0
    dry = ok(grun("group", "reset-offsets", group, "--all-topics", "--to-latest", "--dry-run"))
    assert "Dry run" in dry.stderr and "CURRENT" in dry.stdout

    assert reset("--topic", name, "--to-earliest") == (3, 0)  # the dry runs changed nothing
    assert reset("--topic", f"{name}:0", "--to-offset", "6") == (0, 6)
    assert reset("--all-topics", "--shift-by", "-2") == (6, 4)
    assert reset("--all-topics", "--to-offset", "100") == (4, 8)  # clamped to the end
    records = json_lines(ok(grun("consume", name, "--output", "json")).stdout)
    assert reset("--all-topics", "--to-timestamp", str(records[5]["timestamp"])) == (8, 5)
    assert run_json(grun, "group", "describe", group)["partitions"][0]["committed_offset"] == 5

    # The group carries on from its committed offset.
    assert ok(grun("consume", name, "-g", group)).stdout.split() == ["m5", "m6", "m7"]
    assert run_json(grun, "group", "describe", group)["partitions"][0]["lag"] == 0

    assert "there is no partition 3" in failed(grun("group", "reset-offsets", group, "--topic", f"{name}:3", "--to-earliest"))
    ok(grun("group", "delete", group))
    listed, described, deleted = parallel(
        grun, ("group", "list", "--output", "json"), ("group", "describe", group), ("group", "delete", group))
    assert group not in {g["group"] for g in json.loads(ok(listed).stdout)}
    assert f"Consumer group '{group}' does not exist." in failed(described)
    assert f"Consumer group '{group}' does not exist." in failed(deleted)


def test_group_with_active_member(grun, unique_topic):
    name = unique_topic()
    group = f"{name}-group"
    create(grun, name, 2)
    ok(grun("produce", name, "-p", "0", "--value", "a"))
    member = subprocess.Popen(
        [sys.executable, "-m", "strom", "consume", name, "-g", group, "-f"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(grun.bootstrap),
    )
    try:
        lines = _reader(member.stdout)
        assert lines.get(timeout=20) == "a\n"
        described = _wait_for_members(grun, group, 1)
        assert described["state"] == "STABLE"
        owned = {(p["partition"], p["member_id"] is not None) for p in described["partitions"]}
        assert owned == {(0, True), (1, True)}
        assert "stop its consumers" in failed(grun("group", "reset-offsets", group, "--all-topics", "--to-earliest"))
        assert f"Consumer group '{group}'" in failed(grun("group", "delete", group))
    finally:
        member.terminate()
        code = member.wait(timeout=15)
    assert code == 0, member.stderr.read()
    ok(grun("group", "delete", group))


def test_group_reset_needs_committed_offset_to_shift(grun, unique_topic):
    name = unique_topic()
    create(grun, name)
    message = failed(grun("group", "reset-offsets", f"{name}-g", "--topic", name, "--shift-by", "1"))
    assert "no committed offset" in message
    assert "has no committed offsets" in failed(grun("group", "reset-offsets", f"{name}-g", "--all-topics", "--to-earliest"))
