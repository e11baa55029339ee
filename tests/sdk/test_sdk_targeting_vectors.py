"""The whole rule with targeting against the committed vectors (tests/vectors/targeting.json, computed from mmh3
by tests/vectors/generate_targeting.py, not from the SDK): the answer and its reason, the arm and user bucket
`record` counts an outcome in (or that it is not counted), and the stratum label of `stratify_by`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from flagsvc_client._outcomes import CANARY, STRATUM_LABELS, STRATUM_MASK, UNIT_MASK, UNIT_SHIFT
from flagsvc_client._rules import OutsideRollout, compile_outcome_rule, compile_rule, explain
from flagsvc_client.snapshot import parse_snapshot

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTORS = json.loads((VECTORS_DIR / "targeting.json").read_text(encoding="utf-8"))
FIELDS = ("salt", "state", "percent", "allow", "deny", "excluded_segments", "eligible_segments", "bucket_by",
          "stratify_by")


def test_the_generator_reproduces_the_committed_file():
    generate = VECTORS_DIR / "generate_targeting.py"
    result = subprocess.run([sys.executable, str(generate), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_vectors_cover_every_reason_and_both_arms():
    reasons = Counter(case["reason"] for case in VECTORS["cases"])
    assert set(reasons) == {"killed", "allow_list", "deny_list", "excluded_segment", "not_eligible",
                            "no_bucket_attribute", "rollout"}, reasons
    assert all(n >= 5 for n in reasons.values()), reasons
    rollout = [case["canary"] for case in VECTORS["cases"] if case["reason"] == "rollout"]
    assert 0.2 < sum(rollout) / len(rollout) < 0.8
    assert sum(case["stratum"] is not None for case in VECTORS["cases"]) >= 100


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: f"{case['reason']}")
def test_the_sdk_follows_the_vectors(case):
    flag = {key: case[key] for key in FIELDS if case[key] not in (None, [])}
    requires = [name for name, used in (("segments", case["excluded_segments"] or case["eligible_segments"]),
                                        ("bucket_by", case["bucket_by"])) if used]
    document = {"epoch": "e", "version": 1, "segments": VECTORS["segments"],
                "flags": {"f": {"key": "f", "revision": 1, **flag, **({"requires": requires} if requires else {})}}}
    snapshot = parse_snapshot(document)
    config = snapshot.flags["f"]
    user, context = case["user_id"], case["context"]
    assert explain(config, user, context, snapshot.segments) == (case["canary"], case["reason"]), case
    assert compile_rule(config, snapshot.segments)(user, context) is case["canary"], case
    outcome = compile_outcome_rule(config, snapshot.segments)
    if case["unit"] is None:
        with pytest.raises(OutsideRollout):
            outcome(user, context)
        return
    code = outcome(user, context)
    assert (code >= CANARY, (code & UNIT_MASK) >> UNIT_SHIFT) == (case["canary"], case["unit"]), case
    stratum = code & STRATUM_MASK
    assert (STRATUM_LABELS.label(stratum) if stratum else None) == case["stratum"], case
