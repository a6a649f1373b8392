"""The share-partition state machine of KIP-932 (Kafka 4.2's ``SharePartition``), pure.

One :class:`SharePartition` per (share group, topic-partition) on the partition's leader. It holds
the share-partition start offset (SPSO) and the in-flight records at or above it, and implements
acquisition (ShareFetch), acknowledgement (ShareFetch/ShareAcknowledge), release on share-session
close, acquisition-lock expiry and the move of the log start. No sockets, no clock, no I/O: the
caller passes the time (``now_ms``), reads the log itself, persists :meth:`SharePartition.state`
and arms one timer at :meth:`SharePartition.next_lock_deadline`.

Representation. The in-flight state is a list of ranges ``(first, last, state, delivery count,
owner, lock deadline)`` ordered by offset, split when an operation covers part of a range and
merged again when neighbours become equal, so a batch acquired and acknowledged whole stays one
range whatever its size, while per-offset acknowledgements cost one range per run of equal
offsets. The ranges tile ``[SPSO, SPEO]`` (SPEO = the last offset ever cached) without holes:
offsets the log did not have when a fetch acquired around them (compaction holes) are kept as
ARCHIVED ranges with delivery count 0, which the acknowledgement path skips as Kafka skips
offsets missing from its cache. Leading terminal ranges are dropped as the SPSO passes them.
ACQUIRED ranges below the SPSO can remain after :meth:`SharePartition.reset_start`; they become
ARCHIVED when released or when their lock expires.

Rules (Kafka 4.2, ``SharePartition.java``):

* States AVAILABLE(0) -> ACQUIRED(1) -> AVAILABLE | ACKNOWLEDGED(2) | ARCHIVED(4); the last two
  are terminal. The delivery count goes up by one on each acquisition and never otherwise.
* Releasing (RELEASE ack, session close, lock expiry) gives AVAILABLE, or ARCHIVED once the
  delivery count has reached ``delivery_count_limit`` or the record is below the SPSO.
  ACCEPT gives ACKNOWLEDGED, REJECT and GAP give ARCHIVED.
* Acquisition takes whole log batches (MaxRecords is a soft limit), splits the AcquiredRecords at
  batch boundaries once ``batch_size`` records have accumulated, re-acquires the AVAILABLE cached
  records of the batches read, and takes new records (beyond SPEO) only while the in-flight count
  ``SPEO - SPSO + 1`` is below ``max_record_locks`` (checked at each batch start, so the last
  batch may go past it, as in Kafka). Control batches are acquired like others.
* Poison-record throttling: ``throttle = max(2, ceil(limit / 2))``. A cached record whose delivery
  count has reached ``throttle`` is never delivered together with records acquired before it in
  the same call: acquisition stops in front of it, and it is delivered first in a later call, in
  a chunk of ``run >> (count - throttle + 1)`` records (at least one; ``run`` is the number of
  contiguous AVAILABLE records from it whose count has reached ``throttle``), after which the
  call acquires nothing more. A record at count ``limit - 1`` (``limit > 2``) is always
  delivered alone.
* Acknowledgements are validated as KafkaApis and ``SharePartition.acknowledge`` do and are
  atomic: on any error nothing changes.
* SPSO advances over the leading run of terminal records (and compaction holes); the delivery
  complete count (KIP-1226) is the number of terminal offsets at or above it.

What differs from Kafka, on purpose or for simplicity:

* Persistence: :meth:`SharePartition.state` writes what Kafka's share coordinator would hold
  at that moment. Kafka never writes an acquisition, so an ACQUIRED record is written with the
  state and delivery count it had before it was acquired: AVAILABLE with ``count - 1``, and a
  record delivered for the first time is left out (a gap, AVAILABLE with count 0 on reload).
  After a restart it is redelivered with the same delivery count as the lost delivery, as in
  Kafka. Gaps in a loaded state are acquirable (Kafka's persister read gap window); AVAILABLE
  batches loaded with a count at or above the limit are ARCHIVED (the limit was lowered).
* Compaction holes between the log batches of one fetch are not acquired (Kafka acquires the
  whole span and the client acknowledges the missing offsets as GAP); they become ARCHIVED count-0
  ranges. Cached AVAILABLE records that a read shows the log no longer has are archived: those
  between two batches of the read always, those in front of its first batch only when the caller
  passes ``fetch_offset`` (the offset it read from) to :meth:`SharePartition.acquire`.
* Re-acquiring cached AVAILABLE records is not limited by the in-flight capacity (Kafka caps
  MaxRecords by the remaining capacity for them too unless the partition is at the limit). The
  MaxRecords soft limit is applied at log-batch boundaries for cached records as well (Kafka: at
  cached in-flight batch boundaries).
* Throttling chunks halve the length of the contiguous run of throttled AVAILABLE records
  starting at the first one, not the size of the in-flight batch it belongs to, and hold only
  throttled records; records of the same in-flight batch in front of it are delivered in the
  previous call rather than in its chunk.
* Locks expire lazily too: every call that takes ``now_ms`` first expires the locks whose deadline
  is at or before it, so the outcome does not depend on when the caller's timer fires.
* The SPSO also moves past ACQUIRED records left below it by :meth:`SharePartition.reset_start`
  (Kafka waits until they are released), and it is moved at once there (Kafka: at the next write).
* No state transition is "in progress": changes apply at once. Kafka rolls an acknowledgement
  back when the persister write fails; here the caller persists :meth:`SharePartition.state`
  afterwards and has nothing to roll back to.
* An acknowledgement checks only the cached records inside its range (Kafka also checks the
  owner and state of a whole unsplit in-flight batch that the range starts inside). As in
  Kafka, a range past the last cached offset is INVALID_REQUEST, but one that no cached range
  starts at or before (an empty cache, say) is INVALID_RECORD_STATE ("not found").
* Not implemented: read_committed (archiving aborted transactions), RENEW acknowledgements
  (ShareFetch/ShareAcknowledge v2), the record_limit acquire mode (v2).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from typing import NamedTuple

from strom.protocol.errors import ErrorCode

__all__ = [
    "ACCEPT",
    "ACKNOWLEDGED",
    "ACQUIRED",
    "ARCHIVED",
    "AVAILABLE",
    "GAP",
    "REJECT",
    "RELEASE",
    "Acquired",
    "InFlightRange",
    "LogBatch",
    "PersistedState",
    "ShareConfig",
    "SharePartition",
    "StateBatch",
]

# Kafka's record states (RecordState ids, also the persisted DeliveryState bytes)
AVAILABLE, ACQUIRED, ACKNOWLEDGED, ARCHIVED = 0, 1, 2, 4
# AcknowledgeType ids (ShareFetch/ShareAcknowledge v1)
GAP, ACCEPT, RELEASE, REJECT = 0, 1, 2, 3

_NO_DEADLINE = 1 << 62  # larger than any lock deadline; "no ACQUIRED record"


@dataclass(frozen=True)
class ShareConfig:
    delivery_count_limit: int = 5  # group.share.delivery.count.limit
    # group.share.record.lock.duration.ms, or the group's share.record.lock.duration.ms
    record_lock_duration_ms: int = 30000
    max_record_locks: int = 2000  # group.share.partition.max.record.locks


@dataclass(frozen=True, slots=True)
class StateBatch:
    """A persisted run of offsets (ShareSnapshot's StateBatches): never ACQUIRED. The same
    type is the records' ``PersistedBatch`` (share.records), so states pass to and from the
    persister as they are."""

    first_offset: int
    last_offset: int
    delivery_state: int  # AVAILABLE, ACKNOWLEDGED or ARCHIVED
    delivery_count: int


@dataclass(frozen=True)
class PersistedState:
    start_offset: int  # SPSO
    batches: tuple[StateBatch, ...]  # ascending, non-overlapping, all >= start_offset


@dataclass(frozen=True)
class LogBatch:
    """A record batch of the log as a fetch sees it (its header only)."""

    base_offset: int
    last_offset: int
    is_control: bool = False


@dataclass(frozen=True)
class Acquired:
    """One AcquiredRecords entry of a ShareFetch response."""

    first_offset: int
    last_offset: int
    delivery_count: int


class InFlightRange(NamedTuple):
    """A read-only view of one range of the in-flight state (:meth:`SharePartition.ranges`)."""

    first_offset: int
    last_offset: int
    state: int
    delivery_count: int
    member_id: str | None  # the owner while ACQUIRED
    lock_deadline_ms: int | None  # while ACQUIRED


class _Range:
    __slots__ = ("count", "deadline", "first", "last", "owner", "state")

    def __init__(
        self, first: int, last: int, state: int, count: int, owner: str | None, deadline: int
    ) -> None:
        self.first = first
        self.last = last
        self.state = state
        self.count = count
        self.owner = owner
        self.deadline = deadline

    def same(self, other: _Range) -> bool:
        return (
            self.state == other.state
            and self.count == other.count
            and self.owner == other.owner
            and self.deadline == other.deadline
        )

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_Range({self.first}-{self.last} s={self.state} c={self.count} {self.owner} {self.deadline})"


_FIRST = attrgetter("first")


def _terminal(state: int) -> bool:
    return state >= ACKNOWLEDGED


class SharePartition:
    """The in-flight records of one share group on one topic-partition (see the module doc)."""

    def __init__(self, config: ShareConfig, state: PersistedState) -> None:
        if config.delivery_count_limit < 1:
            raise ValueError("delivery_count_limit must be at least 1")
        self.config = config
        self._limit = config.delivery_count_limit
        self._throttle = max(2, -(-config.delivery_count_limit // 2))
        self._spso = state.start_offset
        self._r: list[_Range] = []
        self._min_deadline = _NO_DEADLINE  # a lower bound of the ACQUIRED ranges' deadlines
        if state.start_offset < 0:
            raise ValueError(f"start offset {state.start_offset} is negative")
        prev = state.start_offset - 1
        for b in state.batches:
            if b.first_offset > b.last_offset:
                raise ValueError(f"state batch {b}: first offset after last offset")
            if b.delivery_state not in (AVAILABLE, ACKNOWLEDGED, ARCHIVED):
                raise ValueError(f"state batch {b}: delivery state {b.delivery_state}")
            if b.delivery_count < 0:
                raise ValueError(f"state batch {b}: negative delivery count")
            if b.last_offset < state.start_offset:
                continue  # wholly below the SPSO: already done
            first = max(b.first_offset, state.start_offset)
            if first <= prev:
                raise ValueError(f"state batch {b} overlaps or precedes the one before it")
            if first > prev + 1:  # a gap: never delivered (Kafka's persister read gap window)
                self._append(_Range(prev + 1, first - 1, AVAILABLE, 0, None, 0))
            st = b.delivery_state
            if st == AVAILABLE and b.delivery_count >= self._limit:
                st = ARCHIVED
            self._append(_Range(first, b.last_offset, st, b.delivery_count, None, 0))
            prev = b.last_offset
        self._advance()

    # --- reading ---------------------------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        """The share-partition start offset (SPSO)."""
        return self._spso

    def next_fetch_offset(self) -> int:
        """Where the next log read should start: the first AVAILABLE cached record, else SPEO+1.

        Locks whose deadline has passed count as held until :meth:`expire_locks` (or any call
        taking ``now_ms``) runs: call ``expire_locks(now)`` first to read from the right place.
        """
        spso = self._spso
        for x in self._r:
            if x.state == AVAILABLE and x.last >= spso:
                return max(x.first, spso)
        return self._end() + 1

    def acquirable(self, high_watermark: int) -> bool:
        """Whether a fetch could acquire something now (the tests' view; a long-poll simply
        fetches again when the log or a lock changes)."""
        nfo = self.next_fetch_offset()
        if nfo >= high_watermark:
            return False
        if nfo <= self._end():  # an AVAILABLE cached record
            return True
        return self.in_flight() < self.config.max_record_locks

    def in_flight(self) -> int:
        """Kafka's in-flight record count: SPEO - SPSO + 1 while anything is cached at/above SPSO."""
        if not self._r:
            return 0
        return max(0, self._r[-1].last - self._spso + 1)

    def delivery_complete_count(self) -> int:
        """Terminal offsets at or above the SPSO (KIP-1226's DeliveryCompleteCount, for lag)."""
        spso = self._spso
        return sum(
            x.last - max(x.first, spso) + 1
            for x in self._r
            if _terminal(x.state) and x.last >= spso
        )

    def next_lock_deadline(self) -> int | None:
        """The earliest acquisition-lock deadline, or None when nothing is ACQUIRED."""
        if self._min_deadline == _NO_DEADLINE:
            return None
        m = min((x.deadline for x in self._r if x.state == ACQUIRED), default=_NO_DEADLINE)
        self._min_deadline = m
        return None if m == _NO_DEADLINE else m

    def ranges(self) -> tuple[InFlightRange, ...]:
        """The cached ranges (the tests' view of the state)."""
        return tuple(
            InFlightRange(
                x.first,
                x.last,
                x.state,
                x.count,
                x.owner,
                x.deadline if x.state == ACQUIRED else None,
            )
            for x in self._r
        )

    def state(self) -> PersistedState:
        """What to persist now (a complete snapshot; ACQUIRED written as before its acquisition)."""
        spso = self._spso
        out: list[list[int]] = []
        for x in self._r:
            if x.last < spso:
                continue
            first = max(x.first, spso)
            if x.state == ACQUIRED:
                st, count = AVAILABLE, x.count - 1
            else:
                st, count = x.state, x.count
            if st == AVAILABLE and count == 0:
                continue  # never delivered: a gap, as Kafka's persister has nothing for it
            if out and out[-1][1] + 1 == first and out[-1][2] == st and out[-1][3] == count:
                out[-1][1] = x.last
            else:
                out.append([first, x.last, st, count])
        return PersistedState(spso, tuple(StateBatch(a, b, s, c) for a, b, s, c in out))

    # --- acquiring -------------------------------------------------------------------------------

    def acquire(
        self,
        member_id: str,
        batches: Sequence[LogBatch],
        max_records: int,
        batch_size: int,
        high_watermark: int,
        now_ms: int,
        *,
        fetch_offset: int | None = None,
    ) -> list[Acquired]:
        """Acquire records of ``batches`` (read from :meth:`next_fetch_offset`) for ``member_id``.

        ``fetch_offset``, the offset the read started at, lets the cached AVAILABLE records in
        front of the first batch (gone from the log) be archived.
        """
        self._expire(now_ms)
        if max_records <= 0:
            return []
        spso = self._spso
        bs: list[LogBatch] = []
        for b in batches:
            if b.last_offset >= high_watermark:
                break
            if b.base_offset > b.last_offset or (bs and b.base_offset <= bs[-1].last_offset):
                raise ValueError(f"log batches not ascending: {b}")
            if b.last_offset >= spso:
                bs.append(b)
        if not bs:
            return []
        self._archive_missing(bs, fetch_offset)

        r = self._r
        throttle = self._throttle
        deadline = now_ms + self.config.record_lock_duration_ms
        max_locks = self.config.max_record_locks
        end = self._end()
        segs: list[tuple[int, int, int, int]] = []  # (first, last, delivery count, batch index)
        n = 0
        touched_lo = touched_hi = -1
        stop = False
        for bi, b in enumerate(bs):
            if n >= max_records:
                break
            lo = max(b.base_offset, spso)
            hi = b.last_offset
            if lo <= end:  # the cached part: re-acquire what is AVAILABLE
                chi = min(hi, end)
                i = self._first_overlap(lo)
                while i < len(r) and r[i].first <= chi:
                    x = r[i]
                    if x.state != AVAILABLE:
                        i += 1
                        continue
                    a = max(x.first, lo)
                    if touched_lo < 0:
                        touched_lo = a
                    if x.count >= throttle:
                        if n == 0:
                            # within this log batch, as Kafka halves its in-flight batch:
                            # MaxRecords stays a soft limit at batch boundaries
                            window_end = min(chi, end)
                            n += self._acquire_throttled(
                                a, window_end, member_id, deadline, segs, bi
                            )
                            touched_hi = max(touched_hi, segs[-1][1] if segs else a)
                        stop = True
                        break
                    z = min(x.last, chi)
                    i = self._split(a)
                    j = self._split(z + 1)
                    y = r[i]
                    y.state = ACQUIRED
                    y.count += 1
                    y.owner = member_id
                    y.deadline = deadline
                    segs.append((a, z, y.count, bi))
                    n += z - a + 1
                    touched_hi = z
                    i = j
                if stop:
                    break
            if hi > end:  # new records, while the in-flight count allows
                if end - spso + 1 >= max_locks:
                    break
                a = max(lo, end + 1)
                if touched_lo < 0:
                    touched_lo = a
                if r and r[-1].last >= spso and a > end + 1:  # a compaction hole
                    self._append(_Range(end + 1, a - 1, ARCHIVED, 0, None, 0))
                last = r[-1] if r else None
                if (
                    last is not None
                    and last.last + 1 == a
                    and last.state == ACQUIRED
                    and last.count == 1
                    and last.owner == member_id
                    and last.deadline == deadline
                ):
                    last.last = hi
                else:
                    self._append(_Range(a, hi, ACQUIRED, 1, member_id, deadline))
                segs.append((a, hi, 1, bi))
                n += hi - a + 1
                end = touched_hi = hi
        if segs:
            self._min_deadline = min(self._min_deadline, deadline)
            self._coalesce(touched_lo, touched_hi)
        self._advance()
        return _acquired_entries(segs, batch_size)

    def _acquire_throttled(
        self,
        a: int,
        window_end: int,
        member_id: str,
        deadline: int,
        segs: list[tuple[int, int, int, int]],
        bi: int,
    ) -> int:
        """Acquire a chunk of the run of throttled AVAILABLE records at ``a`` (poison isolation)."""
        r = self._r
        limit = self._limit
        i = self._split(a)
        run = 0
        expect = a
        k = i
        throttle = self._throttle
        while (
            k < len(r)
            and r[k].first == expect
            and r[k].state == AVAILABLE
            and r[k].count >= throttle
            and expect <= window_end
        ):
            run += min(r[k].last, window_end) - expect + 1
            expect = r[k].last + 1
            k += 1
        chunk = max(1, run >> (r[i].count - throttle + 1))
        taken = 0
        off = a
        while taken < chunk and off <= window_end:
            i = self._split(off)
            if i >= len(r):
                break
            x = r[i]
            if x.first != off or x.state != AVAILABLE or x.count < throttle:
                break
            last_try = limit > 2 and x.count + 1 == limit
            if last_try and taken > 0:
                break  # a record on its last delivery goes alone
            k = min(min(x.last, window_end) - off + 1, chunk - taken)
            if last_try:
                k = 1
            z = off + k - 1
            self._split(z + 1)
            x.state = ACQUIRED
            x.count += 1
            x.owner = member_id
            x.deadline = deadline
            segs.append((off, z, x.count, bi))
            taken += k
            if last_try:
                break
            off = z + 1
        return taken

    def _archive_missing(self, bs: list[LogBatch], fetch_offset: int | None) -> None:
        """Archive cached AVAILABLE records that the read shows the log no longer has."""
        regions: list[tuple[int, int]] = []
        if fetch_offset is not None and fetch_offset < bs[0].base_offset:
            regions.append((fetch_offset, bs[0].base_offset - 1))
        for p, q in pairwise(bs):
            if p.last_offset + 1 < q.base_offset:
                regions.append((p.last_offset + 1, q.base_offset - 1))
        r = self._r
        for lo, hi in regions:
            lo = max(lo, self._spso)
            i = self._first_overlap(lo)
            changed = False
            while i < len(r) and r[i].first <= hi:
                x = r[i]
                if x.state == AVAILABLE:
                    a, z = max(lo, x.first), min(hi, x.last)
                    i = self._split(a)
                    self._split(z + 1)
                    r[i].state = ARCHIVED
                    changed = True
                i += 1
            if changed:
                self._coalesce(lo, hi)

    # --- acknowledging ---------------------------------------------------------------------------

    def acknowledge(
        self, member_id: str, batches: Sequence[tuple[int, int, Sequence[int]]], now_ms: int
    ) -> int:
        """Apply one partition's AcknowledgementBatches atomically; returns an ErrorCode."""
        self._expire(now_ms)
        prev_end = -1
        for first, last, types in batches:
            if first > last or first < prev_end or not types:
                return ErrorCode.INVALID_REQUEST
            if len(types) > 1 and len(types) != last - first + 1:
                return ErrorCode.INVALID_REQUEST
            if any(t < GAP or t > REJECT for t in types):
                return ErrorCode.INVALID_REQUEST
            prev_end = last

        r = self._r
        spso = self._spso
        plan: list[tuple[int, int, int, Sequence[int]]] = []
        prev_last: int | None = None
        for first, last, types in batches:
            if last < spso:
                continue  # already done
            i = bisect_right(r, first, key=_FIRST) - 1
            if i < 0 and first < spso:
                i = bisect_right(r, spso, key=_FIRST) - 1
            if i < 0:
                return ErrorCode.INVALID_RECORD_STATE  # not found in the cache
            j = bisect_right(r, last, key=_FIRST) - 1
            if r[j].last < last:
                return ErrorCode.INVALID_REQUEST  # past what was ever acquired
            lo = max(first, spso)
            k = self._first_overlap(lo)
            while k <= j:
                x = r[k]
                if x.state == ACQUIRED:
                    if x.owner != member_id:
                        return ErrorCode.INVALID_RECORD_STATE
                elif not (x.state == ARCHIVED and x.count == 0):  # holes are skipped
                    return ErrorCode.INVALID_RECORD_STATE
                k += 1
            if prev_last is not None and lo <= prev_last:
                # The batch starts on the previous one's last offset: acknowledged twice.
                h = self._find(lo)
                if h >= 0 and r[h].state == ACQUIRED:
                    return ErrorCode.INVALID_RECORD_STATE
            plan.append((first, lo, last, types))
            prev_last = last

        if not plan:
            return ErrorCode.NONE
        for first, lo, last, types in plan:
            if len(types) == 1:
                self._settle(lo, last, types[0])
                continue
            a = lo
            t = types[a - first]
            for off in range(lo + 1, last + 1):
                u = types[off - first]
                if u != t:
                    self._settle(a, off - 1, t)
                    a, t = off, u
            self._settle(a, last, t)
        self._coalesce(plan[0][1], plan[-1][2])
        self._advance()
        return ErrorCode.NONE

    def _settle(self, lo: int, hi: int, ack_type: int) -> None:
        """Apply ``ack_type`` to the ACQUIRED records in [lo, hi] (validated beforehand)."""
        r = self._r
        i = self._first_overlap(lo)
        while i < len(r) and r[i].first <= hi:
            x = r[i]
            if x.state != ACQUIRED:
                i += 1
                continue
            a, z = max(lo, x.first), min(hi, x.last)
            i = self._split(a)
            self._split(z + 1)
            y = r[i]
            if ack_type == ACCEPT:
                y.state = ACKNOWLEDGED
            elif ack_type == RELEASE and y.count < self._limit:
                y.state = AVAILABLE
            else:  # REJECT, GAP, or RELEASE at the delivery limit
                y.state = ARCHIVED
            y.owner = None
            y.deadline = 0
            i += 1

    # --- releasing -------------------------------------------------------------------------------

    def release_member(self, member_id: str, now_ms: int) -> int:
        """A share session closed: release its member's ACQUIRED records; returns how many."""
        self._expire(now_ms)
        return self._release(lambda x: x.owner == member_id)

    def expire_locks(self, now_ms: int) -> int:
        """Release the ACQUIRED records whose lock deadline is at or before ``now_ms``."""
        return self._expire(now_ms)

    def _expire(self, now_ms: int) -> int:
        if self._min_deadline > now_ms:
            return 0
        n = self._release(lambda x: x.deadline <= now_ms)
        self.next_lock_deadline()  # recompute the bound
        return n

    def _release(self, pred: Callable[[_Range], bool]) -> int:
        r = self._r
        spso = self._spso
        h = self._find(spso)
        if h >= 0 and r[h].first < spso and r[h].state == ACQUIRED and pred(r[h]):
            self._split(spso)  # the part below the SPSO is archived, the rest not
        n = 0
        for x in r:
            if x.state == ACQUIRED and pred(x):
                n += x.last - x.first + 1
                if x.last < spso or x.count >= self._limit:
                    x.state = ARCHIVED
                else:
                    x.state = AVAILABLE
                x.owner = None
                x.deadline = 0
        if n:
            self._coalesce(-1, 1 << 62)
            self._advance()
        return n

    def reset_start(self, log_start_offset: int) -> None:
        """The log start moved past the SPSO: archive the AVAILABLE records below it, move the SPSO.

        ACQUIRED records below it stay ACQUIRED until released or expired, then become ARCHIVED.
        """
        if log_start_offset <= self._spso:
            return
        r = self._r
        hi = log_start_offset - 1
        i = 0
        changed = False
        while i < len(r) and r[i].first <= hi:
            x = r[i]
            if x.state == AVAILABLE:
                i = self._split(x.first)
                self._split(min(hi, x.last) + 1)
                r[i].state = ARCHIVED
                changed = True
            i += 1
        if changed:
            self._coalesce(-1, log_start_offset)
        self._spso = log_start_offset
        self._advance()

    # --- the range list ---------------------------------------------------------------------------

    def _end(self) -> int:
        """SPEO: the last cached offset, or SPSO - 1 when nothing at or above SPSO is cached."""
        if self._r:
            return max(self._r[-1].last, self._spso - 1)
        return self._spso - 1

    def _append(self, x: _Range) -> None:
        self._r.append(x)

    def _find(self, off: int) -> int:
        """The index of the range holding ``off``, or -1."""
        i = bisect_right(self._r, off, key=_FIRST) - 1
        if i >= 0 and self._r[i].last >= off:
            return i
        return -1

    def _first_overlap(self, off: int) -> int:
        """The index of the first range ending at or after ``off``."""
        r = self._r
        i = bisect_right(r, off, key=_FIRST) - 1
        if i < 0:
            return 0
        return i if r[i].last >= off else i + 1

    def _split(self, off: int) -> int:
        """Make ``off`` start a range if a range holds it; the index of the first range >= off."""
        r = self._r
        i = bisect_right(r, off, key=_FIRST) - 1
        if i < 0:
            return 0
        x = r[i]
        if x.first == off:
            return i
        if x.last < off:
            return i + 1
        r.insert(i + 1, _Range(off, x.last, x.state, x.count, x.owner, x.deadline))
        x.last = off - 1
        return i + 1

    def _coalesce(self, lo: int, hi: int) -> None:
        """Merge equal neighbours among the ranges around [lo, hi]."""
        r = self._r
        if len(r) < 2:
            return
        i = max(0, self._first_overlap(lo) - 1)
        j = min(len(r), self._first_overlap(hi + 1) + 1)
        if j - i < 2:
            return
        out = [r[i]]
        for x in r[i + 1 : j]:
            p = out[-1]
            if p.last + 1 == x.first and p.same(x):
                p.last = x.last
            else:
                out.append(x)
        if len(out) != j - i:
            r[i:j] = out

    def _advance(self) -> None:
        """Move the SPSO over the leading terminal records and drop them from the cache."""
        r = self._r
        spso = self._spso
        new = None
        k = 0
        for k, x in enumerate(r):  # noqa: B007 (k is used below)
            if x.last >= spso and not _terminal(x.state):
                new = max(spso, x.first)
                break
        else:
            k = len(r)
            new = max(spso, r[-1].last + 1) if r else spso
        self._spso = new
        if k and any(_terminal(x.state) for x in r[:k]):
            r[:k] = [x for x in r[:k] if not _terminal(x.state)]


def _acquired_entries(segs: list[tuple[int, int, int, int]], batch_size: int) -> list[Acquired]:
    """AcquiredRecords: consecutive offsets with one delivery count merged, split at log-batch
    boundaries once ``batch_size`` records have accumulated."""
    out: list[Acquired] = []
    if not segs:
        return out
    batch_size = max(1, batch_size)
    first, last, count, prev_bi = segs[0]
    for a, z, c, bi in segs[1:]:
        if a == last + 1 and c == count and (bi == prev_bi or last - first + 1 < batch_size):
            last = z
        else:
            out.append(Acquired(first, last, count))
            first, last, count = a, z, c
        prev_bi = bi
    out.append(Acquired(first, last, count))
    return out
