#!/usr/bin/env python
"""Throughput of strom's durable partition log alone (no network, no protocol framing).

    python benchmarks/log_bench.py [--quick] [--dir PATH] [--seconds N] [--keep] [--profile]

For 16 KiB and 1 MiB record batches (100-byte values, no compression) it measures:

* raw write: plain ``os.write`` of the same batch, the same number of times, into a file in the
  same directory; the write phase alone (no fsync), and the same run with one ``fsync`` at the
  end; a separate run ends in one ``fdatasync``.
* log append: ``PartitionLog.append`` of the same batch over and over, either running
  ``validate_batches`` (framing + CRC-32C, part of the produce path) before every append, or
  validating once up front and reusing the headers; each run also reports ``+ flush()``, the
  append phase plus one ``PartitionLog.flush`` (fsync of .log/.index/.timeindex + directory).
* log read: a consumer reading the whole log from offset 0; ``read()`` planning alone (how fast
  the log finds file regions) and ``read()`` plus ``os.sendfile`` of every region into a
  socketpair drained by a thread (what a consumer would receive). A raw ``os.sendfile`` of the
  raw-write file in the same chunk size is printed as the read baseline.
* start-up: opening a log of the same size in 64 segments after a clean shutdown (no segment
  data is read), after a crash with the recovery point in the last segment, and with a full
  recovery from offset 0 (every batch's CRC checked).

MB/s is 10**6 bytes per second of log data (whole batches; the partial batch at the end of a
fetch region, re-sent by the next fetch, is not counted twice). Each row is the median of
3 repetitions (1 with --quick). "ratio vs raw write" divides a row's MB/s by the raw write
(no fsync) MB/s of the same batch size.

Page cache: nothing here is read from the device. Every write run ends with an fsync/flush,
so no dirty pages leak from one measurement into the next, but the written pages stay cached:
the read rows, which run right after the appends, read from the page cache (memory speed),
and the "no fsync" write rows measure copying into the page cache, not the disk. Only the
"+ fsync" / "+ fdatasync" / "+ flush()" rows include the device.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:
    import strom  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from strom.log.config import LogConfig
from strom.log.partition import PartitionLog
from strom.protocol.records import BATCH_HEADER_SIZE, build_batch, read_header, validate_batches

KIB = 1024
MIB = 1024 * 1024
MB = 1_000_000

FULL_TOTAL = 1024 * MIB
QUICK_TOTAL = 256 * MIB
VALUE_SIZE = 100
FETCH_MAX_BYTES = 1 * MIB  # consumer fetch size for the small batches
SPACE_MARGIN = 256 * MIB
WARMUP_BYTES = 64 * MIB


# --- workload data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    label: str
    data: bytes
    records: int

    @property
    def size(self) -> int:
        return len(self.data)


def make_batch(label: str, target: int, timestamp: int) -> Batch:
    """The largest uncompressed batch of 100-byte values (null keys) not above ``target``."""
    value = os.urandom(VALUE_SIZE)

    def build(count: int) -> bytes:
        return build_batch([(None, value, (), timestamp)] * count)

    lo, hi = 1, 2
    while len(build(hi)) <= target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # len(build(lo)) <= target < len(build(hi))
        mid = (lo + hi) // 2
        if len(build(mid)) <= target:
            lo = mid
        else:
            hi = mid
    return Batch(label, build(lo), lo)


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Sample:
    nbytes: int
    seconds: float
    batches: float

    @property
    def mb_s(self) -> float:
        return self.nbytes / self.seconds / MB if self.seconds > 0 else float("inf")

    @property
    def batches_s(self) -> float:
        return self.batches / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Row:
    workload: str
    batch: str
    samples: list[Sample] = field(default_factory=list)

    def median(self) -> Sample:
        # The middle repetition by MB/s (not an average), so MB/s and batches/s agree.
        ordered = sorted(self.samples, key=lambda s: s.mb_s)
        return ordered[(len(ordered) - 1) // 2]


class Deadline:
    """Optional cap (--seconds) on one timed loop; checked every 64 iterations."""

    def __init__(self, seconds: float | None) -> None:
        self.at = time.perf_counter() + seconds if seconds else None

    def passed(self) -> bool:
        return self.at is not None and time.perf_counter() > self.at


def raw_write(
    path: Path, batch: Batch, count: int, sync: Callable[[int], None], limit: float | None
):
    """os.write the batch ``count`` times, then ``sync`` once. Returns (bytes, write s, sync s)."""
    data, size = batch.data, batch.size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        gc.collect()
        deadline = Deadline(limit)
        written = 0
        start = time.perf_counter()
        for i in range(count):
            if os.write(fd, data) != size:
                raise OSError(f"short write to {path}")
            written += size
            if not i & 63 and deadline.passed():
                break
        wrote = time.perf_counter()
        sync(fd)
        synced = time.perf_counter()
    finally:
        os.close(fd)
    return written, wrote - start, synced - wrote


def log_append(
    directory: Path,
    batch: Batch,
    count: int,
    config: LogConfig,
    now_ms: int,
    *,
    validate_each: bool,
    limit: float | None,
) -> tuple[PartitionLog, int, float, float]:
    """Append the batch ``count`` times to a fresh log, then flush() once.

    Returns (log, bytes, append s, flush s); the caller closes the log.
    """
    log = PartitionLog(directory, "bench", 0, config, now_ms=now_ms)
    data, size, max_bytes = batch.data, batch.size, config.max_message_bytes
    headers = validate_batches(data, max_bytes)
    append = log.append
    gc.collect()
    deadline = Deadline(limit)
    written = 0
    start = time.perf_counter()
    if validate_each:
        for i in range(count):
            append(data, validate_batches(data, max_bytes), now_ms)
            written += size
            if not i & 63 and deadline.passed():
                break
    else:
        for i in range(count):
            append(data, headers, now_ms)
            written += size
            if not i & 63 and deadline.passed():
                break
    appended = time.perf_counter()
    log.flush(now_ms)
    flushed = time.perf_counter()
    if log.size_bytes != written:
        raise AssertionError(f"log holds {log.size_bytes} bytes, {written} were appended")
    return log, written, appended - start, flushed - appended


class SocketSink:
    """A socketpair whose far end a thread drains, so os.sendfile has somewhere to go."""

    def __init__(self) -> None:
        self.send_sock, self.recv_sock = socket.socketpair()
        self.received = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        buf = bytearray(MIB)
        recv_into = self.recv_sock.recv_into
        while n := recv_into(buf):
            self.received += n

    def fileno(self) -> int:
        return self.send_sock.fileno()

    def finish(self) -> int:
        """Close the sending side and wait until everything sent has been received."""
        self.send_sock.shutdown(socket.SHUT_WR)
        self.thread.join()
        self.send_sock.close()
        self.recv_sock.close()
        return self.received


def _sendfile_all(out_fd: int, in_fd: int, position: int, length: int) -> None:
    while length > 0:
        sent = os.sendfile(out_fd, in_fd, position, length)
        if sent <= 0:
            raise OSError("sendfile sent nothing")
        position += sent
        length -= sent


def log_read(log: PartitionLog, batch: Batch, max_bytes: int, *, send: bool, limit: float | None):
    """Fetch the whole log from offset 0 like a consumer. Returns (log bytes, seconds, bytes sent).

    The next fetch offset comes from the header of the last whole batch in the region (one
    61-byte pread; every batch has the same size, so its position is known), as a consumer
    that drops the partial batch at the end of a fetch would find it.
    """
    offset, end, size = log.log_start_offset, log.high_watermark, batch.size
    sink = SocketSink() if send else None
    out_fd = sink.fileno() if sink else -1
    read, pread = log.read, os.pread
    consumed = sent = fetches = 0
    gc.collect()
    deadline = Deadline(limit)
    start = time.perf_counter()
    while offset < end:
        result = read(offset, max_bytes)
        if len(result.regions) != 1:
            raise AssertionError(f"expected one region at offset {offset}, got {result.regions}")
        fd, position, length = result.regions[0]
        if sink is not None:
            _sendfile_all(out_fd, fd, position, length)
            sent += length
        whole = length // size
        last = read_header(pread(fd, BATCH_HEADER_SIZE, position + (whole - 1) * size))
        if whole < 1 or last.base_offset != offset + (whole - 1) * batch.records:
            raise AssertionError(f"unexpected batch layout at offset {offset}: {last}")
        offset = last.next_offset
        consumed += whole * size
        fetches += 1
        if not fetches & 63 and deadline.passed():
            break
    if sink is not None and sink.finish() != sent:
        raise AssertionError("the socket did not receive every byte sent")
    elapsed = time.perf_counter() - start
    if deadline.at is None and consumed != log.size_bytes:
        raise AssertionError(f"read {consumed} of {log.size_bytes} bytes")
    return consumed, elapsed, sent


def raw_sendfile(path: Path, chunk: int, limit: float | None) -> tuple[int, float]:
    """os.sendfile a whole file into a drained socketpair, ``chunk`` bytes per call."""
    fd = os.open(path, os.O_RDONLY)
    try:
        total = os.fstat(fd).st_size
        sink = SocketSink()
        out_fd = sink.fileno()
        gc.collect()
        deadline = Deadline(limit)
        position = calls = 0
        start = time.perf_counter()
        while position < total:
            length = min(chunk, total - position)
            _sendfile_all(out_fd, fd, position, length)
            position += length
            calls += 1
            if not calls & 63 and deadline.passed():
                break
        if sink.finish() != position:
            raise AssertionError("the socket did not receive every byte sent")
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return position, elapsed


# --- the benchmark ---------------------------------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _close_and_remove(log: PartitionLog) -> None:
    log.close(flush=False)  # already flushed by log_append
    shutil.rmtree(log.directory.parent)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_batch_size(
    workdir: Path,
    batch: Batch,
    total: int,
    reps: int,
    config: LogConfig,
    now_ms: int,
    limit: float | None,
    keep: bool,
    profile: bool,
) -> tuple[list[Row], list[str]]:
    count = max(1, total // batch.size)
    fetch = FETCH_MAX_BYTES if batch.size < FETCH_MAX_BYTES else batch.size
    label = batch.label
    rows = {
        name: Row(name, label)
        for name in (
            "raw write (os.write, no fsync)",
            "raw write + fsync at end",
            "raw write + fdatasync at end",
            "log append, validate every batch",
            "log append, validate every batch + flush()",
            "log append, pre-validated headers",
            "log append, pre-validated + flush()",
            "log read() planning only",
            "log read() + sendfile to socket",
            "raw sendfile to socket (read baseline)",
        )
    }
    notes: list[str] = []
    base = workdir / f"batch-{batch.size}"
    base.mkdir()
    raw_path = base / "raw.bin"

    # Warm-up (untimed): the first write run of a process is often slower.
    raw_write(raw_path, batch, max(1, min(count, WARMUP_BYTES // batch.size)), os.fsync, None)
    _remove(raw_path)

    # The repetitions interleave raw and log runs, so drift on a noisy machine hits both alike.
    # Every write run ends with an fsync (fdatasync, flush()) so the next run starts with no
    # dirty pages; the write phase of the fsync runs is the "no fsync" figure. Each log run
    # appends to a fresh log directory.
    kept: PartitionLog | None = None
    rolled: set[int] = set()
    for rep in range(reps):
        nbytes, wrote, synced = raw_write(raw_path, batch, count, os.fsync, limit)
        rows["raw write (os.write, no fsync)"].samples.append(
            Sample(nbytes, wrote, nbytes / batch.size)
        )
        rows["raw write + fsync at end"].samples.append(
            Sample(nbytes, wrote + synced, nbytes / batch.size)
        )
        _progress(
            f"  {label} rep {rep + 1} raw write: {nbytes / wrote / MB:.0f} MB/s, "
            f"fsync {synced:.2f} s"
        )
        # The file just written (fsynced, still in the page cache) is the raw read baseline.
        nbytes, elapsed = raw_sendfile(raw_path, fetch, limit)
        rows["raw sendfile to socket (read baseline)"].samples.append(
            Sample(nbytes, elapsed, nbytes / batch.size)
        )
        _progress(f"  {label} rep {rep + 1} raw sendfile: {nbytes / elapsed / MB:.0f} MB/s")
        _remove(raw_path)

        nbytes, wrote, synced = raw_write(raw_path, batch, count, os.fdatasync, limit)
        rows["raw write + fdatasync at end"].samples.append(
            Sample(nbytes, wrote + synced, nbytes / batch.size)
        )
        _progress(f"  {label} rep {rep + 1} raw write: fdatasync {synced:.2f} s")
        _remove(raw_path)

        for validate_each, name in (
            (True, "log append, validate every batch"),
            (False, "log append, pre-validated"),
        ):
            plain = name if validate_each else "log append, pre-validated headers"
            directory = (
                base / f"{'validate' if validate_each else 'prevalidated'}-{rep}" / "bench-0"
            )
            log, nbytes, appended, flushed = log_append(
                directory, batch, count, config, now_ms, validate_each=validate_each, limit=limit
            )
            batches = nbytes / batch.size
            rows[plain].samples.append(Sample(nbytes, appended, batches))
            rows[f"{name} + flush()"].samples.append(Sample(nbytes, appended + flushed, batches))
            rolled.add(len(log.segments) - 1)
            _progress(
                f"  {label} rep {rep + 1} {plain}: {nbytes / appended / MB:.0f} MB/s, "
                f"flush {flushed:.2f} s, {len(log.segments)} segment(s)"
            )
            if not validate_each and rep == reps - 1:
                kept = log  # the read source
            else:
                _close_and_remove(log)
    assert kept is not None
    notes.append(
        f"{label}: {batch.size} B per batch ({batch.records} records of {VALUE_SIZE} B), "
        f"{count} batches = {count * batch.size / MB:.0f} MB per run; segments rolled per run: "
        f"{', '.join(map(str, sorted(rolled)))} (segment.bytes = {config.segment_bytes}); "
        f"fetch max_bytes = {fetch}"
    )

    # Reads from the last pre-validated log (in the page cache: it was just written).
    for send, name in (
        (False, "log read() planning only"),
        (True, "log read() + sendfile to socket"),
    ):
        for rep in range(reps):
            consumed, elapsed, sent = log_read(kept, batch, fetch, send=send, limit=limit)
            rows[name].samples.append(Sample(consumed, elapsed, consumed / batch.size))
            _progress(f"  {label} rep {rep + 1} {name}: {consumed / elapsed / MB:.0f} MB/s")
            if send and rep == 0 and sent != consumed:
                notes.append(
                    f"{label}: sendfile sent {sent / consumed:.3f}x the log bytes (partial batches at "
                    "fetch ends are sent again by the next fetch)"
                )

    if profile:
        _profile(base, batch, count, config, now_ms, kept, fetch, limit)

    if keep:
        kept.close()
        notes.append(f"{label}: kept log in {kept.directory}")
    else:
        _close_and_remove(kept)
    return list(rows.values()), notes


def _profile(
    base: Path, batch: Batch, count: int, config: LogConfig, now_ms: int, log, fetch, limit
) -> None:
    """cProfile one append run (validate every batch) and one read() + sendfile pass."""
    for title, run in (
        (
            "append, validate every batch",
            lambda: log_append(
                base / "profile" / "bench-0",
                batch,
                count,
                config,
                now_ms,
                validate_each=True,
                limit=limit,
            ),
        ),
        ("read() + sendfile", lambda: log_read(log, batch, fetch, send=True, limit=limit)),
    ):
        profiler = cProfile.Profile()
        result = profiler.runcall(run)
        if isinstance(result, tuple) and isinstance(result[0], PartitionLog):
            _close_and_remove(result[0])
        print(f"\n### cProfile: {batch.label} {title} (sorted by own time)\n", file=sys.stderr)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(14)


def bench_startup(workdir: Path, batch: Batch, total: int, now_ms: int) -> list[tuple[str, float]]:
    """Open times of one big log: after a clean shutdown (no segment is read: the last index
    entries give the offsets), after a crash with the recovery point in the last segment (only
    that one is scanned), and a full recovery from offset 0 (every batch's CRC checked)."""
    config = LogConfig(segment_bytes=max(total // 64, MIB))
    directory = workdir / "startup-0"
    log = PartitionLog(directory, "startup", 0, config, now_ms=now_ms)
    headers = validate_batches(batch.data, len(batch.data))
    for _ in range(max(1, total // batch.size)):
        log.append(batch.data, headers, now_ms)
    log.close()
    end = log.log_end_offset
    segments = len(log.segments)
    rows: list[tuple[str, float]] = []
    for label, clean, recovery_point in (
        ("clean shutdown", True, end),
        ("crash, recovery point in the last segment", False, log.active.base_offset),
        ("crash, full recovery from offset 0", False, 0),
    ):
        _drop_page_cache_hint(directory)
        started = time.perf_counter()
        opened = PartitionLog(
            directory, "startup", 0, config, now_ms=now_ms, clean_shutdown=clean, recovery_point=recovery_point
        )
        elapsed = time.perf_counter() - started
        assert opened.log_end_offset == end
        opened.close()
        rows.append((f"open after {label} ({segments} segments, {log.size_bytes / 1e9:.2f} GB)", elapsed))
    shutil.rmtree(directory, ignore_errors=True)
    return rows


def _drop_page_cache_hint(directory: Path) -> None:
    # The logs were just written, so they are in the page cache; a real restart after a crash
    # may read them from the device. POSIX_FADV_DONTNEED asks the kernel to drop clean pages.
    for path in directory.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def filesystem_of(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "-T", str(path)], capture_output=True, text=True, check=True
        ).stdout
        fields = out.splitlines()[-1].split()
        return f"{fields[1]} on {fields[0]} mounted at {fields[-1]}"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="256 MiB per run, 1 repetition (~10-15 s)"
    )
    parser.add_argument(
        "--dir", type=Path, help="directory on the disk to measure (default: the temp dir)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="cap each timed loop at N seconds (rates use the bytes done by then; fsync not capped)",
    )
    parser.add_argument(
        "--total-mb", type=int, help="MiB written per run (default 1024, 256 with --quick)"
    )
    parser.add_argument("--reps", type=int, help="repetitions per row (default 3, 1 with --quick)")
    parser.add_argument(
        "--segment-mb", type=int, help="segment.bytes in MiB (default: LogConfig's 1 GiB)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs (one per batch size)")
    parser.add_argument(
        "--profile", action="store_true", help="also print cProfile of append and read"
    )
    args = parser.parse_args(argv)

    total = (args.total_mb * MIB) if args.total_mb else (QUICK_TOTAL if args.quick else FULL_TOTAL)
    reps = args.reps or (1 if args.quick else 3)
    config = LogConfig() if not args.segment_mb else LogConfig(segment_bytes=args.segment_mb * MIB)
    parent = args.dir.resolve() if args.dir else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)

    # At most one run's data exists at a time (plus, with --keep, one log per batch size).
    free = shutil.disk_usage(parent).free
    copies = 3 if args.keep else 1.1
    if total * copies + SPACE_MARGIN > free:
        scaled = max(16 * MIB, int((free - SPACE_MARGIN) / copies) // MIB * MIB)
        _progress(
            f"only {free / MB:.0f} MB free in {parent}: {total // MIB} MiB per run scaled to {scaled // MIB} MiB"
        )
        total = scaled

    now_ms = int(time.time() * 1000)
    batches = [
        make_batch("16 KiB", 16 * KIB, now_ms),
        make_batch("1 MiB", min(MIB, config.max_message_bytes), now_ms),
    ]
    workdir = Path(tempfile.mkdtemp(prefix="strom-log-bench-", dir=parent))
    rows: list[Row] = []
    notes: list[str] = []
    started = time.perf_counter()
    try:
        for batch in batches:
            _progress(f"{batch.label} batches ({batch.size} B) in {workdir}")
            batch_rows, batch_notes = bench_batch_size(
                workdir, batch, total, reps, config, now_ms, args.seconds, args.keep, args.profile
            )
            rows += batch_rows
            notes += batch_notes
        _progress("start-up of a big log")
        startup = bench_startup(workdir, batches[0], total, now_ms)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started

    available = mem_available()
    print("## strom partition log benchmark\n")
    print(
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        + (f", {available / 2**30:.1f} GiB memory available" if available else "")
    )
    print(f"- directory: {workdir} ({filesystem_of(parent)})")
    print(
        f"- {total // MIB} MiB per run, median of {reps} repetition(s), "
        + (f"loops capped at {args.seconds} s, " if args.seconds else "")
        + f"{elapsed:.0f} s in all"
    )
    print("- MB = 10^6 bytes; ratio = MB/s / raw write (no fsync) MB/s of the same batch size")
    print(
        "- reads come from the page cache (the log was just written); only fsync/fdatasync/flush rows touch the device\n"
    )
    print("| workload | batch size | MB/s | batches/s | ratio vs raw write |")
    print("|---|---|---:|---:|---:|")
    for batch in batches:
        batch_rows = [r for r in rows if r.batch == batch.label]
        raw = next(r for r in batch_rows if r.workload.startswith("raw write (")).median().mb_s
        for row in batch_rows:
            m = row.median()
            print(
                f"| {row.workload} | {row.batch} | {m.mb_s:,.0f} | {m.batches_s:,.0f} | {m.mb_s / raw:.2f} |"
            )
    print("\n| start-up | seconds |")
    print("|---|---:|")
    for label, seconds in startup:
        print(f"| {label} | {seconds:.3f} |")
    print()
    for note in notes:
        print(f"- {note}")
    if reps > 1:
        print("\nper-repetition MB/s:\n")
        for row in rows:
            reps_text = ", ".join(f"{s.mb_s:,.0f}" for s in row.samples)
            print(f"- {row.workload} ({row.batch}): {reps_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
