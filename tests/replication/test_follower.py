"""truncation_offset: where a follower cuts its log on DivergingEpoch (KIP-101, KIP-279)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.log.checkpoint import LeaderEpochCache
from strom.log.config import LogConfig
from strom.log.partition import PartitionLog
from strom.protocol.records import build_batch, read_header, validate_batches
from strom.replication.follower import truncation_offset

NOW = 1_700_000_000_000


def cache(tmp_path: Path, *entries: tuple[int, int]) -> LeaderEpochCache:
    epochs = LeaderEpochCache(tmp_path / "leader-epoch-checkpoint")
    for epoch, start in entries:
        epochs.assign(epoch, start)
    return epochs


# --- one step ----------------------------------------------------------------------------------------


def test_same_epoch_cuts_at_the_leaders_end_of_it(tmp_path):
    # Epoch 3 starts at 10 here and runs to the log end (20); the leader's epoch 3 ends at 14.
    epochs = cache(tmp_path, (1, 0), (3, 10))
    assert truncation_offset(epochs, 20, 3, 14) == 14


def test_same_epoch_cuts_at_the_local_end_when_the_leader_has_more_of_it(tmp_path):
    # Epoch 1 ends at 10 here (epoch 3 follows); the leader has epoch 1 up to 12.
    epochs = cache(tmp_path, (1, 0), (3, 10))
    assert truncation_offset(epochs, 20, 1, 12) == 10


def test_never_past_the_local_log_end(tmp_path):
    epochs = cache(tmp_path, (2, 0))
    assert truncation_offset(epochs, 6, 2, 9) == 6


def test_an_epoch_unknown_here_cuts_at_the_end_of_the_largest_smaller_epoch(tmp_path):
    """KIP-279: the follower never had the leader's epoch 2: the end of its own epoch 1 (where
    its epoch 4 starts) bounds what can be shared."""
    epochs = cache(tmp_path, (1, 0), (4, 8))
    assert truncation_offset(epochs, 15, 2, 11) == 8
    # ... and the leader's end still bounds it when that is smaller.
    assert truncation_offset(epochs, 15, 2, 5) == 5


def test_an_epoch_below_every_local_epoch_cuts_at_the_leaders_end(tmp_path):
    epochs = cache(tmp_path, (5, 3))
    assert truncation_offset(epochs, 12, 2, 3) == 3
    assert truncation_offset(epochs, 2, 2, 3) == 2  # still never past the local log end


def test_a_plain_object_with_end_offset_for_is_enough():
    class Epochs:
        def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
            assert (epoch, log_end_offset) == (7, 30)
            return 6, 21

    assert truncation_offset(Epochs(), 30, 7, 25) == 21


# --- KIP-279: repeated steps after fast leader changes ---------------------------------------------


@pytest.fixture
def new_log(tmp_path: Path):
    """new_log(name) -> an empty replicated PartitionLog in tmp_path/name, closed afterwards."""
    opened: list[PartitionLog] = []

    def make(name: str) -> PartitionLog:
        log = PartitionLog(tmp_path / name, "t", 0, LogConfig(), now_ms=NOW, replicated=True)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close(flush=False)


def _write(log: PartitionLog, epoch: int, count: int, tag: str) -> None:
    """``count`` one-record batches written by this log as leader of ``epoch``."""
    log.become_leader(epoch)
    for i in range(count):
        data = build_batch([(b"k", f"{tag}{i}".encode(), [], NOW + i)])
        log.append(data, validate_batches(data, 1 << 20), NOW)


def _copy(source: PartitionLog, target: PartitionLog, upto: int) -> None:
    """Replicate ``source``'s batches from ``target``'s log end up to ``upto``, verbatim."""
    data = source.read_bytes(target.log_end_offset)
    headers, pos = [], 0
    while pos < len(data):
        header = read_header(data, pos)
        if header.base_offset >= upto:
            break
        headers.append(header)
        pos += header.size
    if headers:
        target.append_batches(data[:pos], headers, NOW)


def _reconcile(follower: PartitionLog, leader: PartitionLog) -> list[int]:
    """Fetch with LastFetchedEpoch until the leader finds no divergence (the leader's side as
    Kafka's Partition.fetchRecords: the end of the largest epoch <= the follower's last one);
    returns the truncation points, then copies the leader's remaining batches."""
    cuts = []
    while follower.log_end_offset > 0:
        last_fetched_epoch, fetch_offset = follower.epochs.latest_epoch, follower.log_end_offset
        epoch, end = leader.epochs.end_offset_for(last_fetched_epoch, leader.log_end_offset)
        if epoch == last_fetched_epoch and end >= fetch_offset:
            break
        cut = truncation_offset(follower.epochs, follower.log_end_offset, epoch, end)
        follower.truncate_to(cut)
        cuts.append(cut)
        after = (follower.epochs.latest_epoch, follower.log_end_offset)
        assert after != (last_fetched_epoch, fetch_offset), f"no progress at {after}: the follower would fetch forever"
        assert len(cuts) < 10
    _copy(leader, follower, leader.log_end_offset)
    return cuts


