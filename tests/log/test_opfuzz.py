"""Seeded random sequences of log operations checked against a plain model (redpanda's
opfuzz): appends, rolls, DeleteRecords, truncation, retention, clean and unclean reopens."""

from __future__ import annotations

import random

import pytest

from strom.log.config import LogConfig
from strom.log.partition import OffsetOutOfRange, PartitionLog

from .helpers import NOW, append, batch, read_values, values
from .test_recovery import crash

CONFIG = LogConfig(segment_bytes=1500, index_interval_bytes=200)


@pytest.mark.parametrize("seed", range(25))
def test_random_operations_match_the_model(tmp_path, seed):
    rng = random.Random(seed)
    directory = tmp_path / "t-0"
    log = PartitionLog(directory, "t", 0, CONFIG, now_ms=NOW)
    model: list[bytes] = []  # value at each offset
    bases: list[int] = []  # batch base offsets: truncation happens at batch boundaries
    start = 0
    for step in range(150):
        op = rng.random()
        if op < 0.55:
            count = rng.randint(1, 5)
            new = [f"s{seed}-{step}-{i}".encode() * rng.randint(1, 8) for i in range(count)]
            info = append(log, batch(*new))
            assert info.base_offset == len(model)
            bases.append(len(model))
            model.extend(new)
        elif op < 0.62:
            if log.active.size:
                log.roll(now_ms=NOW)
        elif op < 0.70 and model:
            target = rng.randint(start, len(model))
            assert log.delete_records_before(target) == max(start, target)
            start = max(start, target)
        elif op < 0.75 and bases and bases[-1] >= start:
            target = rng.choice([b for b in bases if b >= start])
            log.truncate_to(target)
            del model[target:]
            del bases[bases.index(target) :]
        elif op < 0.80:
            log.close()
            log = PartitionLog(directory, "t", 0, CONFIG, now_ms=NOW, log_start_offset=start)
        elif op < 0.85:
            recovery_point = log.recovery_point
            crash(log)
            log = PartitionLog(
                directory, "t", 0, CONFIG, now_ms=NOW, log_start_offset=start,
                recovery_point=recovery_point, clean_shutdown=False,
            )
        elif op < 0.90:
            log.flush(NOW)
        else:
            offset = rng.randint(max(0, start - 3), len(model) + 2)
            if start <= offset <= len(model):
                got = read_values(log, offset, rng.choice([1, 100, 10_000]))
                if offset < len(model):
                    assert got[0] == (offset, model[offset])
                    assert got == [(offset + i, model[offset + i]) for i in range(len(got))]
                else:
                    assert got == []
            else:
                with pytest.raises(OffsetOutOfRange):
                    log.read(offset, 100)
        assert log.log_end_offset == log.high_watermark == len(model)
        assert log.log_start_offset == start
    assert [v for o, v in values(log, start) if o >= start] == model[start:]
    log.close()
