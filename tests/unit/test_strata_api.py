"""Stratified outcomes over the API: `analysis.stratify_by` (validated, in the SDK snapshot without a `requires`
feature), batches' per-stratum counts (typed by the schema, bounded by plausibility), the stats' per-stratum
rates, and `flagctl create/edit --stratify-by` and `flagctl stats`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flagsvc_client.protocol.limits import MAX_STRATA, STRATUM_OTHER

from flagsvc.cli import flagctl
from flagsvc.domain.analysis import AnalysisSettings, validate_analysis
from tests.support import ADMIN, SDK, serving
from tests.support.outcomes import envelope


@pytest.fixture
def flag(client):
    client.post("/api/v1/flags", json={"key": "new_checkout", "analysis": {"stratify_by": ["plan"]}}, headers=ADMIN)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    return client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()


def strata_batch(revision, stable_strata, canary_strata, batch_id="b-00000001", stable=(100, 6, 4),
                 canary=(50, 3, 3)):
    return envelope({"new_checkout": {"revision": revision, "arms": {
        "stable": {"count": stable[0], "errors": stable[1], "error_users": stable[2], "strata": stable_strata},
        "canary": {"count": canary[0], "errors": canary[1], "error_users": canary[2], "strata": canary_strata},
    }}}, batch_id)


@pytest.mark.parametrize(("value", "problem"), [
    ("plan", "must be a list of context attribute names"),
    (["plan", 3], "must be a list of context attribute names"),
    (["a", "b", "c"], "at most 2 attributes"),
    (["has space"], "attribute names match"),
    (["plan", "plan"], "each attribute at most once"),
])
def test_stratify_by_is_one_or_two_attribute_names_and_a_400_names_it(client, value, problem):
    response = client.post("/api/v1/flags", json={"key": "f", "analysis": {"stratify_by": value}}, headers=ADMIN)
    assert response.status_code == 400, response.get_json()
    assert problem in response.get_json()["error"]["fields"]["analysis.stratify_by"][0]
    assert validate_analysis({"stratify_by": value})


def test_stratify_by_is_a_setting_with_a_default_and_reaches_the_snapshot_without_requires(client, flag):
    assert flag["analysis"]["stratify_by"] == ["plan"]
    assert AnalysisSettings.from_dict({}).stratify_by == ()
    assert AnalysisSettings.from_dict({"stratify_by": ["plan", "region"]}).stratify_by == ("plan", "region")
    snapshot = client.get("/sdk/v1/flags", headers=SDK).get_json()
    view = snapshot["flags"]["new_checkout"]
    assert view["stratify_by"] == ["plan"] and "requires" not in view  # reporting only: older SDKs still answer
    client.patch("/api/v1/flags/new_checkout", json={"analysis": {"stratify_by": []}}, headers=ADMIN)
    assert "stratify_by" not in client.get("/sdk/v1/flags", headers=SDK).get_json()["flags"]["new_checkout"]


def test_strata_are_counted_and_the_stats_show_each_strata_rates_with_the_unlabelled_rest(client, flag):
    body = strata_batch(flag["revision"], {"premium": [10, 5, 3], "free": [80, 1, 1]}, {"premium": [25, 3, 3]})
    assert client.post("/sdk/v1/outcomes", json=body, headers=SDK).get_json()["accepted"] == 1
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    rows = {row["stratum"]: row for row in stats["strata"]}
    assert set(rows) == {"premium", "free", ""}
    assert rows["premium"]["stable"] == {"requests": 10, "errors": 5, "error_rate": 0.5}
    assert rows["premium"]["canary"] == {"requests": 25, "errors": 3, "error_rate": 0.12}
    assert rows["free"]["canary"] == {"requests": 0, "errors": 0, "error_rate": None}
    assert rows[""]["stable"]["requests"] == 10 and rows[""]["canary"]["requests"] == 25  # sent under no label
    assert all(row["split"] is None for row in rows.values())  # the judge has not looked yet


def test_a_flag_without_strata_has_no_strata_rows(client):
    client.post("/api/v1/flags", json={"key": "plain"}, headers=ADMIN)
    assert client.get("/api/v1/flags/plain/stats", headers=ADMIN).get_json()["strata"] == []


ARMS = "flags.new_checkout.value.arms"


@pytest.mark.parametrize(("strata", "field"), [
    ({"premium": [1, 0]}, f"{ARMS}.stable.value.strata.premium"),
    ({"premium": [1, 0, -1]}, f"{ARMS}.stable.value.strata.premium"),
    ({"premium": [1, 0, True]}, f"{ARMS}.stable.value.strata.premium"),
    ({"": [1, 0, 0]}, f"{ARMS}.stable.value.strata."),
    ({"x" * 129: [1, 0, 0]}, f"{ARMS}.stable.value.strata.{'x' * 129}"),
    ({f"s{i}": [1, 0, 0] for i in range(MAX_STRATA + 2)}, f"{ARMS}.stable.value.strata"),
    ([["premium", 1, 0, 0]], f"{ARMS}.stable.value.strata"),
])
def test_malformed_strata_are_400_naming_the_field(client, flag, strata, field):
    response = client.post("/sdk/v1/outcomes", json=strata_batch(flag["revision"], strata, {}), headers=SDK)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["fields"], response.get_json()


@pytest.mark.parametrize(("strata", "field"), [
    ({"premium": [10, 11, 0]}, "flags.new_checkout.arms.stable.strata.premium"),  # errors above requests
    ({"premium": [10, 2, 3]}, "flags.new_checkout.arms.stable.strata.premium"),  # users above errors
    ({"premium": [60, 0, 0], "free": [41, 0, 0]}, "flags.new_checkout.arms.stable.strata"),  # 101 of 100
    ({"premium": [10, 4, 4], "free": [10, 3, 1]}, "flags.new_checkout.arms.stable.strata"),  # 7 errors of 6
    ({"premium": [10, 4, 4], "free": [10, 1, 1]}, "flags.new_checkout.arms.stable.strata"),  # 5 users of 4
])
def test_strata_that_do_not_fit_their_arm_are_422_and_count_nothing(client, flag, strata, field):
    response = client.post("/sdk/v1/outcomes", json=strata_batch(flag["revision"], strata, {}), headers=SDK)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"], response.get_json()
    assert client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()["arms"]["stable"]["count"] == 0


def test_the_pooled_label_is_accepted_beside_max_strata_named_ones(client, flag):
    strata = {f"s{i}": [1, 0, 0] for i in range(MAX_STRATA)} | {STRATUM_OTHER: [2, 0, 0]}
    response = client.post("/sdk/v1/outcomes", json=strata_batch(flag["revision"], strata, {}), headers=SDK)
    assert response.status_code == 200, response.get_json()


def test_flagctl_sets_stratify_by_and_stats_prints_the_strata(app):
    client = app.test_client()
    runner = CliRunner()
    with serving(app) as url:
        base = ["--url", url, "--token", ADMIN["Authorization"].split()[1]]
        created = runner.invoke(flagctl.main, [*base, "create", "new_checkout", "--stratify-by", "plan,region"])
        assert created.exit_code == 0, created.output
        flag = client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()
        assert flag["analysis"]["stratify_by"] == ["plan", "region"]
        bad = runner.invoke(flagctl.main, [*base, "edit", "new_checkout", "--stratify-by", "a,b,c"])
        assert bad.exit_code != 0 and "analysis.stratify_by" in bad.output
        edited = runner.invoke(flagctl.main, [*base, "edit", "new_checkout", "--stratify-by", "plan"])
        assert edited.exit_code == 0, edited.output
        client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
        revision = client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()["revision"]
        body = strata_batch(revision, {"premium": [10, 5, 3], "free": [80, 1, 1]}, {"premium": [25, 3, 3]})
        client.post("/sdk/v1/outcomes", json=body, headers=SDK)
        table = runner.invoke(flagctl.main, [*base, "stats", "new_checkout"])
        as_json = runner.invoke(flagctl.main, [*base, "stats", "new_checkout", "--json"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("stratum"))
    assert lines[head].split()[:3] == ["stratum", "stable", "req"]
    assert lines[head + 1].split()[:5] == ["free", "80", "1.25%", "0", "-"]
    assert lines[head + 2].split()[:5] == ["premium", "10", "50.00%", "25", "12.00%"]
    assert lines[head + 3].split()[:1] == ["(unlabelled)"]
    assert [row["stratum"] for row in json.loads(as_json.output)["strata"]] == ["free", "premium", ""]


def test_stratify_by_survives_export_and_import_and_a_bad_one_is_refused_naming_it(client, fake_store):
    client.post("/api/v1/flags", json={"key": "strat", "analysis": {"stratify_by": ["plan", "region"]}},
                headers=ADMIN)
    doc = client.get("/api/v1/export", headers=ADMIN).get_json()
    fake_store.redis.flushall()
    bad = json.loads(json.dumps(doc))
    bad["flags"][0]["analysis"]["stratify_by"] = ["plan", "plan"]
    answer = client.post("/api/v1/import", headers=ADMIN, json=bad)
    assert answer.status_code == 400 and "flags.0.analysis.stratify_by" in answer.get_json()["error"]["fields"]
    assert client.post("/api/v1/import", headers=ADMIN, json=doc).status_code == 200
    flag = client.get("/api/v1/flags/strat", headers=ADMIN).get_json()
    assert flag["analysis"]["stratify_by"] == ["plan", "region"]


def test_the_reporter_check_takes_a_reporters_share_out_of_the_strata_too():
    from flagsvc.domain.outcomes import ArmTotals
    from flagsvc.domain.reporter_influence import ReporterShare, without

    stable = ArmTotals(1_000, 20, 20, strata={"premium": (100, 10, 10), "free": (800, 10, 10)})
    canary = ArmTotals(1_000, 40, 40, strata={"premium": (500, 30, 30), "free": (400, 10, 10)})
    share = ReporterShare("noisy-reporter", 0, 0, 500, 20, 0.5, "canary errors")
    left_stable, left_canary = without(stable, canary, share)
    assert left_stable.strata == stable.strata
    assert (left_canary.count, left_canary.errors) == (500, 20)
    assert left_canary.strata == {"premium": (250, 15, 15), "free": (200, 5, 5)}  # in proportion, like latencies
    assert sum(n for n, _, _ in left_canary.strata.values()) <= left_canary.count
