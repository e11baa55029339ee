"""The Leadership role, on every store: one lease holder, growing fencing tokens, expiry by the store's clock."""

from __future__ import annotations

import pytest

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import LeadershipLost
from flagsvc.store.roles import Leadership
from tests.support.flags import new


def test_every_store_plays_the_role(any_store):
    assert isinstance(any_store, Leadership)


def test_lease_has_one_holder_and_a_growing_fencing_token(any_store):
    first = any_store.acquire_lease("a", ttl_seconds=30)
    assert first is not None
    assert any_store.acquire_lease("b", ttl_seconds=30) is None
    assert any_store.acquire_lease("a", ttl_seconds=30) == first  # renewal keeps the token
    any_store.release_lease("b")  # not b's to release
    assert any_store.acquire_lease("b", ttl_seconds=30) is None
    any_store.release_lease("a")
    second = any_store.acquire_lease("b", ttl_seconds=30)
    assert second is not None and second > first


def test_lease_expires_by_the_stores_clock(any_store, manual_clock):
    first = any_store.acquire_lease("a", ttl_seconds=10)
    manual_clock.advance(9.9)
    assert any_store.acquire_lease("b", ttl_seconds=10) is None  # still a's
    assert any_store.acquire_lease("a", ttl_seconds=10) == first  # renewed: another 10 s from now
    manual_clock.advance(9.9)
    assert any_store.acquire_lease("b", ttl_seconds=10) is None
    manual_clock.advance(0.2)
    second = any_store.acquire_lease("b", ttl_seconds=10)
    assert second is not None and second > first  # a's lease ran out: b leads, with a newer token


def test_a_fenced_out_leader_cannot_write(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    started, start_entry = flags.start(flag, now=2, actor="ops")
    any_store.replace(started, start_entry, expected_revision=1)
    assert any_store.raise_fence(flag.key, 7)
    advanced, advance_entry = flags.advance(started, now=3, actor="controller", reason="ok")
    with pytest.raises(LeadershipLost):
        any_store.replace(advanced, advance_entry, expected_revision=2, fence=6)
    any_store.replace(advanced, advance_entry, expected_revision=2, fence=7)
    assert any_store.get(flag.key).revision == 3
    assert not any_store.raise_fence(flag.key, 5)
    paused, pause_entry = flags.pause(advanced, now=4, actor="ops")
    any_store.replace(paused, pause_entry, expected_revision=3)  # operators are never fenced
