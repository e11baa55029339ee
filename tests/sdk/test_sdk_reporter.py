"""Every outcome batch names its reporter (this SDK instance, new after a fork) and the window it covers."""

from __future__ import annotations

import re
import time

from flagsvc_client._reporter import OutcomeReporter
from flagsvc_client.protocol.limits import REPORTER_PATTERN

from tests.support.sdk_fakes import Response, flag, snapshot

ACK = Response(200, {}, b'{"accepted": 1}')


def test_batches_carry_the_reporter_and_back_to_back_wall_clock_windows(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=50.0, revision=3)))
    transport.answer("/sdk/v1/outcomes", ACK, ACK)
    before = time.time()
    for n in range(20):
        client.record("new_checkout", f"user-{n}", ok=True)
    assert client.flush(0) is True
    middle = time.time()
    client.record("new_checkout", "user-1", ok=False)
    assert client.flush(0) is True
    after = time.time()
    first, second = transport.posted()
    assert first["reporter"] == second["reporter"] and re.match(REPORTER_PATTERN, first["reporter"])
    assert before - 1 <= first["window"]["start"] <= first["window"]["end"] <= middle + 0.001
    assert second["window"]["start"] == first["window"]["end"]  # contiguous: nothing counted twice or lost
    assert second["window"]["end"] <= after + 0.001


def test_each_reporter_has_its_own_id(make_client):
    one = make_client(bootstrap=snapshot(flag()))
    two = make_client(bootstrap=snapshot(flag()))
    assert one._reporter.reporter_id != two._reporter.reporter_id


def test_a_reporter_built_anew_gets_a_new_id_as_in_a_forked_child(make_client):
    client = make_client(bootstrap=snapshot(flag()))
    reporter = client._reporter
    again = OutcomeReporter(client.settings, client._transport, client._clock, client._random, client._log)
    assert again.reporter_id != reporter.reporter_id
