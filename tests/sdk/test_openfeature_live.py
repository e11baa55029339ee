"""The OpenFeature provider against the real flagsvc app (real Redis, real HTTP, the real SSE stream): a targeted
flag answered through the OpenFeature API id for id as the native SDK answers it, a percent change arriving as a
PROVIDER_CONFIGURATION_CHANGED event, and outcomes tracked through OpenFeature counted by the server per arm."""

from __future__ import annotations

import threading
from typing import Any

import requests
from flagsvc_client import FlagClient
from flagsvc_client.openfeature import FlagsvcProvider
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.track import TrackingEventDetails

from tests.support import ADMIN, SDK_KEY, serving, wait_for

WAIT = 30.0


def test_a_targeted_flag_through_openfeature_on_the_real_server(real_app):
    with serving(real_app) as url:

        def call(method: str, path: str, body: Any = None) -> Any:
            answer = requests.request(method, url + path, json=body, headers=ADMIN, timeout=10)
            assert answer.status_code < 300, answer.text
            return answer.json()

        call("POST", "/api/v1/segments", {"name": "anz", "conditions": [
            {"attribute": "country", "op": "in", "values": ["NZ", "AU"]}]})
        call("POST", "/api/v1/flags", {"key": "new_checkout", "stages": [50, 100], "eligible_segments": ["anz"]})
        call("POST", "/api/v1/flags/new_checkout/start")

        native = FlagClient(url, sdk_key=SDK_KEY, flush_interval=3600.0, exit_flush_timeout=0.0)
        try:
            assert native.wait_until_ready(WAIT)
            assert wait_for(lambda: native.evaluate("new_checkout", "u", context={"country": "NZ"}).reason
                            == "rollout", WAIT), "the SDK never heard of the start"
            api.set_provider_and_wait(FlagsvcProvider(native), "live")
            flags = api.get_client("live")
            changed: list[EventDetails] = []
            arrived = threading.Event()
            flags.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
                              lambda details: (changed.append(details), arrived.set()))

            tracked = {"canary": 0, "stable": 0}
            for n in range(1000):
                country = ("NZ", "AU", "US")[n % 3]
                context = EvaluationContext(f"user-{n}", {"country": country})
                details = flags.get_boolean_details("new_checkout", False, context)
                assert details.value is native.is_enabled("new_checkout", f"user-{n}", context={"country": country})
                assert details.error_code is None
                assert details.flag_metadata["percent"] == 50.0
                if country == "US":
                    assert (details.variant, details.flag_metadata["flagsvcReason"]) == ("stable", "not_eligible")
                    continue  # outside the eligible population: the server counts it in neither arm
                flags.track("new_checkout", context, TrackingEventDetails(value=5.0, attributes={"ok": n % 4 != 0}))
                tracked[details.variant] += 1
            assert native.flush(WAIT)
            arms = call("GET", "/api/v1/flags/new_checkout/stats")["arms"]
            assert {arm: arms[arm]["count"] for arm in tracked} == tracked
            assert 250 < tracked["canary"] < 420  # about half of the 667 eligible users

            call("PUT", "/api/v1/flags/new_checkout/percent", {"percent": 100})
            assert arrived.wait(WAIT), "no configuration-changed event"
            assert changed[0].flags_changed == ["new_checkout"]
            assert flags.get_boolean_value("new_checkout", False, EvaluationContext("user-2", {"country": "AU"}))
        finally:
            api.shutdown()
            native.close(0)
