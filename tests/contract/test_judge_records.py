"""The JudgeRecords role, on every store: a typed record per flag, gone with the flag."""

from __future__ import annotations

from flagsvc.domain.judge_record import JudgeRecord
from flagsvc.store.roles import JudgeRecords
from tests.support.flags import new


def test_every_store_plays_the_role(any_store):
    assert isinstance(any_store, JudgeRecords)


def test_judgement_round_trip(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    assert any_store.load_judgement(flag.key) is None
    verdict = {"decision": "hold", "reason": "thin data", "evidence": {"n": 3}, "at": 5.0, "revision": 1}
    record = JudgeRecord(revision=1, created_at=1.0, verdict=verdict, state={"s": 0.5})
    any_store.save_judgement(flag.key, record)
    assert any_store.load_judgement(flag.key) == record
    assert any_store.load_judgement(flag.key).to_dict() == {"revision": 1, "created_at": 1.0, "verdict": verdict,
                                                            "state": {"s": 0.5}}
    any_store.save_judgement(flag.key, JudgeRecord(revision=2, created_at=1.0))  # replaces the record whole
    assert any_store.load_judgement(flag.key) == JudgeRecord(revision=2, created_at=1.0)
    any_store.delete(flag.key)
    assert any_store.load_judgement(flag.key) is None
