"""The OutcomeRepository role, on every store: batches add up once, per flag, for the current revision."""

from __future__ import annotations

from flagsvc_client.protocol.limits import MAX_STRATA, STRATUM_OTHER

from flagsvc.domain import flag as flags
from flagsvc.domain.outcomes import counter_fields
from flagsvc.store.roles import OutcomeEntry, OutcomeRepository, ReporterTotals, Store
from tests.support.flags import new


def test_every_store_plays_the_role(any_store):
    assert isinstance(any_store, OutcomeRepository)


def add_one(store: Store, key: str, revision: int, batch_id: str, increments: dict[str, int]) -> str:
    return store.add_outcomes(batch_id, {key: OutcomeEntry(revision, increments)})[key]


def test_outcomes_add_up_once_per_batch_for_the_current_revision(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    increments = {"stable:count": 90, "stable:errors": 2, "stable:error_users": 1, "canary:count": 10,
                  "canary:lat:233": 4, "canary:lat:240": 6}
    assert add_one(any_store, flag.key, 1, "batch-0001", increments) == "accepted"
    assert add_one(any_store, flag.key, 1, "batch-0001", increments) == "duplicate"
    assert add_one(any_store, flag.key, 1, "batch-0002", {"canary:count": 5, "canary:errors": 1}) == "accepted"
    assert add_one(any_store, flag.key, 7, "batch-0003", increments) == "stale"
    assert add_one(any_store, "ghost", 1, "batch-0004", increments) == "unknown"
    totals = any_store.outcome_totals(flag.key, 1)
    assert (totals["stable"].count, totals["stable"].errors, totals["stable"].error_users) == (90, 2, 1)
    assert (totals["canary"].count, totals["canary"].errors) == (15, 1)
    assert totals["canary"].latency.buckets == {233: 4, 240: 6}
    assert any_store.ingest_counts(flag.key) == {"accepted": 2, "duplicate": 1, "stale": 1}

    started, start_entry = flags.start(flag, now=2, actor="ops")  # a new revision starts from nothing
    any_store.replace(started, start_entry, expected_revision=1)
    assert any_store.outcome_totals(flag.key, 2)["canary"].count == 0
    assert add_one(any_store, flag.key, 1, "batch-0005", increments) == "stale"
    assert add_one(any_store, flag.key, 2, "batch-0006", {"canary:count": 3}) == "accepted"
    assert any_store.outcome_totals(flag.key, 2)["canary"].count == 3
    assert any_store.outcome_totals(flag.key, 2)["stable"].count == 0

    any_store.delete(flag.key)
    any_store.create(flag, entry)  # a new flag of the same name inherits nothing
    assert any_store.outcome_totals(flag.key, 1)["stable"].count == 0


def test_one_batch_many_flags_each_on_its_own(any_store):
    for key in ("a", "b"):
        flag, entry = new(key)
        any_store.create(flag, entry)
    batch = {"a": OutcomeEntry(1, {"canary:count": 4}), "b": OutcomeEntry(9, {"canary:count": 5}),
             "ghost": OutcomeEntry(1, {"canary:count": 6})}
    assert any_store.add_outcomes("batch-0001", batch) == {"a": "accepted", "b": "stale", "ghost": "unknown"}
    # the same batch again, with one more flag: only what was not added before is added
    flag, entry = new("c")
    any_store.create(flag, entry)
    again = {**batch, "c": OutcomeEntry(1, {"stable:count": 7})}
    assert any_store.add_outcomes("batch-0001", again) == {"a": "duplicate", "b": "stale", "ghost": "unknown",
                                                           "c": "accepted"}
    assert any_store.outcome_totals("a", 1)["canary"].count == 4
    assert any_store.outcome_totals("c", 1)["stable"].count == 7
    assert any_store.ingest_counts("a") == {"accepted": 1, "duplicate": 1, "stale": 0}
    assert any_store.ingest_counts("b") == {"accepted": 0, "duplicate": 0, "stale": 2}
    assert any_store.add_outcomes("batch-0002", {}) == {}


def test_outcomes_are_also_kept_per_reporter_for_the_current_revision(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    any_store.add_outcomes("batch-0001", {flag.key: OutcomeEntry(1, {"stable:count": 90, "stable:errors": 2,
                                                                    "stable:error_users": 1, "canary:count": 10,
                                                                    "canary:lat:233": 4}, "instance-a")})
    any_store.add_outcomes("batch-0002", {flag.key: OutcomeEntry(1, {"canary:count": 5, "canary:errors": 5},
                                                                 "instance-b")})
    any_store.add_outcomes("batch-0002", {flag.key: OutcomeEntry(1, {"canary:count": 5}, "instance-b")})  # a retry
    any_store.add_outcomes("batch-0003", {flag.key: OutcomeEntry(1, {"canary:count": 1}, "")})  # no reporter named
    assert any_store.reporter_totals(flag.key, 1) == {
        "instance-a": {"stable": ReporterTotals(90, 2), "canary": ReporterTotals(10, 0)},
        "instance-b": {"canary": ReporterTotals(5, 5)},
    }
    assert any_store.reporter_totals(flag.key, 2) == {}  # another revision: nothing
    started, start_entry = flags.start(flag, now=2, actor="ops")
    any_store.replace(started, start_entry, expected_revision=1)
    any_store.add_outcomes("batch-0004", {flag.key: OutcomeEntry(2, {"stable:count": 3}, "instance-a")})
    assert any_store.reporter_totals(flag.key, 2) == {"instance-a": {"stable": ReporterTotals(3, 0)}}
    any_store.delete(flag.key)
    assert any_store.reporter_totals(flag.key, 2) == {}


def test_batch_markers_outlive_every_retry_the_server_accepts(any_store, manual_clock):
    from flagsvc.store.keys import BATCH_MARKER_TTL

    flag, entry = new()
    any_store.create(flag, entry)
    assert add_one(any_store, flag.key, 1, "batch-0001", {"stable:count": 1}) == "accepted"
    manual_clock.advance(BATCH_MARKER_TTL - 1)
    assert add_one(any_store, flag.key, 1, "batch-0001", {"stable:count": 1}) == "duplicate"
    assert BATCH_MARKER_TTL > 3000 + 300  # longer than a batch is accepted for: PlausibilityLimits.max_batch_age


def test_the_aggregates_carry_an_epoch_that_changes_whenever_they_start_again(any_store):
    """The judge tells a reset of the aggregates (refilled between two of its looks) from growth by the epoch."""
    flag, entry = new()
    any_store.create(flag, entry)
    assert any_store.outcome_totals(flag.key, 1)["canary"].epoch == ""  # nothing yet
    add_one(any_store, flag.key, 1, "batch-0001", {"canary:count": 4, "stable:count": 40})
    first = any_store.outcome_totals(flag.key, 1)
    assert first["canary"].epoch and first["canary"].epoch == first["stable"].epoch
    add_one(any_store, flag.key, 1, "batch-0002", {"canary:count": 1})
    assert any_store.outcome_totals(flag.key, 1)["canary"].epoch == first["canary"].epoch  # the same aggregates

    started, start_entry = flags.start(flag, now=2, actor="ops")
    any_store.replace(started, start_entry, expected_revision=1)
    add_one(any_store, flag.key, 2, "batch-0003", {"canary:count": 4})
    second = any_store.outcome_totals(flag.key, 2)["canary"].epoch
    assert second and second != first["canary"].epoch

    any_store.delete(flag.key)
    any_store.create(flag, entry)
    add_one(any_store, flag.key, 1, "batch-0004", {"canary:count": 4})
    assert any_store.outcome_totals(flag.key, 1)["canary"].epoch not in ("", first["canary"].epoch, second)


def test_redis_aggregates_lost_and_refilled_get_a_new_epoch(real_store):
    flag, entry = new()
    real_store.create(flag, entry)
    add_one(real_store, flag.key, 1, "batch-0001", {"canary:count": 1000, "canary:errors": 10})
    before = real_store.outcome_totals(flag.key, 1)["canary"]
    real_store.redis.delete(real_store.keys.outcomes(flag.key))  # a reset, or the aggregates expired
    add_one(real_store, flag.key, 1, "batch-0002", {"canary:count": 1100, "canary:errors": 40})
    after = real_store.outcome_totals(flag.key, 1)["canary"]
    assert (after.count, after.errors) == (1100, 40) and after.epoch not in ("", before.epoch)


def test_a_reporter_window_that_reaches_back_is_overlapping_and_not_counted(any_store):
    flag, entry = new()
    any_store.create(flag, entry)

    def add(batch_id, window, reporter="instance-a"):
        return any_store.add_outcomes(batch_id, {flag.key: OutcomeEntry(1, {"stable:count": 10}, reporter,
                                                                         window)})[flag.key]

    assert add("b-1", (100.0, 105.0)) == "accepted"
    assert add("b-2", (105.0, 110.0)) == "accepted"  # the next window: back to back
    assert add("b-3", (100.0, 110.0)) == "overlapping"  # the same moments again
    assert add("b-3", (110.0, 115.0)) == "accepted"  # not remembered as applied: the id may be used
    assert add("b-4", (100.0, 110.0), reporter="instance-b") == "accepted"  # another instance's own moments
    assert any_store.outcome_totals(flag.key, 1)["stable"].count == 40


def test_reporters_kept_by_name_are_bounded(any_store, monkeypatch):
    import flagsvc.store.memory
    import flagsvc.store.redis_store
    from flagsvc.store.roles import OTHER_REPORTERS

    monkeypatch.setattr(flagsvc.store.memory, "MAX_NAMED_REPORTERS", 3)
    monkeypatch.setattr(flagsvc.store.redis_store, "MAX_NAMED_REPORTERS", 3)
    flag, entry = new()
    any_store.create(flag, entry)
    for n in range(10):
        any_store.add_outcomes(f"batch-{n:04d}", {flag.key: OutcomeEntry(1, {"canary:count": 1}, f"instance-{n}",
                                                                        (100.0, 105.0))})
    totals = any_store.reporter_totals(flag.key, 1)
    assert set(totals) == {"instance-0", "instance-1", "instance-2", OTHER_REPORTERS}
    assert totals[OTHER_REPORTERS]["canary"] == ReporterTotals(7, 0)


def test_strata_add_up_per_arm_and_revision_through_counter_fields(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    arms = {
        "stable": {"count": 100, "errors": 6, "error_users": 4,
                   "strata": {"premium": [10, 5, 3], "free": [80, 1, 1], "a:b|c": [5, 0, 0]}},
        "canary": {"count": 50, "errors": 3, "error_users": 3, "strata": {"premium": [25, 3, 3]}},
    }
    assert add_one(any_store, flag.key, 1, "batch-0001", counter_fields(arms)) == "accepted"
    assert add_one(any_store, flag.key, 1, "batch-0001", counter_fields(arms)) == "duplicate"
    assert add_one(any_store, flag.key, 1, "batch-0002",
                   counter_fields({"canary": {"count": 5, "errors": 1, "strata": {"free": [5, 1, 1]}}})) == "accepted"
    totals = any_store.outcome_totals(flag.key, 1)
    assert totals["stable"].strata == {"premium": (10, 5, 3), "free": (80, 1, 1), "a:b|c": (5, 0, 0)}
    assert totals["canary"].strata == {"premium": (25, 3, 3), "free": (5, 1, 1)}
    assert (totals["stable"].count, totals["canary"].count) == (100, 55)  # the arms' own totals are untouched

    started, start_entry = flags.start(flag, now=2, actor="ops")  # a new revision's strata start from nothing
    any_store.replace(started, start_entry, expected_revision=1)
    assert any_store.outcome_totals(flag.key, 2)["stable"].strata == {}


def test_a_revision_keeps_at_most_max_strata_labels_the_rest_pooled_as_other(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    first = {f"s{i:02d}": [2, 1, 1] for i in range(MAX_STRATA - 2)}
    assert add_one(any_store, flag.key, 1, "batch-0001",
                   counter_fields({"stable": {"count": 100, "errors": 50, "strata": first}})) == "accepted"
    # two more labels fit, whichever two; the third and fourth new ones are pooled; known labels still count
    later = {"n1": [1, 0, 0], "n2": [1, 0, 0], "n3": [1, 0, 0], "n4": [1, 1, 1], "s00": [3, 0, 0],
             STRATUM_OTHER: [2, 0, 0]}
    assert add_one(any_store, flag.key, 1, "batch-0002",
                   counter_fields({"stable": {"count": 20, "errors": 1, "strata": later},
                                   "canary": {"count": 1, "strata": {"n9": [1, 0, 0]}}})) == "accepted"
    totals = any_store.outcome_totals(flag.key, 1)
    stable, canary = totals["stable"].strata, totals["canary"].strata
    named = set(stable) - {STRATUM_OTHER}
    assert len(named) == MAX_STRATA and len(named - set(first)) == 2
    assert stable["s00"] == (5, 1, 1)
    assert stable[STRATUM_OTHER] == (2 + 2, 1, 1)  # two pooled new labels (one erring) + what was sent pooled
    assert canary == {STRATUM_OTHER: (1, 0, 0)}  # the canary's new label: no room either
    assert sum(n for n, _, _ in stable.values()) == 2 * (MAX_STRATA - 2) + 9
