"""CPU seconds and resident memory of a process (and its descendants) read from /proc.

CPU time is utime + stime of every thread (a process's /proc/PID/stat sums its threads) plus
cutime + cstime (children it has already reaped), summed over the process tree, so a server
that forks helpers (RabbitMQ's Erlang VM, a shell wrapper around java) is counted whole.
CPU seconds hold better than wall-clock figures on a busy machine: they are what the work cost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces
    return raw[raw.rindex(")") + 2 :].split()


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = children_map()
    tree, todo = [], [pid]
    while todo and len(tree) < 10_000:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds (0 when it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


@dataclass
class Sample:
    cpu_s: float
    rss: int


class ProcTree:
    """The process tree rooted at ``pid``: ``sample()`` gives its total CPU seconds and RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def sample(self) -> Sample:
        pids = process_tree(self.pid)
        return Sample(sum(cpu_seconds(p) for p in pids), sum(rss_bytes(p) for p in pids))

    def alive(self) -> bool:
        return _stat_fields(self.pid) is not None