def test_double_failover_converges_on_the_common_prefix_in_several_steps(new_log):
    """Brokers A and F take turns leading, each failing before the other copies its tail.

        epoch 0 (X): offsets 0-4; A copied 0-2, F copied 0-4
        epoch 1 (A): A writes 3-5      epoch 2 (F): F writes 5-7
        epoch 3 (A): A writes 6-9      epoch 4 (F): F writes 8-9
    A leads again and F follows: F must cut at 8, then 5, then 3 (the end of epoch 0 on A),
    and never keep a record A does not have.
    """
    x, a, f = new_log("x"), new_log("a"), new_log("f")
    _write(x, 0, 5, "x")
    _copy(x, a, 3)
    _copy(x, f, 5)
    _write(a, 1, 3, "a1-")
    _write(f, 2, 3, "f2-")
    _write(a, 3, 4, "a3-")
    _write(f, 4, 2, "f4-")
    assert a.epochs.entries == [(0, 0), (1, 3), (3, 6)]
    assert f.epochs.entries == [(0, 0), (2, 5), (4, 8)]
    assert (a.log_end_offset, f.log_end_offset) == (10, 10)
    common = x.read_bytes(0)[: len(x.read_bytes(0)) - len(x.read_bytes(3))]  # X's offsets 0-2

    cuts = _reconcile(f, a)

    assert cuts == [8, 5, 3]
    assert f.read_bytes(0)[: len(common)] == common
    assert f.read_bytes(0) == a.read_bytes(0)
    assert f.epochs.entries == a.epochs.entries == [(0, 0), (1, 3), (3, 6)]


def test_kip_279_example_a_single_step_suffices_with_the_local_epoch_end(new_log):
    """KIP-279's own example: A has m1 m2 (epoch 1), B has m1 (epoch 1) and m3 (epoch 2), A
    comes back as leader of epoch 3. A answers DivergingEpoch(1, 2); B must cut at 1 (the end
    of its epoch 1), not at 2, which would keep m3 at offset 1 where A has m2."""
    a, b = new_log("a"), new_log("b")
    _write(a, 1, 2, "m")
    _copy(a, b, 1)
    _write(b, 2, 1, "m3-")
    _write(a, 3, 1, "m4-")
    assert a.epochs.end_offset_for(2, a.log_end_offset) == (1, 2)

    cuts = _reconcile(b, a)

    assert cuts == [1]
    assert b.read_bytes(0) == a.read_bytes(0)
    assert b.epochs.entries == [(1, 0), (3, 2)]


@pytest.mark.parametrize("follower_extra", [0, 2])
def test_a_follower_without_divergence_is_not_truncated(new_log, follower_extra):
    a, b = new_log("a"), new_log("b")
    _write(a, 2, 6, "v")
    _copy(a, b, 6 - follower_extra)
    assert _reconcile(b, a) == []
    assert b.read_bytes(0) == a.read_bytes(0)


def test_a_leader_deposed_before_appending_follows_the_next_one(new_log):
    """B led epoch 4 without appending anything (its cache has (4, 10) with no batch of epoch
    4), then follows A (epoch 5). A answers DivergingEpoch(1, 12) to LastFetchedEpoch 4; B's
    epoch 1 ends at 10, its log end: B cuts nothing, but must forget epoch 4 to move on."""
    a, b = new_log("a"), new_log("b")
    _write(a, 1, 10, "v")
    _copy(a, b, 10)
    _write(a, 1, 2, "w")  # A has epoch 1 up to 12; B has 0-9
    b.become_leader(4)
    _write(a, 5, 3, "x")
    assert b.epochs.entries == [(1, 0), (4, 10)]
    assert a.epochs.entries == [(1, 0), (5, 12)]

    cuts = _reconcile(b, a)

    assert cuts == [10]
    assert b.read_bytes(0) == a.read_bytes(0)
    assert b.epochs.entries == [(1, 0), (5, 12)]
