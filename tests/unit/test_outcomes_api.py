"""POST /sdk/v1/outcomes and GET /api/v1/flags/<key>/stats."""

from __future__ import annotations

import dataclasses
import time

import pytest
from flagsvc_client.protocol.sketch import LatencySketch

from tests.support import ADMIN, SDK
from tests.support.outcomes import envelope


@pytest.fixture
def flag(client):
    client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    return client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()


def batch(revision, batch_id="b-00000001", stable=(100, 1), canary=(10, 1), latencies=(12.0, 80.0)):
    sketch = LatencySketch()
    for ms in latencies:
        sketch.add(ms)
    return envelope({"new_checkout": {"revision": revision, "arms": {
        "stable": {"count": stable[0], "errors": stable[1], "error_users": stable[1]},
        "canary": {"count": canary[0], "errors": canary[1], "latency": sketch.to_wire()},
    }}}, batch_id)


def test_batches_add_up_and_retries_count_once(client, flag):
    answer = client.post("/sdk/v1/outcomes", json=batch(flag["revision"]), headers=SDK).get_json()
    assert answer == {"batch_id": "b-00000001", "accepted": 1, "stale": 0, "unknown": 0, "duplicate": False,
                      "excluded": 0, "overlapping": 0}
    again = client.post("/sdk/v1/outcomes", json=batch(flag["revision"]), headers=SDK).get_json()
    assert again["duplicate"] is True and again["accepted"] == 0
    client.post("/sdk/v1/outcomes", json=batch(flag["revision"], "b-00000002", (50, 0), (5, 0), ()), headers=SDK)
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["revision"] == flag["revision"]
    stable, canary = stats["arms"]["stable"], stats["arms"]["canary"]
    assert (stable["count"], stable["errors"], stable["error_rate"]) == (150, 1, 1 / 150)
    assert (canary["count"], canary["errors"]) == (15, 1)
    assert canary["p50_ms"] == pytest.approx(12.0, rel=0.01) and canary["p99_ms"] == pytest.approx(80.0, rel=0.02)
    assert stats["ingest"] == {"accepted": 2, "duplicate": 1, "stale": 0}


def test_stale_and_unknown_entries_are_dropped_and_counted(client, flag):
    body = batch(flag["revision"] - 1)
    body["flags"]["ghost"] = body["flags"]["new_checkout"]
    answer = client.post("/sdk/v1/outcomes", json=body, headers=SDK).get_json()
    assert (answer["accepted"], answer["stale"], answer["unknown"]) == (0, 1, 1)
    assert client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()["arms"]["canary"]["count"] == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("batch_id"), "batch_id"),
        (lambda b: b.update(batch_id="short"), "batch_id"),
        (lambda b: b.update(batch_id="has space in it"), "batch_id"),
        (lambda b: b["flags"]["new_checkout"].update(revision="3"), "flags.new_checkout.value.revision"),
        (lambda b: b["flags"]["new_checkout"]["arms"].update(middle={"count": 1, "errors": 0}),
         "flags.new_checkout.value.arms.middle.key"),
        (lambda b: b.pop("reporter"), "reporter"),
        (lambda b: b.update(reporter="x"), "reporter"),
        (lambda b: b.pop("window"), "window"),
        (lambda b: b["window"].update(end="now"), "window.end"),
        (lambda b: b["window"].update(start=-1), "window.start"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(count=-1),
         "flags.new_checkout.value.arms.canary.value.count"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(count=1.5),
         "flags.new_checkout.value.arms.canary.value.count"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"99999": 1}),
         "flags.new_checkout.value.arms.canary.value.latency"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"abc": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.abc.key"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"7": 1, "07": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.07.key"),  # the same bucket twice
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"\u0667": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.\u0667.key"),  # an Arabic-Indic 7
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"-0": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.-0.key"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"3": True}),
         "flags.new_checkout.value.arms.canary.value.latency.3.value"),
        (lambda b: b.update(extra=1), "extra"),
    ],
)
def test_malformed_batches_are_400_and_apply_nothing(client, flag, mutate, field):
    body = batch(flag["revision"])
    body["flags"]["other"] = body["flags"]["new_checkout"]  # a valid entry beside the bad one: not applied either
    mutate(body)
    response = client.post("/sdk/v1/outcomes", json=body, headers=SDK)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["fields"], response.get_json()
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["arms"]["stable"]["count"] == 0 and stats["ingest"]["accepted"] == 0


def test_outcomes_need_a_token(client, flag):
    assert client.post("/sdk/v1/outcomes", json=batch(flag["revision"])).status_code == 401


