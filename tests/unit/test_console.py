"""The web console at /ui/ through Flask's test client: the Content-Security-Policy, the session cookie's flags,
CSRF refusals, signing out revoking the session, user text escaped in every page, read-only sessions changing
nothing, the revision a page showed guarding its changes, and the event stream. The real browser test is
tests/integration/test_console_browser.py."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlencode

import pytest

from flagsvc.api import create_app
from flagsvc.api.schemas import reason_body
from flagsvc.config import ConfigError, Settings
from flagsvc.console import model
from flagsvc.console.events import EXTENSION, LiveDocs
from flagsvc.console.evidence import readable
from flagsvc.console.model import thinned
from flagsvc.console.security import CONTENT_SECURITY_POLICY
from flagsvc.domain.destinations import AllowList
from flagsvc.service.console_sessions import ConsoleSessions
from flagsvc.store.keys import Keys
from flagsvc.store.sessions import MemorySessions, RedisSessions, sessions_for
from tests.support import ADMIN, ADMIN_TOKEN, SDK_KEY, TEST_SETTINGS

READ_TOKEN = "read-only-secret-1"
XSS_DESCRIPTION = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
XSS_REASON = '"><img src=x onerror=alert(1)><b>bold</b>'


@pytest.fixture
def app(fake_store):
    settings = dataclasses.replace(TEST_SETTINGS, read_tokens={"viewer": READ_TOKEN})
    app = create_app(settings, store=fake_store, controller=False)
    client = app.test_client()
    assert client.post("/api/v1/flags", headers=ADMIN, json={"key": "checkout", "description": XSS_DESCRIPTION,
                                                             "stages": [5, 50, 100]}).status_code == 201
    assert client.post("/api/v1/flags/checkout/start", headers=ADMIN, json={"reason": XSS_REASON}).status_code == 200
    return app


def _sign_in(client, token: str = ADMIN_TOKEN, **extra):
    headers = {"Authorization": f"Bearer {token}", "X-Console-Form": "", **extra.pop("headers", {})}
    return client.post("/ui/sign-in", headers=headers, **extra)


def _csrf(client, path: str = "/ui/flags/checkout") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def _act(client, action: str, **fields: str):
    return client.post(f"/ui/flags/checkout/actions/{action}", headers={"X-Console-Form": urlencode(fields)})


def _flag(client) -> dict:
    return client.get("/api/v1/flags/checkout", headers=ADMIN).get_json()


def test_every_console_answer_carries_a_strict_content_security_policy(app):
    client = app.test_client()
    for path in ("/ui/sign-in", "/ui/static/console.js", "/ui/static/console.css", "/ui/flags"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert policy == CONTENT_SECURITY_POLICY, path
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    _sign_in(client)
    for path in ("/ui/flags", "/ui/flags/checkout", "/ui/audit", "/ui/webhooks"):
        page = client.get(path)
        assert page.status_code == 200, path
        html = page.get_data(as_text=True)
        assert page.headers["Cache-Control"] == "no-store"
        # no inline script, no inline handler, no style attribute: the policy would block them anyway
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path
        assert not re.search(r"<[^>]*\s(on[a-z]+|style)=", html), path


def test_signing_in_gives_an_httponly_samesite_strict_cookie_that_expires(app):
    client = app.test_client()
    response = _sign_in(client)
    assert response.status_code == 200 and response.get_json() == {"next": "/ui/flags"}
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("flagsvc_console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui/" in cookie
    assert re.search(r"Max-Age=28800\b", cookie) and "Expires=" in cookie
    assert ADMIN_TOKEN not in cookie
    # Secure although this request came over plain HTTP: behind a TLS-terminating proxy the server cannot tell
    assert "; Secure" in cookie
    assert client.get("/ui/flags").status_code == 200
    out = client.post("/ui/sign-out", headers={"X-Console-Form": urlencode({"csrf": _csrf(client, "/ui/flags")})})
    assert "; Secure" in out.headers["Set-Cookie"]


def test_a_plain_http_deployment_opts_out_of_the_secure_cookie(fake_store):
    settings = dataclasses.replace(TEST_SETTINGS, console_insecure_cookie=True)
    app = create_app(settings, store=fake_store, controller=False)
    plain = _sign_in(app.test_client()).headers["Set-Cookie"]
    assert "HttpOnly" in plain and "Secure" not in plain
    tls = _sign_in(app.test_client(), base_url="https://localhost").headers["Set-Cookie"]
    assert "; Secure" in tls  # over HTTPS it is Secure all the same
    # the sign-in page tells console.js whether a plain-HTTP page at another address would lose the cookie
    assert 'data-secure-cookie="0"' in app.test_client().get("/ui/sign-in").get_data(as_text=True)
    default = create_app(TEST_SETTINGS, store=fake_store, controller=False).test_client()
    assert 'data-secure-cookie="1"' in default.get("/ui/sign-in").get_data(as_text=True)


@pytest.mark.parametrize(("raw", "expected"), [("", False), ("0", False), ("1", True), ("true", True),
                                               ("no", False), ("YES", True)])
def test_the_insecure_cookie_setting(raw, expected):
    assert Settings.from_env({"FLAGSVC_CONSOLE_INSECURE_COOKIE": raw}).console_insecure_cookie is expected
    assert Settings.from_env({}).console_insecure_cookie is False


def test_a_bad_insecure_cookie_setting_is_refused_naming_it():
    with pytest.raises(ConfigError, match="FLAGSVC_CONSOLE_INSECURE_COOKIE"):
        Settings.from_env({"FLAGSVC_CONSOLE_INSECURE_COOKIE": "maybe"})


def test_a_form_posted_as_a_body_signs_in_too(app):
    client = app.test_client()
    response = client.post("/ui/sign-in", data={"token": READ_TOKEN})
    assert response.status_code == 303 and response.headers["Location"] == "/ui/flags"
    assert "viewer" in client.get("/ui/flags").get_data(as_text=True)


@pytest.mark.parametrize("token", ["not-a-token", SDK_KEY, ""])
def test_unknown_tokens_and_sdk_keys_do_not_sign_in(app, token):
    client = app.test_client()
    response = _sign_in(client, token)
    assert response.status_code == 401 and "Set-Cookie" not in response.headers
    assert response.get_json()["error"]["fields"] == {"token": [response.get_json()["error"]["message"]]}
    assert client.get("/ui/flags").status_code == 302


def test_pages_need_a_session(app):
    client = app.test_client()
    assert client.get("/ui/flags").headers["Location"] == "/ui/sign-in"
    assert client.get("/ui/flags/checkout").status_code == 302
    assert client.get("/ui/events").status_code == 401
    assert client.get("/ui/flags/checkout/data").status_code == 401
    # a bearer token is not a console session
    assert client.get("/ui/flags", headers=ADMIN).status_code == 302


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(app):
    client = app.test_client()
    _sign_in(client)
    before = _flag(client)
    for fields in ({}, {"csrf": "wrong"}):
        response = _act(client, "rollback", reason="x", confirm="yes", revision=str(before["revision"]), **fields)
        assert response.status_code == 403 and "CSRF" in response.get_json()["error"]["message"]
    response = client.post("/ui/flags/checkout/actions/rollback",
                           data={"reason": "x", "confirm": "yes", "revision": before["revision"]})
    assert response.status_code == 403
    assert _flag(client) == before


def test_a_change_from_another_origin_is_refused(app):
    client = app.test_client()
    _sign_in(client)
    csrf, revision = _csrf(client), str(_flag(client)["revision"])
    response = client.post("/ui/flags/checkout/actions/pause", headers={
        "Origin": "https://evil.example", "X-Console-Form": urlencode(
            {"csrf": csrf, "reason": "x", "confirm": "yes", "revision": revision})})
    assert response.status_code == 403 and _flag(client)["state"] == "rolling"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://localhost", "http://localhost:8080",
                                    "http://evil.localhost", "null", "http://localhost/path", "http://"])
def test_a_sign_in_or_change_from_another_origin_says_so(app, origin):
    """Scheme, host and port all count (the test client's console is http://localhost)."""
    client = app.test_client()
    refused = _sign_in(client, headers={"Origin": origin})
    error = refused.get_json()["error"]
    assert refused.status_code == 403 and "Set-Cookie" not in refused.headers
    assert "unknown token" not in error["message"] and "Origin" in error["fields"]
    assert "is not this console's (http://localhost)" in error["message"]
    form_refused = client.post("/ui/sign-in", data={"token": ADMIN_TOKEN}, headers={"Origin": origin})
    assert form_refused.status_code == 403 and "is not this console&#39;s" in form_refused.get_data(as_text=True)
    assert _sign_in(client).status_code == 200
    csrf, revision = _csrf(client), str(_flag(client)["revision"])
    changed = client.post("/ui/flags/checkout/actions/pause", headers={"Origin": origin, "X-Console-Form": urlencode(
        {"csrf": csrf, "reason": "x", "confirm": "yes", "revision": revision})})
    assert changed.status_code == 403 and "is not this console's" in changed.get_json()["error"]["message"]
    assert _flag(client)["state"] == "rolling"


@pytest.mark.parametrize(("origin", "base_url", "headers"), [
    ("http://localhost", "http://localhost", {}), ("HTTP://LocalHost:80", "http://localhost", {}),
    ("https://localhost", "https://localhost", {}), ("https://localhost:443", "http://localhost",
                                                      {"X-Forwarded-Proto": "https"}),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080", {})])
def test_the_consoles_own_origin_signs_in(app, origin, base_url, headers):
    client = app.test_client()
    assert _sign_in(client, base_url=base_url, headers={"Origin": origin, **headers}).status_code == 200


def test_the_reason_fields_take_what_the_api_takes(app):
    client = app.test_client()
    _sign_in(client)
    page = client.get("/ui/flags/checkout").get_data(as_text=True)
    limit = reason_body.fields["reason"].validators[0].max
    lengths = re.findall(r'name="reason" maxlength="(\d+)"', page)
    assert len(lengths) == 6 and set(lengths) == {str(limit)} and limit == 500


def test_an_admin_session_acts_with_a_reason_confirmed_at_the_revision_it_saw(app):
    client = app.test_client()
    _sign_in(client)
    csrf, revision = _csrf(client), str(_flag(client)["revision"])
    refused = _act(client, "pause", csrf=csrf, reason="looking", revision=revision)
    assert refused.status_code == 400 and "confirm" in refused.get_json()["error"]["fields"]
    done = _act(client, "pause", csrf=csrf, reason="looking", confirm="yes", revision=revision)
    assert done.status_code == 200 and done.get_json()["flag"]["state"] == "paused"
    # the page still shows the old revision: its next change is refused, and nothing changes
    stale = _act(client, "rollback", csrf=csrf, reason="late", confirm="yes", revision=revision)
    assert stale.status_code == 412 and _flag(client)["state"] == "paused"
    history = client.get("/api/v1/flags/checkout/history", headers=ADMIN).get_json()["history"]
    assert (history[0]["actor"], history[0]["action"], history[0]["reason"]) == ("ops", "pause", "looking")
    percent = _act(client, "percent", csrf=csrf, reason="by hand", confirm="yes", percent="12.5",
                   revision=str(_flag(client)["revision"]))
    assert percent.status_code == 200 and _flag(client)["percent"] == 12.5
    bad = _act(client, "percent", csrf=csrf, reason="by hand", confirm="yes", percent="150",
               revision=str(_flag(client)["revision"]))
    assert bad.status_code == 400 and "percent" in bad.get_json()["error"]["fields"]


def test_analysis_settings_are_shown_and_edited(app):
    client = app.test_client()
    _sign_in(client)
    page = client.get("/ui/flags/checkout").get_data(as_text=True)
    assert 'name="error_ratio" value="2.0"' in page
    csrf, revision = _csrf(client), str(_flag(client)["revision"])
    bad = client.post("/ui/flags/checkout/analysis", headers={"X-Console-Form": urlencode(
        {"csrf": csrf, "confirm": "yes", "revision": revision, "alpha": "2"})})
    assert bad.status_code == 400 and "analysis.alpha" in bad.get_json()["error"]["fields"]
    done = client.post("/ui/flags/checkout/analysis", headers={"X-Console-Form": urlencode(
        {"csrf": csrf, "confirm": "yes", "revision": revision, "error_ratio": "3", "max_p99_ms": "",
         "min_requests": "200", "on_max_stage": "hold"})})
    assert done.status_code == 200, done.get_json()
    analysis = _flag(client)["analysis"]
    assert (analysis["error_ratio"], analysis["min_requests"], analysis["max_p99_ms"]) == (3.0, 200, None)
    # only the settings sent change (console.js sends the ones the operator changed); none sent is refused
    done = client.post("/ui/flags/checkout/analysis", headers={"X-Console-Form": urlencode(
        {"csrf": csrf, "confirm": "yes", "revision": str(_flag(client)["revision"]), "alpha": "0.02"})})
    assert done.status_code == 200 and _flag(client)["analysis"] == {**analysis, "alpha": 0.02}
    before = _flag(client)
    empty = client.post("/ui/flags/checkout/analysis", headers={"X-Console-Form": urlencode(
        {"csrf": csrf, "confirm": "yes", "revision": str(before["revision"])})})
    assert empty.status_code == 400 and "analysis" in empty.get_json()["error"]["fields"]
    assert _flag(client) == before


def test_a_read_only_session_sees_disabled_actions_and_cannot_change_anything(app):
    client = app.test_client()
    assert _sign_in(client, READ_TOKEN).status_code == 200
    page = client.get("/ui/flags/checkout").get_data(as_text=True)
    buttons = re.findall(r"<button[^>]*class=\"act[^\"]*\"[^>]*>", page)
    assert len(buttons) == 7 and all(" disabled" in b for b in buttons)
    assert "read-only" in page
    csrf, before = _csrf(client), _flag(client)
    for action in ("rollback", "pause", "promote", "percent"):
        response = _act(client, action, csrf=csrf, reason="r", confirm="yes", percent="1",
                        revision=str(before["revision"]))
        assert response.status_code == 403 and "read-only" in response.get_json()["error"]["message"]
    response = client.post("/ui/flags/checkout/analysis", headers={"X-Console-Form": urlencode(
        {"csrf": csrf, "confirm": "yes", "revision": before["revision"], "alpha": "0.02"})})
    assert response.status_code == 403
    assert _flag(client) == before
    # and the API refuses the read token's writes
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert client.post("/api/v1/flags/checkout/rollback", headers=read, json={"reason": "r"}).status_code == 403


def test_signing_out_revokes_the_session(app):
    client = app.test_client()
    cookie = _sign_in(client).headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    csrf = _csrf(client)
    out = client.post("/ui/sign-out", headers={"X-Console-Form": urlencode({"csrf": csrf})})
    assert out.status_code == 200 and "flagsvc_console=;" in out.headers["Set-Cookie"]
    other = app.test_client()  # a copy of the cookie kept elsewhere no longer works either
    other.set_cookie("flagsvc_console", cookie, path="/ui/")
    assert other.get("/ui/flags").status_code == 302
    assert other.get("/ui/events").status_code == 401


def test_signing_out_needs_the_csrf_token(app):
    client = app.test_client()
    _sign_in(client)
    assert client.post("/ui/sign-out", headers={"X-Console-Form": ""}).status_code == 403
    assert client.get("/ui/flags").status_code == 200


def test_user_text_is_escaped_in_every_page(app):
    client = app.test_client()
    _sign_in(client)
    for path in ("/ui/flags", "/ui/flags/checkout", "/ui/audit?flag=checkout"):
        html = client.get(path).get_data(as_text=True)
        for raw in ("<script>window", "<img src=x", "<b>bold</b>"):
            assert raw not in html, (path, raw)
    flag_page = client.get("/ui/flags/checkout").get_data(as_text=True)
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in flag_page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;bold&lt;/b&gt;" in flag_page
    # a key is text too (keys are restricted by the API, the page escapes them anyway)
    assert client.get("/ui/flags/%3Cb%3E").get_data(as_text=True).count("<b>") == 0


def test_the_event_stream_sends_what_changed_and_ends(app):
    client = app.test_client()
    _sign_in(client)
    first = client.get("/ui/events")
    assert first.mimetype == "text/event-stream"
    text = first.get_data(as_text=True)
    assert text.startswith("retry: 1000\n") and "event: flags\n" in text
    event_id = re.search(r"^id: (\w+)$", text, re.M).group(1)
    assert "event:" not in client.get("/ui/events", headers={"Last-Event-ID": event_id}).get_data(as_text=True)
    client.post("/api/v1/flags/checkout/pause", headers=ADMIN)
    changed = client.get("/ui/events", headers={"Last-Event-ID": event_id}).get_data(as_text=True)
    assert '"state":"paused"' in changed
    one = client.get("/ui/events?flag=checkout").get_data(as_text=True)
    assert "event: flag\n" in one and '"looks":0' in one


def test_the_event_stream_builds_rows_once_per_version_for_every_tab(app, manual_clock, monkeypatch):
    """Tabs asking with nothing changed get "nothing new" without a flag being read; a change (its config version)
    is seen at once; a list holding a rolling flag has its verdicts read again when a second old (they change
    with the controller's looks, which move no version), the rest of its rows kept."""
    app.extensions[EXTENSION] = docs = LiveDocs(clock=manual_clock)
    reads = {"rows": 0, "verdicts": 0}
    base_rows, verdict = model.base_rows, model.verdict

    def counted(name, real):
        def call(*args, **kwargs):
            reads[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(model, "base_rows", counted("rows", base_rows))
    monkeypatch.setattr(model, "verdict", counted("verdicts", verdict))
    tabs = [app.test_client() for _ in range(4)]
    for tab in tabs:
        _sign_in(tab)
    first = tabs[0].get("/ui/events").get_data(as_text=True)
    event_id = re.search(r"^id: (\w+)$", first, re.M).group(1)
    for _ in range(3):
        for tab in tabs:
            again = tab.get("/ui/events", headers={"Last-Event-ID": event_id}).get_data(as_text=True)
            assert again == "retry: 1000\n\n"
    assert reads == {"rows": 1, "verdicts": 1}
    manual_clock.advance(0.5)
    tabs[1].get("/ui/events", headers={"Last-Event-ID": event_id})
    assert reads == {"rows": 1, "verdicts": 1}
    manual_clock.advance(0.6)  # checkout is rolling: its row is judged
    tabs[1].get("/ui/events", headers={"Last-Event-ID": event_id})
    assert reads == {"rows": 1, "verdicts": 2}
    assert tabs[2].post("/api/v1/flags/checkout/pause", headers=ADMIN).status_code == 200
    changed = tabs[3].get("/ui/events", headers={"Last-Event-ID": event_id}).get_data(as_text=True)
    assert '"state":"paused"' in changed and reads == {"rows": 2, "verdicts": 3}
    # a flag page's doc is its own, and follows the version the same way
    builds = docs.builds
    page = tabs[0].get("/ui/events?flag=checkout").get_data(as_text=True)
    assert "event: flag\n" in page and '"state":"paused"' in page and docs.builds == builds + 1
    tabs[1].get("/ui/events?flag=checkout")
    assert docs.builds == builds + 1


def test_live_docs_without_judged_flags_wait_for_the_version(manual_clock):
    docs = LiveDocs(clock=manual_clock, max_docs=2)
    built = []

    def build(judged: bool):
        def run():
            built.append(1)
            return "flags", {"n": len(built)}, judged
        return run

    assert docs.get("flags", "v1", build(False)).doc == {"n": 1}
    manual_clock.advance(9)
    assert docs.get("flags", "v1", build(False)).doc == {"n": 1}
    assert docs.get("flags", "v2", build(False)).doc == {"n": 2}
    manual_clock.advance(10)  # an unannounced change is picked up all the same
    assert docs.get("flags", "v2", build(False)).doc == {"n": 3}
    docs.get("flag:a", "v2", build(True))
    docs.get("flag:b", "v2", build(True))  # past max_docs: the oldest ("flags") goes
    assert docs.get("flags", "v2", build(False)).doc == {"n": 6}
    assert docs.get("flag:b", "v2", build(True)).doc == {"n": 5}


def test_sessions_expire(manual_clock):
    sessions = ConsoleSessions(MemorySessions(manual_clock), manual_clock, lifetime=60)
    session_id, session = sessions.open("ops", "admin")
    assert sessions.find(session_id) == session
    manual_clock.advance(59)
    assert sessions.find(session_id) is not None
    manual_clock.advance(2)
    assert sessions.find(session_id) is None
    with pytest.raises(ValueError):
        sessions.open("web", "sdk")
    assert sessions.find("") is None and sessions.find("x" * 500) is None


def test_the_redis_session_store_keeps_the_digest_under_its_key_with_an_expiry(fake_store):
    store = sessions_for(fake_store)
    assert isinstance(store, RedisSessions)
    sessions = ConsoleSessions(store)
    session_id, _ = sessions.open("ops", "admin")
    keys = fake_store.redis.keys(f"{fake_store.keys.namespace}console-session:*")
    assert len(keys) == 1 and session_id not in keys[0]
    assert 0 < fake_store.redis.pttl(keys[0]) <= 8 * 3600 * 1000
    sessions.close(session_id)
    assert sessions.find(session_id) is None and fake_store.redis.keys(f"{fake_store.keys.namespace}console-*") == []


def test_the_session_key():
    assert Keys().console_session("ab12") == "flagsvc:console-session:ab12"


def test_actor_names_and_webhook_fields_are_escaped_too(fake_store):
    actor = '<img src=x onerror="window.__xss=4">'
    settings = dataclasses.replace(TEST_SETTINGS, admin_tokens={actor: ADMIN_TOKEN},
                                   webhook_allow=AllowList.parse("hooks.example.com"))
    app = create_app(settings, store=fake_store, controller=False)
    client = app.test_client()
    assert client.post("/api/v1/flags", headers=ADMIN, json={"key": "pay"}).status_code == 201
    assert client.post("/api/v1/flags/pay/start", headers=ADMIN).status_code == 200
    hook = client.post("/api/v1/webhooks", headers=ADMIN, json={
        "url": "https://hooks.example.com/in?<script>x</script>", "events": ["rollback"],
        "description": "<script>window.__xss=5</script>"})
    assert hook.status_code == 201, hook.get_json()
    _sign_in(client)
    pages = ["/ui/flags", "/ui/flags/pay", "/ui/audit", "/ui/webhooks", f"/ui/webhooks/{hook.get_json()['id']}"]
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        assert "<img src=x" not in html and "<script>window" not in html and "<script>x" not in html, path
    assert "&lt;img src=x onerror=&#34;window.__xss=4&#34;&gt;" in client.get("/ui/flags").get_data(as_text=True)
    assert "&lt;script&gt;window.__xss=5&lt;/script&gt;" in client.get("/ui/webhooks").get_data(as_text=True)


@pytest.mark.parametrize("tokens", [{}, {"ops": "a-rotated-secret-1"}])
def test_removing_or_rotating_the_token_ends_its_sessions(fake_store, tokens):
    first = create_app(TEST_SETTINGS, store=fake_store, controller=False).test_client()
    cookie = _sign_in(first).headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert first.get("/ui/flags").status_code == 200
    # the same store, a server started with the token removed or given a new secret
    settings = dataclasses.replace(TEST_SETTINGS, admin_tokens=tokens, read_tokens={"viewer": READ_TOKEN})
    later = create_app(settings, store=fake_store, controller=False).test_client()
    later.set_cookie("flagsvc_console", cookie, path="/ui/")
    assert later.get("/ui/flags").status_code == 302


def test_a_malformed_form_header_is_a_400_naming_it(app):
    client = app.test_client()
    _sign_in(client)
    for header in ("&".join(f"f{i}=1" for i in range(60)), "x=" + "a" * 9000):
        response = client.post("/ui/flags/checkout/actions/pause", headers={"X-Console-Form": header})
        assert response.status_code == 400 and "X-Console-Form" in response.get_json()["error"]["message"]


def test_evidence_reads_as_sentences_and_hides_nothing():
    lines = dict(readable({
        "stage": {"index": 1, "percent": 5.0, "seconds": 12.5, "bake_seconds": 10, "min_requests": 100, "looks": 4},
        "arms": {"canary": {"requests": 349, "errors": 6, "error_rate": 0.0172, "p95_ms": 81.0},
                 "stable": {"requests": 6442, "errors": 136, "error_rate": 0.0211, "p95_ms": None}},
        "errors": {"statistic": -3.2, "accept_at": -3.0, "reject_at": 4.6},
        "rejected": {"metric": "errors", "test": "stage", "statistic": 5.1, "threshold": 4.6},
        "strata": {"premium": {"canary_rate": 0.05}},
    }))
    assert lines["stage"] == "stage 1 at 5 % for 12.5 s (bake 10 s, 100 canary requests needed)"
    assert lines["canary"] == "canary: 349 requests, 6 errors (1.72 %), p95 81 ms"
    assert lines["stable"] == "stable: 6,442 requests, 136 errors (2.11 %), p95 -"
    assert lines["errors"] == "errors test: statistic -3.2, accept at -3, roll back at 4.6"
    assert lines["rejected"] == "errors failed the stage test: statistic 5.1 past 4.6"
    assert lines["strata.premium.canary_rate"] == "0.05"
    assert readable(None) == [] and readable({}) == []


def test_ui_without_its_slash_and_signing_in_again(app):
    client = app.test_client()
    assert client.get("/ui").headers["Location"] == "/ui/"
    assert client.get("/ui/").headers["Location"] == "/ui/sign-in"
    first = _sign_in(client).headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert client.get("/ui/").headers["Location"] == "/ui/flags"
    _sign_in(client, READ_TOKEN)  # signing in over a session ends it
    other = app.test_client()
    other.set_cookie("flagsvc_console", first, path="/ui/")
    assert other.get("/ui/flags").status_code == 302
    assert "viewer" in client.get("/ui/flags").get_data(as_text=True)


def test_a_revisions_points_are_thinned_evenly_for_the_charts():
    doc = {"key": "k", "created_at": 1.0, "revisions": [
        {"revision": 2, "looks": 1000, "stride": 1, "points": [{"at": float(n)} for n in range(500)]},
        {"revision": 3, "looks": 5, "stride": 1, "points": [{"at": float(n)} for n in range(5)]}]}
    kept = thinned(doc, most=120)["revisions"]
    ats = [p["at"] for p in kept[0]["points"]]
    assert len(ats) == 120 and ats[0] == 0 and ats[-1] == 499 and ats == sorted(set(ats))
    assert len(kept[1]["points"]) == 5
