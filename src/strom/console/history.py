"""The console's memory of the last minutes: samples of every topic's end offsets (messages
in per second) and every group's total lag (lag over time), in a bounded ring."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    time_s: float
    ends: dict[str, int]  # topic -> sum of its partitions' high watermarks
    lags: dict[str, int]  # group -> total lag


class History:
    def __init__(self, size: int = 120) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)

    def record(self, sample: Sample) -> None:
        self.samples.append(sample)

    def throughput(self, topics: Iterable[str]) -> list[tuple[float, float]]:
        """(time, messages in per second summed over ``topics``) between consecutive samples;
        a topic whose end went back (deleted and made again) counts 0 for that step."""
        names = list(topics)
        points = []
        for before, after in zip(self.samples, list(self.samples)[1:], strict=False):
            span = after.time_s - before.time_s
            if span <= 0:
                continue
            added = sum(max(after.ends.get(t, 0) - before.ends.get(t, 0), 0) for t in names
                        if t in after.ends and t in before.ends)
            points.append((after.time_s, added / span))
        return points

    def rate(self, topic: str) -> float:
        """The topic's messages in per second over the last step (0 without two samples)."""
        points = self.throughput([topic])
        return points[-1][1] if points else 0.0

    def lag(self, group: str) -> list[tuple[float, float]]:
        return [(s.time_s, float(s.lags[group])) for s in self.samples if group in s.lags]
