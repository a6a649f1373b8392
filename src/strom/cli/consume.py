"""``strom consume TOPIC``: print records, from the beginning unless told otherwise.

Without ``--group`` the partitions are assigned directly: no group is joined and nothing is
committed (librdkafka insists on a group.id, so a throwaway one is set and never used). With
``--group`` the consumer subscribes as a member of that group, starts from the group's
committed offsets (the beginning where there are none; ``--offset`` overrides both), and
commits the offsets of the records it has printed as it goes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

from strom.cli.client import Client, client_command, error_reason, fail
from strom.cli.output import JSON, note, output_option

DEFAULT_FORMAT = "%v\\n"
POLL_SECONDS = 0.2

# --- where to start -------------------------------------------------------------------------------

BEGINNING_WORDS = ("beginning", "start", "earliest", "oldest")
END_WORDS = ("end", "latest", "newest")


@dataclass(frozen=True)
class StartAt:
    """A parsed ``--offset``: kind is beginning | end | offset | from_end | timestamp."""

    kind: str
    value: int = 0

    def describe(self) -> str:
        return {
            "beginning": "the beginning", "end": "the end", "offset": f"offset {self.value}",
            "from_end": f"{self.value} before the end", "timestamp": f"timestamp {self.value}",
        }[self.kind]


def parse_timestamp(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 time (local time unless it has an offset)."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"'{text}' is neither milliseconds since the epoch nor an ISO 8601 time") from None
    return int(moment.timestamp() * 1000)


def parse_start(text: str) -> StartAt:
    word = text.strip().lower()
    if word in BEGINNING_WORDS:
        return StartAt("beginning")
    if word in END_WORDS:
        return StartAt("end")
    if re.fullmatch(r"\d+", word):
        return StartAt("offset", int(word))
    if re.fullmatch(r"-\d+", word):
        return StartAt("from_end", int(word[1:]))
    if word.startswith("@"):
        return StartAt("timestamp", parse_timestamp(text.strip()[1:]))
    raise ValueError(
        f"'{text}' is not beginning, end, an offset N, -N (N before the end) or @TIME (ms or ISO 8601)"
    )


class StartParam(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    name = "START"

    def convert(self, value: Any, param: Any, ctx: Any) -> StartAt:
        if isinstance(value, StartAt):
            return value
        try:
            return parse_start(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def resolve_start(client: Client, topic: str, partitions: list[int], start: StartAt) -> list[Any]:
    """TopicPartitions with the offset each partition starts at, looked up with ListOffsets
    (concrete offsets let the fetch begin at once; librdkafka's logical ones cost a round of
    its own offset queries)."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    keys = [(topic, p) for p in partitions]
    low = client.list_offsets(keys, OffsetSpec.earliest())
    high = client.list_offsets(keys, OffsetSpec.latest())
    found = client.list_offsets(keys, OffsetSpec.for_timestamp(start.value)) if start.kind == "timestamp" else {}
    out = []
    for key in keys:
        first, end = low.get(key), high.get(key)
        if first is None or end is None:  # unknown: let the client find the logical offset
            logical = OFFSET_END if start.kind == "end" else OFFSET_BEGINNING
            out.append(TopicPartition(topic, key[1], logical))
            continue
        if start.kind == "beginning":
            offset = first
        elif start.kind == "end":
            offset = end
        elif start.kind == "offset":
            offset = start.value
        elif start.kind == "from_end":
            offset = end - start.value
        else:  # timestamp: -1 means no record at or after that time, so start at the end
            at = found.get(key, -1)
            offset = at if at is not None and at >= 0 else end
        out.append(TopicPartition(topic, key[1], min(max(offset, first), end)))
    return out


# --- how records are printed ----------------------------------------------------------------------

_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", "0": b"\0"}


