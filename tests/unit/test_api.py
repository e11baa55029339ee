"""The REST API through Flask's test client, on fakeredis."""

from __future__ import annotations

import json

import pytest

from tests.support import ADMIN, SDK


def create(client, key="new_checkout", **body):
    response = client.post("/api/v1/flags", json={"key": key, **body}, headers=ADMIN)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def assert_error(response, status, code, field=None):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    if field:
        assert field in error["fields"], error


def test_create_answers_201_with_the_flag(client):
    response = client.post("/api/v1/flags", json={"key": "new_checkout", "description": "New checkout"}, headers=ADMIN)
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/api/v1/flags/new_checkout")
    body = response.get_json()
    for field in ("key", "description", "state", "percent", "stage_index", "stages", "bake_seconds", "revision",
                  "updated_at"):
        assert field in body
    assert (body["state"], body["percent"], body["revision"]) == ("off", 0.0, 1)


def test_crud(client):
    create(client, stages=[10, 50, 100], bake_seconds=60, allow=["qa"])
    assert [f["key"] for f in client.get("/api/v1/flags", headers=ADMIN).get_json()["flags"]] == ["new_checkout"]
    patched = client.patch("/api/v1/flags/new_checkout", json={"description": "v2"}, headers=ADMIN).get_json()
    assert (patched["description"], patched["revision"]) == ("v2", 2)
    assert client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json() == patched
    assert client.delete("/api/v1/flags/new_checkout", headers=ADMIN).status_code == 204
    assert_error(client.get("/api/v1/flags/new_checkout", headers=ADMIN), 404, "not_found")
    assert_error(client.delete("/api/v1/flags/new_checkout", headers=ADMIN), 404, "not_found")


def test_lifecycle_and_history_actor(client):
    create(client)
    assert client.post("/api/v1/flags/new_checkout/start", headers=ADMIN).get_json()["percent"] == 1.0
    assert client.post("/api/v1/flags/new_checkout/promote", headers=ADMIN).get_json()["percent"] == 5.0
    assert client.post("/api/v1/flags/new_checkout/pause", headers=ADMIN).get_json()["state"] == "paused"
    assert client.post("/api/v1/flags/new_checkout/resume", headers=ADMIN).get_json()["state"] == "rolling"
    put = client.put("/api/v1/flags/new_checkout/percent", json={"percent": 12.5}, headers=ADMIN).get_json()
    assert (put["state"], put["percent"]) == ("manual", 12.5)
    rolled = client.post("/api/v1/flags/new_checkout/rollback", json={"reason": "errors up"}, headers=ADMIN)
    assert (rolled.get_json()["state"], rolled.get_json()["percent"]) == ("rolled_back", 0.0)
    history = client.get("/api/v1/flags/new_checkout/history", headers=ADMIN).get_json()["history"]
    actions = ["rollback", "set_percent", "resume", "pause", "promote", "start", "create"]
    assert [e["action"] for e in history] == actions
    assert history[0]["reason"] == "errors up" and {e["actor"] for e in history} == {"ops"}
    assert history[0]["from_percent"] == 12.5 and history[0]["to_percent"] == 0.0
    limited = client.get("/api/v1/flags/new_checkout/history?limit=2", headers=ADMIN).get_json()["history"]
    assert len(limited) == 2


def test_illegal_transition_is_409_and_changes_nothing(client):
    create(client)
    assert_error(client.post("/api/v1/flags/new_checkout/pause", headers=ADMIN), 409, "conflict")
    assert client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()["revision"] == 1


def test_stages_cannot_change_mid_rollout(client):
    create(client)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    response = client.patch("/api/v1/flags/new_checkout", json={"stages": [50, 100]}, headers=ADMIN)
    assert_error(response, 409, "conflict", "stages")


# --- authentication ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope-nope-nope"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
def test_missing_or_unknown_token_is_401(client, headers):
    assert_error(client.get("/api/v1/flags", headers=headers), 401, "unauthorized")
    assert_error(client.get("/sdk/v1/flags", headers=headers), 401, "unauthorized")


