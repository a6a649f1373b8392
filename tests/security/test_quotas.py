"""Quota resolution in Kafka's order and the throttle arithmetic, on a fake clock."""

from __future__ import annotations

import pytest

from strom.security.quotas import (
    CONSUMER_BYTE_RATE,
    DEFAULT,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    QuotaManager,
    Rate,
    entity,
    resolve,
)

P = PRODUCER_BYTE_RATE


@pytest.mark.parametrize(("quotas", "expected"), [
    ({entity("alice", "app"): {P: 1}, entity("alice"): {P: 2}}, (1, ("alice", "app"))),
    ({entity("alice", DEFAULT): {P: 3}, entity("alice"): {P: 2}}, (3, ("alice", "app"))),
    ({entity("alice"): {P: 2}, entity(DEFAULT, "app"): {P: 4}}, (2, ("alice", ""))),
    ({entity(DEFAULT, "app"): {P: 4}, entity(DEFAULT, DEFAULT): {P: 5}}, (4, ("alice", "app"))),
    ({entity(DEFAULT, DEFAULT): {P: 5}, entity(DEFAULT): {P: 6}}, (5, ("alice", "app"))),
    ({entity(DEFAULT): {P: 6}, entity(client_id="app"): {P: 7}}, (6, ("alice", ""))),
    ({entity(client_id="app"): {P: 7}, entity(client_id=DEFAULT): {P: 8}}, (7, ("", "app"))),
    ({entity(client_id=DEFAULT): {P: 8}}, (8, ("", "app"))),
    ({entity("bob"): {P: 1}, entity(client_id="other"): {P: 1}}, None),
    ({entity("alice"): {CONSUMER_BYTE_RATE: 1}}, None),  # another key
])
def test_the_most_specific_quota_wins(quotas, expected):
    assert resolve(quotas, P, "alice", "app") == expected


def test_rate_assumes_n_minus_one_full_windows():
    rate = Rate(window_ms=1000, samples=11)
    rate.record(10_000, 0)
    assert rate.window_size_ms(0) == 10_000  # 10 windows assumed: no burst looks infinite
    assert rate.per_second(0) == 1000
    rate.record(10_000, 20_500)  # the first window is gone
    assert rate.per_second(20_500) == pytest.approx(10_000 / 10.0)


def test_throttle_brings_the_rate_back_to_the_quota():
    quotas = {entity(client_id="app"): {P: 1000.0}}
    manager = QuotaManager(window_ms=1000, samples=11)
    assert manager.record(quotas, P, "", "app", 5_000, 0) == 0  # 5000 / 10 s = 500 B/s
    throttle = manager.record(quotas, P, "", "app", 15_000, 100)  # 20000 / 10 s = 2000 B/s
    assert throttle == 9_900  # window 10.1 s: (20000/10.1 - 1000) / 1000 * 10100 ms
    assert manager.record(quotas, P, "", "other", 15_000, 100) == 0  # another client: no quota
    assert manager.record({}, P, "", "app", 10**9, 200) == 0


def test_clients_of_a_user_quota_share_one_rate():
    quotas = {entity("alice"): {P: 1000.0}}
    manager = QuotaManager()
    manager.record(quotas, P, "alice", "a", 8_000, 0)
    assert manager.record(quotas, P, "alice", "b", 8_000, 0) > 0  # 16000 / 10 s over 1000 B/s


def test_request_percentage_is_a_share_of_one_thread():
    quotas = {entity(client_id="app"): {REQUEST_PERCENTAGE: 10.0}}  # 100 ms of work per second
    manager = QuotaManager()
    assert manager.record(quotas, REQUEST_PERCENTAGE, "", "app", 900, 0) == 0  # 90 ms/s
    assert manager.record(quotas, REQUEST_PERCENTAGE, "", "app", 300, 10) > 0  # 120 ms/s


def test_unrecord_takes_a_value_back():
    quotas = {entity(client_id="app"): {CONSUMER_BYTE_RATE: 1000.0}}
    manager = QuotaManager()
    assert manager.record(quotas, CONSUMER_BYTE_RATE, "", "app", 50_000, 0) > 0
    manager.unrecord(quotas, CONSUMER_BYTE_RATE, "", "app", 50_000, 0)
    assert manager.record(quotas, CONSUMER_BYTE_RATE, "", "app", 1_000, 1) == 0