def compile_format(fmt: str) -> list[Any]:
    """kcat's format string: %t topic, %p partition, %o offset, %k key, %K key length, %v (or
    %s) value, %S value length, %T timestamp (ms), %h headers (k=v,...), %% a percent sign;
    \\n \\t \\r \\\\ escapes. A newline is added when the format does not end with one."""
    parts: list[Any] = []
    literal = bytearray()
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        nxt = fmt[i + 1] if i + 1 < len(fmt) else ""
        if ch == "%" and nxt:
            if nxt == "%":
                literal += b"%"
            elif nxt in "tpokKvsSTh":
                if literal:
                    parts.append(bytes(literal))
                    literal = bytearray()
                parts.append("v" if nxt == "s" else nxt)
            else:
                raise click.BadParameter(f"'%{nxt}' is not a known field (%t %p %o %k %K %v %S %T %h %%)", param_hint="--format")
            i += 2
            continue
        if ch == "\\" and nxt in _ESCAPES:
            literal += _ESCAPES[nxt]
            i += 2
            continue
        literal += ch.encode()
        i += 1
    if not literal.endswith(b"\n"):
        literal += b"\n"
    parts.append(bytes(literal))
    return parts


def _headers_text(headers: list[tuple[str, bytes | None]] | None) -> bytes:
    if not headers:
        return b""
    return b",".join(k.encode() + b"=" + (v or b"") for k, v in headers)


def render(parts: list[Any], msg: Any) -> bytes:
    out = bytearray()
    for part in parts:
        if isinstance(part, bytes):
            out += part
        elif part == "v":
            out += msg.value() or b""
        elif part == "k":
            out += msg.key() or b""
        elif part == "t":
            out += msg.topic().encode()
        elif part == "p":
            out += str(msg.partition()).encode()
        elif part == "o":
            out += str(msg.offset()).encode()
        elif part == "T":
            out += str(msg.timestamp()[1]).encode()
        elif part == "K":
            out += str(len(msg.key()) if msg.key() is not None else -1).encode()
        elif part == "S":
            out += str(len(msg.value()) if msg.value() is not None else -1).encode()
        elif part == "h":
            out += _headers_text(msg.headers())
    return bytes(out)


def _text(data: bytes | None, name: str, record: dict[str, Any]) -> None:
    if data is None:
        record[name] = None
        return
    try:
        record[name] = data.decode()
    except UnicodeDecodeError:
        record[name] = base64.b64encode(data).decode()
        record[f"{name}_encoding"] = "base64"


def as_json(msg: Any) -> bytes:
    record: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": msg.timestamp()[1],
    }
    _text(msg.key(), "key", record)
    _text(msg.value(), "value", record)
    headers = []
    for k, v in msg.headers() or []:
        header: dict[str, Any] = {"key": k}
        _text(v, "value", header)
        headers.append(header)
    record["headers"] = headers
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


# --- the command ----------------------------------------------------------------------------------


@click.command()
@click.argument("topic")
@click.option("-o", "--offset", "start", type=StartParam(), default=None,
              help="Where to start: beginning (default), end, an offset N, -N (N before the end) or @TIME "
                   "(ms since the epoch or ISO 8601).")
