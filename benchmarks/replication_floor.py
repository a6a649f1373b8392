"""What replication's data movement costs on this machine, without strom: the floor under the
cluster's CPU per record.

The bytes of an ``acks=all`` produce workload are moved the way Kafka's design moves them, by
the least code that can (no protocol, no per-record work, 1 MiB at a time), once on a single
"broker" and once on a leader with two followers, each role its own process:

* client: sends a 1 MiB "produce request" and waits for a 1-byte acknowledgement (its CPU is
  not counted, as the producer's is not in the broker rows);
* leader: receives the chunk, copies it once (strom and Kafka patch offsets into a copy),
  writes it to its log file, then sends it to every follower and acknowledges once each has
  asked for the next chunk (the high watermark passed it);
* follower: receives a chunk, writes it to its own log file, asks for the next (1 byte).

The leader sends either with ``os.sendfile`` from its file (Kafka's zero copy) or by a
``pread`` copy and an ordinary send (what strom does for a follower on the same host). In a
third mode the leader copies and the followers receive with ``os.splice`` (socket to pipe to
file, no copy in user space: less than Kafka or strom do, to see how low the floor can go). The
ratio of the summed CPU (getrusage of each role over its transfer) is what a cluster on this
machine pays per byte at least, before any broker's own work.

``python -m benchmarks.replication_floor`` prints one measurement; ``measure()`` is what
benchmarks.cluster calls.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
FOLLOWERS = 2
MODES = ("sendfile", "copy", "splice")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _receive(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError("peer closed")
        got += n


def _client(port: int, total: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"C")
    chunk = os.urandom(CHUNK)
    for _ in range(total // CHUNK):
        sock.sendall(chunk)
        sock.recv(1)


def _follower(port: int, total: int, path: str, mode: str) -> float:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"F")
    view = memoryview(bytearray(CHUNK))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    pipe = _pipe() if mode == "splice" else None
    start = _cpu()
    for position in range(0, total, CHUNK):
        if pipe is None:
            _receive(sock, view)
            os.pwrite(fd, view, position)
        else:
            _splice(sock, pipe, fd, position)
        sock.sendall(b"f")  # the next fetch
    return _cpu() - start


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, CHUNK)  # a whole chunk fits (pipe-max-size is 1 MiB by default)
    return read_end, write_end


def _splice(sock: socket.socket, pipe: tuple[int, int], fd: int, position: int) -> None:
    """One chunk from the socket into the file at ``position`` through the pipe."""
    read_end, write_end = pipe
    got = 0
    while got < CHUNK:
        n = os.splice(sock.fileno(), write_end, CHUNK - got)
        if not n:
            raise EOFError("peer closed")
        moved = 0
        while moved < n:
            moved += os.splice(read_end, fd, n - moved, offset_dst=position + got + moved)
        got += n


def _leader(listener: socket.socket, total: int, followers: int, mode: str, path: str) -> float:
    peers: list[socket.socket] = []
    client = None
    while client is None or len(peers) < followers:
        sock, _ = listener.accept()
        if sock.recv(1) == b"C":
            client = sock
        else:
            peers.append(sock)
    view = memoryview(bytearray(CHUNK))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    start = _cpu()
    for position in range(0, total, CHUNK):
        _receive(client, view)
        os.pwrite(fd, bytes(view), position)
        for peer in peers:
            if mode == "sendfile":
                sent = 0
                while sent < CHUNK:
                    sent += os.sendfile(peer.fileno(), fd, position + sent, CHUNK - sent)
            else:
                peer.sendall(os.pread(fd, CHUNK, position))
        for peer in peers:
            peer.recv(1)
        client.sendall(b"k")
    return _cpu() - start


def _spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.replication_floor", *map(str, args)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)


def run_once(total: int, followers: int, mode: str, directory: str) -> dict[str, Any]:
    """One transfer of ``total`` bytes; CPU seconds of the leader and of each follower."""
    leader = _spawn("leader", total, followers, mode, directory)
    assert leader.stdout is not None
    port = int(leader.stdout.readline())
    others = [_spawn("follower", port, total, os.path.join(directory, f"follower-{i}"), mode) for i in range(followers)]
    client = _spawn("client", port, total)
    outputs = [p.communicate(timeout=600)[0] for p in (leader, *others, client)]
    leader_cpu = json.loads(outputs[0])["cpu_s"]
    follower_cpu = [json.loads(o)["cpu_s"] for o in outputs[1:-1]]
    return {"leader_cpu_s": leader_cpu, "follower_cpu_s": follower_cpu, "cpu_s": leader_cpu + sum(follower_cpu)}


def measure(total: int, repeats: int, touch: Any = None) -> dict[str, Any]:
    """The single "broker" and the leader with two followers in each mode, taking turns
    ``repeats`` times; medians of CPU seconds per GB and their ratio. ``touch(nbytes)``, when
    given, runs before each transfer (benchmarks.cluster.touch_page_cache)."""
    runs: dict[str, list[dict[str, Any]]] = {"single": [], **{m: [] for m in MODES}}
    with tempfile.TemporaryDirectory(prefix="strom-floor-") as directory:
        for _ in range(repeats):
            for name in runs:
                if touch is not None:
                    touch(total * (1 if name == "single" else 1 + FOLLOWERS) * 5 // 4)
                runs[name].append(run_once(total, 0 if name == "single" else FOLLOWERS,
                                           "sendfile" if name == "single" else name, directory))
    gb = total / 1e9
    single = statistics.median(r["cpu_s"] for r in runs["single"]) / gb
    out: dict[str, Any] = {"bytes": total, "repeats": repeats, "single_cpu_s_per_gb": single, "runs": runs}
    for mode in MODES:
        cluster = statistics.median(r["cpu_s"] for r in runs[mode]) / gb
        out[mode] = {"cluster_cpu_s_per_gb": cluster, "ratio": cluster / single if single else None,
                     "leader_cpu_s_per_gb": statistics.median(r["leader_cpu_s"] for r in runs[mode]) / gb,
                     "followers_cpu_s_per_gb": [statistics.median(r["follower_cpu_s"][i] for r in runs[mode]) / gb
                                                for i in range(FOLLOWERS)]}
    return out


def main(argv: list[str]) -> None:
    role = argv[0]
    if role == "leader":
        total, followers, mode, directory = int(argv[1]), int(argv[2]), argv[3], argv[4]
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
        print(json.dumps({"cpu_s": _leader(listener, total, followers, mode, os.path.join(directory, "leader"))}))
    elif role == "follower":
        print(json.dumps({"cpu_s": _follower(int(argv[1]), int(argv[2]), argv[3], argv[4])}))
    elif role == "client":
        _client(int(argv[1]), int(argv[2]))
    else:  # a measurement from the command line
        total = int(argv[1]) << 20 if len(argv) > 1 else 1 << 30
        from benchmarks.cluster import touch_page_cache

        result = measure(total, int(argv[2]) if len(argv) > 2 else 3, touch_page_cache)
        result.pop("runs")
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or ["measure"])
