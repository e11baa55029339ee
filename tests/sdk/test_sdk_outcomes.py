"""Outcomes: aggregation per (flag, revision, arm), bounded memory, batches, retries with the same batch_id."""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import sys
import threading

from flagsvc_client._batches import build_batches
from flagsvc_client._outcomes import ArmTally, OutcomeWindow, event_of
from flagsvc_client._transport import Response, TransportError
from flagsvc_client.protocol import bucketing
from flagsvc_client.protocol.sketch import _INV_LOG2_GAMMA, MAX_INDEX, MIN_INDEX, LatencySketch, bucket_index
from flagsvc_client.snapshot import parse_snapshot

from tests.support.sdk_fakes import flag, snapshot

OUTCOMES = "/sdk/v1/outcomes"
ACK = Response(200, {}, b'{"accepted": 1}')


def users_in_arms(percent: float, n: int = 2000) -> tuple[list[str], list[str]]:
    canary = [f"u{i}" for i in range(n) if bucketing.is_canary("new_checkout", f"u{i}", percent)]
    stable = [f"u{i}" for i in range(n) if not bucketing.is_canary("new_checkout", f"u{i}", percent)]
    return canary, stable


def per_unit(outcomes: list[tuple[str, bool]], salt: str = "new_checkout") -> dict[str, list[int]]:
    """The wire's `units` of these (user, ok) outcomes, by the protocol's rule (bucketing.unit)."""
    units: dict[str, list[int]] = {}
    for user, ok in outcomes:
        pair = units.setdefault(str(bucketing.unit(salt, user)), [0, 0])
        pair[0] += 1
        pair[1] += 0 if ok else 1
    return units


def test_record_then_flush_sends_exact_counts_per_arm(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=20.0, revision=7)))
    canary, stable = users_in_arms(20.0)
    for user in canary:
        client.record("new_checkout", user, ok=True, latency_ms=10.0)
    for i, user in enumerate(stable):
        client.record("new_checkout", user, ok=i % 10 != 0, latency_ms=20.0)
    client.record("new_checkout", stable[0], ok=False)  # the same user failing again: one error user
    transport.answer(OUTCOMES, ACK)
    assert client.flush(0) is True
    [batch] = transport.posted()
    assert re.fullmatch(r"[0-9a-f]{32}", batch["batch_id"])
    entry = batch["flags"]["new_checkout"]
    assert entry["revision"] == 7
    failures = len(range(0, len(stable), 10))
    assert entry["arms"]["canary"] == {
        "count": len(canary), "errors": 0, "error_users": 0, "latency": {str(bucket_index(10.0)): len(canary)},
        "units": per_unit([(user, True) for user in canary]),
    }  # fmt: skip
    outcomes = [(user, i % 10 != 0) for i, user in enumerate(stable)] + [(stable[0], False)]
    assert entry["arms"]["stable"] == {
        "count": len(stable) + 1, "errors": failures + 1, "error_users": failures,
        "latency": {str(bucket_index(20.0)): len(stable)}, "units": per_unit(outcomes),
    }  # fmt: skip
    assert client.stats["outcomes_acknowledged"] == len(canary) + len(stable) + 1
    assert client.flush(0) is True and len(transport.posted()) == 1  # nothing new: nothing sent


def test_the_arm_follows_allow_deny_and_kill(make_client, transport):
    snap = snapshot(flag(percent=0.0, allow=["vip"]), flag("killed", state="rolled_back", allow=["vip"]))
    client = make_client(bootstrap=snap)
    client.record("new_checkout", "vip")
    client.record("killed", "vip")
    transport.answer(OUTCOMES, ACK)
    client.flush(0)
    flags = transport.posted()[0]["flags"]
    assert flags["new_checkout"]["arms"]["canary"]["count"] == 1
    assert flags["killed"]["arms"]["stable"]["count"] == 1 and flags["killed"]["arms"]["canary"]["count"] == 0


