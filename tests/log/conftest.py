"""Fixtures for log tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.log.config import LogConfig
from strom.log.partition import PartitionLog

from .helpers import NOW


@pytest.fixture
def open_log(tmp_path: Path):
    """open_log(**config) -> PartitionLog in tmp_path/t-0 (reopen with the same call)."""
    opened: list[PartitionLog] = []

    def make(config: LogConfig | None = None, **kwargs) -> PartitionLog:
        log = PartitionLog(tmp_path / "t-0", "t", 0, config or LogConfig(), now_ms=NOW, **kwargs)
        opened.append(log)
        return log

    yield make
    for log in opened:
        for segment in log.segments:
            if not segment.closed:
                segment.close()
