"""The OpenAPI document at /openapi.json: valid OpenAPI 3, and it documents every route of the app (a route
without documentation, or documentation without a route, fails here)."""

from __future__ import annotations

import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from flagsvc.api import health
from flagsvc.api.openapi import document
from tests.support import ADMIN, SDK
from tests.support.outcomes import envelope

IMPLICIT_METHODS = {"HEAD", "OPTIONS"}  # Flask adds them to every rule; they are not operations of their own
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _openapi_path(rule: str) -> str:
    """Werkzeug's `/flags/<key>` or `/x/<int:id>` -> OpenAPI's `/flags/{key}`, `/x/{id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _routes(app) -> dict[tuple[str, str], object]:
    return {
        (_openapi_path(rule.rule), method.lower()): rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.endpoint.startswith("console.")  # the web console: pages, not API
        for method in sorted(rule.methods - IMPLICIT_METHODS)
    }


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")  # no token: the document is open
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    validate(spec)


def _undocumented(app, spec) -> tuple[list, list]:
    routes = set(_routes(app))
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    return sorted(routes - documented), sorted(documented - routes)


def test_every_route_is_documented_and_every_documented_operation_is_a_route(app, spec):
    assert len(_routes(app)) >= 16
    missing, stale = _undocumented(app, spec)
    assert missing == [], "routes missing from flagsvc/api/openapi.py"
    assert stale == [], "documented operations the app does not have"


def test_a_new_route_without_documentation_is_caught(app):
    spec = document()
    app.add_url_rule("/api/v1/flags/<key>/notes/<int:n>", "admin.notes", lambda key, n: "", methods=["GET", "POST"])
    assert _undocumented(app, spec) == ([("/api/v1/flags/{key}/notes/{n}", "get"),
                                         ("/api/v1/flags/{key}/notes/{n}", "post")], [])


def test_the_served_document_is_the_generated_one(spec):
    assert spec == document()


def test_path_parameters_match_the_routes(app, spec):
    for (path, method), rule in _routes(app).items():
        documented = {p["name"] for p in spec["paths"][path][method].get("parameters", []) if p["in"] == "path"}
        assert documented == set(rule.arguments), (method, path)


def test_security_matches_the_guard(app, spec):
    for (path, method), rule in _routes(app).items():
        security = spec["paths"][path][method]["security"]
        if rule.endpoint in health.PUBLIC_ENDPOINTS:
            assert security == [], path
            assert "401" not in spec["paths"][path][method]["responses"]
        elif rule.endpoint.startswith(("sdk.", "ofrep.")):
            assert security == [{"sdkKey": []}, {"adminToken": []}], path
        else:
            assert security == [{"adminToken": []}], path
            assert "403" in spec["paths"][path][method]["responses"], path
    schemes = spec["components"]["securitySchemes"]
    assert schemes["adminToken"] == schemes["sdkKey"] | {"description": schemes["adminToken"]["description"]}
    assert schemes["sdkKey"]["type"] == "http" and schemes["sdkKey"]["scheme"] == "bearer"
    assert set(health.PUBLIC_ENDPOINTS) == {"health.healthz", "health.readyz", "health.metrics", "health.openapi"}


def test_every_error_response_uses_the_shared_error_shape(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = error["properties"]["error"]
    assert set(detail["properties"]) == set(detail["required"]) == {"code", "message", "fields"}
    assert "not_found" in detail["properties"]["code"]["enum"]
    assert detail["properties"]["fields"]["additionalProperties"] == {"type": "array", "items": {"type": "string"}}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and not (path.startswith("/ofrep/") and status in ("400", "404")):
                    assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (method, path, status)
            if operation["security"]:
                assert "401" in operation["responses"], (method, path)


def test_request_bodies_come_from_the_marshmallow_schemas(spec):
    def body(path, method):
        return spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert body("/api/v1/flags", "post").endswith("/FlagCreate")
    assert body("/api/v1/flags/{key}", "patch").endswith("/FlagUpdate")
    assert body("/api/v1/flags/{key}/{action}", "post").endswith("/Reason")
    assert body("/api/v1/flags/{key}/percent", "put").endswith("/Percent")
    assert body("/sdk/v1/outcomes", "post").endswith("/OutcomeBatch")
    schemas = spec["components"]["schemas"]
    assert schemas["FlagCreate"]["required"] == ["key"]
    assert schemas["FlagCreate"]["additionalProperties"] is False
    assert schemas["Percent"]["properties"]["percent"] == {"type": "number", "minimum": 0.0, "maximum": 100.0}
    assert schemas["OutcomeBatch"]["properties"]["flags"]["maxProperties"] == 1000
    assert schemas["OutcomeBatch"]["properties"]["batch_id"]["pattern"] == "^[A-Za-z0-9_-]{8,64}$"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), (method, path)


def test_documented_success_bodies_match_what_the_server_sends(client, spec):
    """A smoke test of the response schemas on real answers (the fuzz test covers the rest)."""

    def check30(response, status, path, method):
        assert response.status_code == status, response.get_data(as_text=True)
        schema = spec["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
        OAS30Validator({**schema, "components": spec["components"]}).validate(response.get_json())

    check30(client.post("/api/v1/flags", headers=ADMIN, json={"key": "doc"}), 201, "/api/v1/flags", "post")
    check30(client.post("/api/v1/flags/doc/start", headers=ADMIN), 200, "/api/v1/flags/{key}/{action}", "post")
    check30(client.get("/api/v1/flags", headers=ADMIN), 200, "/api/v1/flags", "get")
    check30(client.get("/api/v1/flags/doc/history", headers=ADMIN), 200, "/api/v1/flags/{key}/history", "get")
    check30(client.get("/api/v1/flags/doc/stats", headers=ADMIN), 200, "/api/v1/flags/{key}/stats", "get")
    check30(client.get("/sdk/v1/flags", headers=SDK), 200, "/sdk/v1/flags", "get")
    check30(client.get("/api/v1/flags", headers=SDK), 403, "/api/v1/flags", "get")
    check30(client.get("/api/v1/flags/nope", headers=ADMIN), 404, "/api/v1/flags/{key}", "get")
    check30(client.post("/api/v1/flags", headers=ADMIN, json={"key": "x", "stages": [5, 1]}), 400,
            "/api/v1/flags", "post")


def test_response_bodies_are_their_typed_definitions_key_for_key(client, spec):
    """The documented bodies are read off the TypedDicts the views build; here the bodies really sent carry
    exactly the keys those definitions (and so the document) name."""
    from flagsvc.api.openapi import RESPONSES, _component

    documented = {_component(typed): set(typed.__annotations__) for typed in RESPONSES}
    client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    flag = client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()
    assert set(flag) == documented["Flag"]
    assert set(client.get("/api/v1/flags", headers=ADMIN).get_json()) == documented["FlagList"]
    history = client.get("/api/v1/flags/new_checkout/history", headers=ADMIN).get_json()
    assert set(history) == documented["FlagHistory"]
    assert {frozenset(entry) for entry in history["history"]} == {frozenset(documented["HistoryEntry"])}
    assert set(client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()) == documented["FlagStats"]
    snapshot = client.get("/sdk/v1/flags", headers=SDK).get_json()
    assert set(snapshot) == documented["Snapshot"] - {"segments"}  # present once a segment exists
    sdk_flag = spec["components"]["schemas"]["Snapshot"]["properties"]["flags"]["additionalProperties"]
    assert set(snapshot["flags"]["new_checkout"]) == set(sdk_flag["required"])  # a flag without targeting
    segment = {"name": "nz", "conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}
    assert set(client.post("/api/v1/segments", json=segment, headers=ADMIN).get_json()) == documented["Segment"]
    assert set(client.get("/api/v1/segments", headers=ADMIN).get_json()) == documented["SegmentList"]
    client.patch("/api/v1/flags/new_checkout", json={"eligible_segments": ["nz"], "bucket_by": "org",
                                                     "analysis": {"stratify_by": ["plan"]}}, headers=ADMIN)
    snapshot = client.get("/sdk/v1/flags", headers=SDK).get_json()
    assert set(snapshot) == documented["Snapshot"]
    assert set(snapshot["flags"]["new_checkout"]) == set(sdk_flag["properties"])  # targeting, strata: every field
    receipt = client.post("/sdk/v1/outcomes", json=envelope({}), headers=SDK).get_json()
    assert set(receipt) == documented["OutcomeReceipt"]
    assert set(client.get("/healthz").get_json()) == documented["Status"]
    assert set(client.get("/api/v1/flags/nope", headers=ADMIN).get_json()) == documented["Error"]
    for name, keys in documented.items():
        assert set(spec["components"]["schemas"][name]["properties"]) == keys, name
