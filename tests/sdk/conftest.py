"""Fixtures for the SDK tests (the fakes themselves live in tests/support/sdk_fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flagsvc_client import FlagClient

from tests.support.sdk_fakes import FakeClock, FakeTransport


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def make_client(clock: FakeClock, transport: FakeTransport) -> Iterator[Any]:
    """A client driven by hand: no threads, fake clock and transport, jitter fixed at 0.5."""
    made: list[FlagClient] = []

    def make(**settings: Any) -> FlagClient:
        settings.setdefault("background", False)
        url = None if settings.get("offline") else "http://flagsvc.test"
        client = FlagClient(url, sdk_key="sdk-test", transport=transport, clock=clock, random=lambda: 0.5, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client._closed = True  # no flush at teardown: the tests assert on what was sent