@click.option("-p", "--partition", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Read only this partition (repeatable; default all).")
@click.option("-g", "--group", help="Consume as a member of this group, committing offsets as it goes.")
@click.option("-n", "--num", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("-f", "--follow", is_flag=True, help="Keep waiting for new records (like tail -f) instead of stopping at the end.")
@click.option("-F", "--format", "fmt", metavar="FORMAT",
              help="kcat-style format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp, "
                   "%h headers, %K/%S key/value length. Default '%v\\n'.")
@output_option(help="table: records as --format prints them; json: one JSON object per record and line.")
@client_command
def consume(client: Client, topic: str, start: StartAt | None, partitions: tuple[int, ...], group: str | None,
            num: int | None, follow: bool, fmt: str | None, output: str) -> None:
    """Print the records of TOPIC, from the beginning, and stop at the end (unless --follow).

    \b
      strom consume orders -n 10
      strom consume orders -o end -f
      strom consume orders -o @2024-05-01T12:00:00Z --format '%p/%o %k=%v'
      strom consume orders --output json | jq .value
    """
    if fmt is not None and output == JSON:
        raise click.UsageError("--format and --output json do not go together.")
    if group is not None and partitions:
        raise click.UsageError("--partition assigns partitions itself, so it cannot be used with --group.")
    parts = compile_format(fmt if fmt is not None else DEFAULT_FORMAT)
    write_json = output == JSON

    meta = client.topic_metadata(topic)
    available = sorted(meta.partitions)
    for p in partitions:
        if p not in meta.partitions:
            fail(f"Topic '{topic}' has {len(available)} partition(s); there is no partition {p}.")
    wanted = sorted(set(partitions)) if partitions else available

    settings: dict[str, Any] = {
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    }
    if group is not None:
        client.require_groups()
        settings.update({"group.id": group, "enable.auto.commit": True, "auto.commit.interval.ms": 1000})
    else:
        settings["group.id"] = f"strom-cli-{uuid.uuid4().hex}"  # required by librdkafka; never joined
    consumer = client.consumer(**settings)
    stop_requested = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    assigned: set[int] = set()
    at_end: set[int] = set()
    assignment_seen = False
    stdout = sys.stdout.buffer
    printed = 0
    # Joining a group takes a rebalance (and the broker's group.initial.rebalance.delay.ms).
    join_wait = max(15.0, 3 * client.timeout)
    join_deadline = time.monotonic() + join_wait
    try:
        if group is None:
            consumer.assign(resolve_start(client, topic, wanted, start or StartAt("beginning")))
            assigned = set(wanted)
            assignment_seen = True
        else:
            def on_assign(c: Any, tps: list[Any]) -> None:
                nonlocal assignment_seen
                assignment_seen = True
                mine = [tp.partition for tp in tps]
                assigned.update(mine)
                if start is not None:  # an explicit --offset overrides the committed offsets
                    c.assign(resolve_start(client, topic, mine, start))

            def on_revoke(c: Any, tps: list[Any]) -> None:
                nonlocal assignment_seen, join_deadline
                for tp in tps:
                    assigned.discard(tp.partition)
                    at_end.discard(tp.partition)
                assignment_seen = False  # a rebalance: wait for the new assignment
                join_deadline = time.monotonic() + join_wait

            consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)

        while not stop_requested:
            if num is not None and printed >= num:
                break
            if not follow and assignment_seen and at_end >= assigned:
                if not assigned:  # the group has more members than the topic has partitions
                    note(f"Consumer group '{group}' gave this consumer no partitions of topic '{topic}'.")
                break
            if not assignment_seen and time.monotonic() > join_deadline:
                fail(f"Consumer group '{group}' was given no partitions of topic '{topic}' within "
                     f"{join_wait:g} s; is the group coordinator available?")
            batch = consumer.consume(num_messages=500 if num is None else min(500, num - printed), timeout=POLL_SECONDS)
            out = bytearray()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    from confluent_kafka import KafkaError

                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        fail(f"Topic '{topic}' does not exist.")
                    if err.fatal() or not err.retriable():
                        fail(f"Could not read topic '{topic}': {error_reason(err, topic=topic)}")
                    continue
                at_end.discard(msg.partition())
                out += as_json(msg) if write_json else render(parts, msg)
                printed += 1
                if group is not None:
                    consumer.store_offsets(message=msg)
                if num is not None and printed >= num:
                    break
            if out:
                stdout.write(out)
                stdout.flush()
    finally:  # also when the reader went away (strom consume ... | head; see cli.main)
        for s, handler in previous.items():
            signal.signal(s, handler)
        with contextlib.suppress(Exception):  # closing must not turn a result into a traceback
            consumer.close()  # commits the stored offsets when in a group