def test_sdk_key_reads_the_snapshot_only(client):
    assert client.get("/sdk/v1/flags", headers=SDK).status_code == 200
    assert_error(client.get("/api/v1/flags", headers=SDK), 403, "forbidden")
    assert_error(client.post("/api/v1/flags", json={"key": "x"}, headers=SDK), 403, "forbidden")


@pytest.mark.parametrize("path", ["//api/v1/flags", "/api/v1/flags/", "/api/v1//flags", "/api/v1/%2e%2e/v1/flags",
                                  "/api/v1/flags;x=1", "/API/v1/flags", "/api/v1/flags/%2e", "/healthz/../api/v1/flags",
                                  "/nothing-here"])
def test_path_variants_never_skip_the_guard(client, path):
    response = client.get(path)
    assert response.status_code == 401, (path, response.status_code)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_open_endpoints(client, path):
    assert client.get(path).status_code == 200


def test_server_owned_fields_cannot_be_written(client):
    assert_error(client.post("/api/v1/flags", json={"key": "x", "revision": 9}, headers=ADMIN), 400,
                 "validation_error", "revision")
    create(client)
    for field, value in [("state", "complete"), ("percent", 50), ("updated_at", 1), ("stage_index", 3)]:
        response = client.patch("/api/v1/flags/new_checkout", json={field: value}, headers=ADMIN)
        assert_error(response, 400, "validation_error", field)
    assert_error(client.patch("/api/v1/flags/new_checkout", json={"key": "y"}, headers=ADMIN), 400,
                 "validation_error", "key")
    assert client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()["revision"] == 1


# --- bad input ------------------------------------------------------------------------------------------

