"""The console's pure parts: how bytes are shown, the default partitioner's hash, consumer
assignments, the sampler's history and the charts' points."""

from __future__ import annotations

import json
import struct

import pytest

from strom.console.data import decode_assignment, murmur2
from strom.console.history import History, Sample
from strom.console.render import SHOWN_BYTES, Rendered, human_bytes, render, sparkline
from strom.console.web import _parse_time


@pytest.mark.parametrize(("data", "expected"), [
    # Kafka's UtilsTest.testMurmur2: keyed records land where Java clients put them
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_is_kafkas(data, expected):
    assert murmur2(data) == expected


def test_render_kinds():
    assert render(None).kind == "null"
    assert render(b"hello\nworld") == Rendered("text", "hello\nworld", 11)
    pretty = render(b'{"a":[1,2],"b":"\xc3\xa9"}')
    assert pretty.kind == "json" and json.loads(pretty.text) == {"a": [1, 2], "b": "é"} and "\n" in pretty.text
    assert render(b"{not json").kind == "text"
    assert render(bytes([0, 1, 255])).text == "00 01 ff"
    assert render(b"bell\x07").kind == "hex"
    big = render(b"x" * (SHOWN_BYTES + 10))
    assert big.truncated and len(big.text) == SHOWN_BYTES and big.size == SHOWN_BYTES + 10


def test_decode_assignment_all_versions():
    def assignment(version: int, topics: dict[str, list[int]]) -> bytes:
        out = struct.pack(">hi", version, len(topics))
        for topic, parts in topics.items():
            out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", len(parts))
            out += b"".join(struct.pack(">i", p) for p in parts)
        return out + struct.pack(">i", -1)  # user data: null

    for version in (0, 1, 3):
        assert decode_assignment(assignment(version, {"a": [2, 0], "b": [1]})) == [("a", [0, 2]), ("b", [1])]
    assert decode_assignment(b"") == [] and decode_assignment(None) == []
    assert decode_assignment(assignment(0, {"a": [0]})[:9]) == []  # cut short


def test_history_rates_and_lag():
    history = History(size=3)
    history.record(Sample(0.0, {"a": 0, "b": 10}, {"g": 5}))
    history.record(Sample(2.0, {"a": 100, "b": 10}, {"g": 7}))
    history.record(Sample(4.0, {"a": 50, "b": 30}, {}))  # a was made again: no negative rate
    assert history.throughput(["a", "b"]) == [(2.0, 50.0), (4.0, 10.0)]
    assert history.rate("a") == 0.0 and history.rate("b") == 10.0
    assert history.lag("g") == [(0.0, 5.0), (2.0, 7.0)]
    history.record(Sample(6.0, {"a": 60}, {}))  # the ring keeps three samples
    assert [s.time_s for s in history.samples] == [2.0, 4.0, 6.0]


def test_sparkline_scales_into_the_box():
    assert sparkline([(0, 1)]) == ""
    assert sparkline([(0, 0), (5, 10), (10, 5)], width=100, height=50) == "0.0,50.0 50.0,4.0 100.0,27.0"


def test_parse_time():
    assert _parse_time("1700000000000") == 1_700_000_000_000
    assert _parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless it says otherwise
    assert _parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(ValueError):
        _parse_time("yesterday")


def test_human_bytes():
    assert [human_bytes(n) for n in (-1, 5, 2048, 3 * 1024**3)] == ["?", "5 B", "2.0 KiB", "3.0 GiB"]
