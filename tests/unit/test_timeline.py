"""Rollout time series: the downsampling rule, what the controller records at each look (and that a failing
store never fails it), GET /api/v1/flags/<key>/timeline and `flagctl timeline`."""

from __future__ import annotations

import itertools
import json
import logging

import pytest
from click.testing import CliRunner

from flagsvc.cli import flagctl
from flagsvc.domain.timeline import TIMELINE_POINTS, RevisionSeries, timeline_point
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.controller import build_controller
from flagsvc.service.timeline import TimelineRecorder
from flagsvc.store.memory import MemoryStore
from flagsvc.store.timeline import timeline_for
from tests.support import ADMIN, serving


def test_a_revision_keeps_every_look_until_full_then_halves_evenly():
    series = RevisionSeries(1)
    for look in range(TIMELINE_POINTS):
        series.add({"look": look})
    assert len(series.points) == TIMELINE_POINTS and series.stride == 1
    series.add({"look": TIMELINE_POINTS})  # one too many: every other point goes, the first and last stay
    assert [p["look"] for p in series.points] == list(range(0, TIMELINE_POINTS + 1, 2)) and series.stride == 2
    for look in range(TIMELINE_POINTS + 1, 10_000):
        series.add({"look": look})
    looks = [p["look"] for p in series.points]
    assert TIMELINE_POINTS // 2 <= len(looks) <= TIMELINE_POINTS and series.looks == 10_000
    assert looks[0] == 0 and looks[-1] >= 10_000 - series.stride
    gaps = {b - a for a, b in itertools.pairwise(looks)}
    assert gaps == {series.stride}  # evenly spread


def test_a_point_reads_the_judges_statistics_from_the_evidence():
    evidence = {"errors": {"statistic": 1.5, "accept_at": -4.6, "reject_at": 6.2},
                "latency": {"statistic": -0.3, "accept_at": -4.6, "reject_at": None},
                "rollout_test": {"errors_statistic": 0.7, "errors_reject_at": 7.1, "latency_statistic": 0.1,
                                 "latency_reject_at": None}}
    point = timeline_point(at=5.0, revision=3, state="rolling", percent=5.0, stage_index=1, decision="hold",
                           applied=True, stable={"count": 100, "errors": 2, "error_rate": 0.02, "p95_ms": 80.0},
                           canary={"count": 10, "errors": 0, "error_rate": 0.0, "p95_ms": None}, evidence=evidence)
    assert point["errors"] == {"statistic": 1.5, "accept_at": -4.6, "reject_at": 6.2}
    assert point["rollout_errors"] == {"statistic": 0.7, "accept_at": None, "reject_at": 7.1}
    assert point["canary"] == {"requests": 10, "errors": 0, "error_rate": 0.0, "p95_ms": None}
    empty = timeline_point(at=5.0, revision=3, state="rolling", percent=5.0, stage_index=1, decision="hold",
                           applied=True, stable={}, canary={}, evidence={"errors": "not a section"})
    assert empty["errors"] == {"statistic": None, "accept_at": None, "reject_at": None}


def _rolling(store, key="new_checkout"):
    from flagsvc.domain import flag as flags

    flag, entry = flags.new_flag(key, {"stages": [10, 50, 100], "bake_seconds": 0}, now=0, actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=0, actor="ops")
    store.replace(started, entry, expected_revision=1)
    return started


def test_the_controller_records_each_look_with_the_judges_statistics():
    store = MemoryStore()
    flag = _rolling(store)
    controller = build_controller(store, ChangeAnnouncer(store), clock=lambda: 100.0,
                                  timeline=TimelineRecorder(timeline_for(store)))
    controller.tick()
    controller.tick()
    [series] = timeline_for(store).timeline(flag.key, flag.created_at)
    assert series.revision == flag.revision and series.looks == 2
    point = series.points[0]
    assert point["decision"] == "blind" or point["decision"] == "hold"
    assert point["percent"] == 10 and point["state"] == "rolling" and point["at"] == 100.0
    assert point["stable"] == {"requests": 0, "errors": 0, "error_rate": None, "p95_ms": None}
    assert set(point["errors"]) == {"statistic", "accept_at", "reject_at"}


