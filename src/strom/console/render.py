"""How the console shows record bytes and time series (pure functions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

SHOWN_BYTES = 4096  # of a key or value; the rest is cut (the page says so)


@dataclass(frozen=True)
class Rendered:
    kind: str  # "null", "text", "json" or "hex"
    text: str
    size: int  # bytes of the whole key or value
    truncated: bool = False


def render(data: bytes | None) -> Rendered:
    """Text as text, JSON objects and arrays pretty-printed, anything else as hex."""
    if data is None:
        return Rendered("null", "null", 0)
    shown = data[:SHOWN_BYTES]
    cut = len(data) > SHOWN_BYTES
    try:
        text = bytes(data).decode()
    except UnicodeDecodeError:
        return Rendered("hex", shown.hex(" "), len(data), cut)
    if text[:1] in ("{", "[") and not cut:
        try:
            return Rendered("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False), len(data))
        except ValueError:
            pass
    if not all(c.isprintable() or c in "\n\r\t" for c in text):
        return Rendered("hex", shown.hex(" "), len(data), cut)
    return Rendered("text", text[:SHOWN_BYTES], len(data), cut)


def sparkline(points: Sequence[tuple[float, float]], width: int = 600, height: int = 120) -> str:
    """An SVG polyline's ``points`` attribute for (time, value) pairs, scaled to the box
    (value 0 at the bottom); "" for fewer than two points."""
    if len(points) < 2:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    top = max(v for _, v in points) or 1.0
    span = (t1 - t0) or 1.0
    return " ".join(f"{(t - t0) / span * width:.1f},{height - v / top * (height - 4):.1f}" for t, v in points)


def human_bytes(size: int) -> str:
    if size < 0:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
