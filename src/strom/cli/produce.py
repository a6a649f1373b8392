"""``strom produce TOPIC``: one record per stdin line, or per ``--value``."""

from __future__ import annotations

import os
import signal
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import click

from strom.cli.client import Client, clause, client_command, error_reason, fail, parse_key_values
from strom.cli.output import JSON, note, output_option, print_json, stderr_console

COMPRESSION = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["all", "-1", "0", "1"]
PROGRESS_EVERY = 1000  # records between progress refreshes


@dataclass
class PartitionSummary:
    records: int = 0
    first_offset: int | None = None
    last_offset: int | None = None


@dataclass
class Deliveries:
    """Delivery reports, filled in by librdkafka's callback during poll/flush."""

    topic: str
    delivered: int = 0
    failed: int = 0
    first_error: Any = None
    partitions: dict[int, PartitionSummary] = field(default_factory=dict)

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = err
            return
        self.delivered += 1
        summary = self.partitions.setdefault(msg.partition(), PartitionSummary())
        summary.records += 1
        offset = msg.offset()
        if offset is not None and offset >= 0:
            if summary.first_offset is None or offset < summary.first_offset:
                summary.first_offset = offset
            if summary.last_offset is None or offset > summary.last_offset:
                summary.last_offset = offset


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    for line in stream:
        yield line[:-1] if line.endswith(b"\n") else line


def _split_key(line: bytes, delimiter: bytes | None, default_key: bytes | None) -> tuple[bytes | None, bytes]:
    if delimiter:
        key, sep, value = line.partition(delimiter)
        if sep:
            return key, value
    return default_key, line


def _stdin_size(stream: BinaryIO) -> int | None:
    """The byte size of stdin when it is a regular file (a bar can show how far along we are)."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size > 0 else None


class _Progress:
    """Records sent so far on stderr (and a bar when stdin is a file of known size)."""

    def __init__(self, enabled: bool, topic: str, total_bytes: int | None) -> None:
        self.progress: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        if total_bytes:
            columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                       TextColumn("{task.fields[records]} records"), TransferSpeedColumn(), TimeElapsedColumn()]
        else:
            columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), MofNCompleteColumn(),
                       TextColumn("records"), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=stderr_console(), transient=False)
        self.task = self.progress.add_task(f"producing to {topic}", total=total_bytes, records=0)
        self.by_bytes = bool(total_bytes)
        self.progress.start()

    def update(self, records: int, bytes_read: int) -> None:
        if self.progress is not None:
            done = bytes_read if self.by_bytes else records
            self.progress.update(self.task, completed=done, records=records)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@click.command()
@click.argument("topic")
@click.option("-v", "--value", "values", multiple=True, help="Produce this value instead of reading stdin (repeatable).")
@click.option("-k", "--key", help="The key of every record.")
@click.option("-K", "--key-delimiter", metavar="DELIM", help="Split each line at the first DELIM into key and value.")
@click.option("-H", "--header", "headers", multiple=True, metavar="KEY=VALUE", help="A header on every record (repeatable).")
@click.option("-p", "--partition", type=click.IntRange(min=0), help="Write every record to this partition (default: by key).")
@click.option("-z", "--compression", type=click.Choice(COMPRESSION), default="none", show_default=True, help="Batch compression.")
@click.option("--acks", type=click.Choice(ACKS), default="all", show_default=True, help="Replicas that must have a record before it counts as sent.")
@click.option("--progress/--no-progress", default=None, help="Show progress on stderr (default: when stderr is a terminal).")
@output_option
@client_command
def produce(client: Client, topic: str, values: tuple[str, ...], key: str | None, key_delimiter: str | None,
            headers: tuple[str, ...], partition: int | None, compression: str, acks: str,
            progress: bool | None, output: str) -> None:
    """Write records to TOPIC: each line of stdin is one record (or each --value).

    \b
      echo hello | strom produce orders
      printf 'k1:v1\\nk2:v2\\n' | strom produce orders -K :
      strom produce orders -k user-1 -H source=cli --value '{"total": 3}'
    """
    header_list = [(k, v.encode()) for k, v in parse_key_values(headers, "--header").items()]
    if key_delimiter == "":
        raise click.BadParameter("must not be empty", param_hint="--key-delimiter")
    meta = client.topic_metadata(topic)
    if partition is not None and partition not in meta.partitions:
        fail(f"Topic '{topic}' has {len(meta.partitions)} partition(s); there is no partition {partition}.")

    producer = client.producer(**{
        "acks": acks,
        "compression.type": compression,
        "linger.ms": 10,
        "partitioner": "murmur2_random",  # the Java client's choice, so keys land where they would with it
        "message.timeout.ms": max(int(client.timeout * 1000) * 6, 30000),
    })
    deliveries = Deliveries(topic)
    default_key = key.encode() if key is not None else None
    delimiter = key_delimiter.encode() if key_delimiter else None
    stdin = sys.stdin.buffer
    reading_stdin = not values
    if reading_stdin and stdin.isatty():
        note("Reading records from stdin, one per line (Ctrl-D to finish).")
    show = progress if progress is not None else (reading_stdin and sys.stderr.isatty() and not stdin.isatty())
    bar = _Progress(bool(show), topic, _stdin_size(stdin) if reading_stdin else None)

    interrupted = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    sent = 0
    bytes_read = 0
    try:
        records = (v.encode() for v in values) if values else _lines(stdin)
        for line in records:
            if interrupted:
                break
            bytes_read += len(line) + 1
            record_key, value = _split_key(line, delimiter, default_key)
            kwargs: dict[str, Any] = {"value": value, "key": record_key, "on_delivery": deliveries}
            if header_list:
                kwargs["headers"] = header_list
            if partition is not None:
                kwargs["partition"] = partition
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.05)
            sent += 1
            if sent % PROGRESS_EVERY == 0:
                producer.poll(0)
                bar.update(sent, bytes_read)
                if deliveries.first_error is not None:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        remaining = producer.flush(client.timeout * 6 + 30)
        bar.update(sent, bytes_read)
        bar.stop()

    summary = {
        "topic": topic,
        "records": deliveries.delivered,
        "failed": deliveries.failed + remaining,
        "partitions": {
            str(p): {"records": s.records, "first_offset": s.first_offset, "last_offset": s.last_offset}
            for p, s in sorted(deliveries.partitions.items())
        },
    }
    if output == JSON:
        print_json(summary)
    elif deliveries.delivered:
        parts = []
        for p, s in sorted(deliveries.partitions.items()):
            if s.first_offset is None:
                parts.append(f"partition {p}: {s.records}")
            elif s.first_offset == s.last_offset:
                parts.append(f"partition {p} offset {s.first_offset}")
            else:
                parts.append(f"partition {p} offsets {s.first_offset}-{s.last_offset}")
        plural = "" if deliveries.delivered == 1 else "s"
        note(f"Produced {deliveries.delivered} record{plural} to '{topic}' ({', '.join(parts)}).")
    if deliveries.first_error is not None or remaining:
        lost = deliveries.failed + remaining
        reason = error_reason(deliveries.first_error, topic=topic) if deliveries.first_error is not None \
            else "they were still queued when the producer gave up."
        fail(f"{lost} of {sent} record(s) were not written to topic '{topic}': {clause(reason)}")
    if interrupted:
        sys.exit(130)
