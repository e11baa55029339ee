"""Webhooks end to end: two replicas (each an app with its controller and delivery worker, served over HTTP) on one
real Redis, a real HTTP receiver that fails each event's first two attempts (a 500, then a redirect that must not
be followed), real SDK traffic with broken canaries, the real judge. Each rollback reaches the receiver as exactly
one successful signed delivery, after the two failures; flagctl configures the webhook on one replica and reads
the delivery log on the other; a destination outside the allow-list is refused."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from click.testing import CliRunner
from flagsvc_client import FlagClient

from flagsvc.api import create_app
from flagsvc.cli.demo import Scenario, simulate_traffic
from flagsvc.cli.flagctl import main as flagctl_main
from flagsvc.domain import webhook as hooks
from flagsvc.domain.destinations import AllowList
from flagsvc.domain.flag import State
from flagsvc.domain.webhook import RetryPolicy
from flagsvc.service import build_services
from flagsvc.store.redis_store import RedisStore
from tests.support import ADMIN_TOKEN, SDK_KEY, TEST_SETTINGS, serving, wait_for

BROKEN = ("checkout", "search")


class Receiver:
    """Records every request; answers each event's first attempt 500, its second a 302 (to a path that records
    any visit), then 204."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: dict[str, list[tuple[int, str, bytes]]] = defaultdict(list)  # event id -> (answer, sig, body)
        self.redirected_to: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/hook":
                    receiver.redirected_to.append(self.path)
                    self.send_response(204)
                    self.end_headers()
                    return
                with receiver.lock:
                    attempts = receiver.posts[json.loads(body)["id"]]
                    answer = (500, 302, 204)[min(len(attempts), 2)]
                    attempts.append((answer, self.headers.get("Flagsvc-Signature", ""), body))
                self.send_response(answer)
                if answer == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # a followed redirect could come as a GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_each_rollback_is_delivered_once_across_two_replicas_after_two_failures(real_redis, namespace, tmp_path):
    settings = dataclasses.replace(TEST_SETTINGS, controller_interval=0.1, data_dir=tmp_path,
                                   webhook_allow=AllowList.parse("127.0.0.1"), webhook_timeout=2.0)
    replicas = [build_services(settings, RedisStore(real_redis, namespace)) for _ in range(2)]
    for services in replicas:  # short backoffs, so the test takes seconds
        services.delivery.policy = RetryPolicy(max_attempts=5, base=0.2, cap=0.5)
    apps = [create_app(settings, services=services) for services in replicas]
    runner = CliRunner()

    def flagctl(url: str, *args: str):
        return runner.invoke(flagctl_main, ["--url", url, "--token", ADMIN_TOKEN, *args], catch_exceptions=False)

    with Receiver() as receiver, serving(apps[0]) as url_a, serving(apps[1]) as url_b:
        refused = flagctl(url_a, "webhook", "add", "http://10.1.2.3/hook", "--event", "rollback")
        assert refused.exit_code != 0 and "url" in refused.output and "FLAGSVC_WEBHOOK_ALLOW" in refused.output
        added = flagctl(url_a, "webhook", "add", receiver.url, "--event", "rollback", "--event", "complete",
                        "--json")
        assert added.exit_code == 0, added.output
        webhook = json.loads(added.output)
        listed = flagctl(url_b, "webhook", "list")
        assert webhook["id"] in listed.output and "rollback,complete" in listed.output
        for services in replicas:
            services.background.start()
        operations = replicas[0].commands
        for key in BROKEN:
            operations.create(key, {"stages": [50, 100], "bake_seconds": 1}, actor="ops")
            operations.start(key, actor="ops")
        client = FlagClient(url_b, sdk_key=SDK_KEY, flush_interval=0.1)
        stop = threading.Event()
        traffic = threading.Thread(target=simulate_traffic, daemon=True, args=(
            client, [Scenario(key, 0.5, "rolled_back") for key in BROKEN], 1000, stop))
        try:
            assert client.wait_until_ready(timeout=5)
            traffic.start()
            assert wait_for(lambda: all(operations.get(k).state == State.ROLLED_BACK for k in BROKEN), timeout=60)
            stop.set()
            assert wait_for(lambda: sum(answer == 204 for attempts in list(receiver.posts.values())
                                        for answer, _, _ in attempts) >= len(BROKEN), timeout=20)
            time.sleep(1.5)  # time enough for any second delivery to arrive (there must be none)
            deliveries = json.loads(flagctl(url_b, "webhook", "deliveries", webhook["id"], "--json").output)
            table = flagctl(url_a, "webhook", "deliveries", webhook["id"]).output
        finally:
            stop.set()
            traffic.join(2)
            client.close(timeout=2)
            for services in replicas:
                services.background.stop()

    assert len(receiver.posts) == len(BROKEN)
    for event_id, attempts in receiver.posts.items():
        assert [answer for answer, _, _ in attempts] == [500, 302, 204], event_id
        for _, header, body in attempts:
            assert hooks.verify(webhook["secret"], header, body, now=time.time())
        event = json.loads(attempts[-1][2])
        assert event["event"] == "rollback" and event["flag"] in BROKEN and event["percent"] == 0
        assert event["id"] == event_id and "rolled back to 0 %" in event["text"]
        assert event["revision"] == operations.get(event["flag"]).revision
    assert receiver.redirected_to == []  # the redirect was not followed
    assert sorted((d["flag"], d["status"], d["attempts"], d["response_code"]) for d in deliveries["deliveries"]) == [
        ("checkout", "delivered", 3, 204), ("search", "delivered", 3, 204)]
    assert "delivered" in table and "rollback" in table
