"""AsyncFlagClient inside real asyncio servers: a plain ASGI app served by uvicorn, and an aiohttp web app, each on
a free port, each building its client at startup and closing it (a last flush) at shutdown. Real HTTP requests
drive `async with client.track()` around awaited code; the fake flagsvc server counts every outcome that arrives,
which must be exactly what the app served, per revision and arm, errors included, across a config change."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from flagsvc_client import FlagClient
from flagsvc_client.aio import AsyncFlagClient

from tests.support import wait_for
from tests.support.sdk_fake_server import FakeFlagServer

WAIT = 60.0
REQUESTS = 300  # per phase, two phases (before and after a config change)
CLIENT_KEY = web.AppKey("flagsvc", AsyncFlagClient)  # where the aiohttp app keeps its client


@pytest.fixture
def fake() -> Iterator[FakeFlagServer]:
    server = FakeFlagServer({"new_checkout": {"key": "new_checkout", "state": "rolling", "percent": 30.0,
                                              "revision": 1, "salt": "new_checkout"}}, heartbeat=0.1)
    server.start()
    yield server
    server.stop()


def make_client(url: str) -> AsyncFlagClient:
    # no timed flush: every outcome must arrive through the flush at shutdown (exit hook off: the app closes it)
    return AsyncFlagClient(url, sdk_key="sdk-test", flush_interval=3600.0, exit_flush_timeout=0.0)


async def serve_one(client: AsyncFlagClient, user: str, fail: bool) -> tuple[int, dict[str, Any]]:
    """What both apps do for GET /checkout?user=..&fail=..: the new or the old path, timed, awaited."""
    served: dict[str, Any] = {}
    try:
        async with client.track("new_checkout", user) as canary:
            snapshot = client.snapshot
            served = {"canary": canary, "revision": snapshot.flags["new_checkout"].revision if snapshot else None}
            await asyncio.sleep(0.001)  # the awaited work
            if fail:
                raise RuntimeError("checkout failed")
        return 200, served
    except RuntimeError:
        return 500, served


def revision_of(client: AsyncFlagClient) -> int | None:
    snapshot = client.snapshot
    return None if snapshot is None else snapshot.flags["new_checkout"].revision


# -- the ASGI app under uvicorn ----------------------------------------------------------------------------------

def asgi_app(url: str) -> Callable[..., Awaitable[None]]:
    state: dict[str, AsyncFlagClient] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["client"] = make_client(url)
                    await state["client"].wait_until_ready(WAIT)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["client"].aclose(WAIT)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        client = state["client"]
        if scope["path"] == "/revision":
            status, body = 200, {"revision": revision_of(client)}
        else:
            query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
            status, body = await serve_one(client, query["user"], query.get("fail") == "1")
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


class UvicornServer:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        assert wait_for(lambda: self.server.started, WAIT), "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "uvicorn did not stop"


# -- the aiohttp app -----------------------------------------------------------------------------------------------

class AiohttpServer:
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(self._start(url), self.loop).result(WAIT)
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _start(self, url: str) -> web.AppRunner:
        key = CLIENT_KEY

        async def startup(app: web.Application) -> None:
            app[key] = make_client(url)
            await app[key].wait_until_ready(WAIT)

        async def cleanup(app: web.Application) -> None:
            await app[key].aclose(WAIT)

        async def checkout(request: web.Request) -> web.Response:
            status, body = await serve_one(request.app[key], request.query["user"], request.query.get("fail") == "1")
            return web.json_response(body, status=status)

        async def revision(request: web.Request) -> web.Response:
            return web.json_response({"revision": revision_of(request.app[key])})

        app = web.Application()
        app.on_startup.append(startup)
        app.on_cleanup.append(cleanup)
        app.router.add_get("/checkout", checkout)
        app.router.add_get("/revision", revision)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


# -- the traffic, and what must arrive -----------------------------------------------------------------------------

async def drive(url: str, phase: int) -> Counter[tuple[int, str, str]]:
    """REQUESTS checkouts, 16 at a time; returns what was served: (revision, arm, ok|error) -> count."""
    served: Counter[tuple[int, str, str]] = Counter()
    gate = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:

        async def one(n: int) -> None:
            fail = n % 5 == 0
            async with gate, session.get(f"{url}/checkout", params={"user": f"user-{phase}-{n}",
                                                                    "fail": "1" if fail else "0"}) as response:
                body = await response.json()
                assert response.status == (500 if fail else 200)
                served[(body["revision"], "canary" if body["canary"] else "stable", "error" if fail else "ok")] += 1

        await asyncio.gather(*(one(n) for n in range(REQUESTS)))
    return served


async def wait_for_revision(url: str, revision: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(WAIT / 0.02)):
            async with session.get(f"{url}/revision") as response:
                if (await response.json())["revision"] == revision:
                    return
            await asyncio.sleep(0.02)
    raise AssertionError(f"the app never saw revision {revision}")


def run_and_check(fake: FakeFlagServer, start: Callable[[], Any]) -> None:
    server = start()
    try:
        served = asyncio.run(drive(server.url, 1))
        fake.update("new_checkout", percent=70.0)  # revision 2, pushed over the stream
        asyncio.run(wait_for_revision(server.url, 2))
        served += asyncio.run(drive(server.url, 2))
    finally:
        server.stop()  # the app's shutdown closes its client: the only flush
    arrived = {(rev, arm): (total["count"], total["errors"]) for (_, rev, arm), total in fake.totals.items()}
    expected = {(rev, arm): (served[(rev, arm, "ok")] + served[(rev, arm, "error")], served[(rev, arm, "error")])
                for rev, arm, _ in served}
    assert arrived == expected
    assert sum(count for count, _ in arrived.values()) == 2 * REQUESTS
    # the arms served were the SDK's: the same users through a sync client on the same config
    check = FlagClient(offline=True, bootstrap=json.loads(fake.body()[1]))
    canary_after = sum(check.is_enabled("new_checkout", f"user-2-{n}") for n in range(REQUESTS))
    assert canary_after == served[(2, "canary", "ok")] + served[(2, "canary", "error")]
    assert fake.duplicates == 0


def test_uvicorn_asgi_app_counts_every_outcome_exactly(fake):
    url = f"http://127.0.0.1:{fake.port}"
    run_and_check(fake, lambda: UvicornServer(asgi_app(url)))


def test_aiohttp_app_counts_every_outcome_exactly(fake):
    url = f"http://127.0.0.1:{fake.port}"
    run_and_check(fake, lambda: AiohttpServer(url))
