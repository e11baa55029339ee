"""Snapshot validation (whole or nothing), the newer-wins rule, the cache file, and the SSE parser."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from flagsvc_client._cache import initial_snapshots, read_snapshot_file, write_snapshot_file
from flagsvc_client._stream import HEARTBEAT, Event, parse_events
from flagsvc_client.snapshot import SnapshotError, loads_snapshot, parse_snapshot

from tests.support.sdk_fakes import flag, snapshot


def test_a_valid_snapshot_parses_with_precomputed_thresholds():
    snap = parse_snapshot(snapshot(flag(percent=12.5, allow=["a", 7], deny=["b"]), flag("other", state="off")))
    f = snap.flags["new_checkout"]
    assert (snap.epoch, snap.version, f.threshold, f.allow, f.deny) == ("ep1", 1, 1250, {"a", "7"}, {"b"})
    assert snap.flags["other"].killed and not f.killed
    assert snap.etag == '"ep1-1"'


def test_salt_defaults_to_the_key_and_unknown_fields_are_ignored():
    data = snapshot(flag())
    del data["flags"]["new_checkout"]["salt"]
    data["flags"]["new_checkout"]["future_field"] = {"x": 1}
    data["future_top_level"] = True
    assert parse_snapshot(data).flags["new_checkout"].salt == "new_checkout"


BAD = [
    ("not an object", []),
    ("no epoch", {"version": 1, "flags": {}}),
    ("empty epoch", {"epoch": "", "version": 1, "flags": {}}),
    ("bool version", {"epoch": "e", "version": True, "flags": {}}),
    ("negative version", {"epoch": "e", "version": -1, "flags": {}}),
    ("float version", {"epoch": "e", "version": 1.0, "flags": {}}),
    ("flags a list", {"epoch": "e", "version": 1, "flags": []}),
    ("flag a string", snapshot() | {"flags": {"f": "on"}}),
    ("key mismatch", snapshot() | {"flags": {"f": flag("g")}}),
    ("percent too big", snapshot(flag(percent=100.5))),
    ("percent negative", snapshot(flag(percent=-1))),
    ("percent NaN", snapshot(flag(percent=float("nan")))),
    ("percent string", snapshot(flag(percent="5"))),
    ("percent bool", snapshot(flag(percent=True))),
    ("revision missing", snapshot(flag(revision=None))),
    ("revision float", snapshot(flag(revision=1.5))),
    ("state missing", snapshot(flag(state=None))),
    ("salt number", snapshot(flag(salt=5))),
    ("salt lone surrogate", snapshot(flag(salt="a\ud800"))),
    ("allow a string", snapshot(flag(allow="abc"))),
    ("allow holds null", snapshot(flag(allow=[None]))),
    ("deny holds a float", snapshot(flag(deny=[1.5]))),
]


@pytest.mark.parametrize(("why", "data"), BAD, ids=[b[0] for b in BAD])
def test_a_malformed_snapshot_is_rejected_whole(why, data):
    with pytest.raises(SnapshotError):
        parse_snapshot(data)


def test_one_bad_flag_rejects_the_whole_snapshot():
    with pytest.raises(SnapshotError, match="broken"):
        parse_snapshot(snapshot(flag("fine"), flag("broken", percent=101)))


@pytest.mark.parametrize("text", [b"", b"{", b"\xff\xfe", "[" * 100000, b'{"epoch": "e"'])
def test_bad_json_is_a_snapshot_error(text):
    with pytest.raises(SnapshotError) as info:
        loads_snapshot(text)
    assert info.value.kind in ("snapshot_not_json", "malformed_snapshot")


def test_newer_wins_within_an_epoch_and_any_other_epoch_replaces():
    v5 = parse_snapshot(snapshot(version=5))
    assert parse_snapshot(snapshot(version=6)).replaces(v5)
    assert not parse_snapshot(snapshot(version=5)).replaces(v5)
    assert not parse_snapshot(snapshot(version=4)).replaces(v5)
    assert parse_snapshot(snapshot(epoch="ep2", version=1)).replaces(v5)  # the dataset was reset
    assert v5.replaces(None)


def test_cache_file_round_trip_is_atomic(tmp_path):
    path = str(tmp_path / "flags.json")
    snap = parse_snapshot(snapshot(flag(allow=["ü"]), version=9))
    write_snapshot_file(path, snap)
    assert read_snapshot_file(path) == snap
    assert os.listdir(tmp_path) == ["flags.json"]  # no temporary file left behind
    assert json.loads(Path(path).read_bytes())["version"] == 9


def test_a_failed_cache_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "flags.json")
    write_snapshot_file(path, parse_snapshot(snapshot(version=1)))

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_snapshot_file(path, parse_snapshot(snapshot(version=2)))
    assert read_snapshot_file(path).version == 1
    assert os.listdir(tmp_path) == ["flags.json"]


def test_initial_snapshots_never_raise(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    found, problems = initial_snapshots(str(bad), str(tmp_path / "missing.json"))
    assert found == [] and [kind for kind, _ in problems] == ["bootstrap_invalid"]
    found, problems = initial_snapshots({"epoch": 1}, None)
    assert found == [] and problems[0][0] == "bootstrap_invalid"
    found, problems = initial_snapshots(str(tmp_path / "missing.json"), None)
    assert problems[0][0] == "bootstrap_missing"


# -- SSE parsing -----------------------------------------------------------------------------------------


def test_sse_events_comments_and_multiline_data():
    lines = [
        ": heartbeat",
        "event: snapshot",
        'data: {"a":',
        "data:1}",
        "id: ep-3",
        "",
        "retry: 100",
        "data: plain",
        "",
        "",
        "event: ignored-without-data",
        "",
        "field-without-colon",
        "data: x",
        "",
    ]
    assert list(parse_events(lines)) == [
        Event(HEARTBEAT, "", None),
        Event("snapshot", '{"a":\n1}', "ep-3"),
        Event("message", "plain", "ep-3"),
        Event("message", "x", "ep-3"),
    ]


def test_sse_an_unterminated_event_is_not_dispatched():
    assert list(parse_events(["event: snapshot", "data: {}"])) == []


def test_sse_a_runaway_event_is_dropped(monkeypatch):
    import flagsvc_client._stream as stream

    monkeypatch.setattr(stream, "_MAX_EVENT_CHARS", 10)
    events = list(parse_events(["data: 123456789", "data: 123456789", "", "data: ok", ""]))
    assert events == [Event("message", "ok", None)]


def test_a_number_too_large_for_a_float_is_refused_not_raised():
    with pytest.raises(SnapshotError, match="percent"):
        parse_snapshot(snapshot(flag(percent=10**400)))
