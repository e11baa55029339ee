"""OFREP over the API (fakeredis): the answers are the SDK's, id for id and context for context; reasons,
variants and metadata; OFREP's error shapes; the bulk ETag and its 304; who may ask."""

from __future__ import annotations

import pytest
from flagsvc_client import FlagClient

from tests.support import ADMIN, SDK

NZ = {"name": "nz", "conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}


def _evaluate(client, key: str, context: object, headers=SDK):
    return client.post(f"/ofrep/v1/evaluate/flags/{key}", json={"context": context}, headers=headers)


def _local_client(client) -> FlagClient:
    """The Python SDK, offline, on exactly the snapshot the server serves."""
    snapshot = client.get("/sdk/v1/flags", headers=SDK).get_json()
    return FlagClient(offline=True, bootstrap=snapshot)


@pytest.fixture
def flags(client):
    for key in ("rolling", "killed", "targeted", "orgs"):
        assert client.post("/api/v1/flags", json={"key": key}, headers=ADMIN).status_code == 201
    assert client.post("/api/v1/segments", json=NZ, headers=ADMIN).status_code == 201
    assert client.put("/api/v1/flags/rolling/percent", json={"percent": 30}, headers=ADMIN).status_code == 200
    assert client.patch("/api/v1/flags/rolling", json={"allow": ["vip"], "deny": ["banned"]},
                        headers=ADMIN).status_code == 200
    assert client.patch("/api/v1/flags/targeted", json={"eligible_segments": ["nz"]},
                        headers=ADMIN).status_code == 200
    assert client.put("/api/v1/flags/targeted/percent", json={"percent": 50}, headers=ADMIN).status_code == 200
    assert client.patch("/api/v1/flags/orgs", json={"bucket_by": "org"}, headers=ADMIN).status_code == 200
    assert client.put("/api/v1/flags/orgs/percent", json={"percent": 40}, headers=ADMIN).status_code == 200
    return client


def test_every_answer_is_the_sdks(flags):
    sdk = _local_client(flags)
    contexts = [{}, {"country": "NZ"}, {"country": "AU"}, {"org": "acme"}, {"org": "initech", "country": "NZ"}]
    users = [f"user-{i}" for i in range(300)] + ["vip", "banned", 12345]
    seen = set()
    for key in ("rolling", "killed", "targeted", "orgs"):
        for n, user in enumerate(users):
            context = {**contexts[n % len(contexts)], **({"org": f"org-{n % 13}"} if n % 3 else {})}
            answer = _evaluate(flags, key, {"targetingKey": user, **context}).get_json()
            expected = sdk.evaluate(key, user, context=context)
            assert (answer["value"], answer["metadata"]["flagsvcReason"]) == (expected.value, expected.reason)
            assert answer["variant"] == ("canary" if expected.value else "stable")
            seen.add((key, answer["reason"], answer["value"]))
    assert {("rolling", "SPLIT", True), ("rolling", "SPLIT", False), ("rolling", "TARGETING_MATCH", True),
            ("rolling", "TARGETING_MATCH", False), ("killed", "DISABLED", False), ("targeted", "SPLIT", True),
            ("targeted", "TARGETING_MATCH", False), ("orgs", "SPLIT", True), ("orgs", "TARGETING_MATCH", False)} <= seen
    sdk.close()


def test_metadata_carries_revision_percent_and_the_user_bucket(flags):
    answer = _evaluate(flags, "rolling", {"targetingKey": "u1"}).get_json()
    flag = flags.get("/api/v1/flags/rolling", headers=ADMIN).get_json()
    assert answer["metadata"]["revision"] == flag["revision"] and answer["metadata"]["percent"] == 30.0
    from flagsvc_client.protocol.bucketing import unit

    assert answer["metadata"]["unit"] == unit(flag["salt"], "u1")
    outside = _evaluate(flags, "targeted", {"targetingKey": "u1", "country": "AU"}).get_json()
    assert outside["metadata"]["flagsvcReason"] == "not_eligible" and "unit" not in outside["metadata"]


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"not json", 400, "PARSE_ERROR"),
    (b"[1, 2]", 400, "PARSE_ERROR"),
    (b"{}", 400, "TARGETING_KEY_MISSING"),
    (b'{"context": {"country": "NZ"}}', 400, "TARGETING_KEY_MISSING"),
    (b'{"context": "u1"}', 400, "INVALID_CONTEXT"),
    (b'{"context": {"targetingKey": true}}', 400, "INVALID_CONTEXT"),
    (b'{"context": {"targetingKey": "\\ud800"}}', 400, "INVALID_CONTEXT"),
    (b'{"context": {"targetingKey": "u1", "country": {"nested": 1}}}', 400, "INVALID_CONTEXT"),
])
def test_bad_requests_get_ofreps_error_shape(flags, body, status, code):
    response = flags.post("/ofrep/v1/evaluate/flags/targeted", data=body, headers=SDK)
    assert response.status_code == status
    assert response.get_json() == {"key": "targeted", "errorCode": code, "errorDetails": response.get_json()[
        "errorDetails"]} and response.get_json()["errorDetails"]


def test_an_unknown_flag_is_flag_not_found(flags):
    response = _evaluate(flags, "nope", {"targetingKey": "u1"})
    assert response.status_code == 404
    assert response.get_json()["errorCode"] == "FLAG_NOT_FOUND" and response.get_json()["key"] == "nope"


