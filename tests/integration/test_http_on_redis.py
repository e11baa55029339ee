"""The API over real HTTP (a threaded WSGI server) on a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import ADMIN, SDK, serving


@pytest.fixture
def base_url(real_app) -> Iterator[str]:
    with serving(real_app) as url:
        yield url


def test_64_concurrent_percent_changes_lose_no_update(base_url):
    assert requests.post(f"{base_url}/api/v1/flags", json={"key": "busy"}, headers=ADMIN).status_code == 201

    def put(n: int) -> int:
        with requests.Session() as session:
            return session.put(f"{base_url}/api/v1/flags/busy/percent", json={"percent": n}, headers=ADMIN).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(put, range(64)))
    ok = sum(1 for s in statuses if 200 <= s < 300)
    assert all(s < 500 for s in statuses), statuses
    assert ok == 64  # retries on a lost compare-and-set make every request land
    flag = requests.get(f"{base_url}/api/v1/flags/busy", headers=ADMIN).json()
    assert flag["revision"] == 1 + ok
    history = requests.get(f"{base_url}/api/v1/flags/busy/history?limit=1000", headers=ADMIN).json()["history"]
    assert sorted(e["revision"] for e in history) == list(range(1, 2 + ok))
    assert sorted(e["to_percent"] for e in history if e["action"] == "set_percent") == [float(n) for n in range(64)]


BATTERY = [
    ("POST", "/api/v1/flags", b"{not json"),
    ("POST", "/api/v1/flags", b'{"key": 12}'),
    ("POST", "/api/v1/flags", b'{"key": "Bad Key"}'),
    ("POST", "/api/v1/flags", b'{"key": "x", "stages": [50, 10, 100]}'),
    ("POST", "/api/v1/flags", b'{"key": "x", "stages": [1, 5, 250]}'),
    ("POST", "/api/v1/flags", b'{"key": "x", "bake_seconds": -5}'),
    ("POST", "/api/v1/flags", b'{"key": "x", "revision": 7}'),
    ("POST", "/api/v1/flags", b'{"key": "x", "description": "' + b"a" * (2 * 1024 * 1024) + b'"}'),
    ("POST", "/api/v1/flags", b"[]"),
    ("POST", "/api/v1/flags", b"\xff\xff"),
    ("PATCH", "/api/v1/flags/victim", b'{"stages": "all"}'),
    ("PATCH", "/api/v1/flags/victim", b'{"percent": 50}'),
    ("PUT", "/api/v1/flags/victim/percent", b'{"percent": 1000}'),
    ("PUT", "/api/v1/flags/victim/percent", b'{"percent": "ten"}'),
    ("POST", "/api/v1/flags/victim/pause", b""),
    ("POST", "/api/v1/flags/victim/resume", b""),
    ("POST", "/api/v1/flags/victim/rollback", b'{"reason": 5}'),
    ("POST", "/api/v1/flags/ghost/start", b""),
    ("GET", "/api/v1/flags/ghost", b""),
    ("DELETE", "/api/v1/flags/ghost", b""),
    ("GET", "/api/v1/flags/victim/history?limit=abc", b""),
]


def test_bad_input_battery_gets_4xx_json_and_changes_nothing(base_url):
    requests.post(f"{base_url}/api/v1/flags", json={"key": "victim"}, headers=ADMIN).raise_for_status()
    before = requests.get(f"{base_url}/api/v1/flags/victim", headers=ADMIN).json()
    for method, path, body in BATTERY:
        response = requests.request(method, base_url + path, data=body, headers=ADMIN)
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:200])
        error = response.json()["error"]
        assert error["code"] and error["message"] and isinstance(error["fields"], dict)
    assert requests.get(f"{base_url}/api/v1/flags/victim", headers=ADMIN).json() == before
    assert [f["key"] for f in requests.get(f"{base_url}/api/v1/flags", headers=ADMIN).json()["flags"]] == ["victim"]


def test_created_flag_reaches_the_sdk_snapshot(base_url):
    requests.post(f"{base_url}/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN).raise_for_status()
    requests.post(f"{base_url}/api/v1/flags/new_checkout/start", headers=ADMIN).raise_for_status()
    snapshot = requests.get(f"{base_url}/sdk/v1/flags", headers=SDK)
    assert snapshot.json()["flags"]["new_checkout"]["state"] == "rolling"
    again = requests.get(f"{base_url}/sdk/v1/flags", headers={**SDK, "If-None-Match": snapshot.headers["ETag"]})
    assert again.status_code == 304
