"""Export and import of the whole configuration (GET /api/v1/export, POST /api/v1/import, flagctl), and the
recent export kept on disk (BackupFiles)."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from flagsvc.api import create_app
from flagsvc.cli.flagctl import main as flagctl
from flagsvc.service import build_services
from tests.support import ADMIN, ADMIN_TOKEN, TEST_SETTINGS, serving


@pytest.fixture
def services(fake_store, manual_clock, tmp_path):
    return build_services(TEST_SETTINGS, fake_store, manual_clock, controller=False, backup_dir=tmp_path / "b")


@pytest.fixture
def api(services):
    return create_app(TEST_SETTINGS, services=services).test_client()


def _export_then_wipe(services, fake_store) -> str:
    """Flags exported to disk, then Redis wiped; the export as it was."""
    _setup(services)
    services.dataset.look()
    services.backup_files.step()
    before = services.backup_files.latest.read_text()
    fake_store.redis.flushall()
    return before


def _setup(services):
    services.commands.create("checkout", {"stages": [10, 50, 100], "allow": ["qa"]}, actor="ops")
    services.commands.start("checkout", actor="ops")
    services.commands.promote("checkout", actor="ops")
    services.commands.create("search", {"description": "new search"}, actor="ops")


def test_export_holds_every_flag_its_state_and_optionally_history(api, services):
    _setup(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    assert (doc["format"], doc["format_version"]) == ("flagsvc-export", 1)
    assert [(f["key"], f["state"], f["percent"], f["revision"]) for f in doc["flags"]] == [
        ("checkout", "rolling", 50.0, 3), ("search", "off", 0.0, 1)]
    assert doc["history"] == {}
    with_history = api.get("/api/v1/export?history=2", headers=ADMIN).get_json()
    assert [e["action"] for e in with_history["history"]["checkout"]] == ["promote", "start"]
    assert api.get("/api/v1/export?history=x", headers=ADMIN).get_json()["error"]["fields"] == {
        "history": ["must be 0 to 1000"]}


def test_import_creates_missing_flags_as_exported_and_leaves_the_others(api, services, fake_store):
    _setup(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    fake_store.redis.flushall()
    services.commands.create("search", {"description": "made again by hand"}, actor="ops")
    answer = api.post("/api/v1/import", headers=ADMIN, json=doc)
    assert answer.status_code == 200
    assert answer.get_json() == {"created": ["checkout"], "replaced": [], "unchanged": ["search"],
                                 "segments": {"created": [], "replaced": [], "unchanged": []}}
    checkout = services.commands.get("checkout")
    assert (checkout.state.value, checkout.percent, checkout.stage_index, checkout.allow) == (
        "rolling", 50.0, 1, ("qa",))
    assert checkout.revision == 4  # one past the exported revision
    entry = services.commands.history("checkout")[0]
    assert (entry.action.value, entry.actor, entry.to_percent) == ("import", "ops", 50.0)
    assert "imported from an export" in entry.reason
    assert services.commands.get("search").description == "made again by hand"
    assert services.commands.promote("checkout", actor="ops").percent == 100  # the rollout goes on


def test_import_with_replace_overwrites_existing_flags(api, services):
    _setup(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    services.commands.rollback("checkout", actor="ops")
    answer = api.post("/api/v1/import?replace=true", headers=ADMIN, json=doc).get_json()
    assert answer["replaced"] == ["checkout", "search"]
    checkout = services.commands.get("checkout")
    assert (checkout.state.value, checkout.percent, checkout.revision) == ("rolling", 50.0, 5)
    assert services.commands.history("checkout")[0].from_state.value == "rolled_back"
    assert api.post("/api/v1/import?replace=maybe", headers=ADMIN, json=doc).get_json()["error"]["fields"] == {
        "replace": ["must be true or false"]}


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.update(format_version=2), "format_version"),
    (lambda d: d.pop("flags"), "flags"),
    (lambda d: d.update(flags="nope"), "flags"),
    (lambda d: d["flags"][1].update(percent=150), "flags.1.percent"),
    (lambda d: d["flags"][1].update(state="exploded"), "flags.1.state"),
    (lambda d: d["flags"][1].update(stages=[50, 10]), "flags.1.stages"),
    (lambda d: d["flags"][1].update(stage_index=9), "flags.1.stage_index"),
    (lambda d: d["flags"][1].update(revision=2**63), "flags.1.revision"),  # past what batches can name
    (lambda d: d["flags"][1].update(state="rolled_back", percent=50), "flags.1.percent"),
    (lambda d: d["flags"][0].update(percent=33), "flags.0.percent"),  # rolling, but not at its stage's percent
    (lambda d: d["flags"][1].update(key="Not A Key"), "flags.1.key"),
    (lambda d: d["flags"][1].pop("revision"), "flags.1.revision"),
    (lambda d: d["flags"][1].update(revision=True), "flags.1.revision"),
    (lambda d: d["flags"][1].update(surprise=1), "flags.1.surprise"),
    (lambda d: d["flags"][1].update(analysis={"alpha": 7}), "flags.1.analysis.alpha"),
    (lambda d: d["flags"].append(copy.deepcopy(d["flags"][0])), "flags.2.key"),
    (lambda d: d["flags"].append(3), "flags.2"),
])
def test_a_bad_document_is_a_400_naming_the_field_and_nothing_is_applied(api, services, fake_store, change, field):
    _setup(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    fake_store.redis.flushall()
    change(doc)
    answer = api.post("/api/v1/import", headers=ADMIN, json=doc)
    assert answer.status_code == 400, answer.get_json()
    assert field in answer.get_json()["error"]["fields"]
    assert services.commands.list_flags() == []  # flags.0 was valid, and is not applied either


NZ = {"description": "New Zealand", "conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}


def _with_segments(services):
    services.segments.create("nz", NZ, actor="ops")
    services.segments.create("staff", {"conditions": [{"attribute": "email", "op": "ends_with",
                                                       "values": ["@example.com"]}]}, actor="ops")
    services.commands.create("nz-checkout", {"eligible_segments": ["nz"], "excluded_segments": ["staff"],
                                             "bucket_by": "org"}, actor="ops")


def test_segments_are_exported_and_restored_before_the_flags_that_name_them(api, services, fake_store):
    _with_segments(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    assert [(s["name"], s["conditions"]) for s in doc["segments"]] == [
        ("nz", NZ["conditions"]), ("staff", [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}])]
    fake_store.redis.flushall()
    answer = api.post("/api/v1/import", headers=ADMIN, json=doc)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["segments"] == {"created": ["nz", "staff"], "replaced": [], "unchanged": []}
    assert services.segments.get("nz").description == "New Zealand"
    flag = services.commands.get("nz-checkout")
    assert (flag.eligible_segments, flag.excluded_segments, flag.bucket_by) == (("nz",), ("staff",), "org")
    # again: the segments are there now, and left alone unless replace
    again = api.post("/api/v1/import", headers=ADMIN, json=doc).get_json()
    assert again["segments"]["unchanged"] == ["nz", "staff"]
    services.segments.update("nz", {"description": "changed by hand"}, actor="ops")
    replaced = api.post("/api/v1/import?replace=true", headers=ADMIN, json=doc).get_json()
    assert replaced["segments"]["replaced"] == ["nz", "staff"]
    nz = services.segments.get("nz")
    assert (nz.description, nz.revision) == ("New Zealand", 3)  # one past the revision it replaced


def test_an_export_made_before_segments_restores_its_flags(api, services, fake_store):
    _setup(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    del doc["segments"]
    fake_store.redis.flushall()
    answer = api.post("/api/v1/import", headers=ADMIN, json=doc).get_json()
    assert answer["created"] == ["checkout", "search"] and answer["segments"]["created"] == []


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.update(segments="nope"), "segments"),
    (lambda d: d["segments"].append(3), "segments.2"),
    (lambda d: d["segments"][0].update(name="Not A Name!"), "segments.0.name"),
    (lambda d: d["segments"][0]["conditions"][0].update(op="explodes"), "segments.0.conditions.0.op"),
    (lambda d: d["segments"][0].update(conditions="country=NZ"), "segments.0.conditions"),
    (lambda d: d["segments"][0].update(revision="2"), "segments.0.revision"),
    (lambda d: d["segments"][0].update(description=7), "segments.0.description"),
    (lambda d: d["segments"][1].update(surprise=1), "segments.1.surprise"),
    (lambda d: d["segments"].append(copy.deepcopy(d["segments"][0])), "segments.2.name"),
    (lambda d: d["segments"].pop(0), "flags.0.eligible_segments"),  # named by the flag, in neither place
])
def test_a_bad_segment_in_an_export_is_a_400_naming_the_field_and_nothing_is_applied(api, services, fake_store,
                                                                                       change, field):
    _with_segments(services)
    doc = api.get("/api/v1/export", headers=ADMIN).get_json()
    fake_store.redis.flushall()
    change(doc)
    answer = api.post("/api/v1/import", headers=ADMIN, json=doc)
    assert answer.status_code == 400, answer.get_json()
    assert field in answer.get_json()["error"]["fields"], answer.get_json()
    assert services.commands.list_flags() == [] and services.segments.list_segments() == []


def test_import_refuses_bodies_that_are_not_objects(api):
    assert api.post("/api/v1/import", headers=ADMIN, data="[1]").status_code == 400
    assert api.post("/api/v1/import", headers=ADMIN, data="{").status_code == 400
    assert api.post("/api/v1/import", headers={"Authorization": "Bearer nope"}, json={}).status_code == 401


def test_backup_files_write_latest_and_dated_copies_at_most_every_interval(services, manual_clock):
    files = services.backup_files
    files.min_interval, files.keep = 10, 2
    _setup(services)
    assert files.step() is None  # a dataset the watcher has not looked at yet
    services.dataset.look()
    assert files.step() == files.latest
    assert [f["key"] for f in json.loads(files.latest.read_text())["flags"]] == ["checkout", "search"]
    services.commands.delete("search")
    assert files.step() is None  # too soon
    manual_clock.advance(10)
    assert files.step() == files.latest
    assert [f["key"] for f in json.loads(files.latest.read_text())["flags"]] == ["checkout"]
    assert files.step() is None  # nothing changed
    for n in range(3):
        services.commands.create(f"f{n}", {}, actor="ops")
        manual_clock.advance(10)
        files.step()
    dated = sorted(p.name for p in files.directory.glob("flags-[0-9]*.json"))
    assert len(dated) == 2 and dated[-1].endswith("-v8.json")
    assert not list(files.directory.glob(".*tmp"))


def test_backup_files_keep_the_last_export_while_a_reset_is_open_and_keep_another_epochs_aside(
        services, fake_store, manual_clock):
    files = services.backup_files
    before = _export_then_wipe(services, fake_store)
    services.dataset.look()
    manual_clock.advance(60)
    assert files.step() is None and files.latest.read_text() == before
    services.dataset.acknowledge("ops")  # the operator accepts the empty dataset
    assert files.step() == files.latest
    assert json.loads(files.latest.read_text())["flags"] == []
    old_epoch = json.loads(before)["epoch"]
    assert (files.directory / f"flags-epoch-{old_epoch}.json").read_text() == before


def test_flagctl_export_then_import_after_a_wipe(services, fake_store, tmp_path):
    _setup(services)
    app = create_app(TEST_SETTINGS, services=services)
    runner = CliRunner()
    with serving(app) as url:
        env = {"FLAGSVC_URL": url, "FLAGSVC_ADMIN_TOKEN": ADMIN_TOKEN}
        out = tmp_path / "export.json"
        result = runner.invoke(flagctl, ["export", str(out)], env=env)
        assert result.exit_code == 0, result.output
        fake_store.redis.flushall()
        result = runner.invoke(flagctl, ["import", str(out)], env=env)
        assert result.exit_code == 0, result.output
        assert "created: checkout, search" in result.output
        assert services.commands.get("checkout").percent == 50
        (tmp_path / "bad.json").write_text('{"format_version": 1, "flags": [{"key": "x"}]}')
        result = runner.invoke(flagctl, ["import", str(tmp_path / "bad.json")], env=env)
        assert result.exit_code == 1 and "flags.0.state" in result.output
        result = runner.invoke(flagctl, ["import", str(tmp_path / "missing.json")], env=env)
        assert result.exit_code == 2
        result = runner.invoke(flagctl, ["dataset"], env=env)
        assert result.exit_code == 0 and "no dataset reset" in result.output


def test_a_wipe_the_watcher_has_not_noticed_yet_never_replaces_the_export(services, fake_store, manual_clock):
    files = services.backup_files
    before = _export_then_wipe(services, fake_store)
    manual_clock.advance(60)
    assert files.step() is None  # the backup ran first: the empty dataset is not written over the good export
    assert files.latest.read_text() == before
    assert services.dataset.look() is not None  # and then the watcher opens the notice
    manual_clock.advance(60)
    assert files.step() is None and files.latest.read_text() == before


def test_a_second_wipe_keeps_the_first_notice_open(services, fake_store):
    _setup(services)
    services.dataset.look()
    fake_store.redis.flushall()
    first = services.dataset.look()
    assert first is not None and {v["key"] for v in first["vanished"]} == {"checkout", "search"}
    fake_store.redis.flushall()  # the notice lived in Redis: gone with the second wipe
    services.dataset.look()
    reopened = services.dataset.notice()
    assert reopened is not None and {v["key"] for v in reopened["vanished"]} == {"checkout", "search"}
    assert "reset again" in reopened["reason"]
    services.dataset.acknowledge("ops")  # an operator's acknowledgement in this dataset does close it
    services.dataset.look()
    assert services.dataset.notice() is None


def test_a_config_version_that_goes_back_names_the_dataset_anew(services, fake_store, caplog):
    """Redis restored from an older copy: the same epoch, a lower version. SDKs holding the later version would
    ignore every change (the kill switch too) until the version caught up, so the dataset gets a new epoch."""
    _setup(services)
    services.dataset.look()
    before = fake_store.config_version()
    fake_store.redis.set(fake_store.keys.config_version, before.version - 3)
    with caplog.at_level("ERROR", logger="flagsvc.dataset"):
        services.dataset.look()
    after = fake_store.config_version()
    assert after.epoch != before.epoch and "went back" in caplog.text
    body = services.changes.latest().body
    assert f'"epoch":"{after.epoch}"'.encode() in body  # what SDKs are served now: they take it whole
    assert services.dataset.notice() is None  # no flag was lost: nothing to restore

