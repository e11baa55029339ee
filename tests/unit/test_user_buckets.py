"""Outcomes per user bucket on the wire: accepted, validated and added up per bucket (slow requests too, when
the SDK counts them); batches without them still accepted (SDKs that do not count buckets)."""

from __future__ import annotations

import pytest
from flagsvc_client.protocol.limits import UNIT_BUCKETS

from tests.support import ADMIN, SDK
from tests.support.outcomes import envelope


@pytest.fixture
def flag(client):
    client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    return client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()


def body(revision: int, batch_id: str, canary_units: object = None) -> dict:
    canary = {"count": 10, "errors": 2, "error_users": 1}
    if canary_units is not None:
        canary["units"] = canary_units
    return envelope({"new_checkout": {"revision": revision, "arms": {
        "stable": {"count": 90, "errors": 1, "error_users": 1, "units": {"3": [60, 1], "40": [30, 0]}},
        "canary": canary,
    }}}, batch_id)


def test_user_buckets_add_up_per_bucket_and_old_batches_are_still_accepted(client, flag, fake_store):
    revision = flag["revision"]
    for batch_id in ("b-00000001", "b-00000002"):
        answer = client.post("/sdk/v1/outcomes", json=body(revision, batch_id, {"7": [10, 2, 3]}), headers=SDK)
        assert answer.status_code == 200, answer.get_json()
    old = client.post("/sdk/v1/outcomes", json=body(revision, "b-00000003"), headers=SDK)  # no canary buckets
    assert old.status_code == 200 and old.get_json()["accepted"] == 1
    totals = fake_store.outcome_totals("new_checkout", revision)
    assert dict(totals["stable"].units) == {3: (180, 3), 40: (90, 0)}
    assert dict(totals["canary"].units) == {7: (20, 4)}
    assert dict(totals["canary"].slow_units) == {7: 6} and totals["stable"].slow_units == {}
    assert totals["canary"].slow_by_unit() == {7: (20, 6)} and totals["stable"].slow_by_unit() == {}
    assert totals["canary"].count == 30


@pytest.mark.parametrize("units", [
    {str(UNIT_BUCKETS): [1, 0]}, {"-1": [1, 0]}, {"07": [1, 0]}, {"1": [1, 2]}, {"1": [1]}, {"1": [1.5, 0]},
    {"1": "x"}, [1, 2], {"1": [True, 0]}, {"1": [1, 0, 2]}, {"1": [1, 0, -1]}, {"1": [3, 0, 1, 1]},
])
def test_malformed_user_buckets_are_refused(client, flag, units):
    answer = client.post("/sdk/v1/outcomes", json=body(flag["revision"], "b-00000001", units), headers=SDK)
    assert answer.status_code == 400
