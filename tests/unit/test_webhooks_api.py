"""/api/v1/webhooks over the app (fakeredis): created with a secret shown once, listed, read, deleted and audited;
bad input a 400 naming the field with nothing stored; a destination outside the allow-list refused; read tokens
read and cannot write; the delivery log."""

from __future__ import annotations

import dataclasses

import pytest

from flagsvc.api import create_app
from flagsvc.domain.destinations import AllowList
from tests.support import ADMIN, TEST_SETTINGS

READ = {"Authorization": "Bearer read-only-secret-1"}
HOOK = {"url": "https://hooks.example.com/in", "events": ["rollback", "hold"], "hold_seconds": 600}


@pytest.fixture
def api(fake_store):
    settings = dataclasses.replace(TEST_SETTINGS, webhook_allow=AllowList.parse("hooks.example.com"),
                                   read_tokens={"viewer": "read-only-secret-1"})
    return create_app(settings, store=fake_store, controller=False).test_client()


def test_a_webhook_is_created_read_listed_and_deleted(api):
    created = api.post("/api/v1/webhooks", json={**HOOK, "flag": "checkout", "description": "ops channel"},
                       headers=ADMIN)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert created.headers["Location"] == f"/api/v1/webhooks/{body['id']}"
    shown = api.get(f"/api/v1/webhooks/{body['id']}", headers=READ).json
    assert "secret" not in shown and shown == {k: v for k, v in body.items() if k != "secret"}
    assert shown["created_by"] == "ops" and shown["flag"] == "checkout" and shown["hold_seconds"] == 600
    assert api.get("/api/v1/webhooks", headers=READ).json == {"webhooks": [shown]}
    assert api.get(f"/api/v1/webhooks/{body['id']}/deliveries", headers=READ).json == {"deliveries": []}
    assert api.delete(f"/api/v1/webhooks/{body['id']}", headers=ADMIN).status_code == 204
    assert api.get(f"/api/v1/webhooks/{body['id']}", headers=ADMIN).status_code == 404
    assert api.delete(f"/api/v1/webhooks/{body['id']}", headers=ADMIN).status_code == 404
    audit = api.get("/api/v1/audit?actor=ops", headers=ADMIN).json["entries"]
    assert [(e["action"], e["kind"], e["target"]) for e in audit] == [("delete", "webhook", body["id"]),
                                                                      ("create", "webhook", body["id"])]


def test_a_destination_outside_the_allow_list_is_a_400_naming_url(api):
    for url in ("https://evil.example.org/in", "http://169.254.169.254/latest", "https://hooks.example.com.evil.io/"):
        refused = api.post("/api/v1/webhooks", json={**HOOK, "url": url}, headers=ADMIN)
        assert refused.status_code == 400
        assert list(refused.json["error"]["fields"]) == ["url"]
        assert "FLAGSVC_WEBHOOK_ALLOW" in refused.json["error"]["fields"]["url"][0]
    assert api.get("/api/v1/webhooks", headers=ADMIN).json == {"webhooks": []}


@pytest.mark.parametrize(("body", "field"), [
    ({"events": ["rollback"]}, "url"),
    ({"url": "https://hooks.example.com/in"}, "events"),
    ({**HOOK, "events": ["explode"]}, "events"),
    ({**HOOK, "events": []}, "events"),
    ({**HOOK, "hold_seconds": "600"}, "hold_seconds"),
    ({**HOOK, "hold_seconds": 0}, "hold_seconds"),
    ({**HOOK, "flag": "Not A Key"}, "flag"),
    ({**HOOK, "url": "javascript:alert(1)"}, "url"),
    ({**HOOK, "url": "https://user:pw@hooks.example.com/"}, "url"),
    ({**HOOK, "url": "https://hooks.example.com:99999/"}, "url"),
    ({**HOOK, "secret": "mine"}, "secret"),
    ({**HOOK, "description": "\u0000"}, "description"),
])
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(api, body, field):
    refused = api.post("/api/v1/webhooks", json=body, headers=ADMIN)
    assert refused.status_code == 400, refused.json
    assert field in refused.json["error"]["fields"]
    assert api.get("/api/v1/webhooks", headers=ADMIN).json == {"webhooks": []}


