"""Targeting in the SDK: the conditions' semantics, the rule's order, the compiled (generated) closure against the
plain evaluation, outcomes outside the eligible population, bad contexts, and a snapshot from the future."""

from __future__ import annotations

import time

import pytest
from flagsvc_client import FlagClient
from flagsvc_client._outcomes import CANARY
from flagsvc_client._rules import OutsideRollout, compile_outcome_rule, compile_rule, explain
from flagsvc_client.protocol import bucketing
from flagsvc_client.protocol.targeting import (
    MAX_SUBJECT_LENGTH,
    InvalidContext,
    compile_condition,
    condition_problems,
    regex_problems,
    semver_key,
)
from flagsvc_client.snapshot import parse_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st


def holds(op: str, values: list, value: object) -> bool:
    return compile_condition({"attribute": "a", "op": op, "values": values})({"a": value} if value is not None else {})


@pytest.mark.parametrize(("op", "values", "value", "expected"), [
    ("equals", ["free"], "free", True),
    ("equals", ["free"], "Free", False),
    ("equals", [1], 1.0, True),
    ("equals", [1], True, False),  # a bool is not a number
    ("equals", [True], True, True),
    ("equals", [True], 1, False),
    ("equals", ["30"], 30, False),  # nothing is coerced
    ("in", ["NZ", "AU"], "AU", True),
    ("in", ["NZ", "AU"], ["US", "NZ"], True),  # a list attribute: any item
    ("in", ["NZ", "AU"], ["US"], False),
    ("in", ["NZ"], None, False),  # missing
    ("not_in", ["NZ", "AU"], "US", True),
    ("not_in", ["NZ", "AU"], "NZ", False),
    ("not_in", ["NZ"], None, False),  # missing: not said of a value that is not there
    ("not_in", ["NZ"], ["US", "NZ"], False),  # a list: none of its items listed
    ("not_in", ["NZ"], ["US", "FR"], True),
    ("starts_with", ["org-", "team-"], "team-7", True),
    ("starts_with", ["org-"], 7, False),
    ("ends_with", ["@example.com"], "kim@example.com", True),
    ("ends_with", ["@example.com"], "kim@example.org", False),
    ("lt", [10], 9.5, True),
    ("lt", [10], 10, False),
    ("lte", [10], 10, True),
    ("gt", [10], 11, True),
    ("gt", [10], "11", False),
    ("gt", [10], True, False),
    ("gte", [2**53], 2**53 + 1, True),
    ("gt", [1], float("nan"), False),
    ("semver_gte", ["2.0.0"], "2.0.0", True),
    ("semver_gte", ["2.0.0"], "2.0.0-rc.1", False),  # a pre-release precedes its release
    ("semver_lt", ["2.0.0"], "1.10.3", True),
    ("semver_gt", ["1.2"], "1.2.1", True),  # 1.2 is 1.2.0
    ("semver_eq", ["1.2.3"], "1.2.3+build.7", True),  # build metadata ignored
    ("semver_lt", ["1.0.0-alpha.beta"], "1.0.0-alpha.1", True),  # numeric identifiers first
    ("semver_gt", ["1.0.0"], "v1.2.0", False),  # not a version: false
    ("matches", [r"^[a-z]+-[0-9]+$"], "team-42", True),
    ("matches", [r"@example\.com$"], "kim@example.com", True),
    ("matches", ["x"], "x" * (MAX_SUBJECT_LENGTH + 1), False),  # too long never matches
])
def test_each_operator(op, values, value, expected):
    assert holds(op, values, value) is expected


@pytest.mark.parametrize("bad", [{"nested": 1}, object(), b"bytes", ["a", 1]])
def test_an_unsupported_value_that_is_read_is_an_invalid_context(bad):
    with pytest.raises(InvalidContext):
        holds("in", ["x"], bad)


def test_semver_precedence_follows_the_specification():
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    keys = [semver_key(v) for v in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert semver_key("01.2.3") is None and semver_key("1.2.3-01") is None and semver_key("") is None


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|aa)*b", r"a*a*b", r".*foo.*bar", r"(\w)\1", r"(?=x)x",
                                     r"(?i)abc", r"a{1,1000}b", r"x" * 200])
def test_unsafe_or_unportable_patterns_are_refused(pattern):
    assert regex_problems(pattern)
    assert condition_problems({"attribute": "a", "op": "matches", "values": [pattern]})["values"]


@pytest.mark.parametrize("pattern", [r"@example\.com$", r"^[0-9]+\.[0-9]+\.[0-9]+$", r"^(free|pro)-[a-z]+$",
                                     r"^x[^y]*y", r"[a-z]+[0-9]", r"\d+\.\d+", r"a+$"])
