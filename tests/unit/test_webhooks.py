"""Webhooks without a network: signatures, the allow-list, the backoff, the payload, the commands' checks, the
controller's events, and delivery workers driven by hand (two workers, one delivery; retries; refusals)."""

from __future__ import annotations

import json
import random

import fakeredis
import pytest

from flagsvc.config import ConfigError, Settings
from flagsvc.domain import flag as flags
from flagsvc.domain import webhook as hooks
from flagsvc.domain.destinations import AllowList, AllowListError
from flagsvc.domain.errors import InvalidFlag, WebhookNotFound
from flagsvc.domain.flag import State
from flagsvc.domain.webhook import RetryPolicy
from flagsvc.service.webhook_delivery import DeliveryWorker
from flagsvc.service.webhooks import WebhookCommands, WebhookNotifier
from flagsvc.store.redis_store import RedisStore
from flagsvc.store.webhooks import MemoryWebhooks, webhooks_for
from tests.support.flags import new
from tests.support.sdk_fakes import FakeClock

SECRET = "whsec_test"
BODY = b'{"event":"rollback"}'


# --- signatures ---------------------------------------------------------------------------------------------

def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    header = hooks.signature(SECRET, 1700000000, BODY)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert hooks.verify(SECRET, header, BODY, now=1700000100)


@pytest.mark.parametrize("tamper", ["body", "secret", "timestamp", "old", "garbage"])
def test_a_tampered_or_stale_signature_does_not_verify(tamper):
    header = hooks.signature(SECRET, 1700000000, BODY)
    body, secret, now = BODY, SECRET, 1700000000.0
    if tamper == "body":
        body = BODY.replace(b"rollback", b"complete")
    elif tamper == "secret":
        secret = "whsec_other"
    elif tamper == "timestamp":
        header = header.replace("t=1700000000", "t=1700000001")
    elif tamper == "old":
        now += 301
    else:
        header = "v1=deadbeef"
    assert not hooks.verify(secret, header, body, now=now)


# --- the allow-list -----------------------------------------------------------------------------------------

def test_the_allow_list_takes_names_wildcards_addresses_and_blocks():
    allow = AllowList.parse(" hooks.slack.com, *.example.com ,10.20.0.0/16, 127.0.0.1,")
    assert allow.permits_host("hooks.slack.com") and allow.permits_host("HOOKS.slack.com.")
    assert allow.permits_host("ci.example.com") and not allow.permits_host("example.com")
    assert allow.permits_host("10.20.3.4") and allow.permits_host("127.0.0.1")
    assert not allow.permits_host("10.21.0.1") and not allow.permits_host("evil.com")
    assert not allow.permits_host("hooks.slack.com.evil.com")


def test_an_empty_allow_list_refuses_everything():
    allow = AllowList.parse("")
    assert not allow and not allow.permits_host("hooks.slack.com") and not allow.permits_host("127.0.0.1")
    assert "FLAGSVC_WEBHOOK_ALLOW is empty" in allow.describe()


@pytest.mark.parametrize("raw", ["10.0.0.1/8", "not a host", "*.", "300.1.1.1/32", "a..b"])
def test_a_malformed_allow_list_is_refused(raw):
    with pytest.raises(AllowListError):
        AllowList.parse(raw)
    with pytest.raises(ConfigError, match="FLAGSVC_WEBHOOK_ALLOW"):
        Settings.from_env({"FLAGSVC_WEBHOOK_ALLOW": raw})


def test_a_listed_name_may_not_resolve_inside_unless_a_block_allows_it():
    allow = AllowList.parse("hooks.example.com,10.20.0.0/16")
    assert allow.refusal("hooks.example.com", ["93.184.216.34"]) is None
    assert allow.refusal("hooks.example.com", ["10.20.0.9"]) is None  # inside a listed block
    for inside in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "192.168.1.1"):
        assert "local or private network" in allow.refusal("hooks.example.com", ["93.184.216.34", inside])
    assert "not in FLAGSVC_WEBHOOK_ALLOW" in allow.refusal("other.example.com", ["93.184.216.34"])
    assert "no address" in allow.refusal("hooks.example.com", [])


