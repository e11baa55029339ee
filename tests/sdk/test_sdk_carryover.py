"""After a reset of the server's dataset (a new epoch) that lacks flags the client held, the client keeps
answering those from its last snapshot, says so once, and reports it in `status` and `stats`."""

from __future__ import annotations

import logging

from tests.support.sdk_fakes import FakeStream, flag, snapshot, sse


def _feed(client, transport, *snaps):
    transport.streams.append(FakeStream([line for s in snaps for line in sse(s)]))
    client._config_step()


def _canary_user(client, key):
    return next(u for u in (f"user-{i}" for i in range(1000)) if client.is_enabled(key, u))


def test_flags_missing_from_a_new_epoch_are_answered_from_the_last_snapshot(make_client, transport, caplog):
    client = make_client()
    _feed(client, transport, snapshot(flag("checkout", percent=50.0, revision=7), flag("search", percent=0.0),
                                      epoch="old", version=40))
    user = _canary_user(client, "checkout")
    with caplog.at_level(logging.INFO, "flagsvc_client"):
        _feed(client, transport, snapshot(flag("search", percent=100.0), epoch="new", version=1),
              snapshot(flag("search", percent=100.0), epoch="new", version=2))
    assert client.is_enabled("checkout", user) is True  # carried over, still at 50 %
    assert client.evaluate("checkout", user).revision == 7
    assert client.is_enabled("search", "anyone") is True  # the new epoch has it: taken from the new epoch
    assert client.status == "carried_over"
    assert client.stats["carried_over"] == ["checkout"]
    resets = [r for r in caplog.records if "was reset" in r.getMessage()]
    assert len(resets) == 1 and resets[0].levelno == logging.ERROR and "checkout" in resets[0].getMessage()


def test_once_the_new_epoch_has_the_flag_it_is_taken_from_there(make_client, transport):
    client = make_client()
    _feed(client, transport, snapshot(flag("checkout", percent=50.0), epoch="old", version=40))
    _feed(client, transport, snapshot(epoch="new", version=1))
    assert client.status == "carried_over"
    _feed(client, transport, snapshot(flag("checkout", percent=100.0, revision=8), epoch="new", version=2))
    assert client.is_enabled("checkout", "anyone") is True and client.evaluate("checkout", "u").revision == 8
    assert client.status == "ready" and client.stats["carried_over"] == []
    _feed(client, transport, snapshot(epoch="new", version=3))  # then deleted within the epoch: gone for real
    assert client.evaluate("checkout", "u").reason == "flag_not_found"


def test_a_second_reset_carries_what_was_carried(make_client, transport):
    client = make_client()
    _feed(client, transport, snapshot(flag("checkout", percent=100.0), epoch="a", version=5))
    _feed(client, transport, snapshot(epoch="b", version=1))
    _feed(client, transport, snapshot(flag("other"), epoch="c", version=1))
    assert client.is_enabled("checkout", "u") is True and client.stats["carried_over"] == ["checkout"]


def test_the_cache_file_keeps_what_the_server_sent(make_client, transport, tmp_path):
    cache = tmp_path / "cache.json"
    client = make_client(cache_file=str(cache))
    _feed(client, transport, snapshot(flag("checkout"), epoch="old", version=4))
    _feed(client, transport, snapshot(epoch="new", version=1))
    assert '"flags":{}' in cache.read_text()  # the server's document, not the merged one


def test_applying_snapshots_does_not_touch_the_hot_path(make_client, transport):
    client = make_client()
    _feed(client, transport, snapshot(flag("checkout"), epoch="old", version=4))
    _feed(client, transport, snapshot(epoch="new", version=1))
    assert set(client._rules) == {"checkout"}  # one compiled rule per flag, as for any snapshot
