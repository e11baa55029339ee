"""SDK-side Prometheus metrics: evaluation counts per flag and arm, config status, outcome delivery."""

from __future__ import annotations

import threading

import pytest
from flagsvc_client._transport import Response
from flagsvc_client.prometheus import instrument
from flagsvc_client.snapshot import parse_snapshot
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sdk_fakes import flag, snapshot


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_evaluations_are_counted_per_flag_and_arm_once_instrumented(make_client):
    client = make_client(bootstrap=snapshot(flag(percent=50.0), flag("dark", percent=0.0)))
    client.is_enabled("new_checkout", "before-instrumenting")  # not counted: counting was off
    registry = CollectorRegistry()
    instrument(client, registry)
    expected = {"canary": 0, "stable": 0}
    for i in range(1000):
        expected["canary" if client.is_enabled("new_checkout", i) else "stable"] += 1
    assert 0 < expected["canary"] < 1000
    client.evaluate("dark", "u")
    client.variant("dark", "v")
    client.is_enabled("missing", "u")  # unknown flag: the default, not an evaluation of any flag
    client.is_enabled("new_checkout", None)  # a bad id: the default, counted nowhere
    got = samples(registry)
    assert got[("flagsvc_client_evaluations_total", (("arm", "canary"), ("flag", "new_checkout")))] == \
        expected["canary"]
    assert got[("flagsvc_client_evaluations_total", (("arm", "stable"), ("flag", "new_checkout")))] == \
        expected["stable"]
    assert got[("flagsvc_client_evaluations_total", (("arm", "stable"), ("flag", "dark")))] == 2
    assert not any(labels and dict(labels).get("flag") == "missing" for _, labels in got)


def test_counts_survive_a_new_snapshot_and_lose_nothing_across_threads(make_client):
    client = make_client(bootstrap=snapshot(flag(percent=100.0)))
    client.count_evaluations()

    def hammer() -> None:
        for i in range(20_000):
            client.is_enabled("new_checkout", i)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    client._apply(parse_snapshot(snapshot(flag(percent=100.0, revision=2), version=2)))  # swapped while they run
    for t in threads:
        t.join()
    assert client.evaluation_counts() == {("new_checkout", "canary"): 80_000, ("new_checkout", "stable"): 0}


def test_delivery_and_config_status_are_exposed(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=50.0)))
    registry = CollectorRegistry()
    instrument(client, registry, evaluations=False)
    client.record("new_checkout", "u1", ok=True, latency_ms=3)
    transport.answer("/sdk/v1/outcomes", Response(503, {}, b""), Response(200, {}, b"{}"))  # fails, then acked
    client._reporter.cut()
    client._reporter.delivery.send_due(force=True)
    client._reporter.delivery.send_due(force=True)
    got = samples(registry)
    assert got[("flagsvc_client_flush_failures_total", ())] == 1
    assert got[("flagsvc_client_outcome_batches_total", (("result", "acknowledged"),))] == 1
    assert got[("flagsvc_client_outcomes_total", (("result", "acknowledged"),))] == 1
    assert got[("flagsvc_client_outcome_batches_pending", ())] == 0
    status = {dict(labels)["status"]: v for (name, labels), v in got.items() if name == "flagsvc_client_config_status"}
    assert sum(status.values()) == 1 and status[str(client.status)] == 1
    assert not any(name == "flagsvc_client_evaluations_total" for name, _ in got)  # evaluations=False


def test_one_client_per_registry(make_client):
    registry = CollectorRegistry()
    instrument(make_client(bootstrap=snapshot(flag())), registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        instrument(make_client(bootstrap=snapshot(flag())), registry)
