"""KIP-848's uniform and range assignors: Kafka's invariants (every subscribed partition to
exactly one subscriber, balance, stickiness, range's contiguous co-partitioned ranges)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.assignors import RANGE, UNIFORM, MemberSpec, assign

T = [uuid.UUID(int=i + 1) for i in range(4)]


def flat(assignment):
    return sorted((t, p) for topics in assignment.values() for t, ps in topics.items() for p in ps)


def load(assignment, member):
    return sum(len(ps) for ps in assignment.get(member, {}).values())


def test_uniform_homogeneous_is_balanced_and_sticky():
    partitions = {T[0]: 4}
    a = assign(UNIFORM, [MemberSpec("a", None, frozenset({T[0]}))], partitions)
    assert a == {"a": {T[0]: frozenset({0, 1, 2, 3})}}
    # b joins: a keeps two of its four, b gets the other two
    b = assign(UNIFORM, [MemberSpec("a", None, frozenset({T[0]}), a["a"]), MemberSpec("b", None, frozenset({T[0]}))],
               partitions)
    assert b["a"] == {T[0]: frozenset({0, 1})} and b["b"] == {T[0]: frozenset({2, 3})}
    # a leaves: b keeps its partitions and takes a's
    c = assign(UNIFORM, [MemberSpec("b", None, frozenset({T[0]}), b["b"])], partitions)
    assert c == {"b": {T[0]: frozenset({0, 1, 2, 3})}}


def test_range_gives_contiguous_ranges_static_members_first():
    partitions = {T[0]: 5, T[1]: 5}
    members = [MemberSpec("m-b", None, frozenset(T[:2])), MemberSpec("m-a", None, frozenset(T[:2])),
               MemberSpec("z", "instance-1", frozenset(T[:2]))]
    out = assign(RANGE, members, partitions)
    assert out["z"] == {T[0]: frozenset({0, 1}), T[1]: frozenset({0, 1})}
    assert out["m-a"] == {T[0]: frozenset({2, 3}), T[1]: frozenset({2, 3})}
    assert out["m-b"] == {T[0]: frozenset({4}), T[1]: frozenset({4})}


def test_uniform_heterogeneous_spreads_each_topic_over_its_subscribers():
    partitions = {T[0]: 6, T[1]: 2}
    members = [MemberSpec("a", None, frozenset({T[0], T[1]})), MemberSpec("b", None, frozenset({T[0]})),
               MemberSpec("c", None, frozenset({T[1]}))]
    out = assign(UNIFORM, members, partitions)
    assert sorted(flat(out)) == sorted([(T[0], p) for p in range(6)] + [(T[1], p) for p in range(2)])
    assert T[1] not in out["b"] and T[0] not in out["c"]
    assert max(load(out, m) for m in "abc") - min(load(out, m) for m in "abc") <= 2


members_strategy = st.lists(
    st.tuples(st.sampled_from(["m0", "m1", "m2", "m3", "m4"]), st.sets(st.sampled_from(T), min_size=1),
              st.booleans()),
    min_size=1, max_size=5, unique_by=lambda m: m[0])
partitions_strategy = st.fixed_dictionaries({t: st.integers(0, 7) for t in T})


@settings(max_examples=200, deadline=None)
@given(members_strategy, partitions_strategy, st.sampled_from([UNIFORM, RANGE]))
def test_every_subscribed_partition_goes_to_exactly_one_subscriber(raw, partitions, name):
    specs = [MemberSpec(m, f"i-{m}" if static else None, frozenset(topics)) for m, topics, static in raw]
    out = assign(name, specs, partitions)
    expected = sorted((t, p) for t in {t for s in specs for t in s.subscribed} for p in range(partitions[t]))
    assert flat(out) == expected
    for spec in specs:
        assert set(out.get(spec.member_id, {})) <= spec.subscribed
    # stable: assigning again from the result changes nothing (uniform is sticky)
    if name == UNIFORM:
        again = assign(name, [MemberSpec(s.member_id, s.instance_id, s.subscribed, out.get(s.member_id, {}))
                              for s in specs], partitions)
        assert again == out


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(0, 20), st.integers(1, 6))
def test_uniform_homogeneous_balance_and_minimal_moves(before, count, after):
    partitions = {T[0]: count}
    topics = frozenset({T[0]})
    first = assign(UNIFORM, [MemberSpec(f"m{i}", None, topics) for i in range(before)], partitions)
    loads = [load(first, f"m{i}") for i in range(before)]
    assert max(loads) - min(loads) <= 1
    second = assign(UNIFORM, [MemberSpec(f"m{i}", None, topics, first.get(f"m{i}", {})) for i in range(after)],
                    partitions)
    loads = [load(second, f"m{i}") for i in range(after)]
    assert max(loads) - min(loads) <= 1
    # members that stay keep what they can: nobody who stays loses a partition it could keep
    for i in range(min(before, after)):
        kept = first.get(f"m{i}", {}).get(T[0], frozenset()) & second.get(f"m{i}", {}).get(T[0], frozenset())
        assert len(kept) >= min(load(first, f"m{i}"), count // after)