def test_read_tokens_cannot_write_and_sdk_keys_cannot_read(api):
    made = api.post("/api/v1/webhooks", json=HOOK, headers=ADMIN).json
    assert api.post("/api/v1/webhooks", json=HOOK, headers=READ).status_code == 403
    assert api.delete(f"/api/v1/webhooks/{made['id']}", headers=READ).status_code == 403
    assert api.get("/api/v1/webhooks", headers={"Authorization": "Bearer sdk-secret-key-1"}).status_code == 403
    assert len(api.get("/api/v1/webhooks", headers=ADMIN).json["webhooks"]) == 1


def test_the_delivery_log_limit_is_checked(api):
    made = api.post("/api/v1/webhooks", json=HOOK, headers=ADMIN).json
    for bad in ("0", "101", "x", "-1"):
        answer = api.get(f"/api/v1/webhooks/{made['id']}/deliveries?limit={bad}", headers=ADMIN)
        assert answer.status_code == 400 and "limit" in answer.json["error"]["fields"]
    assert api.get("/api/v1/webhooks/wh_0000000000000000/deliveries", headers=ADMIN).status_code == 404


def test_a_create_sent_again_with_its_idempotency_key_creates_one_webhook(api):
    again = {**ADMIN, "Idempotency-Key": "create-ops-hook-1"}
    first = api.post("/api/v1/webhooks", json=HOOK, headers=again)
    second = api.post("/api/v1/webhooks", json=HOOK, headers=again)
    assert first.status_code == second.status_code == 201
    assert first.json == second.json  # the first answer, secret included
    other = api.post("/api/v1/webhooks", json={**HOOK, "events": ["complete"]}, headers=again)
    assert other.status_code == 409 and "Idempotency-Key" in other.json["error"]["fields"]
    assert [w["id"] for w in api.get("/api/v1/webhooks", headers=ADMIN).json["webhooks"]] == [first.json["id"]]
    fresh = api.post("/api/v1/webhooks", json=HOOK, headers={**ADMIN, "Idempotency-Key": "create-ops-hook-2"})
    assert fresh.status_code == 201 and fresh.json["id"] != first.json["id"]
    assert fresh.json["secret"] != first.json["secret"]
    bad = api.post("/api/v1/webhooks", json=HOOK, headers={**ADMIN, "Idempotency-Key": "no spaces"})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json["error"]["fields"]


def test_an_operators_rollback_and_promotion_are_told_with_who_did_it(api, fake_store):
    from flagsvc.store.webhooks import webhooks_for

    hook = api.post("/api/v1/webhooks", json={"url": "https://hooks.example.com/in",
                                              "events": ["rollback", "complete"]}, headers=ADMIN).json
    for key in ("a", "b"):
        assert api.post("/api/v1/flags", json={"key": key, "stages": [50, 100]}, headers=ADMIN).status_code == 201
        assert api.post(f"/api/v1/flags/{key}/start", headers=ADMIN).status_code == 200
    assert api.post("/api/v1/flags/a/pause", headers=ADMIN).status_code == 200  # no event: not one of its kinds
    assert api.post("/api/v1/flags/a/rollback", json={"reason": "checkout <!channel> errors"},
                    headers=ADMIN).status_code == 200
    assert api.post("/api/v1/flags/b/promote", headers=ADMIN).status_code == 200  # the last stage: complete
    deliveries = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=ADMIN).json["deliveries"]
    assert sorted((d["flag"], d["event"], d["status"]) for d in deliveries) == [
        ("a", "rollback", "pending"), ("b", "complete", "pending")]
    store = webhooks_for(fake_store)
    rollback = next(d for d in deliveries if d["event"] == "rollback")
    claimed = store.claim_delivery(rollback["id"], "t", now=rollback["created_at"] + 1, lease=30)
    assert claimed is not None
    import json

    body = json.loads(claimed["body"])
    assert body["reason"] == "by ops: checkout <!channel> errors" and body["detail"] == {"actor": "ops"}
    assert "&lt;!channel&gt;" in body["text"] and body["state"] == "rolled_back"


