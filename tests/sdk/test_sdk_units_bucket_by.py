"""With `bucket_by`, the randomised unit is the attribute's value (an organisation): `record` must put every
member's outcomes in that value's user bucket, so the judge's between-bucket variance (errors, and the split's
design effect) sees the organisation as the unit it is (docs/judge.md, "Strata", the split under clustering)."""

from __future__ import annotations

from flagsvc_client._outcomes import CANARY, UNIT_MASK
from flagsvc_client._outcomes import UNIT_SHIFT as CODE_SHIFT
from flagsvc_client._rules import compile_outcome_rule
from flagsvc_client.protocol.bucketing import UNIT_SHIFT, hash_key
from flagsvc_client.snapshot import parse_snapshot


def outcome_rule(flag: dict):
    base = {"key": "f", "state": "rolling", "percent": 50.0, "revision": 3, "salt": "f", "allow": [], "deny": []}
    snapshot = parse_snapshot({"epoch": "e", "version": 1, "flags": {"f": {**base, **flag}}, "segments": {}})
    return compile_outcome_rule(snapshot.flags["f"], snapshot.segments)


def test_record_buckets_by_the_bucket_by_value_not_the_user():
    rule = outcome_rule({"requires": ["bucket_by"], "bucket_by": "org"})
    for org in ("acme", "globex", "initech", 42):
        codes = {rule(f"user-{i}", {"org": org}) for i in range(50)}
        assert len(codes) == 1, org  # every member: one arm and one unit
        (code,) = codes
        expected_unit = hash_key(f"f:{org}") >> UNIT_SHIFT
        assert (code & UNIT_MASK) >> CODE_SHIFT == expected_unit
        assert (code >= CANARY) is (hash_key(f"f:{org}") % 10_000 < 5000)
    # without bucket_by, users of one organisation spread over the buckets
    plain = outcome_rule({})
    assert len({plain(f"user-{i}", {"org": "acme"}) & UNIT_MASK for i in range(50)}) > 20