def test_every_path_counts_the_user_in_the_protocols_unit(make_client, transport):
    """Listed, killed and plain flags, int ids, the careful path and `track` all put each outcome in the user
    bucket `bucketing.unit` names, on the arm `is_enabled` answers."""
    snap = snapshot(
        flag(percent=30.0), flag("listed", percent=30.0, allow=["vip"], deny=["u3"]),
        flag("killed", state="rolled_back", allow=["vip"]),
    )  # fmt: skip
    client = make_client(bootstrap=snap)
    expected: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for name in ("new_checkout", "listed", "killed"):
        for i, user in enumerate(["vip", "u3", 7, *(f"u{j}" for j in range(40))]):
            ok = i % 3 != 0
            if i % 5 == 0:
                with contextlib.suppress(RuntimeError), client.track(name, user):
                    if not ok:
                        raise RuntimeError("the block failed")
            else:
                client.record(name, user, ok=ok, latency_ms=None if i % 2 else 3.0)
            arm = "canary" if client.is_enabled(name, user) else "stable"
            expected.setdefault((name, arm), []).append((str(user), ok))
    transport.answer(OUTCOMES, ACK)
    client.flush(0)
    flags = transport.posted()[0]["flags"]
    for (name, arm), outcomes in expected.items():
        assert flags[name]["arms"][arm]["units"] == per_unit(outcomes, salt=name), (name, arm)
    assert {arm for name, arm in expected if name == "listed"} == {"canary", "stable"}


def test_slow_requests_per_user_bucket_are_counted_against_the_last_windows_p95(make_client, transport):
    """The first window has no mark: pairs. Its p95 (nearest rank) becomes the mark of the next, whose units
    carry each bucket's requests slower than that, third."""
    client = make_client(bootstrap=snapshot(flag(percent=0.0)))
    users = [f"u{i}" for i in range(100)]
    transport.answer(OUTCOMES, ACK, ACK)
    for i, user in enumerate(users):
        client.record("new_checkout", user, latency_ms=float(i + 1))
    client.flush(0)
    first = transport.posted()[0]["flags"]["new_checkout"]["arms"]["stable"]["units"]
    assert all(len(pair) == 2 for pair in first.values())
    mark = bucket_index(95.0)  # the 95th of 1..100 ms
    slow: dict[str, int] = {}
    for i, user in enumerate(users):
        latency = 200.0 - 2 * i
        client.record("new_checkout", user, latency_ms=latency)
        unit = str(bucketing.unit("new_checkout", user))
        slow[unit] = slow.get(unit, 0) + (bucket_index(latency) > mark)
    client.record("new_checkout", users[0])  # no latency: never slow
    client.flush(0)
    second = transport.posted()[1]["flags"]["new_checkout"]["arms"]["stable"]["units"]
    assert {unit: pair[2] for unit, pair in second.items()} == slow
    assert sum(slow.values()) == sum(1 for i in range(100) if bucket_index(200.0 - 2 * i) > mark) > 0


def test_retries_keep_the_batch_id_and_body_until_acknowledged(make_client, transport, clock):
    client = make_client(bootstrap=snapshot(flag()))
    for i in range(100):
        client.record("new_checkout", f"u{i}")
    transport.answer(OUTCOMES, TransportError("refused", refused=True), Response(503, {}, b""), ACK)
    assert client.flush(0) is False
    delay = client._outcomes_step()
    assert 0 < delay <= 0.25  # not due yet: backoff
    assert len(transport.posted()) == 1
    clock.advance(delay)
    client._outcomes_step()  # 503
    clock.advance(5)
    client._outcomes_step()  # acknowledged
    bodies = [r["body"] for r in transport.requests if r["method"] == "POST"]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the very same bytes, the same batch_id
    stats = client.stats
    assert (stats["batches_acknowledged"], stats["batches_retried"], stats["batches_pending"]) == (1, 2, 0)
    assert stats["outcomes_acknowledged"] == 100


