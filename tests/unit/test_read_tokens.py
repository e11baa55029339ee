"""Read-only tokens (FLAGSVC_READ_TOKENS): every read of the API answers, every write is a 403 in the one error
shape and changes nothing. The routes come from the OpenAPI document, so a write route added later is covered."""

from __future__ import annotations

import dataclasses
import re

import pytest

from flagsvc.api import create_app
from flagsvc.api.openapi import document
from flagsvc.config import ConfigError, Settings
from flagsvc.domain.destinations import AllowList
from tests.support import ADMIN, TEST_SETTINGS

READ_TOKEN = "read-only-secret-1"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
DOC = document()
WEBHOOK_ID = "wh_00000000000000a1"


def _concrete(template: str, parameters: list[dict]) -> list[str]:
    """Every concrete path of a template: `{action}` takes each value of its enum, other names a real object."""
    paths = [template]
    for parameter in parameters:
        if parameter.get("in") != "path":
            continue
        values = parameter["schema"].get("enum") or [
            {"key": "a", "name": "beta-users", "webhook_id": WEBHOOK_ID}.get(parameter["name"], "a")]
        paths = [p.replace("{" + parameter["name"] + "}", str(v)) for p in paths for v in values]
    return paths


def _operations(write: bool) -> list[tuple[str, str]]:
    found = []
    for template, operations in DOC["paths"].items():
        for method, operation in operations.items():
            if not operation.get("security") or (method != "get") != write:
                continue
            found += [(method, path) for path in _concrete(template, operation.get("parameters", []))]
    return found


WRITES = _operations(write=True)
READS = [op for op in _operations(write=False) if op[1] != "/sdk/v1/stream"]  # the stream never ends by itself


@pytest.fixture
def read_app(fake_store):
    settings = dataclasses.replace(TEST_SETTINGS, read_tokens={"viewer": READ_TOKEN},
                                   webhook_allow=AllowList.parse("hooks.example.com"))
    app = create_app(settings, store=fake_store, controller=False)
    app.extensions["flagsvc"].webhooks.new_id = lambda: WEBHOOK_ID  # a known id for the paths that name one
    client = app.test_client()
    webhook = {"url": "https://hooks.example.com/in", "events": ["rollback"]}
    assert client.post("/api/v1/webhooks", headers=ADMIN, json=webhook).status_code == 201
    segment = {"name": "beta-users", "conditions": [{"attribute": "country", "op": "in", "values": ["nz"]}]}
    assert client.post("/api/v1/segments", headers=ADMIN, json=segment).status_code == 201
    for key, action in (("a", "start"), ("b", None)):
        assert client.post("/api/v1/flags", headers=ADMIN, json={"key": key}).status_code == 201
        if action:
            assert client.post(f"/api/v1/flags/{key}/{action}", headers=ADMIN).status_code == 200
    return app


def _everything(client) -> tuple:
    export = client.get("/api/v1/export?history=1000", headers=ADMIN).get_json()
    export.pop("exported_at", None)
    segments = client.get("/api/v1/segments", headers=ADMIN).get_json()
    return export, segments, client.get("/sdk/v1/flags", headers=ADMIN).headers.get("ETag")


def test_the_document_lists_the_writes_this_test_sends():
    # the routes every operator write goes through; a document that lost them would make the test below vacuous
    assert {("post", "/api/v1/flags"), ("delete", "/api/v1/flags/a"), ("patch", "/api/v1/flags/a"),
            ("post", "/api/v1/flags/a/rollback"), ("put", "/api/v1/flags/a/percent"), ("post", "/api/v1/import"),
            ("delete", "/api/v1/segments/beta-users"), ("post", "/sdk/v1/outcomes")} <= set(WRITES)


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_a_read_token_is_refused_every_write_with_a_403_and_nothing_changes(read_app, method, path):
    client = read_app.test_client()
    before = _everything(client)
    response = client.open(path, method=method.upper(), headers=READ, json={"key": "zz", "reason": "x",
                                                                             "percent": 50, "reporter": "r1"})
    assert response.status_code == 403, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "forbidden" and "read-only" in error["message"] and error["fields"] == {}
    assert _everything(client) == before


@pytest.mark.parametrize(("method", "path"), READS, ids=[f"{m} {p}" for m, p in READS])
def test_a_read_token_reads_what_an_admin_token_reads(read_app, method, path):
    client = read_app.test_client()
    as_reader, as_admin = client.get(path, headers=READ), client.get(path, headers=ADMIN)
    assert as_reader.status_code == as_admin.status_code == 200, (path, as_reader.get_data(as_text=True))
    if path != "/api/v1/export":  # it carries the moment it was made
        assert as_reader.get_json() == as_admin.get_json()


def test_an_unknown_path_with_a_read_token_is_a_404_and_a_bad_token_a_401(read_app):
    client = read_app.test_client()
    assert client.post("/api/v1/nothing", headers=READ).status_code == 404
    assert client.get("/api/v1/flags", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_read_tokens_come_from_the_environment_like_admin_tokens():
    settings = Settings.from_env({"FLAGSVC_READ_TOKENS": "viewer=abcdefgh1, auditor=abcdefgh2"})
    assert settings.read_tokens == {"viewer": "abcdefgh1", "auditor": "abcdefgh2"}
    assert Settings.from_env({"FLAGSVC_READ_TOKENS": "abcdefgh3"}).read_tokens == {"read-1": "abcdefgh3"}
    with pytest.raises(ConfigError, match="8\\+ characters"):
        Settings.from_env({"FLAGSVC_READ_TOKENS": "viewer=short"})
    with pytest.raises(ConfigError, match="same secret"):
        Settings.from_env({"FLAGSVC_ADMIN_TOKENS": "ops=abcdefgh1", "FLAGSVC_READ_TOKENS": "viewer=abcdefgh1"})
    with pytest.raises(ConfigError, match=re.escape("'ops' names both")):
        Settings.from_env({"FLAGSVC_ADMIN_TOKENS": "ops=abcdefgh1", "FLAGSVC_READ_TOKENS": "ops=abcdefgh2"})
