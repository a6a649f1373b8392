"""A follower's log reconciliation with its leader (KIP-101, KIP-279).

The follower fetches with the epoch of its last batch (Fetch v12+ ``LastFetchedEpoch``); when
the leader finds that the follower's log diverges from its own, it answers ``DivergingEpoch``
(the largest epoch <= the follower's at which the leader's log has the follower's offsets,
and where that epoch ends on the leader). The follower truncates to the end of that epoch in
*both* logs and fetches again; repeated, this converges on the common prefix even after
several fast leader changes (KIP-279).
"""

from __future__ import annotations

from typing import Protocol


class EpochLookup(Protocol):
    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]: ...


def truncation_offset(epochs: EpochLookup, log_end_offset: int, diverging_epoch: int, diverging_end: int) -> int:
    """Where to cut the follower's log after the leader answered DivergingEpoch(epoch, end)."""
    local_epoch, local_end = epochs.end_offset_for(diverging_epoch, log_end_offset)
    if local_epoch < 0:
        # No epoch at or below the leader's in this log: nothing is known to be shared
        # beyond what the leader names.
        return min(diverging_end, log_end_offset)
    return min(diverging_end, local_end, log_end_offset)