def test_408_and_429_are_retried_honouring_retry_after(make_client, transport, clock):
    client = make_client(bootstrap=snapshot(flag()), backoff_max=30)
    client.record("new_checkout", "u")
    transport.answer(OUTCOMES, Response(429, {"retry-after": "20"}, b""), Response(408, {}, b""), ACK)
    client.flush(0)
    assert client._outcomes_step() == 5.0  # the next window cut comes first
    clock.advance(20)
    client._outcomes_step()
    clock.advance(30)
    client._outcomes_step()
    assert client.stats["batches_acknowledged"] == 1


def test_other_4xx_drops_the_batch_counts_it_and_logs_once(make_client, transport, caplog):
    client = make_client(bootstrap=snapshot(flag()))
    transport.answer(OUTCOMES, Response(400, {}, b'{"error": {}}'), Response(400, {}, b""), ACK)
    for _ in range(2):
        client.record("new_checkout", "u")
        assert client.flush(0) is False
    client.record("new_checkout", "u")
    assert client.flush(0) is True
    stats = client.stats
    assert (stats["batches_rejected"], stats["outcomes_rejected"], stats["batches_acknowledged"]) == (2, 2, 1)
    assert sum("rejected with 400" in r.getMessage() for r in caplog.records) == 1


def test_batches_older_than_max_age_are_dropped_and_counted(make_client, transport, clock):
    client = make_client(bootstrap=snapshot(flag()), max_batch_age=60)
    client.record("new_checkout", "u")
    client.flush(0)  # 503 (the fake's default answer)
    clock.advance(61)
    client._outcomes_step()
    stats = client.stats
    assert (stats["batches_expired"], stats["outcomes_expired"], stats["batches_pending"]) == (1, 1, 0)


def test_a_full_queue_keeps_aggregating_instead_of_cutting(make_client, transport, clock):
    client = make_client(bootstrap=snapshot(flag()), max_pending_bytes=1)
    client.record("new_checkout", "a")
    client.flush(0)  # queued (1 batch > 1 byte: full), send failed
    client.record("new_checkout", "b")
    client.record("new_checkout", "c")
    clock.advance(5)
    client._outcomes_step()  # full: no new batch
    assert client.stats["batches_pending"] == 1
    transport.answer(OUTCOMES, ACK, ACK)
    assert client.flush(0) is True  # sends the old one, then cuts and sends the rest
    counts = [sum(a["count"] for a in b["flags"]["new_checkout"]["arms"].values()) for b in transport.posted()]
    assert counts[-2:] == [1, 2]


def test_a_flag_that_changed_revision_in_a_window_yields_one_batch_per_revision(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(revision=1), version=1))
    client.record("new_checkout", "u")
    client._apply(parse_snapshot(snapshot(flag(revision=2), version=2)))  # a new revision, mid-window
    client.record("new_checkout", "u")
    client.record("new_checkout", "u")
    transport.answer(OUTCOMES, ACK, ACK)
    assert client.flush(0) is True
    revisions = [
        (b["flags"]["new_checkout"]["revision"], sum(a["count"] for a in b["flags"]["new_checkout"]["arms"].values()))
        for b in transport.posted()
    ]
    assert sorted(revisions) == [(1, 1), (2, 2)]


def test_unknown_flags_and_bad_input_record_nothing_and_never_raise(make_client, transport):
    client = make_client(bootstrap=snapshot(flag()))
    client.record("nope", "u")
    client.record("new_checkout", None)
    client.record("new_checkout", "u", latency_ms="slow")
    client.record(["unhashable"], "u")
    transport.answer(OUTCOMES, ACK)
    assert client.flush(0) is True
    assert transport.posted() == []


# -- the window ------------------------------------------------------------------------------------------


def handle(flag: str, arm: str = "stable", revision: int = 1) -> ArmTally:
    return ArmTally((flag, revision, arm), retired=True)  # what a freshly compiled config holds


