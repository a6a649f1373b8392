"""Client quotas (KIP-13, KIP-55, KIP-124, KIP-219) as plain objects taking ``now_ms``.

Quotas are set per entity: a user, a client id, or a user and client id, each possibly the
default (``<default>``). A connection's quota is the most specific one set, in Kafka's order
(user+client, user+default client, user, default user+client, default user+default client,
default user, client, default client); all clients matching the same entity share one rate.

Rates are Kafka's: a sum over ``quota.window.num`` windows of ``quota.window.size.seconds``,
divided by the time those windows cover (at least N-1 full windows). A client over its quota
is throttled for the time its rate needs to come back to the bound:
``(rate - bound) / bound * window``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT = "<default>"
USER, CLIENT_ID = "user", "client-id"
PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE, "controller_mutation_rate")

QuotaEntity = tuple[tuple[str, str], ...]  # sorted (entity type, name or DEFAULT)
Quotas = Mapping[QuotaEntity, Mapping[str, float]]


def entity(user: str | None = None, client_id: str | None = None) -> QuotaEntity:
    """The canonical key; pass DEFAULT for a default entity, None to leave a type out."""
    pairs = [(t, n) for t, n in ((CLIENT_ID, client_id), (USER, user)) if n is not None]
    return tuple(sorted(pairs))


def resolve(quotas: Quotas, key: str, user: str, client_id: str) -> tuple[float, tuple[str, str]] | None:
    """The quota ``key`` for a connection of ``user`` (a principal's name) and ``client_id``,
    and the rate it is measured in: (user, client id) tags, empty where the quota is shared."""
    candidates = (
        (entity(user, client_id), (user, client_id)),
        (entity(user, DEFAULT), (user, client_id)),
        (entity(user), (user, "")),
        (entity(DEFAULT, client_id), (user, client_id)),
        (entity(DEFAULT, DEFAULT), (user, client_id)),
        (entity(DEFAULT), (user, "")),
        (entity(client_id=client_id), ("", client_id)),
        (entity(client_id=DEFAULT), ("", client_id)),
    )
    for candidate, tags in candidates:
        value = quotas.get(candidate, {}).get(key)
        if value is not None:
            return value, tags
    return None


@dataclass
class Rate:
    """Kafka's Rate over a SampledStat of sums."""

    window_ms: int
    samples: int
    _windows: list[list[float]] = field(default_factory=list)  # [start_ms, sum]

    def record(self, value: float, now_ms: int) -> None:
        self._purge(now_ms)
        if not self._windows or now_ms - self._windows[-1][0] >= self.window_ms:
            self._windows.append([now_ms, 0.0])
        self._windows[-1][1] += value

    def _purge(self, now_ms: int) -> None:
        horizon = now_ms - self.samples * self.window_ms
        while self._windows and self._windows[0][0] + self.window_ms <= horizon:
            self._windows.pop(0)

    def window_size_ms(self, now_ms: int) -> int:
        self._purge(now_ms)
        elapsed = int(now_ms - self._windows[0][0]) if self._windows else 0
        full = elapsed // self.window_ms
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return max(elapsed, 1)

    def per_second(self, now_ms: int) -> float:
        total = sum(w[1] for w in self._windows)
        return total / (self.window_size_ms(now_ms) / 1000)


@dataclass
class QuotaManager:
    """Rates per (quota key, user, client id) and the throttle a new value brings."""

    window_ms: int = 1000  # quota.window.size.seconds
    samples: int = 11  # quota.window.num
    _rates: dict[tuple[str, str, str], Rate] = field(default_factory=dict)

    def record(self, quotas: Quotas, key: str, user: str, client_id: str, value: float, now_ms: int) -> int:
        """Record ``value`` (bytes, or request time in ms for request_percentage) and return
        the throttle time in ms (0 within quota, or with no quota)."""
        found = resolve(quotas, key, user, client_id) if quotas else None
        if found is None:
            return 0
        bound, (tag_user, tag_client) = found
        if key == REQUEST_PERCENTAGE:
            bound *= 10  # a percentage of one thread: ms of work per second / 10
        rate = self._rates.get((key, tag_user, tag_client))
        if rate is None:
            rate = self._rates[(key, tag_user, tag_client)] = Rate(self.window_ms, self.samples)
        rate.record(value, now_ms)
        observed = rate.per_second(now_ms)
        if bound <= 0:
            return self.window_ms * self.samples
        if observed <= bound:
            return 0
        return min(round((observed - bound) / bound * rate.window_size_ms(now_ms)), self.window_ms * self.samples)

    def max_in_window(self, quotas: Quotas, key: str, user: str, client_id: str) -> float | None:
        """The most that may be taken at once without certain throttling (Kafka sizes fetches
        by it: a larger answer would be throttled and sent empty, again and again)."""
        found = resolve(quotas, key, user, client_id) if quotas else None
        return None if found is None else found[0] * (self.samples - 1) * self.window_ms / 1000

    def unrecord(self, quotas: Quotas, key: str, user: str, client_id: str, value: float, now_ms: int) -> None:
        """Take a value back (a throttled fetch answers empty, as in Kafka)."""
        found = resolve(quotas, key, user, client_id) if quotas else None
        if found is not None:
            rate = self._rates.get((key, *found[1]))
            if rate is not None:
                rate.record(-value, now_ms)
