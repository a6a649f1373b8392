"""Robustness: mutated, truncated and garbage request frames sent to a live broker.

Valid frames for ApiVersions v3, Metadata v12, Produce v9, Fetch v12, ListOffsets v7 and
CreateTopics v5 are built with strom's own codec, then mutated by hypothesis. After every
example the broker process must be alive and answer a fresh, hand-built ApiVersions request on
a new connection; at the end a confluent-kafka producer and consumer must still work.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import check_api_versions, consume, create_topic, produce_many, producer

pytestmark = pytest.mark.timeout(180)

TOPIC = f"fuzz-{uuid.uuid4().hex[:10]}"


def build_batch_bytes() -> bytes:
    from strom.protocol.records import build_batch

    now = int(time.time() * 1000)
    return build_batch([(b"key", b"value", [("h", b"v")], now), (None, b"second", [], now + 1)])


def valid_frames() -> dict[str, bytes]:
    from strom.protocol.codec import encode_request
    from strom.protocol.framing import encode_request_frame

    def frame(api_key: int, version: int, body: dict, correlation_id: int) -> bytes:
        return encode_request_frame(api_key, version, correlation_id, "fuzz-client", encode_request(api_key, version, body))

    batch = build_batch_bytes()
    return {
        "api_versions_v3": frame(18, 3, {"client_software_name": "fuzz", "client_software_version": "1.0"}, 1),
        "metadata_v12": frame(
            3,
            12,
            {
                "topics": [{"topic_id": None, "name": TOPIC}],
                "allow_auto_topic_creation": False,
                "include_topic_authorized_operations": False,
            },
            2,
        ),
        "produce_v9": frame(
            0,
            9,
            {
                "transactional_id": None,
                "acks": 1,
                "timeout": 5000,
                "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}],
            },
            3,
        ),
        "fetch_v12": frame(
            1,
            12,
            {
                "replica_id": -1,
                "max_wait": 50,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "isolation_level": 0,
                "session_id": 0,
                "session_epoch": -1,
                "topics": [
                    {
                        "topic": TOPIC,
                        "partitions": [
                            {
                                "partition": 0,
                                "current_leader_epoch": -1,
                                "fetch_offset": 0,
                                "last_fetched_epoch": -1,
                                "log_start_offset": -1,
                                "partition_max_bytes": 1 << 20,
                            }
                        ],
                    }
                ],
                "forgotten_topics_data": [],
                "rack_id": "",
            },
            4,
        ),
        "list_offsets_v7": frame(
            2,
            7,
            {
                "replica_id": -1,
                "isolation_level": 0,
                "topics": [
                    {
                        "name": TOPIC,
                        "partitions": [
                            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1},
                            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -2},
                        ],
                    }
                ],
            },
            5,
        ),
        "create_topics_v5": frame(
            19,
            5,
            {
                "topics": [
                    {
                        "name": f"fuzz-created-{uuid.uuid4().hex[:6]}",
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "assignments": [],
                        "configs": [{"name": "retention.ms", "value": "60000"}],
                    }
                ],
                "timeout": 5000,
                "validate_only": True,
            },
            6,
        ),
    }


FRAMES: dict[str, bytes] = {}


def frames() -> dict[str, bytes]:
    if not FRAMES:
        FRAMES.update(valid_frames())
    return FRAMES


def with_prefix(body: bytes) -> bytes:
    """Re-frame: a correct size prefix for `body` (so the broker decodes the mutated bytes)."""
    return struct.pack(">i", len(body)) + body


# -- mutations -------------------------------------------------------------------------------------


@st.composite
def mutated_frame(draw) -> tuple[str, bytes]:
    if draw(st.integers(0, 19)) == 0:
        return "garbage", draw(st.binary(min_size=0, max_size=300))
    name = draw(st.sampled_from(sorted(frames())))
    frame = frames()[name]
    body = bytearray(frame[4:])
    kind = draw(
        st.sampled_from(
            ["flip", "replace", "truncate", "truncate_keep_prefix", "extend", "insert", "delete", "oversize", "header", "multi"]
        )
    )
    fix_prefix = True
    if kind in ("flip", "replace", "multi"):
        n = draw(st.integers(1, 8 if kind == "multi" else 3))
        for _ in range(n):
            i = draw(st.integers(0, len(body) - 1))
            if kind == "flip" or (kind == "multi" and draw(st.booleans())):
                body[i] ^= 1 << draw(st.integers(0, 7))
            else:
                body[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
    elif kind == "truncate":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif kind == "truncate_keep_prefix":
        # the size prefix promises more than arrives: the broker must wait, then drop the connection
        body = body[: draw(st.integers(0, len(body) - 1))]
        return f"{name}:{kind}", frame[:4] + bytes(body)
    elif kind == "extend":
        body += draw(st.binary(min_size=1, max_size=64))
    elif kind == "insert":
        i = draw(st.integers(0, len(body)))
        body[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        i = draw(st.integers(0, len(body) - 1))
        j = draw(st.integers(i + 1, min(len(body), i + 16)))
        del body[i:j]
    elif kind == "oversize":
        size = draw(st.sampled_from([0x7FFFFFFF, 1 << 30, 100 * 1024 * 1024 + 1, 64 * 1024 * 1024, -1, -(1 << 31), 0]))
        return f"{name}:{kind}", struct.pack(">i", size) + bytes(body)
    elif kind == "header":
        # api key / version / correlation id / client id length: the fields decoded before the body
        field_ = draw(st.sampled_from([(0, ">h"), (2, ">h"), (4, ">i"), (8, ">h")]))
        pos, fmt = field_
        lo, hi = (-(1 << 15), (1 << 15) - 1) if fmt == ">h" else (-(1 << 31), (1 << 31) - 1)
        value = draw(st.one_of(st.integers(lo, hi), st.sampled_from([-1, 0, 1, 17, 18, 67, 1000, hi, lo])))
        struct.pack_into(fmt, body, pos, value)
    data = with_prefix(bytes(body)) if fix_prefix else bytes(body)
    return f"{name}:{kind}", data


# -- one exchange ----------------------------------------------------------------------------------


def send_raw(host: str, port: int, data: bytes, linger: float = 0.3) -> bytes:
    """Send `data`, half-close, read whatever comes back until EOF or `linger` seconds."""
    got = bytearray()
    with socket.create_connection((host, port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return bytes(got)
        deadline = time.monotonic() + linger
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    return bytes(got)


@pytest.fixture(scope="module")
def fuzz_broker(broker):
    create_topic(broker.bootstrap, TOPIC)
    produce_many(producer(broker.bootstrap), TOPIC, [{"key": b"seed", "value": b"seed"}])
    frames()  # build once (fails clearly here if the codec API changed)
    return broker


def test_valid_frames_get_answers(fuzz_broker):
    """Sanity check of the base frames: each valid request gets a response with its correlation id."""
    b = fuzz_broker
    for name, frame in frames().items():
        (corr,) = struct.unpack_from(">i", frame, 8)
        with socket.create_connection(b.address, timeout=10) as s:
            s.settimeout(10)
            s.sendall(frame)
            (size,) = struct.unpack(">i", _recv_exact(s, 4))
            resp = _recv_exact(s, size)
        assert struct.unpack_from(">i", resp, 0)[0] == corr, name


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _health(b) -> str | None:
    """None when healthy, else a description of what is wrong (and the broker is restarted)."""
    problem = None
    if not b.alive:
        problem = f"broker process exited with code {b.proc.returncode}"
    else:
        try:
            check_api_versions(b.host, b.port, timeout=5)
        except (OSError, AssertionError, struct.error, IndexError) as exc:
            problem = f"broker alive but ApiVersions on a fresh connection failed: {exc!r}"
    if problem is None:
        return None
    logs = b.log_text(4000)
    # restart so hypothesis can keep shrinking against a working broker
    b.kill9()
    b.start()
    return f"{problem}\nbroker output:\n{logs}"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    print_blob=True,
)
@given(case=mutated_frame())
def test_mutated_frames_do_not_hurt_the_broker(fuzz_broker, case):
    name, data = case
    b = fuzz_broker
    send_raw(b.host, b.port, data)
    problem = _health(b)
    assert problem is None, f"after sending {name} ({len(data)} bytes: {data[:200].hex()}):\n{problem}"


def test_clients_still_work_after_fuzzing(fuzz_broker, unique_topic):
    b = fuzz_broker
    assert b.alive
    check_api_versions(b.host, b.port)
    topic = unique_topic()
    create_topic(b.bootstrap, topic)
    log = produce_many(producer(b.bootstrap), topic, [{"value": f"after-fuzz-{i}".encode()} for i in range(10)])
    assert [r.offset for r in log.reports] == list(range(10))
    assert [m.value() for m in consume(b.bootstrap, topic, [0])] == [f"after-fuzz-{i}".encode() for i in range(10)]
    # the fuzz topic itself is still readable from the beginning
    msgs = consume(b.bootstrap, TOPIC, [0], timeout=30)
    assert msgs and msgs[0].value() == b"seed"


def test_many_half_open_connections(fuzz_broker):
    """Connections that send a partial frame and stall must not block other clients."""
    b = fuzz_broker
    frame = frames()["metadata_v12"]
    socks = []
    try:
        for i in range(50):
            s = socket.create_connection(b.address, timeout=5)
            s.sendall(frame[: (i % (len(frame) - 1)) + 1])
            socks.append(s)
        t0 = time.monotonic()
        check_api_versions(b.host, b.port, timeout=5)
        assert time.monotonic() - t0 < 2
    finally:
        for s in socks:
            s.close()
    check_api_versions(b.host, b.port, timeout=5)
