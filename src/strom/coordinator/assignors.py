"""KIP-848's server-side assignors, ``uniform`` and ``range`` (group.consumer.assignors).

Pure functions from the members' subscriptions and their previous target assignments to a new
target. Members and topics are walked in sorted order (Kafka walks hash maps), so the output
is deterministic; the invariants are Kafka's:

* ``uniform`` (sticky): every partition of a subscribed topic goes to exactly one subscriber;
  with identical subscriptions each member gets T div M or one more, and a member keeps as many
  of its previous partitions as that allows; with differing subscriptions each topic's
  subscribers end up within one partition of each other where moves can get them there.
* ``range``: per topic, contiguous ranges over the subscribers sorted static members first (by
  instance id), then by member id; the first ``n mod k`` get one more. Not sticky.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Assignment = dict[uuid.UUID, frozenset[int]]

UNIFORM, RANGE = "uniform", "range"
ASSIGNORS = (UNIFORM, RANGE)
_BALANCE_PASSES = 16


@dataclass(frozen=True, slots=True)
class MemberSpec:
    member_id: str
    instance_id: str | None
    subscribed: frozenset[uuid.UUID]  # topic ids that exist
    previous: Mapping[uuid.UUID, frozenset[int]] = field(default_factory=dict)  # its current target


def assign(name: str, members: Iterable[MemberSpec], partitions: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
    """The target of every member; ``partitions``: the partition count of each topic id."""
    specs = sorted(members, key=lambda m: m.member_id)
    if name == RANGE:
        return _range(specs, partitions)
    if name != UNIFORM:
        raise ValueError(f"unknown assignor {name!r}")
    if specs and all(m.subscribed == specs[0].subscribed for m in specs):
        return _uniform_homogeneous(specs, partitions)
    return _uniform_heterogeneous(specs, partitions)


def _result(owned: Mapping[str, Iterable[tuple[uuid.UUID, int]]]) -> dict[str, Assignment]:
    out: dict[str, Assignment] = {}
    for member, tps in owned.items():
        by_topic: dict[uuid.UUID, set[int]] = {}
        for topic, p in tps:
            by_topic.setdefault(topic, set()).add(p)
        out[member] = {t: frozenset(ps) for t, ps in by_topic.items()}
    return out


def _kept(spec: MemberSpec, partitions: Mapping[uuid.UUID, int], taken: set[tuple[uuid.UUID, int]]) -> list[tuple[uuid.UUID, int]]:
    """The member's previous partitions it may keep: still subscribed, still existing, not
    already kept by another member."""
    kept = []
    for topic in sorted(spec.previous):
        if topic not in spec.subscribed or topic not in partitions:
            continue
        for p in sorted(spec.previous[topic]):
            if p < partitions[topic] and (topic, p) not in taken:
                taken.add((topic, p))
                kept.append((topic, p))
    return kept


def _uniform_homogeneous(specs: list[MemberSpec], partitions: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
    topics = sorted(t for t in specs[0].subscribed if t in partitions)
    everything = [(t, p) for t in topics for p in range(partitions[t])]
    quota, extra = divmod(len(everything), len(specs))
    taken: set[tuple[uuid.UUID, int]] = set()
    owned: dict[str, list[tuple[uuid.UUID, int]]] = {}
    for spec in specs:
        kept = _kept(spec, partitions, taken)
        keep = quota
        if len(kept) > quota and extra > 0:  # members that had more keep the extras first
            keep, extra = quota + 1, extra - 1
        owned[spec.member_id] = kept[:keep]
        taken.difference_update(kept[keep:])
    free = [tp for tp in everything if tp not in taken]
    free.reverse()  # pop() hands them out in order
    for spec in specs:  # first up to the quota...
        mine = owned[spec.member_id]
        while len(mine) < quota and free:
            mine.append(free.pop())
    for spec in specs:  # ...then the remaining extras, one each
        if not free or extra == 0:
            break
        if len(owned[spec.member_id]) == quota:
            owned[spec.member_id].append(free.pop())
            extra -= 1
    return _result(owned)


def _uniform_heterogeneous(specs: list[MemberSpec], partitions: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
    taken: set[tuple[uuid.UUID, int]] = set()
    owned = {spec.member_id: _kept(spec, partitions, taken) for spec in specs}
    subscribers: dict[uuid.UUID, list[str]] = {}
    for spec in specs:
        for topic in sorted(spec.subscribed):
            if topic in partitions:
                subscribers.setdefault(topic, []).append(spec.member_id)
    # the scarcest topics first: most partitions per subscriber, then fewest subscribers
    order = sorted(subscribers, key=lambda t: (-partitions[t] / len(subscribers[t]), len(subscribers[t]), t))
    load = {m: len(tps) for m, tps in owned.items()}
    for topic in order:
        for p in range(partitions[topic]):
            if (topic, p) in taken:
                continue
            member = min(subscribers[topic], key=lambda m: (load[m], m))
            owned[member].append((topic, p))
            load[member] += 1
            taken.add((topic, p))
    for _ in range(_BALANCE_PASSES):
        moved = False
        for topic in order:
            members = subscribers[topic]
            while len(members) > 1:
                holders = [m for m in members if any(t == topic for t, _ in owned[m])]
                if not holders:
                    break
                most = max(holders, key=lambda m: (load[m], m))
                least = min(members, key=lambda m: (load[m], m))
                if load[most] - load[least] <= 1:
                    break
                p = max(q for t, q in owned[most] if t == topic)
                owned[most].remove((topic, p))
                owned[least].append((topic, p))
                load[most] -= 1
                load[least] += 1
                moved = True
        if not moved:
            break
    return _result(owned)


def _range(specs: list[MemberSpec], partitions: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
    ordered = sorted(specs, key=lambda m: (m.instance_id is None, m.instance_id or m.member_id))
    owned: dict[str, list[tuple[uuid.UUID, int]]] = {spec.member_id: [] for spec in specs}
    topics = sorted({t for spec in specs for t in spec.subscribed if t in partitions})
    for topic in topics:
        members = [spec.member_id for spec in ordered if topic in spec.subscribed]
        quota, extra = divmod(partitions[topic], len(members))
        start = 0
        for i, member in enumerate(members):
            count = quota + (1 if i < extra else 0)
            owned[member].extend((topic, p) for p in range(start, start + count))
            start += count
    return _result(owned)
