"""Property-based fuzzing of the whole HTTP API against the app on a real redis-server.

1. schemathesis, from the app's own OpenAPI document, every operation once with the admin token and once with
   the SDK key, valid and invalid requests alike: never a 5xx, and every answer is one the document describes
   (a documented status code and content type, documented headers, a body matching its schema: the error shape
   for every 4xx).
2. hypothesis, for inputs the document cannot pin down: any text where a number goes, JSON nested deeper than
   the parser's recursion limit, JSON numbers at and beyond the edges of the float range.

Bounded so CI stays fast: a few examples per operation and phase, fixed seeds, no example database.
(`schemathesis.pytest.from_fixture` breaks on pytest 9 -- it sets `Function._nodeid` -- so the schema is loaded
from the document at collection time and each case is sent to the fixture's app with `call(app=...)`.)
"""

from __future__ import annotations

import json
import sys

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flagsvc.api.openapi import document
from tests.support import ADMIN, SDK

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 10

CONFIG = {
    "seed": 20261123,  # reproducible runs; change it to explore elsewhere
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "no-shrink": True, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
}


@pytest.fixture(params=["admin", "sdk"])
def token(request: pytest.FixtureRequest) -> dict[str, str]:
    return {"admin": ADMIN, "sdk": SDK}[request.param]


@pytest.fixture
def app_under_test(real_app):
    # The SSE stream would otherwise run forever: with the change feed closed it sends its first event and ends.
    real_app.extensions["flagsvc"].changes.close()
    # A few flags in different states, so that generated keys and actions meet real data now and then.
    client = real_app.test_client()
    for key, action in (("a", None), ("b", "start"), ("c", "rollback")):
        assert client.post("/api/v1/flags", headers=ADMIN, json={"key": key}).status_code == 201
        if action:
            assert client.post(f"/api/v1/flags/{key}/{action}", headers=ADMIN).status_code == 200
    return real_app


# The document the app serves (tests/unit/test_openapi.py checks that it is this one), loaded at collection time
# so that every operation is a test item of its own.
schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict(CONFIG))


@pytest.mark.slow  # the campaign: ~25 operations x tokens, up to a second or two each (~18 s in all)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_every_answer_is_documented(case, app_under_test, token):
    case.call_and_validate(app=app_under_test, headers=token, checks=CHECKS)


# --- what the document cannot pin down ---------------------------------------------------------------------

DOCUMENT = document()
JSON_BODY_OPERATIONS = [
    ("post", "/api/v1/flags", "/api/v1/flags"),
    ("patch", "/api/v1/flags/a", "/api/v1/flags/{key}"),
    ("post", "/api/v1/flags/a/pause", "/api/v1/flags/{key}/{action}"),
    ("put", "/api/v1/flags/a/percent", "/api/v1/flags/{key}/percent"),
    ("post", "/sdk/v1/outcomes", "/sdk/v1/outcomes"),
]
BOUNDED = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_documented(response, method: str, template: str, request: str) -> None:
    responses = DOCUMENT["paths"][template][method]["responses"]
    assert response.status_code < 500, f"{request} -> {response.status_code} {response.get_data(as_text=True)}"
    assert str(response.status_code) in responses, (request, response.status_code, sorted(responses))
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    OAS30Validator({**schema, "components": DOCUMENT["components"]}).validate(response.get_json())


@BOUNDED
@given(limit=st.text(max_size=4) | st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=3))
def test_any_history_limit_gets_a_documented_answer(app_under_test, limit):
    response = app_under_test.test_client().get("/api/v1/flags/a/history", query_string={"limit": limit},
                                                headers=ADMIN)
    _assert_documented(response, "get", "/api/v1/flags/{key}/history", f"GET history?limit={limit!r}")


@BOUNDED
@given(operation=st.sampled_from(JSON_BODY_OPERATIONS), depth=st.integers(1, 20_000), wrap=st.booleans())
def test_deeply_nested_json_bodies_get_a_documented_answer(app_under_test, operation, depth, wrap):
    method, path, template = operation
    nested = "[" * depth + "]" * depth
    body = f'{{"analysis": {{"alpha": {nested}}}}}' if wrap else nested  # a body under 1 MiB: no 413
    response = app_under_test.test_client().open(path, method=method.upper(), data=body, headers=ADMIN)
    shape = f'{{"analysis": {{"alpha": [*{depth}]}}}}' if wrap else f"[*{depth}]"
    _assert_documented(response, method, template, f"{method.upper()} {path} with body {shape}")


# Any JSON number, the float range's edges and integers beyond it included (JSON has no size limit).
NUMBERS = (st.floats(allow_nan=False, allow_infinity=False) | st.integers()
           | st.sampled_from([sys.float_info.max, -sys.float_info.max, 10**309, -(10**309)]))
NUMBER_FIELDS = [
    ("post", "/api/v1/flags", "/api/v1/flags", lambda n: {"key": "fuzzed", "stages": [5, n]}),
    ("patch", "/api/v1/flags/a", "/api/v1/flags/{key}", lambda n: {"stages": [n, 100]}),
    ("patch", "/api/v1/flags/a", "/api/v1/flags/{key}", lambda n: {"analysis": {"alpha": n}}),
    ("put", "/api/v1/flags/a/percent", "/api/v1/flags/{key}/percent", lambda n: {"percent": n}),
    ("post", "/sdk/v1/outcomes", "/sdk/v1/outcomes", lambda n: {"batch_id": "fuzz-batch", "flags": {}, "sent_at": n}),
    ("post", "/sdk/v1/outcomes", "/sdk/v1/outcomes",
     lambda n: {"batch_id": "fuzz-batch", "reporter": "fuzz-reporter", "window": {"start": n, "end": n}, "flags": {}}),
]


@BOUNDED
@given(target=st.sampled_from(NUMBER_FIELDS), number=NUMBERS)
def test_any_json_number_in_a_number_field_gets_a_documented_answer(app_under_test, target, number):
    method, path, template, build = target
    body = json.dumps(build(number))
    client = app_under_test.test_client()
    response = client.open(path, method=method.upper(), data=body, headers=ADMIN)
    if response.status_code == 201:
        client.delete("/api/v1/flags/fuzzed", headers=ADMIN)
    _assert_documented(response, method, template, f"{method.upper()} {path} {body}")
