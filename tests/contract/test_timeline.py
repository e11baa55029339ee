"""The TimelineRepository role, on every store: points per flag life and revision, downsampled exactly as the
domain's reference (`RevisionSeries.add`) says, read back by revision range."""

from __future__ import annotations

from flagsvc.domain.timeline import RevisionSeries
from flagsvc.store.timeline import MemoryTimeline, RedisTimeline, TimelineRepository, timeline_for


def _small(store, cap: int):
    """The store's own kind of timeline repository, with room for `cap` points a revision."""
    kind = timeline_for(store)
    return RedisTimeline(store, cap=cap) if isinstance(kind, RedisTimeline) else MemoryTimeline(store._clock, cap)


def test_every_store_has_a_timeline(any_store):
    assert isinstance(timeline_for(any_store), TimelineRepository)
    assert timeline_for(any_store).timeline("nothing", 1.0) == []


def test_points_are_kept_per_revision_oldest_first_and_read_by_range(any_store):
    timeline = timeline_for(any_store)
    for revision in (2, 3, 4):
        for look in range(3):
            timeline.add_timeline_point("f", 1.5, revision, {"at": look, "revision": revision})
    series = timeline.timeline("f", 1.5)
    assert [(s.revision, s.looks, s.stride) for s in series] == [(2, 3, 1), (3, 3, 1), (4, 3, 1)]
    assert series[1].points == [{"at": 0, "revision": 3}, {"at": 1, "revision": 3}, {"at": 2, "revision": 3}]
    assert [s.revision for s in timeline.timeline("f", 1.5, first=3)] == [3, 4]
    assert [s.revision for s in timeline.timeline("f", 1.5, last=3)] == [2, 3]
    assert [s.revision for s in timeline.timeline("f", 1.5, first=3, last=3)] == [3]
    assert [s.revision for s in timeline.timeline("f", 1.5, revisions=2)] == [3, 4]  # the newest


def test_a_flag_created_again_under_its_key_starts_a_timeline_of_its_own(any_store):
    timeline = timeline_for(any_store)
    timeline.add_timeline_point("f", 1.0, 2, {"life": "first"})
    timeline.add_timeline_point("f", 7.25, 2, {"life": "second"})
    timeline.add_timeline_point("g", 1.0, 2, {"life": "another flag"})
    assert [s.points for s in timeline.timeline("f", 7.25)] == [[{"life": "second"}]]
    assert [s.points for s in timeline.timeline("f", 1.0)] == [[{"life": "first"}]]


def test_downsampling_follows_the_reference_and_covers_the_whole_revision(any_store):
    timeline, reference = _small(any_store, cap=8), RevisionSeries(5)
    for look in range(70):
        keep = look in (13, 41)  # looks that moved the flag: kept whatever the stride
        timeline.add_timeline_point("f", 1.0, 5, {"look": look}, keep=keep)
        reference.add({"look": look}, keep=keep, cap=8)
    [stored] = timeline.timeline("f", 1.0)
    assert stored == reference
    looks = [p["look"] for p in stored.points]
    assert stored.looks == 70 and stored.stride >= 8 and 4 <= len(looks) <= 8
    assert looks[0] == 0 and looks == sorted(looks) and looks[-1] >= 70 - stored.stride  # first to (nearly) last