def test_a_writer_holding_an_evicted_tally_is_still_counted_once():
    window = OutcomeWindow(max_arms=10, max_error_users=10, on_full=lambda: None)
    live = window.add(handle("f"), "u", True, None)
    assert [t.count for t in window.cut()] == [1]
    window.cut()  # idle: evicted while a writer still holds it
    assert live.retired
    again = window.add(live, "u", True, None)
    assert again is not live and [(t.key, t.count) for t in window.cut()] == [(("f", 1, "stable"), 1)]


def test_the_record_paths_bucket_is_exactly_the_sketch_bucket():
    # record computes ceil(log2(ms) * 1/log2(GAMMA)) and the fold clamps it: bucket_index for every ms > 0
    rng = random.Random(7)
    probes = [1e-300, 1e-9, 0.001, 1.0, 12.5, 3_600_000.0, 1e12, 1e300]
    probes += [1.02**i for i in range(MIN_INDEX - 5, MAX_INDEX + 5)]
    probes += [math.nextafter(p, d) for p in list(probes) for d in (0, math.inf)]
    probes += [10 ** rng.uniform(-5, 8) for _ in range(20_000)] + [10**400]
    for ms in probes:
        raw = math.ceil(math.log2(ms) * _INV_LOG2_GAMMA)
        assert min(max(raw, MIN_INDEX), MAX_INDEX) == bucket_index(ms), ms


def test_odd_latencies_land_where_the_sketch_puts_them(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=0.0)))
    odd = [0, 0.0, -5.0, float("nan"), float("inf"), float("-inf"), 1e-12, 10**400, True, 7]
    for ms in odd:
        client.record("new_checkout", "u", latency_ms=ms)
    client.record("new_checkout", "u", latency_ms="slow")  # not a number: dropped, logged
    transport.answer(OUTCOMES, ACK)
    assert client.flush(0)
    arm = transport.posted()[0]["flags"]["new_checkout"]["arms"]["stable"]
    expected = LatencySketch()
    for ms in odd:
        expected.add(ms)
    assert arm["count"] == len(odd) and arm["latency"] == expected.to_wire()


def test_the_number_of_tallies_is_bounded_and_full_asks_for_an_early_flush():
    full = threading.Event()
    window = OutcomeWindow(max_arms=3, max_error_users=10, on_full=full.set)
    for i in range(5):
        window.add(handle(f"f{i}"), "u", True, None)
    assert len(window) == 3 and window.dropped == 2 and full.is_set()
    assert len(window.cut()) == 3
    assert len(window.cut()) == 0 and len(window) == 0  # idle for a whole window: evicted
    window.add(handle("f4"), "u", True, None)  # room again
    assert len(window) == 1 and window.dropped == 2


def test_error_users_are_bounded_and_stay_an_upper_bound():
    asked = []
    window = OutcomeWindow(max_arms=10, max_error_users=3, on_full=lambda: asked.append(1))
    for user in ["a", "b", "a", "c", "d", "e", "a"]:
        window.add(handle("f", "canary"), user, False, None)
    [batch] = build_batches(window.cut(), 1000, 1000)
    arm = batch["f"]["arms"]["canary"]
    assert (arm["errors"], arm["error_users"]) == (7, 5)  # a, b, c remembered; d, e counted as new
    assert asked


def test_sketch_over_the_wire_limit_is_collapsed_from_the_bottom():
    window = OutcomeWindow(max_arms=10, max_error_users=10, on_full=lambda: None)
    latencies = [1.02**i for i in range(MIN_INDEX, MAX_INDEX + 1)]
    for ms in latencies:
        window.add(handle("f"), "u", True, ms)
    [batch] = build_batches(window.cut(), 1000, max_buckets=1000)
    wire = batch["f"]["arms"]["stable"]["latency"]
    assert len(wire) == 1000 and sum(wire.values()) == len(latencies)
    sketch = LatencySketch.from_wire(wire)
    exact = LatencySketch()
    for ms in latencies:
        exact.add(ms)
    assert sketch.quantile(0.99) == exact.quantile(0.99) and sketch.quantile(0.5) == exact.quantile(0.5)