def test_stats_of_unknown_flag(client):
    assert client.get("/api/v1/flags/ghost/stats", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/flags/ghost/stats", headers=SDK).status_code == 403


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(errors=11),
         "flags.new_checkout.arms.canary.errors"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["stable"].update(error_users=2),
         "flags.new_checkout.arms.stable.error_users"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"233": 500}),
         "flags.new_checkout.arms.canary.latency"),
        (lambda b: b["window"].update(end=b["window"]["start"] - 1), "window.end"),
        (lambda b: b["window"].update(end=b["window"]["end"] + 3600), "window.end"),  # in the future
        (lambda b: b["window"].update(start=b["window"]["start"] - 7200, end=b["window"]["end"] - 7200),
         "window.end"),  # older than any retry the server still remembers
        # 10^8 requests in 5 s: no instance serves 20 million a second
        (lambda b: b["flags"]["new_checkout"]["arms"]["stable"].update(count=10**8), "flags"),
    ],
)
def test_implausible_batches_are_422_and_count_nothing(client, flag, mutate, field):
    body = batch(flag["revision"])
    body["flags"]["other"] = body["flags"]["new_checkout"]
    mutate(body)
    response = client.post("/sdk/v1/outcomes", json=body, headers=SDK)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "implausible_batch" and field in error["fields"], error
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["arms"]["stable"]["count"] == 0 and stats["ingest"]["accepted"] == 0


def test_a_window_long_enough_makes_a_large_count_plausible(client, flag):
    body = batch(flag["revision"], stable=(400_000, 1))
    body["window"]["start"] = body["window"]["end"] - 5.0  # 80,000 a second: within one instance's rate
    assert client.post("/sdk/v1/outcomes", json=body, headers=SDK).status_code == 200
    body = batch(flag["revision"], "b-00000002", stable=(400_000, 1))
    body["window"]["start"] = body["window"]["end"] - 0.5  # the same in half a second: a million a second
    assert client.post("/sdk/v1/outcomes", json=body, headers=SDK).status_code == 422


def test_a_flood_from_one_key_is_rate_limited_with_retry_after(fake_store):
    from flagsvc.api import create_app
    from tests.support import TEST_SETTINGS

    settings = dataclasses.replace(TEST_SETTINGS, outcome_batches_per_second=5.0)
    app = create_app(settings, store=fake_store, controller=False)
    client = app.test_client()
    answers = [client.post("/sdk/v1/outcomes", json=envelope({}, f"flood-{i:06d}"), headers=SDK)
               for i in range(40)]
    statuses = [a.status_code for a in answers]
    assert 10 <= statuses.count(200) <= 12  # a burst of 2 x 5, plus what refills while the loop runs
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(int(a.headers["Retry-After"]) >= 1 for a in limited)
    assert limited[0].get_json()["error"]["code"] == "rate_limited"
    assert client.post("/api/v1/flags", json={"key": "still_open"}, headers=ADMIN).status_code == 201  # admins too


def test_outcomes_are_kept_per_reporter(client, flag, fake_store):
    client.post("/sdk/v1/outcomes", json=batch(flag["revision"]), headers=SDK)
    other = batch(flag["revision"], "b-00000002", stable=(7, 0), canary=(3, 2), latencies=())
    other["reporter"] = "another-instance"
    client.post("/sdk/v1/outcomes", json=other, headers=SDK)
    totals = fake_store.reporter_totals("new_checkout", flag["revision"])
    assert {name: {arm: tuple(t) for arm, t in arms.items()} for name, arms in totals.items()} == {
        "test-reporter-0001": {"stable": (100, 1), "canary": (10, 1)},
        "another-instance": {"stable": (7, 0), "canary": (3, 2)},
    }


def test_a_reporter_cannot_send_the_same_moments_twice(client, flag):
    """Five batches claiming the same window from one reporter: the first counts, the rest overlap it."""
    now = time.time()
    answers = []
    for n in range(5):
        body = batch(flag["revision"], f"same-window-{n}", stable=(1000, 10), canary=(10, 0))
        body["reporter"], body["window"] = "replaying-instance", {"start": now - 5.0, "end": now}
        answer = client.post("/sdk/v1/outcomes", json=body, headers=SDK)
        assert answer.status_code == 200, answer.get_json()
        answers.append(answer.get_json())
    assert [(a["accepted"], a["overlapping"]) for a in answers] == [(1, 0)] + [(0, 1)] * 4
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["arms"]["stable"]["count"] == 1000
    following = batch(flag["revision"], "next-window", stable=(7, 0), canary=(1, 0), latencies=())
    following["reporter"], following["window"] = "replaying-instance", {"start": now, "end": now + 1.0}
    assert client.post("/sdk/v1/outcomes", json=following, headers=SDK).get_json()["accepted"] == 1
