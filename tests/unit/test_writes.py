"""Operators' writes: If-Match (the revision a write expects), Idempotency-Key (a write retried safely), bodies
refused whole however they are framed, and text and numbers stored as meant."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import pytest

from flagsvc.api import create_app
from tests.support import ADMIN, TEST_SETTINGS


@pytest.fixture
def flag(client):
    created = client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
    assert created.headers["ETag"] == '"1"'
    return created.get_json()


WRITES = [
    ("PATCH", "/api/v1/flags/checkout", {"description": "new"}),
    ("POST", "/api/v1/flags/checkout/start", {}),
    ("PUT", "/api/v1/flags/checkout/percent", {"percent": 5}),
    ("DELETE", "/api/v1/flags/checkout", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_if_match_a_stale_revision_is_412_and_changes_nothing(client, flag, method, path, body):
    stale = client.open(path, method=method, json=body, headers={**ADMIN, "If-Match": '"7"'})
    assert stale.status_code == 412, stale.get_json()
    error = stale.get_json()["error"]
    assert error["code"] == "precondition_failed" and "If-Match" in error["fields"]
    assert "revision 1" in error["message"]
    current = client.get("/api/v1/flags/checkout", headers=ADMIN)
    assert current.get_json() == flag and current.headers["ETag"] == '"1"'
    fresh = client.open(path, method=method, json=body, headers={**ADMIN, "If-Match": current.headers["ETag"]})
    assert fresh.status_code in (200, 204)
    if fresh.status_code == 200:
        assert fresh.headers["ETag"] == '"2"' and fresh.get_json()["revision"] == 2


@pytest.mark.parametrize("value", ["7.5", '"x"', "W/\"1\"", '"1", "2"', ""])
def test_a_malformed_if_match_is_400(client, flag, value):
    response = client.patch("/api/v1/flags/checkout", json={"description": "x"}, headers={**ADMIN, "If-Match": value})
    assert response.status_code == 400 and "If-Match" in response.get_json()["error"]["fields"]


def test_if_match_star_and_a_bare_revision_are_understood(client, flag):
    assert client.patch("/api/v1/flags/checkout", json={"description": "a"},
                        headers={**ADMIN, "If-Match": "*"}).status_code == 200
    assert client.patch("/api/v1/flags/checkout", json={"description": "b"},
                        headers={**ADMIN, "If-Match": "2"}).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_retried_idempotency_key_gets_the_first_answer_and_applies_nothing(client, flag, method, path, body):
    headers = {**ADMIN, "Idempotency-Key": "op-2026-11-30-0001"}
    first = client.open(path, method=method, json=body, headers=headers)
    assert first.status_code in (200, 204)
    for _ in range(3):
        again = client.open(path, method=method, json=body, headers=headers)
        assert (again.status_code, again.get_data()) == (first.status_code, first.get_data())
    if method != "DELETE":
        history = client.get("/api/v1/flags/checkout/history", headers=ADMIN).get_json()["history"]
        assert [e["revision"] for e in history] == [2, 1]  # one change, not four


def test_a_replay_survives_later_changes_by_others(client, flag):
    headers = {**ADMIN, "Idempotency-Key": "start-once"}
    first = client.post("/api/v1/flags/checkout/start", headers=headers).get_json()
    client.post("/api/v1/flags/checkout/pause", headers=ADMIN)
    again = client.post("/api/v1/flags/checkout/start", headers=headers)
    assert again.status_code == 200 and again.get_json() == first  # the first answer, not a 409 from pause
    assert client.get("/api/v1/flags/checkout", headers=ADMIN).get_json()["state"] == "paused"


def test_a_key_sent_again_with_another_request_is_refused(client, flag):
    headers = {**ADMIN, "Idempotency-Key": "reused"}
    assert client.put("/api/v1/flags/checkout/percent", json={"percent": 5}, headers=headers).status_code == 200
    other = client.put("/api/v1/flags/checkout/percent", json={"percent": 50}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.get_json()["error"]["fields"]
    assert client.get("/api/v1/flags/checkout", headers=ADMIN).get_json()["percent"] == 5


def test_a_create_retried_with_its_key_is_201_again_not_409(client):
    headers = {**ADMIN, "Idempotency-Key": "create-1"}
    first = client.post("/api/v1/flags", json={"key": "fresh"}, headers=headers)
    again = client.post("/api/v1/flags", json={"key": "fresh"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201) and again.get_json() == first.get_json()
    assert client.post("/api/v1/flags", json={"key": "fresh"}, headers=ADMIN).status_code == 409


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "é"])
def test_a_malformed_idempotency_key_is_400(client, flag, key):
    response = client.post("/api/v1/flags/checkout/start", headers={**ADMIN, "Idempotency-Key": key})
    assert response.status_code == 400 and "Idempotency-Key" in response.get_json()["error"]["fields"]


def test_a_chunked_body_over_the_limit_is_413_and_never_cut_and_applied(fake_store):
    app = create_app(dataclasses.replace(TEST_SETTINGS, max_body_bytes=2048), store=fake_store, controller=False)
    client = app.test_client()

    def chunked(raw: bytes):
        return client.post("/api/v1/flags", headers={**ADMIN, "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(raw)})

    # cut at the limit, this body would be valid JSON: a flag created from part of a request
    assert chunked(b'{"key": "cut"}' + b" " * 4096).status_code == 413
    assert client.get("/api/v1/flags/cut", headers=ADMIN).status_code == 404
    assert chunked(b'{"key": "whole"}' + b" " * 1000).status_code == 201  # under the limit: fine


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/flags/checkout/rollback", '{"reason": "a\\ud800b"}', "reason"),
    ("/api/v1/flags/checkout/percent", '{"percent": 5, "reason": "\\udfff"}', "reason"),
    ("/api/v1/flags/checkout", '{"description": "x\\ud800"}', "description"),
])
def test_a_lone_surrogate_is_refused_in_every_text_field(client, flag, path, body, field):
    method = "PATCH" if path.endswith("checkout") else ("PUT" if path.endswith("percent") else "POST")
    response = client.open(path, method=method, data=body, headers=ADMIN)
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]
    assert client.get("/api/v1/flags/checkout/history", headers=ADMIN).get_json()["history"][0]["revision"] == 1


@pytest.mark.parametrize("stages", [[1e-9, 100], [5.001, 100], [0.30000000000000004, 100]])
def test_stages_have_at_most_two_decimals(client, stages):
    response = client.post("/api/v1/flags", json={"key": "tiny", "stages": stages}, headers=ADMIN)
    assert response.status_code == 400 and "stages" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("percent", [1e-9, 12.345])
def test_percents_have_at_most_two_decimals(client, flag, percent):
    response = client.put("/api/v1/flags/checkout/percent", json={"percent": percent}, headers=ADMIN)
    assert response.status_code == 400 and "percent" in response.get_json()["error"]["fields"]


def test_minus_zero_is_stored_as_zero(client, flag):
    response = client.put("/api/v1/flags/checkout/percent", data='{"percent": -0.0}', headers=ADMIN)
    assert response.status_code == 200
    stored = client.get("/api/v1/flags/checkout", headers=ADMIN).get_json()["percent"]
    assert stored == 0 and math.copysign(1, stored) == 1
    assert '"percent":-0' not in json.dumps(client.get("/sdk/v1/flags", headers={
        "Authorization": f"Bearer {TEST_SETTINGS.sdk_keys['web']}"}).get_json(), separators=(",", ":"))


def test_a_keyed_write_racing_its_own_retry_is_never_told_412_for_itself():
    """Two copies of one request: the second checked for the key before the first was stored, then found the
    flag moved on (by the first). It must get the first answer, not "it changed since you read it"."""
    from flagsvc.service.announce import ChangeAnnouncer
    from flagsvc.service.commands import FlagCommands, WriteRequest
    from flagsvc.store.memory import MemoryStore

    class CheckedTooEarly(MemoryStore):
        early = True

        def idempotent_answer(self, key, idempotency_key):
            if self.early:  # the copy's first look, before the other copy stored its write
                self.early = False
                return None
            return super().idempotent_answer(key, idempotency_key)

    store = CheckedTooEarly()
    commands = FlagCommands(store, ChangeAnnouncer(store))
    commands.create("race", {}, actor="ops")
    commands.start("race", actor="ops")
    request = WriteRequest(if_revision=2, idempotency_key="promote-once", fingerprint="fp")
    store.early = False
    first = commands.promote("race", actor="ops", request=request)
    store.early = True
    again = commands.promote("race", actor="ops", request=request)
    assert again == first and [e.action for e in store.history("race")] == ["promote", "start", "create"]