def test_webhook_settings_are_read_and_checked():
    settings = Settings.from_env({"FLAGSVC_WEBHOOK_ALLOW": "hooks.slack.com", "FLAGSVC_WEBHOOK_TIMEOUT": "2",
                                  "FLAGSVC_WEBHOOK_MAX_ATTEMPTS": "3"})
    assert settings.webhook_allow.permits_host("hooks.slack.com")
    assert (settings.webhook_timeout, settings.webhook_max_attempts) == (2.0, 3)
    for name, value in (("FLAGSVC_WEBHOOK_TIMEOUT", "0"), ("FLAGSVC_WEBHOOK_MAX_ATTEMPTS", "0")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


# --- backoff ------------------------------------------------------------------------------------------------

def test_backoff_doubles_within_a_cap_with_full_jitter_and_gives_up():
    policy = RetryPolicy(max_attempts=5, base=2.0, cap=10.0)
    rng = random.Random(7)
    for failures, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0)):
        delays = [policy.delay(failures, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range
    assert policy.delay(5, rng) is None
    assert RetryPolicy().delay(1, random.Random(3)) == RetryPolicy().delay(1, random.Random(3))  # seeded


# --- payload ------------------------------------------------------------------------------------------------

def test_the_payload_has_text_for_people_and_fields_for_programs():
    doc = hooks.payload("rollback", event_id="f@1.000000/3/rollback", flag="f", revision=4, reason="errors up",
                        percent=0, state="rolled_back", at=5.0)
    assert doc["text"] == "flagsvc: flag `f` rolled back to 0 % (revision 4, 0 %). errors up"
    assert {k: doc[k] for k in ("id", "event", "flag", "revision", "percent", "at")} == {  # type: ignore[literal-required]
        "id": "f@1.000000/3/rollback", "event": "rollback", "flag": "f", "revision": 4, "percent": 0, "at": 5.0}
    assert json.loads(hooks.body_of(doc)) == doc
    held = hooks.payload("hold", event_id="x", flag="f", revision=2, reason="", percent=5, state="rolling", at=1,
                         detail={"held_seconds": 5400})
    assert "has held for 90 min" in held["text"]
    hostile = hooks.payload("rollback", event_id="y", flag="f", revision=2, percent=0, state="rolled_back", at=1,
                            reason="by eve: <!channel> <https://x|y> & more")
    assert hostile["text"].endswith("by eve: &lt;!channel&gt; &lt;https://x|y&gt; &amp; more")
    assert hostile["reason"] == "by eve: <!channel> <https://x|y> & more"  # the field for programs is as given


# --- commands -----------------------------------------------------------------------------------------------

def commands(allow: str = "hooks.example.com,127.0.0.1") -> WebhookCommands:
    ids = iter(f"wh_{n:016x}" for n in range(1, 100))
    return WebhookCommands(MemoryWebhooks(), AllowList.parse(allow), FakeClock(50.0), new_id=lambda: next(ids),
                           new_secret=lambda: "whsec_fixed")


def test_a_webhook_is_created_listed_and_deleted():
    door = commands()
    made = door.create({"url": "https://hooks.example.com/a", "events": ["rollback", "rollback", "hold"],
                        "hold_seconds": 120, "flag": "checkout"}, actor="ops")
    assert made["secret"] == "whsec_fixed" and made["events"] == ["rollback", "hold"]
    assert door.list() == {"webhooks": [door.get(made["id"])]}
    assert "secret" not in door.get(made["id"])
    door.delete(made["id"], actor="ops")
    with pytest.raises(WebhookNotFound):
        door.get(made["id"])


def test_a_destination_outside_the_allow_list_is_refused_naming_the_url():
    for door, url in ((commands(), "https://evil.example.org/x"), (commands(""), "https://hooks.example.com/x"),
                      (commands(), "http://10.0.0.1/x")):
        with pytest.raises(InvalidFlag) as refused:
            door.create({"url": url, "events": ["rollback"]}, actor="ops")
        assert list(refused.value.fields) == ["url"] and "FLAGSVC_WEBHOOK_ALLOW" in refused.value.fields["url"][0]
        assert door.list() == {"webhooks": []}


def test_every_bad_field_is_named_at_once_and_nothing_is_stored():
    door = commands()
    with pytest.raises(InvalidFlag) as refused:
        door.create({"url": "ftp://hooks.example.com", "events": ["explode"], "hold_seconds": 0, "flag": "Bad Key",
                     "description": "x" * 201}, actor="ops")
    assert set(refused.value.fields) == {"url", "events", "hold_seconds", "flag", "description"}
    assert door.list() == {"webhooks": []}


# --- the controller's events --------------------------------------------------------------------------------

def _rolling(percent: float = 5):
    flag, _ = new("checkout", stages=[5, 50, 100])
    flag, _ = flags.start(flag, now=2.0, actor="ops")
    return flag


def test_events_are_enqueued_once_for_the_webhooks_that_want_them():
    store = MemoryWebhooks()
    door = WebhookCommands(store, AllowList.parse("hooks.example.com"), FakeClock(1.0))
    everything = door.create({"url": "https://hooks.example.com/a", "events": list(hooks.EVENTS),
                              "hold_seconds": 60}, actor="ops")
    other_flag = door.create({"url": "https://hooks.example.com/b", "events": ["rollback"], "flag": "other"},
                             actor="ops")
    notifier = WebhookNotifier(store)
    flag = _rolling()
    after, _ = flags.rollback(flag, now=3.0, actor="controller", reason="errors up")
    for _ in range(2):  # the same look seen twice (a retried tick, another replica): one event
        notifier.look(flag, "rollback", "errors up", {}, after, held_seconds=1.0, at=3.0)
    WebhookNotifier(store).look(flag, "rollback", "errors up", {}, after, held_seconds=1, at=3)  # another replica
    [delivery] = store.deliveries(everything["id"])
    assert delivery["event"] == "rollback" and store.deliveries(other_flag["id"]) == []
    notifier.look(flag, "hold", "waiting", {}, None, held_seconds=59.0, at=4.0)
    assert len(store.deliveries(everything["id"])) == 1  # not held long enough yet
    notifier.look(flag, "hold", "waiting", {"reporters": {"driven_by": {"reporter": "r1"}}}, None,
                  held_seconds=61.0, at=5.0)
    notifier.look(flag, "blind", "blind: no stable outcomes", {"blind": {"arm": "stable"}}, None,
                  held_seconds=62.0, at=6.0)
    assert [d["event"] for d in store.deliveries(everything["id"])] == [
        "blind", "hold", "reporter_anomaly", "rollback"]  # newest first
    done, _ = flags.advance(flags.advance(flag, now=7.0, actor="c", reason="ok")[0], now=8.0, actor="c", reason="ok")
    notifier.look(flag, "advance", "ok", {}, done, held_seconds=1, at=8.0)
    assert done.state == State.COMPLETE and store.deliveries(everything["id"])[0]["event"] == "complete"


def test_an_event_that_cannot_be_enqueued_never_fails_the_controller(caplog):
    class Down(MemoryWebhooks):
        def webhooks(self):
            raise ConnectionError("redis down")

    flag = _rolling()
    after, _ = flags.rollback(flag, now=3.0, actor="controller", reason="errors up")
    WebhookNotifier(Down()).look(flag, "rollback", "errors up", {}, after, held_seconds=1, at=3)
    assert "not enqueued (the rollout goes on): redis down" in caplog.text


# --- delivery workers by hand -------------------------------------------------------------------------------

class Receiver:
    """A fake HTTP sender: answers from a script of status codes (or exceptions), records what it got."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.got: list[tuple[str, str, bytes, dict]] = []
        self.during: list = []

    def __call__(self, url, address, body, headers, timeout):
        self.got.append((url, address, body, dict(headers)))
        for call in self.during:
            call()
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


def setup(store, receiver, clock, *, allow="hooks.example.com", resolves=("93.184.216.34",), seed=1):
    door = WebhookCommands(store, AllowList.parse(allow), clock)
    made = door.create({"url": "https://hooks.example.com/in", "events": ["rollback"]}, actor="ops")
    flag = _rolling()
    after, _ = flags.rollback(flag, now=3.0, actor="controller", reason="errors up")
    WebhookNotifier(store, clock).look(flag, "rollback", "errors up", {}, after, held_seconds=1, at=clock())

    def worker(rng_seed: int = seed) -> DeliveryWorker:
        return DeliveryWorker(store, AllowList.parse(allow), sender=receiver, resolver=lambda h, p: list(resolves),
                              clock=clock, rng=random.Random(rng_seed), policy=RetryPolicy(max_attempts=3),
                              timeout=1.0)
    return made, worker


@pytest.fixture(params=["memory", "fakeredis"])
def webhook_store(request):
    if request.param == "memory":
        return MemoryWebhooks()
    return webhooks_for(RedisStore(fakeredis.FakeRedis(decode_responses=True), "t:"))


def test_two_workers_one_delivery(webhook_store):
    clock, receiver = FakeClock(100.0), Receiver(204)
    made, worker = setup(webhook_store, receiver, clock)
    first, second = worker(1), worker(2)
    attempted_meanwhile: list[int] = []
    receiver.during.append(lambda: attempted_meanwhile.append(second.step()))  # while the first is sending
    assert first.step() == 1
    assert attempted_meanwhile == [0] and second.step() == 0 and first.step() == 0
    clock.advance(3600)
    assert first.step() == 0 and second.step() == 0
    [(url, address, body, headers)] = receiver.got
    assert (url, address) == ("https://hooks.example.com/in", "93.184.216.34")
    assert hooks.verify(made["secret"], headers["Flagsvc-Signature"], body, now=100.0)
    assert json.loads(body)["event"] == "rollback" and headers["Content-Type"] == "application/json"
    [logged] = webhook_store.deliveries(made["id"])
    assert (logged["status"], logged["attempts"], logged["response_code"]) == ("delivered", 1, 204)


def test_failed_attempts_are_retried_after_a_backoff_then_delivered(webhook_store):
    clock, receiver = FakeClock(100.0), Receiver(500, TimeoutError("timed out"), 200)
    made, worker = setup(webhook_store, receiver, clock)
    one = worker()
    assert one.step() == 1
    [logged] = webhook_store.deliveries(made["id"])
    assert (logged["status"], logged["response_code"], logged["last_error"]) == ("retrying", 500, "HTTP 500")
    first_delay = logged["next_attempt_at"] - 100.0
    assert 0 <= first_delay <= 2.0
    assert first_delay == pytest.approx(random.Random(1).uniform(0, 2.0), abs=0.001)  # the worker's random source
    clock.now = logged["next_attempt_at"]
    assert one.step() == 1
    [logged] = webhook_store.deliveries(made["id"])
    assert logged["status"] == "retrying" and logged["last_error"] == "TimeoutError: timed out"
    assert logged["response_code"] is None and logged["next_attempt_at"] - clock() <= 4.0
    clock.now = logged["next_attempt_at"]
    assert one.step() == 1
    [logged] = webhook_store.deliveries(made["id"])
    assert (logged["status"], logged["attempts"], logged["response_code"]) == ("delivered", 3, 200)
    assert len(receiver.got) == 3 and len({body for _, _, body, _ in receiver.got}) == 1  # the same event


def test_a_redirect_is_a_failed_attempt_and_attempts_run_out(webhook_store):
    clock, receiver = FakeClock(100.0), Receiver(302, 307, 301)
    made, worker = setup(webhook_store, receiver, clock)
    one = worker()
    for _ in range(3):
        clock.advance(1000)
        assert one.step() == 1
    clock.advance(1000)
    assert one.step() == 0
    [logged] = webhook_store.deliveries(made["id"])
    assert (logged["status"], logged["attempts"], logged["next_attempt_at"]) == ("failed", 3, None)
    assert logged["last_error"] == "HTTP 301: a redirect, not followed"


def test_a_name_that_now_resolves_inside_is_not_sent_to(webhook_store):
    clock, receiver = FakeClock(100.0), Receiver()
    made, worker = setup(webhook_store, receiver, clock, resolves=("93.184.216.34", "169.254.169.254"))
    assert worker().step() == 1
    assert receiver.got == []
    [logged] = webhook_store.deliveries(made["id"])
    assert logged["status"] == "retrying" and "169.254.169.254" in logged["last_error"]
    assert logged["last_error"].startswith("PermissionError: hooks.example.com resolves to 169.254.169.254")


def test_a_deleted_webhooks_deliveries_fail_without_sending(webhook_store):
    clock, receiver = FakeClock(100.0), Receiver()
    made, worker = setup(webhook_store, receiver, clock)
    [pending] = webhook_store.due_deliveries(clock(), 10)
    webhook_store.delete_webhook(made["id"])
    assert worker().step() == 1 and receiver.got == []
    assert webhook_store.due_deliveries(clock() + 10_000, 10) == [] and pending


def test_a_stopping_worker_attempts_nothing_more(webhook_store):
    clock, receiver = FakeClock(100.0), Receiver()
    _, worker = setup(webhook_store, receiver, clock)
    one = worker()
    one.stopping.set()
    assert one.step() == 0 and receiver.got == []
    assert len(webhook_store.due_deliveries(clock(), 10)) == 1  # left for a worker that runs


def test_the_server_runs_a_delivery_worker_and_stops_it(fake_store):
    import threading

    from flagsvc.service import build_services
    from tests.support import TEST_SETTINGS

    services = build_services(TEST_SETTINGS, fake_store, controller=False)
    services.background.start()
    assert any(t.name == "flagsvc-webhook-delivery" and t.is_alive() for t in threading.enumerate())
    services.background.stop()
    assert services.delivery.stopping.is_set()
    assert not any(t.name == "flagsvc-webhook-delivery" and t.is_alive() for t in threading.enumerate())


# --- the real sender ----------------------------------------------------------------------------------------

def test_the_http_sender_does_not_follow_redirects_and_times_out():
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from flagsvc.service.webhook_delivery import http_sender

    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # http.server's naming
            seen.append((self.path, self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    try:
        port = server.server_port
        url = f"http://localhost:{port}/in?x=1"
        assert http_sender(url, "127.0.0.1", b"{}", {"Content-Type": "application/json"}, 2.0) == 302
        assert seen == [("/in?x=1", f"localhost:{port}", b"{}")]  # sent to the address given, named as the URL's host
        with pytest.raises(TimeoutError):
            http_sender(f"http://127.0.0.1:{silent.getsockname()[1]}/", "127.0.0.1", b"{}", {}, 0.2)
    finally:
        server.shutdown()
        server.server_close()
        silent.close()
