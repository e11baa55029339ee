"""GET /sdk/v1/stream over real HTTP, with changes fanned out through real Redis pub/sub."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from flagsvc.api import create_app
from flagsvc.store import RedisStore
from tests.support import ADMIN, SDK, TEST_SETTINGS, serving


@pytest.fixture
def two_servers(real_redis, namespace) -> Iterator[tuple[str, str]]:
    """Two server processes' worth of apps on one Redis, like two replicas."""
    apps = [create_app(TEST_SETTINGS, store=RedisStore(real_redis, namespace), controller=False) for _ in range(2)]
    for app in apps:
        app.config["FLAGSVC_HEARTBEAT_SECONDS"] = 0.5
    with serving(apps[0]) as first, serving(apps[1]) as second:
        yield first, second


def events(response: requests.Response) -> Iterator[tuple[str, str]]:
    """(event name, data) pairs; heartbeats as ("heartbeat", "")."""
    event, data = "message", []
    for raw in response.iter_lines(decode_unicode=True):
        if raw.startswith(":"):
            yield "heartbeat", ""
        elif raw.startswith("event:"):
            event = raw[6:].strip()
        elif raw.startswith("data:"):
            data.append(raw[5:].strip())
        elif raw == "" and data:
            yield event, "\n".join(data)
            event, data = "message", []


def test_a_change_on_one_replica_reaches_a_stream_on_the_other(two_servers):
    writer, reader = two_servers
    requests.post(f"{writer}/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN).raise_for_status()
    with requests.get(f"{reader}/sdk/v1/stream", headers=SDK, stream=True, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = events(response)
        name, data = next(stream)
        first = json.loads(data)
        assert name == "snapshot" and first["flags"]["new_checkout"]["state"] == "off"

        started = time.monotonic()
        requests.post(f"{writer}/api/v1/flags/new_checkout/start", headers=ADMIN).raise_for_status()
        data = next(payload for name, payload in stream if name == "snapshot")
        elapsed = time.monotonic() - started
        second = json.loads(data)
        assert second["version"] > first["version"] and second["flags"]["new_checkout"]["state"] == "rolling"
        assert elapsed < 1.0, elapsed

        kinds = [next(stream)[0] for _ in range(2)]  # quiet: heartbeats keep the connection visibly alive
        assert kinds == ["heartbeat", "heartbeat"]


def test_stream_needs_an_sdk_key(two_servers):
    assert requests.get(f"{two_servers[0]}/sdk/v1/stream", timeout=5).status_code == 401