def test_a_webhook_is_edited_checked_as_at_creation_and_audited(api):
    hook = api.post("/api/v1/webhooks", json=HOOK, headers=ADMIN).json
    edited = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"events": ["complete"], "description": "new"},
                       headers=ADMIN)
    assert edited.status_code == 200, edited.json
    assert (edited.json["events"], edited.json["description"], edited.json["url"]) == (["complete"], "new", HOOK["url"])
    assert api.get(f"/api/v1/webhooks/{hook['id']}", headers=READ).json == edited.json
    refused = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "https://evil.example.net/x",
                                                               "hold_seconds": -1}, headers=ADMIN)
    assert refused.status_code == 400 and set(refused.json["error"]["fields"]) == {"url", "hold_seconds"}
    assert api.get(f"/api/v1/webhooks/{hook['id']}", headers=READ).json == edited.json  # nothing changed
    assert api.patch(f"/api/v1/webhooks/{hook['id']}", json={"events": ["x"]}, headers=READ).status_code == 403
    assert api.patch("/api/v1/webhooks/wh_0000000000000000", json={}, headers=ADMIN).status_code == 404
    audit = api.get("/api/v1/audit?action=update", headers=ADMIN).json["entries"]
    assert [(e["kind"], e["target"], e["detail"]) for e in audit] == [
        ("webhook", hook["id"], {"events": ["complete"], "description": "new"})]


def test_a_rotated_secret_is_shown_once_and_the_old_one_signs_too_for_a_while(api, fake_store):
    from flagsvc.domain import webhook as hooks
    from flagsvc.domain.webhook import Webhook
    from flagsvc.store.webhooks import webhooks_for

    hook = api.post("/api/v1/webhooks", json=HOOK, headers=ADMIN).json
    rotated = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"keep_previous_seconds": 3600},
                       headers=ADMIN)
    assert rotated.status_code == 200, rotated.json
    new_secret = rotated.json["secret"]
    assert new_secret.startswith("whsec_") and new_secret != hook["secret"]
    assert "secret" not in api.get(f"/api/v1/webhooks/{hook['id']}", headers=READ).json
    (stored,) = [Webhook.from_stored(doc) for doc in webhooks_for(fake_store).webhooks()]
    until = rotated.json["previous_secret_until"]
    header = hooks.signature(stored.secrets_at(until - 1), 1000, b"{}")
    assert hooks.verify(new_secret, header, b"{}", now=1000) and hooks.verify(hook["secret"], header, b"{}", now=1000)
    after = hooks.signature(stored.secrets_at(until + 1), 1000, b"{}")
    assert hooks.verify(new_secret, after, b"{}", now=1000) and not hooks.verify(hook["secret"], after, b"{}", now=1000)
    bad = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"keep_previous_seconds": -5}, headers=ADMIN)
    assert bad.status_code == 400 and "keep_previous_seconds" in bad.json["error"]["fields"]
    assert api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=READ).status_code == 403
    keyed = {**ADMIN, "Idempotency-Key": "rot-1"}
    first = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=keyed).json
    assert api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=keyed).json == first  # not twice
    assert api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=ADMIN).json["secret"] != first["secret"]
    assert api.get("/api/v1/audit?action=rotate_secret", headers=ADMIN).json["entries"][0]["target"] == hook["id"]


def test_flagctl_edits_a_webhook_and_rotates_its_secret(fake_store):
    import json

    from click.testing import CliRunner

    from flagsvc.cli import flagctl
    from tests.support import serving

    settings = dataclasses.replace(TEST_SETTINGS, webhook_allow=AllowList.parse("hooks.example.com"))
    app = create_app(settings, store=fake_store, controller=False)
    hook = app.test_client().post("/api/v1/webhooks", json=HOOK, headers=ADMIN).json
    runner = CliRunner()
    with serving(app) as url:
        base = ["--url", url, "--token", ADMIN["Authorization"].split()[1]]
        edited = runner.invoke(flagctl.main, [*base, "webhook", "edit", hook["id"], "--event", "complete",
                                              "--flag", "checkout", "--json"])
        nothing = runner.invoke(flagctl.main, [*base, "webhook", "edit", hook["id"]])
        rotated = runner.invoke(flagctl.main, [*base, "webhook", "rotate-secret", hook["id"], "--keep-previous", "0"])
        listed = runner.invoke(flagctl.main, [*base, "webhook", "list"])
    assert edited.exit_code == 0, edited.output
    assert (json.loads(edited.output)["events"], json.loads(edited.output)["flag"]) == (["complete"], "checkout")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
    assert rotated.exit_code == 0, rotated.output
    assert "new signing secret (shown once, keep it): whsec_" in rotated.output
    assert "the old one no longer signs" in rotated.output and hook["secret"] not in rotated.output
    assert "checkout" in listed.output and "complete" in listed.output