BAD_CREATES = [
    ({"key": "Bad Key"}, "key"),
    ({"key": ""}, "key"),
    ({}, "key"),
    ({"key": 5}, "key"),
    ({"key": "x", "stages": [5, 1, 100]}, "stages"),
    ({"key": "x", "stages": [1, 5, 150]}, "stages"),
    ({"key": "x", "stages": [1, 50]}, "stages"),
    ({"key": "x", "stages": "1,5,100"}, "stages"),
    ({"key": "x", "stages": ["1", 100]}, "stages.0"),
    ({"key": "x", "stages": [True, 100]}, "stages.0"),
    ({"key": "x", "bake_seconds": -1}, "bake_seconds"),
    ({"key": "x", "bake_seconds": "60"}, "bake_seconds"),
    ({"key": "x", "bake_seconds": 1.5}, "bake_seconds"),
    ({"key": "x", "description": None}, "description"),
    ({"key": "x", "allow": "u1"}, "allow"),
    ({"key": "x", "allow": [""]}, "allow"),
    ({"key": "x", "allow": ["a"], "deny": ["a"]}, "deny"),
    ({"key": "x", "colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("body", "field"), BAD_CREATES)
def test_bad_creates_are_400_naming_the_field(client, body, field):
    assert_error(client.post("/api/v1/flags", json=body, headers=ADMIN), 400, "validation_error", field)
    assert client.get("/api/v1/flags", headers=ADMIN).get_json()["flags"] == []


@pytest.mark.parametrize("raw", [b"{bad", b"[1,2]", b'"str"', b"", b"\xff\xfe", b'{"key": NaN}', b"null"])
def test_malformed_bodies_are_400(client, raw):
    assert_error(client.post("/api/v1/flags", data=raw, headers=ADMIN), 400, "bad_request")


def test_body_over_the_limit_is_413(client):
    big = json.dumps({"key": "x", "description": "a" * (2 * 1024 * 1024)})
    assert_error(client.post("/api/v1/flags", data=big, headers=ADMIN), 413, "payload_too_large")


@pytest.mark.parametrize("body", [{"percent": 101}, {"percent": -1}, {"percent": "50"}, {"percent": 1.005}, {},
                                  {"percent": 5, "extra": 1}, {"percent": None}])
def test_bad_percent(client, body):
    create(client)
    response = client.put("/api/v1/flags/new_checkout/percent", json=body, headers=ADMIN)
    assert response.status_code == 400, response.get_json()
    assert client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()["revision"] == 1


def test_unknown_flag_and_action(client):
    assert_error(client.post("/api/v1/flags/nope/start", headers=ADMIN), 404, "not_found")
    assert_error(client.put("/api/v1/flags/nope/percent", json={"percent": 5}, headers=ADMIN), 404, "not_found")
    assert_error(client.get("/api/v1/flags/nope/history", headers=ADMIN), 404, "not_found")
    create(client)
    assert_error(client.post("/api/v1/flags/new_checkout/explode", headers=ADMIN), 404, "not_found")
    assert_error(client.put("/api/v1/flags/new_checkout", json={}, headers=ADMIN), 405, "method_not_allowed")
    assert_error(client.get("/api/v1/flags/new_checkout/history?limit=0", headers=ADMIN), 400, "bad_request", "limit")


def test_duplicate_create_is_409(client):
    create(client)
    assert_error(client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN), 409, "conflict", "key")


# --- the SDK snapshot -----------------------------------------------------------------------------------


def test_snapshot_etag_and_304(client):
    create(client, allow=["qa"])
    first = client.get("/sdk/v1/flags", headers=SDK)
    body = first.get_json()
    assert body["flags"]["new_checkout"] == {"key": "new_checkout", "state": "off", "percent": 0.0, "revision": 1,
                                             "salt": "new_checkout", "allow": ["qa"], "deny": []}
    etag = first.headers["ETag"]
    assert etag == f'"{body["epoch"]}-{body["version"]}"'
    not_modified = client.get("/sdk/v1/flags", headers={**SDK, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.data == b""
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    changed = client.get("/sdk/v1/flags", headers={**SDK, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["version"] > body["version"]
    assert changed.get_json()["flags"]["new_checkout"]["percent"] == 1.0


def test_readyz_fails_when_the_store_is_down(fake_store):
    from flagsvc.api import create_app
    from tests.support import TEST_SETTINGS

    fake_store.ping = lambda: False
    app = create_app(TEST_SETTINGS, store=fake_store, controller=False)
    assert_error(app.test_client().get("/readyz"), 503, "unavailable")


def test_analysis_settings_are_validated_defaulted_and_patched_partially(client):
    bad = client.post("/api/v1/flags", json={"key": "x", "analysis": {"alpha": 2, "colour": 1}}, headers=ADMIN)
    assert_error(bad, 400, "validation_error", "analysis.alpha")
    assert "analysis.colour" in bad.get_json()["error"]["fields"]
    flag = create(client, analysis={"error_ratio": 3})
    assert flag["analysis"]["error_ratio"] == 3 and flag["analysis"]["alpha"] == 0.01  # defaults spelled out
    patched = client.patch("/api/v1/flags/new_checkout", json={"analysis": {"max_error_rate": 0.1}}, headers=ADMIN)
    analysis = patched.get_json()["analysis"]
    assert analysis["error_ratio"] == 3 and analysis["max_error_rate"] == 0.1
    bad_patch = client.patch("/api/v1/flags/new_checkout", json={"analysis": {"min_requests": "5"}}, headers=ADMIN)
    assert_error(bad_patch, 400, "validation_error", "analysis.min_requests")


@pytest.mark.parametrize("field", ["salt", "allow", "deny", "description"])
def test_text_that_is_not_utf8_never_reaches_a_snapshot(client, field):
    value = "a\ud800b" if field in ("salt", "description") else ["a\ud800b"]
    raw = json.dumps({"key": "x", field: value})  # json.dumps escapes it as \ud800, which JSON allows
    response = client.post("/api/v1/flags", data=raw, headers=ADMIN)
    assert_error(response, 400, "validation_error", field if field in ("salt", "description") else f"{field}.0")
