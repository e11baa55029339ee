"""Segments over the API: created, changed and deleted with the flags' write conventions (If-Match, Idempotency-Key,
errors naming the field, nothing half-applied), in every SDK snapshot, and named by flags only when they exist.
On fakeredis (the `client` fixture) and on a real redis-server (`real_app`), through the Lua script."""

from __future__ import annotations

import json

import pytest
from flagsvc_client.snapshot import parse_snapshot

from tests.support import ADMIN, SDK

NZ = {"name": "nz-free", "description": "free plan in NZ",
      "conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]},
                     {"attribute": "plan", "op": "equals", "values": ["free"]}]}


@pytest.fixture(params=["fakeredis", "redis"])
def api(request):
    if request.param == "fakeredis":
        return request.getfixturevalue("client")
    return request.getfixturevalue("real_app").test_client()


def test_a_segment_is_created_read_changed_and_deleted(api):
    created = api.post("/api/v1/segments", json=NZ, headers=ADMIN)
    assert created.status_code == 201, created.get_json()
    assert created.headers["ETag"] == '"1"' and created.headers["Location"].endswith("/api/v1/segments/nz-free")
    body = created.get_json()
    assert body["conditions"] == NZ["conditions"] and body["updated_by"] == "ops"
    assert api.get("/api/v1/segments/nz-free", headers=ADMIN).get_json() == body
    changed = api.patch("/api/v1/segments/nz-free", json={"conditions": NZ["conditions"][:1]},
                        headers={**ADMIN, "If-Match": '"1"'})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"2"'
    assert [s["name"] for s in api.get("/api/v1/segments", headers=ADMIN).get_json()["segments"]] == ["nz-free"]
    assert api.delete("/api/v1/segments/nz-free", headers=ADMIN).status_code == 204
    assert api.get("/api/v1/segments/nz-free", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({**NZ, "name": "Bad Name"}, "name"),
    ({**NZ, "conditions": []}, "conditions"),
    ({**NZ, "conditions": [{"attribute": "country", "op": "near", "values": ["NZ"]}]}, "conditions.0.op"),
    ({**NZ, "conditions": [{"attribute": "age", "op": "gt", "values": ["30"]}]}, "conditions.0.values"),
    ({**NZ, "conditions": [{"attribute": "v", "op": "semver_gte", "values": ["two"]}]}, "conditions.0.values"),
    ({**NZ, "conditions": [{"attribute": "e", "op": "matches", "values": ["(a+)+$"]}]}, "conditions.0.values"),
    ({**NZ, "conditions": [{"attribute": "e", "op": "lt", "values": [10**400]}]}, "conditions.0.values"),
    ({**NZ, "conditions": [{"attribute": "1x", "op": "in", "values": ["a"]}]}, "conditions.0.attribute"),
    ({**NZ, "conditions": [{"attribute": "x", "op": "in", "values": ["a"], "extra": 1}]}, "conditions.0.extra"),
    ({**NZ, "revision": 4}, "revision"),
])
def test_an_invalid_segment_is_a_400_naming_the_field_and_nothing_is_stored(api, body, field):
    answer = api.post("/api/v1/segments", json=body, headers=ADMIN)
    assert answer.status_code == 400, answer.get_json()
    fields = answer.get_json()["error"]["fields"]
    assert any(name == field or name.startswith(field) for name in fields), fields
    assert api.get("/api/v1/segments", headers=ADMIN).get_json() == {"segments": []}


def test_writes_honour_if_match_and_idempotency_keys(api):
    assert api.post("/api/v1/segments", json=NZ, headers=ADMIN).status_code == 201
    assert api.post("/api/v1/segments", json=NZ, headers=ADMIN).status_code == 409
    stale = api.patch("/api/v1/segments/nz-free", json={"description": "x"}, headers={**ADMIN, "If-Match": '"9"'})
    assert stale.status_code == 412 and "If-Match" in stale.get_json()["error"]["fields"]
    key = {**ADMIN, "Idempotency-Key": "seg-edit-1"}
    first = api.patch("/api/v1/segments/nz-free", json={"description": "once"}, headers=key)
    again = api.patch("/api/v1/segments/nz-free", json={"description": "once"}, headers=key)
    assert first.get_json() == again.get_json() and again.get_json()["revision"] == 2
    assert api.patch("/api/v1/segments/nz-free", json={"description": "other"}, headers=key).status_code == 409
    assert api.get("/api/v1/segments/nz-free", headers=ADMIN).get_json()["revision"] == 2


