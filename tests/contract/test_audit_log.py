"""The AuditLogStore role, on every store: ids from the writer's clock kept increasing, newest first with a
cursor, trimmed by count and by age."""

from __future__ import annotations

import pytest

from flagsvc.store.audit import AuditLogStore, audit_log_for

BIG = {"max_entries": 1000, "max_age": 86400.0}


def test_every_store_has_an_audit_log(any_store):
    assert isinstance(audit_log_for(any_store), AuditLogStore)


def test_entries_read_newest_first_from_a_cursor(any_store):
    log = audit_log_for(any_store)
    ids = [log.append_audit({"n": n}, now=1000.0 + n, **BIG) for n in range(5)]
    assert ids[0] == "1000000-0" and ids[4] == "1004000-0"
    assert [doc["n"] for _, doc in log.read_audit()] == [4, 3, 2, 1, 0]
    assert [doc["n"] for _, doc in log.read_audit(before=ids[3], count=2)] == [2, 1]
    assert log.read_audit(before=ids[0]) == []


def test_ids_keep_increasing_when_a_writers_clock_is_behind(any_store):
    log = audit_log_for(any_store)
    first = log.append_audit({"n": 1}, now=2000.0, **BIG)
    behind = log.append_audit({"n": 2}, now=1999.0, **BIG)  # another replica's clock, a second late
    same = log.append_audit({"n": 3}, now=2000.0, **BIG)
    assert (first, behind, same) == ("2000000-0", "2000000-1", "2000000-2")
    assert [doc["n"] for _, doc in log.read_audit()] == [3, 2, 1]


def test_the_log_is_capped_by_count_and_by_age(any_store):
    log = audit_log_for(any_store)
    for n in range(6):
        log.append_audit({"n": n}, now=1000.0 + n, max_entries=4, max_age=86400.0)
    assert [doc["n"] for _, doc in log.read_audit()] == [5, 4, 3, 2]
    log.append_audit({"n": 6}, now=1004.5, max_entries=100, max_age=2.0)  # keeps 1002.5 and later
    assert [doc["n"] for _, doc in log.read_audit()] == [6, 5, 4, 3]


def test_a_malformed_cursor_is_refused_and_the_first_id_has_nothing_before_it(any_store):
    log = audit_log_for(any_store)
    log.append_audit({"n": 1}, now=1000.0, **BIG)
    for bad in ("12-x", "1-", f"{2**64}-0"):
        with pytest.raises(ValueError):
            log.read_audit(before=bad)
    assert log.read_audit(before="0-0") == []
