"""The SDK warns, once per flag, when outcomes only ever reach one arm of a flag that answers both."""

from __future__ import annotations

import logging

import pytest
from flagsvc_client._transport import Response
from flagsvc_client.protocol import bucketing
from flagsvc_client.snapshot import parse_snapshot

from tests.support.sdk_fakes import flag, snapshot

OUTCOMES = "/sdk/v1/outcomes"
ACK = Response(200, {}, b'{"accepted": 1}')


def users(percent: float, canary: bool, n: int, key: str = "new_checkout") -> list[str]:
    found = (f"u{i}" for i in range(10**6) if bucketing.is_canary(key, f"u{i}", percent) is canary)
    return [next(found) for _ in range(n)]


def one_arm_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "outcomes recorded, all from" in r.getMessage()]


def flush(client, transport) -> None:
    transport.answer(OUTCOMES, ACK)
    assert client.flush(0)


def test_canary_only_outcomes_warn_once_with_the_fix(make_client, transport, caplog):
    caplog.set_level(logging.WARNING, logger="flagsvc_client")
    client = make_client(bootstrap=snapshot(flag(percent=5.0, revision=3)))
    canary = users(5.0, True, 20)
    for user in canary[:4]:  # no stable user among 4 has chance 0.05^4 = 6e-6: not yet overwhelming
        client.record("new_checkout", user)
    flush(client, transport)
    assert one_arm_warnings(caplog) == []
    client.record("new_checkout", canary[4])  # among 5: 3e-7
    flush(client, transport)
    assert one_arm_warnings(caplog) == [
        "flagsvc: flag 'new_checkout': 5 outcomes recorded, all from canary users, none from stable users although "
        "the flag is at 5 %: record outcomes on both branches (client.track/record), or the server's judge stays "
        "blind and the rollout holds"]
    for user in canary:  # said once per flag
        client.record("new_checkout", user)
    flush(client, transport)
    assert len(one_arm_warnings(caplog)) == 1


def test_stable_only_outcomes_warn_when_the_canary_absence_is_overwhelming(make_client, transport, caplog):
    caplog.set_level(logging.WARNING, logger="flagsvc_client")
    client = make_client(bootstrap=snapshot(flag(percent=1.0)))
    stable = users(1.0, False, 1400)
    for user in stable[:1300]:  # 0.99^1300 = 2e-6: not yet
        client.record("new_checkout", user)
    flush(client, transport)
    assert one_arm_warnings(caplog) == []
    for user in stable[1300:]:  # over cuts the counts add up: 0.99^1400 = 8e-7
        client.record("new_checkout", user)
    flush(client, transport)
    [warning] = one_arm_warnings(caplog)
    assert "1400 outcomes recorded, all from stable users, none from canary users" in warning


def test_both_arms_recorded_or_a_one_armed_config_never_warn(make_client, transport, caplog):
    caplog.set_level(logging.WARNING, logger="flagsvc_client")
    flags = [flag(percent=50.0), flag("full", percent=100.0), flag("zero", percent=0.0),
             flag("killed", state="rolled_back", percent=0.0)]
    client = make_client(bootstrap=snapshot(*flags))
    for user in users(50.0, True, 100) + users(50.0, False, 1):  # both arms, however lopsided
        client.record("new_checkout", user)
    for key in ("full", "zero", "killed"):  # the config answers one arm only: nothing to warn about
        for i in range(2000):
            client.record(key, f"u{i}")
    flush(client, transport)
    assert one_arm_warnings(caplog) == []


def test_a_new_revision_starts_counting_afresh(make_client, transport, caplog):
    caplog.set_level(logging.WARNING, logger="flagsvc_client")
    client = make_client(bootstrap=snapshot(flag(percent=50.0, revision=1)))
    canary = users(50.0, True, 30)
    for user in canary[:15]:  # 0.5^15 = 3e-5: not yet
        client.record("new_checkout", user)
    flush(client, transport)
    assert client._apply(parse_snapshot(snapshot(flag(percent=50.0, revision=2), version=2)))
    for user in canary[15:]:  # 15 more, of another revision: still 3e-5 (the 30 together would be 9e-10)
        client.record("new_checkout", user)
    flush(client, transport)
    assert one_arm_warnings(caplog) == []
    for user in canary[:10]:
        client.record("new_checkout", user)
    flush(client, transport)
    assert "25 outcomes recorded, all from canary users" in one_arm_warnings(caplog)[0]


def test_recording_stays_exact_with_the_watch_on(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=5.0)))
    for user in users(5.0, True, 50):
        client.record("new_checkout", user)
    flush(client, transport)
    [batch] = transport.posted()
    assert batch["flags"]["new_checkout"]["arms"]["canary"]["count"] == 50  # the watch only looks