def test_flags_name_only_segments_that_exist_and_a_used_segment_cannot_go(api):
    answer = api.post("/api/v1/flags", json={"key": "f", "eligible_segments": ["nz-free"]}, headers=ADMIN)
    assert answer.status_code == 400 and "eligible_segments" in answer.get_json()["error"]["fields"]
    assert api.get("/api/v1/flags/f", headers=ADMIN).status_code == 404
    api.post("/api/v1/segments", json=NZ, headers=ADMIN)
    api.post("/api/v1/flags", json={"key": "f"}, headers=ADMIN)
    bad = api.patch("/api/v1/flags/f", json={"excluded_segments": ["nope"], "bucket_by": "org"}, headers=ADMIN)
    assert bad.status_code == 400 and "excluded_segments" in bad.get_json()["error"]["fields"]
    assert api.get("/api/v1/flags/f", headers=ADMIN).get_json()["bucket_by"] is None  # not half-applied
    both = api.patch("/api/v1/flags/f", json={"excluded_segments": ["nz-free"], "eligible_segments": ["nz-free"]},
                     headers=ADMIN)
    assert both.status_code == 400 and "eligible_segments" in both.get_json()["error"]["fields"]
    ok = api.patch("/api/v1/flags/f", json={"eligible_segments": ["nz-free"], "bucket_by": "org"}, headers=ADMIN)
    assert ok.status_code == 200 and ok.get_json()["bucket_by"] == "org"
    refused = api.delete("/api/v1/segments/nz-free", headers=ADMIN)
    assert refused.status_code == 409 and "f" in refused.get_json()["error"]["message"]
    api.patch("/api/v1/flags/f", json={"eligible_segments": [], "bucket_by": None}, headers=ADMIN)
    assert api.delete("/api/v1/segments/nz-free", headers=ADMIN).status_code == 204


def test_a_segment_edit_reaches_the_snapshot_under_a_new_version(api):
    api.post("/api/v1/segments", json=NZ, headers=ADMIN)
    api.post("/api/v1/flags", json={"key": "f", "eligible_segments": ["nz-free"], "bucket_by": "org"}, headers=ADMIN)
    before = api.get("/sdk/v1/flags", headers=SDK)
    document = before.get_json()
    assert document["flags"]["f"]["requires"] == ["segments", "bucket_by"]
    assert document["segments"] == {"nz-free": {"conditions": NZ["conditions"]}}
    assert parse_snapshot(document).flags["f"].eligible == ("nz-free",)
    api.patch("/api/v1/segments/nz-free", json={"conditions": NZ["conditions"][:1]}, headers=ADMIN)
    unchanged = api.get("/sdk/v1/flags", headers={**SDK, "If-None-Match": before.headers["ETag"]})
    assert unchanged.status_code == 200  # the ETag moved: the edit is a change like any other
    assert unchanged.get_json()["version"] > document["version"]
    assert unchanged.get_json()["segments"]["nz-free"]["conditions"] == NZ["conditions"][:1]


def test_flagctl_manages_segments_and_a_flags_targeting(app):
    from click.testing import CliRunner

    from flagsvc.cli import flagctl
    from tests.support import ADMIN_TOKEN

    client = app.test_client()

    class InProcess(flagctl.ApiClient):
        def request(self, method, path, body=None, *, if_revision=None, timeout=None):
            headers = {**ADMIN, **({"If-Match": f'"{if_revision}"'} if if_revision else {})}
            answer = client.open(path, method=method, json=body, headers=headers)
            if answer.status_code >= 400:
                raise flagctl.CliError(answer.get_json()["error"]["message"], 1, answer.status_code)
            return answer.get_json() if answer.data else None

    runner = CliRunner()
    base = ["--token", ADMIN_TOKEN]
    original = flagctl.ApiClient
    flagctl.ApiClient = InProcess  # type: ignore[misc]
    try:
        created = runner.invoke(flagctl.main, [*base, "segment", "create", "nz", "--when", "country in NZ,AU",
                                               "--when", "seats gte 100", "--json"])
        assert created.exit_code == 0, created.output
        assert json.loads(created.output)["conditions"][1] == {"attribute": "seats", "op": "gte", "values": [100]}
        client.post("/api/v1/flags", json={"key": "f"}, headers=ADMIN)
        edited = runner.invoke(flagctl.main, [*base, "edit", "f", "--eligible-segment", "nz", "--bucket-by", "org"])
        assert edited.exit_code == 0, edited.output
        flag = client.get("/api/v1/flags/f", headers=ADMIN).get_json()
        assert (flag["eligible_segments"], flag["bucket_by"]) == (["nz"], "org")
        refused = runner.invoke(flagctl.main, [*base, "segment", "delete", "nz", "--yes"])
        assert refused.exit_code == 1 and "used by" in refused.output + str(refused.exception)
        listed = runner.invoke(flagctl.main, [*base, "segment", "list"])
        assert "country in NZ, AU" in listed.output and "seats gte 100" in listed.output
        assert "Targeting segments" in runner.invoke(flagctl.main, ["segment", "--help"]).output
    finally:
        flagctl.ApiClient = original  # type: ignore[misc]
