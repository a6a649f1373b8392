"""The composition root: start-up order (bind before touching the data directory) and the
periodic checkpoint, which must not read the map of logs from its worker thread."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handlers.group_harness import run, running  # tests/ is on sys.path (rootdir conftest)

from strom.log import manager
from strom.log.checkpoint import read_offsets
from strom.log.checkpoint import write_offsets as real_write_offsets
from strom.log.config import LogConfig
from strom.metadata.broker_config import BrokerConfig
from strom.server.broker import Broker


class _Interleaved(dict[Any, Any]):
    """The map of logs, with a hook: the first time the checkpoint's worker thread touches it
    (in the middle of iterating it) or writes a file, the event loop runs ``change`` (which
    mutates the map) while the thread waits, as a thread switch at that point may."""

    def __init__(self, data: dict[Any, Any], loop: asyncio.AbstractEventLoop, change: Any) -> None:
        super().__init__(data)
        self.loop, self.change, self.fired = loop, change, False
        self.loop_thread = threading.get_ident()  # built on the loop

    def interleave(self) -> None:
        if not self.fired and threading.get_ident() != self.loop_thread:
            self.fired = True
            done = threading.Event()
            self.loop.call_soon_threadsafe(lambda: (self.change(), done.set()))
            assert done.wait(5)

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        for item in super().items():
            yield item
            self.interleave()


def test_periodic_checkpoint_snapshots_the_logs_on_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with running(tmp_path) as broker:
            ctx = broker.ctx
            assert ctx is not None
            await ctx.create_topic("t", 3, {})
            logs = ctx.logs
            assert len(logs.logs) == 3
            # While the checkpoint runs in its thread, the loop creates another partition's log.
            interleaved = logs.logs = _Interleaved(
                logs.logs, asyncio.get_running_loop(), lambda: logs.create("new", 0, LogConfig())
            )

            def write_offsets(*args: Any, **kwargs: Any) -> None:
                interleaved.interleave()
                real_write_offsets(*args, **kwargs)

            monkeypatch.setattr(manager, "write_offsets", write_offsets)
            await broker._checkpoint()  # raised "dictionary changed size during iteration"
            assert interleaved.fired and ("new", 0) in logs.logs
            written = read_offsets(tmp_path / "recovery-point-offset-checkpoint")
            assert set(written) == {("t", 0), ("t", 1), ("t", 2)}  # the snapshot taken before

    run(main)


def test_a_busy_port_fails_before_the_data_directory_is_touched(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = BrokerConfig(data_dir=data_dir, listen_port=busy.getsockname()[1])

        async def main() -> None:
            with pytest.raises(OSError) as raised:
                await Broker(config).start()
            assert raised.value.errno == errno.EADDRINUSE

        run(main)
    assert not data_dir.exists()
