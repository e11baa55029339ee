"""Operators exclude a reporter (SDK instance) from a flag's analysis: by PATCH, by the exclude/include endpoints
and by `flagctl exclude-reporter` / `include-reporter`; the change is in the history, and from its revision on
ingestion drops that reporter's entries for the flag (counted as excluded). `flagctl stats` shows the reporters."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flagsvc.cli.flagctl import main
from tests.support import ADMIN, ADMIN_TOKEN, SDK, serving
from tests.support.outcomes import envelope

BAD = "bad-instance-0001"
GOOD = "good-instance-0002"


@pytest.fixture
def flag(client):
    client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    return client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()


def _report(client, revision, reporter, batch_id, canary=(10, 1)):
    body = envelope({"new_checkout": {"revision": revision, "arms": {
        "stable": {"count": 90, "errors": 1}, "canary": {"count": canary[0], "errors": canary[1]},
    }}}, batch_id, reporter=reporter)
    return client.post("/sdk/v1/outcomes", json=body, headers=SDK).get_json()


def test_excluding_a_reporter_is_an_update_in_the_history_and_ingestion_drops_it(client, flag):
    answer = client.post("/api/v1/flags/new_checkout/reporters/exclude", headers=ADMIN,
                         json={"reporter": BAD, "reason": "sends canary-only errors"})
    assert answer.status_code == 200, answer.get_json()
    changed = answer.get_json()
    assert changed["analysis"]["excluded_reporters"] == [BAD] and changed["revision"] == flag["revision"] + 1
    entry = client.get("/api/v1/flags/new_checkout/history?limit=1", headers=ADMIN).get_json()["history"][0]
    assert (entry["action"], entry["actor"], entry["reason"]) == ("update", "ops", "sends canary-only errors")
    # outcomes of the old revision are stale, of the new one from the excluded reporter dropped and counted
    assert _report(client, flag["revision"], GOOD, "b-00000001")["stale"] == 1
    dropped = _report(client, changed["revision"], BAD, "b-00000002", canary=(50, 50))
    assert (dropped["accepted"], dropped["excluded"]) == (0, 1)
    kept = _report(client, changed["revision"], GOOD, "b-00000003")
    assert (kept["accepted"], kept["excluded"]) == (1, 0)
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["arms"]["canary"]["count"] == 10 and stats["arms"]["canary"]["errors"] == 1
    assert [r["reporter"] for r in stats["reporters"]["top"]] == [GOOD]
    assert stats["reporters"]["excluded"] == [BAD]
    # excluding again changes nothing; including again is another update, and the reporter counts again
    again = client.post("/api/v1/flags/new_checkout/reporters/exclude", headers=ADMIN, json={"reporter": BAD})
    assert again.get_json()["revision"] == changed["revision"]
    back = client.post("/api/v1/flags/new_checkout/reporters/include", headers=ADMIN, json={"reporter": BAD})
    assert back.get_json()["analysis"]["excluded_reporters"] == []
    entry = client.get("/api/v1/flags/new_checkout/history?limit=1", headers=ADMIN).get_json()["history"][0]
    assert entry["reason"] == f"reporter {BAD} included again in the analysis"
    assert _report(client, back.get_json()["revision"], BAD, "b-00000004")["accepted"] == 1


def test_patch_sets_the_list_and_bad_input_is_a_400_naming_the_field(client, flag):
    patched = client.patch("/api/v1/flags/new_checkout", headers=ADMIN,
                           json={"analysis": {"excluded_reporters": [BAD]}})
    assert patched.status_code == 200 and patched.get_json()["analysis"]["excluded_reporters"] == [BAD]
    assert _report(client, patched.get_json()["revision"], BAD, "b-00000005")["excluded"] == 1
    for analysis, problem in (({"excluded_reporters": ["x"]}, "reporter ids are 8 to 64"),
                              ({"excluded_reporters": [BAD, BAD]}, "at most once"),
                              ({"excluded_reporters": [f"reporter-{i:05d}" for i in range(101)]}, "at most 100"),
                              ({"excluded_reporters": "bad-instance-0001"}, "a list of reporter ids"),
                              ({"max_stage_seconds": -1}, "must be above 0"),
                              ({"on_max_stage": "skip"}, "one of hold, advance")):
        answer = client.patch("/api/v1/flags/new_checkout", headers=ADMIN, json={"analysis": analysis})
        assert answer.status_code == 400, analysis
        fields = answer.get_json()["error"]["fields"]
        [name] = analysis
        assert any(problem in p for p in fields[f"analysis.{name}"]), fields
    bad = client.post("/api/v1/flags/new_checkout/reporters/exclude", headers=ADMIN, json={"reporter": "no"})
    assert bad.status_code == 400 and "reporter" in bad.get_json()["error"]["fields"]
    missing = client.post("/api/v1/flags/new_checkout/reporters/include", headers=ADMIN, json={})
    assert missing.status_code == 400 and "reporter" in missing.get_json()["error"]["fields"]
    assert client.post("/api/v1/flags/nope/reporters/exclude", headers=ADMIN,
                       json={"reporter": BAD}).status_code == 404
    stale = client.post("/api/v1/flags/new_checkout/reporters/exclude", json={"reporter": GOOD},
                        headers={**ADMIN, "If-Match": '"1"'})
    assert stale.status_code == 412


def test_flagctl_excludes_and_includes_a_reporter_and_shows_reporters(app, client, flag):
    _report(client, flag["revision"], GOOD, "b-00000006")
    _report(client, flag["revision"], BAD, "b-00000007", canary=(5, 5))
    runner = CliRunner()
    with serving(app) as url:
        def flagctl(*args: str):
            return runner.invoke(main, ["--url", url, "--token", ADMIN_TOKEN, *args], catch_exceptions=False)

        shown = flagctl("stats", "new_checkout")
        assert shown.exit_code == 0 and "reporters: 2" in shown.output and BAD in shown.output
        assert "100% of canary errors" not in shown.output and "of canary errors" in shown.output
        done = flagctl("exclude-reporter", "new_checkout", BAD, "--reason", "broken instance")
        assert done.exit_code == 0, done.output
        assert f"excluded reporters: {BAD}" in done.output
        history = json.loads(flagctl("history", "new_checkout", "--json").output)["history"]
        assert (history[0]["action"], history[0]["reason"]) == ("update", "broken instance")
        assert f"excluded: {BAD}" in flagctl("stats", "new_checkout").output
        refused = flagctl("exclude-reporter", "new_checkout", "x")
        assert refused.exit_code == 1 and "reporter" in refused.output
        back = flagctl("include-reporter", "new_checkout", BAD, "--json")
        assert json.loads(back.output)["analysis"]["excluded_reporters"] == []
        edited = flagctl("edit", "new_checkout", "--max-stage-seconds", "900", "--on-max-stage", "advance", "--json")
        analysis = json.loads(edited.output)["analysis"]
        assert (analysis["max_stage_seconds"], analysis["on_max_stage"]) == (900.0, "advance")
        assert flagctl("edit", "new_checkout", "--on-max-stage", "skip").exit_code == 2
