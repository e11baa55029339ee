"""The bucketing rule against the committed vectors (computed from mmh3, not from the SDK) and its properties."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from flagsvc_client._outcomes import CANARY, UNIT_MASK, UNIT_SHIFT
from flagsvc_client._rules import compile_outcome_rule, compile_rule, explain
from flagsvc_client.protocol import bucketing
from flagsvc_client.snapshot import parse_flag
from hypothesis import given
from hypothesis import strategies as st

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTORS = json.loads((VECTORS_DIR / "bucketing.json").read_text(encoding="utf-8"))


def test_the_vectors_file_is_large_and_varied():
    cases = VECTORS["cases"]
    assert len(cases) >= 3000
    assert len({c["salt"] for c in cases}) >= 5
    assert any(isinstance(c["user_id"], int) for c in cases)
    assert any(c["user_id"] == "" for c in cases)
    assert any(not c["user_key"].isascii() for c in cases)
    assert {0.01, 12.5, 33.33, 99.99} <= set(VECTORS["percents"])


def test_the_generator_reproduces_the_committed_file():
    generate = VECTORS_DIR / "generate.py"
    result = subprocess.run([sys.executable, str(generate), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_thresholds_match_the_vectors():
    for percent, expected in zip(VECTORS["percents"], VECTORS["thresholds"], strict=True):
        assert bucketing.threshold(percent) == expected


def test_bucket_and_answers_match_every_vector():
    flags = {
        (salt, percent): parse_flag("f", {"state": "rolling", "percent": percent, "revision": 1, "salt": salt})
        for salt in {c["salt"] for c in VECTORS["cases"]}
        for percent in VECTORS["percents"]
    }
    mismatches = []
    for case in VECTORS["cases"]:
        salt, user_id = case["salt"], case["user_id"]
        if bucketing.user_key(user_id) != case["user_key"] or bucketing.bucket(salt, user_id) != case["bucket"]:
            mismatches.append((case, "bucket"))
        if bucketing.unit(salt, user_id) != case["hash"] >> 26:
            mismatches.append((case, "unit"))
        for percent, expected in zip(VECTORS["percents"], case["canary"], strict=True):
            flag = flags[salt, percent]
            code = compile_outcome_rule(flag)(user_id)  # record's closure: the arm and the user's unit
            got = (
                bucketing.is_canary(salt, user_id, percent),
                compile_rule(flag)(user_id),  # the hot path's compiled closure
                explain(flag, user_id),
                (code >= CANARY, (code & UNIT_MASK) >> UNIT_SHIFT),
            )
            unit = case["hash"] >> 26  # the top 6 bits of the same hash (docs/protocol.md)
            if got != (expected, expected, (expected, "rollout"), (expected, unit)):
                mismatches.append((case, percent, got))
    assert not mismatches, mismatches[:5]


def test_the_whole_rule_matches_the_rule_vectors():
    for case in VECTORS["rule_cases"]:
        flag = parse_flag("f", {**case, "revision": 1})
        assert compile_rule(flag)(case["user_id"]) is case["canary"], case
        assert (compile_outcome_rule(flag)(case["user_id"]) >= CANARY) is case["canary"], case
        assert explain(flag, case["user_id"])[0] is case["canary"], case


def test_every_two_decimal_percent_has_the_exact_threshold():
    # the float formula must give n for every percent n/100 however the float was produced
    for n in range(10001):
        assert bucketing.threshold(n / 100) == n
        assert bucketing.threshold(float(f"{n / 100:.2f}")) == n
        assert bucketing.threshold(round(n * 0.01, 2)) == n


def test_threshold_clamps_and_rejects_non_finite():
    assert bucketing.threshold(-5) == 0
    assert bucketing.threshold(250) == 10000
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            bucketing.threshold(bad)


def test_integer_ids_bucket_as_their_decimal_string():
    for n in (0, 7, -42, 2**64, 10**30):
        assert bucketing.bucket("s", n) == bucketing.bucket("s", str(n))
    flag = parse_flag("f", {"state": "rolling", "percent": 50, "revision": 1, "allow": [42, "43"]})
    rule = compile_rule(flag)
    assert rule(42) and rule("42") and rule(43) and rule("43")


@pytest.mark.parametrize("bad", [None, 1.5, b"bytes", True, ["x"], object()])
def test_other_id_types_are_rejected(bad):
    with pytest.raises(bucketing.InvalidUserId):
        bucketing.user_key(bad)
    flag = parse_flag("f", {"state": "rolling", "percent": 50, "revision": 1})
    with pytest.raises(Exception):  # noqa: B017  # any exception: the client turns it into the default
        compile_rule(flag)(bad)


def test_a_lone_surrogate_raises_instead_of_crashing_mmh3():
    # mmh3 5.x segfaults on a str it cannot encode as UTF-8: the SDK must never hand it one
    with pytest.raises(UnicodeEncodeError):
        bucketing.bucket("s", "user-\ud800")
    flag = parse_flag("f", {"state": "rolling", "percent": 50, "revision": 1})
    with pytest.raises(UnicodeEncodeError):
        compile_rule(flag)("user-\udfff")


def test_str_subclasses_and_int_subclasses_are_their_plain_values():
    class Name(str):
        def __str__(self) -> str:
            return "not me"

    class Number(int):
        def __repr__(self) -> str:
            return "not me"

    assert bucketing.bucket("s", Name("abc")) == bucketing.bucket("s", "abc")
    assert bucketing.bucket("s", Number(12)) == bucketing.bucket("s", "12")


@given(st.text(max_size=12), st.one_of(st.text(max_size=30), st.integers()), st.integers(0, 10000))
def test_raising_the_percent_only_adds_users(salt, user_id, basis_points):
    try:
        b = bucketing.bucket(salt, user_id)
    except UnicodeEncodeError:
        return
    percent = basis_points / 100
    if bucketing.is_canary(salt, user_id, percent):
        assert all(bucketing.is_canary(salt, user_id, p / 100) for p in range(basis_points, 10001, 97))
    assert bucketing.is_canary(salt, user_id, percent) is (b < basis_points)


@given(st.text(max_size=40), st.integers(0, 10000))
def test_compiled_rule_explain_and_reference_agree(user_id, basis_points):
    flag = parse_flag("f", {"state": "rolling", "percent": basis_points / 100, "revision": 1, "salt": "s"})
    try:
        expected = bucketing.is_canary("s", user_id, basis_points / 100)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            compile_rule(flag)(user_id)
        return
    assert compile_rule(flag)(user_id) is expected
    assert explain(flag, user_id) == (expected, "rollout")
