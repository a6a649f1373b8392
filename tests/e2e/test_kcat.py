"""kcat (the librdkafka command-line client) against a real strom broker."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .helpers import consume, create_topic, running_in_ci

pytestmark = pytest.mark.timeout(120)

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


@pytest.fixture(scope="module")
def kcat():
    if KCAT is None:
        if running_in_ci():
            pytest.fail("kcat is not installed (scripts/test.sh installs it with apt-get)")
        pytest.skip("kcat is not installed (apt-get install kcat); required under CI")
    return KCAT


def run_kcat(kcat: str, *args: str, input: bytes | None = None, timeout: float = 30) -> bytes:
    proc = subprocess.run([kcat, *args], input=input, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr.decode(errors='replace')}"
    return proc.stdout


def test_list_metadata(broker, kcat, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, partitions=3)
    out = run_kcat(kcat, "-b", broker.bootstrap, "-L", "-J")
    md = json.loads(out)
    assert len(md["brokers"]) == 1
    (b,) = md["brokers"]
    assert b["name"] == f"{broker.host}:{broker.port}/{b['id']}" or b["name"].startswith(f"{broker.host}:{broker.port}")
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    assert sorted(p["partition"] for p in topics[topic]["partitions"]) == [0, 1, 2]
    # plain-text listing too
    text = run_kcat(kcat, "-b", broker.bootstrap, "-L").decode()
    assert "1 brokers" in text
    assert f'topic "{topic}" with 3 partitions' in text


def test_produce_and_consume_lines(broker, kcat, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    lines = [f"line {i}" for i in range(50)]
    run_kcat(kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", input=("\n".join(lines) + "\n").encode())
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-e", "-o", "beginning", "-q")
    assert out.decode().splitlines() == lines
    # cross-check with another client
    assert [m.value().decode() for m in consume(broker.bootstrap, topic, [0])] == lines


def test_produce_and_consume_with_keys(broker, kcat, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    pairs = [(f"k{i}", f"value {i}") for i in range(20)]
    data = "".join(f"{k}:{v}\n" for k, v in pairs).encode()
    run_kcat(kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-K", ":", input=data)
    out = run_kcat(
        kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q", "-f", "%k=%s@%o\n"
    )
    assert out.decode().splitlines() == [f"{k}={v}@{i}" for i, (k, v) in enumerate(pairs)]
    msgs = consume(broker.bootstrap, topic, [0])
    assert [(m.key(), m.value()) for m in msgs] == [(k.encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce(broker, kcat, unique_topic, codec):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    lines = [f"{codec} {i} " + "abc" * i for i in range(100)]
    run_kcat(kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-z", codec, input=("\n".join(lines) + "\n").encode())
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q")
    assert out.decode().splitlines() == lines


def test_consume_from_offset_and_count(broker, kcat, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    lines = [str(i) for i in range(30)]
    run_kcat(kcat, "-b", broker.bootstrap, "-P", "-t", topic, input=("\n".join(lines) + "\n").encode())
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "10", "-c", "5", "-e", "-q")
    assert out.decode().splitlines() == ["10", "11", "12", "13", "14"]
    out = run_kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "-3", "-e", "-q")
    assert out.decode().splitlines() == ["27", "28", "29"]


def test_query_offset_by_timestamp(broker, kcat, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic)
    run_kcat(kcat, "-b", broker.bootstrap, "-P", "-t", topic, input=b"a\nb\nc\n")
    # -Q: query the offset for a timestamp far in the past -> the first offset
    out = run_kcat(kcat, "-b", broker.bootstrap, "-Q", "-t", f"{topic}:0:0").decode()
    assert "offset 0" in out, out
