"""The 304 fast path answers exactly as the Flask view does, and only in the plain case."""

from __future__ import annotations

import itertools

import pytest
from werkzeug.test import Client

from flagsvc import metrics
from flagsvc.api.fastpath import NotModifiedFastPath
from tests.support import ADMIN, SDK, wait_for


@pytest.fixture
def fast(app) -> NotModifiedFastPath:
    app.test_client().post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN)
    assert isinstance(app.wsgi_app, NotModifiedFastPath)
    return app.wsgi_app


def _fresh_etag(fast: NotModifiedFastPath) -> str:
    fast.changes.ensure_started()
    assert wait_for(lambda: fast.changes.generation >= 1)  # subscribed: snapshots then last 1 s, not 0.1
    etag = fast.changes.latest().etag
    assert fast.changes.latest_in_memory() is not None
    return etag


def _answer(client: Client, method: str, path: str, headers: dict[str, str]) -> tuple:
    r = client.open(path, method=method, headers=headers)
    wanted = ("ETag", "Cache-Control", "Content-Type", "WWW-Authenticate")
    return r.status_code, {k: r.headers.get(k) for k in wanted}, r.get_data()


AUTH = {"sdk": SDK, "admin": ADMIN, "none": {}, "unknown": {"Authorization": "Bearer nope"},
        "basic": {"Authorization": "Basic " + SDK["Authorization"].split()[1]}}
CONDITIONS = ["current", "weak", "stale", "star", "list", "absent", "spaced", "nbsp", "vtab"]
PATHS = ["/sdk/v1/flags", "/sdk/v1/flags?x=1", "/sdk/v1/flags/", "//sdk/v1/flags", "/sdk/v1/flags%2f"]


def _if_none_match(condition: str, etag: str) -> dict[str, str]:
    value = {"current": etag, "weak": "W/" + etag, "stale": '"0-0"', "star": "*", "list": f'"0-0", {etag}',
             "spaced": f" \t{etag} ", "nbsp": f"\xa0{etag}", "vtab": f"{etag}\x0b", "absent": None}[condition]
    return {} if value is None else {"If-None-Match": value}


@pytest.mark.parametrize(("auth", "condition", "method"),
                         list(itertools.product(AUTH, CONDITIONS, ["GET", "HEAD", "POST"])))
def test_same_answer_as_flask(fast, auth, condition, method):
    with_fast, without = Client(fast), Client(fast.app)
    for path in PATHS:
        etag = _fresh_etag(fast)
        headers = {**AUTH[auth], **_if_none_match(condition, etag)}
        before = fast.answered
        got = _answer(with_fast, method, path, headers)
        took_fast_path = fast.answered > before
        assert got == _answer(without, method, path, headers), (path, headers)
        plain = (path == "/sdk/v1/flags" and method == "GET" and auth in ("sdk", "admin")
                 and condition in ("current", "weak", "spaced"))
        assert took_fast_path == plain, (path, headers)
        if plain:
            assert got[0] == 304


def test_counts_the_304_like_the_view(fast):
    etag = _fresh_etag(fast)
    client = Client(fast)
    counted = metrics.HTTP_REQUESTS.labels("/sdk/v1/flags", "GET", "304")
    before, answered = counted._value.get(), fast.answered
    for _ in range(5):
        assert client.get("/sdk/v1/flags", headers={**SDK, "If-None-Match": etag}).status_code == 304
    assert fast.answered - answered == 5
    assert counted._value.get() - before == 5


def test_a_change_is_never_hidden(fast, app):
    etag = _fresh_etag(fast)
    app.test_client().post("/api/v1/flags/new_checkout/start", headers=ADMIN)  # rebuilt at once in this process
    r = Client(fast).get("/sdk/v1/flags", headers={**SDK, "If-None-Match": etag})
    assert r.status_code == 200
    assert r.headers["ETag"] != etag
    assert r.get_json()["flags"]["new_checkout"]["state"] == "rolling"


def test_steps_aside_when_memory_is_not_fresh(fast):
    etag = _fresh_etag(fast)
    snapshot, built_at = fast.changes._kept
    fast.changes._kept = (snapshot, built_at - 60)  # as if it were a minute old: Flask re-reads the store
    before = fast.answered
    r = Client(fast).get("/sdk/v1/flags", headers={**SDK, "If-None-Match": etag})
    assert r.status_code == 304
    assert fast.answered == before
    assert fast.changes.latest_in_memory() is not None  # the Flask path refreshed it
