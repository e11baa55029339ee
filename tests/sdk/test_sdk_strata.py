"""Stratified outcomes (docs/protocol.md, "Strata"): a flag whose snapshot names `stratify_by` has each arm's
outcomes counted per stratum label too, the label read from the context `record` is given; at most MAX_STRATA
labels a flag a batch (the same in both arms), the rest pooled as STRATUM_OTHER; no value, no label."""

from __future__ import annotations

from flagsvc_client._batches import build_batches
from flagsvc_client._outcomes import CANARY, STRATUM_MASK, OutcomeWindow, StratumLabels
from flagsvc_client._rules import compile_outcome_rule, stratum_label
from flagsvc_client._transport import Response
from flagsvc_client.protocol import bucketing
from flagsvc_client.protocol.limits import MAX_STRATA, STRATUM_OTHER
from flagsvc_client.snapshot import parse_snapshot

from tests.support.sdk_fakes import flag, snapshot

OUTCOMES = "/sdk/v1/outcomes"
ACK = Response(200, {}, b'{"accepted": 1}')


def parsed(**fields):
    return parse_snapshot(snapshot(flag(**fields))).flags["new_checkout"]


def test_the_label_is_the_attributes_values_joined_and_none_without_a_value():
    one, two = parsed(stratify_by=["plan"]), parsed(stratify_by=["plan", "region"])
    assert stratum_label(one, {"plan": "premium"}) == "premium"
    assert stratum_label(one, {"plan": 3}) == "3" and stratum_label(one, {"plan": True}) == "true"
    assert stratum_label(one, {"plan": ["a"]}) is None and stratum_label(one, {}) is None
    assert stratum_label(one, {"plan": 1.5}) is None
    assert stratum_label(one, None) is None and stratum_label(one, "not a context") is None
    assert stratum_label(two, {"plan": "free", "region": "nz"}) == "free|nz"
    assert stratum_label(two, {"region": "nz"}) == "|nz"
    assert stratum_label(two, {"other": 1}) is None


def test_a_malformed_stratify_by_is_ignored_not_fatal():
    for bad in ("plan", [], ["a", "b", "c"], ["plan", "plan"], ["no spaces"], [1]):
        config = parsed(stratify_by=bad)
        assert config.stratify_by == () and config.unusable is None


def test_the_stratum_does_not_change_the_arm_or_the_unit():
    plain = compile_outcome_rule(parsed())
    stratified = compile_outcome_rule(parsed(stratify_by=["plan"]))
    for i in range(200):
        code = stratified(f"u{i}", {"plan": "premium" if i % 3 else "free"})
        assert code & ~STRATUM_MASK == plain(f"u{i}")
        assert code & STRATUM_MASK
        assert (code >= CANARY) is bucketing.is_canary("new_checkout", f"u{i}", 50.0)
    assert stratified("u1", None) == plain("u1")  # no context: no label


def test_record_counts_requests_errors_and_erroring_users_per_stratum(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=50.0, stratify_by=["plan"])))
    expected: dict[str, dict[str, list[int]]] = {"stable": {}, "canary": {}}
    users_failed: dict[tuple[str, str], set[str]] = {}
    for i in range(600):
        user, plan = f"u{i}", ("premium" if i % 4 == 0 else "free")
        arm = "canary" if bucketing.is_canary("new_checkout", user, 50.0) else "stable"
        for _attempt in range(2):
            ok = not (plan == "premium" and i % 8 == 0)  # premium users fail, each twice
            client.record("new_checkout", user, ok=ok, latency_ms=5.0, context={"plan": plan})
            row = expected[arm].setdefault(plan, [0, 0, 0])
            row[0] += 1
            if not ok:
                row[1] += 1
                users_failed.setdefault((arm, plan), set()).add(user)
    client.record("new_checkout", "nobody", ok=False)  # no context: counted in the arm, under no label
    for (arm, plan), users in users_failed.items():
        expected[arm][plan][2] = len(users)
    transport.answer(OUTCOMES, ACK)
    assert client.flush(0) is True
    [batch] = transport.posted()
    arms = batch["flags"]["new_checkout"]["arms"]
    for arm in ("stable", "canary"):
        assert arms[arm]["strata"] == expected[arm]
    nobody = "canary" if bucketing.is_canary("new_checkout", "nobody", 50.0) else "stable"
    assert arms[nobody]["count"] == sum(row[0] for row in expected[nobody].values()) + 1


def test_a_flag_without_stratify_by_sends_no_strata(make_client, transport):
    client = make_client(bootstrap=snapshot(flag()))
    client.record("new_checkout", "u1", ok=True, context={"plan": "premium"})
    transport.answer(OUTCOMES, ACK)
    client.flush(0)
    [batch] = transport.posted()
    assert all("strata" not in arm for arm in batch["flags"]["new_checkout"]["arms"].values())


def test_at_most_max_strata_labels_a_batch_the_same_in_both_arms_the_rest_pooled():
    rule = compile_outcome_rule(parsed(stratify_by=["country"]))
    window = OutcomeWindow(max_arms=100, max_error_users=100, on_full=lambda: None)
    from flagsvc_client._outcomes import placeholders

    stable, canary = placeholders("new_checkout", 1)
    sent = 0
    for c in range(MAX_STRATA + 10):
        for i in range(MAX_STRATA + 10 - c):  # country c0 the most requests, then c1...
            code = rule(f"user-{c}-{i}", {"country": f"c{c}"})
            window.add(canary if code >= CANARY else stable, f"user-{c}-{i}", True, 1.0, code)
            sent += 1
    [batch] = build_batches(window.cut(), 1000, 1000)
    arms = batch["new_checkout"]["arms"]
    labels = set(arms["stable"]["strata"]) | set(arms["canary"]["strata"])
    assert labels == {f"c{c}" for c in range(MAX_STRATA)} | {STRATUM_OTHER}
    assert sum(row[0] for arm in arms.values() for row in arm["strata"].values()) == sent
    for arm in arms.values():
        assert sum(row[0] for row in arm["strata"].values()) == arm["count"]


def test_the_label_table_is_bounded_and_pools_the_rest_as_other():
    table = StratumLabels(capacity=3)
    a, b = table.code("a"), table.code("b")
    assert a != b and table.code("a") == a and table.label(a) == "a"
    assert table.code("c") == table.other and table.label(table.other) == STRATUM_OTHER
    assert table.code("x" * 500) == table.other


def test_track_counts_the_erroring_user_in_its_own_stratum_whatever_runs_inside_the_block(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=100.0, stratify_by=["plan"]),
                                            flag("other", percent=100.0, stratify_by=["plan"])))
    for i in range(3):
        try:
            with client.track("new_checkout", f"u{i}", context={"plan": "premium"}):
                client.record("other", "someone", ok=True, context={"plan": "free"})  # another stratum meanwhile
                raise RuntimeError("the canary failed")
        except RuntimeError:
            pass
    transport.answer(OUTCOMES, ACK)
    client.flush(0)
    [batch] = transport.posted()
    assert batch["flags"]["new_checkout"]["arms"]["canary"]["strata"] == {"premium": [3, 3, 3]}
    assert batch["flags"]["other"]["arms"]["canary"]["strata"] == {"free": [3, 0, 0]}
