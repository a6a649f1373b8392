"""The controller's shell: runs strom.cluster.controller.Controller while this broker holds the
controller lease (the etcd store campaigns for it and reports the holder in the image).

On every image change, and every second for retries, it asks the controller for partition
changes and writes each with compare-and-set on the partition epoch *and* this controller's
epoch (the create_revision of its lease key), so a deposed (paused, zombie) controller's
writes fail (CLUSTER.md, "The controller" 2). With auto.leader.rebalance.enable, leadership
goes back to preferred replicas every leader.imbalance.check.interval.seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from strom.cluster.controller import Controller, PartitionChange
from strom.handlers.context import BrokerContext
from strom.metadata.configs import ConfigError
from strom.metadata.image import ClusterImage

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 1.0


class ControllerRuntime:
    """Fields: ``controller`` while this broker is the controller (a fresh one each time it
    wins); ``_dirty``: the image changed since the last pass. Owned by the event loop."""

    def __init__(self, ctx: BrokerContext) -> None:
        self.ctx = ctx
        self.node_id = ctx.config.node_id
        self.controller: Controller | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_rebalance_ms = 0

    def start(self) -> None:
        self.ctx.metadata.add_listener(self.on_image)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.on_image(None, self.ctx.image)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def on_image(self, old: ClusterImage | None, new: ClusterImage) -> None:
        if new.controller_id == self.node_id:
            if self.controller is None:
                log.info("node %d is the controller (epoch %d)", self.node_id, new.controller_epoch)
                self.controller = Controller()
                self._last_rebalance_ms = self.ctx.now_ms()
            self._dirty.set()
        elif self.controller is not None:
            log.info("node %d is no longer the controller", self.node_id)
            self.controller = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), RETRY_INTERVAL_S)
            self._dirty.clear()
            if self.controller is None:
                continue
            try:
                await self._pass(self.controller)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller pass failed")

    async def _pass(self, controller: Controller) -> None:
        image = self.ctx.image
        now_ms = self.ctx.now_ms()
        changes = controller.reconcile(image, now_ms, self._unclean)
        config = self.ctx.config
        if (
            not changes and config.auto_leader_rebalance_enable
            and now_ms - self._last_rebalance_ms >= config.leader_imbalance_check_interval_seconds * 1000
        ):
            self._last_rebalance_ms = now_ms
            changes = controller.rebalance(image)
        if changes:
            await self.write(changes, image)

    async def write(self, changes: list[PartitionChange], image: ClusterImage) -> list[bool]:
        """Write partition changes as this controller; True for each that was stored."""
        results = await asyncio.gather(*(self._write_one(change, image.controller_epoch) for change in changes))
        return list(results)

    async def _write_one(self, change: PartitionChange, controller_epoch: int) -> bool:
        try:
            stored = await self.ctx.metadata.alter_partition(
                change.topic, change.partition, change.state, controller_epoch=controller_epoch
            )
        except ConfigError as exc:
            log.warning("controller: %s-%d not written: %s", change.topic, change.partition, exc)
            return False
        if stored is not None:
            log.info(
                "controller: %s-%d leader %d epoch %d ISR %s", change.topic, change.partition,
                stored.leader, stored.leader_epoch, list(stored.isr),
            )
        return stored is not None

    def _unclean(self, topic: str) -> bool:
        metadata = self.ctx.metadata.topic(topic)
        configs = metadata.configs if metadata is not None else {}
        return self.ctx.log_config(configs).unclean_leader_election_enable
