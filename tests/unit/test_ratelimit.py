"""collab.ratelimit: the per-connection token bucket, on an injected clock."""

from __future__ import annotations

import pytest

from collab import ratelimit
from collab.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


def bucket(clock: FakeClock, rate: float, burst: float) -> TokenBucket:
    return TokenBucket(rate, burst, stamp=clock.now)


def test_starts_full_and_allows_a_burst(clock: FakeClock) -> None:
    b = bucket(clock, rate=2, burst=20)
    assert [b.take() for _ in range(20)] == [True] * 20
    assert not b.take()


def test_refills_at_the_rate(clock: FakeClock) -> None:
    b = bucket(clock, rate=2, burst=20)
    for _ in range(20):
        b.take()
    clock.now += 0.4  # 0.8 token
    assert not b.take()
    clock.now += 0.1  # 1.0 token
    assert b.take()
    assert not b.take()
    clock.now += 2.0  # 4 tokens
    assert [b.take() for _ in range(5)] == [True] * 4 + [False]


def test_never_holds_more_than_the_burst(clock: FakeClock) -> None:
    b = bucket(clock, rate=100, burst=5)
    clock.now += 3600
    assert [b.take() for _ in range(6)] == [True] * 5 + [False]


def test_a_refused_take_costs_nothing(clock: FakeClock) -> None:
    b = bucket(clock, rate=1, burst=1)
    assert b.take()
    for _ in range(100):
        assert not b.take()
    clock.now += 1.0
    assert b.take()


def test_take_several_tokens(clock: FakeClock) -> None:
    b = bucket(clock, rate=1, burst=10)
    assert b.take(7)
    assert not b.take(4)
    assert b.take(3)
    assert not b.take(0.5)


def test_sustained_rate_over_time(clock: FakeClock) -> None:
    """At 10 messages/s offered against 2/s allowed (burst 20), about 2/s pass once the
    burst is spent."""
    b = bucket(clock, rate=2, burst=20)
    passed = 0
    for _ in range(1000):  # 100 s
        clock.now += 0.1
        passed += b.take()
    assert 20 + 199 <= passed <= 20 + 201


def test_explicit_initial_tokens(clock: FakeClock) -> None:
    b = TokenBucket(1, 10, tokens=0, stamp=clock.now)
    assert not b.take()
    clock.now += 1
    assert b.take()


def test_the_server_configuration_for_messages(clock: FakeClock) -> None:
    """As transport builds it: ``messages_per_second`` averaged over 10 s."""
    rate = 200.0
    b = bucket(clock, rate=rate, burst=rate * 10)
    assert sum(b.take() for _ in range(2500)) == 2000
    clock.now += 1
    assert sum(b.take() for _ in range(500)) == 200