class BrokenTimeline:
    def add_timeline_point(self, *args, **kwargs):
        raise ConnectionError("redis is down")

    def timeline(self, *args, **kwargs):
        raise ConnectionError("redis is down")


def test_a_timeline_that_cannot_be_written_is_logged_and_the_controller_goes_on(caplog):
    store = MemoryStore()
    _rolling(store)
    controller = build_controller(store, ChangeAnnouncer(store), clock=lambda: 100.0,
                                  timeline=TimelineRecorder(BrokenTimeline()))
    with caplog.at_level(logging.WARNING, "flagsvc.timeline"):
        decisions = controller.tick()
    assert [d.key for d in decisions] == ["new_checkout"]
    assert "timeline point of revision 2 not kept: redis is down" in caplog.text


def _recorded(app, key="a", looks=3):
    services = app.extensions["flagsvc"]
    flag = services.commands.create(key, {}, actor="ops")
    flag = services.commands.start(key, actor="ops")
    store = services.commands._flags
    recorder = TimelineRecorder(timeline_for(store))
    from flagsvc.domain.outcomes import ArmTotals

    for look in range(looks):
        recorder.record(flag, decision="hold", applied=True, totals={"stable": ArmTotals(100 * look, look),
                                                                     "canary": ArmTotals(10 * look, 0)},
                        evidence={"errors": {"statistic": 0.5 * look, "accept_at": -4.6, "reject_at": None}},
                        at=1000.0 + look)
    return flag


def test_the_api_serves_the_timeline_by_revision_range(client, app):
    flag = _recorded(app)
    body = client.get("/api/v1/flags/a/timeline", headers=ADMIN).get_json()
    assert body["key"] == "a" and body["created_at"] == flag.created_at
    [revision] = body["revisions"]
    assert revision["revision"] == flag.revision and revision["looks"] == 3
    assert [p["stable"]["requests"] for p in revision["points"]] == [0, 100, 200]
    assert [p["errors"]["statistic"] for p in revision["points"]] == [0.0, 0.5, 1.0]
    assert client.get(f"/api/v1/flags/a/timeline?from_revision={flag.revision + 1}",
                      headers=ADMIN).get_json()["revisions"] == []


@pytest.mark.parametrize(("query", "field"), [
    ("from_revision=0", "from_revision"), ("to_revision=x", "to_revision"), ("revisions=101", "revisions"),
    ("revisions=%C2%B2", "revisions"), ("from_revision=5&to_revision=4", "to_revision"),
])
def test_a_bad_range_is_a_400_naming_the_field(client, app, query, field):
    _recorded(app)
    response = client.get(f"/api/v1/flags/a/timeline?{query}", headers=ADMIN)
    assert response.status_code == 400 and list(response.get_json()["error"]["fields"]) == [field]


def test_an_unknown_flag_has_no_timeline(client):
    assert client.get("/api/v1/flags/nope/timeline", headers=ADMIN).status_code == 404


def test_flagctl_timeline_prints_a_table_and_json(app):
    _recorded(app, looks=2)
    runner = CliRunner()
    with serving(app) as url:
        base = ["--url", url, "--token", ADMIN["Authorization"].split()[1]]
        table = runner.invoke(flagctl.main, [*base, "timeline", "a"])
        as_json = runner.invoke(flagctl.main, [*base, "timeline", "a", "--json"])
        missing = runner.invoke(flagctl.main, [*base, "timeline", "nope"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["WHEN", "(UTC)", "REV", "STATE"] and len(lines) == 3
    assert "100" in lines[2] and "0.5" in lines[2]
    assert json.loads(as_json.output)["revisions"][0]["looks"] == 2
    assert missing.exit_code == 1
