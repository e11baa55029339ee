"""`flagsvc_flag_blind{flag,arm}`: read from the controller's judge record at scrape time."""

from __future__ import annotations

from flagsvc import metrics
from flagsvc.domain import flag as flags
from flagsvc.domain.judge_record import JudgeRecord
from flagsvc.store.memory import MemoryStore


def rolling(store: MemoryStore, key: str):
    flag, entry = flags.new_flag(key, {"stages": [5, 50, 100]}, now=0, actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=0, actor="ops")
    store.replace(started, entry, expected_revision=1)
    return started


def judged(store: MemoryStore, flag, decision: str, arm: str | None = None, *, revision: int | None = None) -> None:
    evidence = {"blind": {"arm": arm, "observed": 0, "expected": 950.0}} if arm else {}
    verdict = {"decision": decision, "reason": f"{decision}: ...", "evidence": evidence, "at": 10.0,
               "revision": flag.revision if revision is None else revision}
    store.save_judgement(flag.key, JudgeRecord(flag.revision, flag.created_at, verdict, {}))


def blind_samples(store: MemoryStore) -> dict[tuple[str, str], float]:
    [family] = metrics.BlindArmCollector(store).collect()
    return {(s.labels["flag"], s.labels["arm"]): s.value for s in family.samples}


def test_the_gauge_is_1_for_the_blind_arm_of_a_rolling_flag_and_0_otherwise():
    store = MemoryStore()
    judged(store, rolling(store, "blind_one"), "blind", "stable")
    judged(store, rolling(store, "holding"), "hold")
    rolling(store, "never_judged")
    older = rolling(store, "stale")
    judged(store, older, "blind", "canary", revision=older.revision - 1)  # about an earlier revision
    paused, entry = flags.pause(rolling(store, "paused"), now=1, actor="ops")
    store.replace(paused, entry, expected_revision=2)
    assert blind_samples(store) == {
        ("blind_one", "stable"): 1.0, ("blind_one", "canary"): 0.0,
        ("holding", "stable"): 0.0, ("holding", "canary"): 0.0,
        ("never_judged", "stable"): 0.0, ("never_judged", "canary"): 0.0,
        ("stale", "stable"): 0.0, ("stale", "canary"): 0.0,
    }  # not paused flags: the controller does not judge them


def test_the_scrape_shows_it():
    store = MemoryStore()
    judged(store, rolling(store, "new_checkout"), "blind", "canary")
    body = metrics.render(store).decode()
    assert 'flagsvc_flag_blind{arm="canary",flag="new_checkout"} 1.0' in body
    assert 'flagsvc_flag_blind{arm="stable",flag="new_checkout"} 0.0' in body


def test_a_store_that_does_not_answer_gives_no_blind_gauge():
    class Down:
        def list_flags(self):
            raise ConnectionError("redis is down")

        def load_judgement(self, key):
            raise ConnectionError("redis is down")

    assert list(metrics.BlindArmCollector(Down()).collect()) == []