def test_bulk_evaluates_every_flag_with_an_etag(flags):
    sdk = _local_client(flags)
    context = {"targetingKey": "user-7", "country": "NZ", "org": "acme"}
    response = flags.post("/ofrep/v1/evaluate/flags", json={"context": context}, headers=SDK)
    assert response.status_code == 200
    body = response.get_json()
    assert [f["key"] for f in body["flags"]] == ["killed", "orgs", "rolling", "targeted"]
    for answer in body["flags"]:
        assert answer["value"] == sdk.is_enabled(answer["key"], "user-7", context={"country": "NZ", "org": "acme"})
    etag = response.headers["ETag"]
    assert etag.startswith('"') and body["metadata"]["version"] in etag
    again = flags.post("/ofrep/v1/evaluate/flags", json={"context": context}, headers={**SDK, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag and not again.data
    star = flags.post("/ofrep/v1/evaluate/flags", json={"context": context}, headers={**SDK, "If-None-Match": "*"})
    assert star.status_code == 200 and star.get_json() == body  # `*` is no cached answer of this context
    other = flags.post("/ofrep/v1/evaluate/flags", json={"context": {**context, "targetingKey": "user-8"}},
                       headers={**SDK, "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag
    assert flags.post("/api/v1/flags/killed/start", headers=ADMIN).status_code == 200
    changed = flags.post("/ofrep/v1/evaluate/flags", json={"context": context}, headers={**SDK, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    killed = next(f for f in changed.get_json()["flags"] if f["key"] == "killed")
    assert killed["reason"] == "SPLIT" and killed["metadata"]["state"] == "rolling"
    sdk.close()


def test_bulk_reports_a_flag_it_cannot_evaluate_among_the_others(flags):
    context = {"targetingKey": "u1", "country": ["NZ", 3]}  # a list holding a number: the segment cannot read it
    body = flags.post("/ofrep/v1/evaluate/flags", json={"context": context}, headers=SDK).get_json()
    by_key = {f["key"]: f for f in body["flags"]}
    assert by_key["targeted"]["errorCode"] == "INVALID_CONTEXT" and "value" in by_key["rolling"]
    failed = flags.post("/ofrep/v1/evaluate/flags", data=b"{}", headers=SDK)
    assert failed.status_code == 400 and failed.get_json()["errorCode"] == "TARGETING_KEY_MISSING"
    assert "key" not in failed.get_json()


def test_sdk_keys_and_admin_tokens_may_evaluate_nobody_else(flags):
    for headers in (SDK, ADMIN):
        assert _evaluate(flags, "rolling", {"targetingKey": "u1"}, headers).status_code == 200
    refused = _evaluate(flags, "rolling", {"targetingKey": "u1"}, {"Authorization": "Bearer wrong-token"})
    assert refused.status_code == 401
    assert flags.post("/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u"}}).status_code == 401


@pytest.mark.parametrize("body", [
    "[" * 20_000 + "]" * 20_000,
    '{"context": ' + "[" * 20_000 + "]" * 20_000 + "}",
    '{"context": {"targetingKey": 1e309}}',
    '{"context": {"targetingKey": ' + "9" * 5000 + "}}",
    '{"context": {"targetingKey": NaN}}',
    '{"context": {"targetingKey": "u1", "country": ' + "[" * 5_000 + "]" * 5_000 + "}}",
    b'{"context": {"targetingKey": "\xff"}}',
])
def test_hostile_bodies_get_a_400_never_a_500(flags, body):
    for path in ("/ofrep/v1/evaluate/flags/targeted", "/ofrep/v1/evaluate/flags"):
        response = flags.post(path, data=body, headers=SDK)
        assert response.status_code == 400, (path, response.get_data(as_text=True)[:200])
        assert response.get_json()["errorCode"] in ("PARSE_ERROR", "INVALID_CONTEXT")


def test_a_large_integer_targeting_key_is_the_same_user_as_its_decimal_string(flags):
    as_int = _evaluate(flags, "rolling", {"targetingKey": 10**30}).get_json()
    as_text = _evaluate(flags, "rolling", {"targetingKey": str(10**30)}).get_json()
    assert as_int["value"] == as_text["value"] and as_int["metadata"]["unit"] == as_text["metadata"]["unit"]


def test_while_the_store_is_unreachable_the_last_snapshot_answers():
    from flagsvc_client.protocol.bucketing import is_canary

    from flagsvc.service.ofrep import OfrepEvaluator, parse_request
    from flagsvc.service.snapshots import ServedSnapshot
    from flagsvc.store.roles import ConfigVersion

    body = b'{"epoch":"e1","version":3,"flags":{"f":{"key":"f","state":"rolling","percent":30,"revision":2,' \
           b'"salt":"f","allow":[],"deny":[]}}}'
    served = [ServedSnapshot(ConfigVersion("e1", 3), body, "d", 0.0)]

    def latest() -> ServedSnapshot:
        if not served:
            raise ConnectionError("redis is down")
        return served[0]

    evaluator = OfrepEvaluator(latest)
    first = evaluator.current()
    served.clear()
    during = evaluator.current()
    assert during is first and during.etag == '"e1-3"'
    answers = [during.evaluate("f", parse_request({"context": {"targetingKey": f"u{i}"}})) for i in range(50)]
    assert [a.value for a in answers if a] == [is_canary("f", f"u{i}", 30) for i in range(50)]
    with pytest.raises(ConnectionError):
        OfrepEvaluator(latest).current()  # a process that never had a snapshot: the outage shows (a 503)