def test_usual_patterns_are_accepted(pattern):
    assert regex_problems(pattern) == []


def test_accepted_patterns_stay_fast_on_hostile_input():
    # the worst the subset allows: guarded repetitions searched over a capped subject that almost matches
    worst = [r"a+b", r"[a-z]+[0-9]", r"\d+\.\d+\.\d+x", r"(?:a|b|c)d*e", r"a*$x"]
    subjects = ["a" * MAX_SUBJECT_LENGTH, "1." * (MAX_SUBJECT_LENGTH // 2), "ad" * (MAX_SUBJECT_LENGTH // 2)]
    for pattern in worst:
        if regex_problems(pattern):
            continue
        condition = compile_condition({"attribute": "a", "op": "matches", "values": [pattern]})
        for subject in subjects:
            started = time.perf_counter()
            condition({"a": subject + "!"[: MAX_SUBJECT_LENGTH - len(subject)]})
            assert time.perf_counter() - started < 0.05, (pattern, subject[:10])


SEGMENTS = {
    "staff": {"conditions": [{"attribute": "email", "op": "ends_with", "values": ["@flagsvc.test"]}]},
    "anz-modern": {"conditions": [{"attribute": "country", "op": "in", "values": ["NZ", "AU"]},
                                  {"attribute": "app_version", "op": "semver_gte", "values": ["2.0.0"]}]},
    "big": {"conditions": [{"attribute": "seats", "op": "gte", "values": [100]}]},
    "beta": {"conditions": [{"attribute": "groups", "op": "in", "values": ["beta"]},
                            {"attribute": "email", "op": "matches", "values": [r"^[a-z]+@"]}]},
}


def snapshot_with(flag: dict, segments: dict | None = None) -> dict:
    base = {"key": "f", "state": "rolling", "percent": 50.0, "revision": 3, "salt": "f", "allow": [], "deny": []}
    return {"epoch": "e", "version": 1, "flags": {"f": {**base, **flag}},
            "segments": SEGMENTS if segments is None else segments}


def compiled(flag: dict):
    snapshot = parse_snapshot(snapshot_with(flag))
    config = snapshot.flags["f"]
    return config, snapshot.segments, compile_rule(config, snapshot.segments), compile_outcome_rule(config,
                                                                                                    snapshot.segments)


TARGETED = {"requires": ["segments", "bucket_by"], "excluded_segments": ["staff"],
            "eligible_segments": ["anz-modern", "big"], "bucket_by": "org", "allow": ["qa-1"], "deny": ["bad-1"]}


def test_the_rule_in_order_lists_then_excluded_then_eligible_then_bucket_by():
    config, segments, rule, outcome = compiled(TARGETED)
    eligible = {"country": "NZ", "app_version": "2.1.0", "org": "acme", "email": "kim@example.com"}
    staff = {**eligible, "email": "ops@flagsvc.test"}
    assert explain(config, "qa-1", staff, segments) == (True, "allow_list")  # lists come first
    assert explain(config, "bad-1", eligible, segments) == (False, "deny_list")
    assert explain(config, "u", staff, segments) == (False, "excluded_segment")
    assert explain(config, "u", {"country": "US", "org": "acme"}, segments) == (False, "not_eligible")
    assert explain(config, "u", {"seats": 250, "org": "acme"}, segments)[1] == "rollout"  # any eligible segment
    assert explain(config, "u", {"seats": 250}, segments) == (False, "no_bucket_attribute")
    expected = bucketing.bucket("f", "acme") < 5000
    assert explain(config, "u", eligible, segments) == (expected, "rollout")
    assert rule("u", eligible) is expected and rule("someone-else", eligible) is expected  # the org decides
    assert (outcome("u", eligible) >= CANARY) is expected
    for outside in (staff, {"country": "US", "org": "acme"}, {"seats": 250}):
        assert rule("u", outside) is False
        with pytest.raises(OutsideRollout):
            outcome("u", outside)


def test_bucket_by_hashes_the_attribute_like_a_user_id():
    rule = compiled({"requires": ["bucket_by"], "bucket_by": "org"})[2]
    for org in ("acme", 42, "", "Ünïcode"):
        assert rule("anyone", {"org": org}) is (bucketing.bucket("f", org) < 5000)
    with pytest.raises(InvalidContext):
        rule("anyone", {"org": 4.5})


contexts = st.fixed_dictionaries({}, optional={
    "country": st.sampled_from(["NZ", "AU", "US", 7, None, ["NZ"], True]),
    "app_version": st.sampled_from(["2.0.0", "1.9.9", "2.0.0-rc.1", "x", 2, None, ["3.0.0"]]),
    "seats": st.one_of(st.integers(0, 300), st.floats(allow_nan=True), st.sampled_from(["200", None, False])),
    "email": st.sampled_from(["kim@example.com", "ops@flagsvc.test", "Kim@x", 3, ["a@flagsvc.test"]]),
    "groups": st.sampled_from([["beta"], ["beta", "x"], [], "beta", None]),
    "org": st.one_of(st.text(max_size=8), st.integers(), st.sampled_from([None, 1.5])),
})


@settings(max_examples=400)
@given(contexts, st.sampled_from(["u-1", "qa-1", "bad-1", 17]),
       st.sampled_from([TARGETED, {"requires": ["segments"], "eligible_segments": ["beta"]},
                        {"requires": ["segments"], "excluded_segments": ["big", "beta"]}]))
def test_the_generated_closure_answers_as_the_plain_evaluation(context, user_id, flag):
    config, segments, rule, outcome = compiled(flag)
    try:
        expected, reason = explain(config, user_id, context, segments)
    except InvalidContext:
        with pytest.raises(InvalidContext):
            rule(user_id, context)
        return
    assert rule(user_id, context) is expected
    if reason in ("excluded_segment", "not_eligible", "no_bucket_attribute"):
        with pytest.raises(OutsideRollout):
            outcome(user_id, context)
    else:
        assert (outcome(user_id, context) >= CANARY) is expected


def client_for(document: dict) -> FlagClient:
    return FlagClient(offline=True, bootstrap=document)


def test_the_client_answers_with_a_context_and_never_raises():
    client = client_for(snapshot_with(TARGETED))
    eligible = {"country": "AU", "app_version": "3.0.0", "org": "acme"}
    expected = bucketing.bucket("f", "acme") < 5000
    assert client.is_enabled("f", "u", context=eligible) is expected
    assert client.evaluate("f", "u", context=eligible).reason == "rollout"
    assert client.variant("f", "u", context=eligible) == ("canary" if expected else "stable")
    assert client.evaluate("f", "u", context={"country": "US"}).reason == "not_eligible"
    for bad in ("a string", 42, {"country": "AU", "app_version": "3.0.0", "org": {"id": 1}}):
        assert client.is_enabled("f", "u", True, bad) is True  # the caller's default
        answer = client.evaluate("f", "u", True, bad)
        assert (answer.value, answer.reason) == (True, "invalid_context")


def test_a_flag_without_targeting_ignores_the_context():
    client = client_for(snapshot_with({}))
    assert client.is_enabled("f", "u", context="not even a mapping") is client.is_enabled("f", "u")


def test_outcomes_outside_the_eligible_population_are_not_counted():
    client = FlagClient("http://127.0.0.1:9", sdk_key="k", bootstrap=snapshot_with(TARGETED), background=False)
    inside = {"country": "NZ", "app_version": "2.0.0", "org": "acme"}
    for _ in range(3):
        client.record("f", "u", True, 5.0, context=inside)
        client.record("f", "u", True, 5.0, context={"country": "US", "org": "acme"})
        with client.track("f", "u", context={"email": "x@flagsvc.test"}):
            pass
    arm = "canary" if bucketing.bucket("f", "acme") < 5000 else "stable"
    counted = {tally.key[2]: tally.count for tally in client._window.cut() if tally.count}
    assert counted == {arm: 3}
    client._closed = True


def test_a_snapshot_from_the_future_answers_the_default_for_what_it_cannot_evaluate():
    future = {
        "epoch": "e", "version": 9,
        "flags": {
            "geo": {"key": "geo", "state": "rolling", "percent": 50, "revision": 4, "requires": ["geo_fences"],
                    "fences": [{"lat": 1.0}]},
            "new_op": {"key": "new_op", "state": "rolling", "percent": 50, "revision": 2, "requires": ["segments"],
                       "eligible_segments": ["tomorrow"]},
            "plain": {"key": "plain", "state": "rolling", "percent": 100, "revision": 1},
        },
        "segments": {"tomorrow": {"conditions": [{"attribute": "x", "op": "within_km", "values": [3]}]}},
    }
    client = client_for(future)
    for flag, default in (("geo", True), ("new_op", True), ("geo", False)):
        assert client.is_enabled(flag, "u", default, {"x": 1}) is default
        answer = client.evaluate(flag, "u", default)
        assert (answer.value, answer.arm, answer.reason) == (default, None, "unsupported"), flag
    assert client.evaluate("geo", "u").revision == 4
    assert client.is_enabled("plain", "u") is True  # the rest of the snapshot stands


def test_a_flag_naming_a_missing_segment_answers_the_default_with_an_error():
    client = client_for(snapshot_with({"requires": ["segments"], "eligible_segments": ["gone"]}, segments={}))
    assert client.is_enabled("f", "u", True) is True
    assert client.evaluate("f", "u", True).reason == "error"
