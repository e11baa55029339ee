"""The OpenFeature provider, through the OpenFeature SDK's public API only, against the fake flagsvc server
(real HTTP, the SDK's own threads). docs/openfeature.md maps each test to the requirements it shows."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flagsvc_client import FlagClient
from flagsvc_client.openfeature import FlagsvcProvider
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from openfeature.track import TrackingEventDetails

from tests.support.sdk_fake_server import FakeFlagServer

WAIT = 30.0  # generous: these wait for conditions, and a loaded CI machine is slow
SEGMENTS = {"anz": {"conditions": [{"attribute": "country", "op": "in", "values": ["NZ", "AU"]}]}}
_domains = itertools.count()


def flag(key: str, percent: float, **fields: Any) -> dict[str, Any]:
    return {"key": key, "state": "rolling", "percent": percent, "revision": 1, "salt": key, **fields}


class SegmentedFakeServer(FakeFlagServer):
    """The fake server, with segments in its snapshot (its own body() sends flags only)."""

    def body(self) -> tuple[str, bytes]:
        data = {"epoch": self.epoch, "version": self.version, "flags": self.flags, "segments": SEGMENTS}
        return f'"{self.epoch}-{self.version}"', json.dumps(data, separators=(",", ":")).encode()


@pytest.fixture
def server() -> Iterator[SegmentedFakeServer]:
    fake = SegmentedFakeServer({
        "new_checkout": flag("new_checkout", 30.0),
        "anz_only": flag("anz_only", 100.0, requires=["segments"], eligible_segments=["anz"]),
        "from_the_future": flag("from_the_future", 50.0, requires=["time_travel"]),
        "killed": {**flag("killed", 50.0), "state": "rolled_back"},
    }, heartbeat=0.1)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def made() -> Iterator[list[FlagClient]]:
    clients: list[FlagClient] = []
    yield clients
    api.shutdown()  # OpenFeature's state is global: every test leaves it empty
    for client in clients:
        client.close(0)


def connect(url: str, made: list[FlagClient], **settings: Any) -> FlagClient:
    settings.setdefault("exit_flush_timeout", 0.0)
    client = FlagClient(url, sdk_key="sdk-test", backoff_initial=0.05, backoff_max=0.2, **settings)
    made.append(client)
    return client


def of_client(provider: FlagsvcProvider, wait: bool = True) -> Any:
    """An OpenFeature client bound to `provider` under a domain of its own."""
    domain = f"flagsvc-test-{next(_domains)}"
    if wait:
        api.set_provider_and_wait(provider, domain)
    else:
        api.set_provider(provider, domain)
    return api.get_client(domain)


class Events:
    """Handlers on an OpenFeature client, recording what arrives; `wait_for` blocks until a matching event."""

    def __init__(self, client: Any) -> None:
        self.seen: list[tuple[ProviderEvent, EventDetails]] = []
        self.arrived = threading.Condition()
        for event in ProviderEvent:
            client.add_handler(event, lambda details, event=event: self._add(event, details))

    def _add(self, event: ProviderEvent, details: EventDetails) -> None:
        with self.arrived:
            self.seen.append((event, details))
            self.arrived.notify_all()

    def wait_for(self, event: ProviderEvent, after: int = 0) -> EventDetails:
        with self.arrived:
            found = self.arrived.wait_for(lambda: [d for e, d in self.seen[after:] if e == event], WAIT)
            assert found, f"no {event} within {WAIT} s; seen {[e for e, _ in self.seen]}"
            return found[0]


def test_boolean_details_agree_with_the_native_client_id_for_id(server, made):
    native = connect(f"http://127.0.0.1:{server.port}", made)
    flags = of_client(FlagsvcProvider(native))
    assert flags.get_provider_status() == ProviderStatus.READY
    canary = 0
    for n in range(2000):
        user = f"user-{n}"
        details = flags.get_boolean_details("new_checkout", False, EvaluationContext(user))
        expected = native.is_enabled("new_checkout", user)
        assert details.value is expected
        assert details.variant == ("canary" if expected else "stable")
        assert details.reason == Reason.SPLIT
        assert details.error_code is None and details.error_message is None
        assert details.flag_metadata == {"revision": 1, "percent": 30.0, "state": "rolling",
                                         "flagsvcReason": "rollout"}
        canary += expected
    assert 450 < canary < 750  # about 30 %
    assert flags.get_boolean_value("new_checkout", True, EvaluationContext("user-1")) is native.is_enabled(
        "new_checkout", "user-1")
    assert api.get_provider_metadata(flags.domain).name == "flagsvc"


def test_context_attributes_are_the_flagsvc_context(server, made):
    flags = of_client(FlagsvcProvider(connect(f"http://127.0.0.1:{server.port}", made)))
    inside = flags.get_boolean_details("anz_only", False, EvaluationContext("u1", {"country": "NZ"}))
    outside = flags.get_boolean_details("anz_only", False, EvaluationContext("u1", {"country": "US"}))
    assert (inside.value, inside.variant, inside.reason) == (True, "canary", Reason.SPLIT)
    assert (outside.value, outside.variant, outside.reason) == (False, "stable", Reason.DEFAULT)
    assert outside.flag_metadata["flagsvcReason"] == "not_eligible"
    killed = flags.get_boolean_details("killed", True, EvaluationContext("u1"))
    assert (killed.value, killed.variant, killed.reason) == (False, "stable", Reason.DISABLED)
    bad = flags.get_boolean_details("anz_only", True, EvaluationContext("u1", {"country": {"not": "a string"}}))
    assert (bad.value, bad.reason, bad.error_code) == (True, Reason.ERROR, ErrorCode.INVALID_CONTEXT)


def test_errors_answer_the_default_with_a_code(server, made):
    flags = of_client(FlagsvcProvider(connect(f"http://127.0.0.1:{server.port}", made)))
    cases = [
        (flags.get_boolean_details("no_such_flag", True, EvaluationContext("u1")), True, ErrorCode.FLAG_NOT_FOUND),
        (flags.get_boolean_details("new_checkout", True, EvaluationContext()), True,
         ErrorCode.TARGETING_KEY_MISSING),
        (flags.get_boolean_details("new_checkout", True, None), True, ErrorCode.TARGETING_KEY_MISSING),
        (flags.get_boolean_details("from_the_future", True, EvaluationContext("u1")), True, ErrorCode.PARSE_ERROR),
        (flags.get_string_details("new_checkout", "x", EvaluationContext("u1")), "x", ErrorCode.TYPE_MISMATCH),
        (flags.get_integer_details("new_checkout", 7, EvaluationContext("u1")), 7, ErrorCode.TYPE_MISMATCH),
        (flags.get_float_details("new_checkout", 0.5, EvaluationContext("u1")), 0.5, ErrorCode.TYPE_MISMATCH),
        (flags.get_object_details("new_checkout", {"a": 1}, EvaluationContext("u1")), {"a": 1},
         ErrorCode.TYPE_MISMATCH),
        (flags.get_string_details("no_such_flag", "x", EvaluationContext("u1")), "x", ErrorCode.FLAG_NOT_FOUND),
    ]
    odd = flags.get_string_details(["not", "a", "key"], "x", EvaluationContext("u1"))  # type: ignore[arg-type]
    cases.append((odd, "x", odd.error_code))  # never raises, whatever the SDK lets through
    for details, default, code in cases:
        assert (details.value, details.reason, details.error_code) == (default, Reason.ERROR, code), details
        assert details.error_message  # says why (spec 2.3.3)
        assert details.variant is None


def test_not_ready_then_ready_when_the_server_comes_up(server, made):
    url = f"http://127.0.0.1:{server.port}"
    server.stop()
    provider = FlagsvcProvider(connect(url, made), init_timeout=0.2, status_interval=0.05)
    flags = of_client(provider, wait=False)
    events = Events(flags)
    error = events.wait_for(ProviderEvent.PROVIDER_ERROR)
    assert error.error_code == ErrorCode.PROVIDER_NOT_READY and error.message
    assert flags.get_provider_status() == ProviderStatus.ERROR
    details = flags.get_boolean_details("new_checkout", True, EvaluationContext("u1"))
    assert (details.value, details.error_code) == (True, ErrorCode.PROVIDER_NOT_READY)
    server.start()
    events.wait_for(ProviderEvent.PROVIDER_READY, after=len(events.seen))
    assert flags.get_provider_status() == ProviderStatus.READY
    assert flags.get_boolean_details("new_checkout", True, EvaluationContext("u1")).error_code is None


def test_configuration_changed_names_the_flags_then_stale_and_ready_again(server, made):
    client = connect(f"http://127.0.0.1:{server.port}", made, stale_after=2.0, poll_interval=1.0)
    flags = of_client(FlagsvcProvider(client, status_interval=0.05))
    events = Events(flags)
    ready = events.wait_for(ProviderEvent.PROVIDER_READY)  # attached after READY: runs at once (spec 5.3.3)
    assert ready.provider_name == "flagsvc"

    server.update("new_checkout", percent=60.0)
    changed = events.wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["new_checkout"]
    details = flags.get_boolean_details("new_checkout", False, EvaluationContext("u1"))
    assert details.flag_metadata["percent"] == 60.0 and details.flag_metadata["revision"] == 2

    before = len(events.seen)
    server.stop()  # no word from the server for longer than stale_after
    events.wait_for(ProviderEvent.PROVIDER_STALE, after=before)
    assert flags.get_provider_status() == ProviderStatus.STALE
    details = flags.get_boolean_details("new_checkout", False, EvaluationContext("u1"))
    assert details.error_code is None and details.variant in ("canary", "stable")  # still answers

    before = len(events.seen)
    server.start()
    events.wait_for(ProviderEvent.PROVIDER_READY, after=before)
    assert flags.get_provider_status() == ProviderStatus.READY


def test_track_records_outcomes_in_the_arm_the_user_was_in(server, made):
    client = connect(f"http://127.0.0.1:{server.port}", made, flush_interval=3600.0)
    flags = of_client(FlagsvcProvider(client))
    expected = {"canary": [0, 0], "stable": [0, 0]}
    for n in range(400):
        context = EvaluationContext(f"user-{n}")
        arm = flags.get_boolean_details("new_checkout", False, context).variant
        failed = n % 7 == 0
        details = TrackingEventDetails(value=12.5 + n % 10, attributes={"ok": not failed})
        flags.track("new_checkout", context, details)
        expected[arm][0] += 1
        expected[arm][1] += failed
    # an event named for the business, the flag as an attribute; and one with no user: nothing recorded
    flags.track("checkout_completed", EvaluationContext("user-1"), TrackingEventDetails(attributes={
        "flag": "new_checkout", "error": True}))
    arm = client.variant("new_checkout", "user-1")
    expected[arm] = [expected[arm][0] + 1, expected[arm][1] + 1]
    flags.track("new_checkout", EvaluationContext(), TrackingEventDetails(value=1.0))
    flags.track("no_such_flag", EvaluationContext("user-1"))  # dropped and logged, never raised
    assert client.flush(WAIT)
    got = {arm: [server.totals[("new_checkout", 1, arm)][k] for k in ("count", "errors")] for arm in expected}
    assert got == expected


def test_shutdown_closes_an_owned_client_and_twice_is_harmless(server, made):
    client = connect(f"http://127.0.0.1:{server.port}", made)
    provider = FlagsvcProvider(client, close_client=True)
    flags = of_client(provider)
    flags.track("new_checkout", EvaluationContext("user-1"))
    api.shutdown()  # runs the provider's shutdown (spec 1.6.1)
    assert sum(t["count"] for t in server.totals.values()) == 1  # closing flushed the outcome
    provider.shutdown()  # idempotent (spec 2.5.3)


def test_the_base_sdk_does_not_import_openfeature():
    code = "import sys, flagsvc_client, flagsvc_client.client; sys.exit('openfeature' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