def test_batches_respect_the_flag_limit_and_the_body_size():
    window = OutcomeWindow(max_arms=5000, max_error_users=10, on_full=lambda: None)
    for i in range(2500):
        window.add(handle(f"flag-{i}"), "u", True, 5.0)
    batches = build_batches(window.cut(), max_flags=1000, max_buckets=1000)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert all(len(json.dumps(b)) < 900_000 for b in batches)


def test_an_append_into_a_list_evicted_meanwhile_is_handed_to_the_live_tally():
    window = OutcomeWindow(max_arms=10, max_error_users=10, on_full=lambda: None)
    live = window.add(handle("f"), "u", True, None)
    window.cut()
    events = live.events  # a writer fetched the list...
    window.cut()  # ...the tally, idle for a window, is evicted...
    assert live.retired and live.events is None
    events.append(event_of(True, 5.0))  # ...and the writer appends into the orphaned list
    window.settle(live, events)  # what record does when `tally.events is not events`
    [out] = window.cut()
    assert (out.key, out.count, out.counts[bucket_index(5.0) - MIN_INDEX]) == (("f", 1, "stable"), 1, 1)


def test_concurrent_writers_and_cuts_count_every_outcome_exactly_once(make_client, transport):
    snap = snapshot(flag(percent=50.0), flag("other", percent=10.0))
    client = make_client(bootstrap=snap)
    threads, per_thread = 4, 5000
    stop = threading.Event()
    cut: list = []

    def writer(n: int) -> None:
        for i in range(per_thread):
            client.record("new_checkout" if i % 3 else "other", f"t{n}-u{i % 97}", ok=i % 11 != 0, latency_ms=i % 40)

    def flusher() -> None:
        while not stop.is_set():
            cut.extend(client._window.cut())  # cuts (and evictions) racing with the writers

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    cutter = threading.Thread(target=flusher)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: between any two bytecodes
    try:
        cutter.start()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        stop.set()
        cutter.join()
        sys.setswitchinterval(interval)
    cut.extend(client._window.cut())
    assert sum(t.count for t in cut) == threads * per_thread
    assert sum(t.errors for t in cut) == threads * len(range(0, per_thread, 11))
    assert client.stats["outcomes_dropped_arm_limit"] == 0


def test_flush_waits_for_a_cut_already_under_way(make_client, transport, monkeypatch):
    """The outcomes thread has taken the window's tallies and is still building their batches when the
    application calls flush(): flush must see those outcomes sent, not return True on an empty window."""
    import flagsvc_client._reporter as reporter_module

    client = make_client(bootstrap=snapshot(flag()))
    for i in range(100):
        client.record("new_checkout", f"u{i}", ok=True, latency_ms=3.0)
    transport.answer(OUTCOMES, ACK)
    building, release = threading.Event(), threading.Event()

    def slow_build(*args, **kwargs):
        building.set()
        release.wait(5)
        return build_batches(*args, **kwargs)

    monkeypatch.setattr(reporter_module, "build_batches", slow_build)
    periodic = threading.Thread(target=client._reporter.cut)
    periodic.start()
    assert building.wait(5)
    threading.Timer(0.2, release.set).start()
    assert client.flush(timeout=5) is True
    periodic.join(5)
    assert client.stats["outcomes_acknowledged"] == 100


def test_a_retry_after_that_is_not_ascii_digits_is_ignored(make_client, transport, clock):
    client = make_client(bootstrap=snapshot(flag()), backoff_initial=1, backoff_max=30)
    client.record("new_checkout", "u")
    transport.answer(OUTCOMES, Response(503, {"retry-after": "\u00b2"}, b""), ACK)  # "²".isdigit() is True
    client._reporter.cut()
    delivery = client._reporter.delivery
    with delivery.send_lock:
        retry_in = delivery.send_due(force=True)  # float("²") would raise here
    assert 0 < retry_in <= 1
    clock.advance(30)
    client._outcomes_step()
    assert client.stats["batches_acknowledged"] == 1 and client.stats["batches_retried"] == 1
