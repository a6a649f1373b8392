"""Replica placement for new topics and partitions, and checks of manual assignments.

``assign_replicas`` is Kafka's placement (``AdminUtils.assignReplicasToBrokers`` of the ZooKeeper
era, which KRaft's ``StripedReplicaPlacer`` keeps in spirit), so that a strom cluster spreads
replicas the way operators expect:

- brokers are taken in node-id order; partition ``p``'s first replica (its preferred leader) is
  the broker at ``(p + start_index) % n``: leaders go round-robin from a random start;
- each follower sits a shift away from the first replica; the shift grows by one after every
  ``n`` partitions, so that a broker's partitions do not all share the same followers;
- when every broker has a rack, the round-robin runs over a rack-alternated broker list
  (one broker of each rack in turn) and a follower skips any broker whose rack (or itself)
  already holds a replica of the partition, while racks (brokers) without one remain.

``validate_assignment`` answers Kafka's ``validateManualPartitionAssignment`` messages.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from strom.metadata.configs import ConfigError
from strom.metadata.image import BrokerRegistration
from strom.protocol.errors import ErrorCode


def assign_replicas(
    brokers: Mapping[int, BrokerRegistration],
    partitions: int,
    replication_factor: int,
    *,
    start_partition: int = 0,
    start_index: int | None = None,
    rng: random.Random | None = None,
) -> list[list[int]]:
    """Replica lists for partitions ``start_partition .. start_partition + partitions - 1``,
    preferred leader first. ``start_index`` fixes both the leaders' start and the followers'
    first shift (Kafka's ``fixedStartIndex``); None draws them from ``rng``.

    Raises ConfigError(INVALID_REPLICATION_FACTOR) when the factor is below 1 or above the
    number of brokers."""
    if replication_factor < 1:
        raise ConfigError(
            ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."
        )
    if replication_factor > len(brokers):
        raise ConfigError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(brokers)}.",
        )
    if partitions <= 0:
        return []
    racks = {b.node_id: b.rack for b in brokers.values() if b.rack is not None}
    # Kafka refuses to place when only some brokers have a rack (its "Enforced" mode); strom
    # places rack-unaware then, like Kafka's "Safe" mode for auto-created topics: a broker
    # that misses its broker.rack must not make topic creation fail cluster-wide.
    rack_aware = len(racks) == len(brokers)
    order = _rack_alternated(racks) if rack_aware else sorted(brokers)
    n = len(order)
    rng = rng or random.Random()
    # Two draws, as Kafka: the leaders' start and the followers' first shift are independent.
    first_start = start_index if start_index is not None else rng.randrange(n)
    shift = start_index if start_index is not None else rng.randrange(n)
    rack_count = len(set(racks.values()))
    result: list[list[int]] = []
    for partition in range(max(0, start_partition), max(0, start_partition) + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + first_start) % n
        if rack_aware:
            # Kafka multiplies the shift by the rack count so followers change racks too.
            result.append(_rack_aware_replicas(
                order, racks, first, shift * rack_count, replication_factor, rack_count
            ))
        else:
            result.append([order[first]] + [
                order[_follower_index(first, shift, j, n)] for j in range(replication_factor - 1)
            ])
    return result


def continuation_start_index(brokers: Mapping[int, BrokerRegistration], first_replica: int) -> int:
    """The ``start_index`` for partitions added to an existing topic (Kafka's addPartitions):
    the position of the first broker whose id is at least partition 0's preferred leader, so
    the new partitions continue the topic's round-robin."""
    ids = sorted(brokers)
    return next((i for i, node_id in enumerate(ids) if node_id >= first_replica), 0)


def validate_assignment(
    assignments: Sequence[Sequence[int]],
    brokers: Mapping[int, BrokerRegistration],
    replication_factor: int | None = None,
) -> None:
    """Check manual replica lists (CreateTopics / CreatePartitions assignments, reassignment
    targets) with Kafka's messages: not empty, registered brokers only, no broker twice, and
    every list as long as ``replication_factor`` (default: the first list's length).

    Raises ConfigError(INVALID_REPLICA_ASSIGNMENT)."""
    expected = replication_factor
    for replicas in assignments:
        if not replicas:
            _invalid("The manual partition assignment includes an empty replica list.")
        previous = None
        # Sorted, as Kafka does, so the smallest offending broker id is the one named.
        for node_id in sorted(replicas):
            if node_id not in brokers:
                _invalid(
                    f"The manual partition assignment includes broker {node_id}, but no such "
                    "broker is registered."
                )
            if node_id == previous:
                _invalid(
                    f"The manual partition assignment includes the broker {node_id} more than "
                    "once."
                )
            previous = node_id
        if expected is None:
            expected = len(replicas)
        elif len(replicas) != expected:
            _invalid(
                f"The manual partition assignment includes a partition with {len(replicas)} "
                "replica(s), but this is not consistent with previous partitions, which have "
                f"{expected} replica(s)."
            )


def _invalid(message: str) -> None:
    raise ConfigError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, message)


def _follower_index(first: int, shift: int, j: int, n: int) -> int:
    # Followers sit 1 .. n-1 places after the first replica, never on it.
    return (first + 1 + (shift + j) % (n - 1)) % n


def _rack_alternated(racks: Mapping[int, str]) -> list[int]:
    """One broker of each rack in turn, racks by name and brokers by id: racks a: 0, 1, 2 and
    b: 3, 4 give 0, 3, 1, 4, 2."""
    by_rack: dict[str, list[int]] = {}
    for node_id in sorted(racks):
        by_rack.setdefault(racks[node_id], []).append(node_id)
    columns = [by_rack[rack] for rack in sorted(by_rack)]
    depth = max(len(column) for column in columns)
    return [column[i] for i in range(depth) for column in columns if i < len(column)]


def _rack_aware_replicas(
    order: list[int],
    racks: Mapping[int, str],
    first: int,
    shift: int,
    replication_factor: int,
    rack_count: int,
) -> list[int]:
    leader = order[first]
    replicas = [leader]
    used_racks = {racks[leader]}
    used = {leader}
    n = len(order)
    k = 0  # one walk over the follower positions for the whole partition, as Kafka's
    while len(replicas) < replication_factor:
        node_id = order[_follower_index(first, shift, k, n)]
        k += 1
        rack = racks[node_id]
        # Skip a rack that has a replica while another has none, and likewise a broker.
        if rack in used_racks and len(used_racks) < rack_count:
            continue
        if node_id in used and len(used) < n:
            continue
        replicas.append(node_id)
        used_racks.add(rack)
        used.add(node_id)
    return replicas
