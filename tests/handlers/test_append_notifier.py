"""AppendNotifier: what parks long-polled fetches until an append or their timeout."""

from __future__ import annotations

import asyncio

from strom.handlers.context import AppendNotifier


def test_notify_wakes_every_parked_waiter_and_timeouts_say_false() -> None:
    async def scenario() -> None:
        appends = AppendNotifier()
        assert await appends.wait(0) is False  # nothing to wait for
        woken = [asyncio.ensure_future(appends.wait(5)) for _ in range(3)]
        await asyncio.sleep(0)
        appends.notify()
        assert await asyncio.gather(*woken) == [True, True, True]
        assert await appends.wait(0.01) is False  # no append came
        appends.notify()  # with nobody parked: nothing happens

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        appends = AppendNotifier()
        parked = asyncio.ensure_future(appends.wait(5))
        await asyncio.sleep(0)
        parked.cancel()
        await asyncio.gather(parked, return_exceptions=True)
        assert not appends._waiters  # a closed connection's fetch does not pile up
        later = asyncio.ensure_future(appends.wait(5))
        await asyncio.sleep(0)
        appends.notify()
        assert await later is True

    asyncio.run(scenario())
