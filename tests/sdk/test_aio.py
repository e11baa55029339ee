"""AsyncFlagClient, driven by hand (fake transport, no threads): the same answers as FlagClient, `async with
track()` timing awaited code, and waiting for readiness without blocking the loop."""

from __future__ import annotations

import asyncio

import pytest
from flagsvc_client.aio import AsyncFlagClient
from flagsvc_client.protocol.sketch import bucket_index

from tests.support.sdk_fakes import FakeStream, flag, ok_json, snapshot, sse

OUTCOMES = "/sdk/v1/outcomes"


def ack() -> object:
    return ok_json({"batch_id": "x", "accepted": 1, "stale": 0, "unknown": 0, "duplicate": False})


def test_the_same_answers_as_the_sync_client(make_client):
    sync = make_client(bootstrap=snapshot(flag(percent=37.0), flag("other", percent=5.0)))
    client = AsyncFlagClient(client=sync)
    for n in range(3000):
        user = f"user-{n}"
        for key in ("new_checkout", "other", "missing"):
            assert client.is_enabled(key, user) is sync.is_enabled(key, user)
            assert client.variant(key, user) == sync.variant(key, user)
            assert client.evaluate(key, user, True) == sync.evaluate(key, user, True)
    assert client.is_enabled("missing", "u", default=True) is True
    assert client.snapshot is sync.snapshot and client.status == sync.status


def test_track_times_awaited_code_and_counts_errors_not_cancellations(make_client, transport):
    sync = make_client(bootstrap=snapshot(flag(percent=100.0, revision=4)))
    client = AsyncFlagClient(client=sync)

    async def scenario() -> None:
        async with client.track("new_checkout", "u1") as canary:
            assert canary is True
            await asyncio.sleep(0.03)  # the loop runs other things meanwhile; the block still takes >= 30 ms
        with pytest.raises(RuntimeError):
            async with client.track("new_checkout", "u2"):
                await asyncio.sleep(0)
                raise RuntimeError("the new code failed")

        async def cancelled() -> None:
            async with client.track("new_checkout", "u3"):
                await asyncio.sleep(3600)

        task = asyncio.create_task(cancelled())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        client.record("new_checkout", "u4", ok=True, latency_ms=1.0)

    asyncio.run(scenario())
    transport.answer(OUTCOMES, ack())
    assert sync.flush(0)
    [batch] = transport.posted()
    canary = batch["flags"]["new_checkout"]["arms"]["canary"]
    assert (canary["count"], canary["errors"]) == (3, 1)  # u1, u2 (an error), u4; the cancelled u3 is no outcome
    slow = [int(index) for index, n in canary["latency"].items() for _ in range(n)]
    assert max(slow) >= bucket_index(29.0)  # the awaited 30 ms were timed


def test_wait_until_ready_waits_without_blocking_the_loop(make_client, transport):
    sync = make_client()
    client = AsyncFlagClient(client=sync)

    async def scenario() -> None:
        assert await client.wait_until_ready(timeout=0.05) is False  # nothing from the server yet
        assert await client.wait_until_ready(timeout="soon") is False  # type: ignore[arg-type]  # never raises
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        waiting = asyncio.create_task(client.wait_until_ready(timeout=30))
        await asyncio.sleep(0.05)
        assert not waiting.done() and ticks > 5  # the loop kept running while it waited
        transport.streams.append(FakeStream(sse(snapshot(flag(percent=50.0)))))
        await asyncio.to_thread(sync._config_step)  # the config thread's work, done once by hand
        assert await waiting is True
        ticker.cancel()
        assert client.is_enabled("new_checkout", "u1") is sync.is_enabled("new_checkout", "u1")

    asyncio.run(scenario())


def test_offline_with_a_bootstrap_is_ready_at_once_and_closes_cleanly():
    async def scenario() -> None:
        async with AsyncFlagClient(offline=True, bootstrap=snapshot(flag(percent=100.0))) as client:
            assert await client.wait_until_ready(timeout=0) is True
            assert client.is_enabled("new_checkout", "u1") is True
            assert await client.flush() is True

    asyncio.run(scenario())
