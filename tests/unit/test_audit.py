"""The audit log through the API: every door records who acted (admin tokens by name, the controller), a deleted
flag's history stays, filters and cursors, bad queries named, a log that cannot be written does not fail the
change, and `flagctl audit`."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from click.testing import CliRunner

from flagsvc.api import create_app
from flagsvc.cli import flagctl
from flagsvc.config import Settings
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.audit import AuditLog
from flagsvc.service.controller import RolloutDecision, build_controller
from flagsvc.store.audit import audit_log_for
from flagsvc.store.memory import MemoryStore
from tests.support import ADMIN, TEST_SETTINGS, serving

OTHER = {"Authorization": "Bearer second-admin-secret"}


@pytest.fixture
def two_admins(fake_store):
    settings = dataclasses.replace(TEST_SETTINGS, admin_tokens={"ops": "admin-secret-token",
                                                                "alice": "second-admin-secret"})
    return create_app(settings, store=fake_store, controller=False)


def _audit(client, query: str = "") -> list[dict]:
    response = client.get(f"/api/v1/audit?{query}", headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["entries"]


def test_every_change_is_recorded_with_the_token_that_acted_and_a_deleted_flag_keeps_its_history(two_admins):
    client = two_admins.test_client()
    assert client.post("/api/v1/flags", headers=ADMIN, json={"key": "a"}).status_code == 201
    assert client.patch("/api/v1/flags/a", headers=OTHER, json={"description": "new"}).status_code == 200
    assert client.post("/api/v1/flags/a/start", headers=ADMIN).status_code == 200
    assert client.post("/api/v1/flags/a/rollback", headers=OTHER, json={"reason": "errors"}).status_code == 200
    segment = {"name": "nz", "conditions": [{"attribute": "country", "op": "in", "values": ["nz"]}]}
    assert client.post("/api/v1/segments", headers=OTHER, json=segment).status_code == 201
    assert client.delete("/api/v1/segments/nz", headers=ADMIN).status_code == 204
    assert client.delete("/api/v1/flags/a", headers=OTHER).status_code == 204
    assert client.get("/api/v1/flags/a/history", headers=ADMIN).status_code == 404  # the flag's own is gone
    entries = _audit(client)
    assert [(e["actor"], e["action"], e["kind"], e["target"]) for e in entries] == [
        ("alice", "delete", "flag", "a"), ("ops", "delete", "segment", "nz"), ("alice", "create", "segment", "nz"),
        ("alice", "rollback", "flag", "a"), ("ops", "start", "flag", "a"), ("alice", "update", "flag", "a"),
        ("ops", "create", "flag", "a")]
    rollback = entries[3]
    assert rollback["reason"] == "errors" and rollback["revision"] == 4
    assert rollback["detail"]["to_state"] == "rolled_back" and rollback["flag"] == "a"
    assert [e["action"] for e in _audit(client, "flag=a&actor=alice")] == ["delete", "rollback", "update"]


def test_a_replayed_write_and_a_refused_one_are_not_recorded(client):
    headers = {**ADMIN, "Idempotency-Key": "k-1"}
    assert client.post("/api/v1/flags", headers=headers, json={"key": "a"}).status_code == 201
    assert client.post("/api/v1/flags", headers=headers, json={"key": "a"}).status_code == 201  # replayed
    assert client.post("/api/v1/flags/a/pause", headers=ADMIN).status_code == 409  # illegal from off
    assert [e["action"] for e in _audit(client)] == ["create"]


def test_the_controllers_moves_are_recorded_as_the_controller():
    store = MemoryStore()
    audit = AuditLog(audit_log_for(store), lambda: 50.0)
    from flagsvc.service.commands import FlagCommands

    commands = FlagCommands(store, ChangeAnnouncer(store), lambda: 0.0, audit=audit)
    commands.create("a", {"stages": [50, 100], "analysis": {"max_error_rate": 0.01}}, actor="ops")
    commands.start("a", actor="ops")
    from flagsvc.domain.outcomes import ArmTotals

    controller = build_controller(store, ChangeAnnouncer(store), clock=lambda: 100.0, audit=audit)
    controller.store.outcome_totals = lambda key, revision: {  # type: ignore[method-assign]
        "stable": ArmTotals(10_000, 10), "canary": ArmTotals(10_000, 5_000)}
    decisions: list[RolloutDecision] = controller.tick()
    assert [(d.decision, d.applied) for d in decisions] == [("rollback", True)]
    latest = audit.entries({}, limit=1)["entries"][0]
    assert (latest["actor"], latest["action"], latest["target"]) == ("controller", "rollback", "a")


def test_filters_by_time_and_pages_with_a_cursor(client, app):
    store_log = app.extensions["flagsvc"].audit._store
    for n in range(7):
        store_log.append_audit({"at": 100.0 + n, "actor": "ops", "action": "update", "kind": "flag",
                                "target": f"f{n}", "flag": f"f{n}", "revision": 2, "reason": "", "detail": None},
                               now=100.0 + n, max_entries=1000, max_age=1e9)
    first = client.get("/api/v1/audit?limit=3&since=101&until=105", headers=ADMIN).get_json()
    assert [e["target"] for e in first["entries"]] == ["f5", "f4", "f3"]
    rest = client.get(f"/api/v1/audit?limit=3&since=101&until=105&cursor={first['next_cursor']}",
                      headers=ADMIN).get_json()
    assert [e["target"] for e in rest["entries"]] == ["f2", "f1"] and rest["next_cursor"] is None


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=x", "limit"), ("since=-1", "since"), ("until=1e9", "until"),
    ("cursor=abc", "cursor"),
    (f"cursor={2**64}-0", "cursor"), ("flag=" + "x" * 201, "flag"), ("actor=%00", "actor"),
    ("since=5&until=4", "until"),
])
def test_a_bad_query_is_a_400_naming_the_field(client, query, field):
    response = client.get(f"/api/v1/audit?{query}", headers=ADMIN)
    assert response.status_code == 400 and list(response.get_json()["error"]["fields"]) == [field]


class BrokenLog:
    def append_audit(self, *args, **kwargs):
        raise ConnectionError("redis is down")

    def read_audit(self, *args, **kwargs):
        raise ConnectionError("redis is down")


def test_an_entry_that_cannot_be_written_is_logged_and_the_change_stands(app, caplog):
    app.extensions["flagsvc"].audit._store = BrokenLog()
    with caplog.at_level(logging.ERROR, "flagsvc.audit"):
        response = app.test_client().post("/api/v1/flags", headers=ADMIN, json={"key": "a"})
    assert response.status_code == 201
    assert "audit entry not written (the change stands): flag a create by ops: redis is down" in caplog.text


def test_the_caps_come_from_the_environment():
    settings = Settings.from_env({"FLAGSVC_AUDIT_MAX_ENTRIES": "5000", "FLAGSVC_AUDIT_MAX_DAYS": "30"})
    assert (settings.audit_max_entries, settings.audit_max_days) == (5000, 30.0)
    from flagsvc.config import ConfigError

    for name, value in (("FLAGSVC_AUDIT_MAX_ENTRIES", "10"), ("FLAGSVC_AUDIT_MAX_DAYS", "nan")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


def test_flagctl_audit_prints_a_table_and_json(app):
    client = app.test_client()
    client.post("/api/v1/flags", headers=ADMIN, json={"key": "a"})
    client.post("/api/v1/flags/a/start", headers=ADMIN, json={"reason": "go"})
    runner = CliRunner()
    with serving(app) as url:
        base = ["--url", url, "--token", ADMIN["Authorization"].split()[1]]
        table = runner.invoke(flagctl.main, [*base, "audit", "--flag", "a"])
        as_json = runner.invoke(flagctl.main, [*base, "audit", "--json", "--limit", "1"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["WHEN", "(UTC)", "ACTOR"] and len(lines) == 3
    assert lines[1].split()[2:6] == ["ops", "start", "flag", "a"] and lines[1].endswith("go")
    data = json.loads(as_json.output)
    assert [e["action"] for e in data["entries"]] == ["start"] and data["next_cursor"]


def test_an_import_records_each_flag_and_segment_it_wrote_and_itself(client):
    segment = {"name": "nz", "conditions": [{"attribute": "country", "op": "in", "values": ["nz"]}]}
    assert client.post("/api/v1/segments", headers=ADMIN, json=segment).status_code == 201
    for key in ("a", "b"):
        assert client.post("/api/v1/flags", headers=ADMIN, json={"key": key}).status_code == 201
    exported = client.get("/api/v1/export", headers=ADMIN).get_json()
    assert client.delete("/api/v1/flags/a", headers=ADMIN).status_code == 204
    assert client.delete("/api/v1/segments/nz", headers=ADMIN).status_code == 204
    assert client.post("/api/v1/import", headers=ADMIN, json=exported).status_code == 200
    entries = _audit(client)
    summary = entries[0]
    assert summary["kind"] == "configuration" and summary["actor"] == "ops"
    assert (summary["detail"]["created"], summary["detail"]["unchanged"]) == (["a"], ["b"])
    assert summary["detail"]["segments"]["created"] == ["nz"]
    assert {(e["kind"], e["target"]) for e in entries[1:3]} == {("flag", "a"), ("segment", "nz")}
    assert all(e["action"] == "import" and e["actor"] == "ops" for e in entries[:3])
