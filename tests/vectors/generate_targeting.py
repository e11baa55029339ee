#!/usr/bin/env python3
"""Generate tests/vectors/targeting.json: vectors for the whole rule with targeting (docs/targeting.md,
docs/bucketing.md): the lists, excluded and eligible segments, `bucket_by`, the user bucket an outcome is counted
in, and the stratum label of `stratify_by` (docs/protocol.md, "Strata").

Computed here from `mmh3` with the semantics written out below, deliberately NOT from flagsvc_client, so the
vectors check the SDK instead of echoing it. Only the operators whose meaning is plain in every language are used
(in, not_in, starts_with, ends_with, lt, gte on strings, ints and lists of strings); semver and regular expressions
have their own tests. Deterministic: running it again must reproduce the committed file byte for byte.

    python tests/vectors/generate_targeting.py            # rewrite targeting.json
    python tests/vectors/generate_targeting.py --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import mmh3

OUT = Path(__file__).with_name("targeting.json")
PERCENTS = [0, 1, 10, 50, 90, 100]
SEGMENTS = {
    "nz": {"conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}]},
    "not-free": {"conditions": [{"attribute": "plan", "op": "not_in", "values": ["free"]}]},
    "staff": {"conditions": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}]},
    "beta-big": {"conditions": [{"attribute": "groups", "op": "in", "values": ["beta"]},
                                {"attribute": "seats", "op": "gte", "values": [20]}]},
    "small": {"conditions": [{"attribute": "seats", "op": "lt", "values": [5]}]},
    "acme": {"conditions": [{"attribute": "org", "op": "starts_with", "values": ["acme"]}]},
}


def murmur(key: str) -> int:
    return mmh3.hash(key.encode("utf-8"), seed=0, signed=False)


def holds(condition: dict, context: dict) -> bool:
    """One condition: a missing attribute makes it false (not_in too); no coercion between types; a list of
    strings holds when one item does (not_in: when no item is listed)."""
    value = context.get(condition["attribute"])
    op, values = condition["op"], condition["values"]
    if value is None:
        return False
    items = value if isinstance(value, list) else [value]
    if op == "not_in":
        return all(not (type(item) is type(v) and item == v) for item in items for v in values)
    for item in items:
        if op == "in" and any(type(item) is type(v) and item == v for v in values):
            return True
        if op == "starts_with" and isinstance(item, str) and any(item.startswith(v) for v in values):
            return True
        if op == "ends_with" and isinstance(item, str) and any(item.endswith(v) for v in values):
            return True
        numeric = type(item) in (int, float)
        if op == "lt" and numeric and item < values[0]:
            return True
        if op == "gte" and numeric and item >= values[0]:
            return True
    return False


def in_segment(name: str, context: dict) -> bool:
    return all(holds(c, context) for c in SEGMENTS[name]["conditions"])


def stratum(stratify_by: list[str], context: dict) -> str | None:
    """The values of the attributes, joined by '|': a str as is, an int in decimal, a bool as true/false; any
    other value (or none) as ''; no label at all when none of them has a value."""
    parts = []
    for name in stratify_by:
        value = context.get(name)
        if isinstance(value, bool):
            parts.append("true" if value else "false")
        elif isinstance(value, str | int):
            parts.append(str(value))
        else:
            parts.append(None)
    return None if all(p is None for p in parts) else "|".join("" if p is None else p for p in parts)


def evaluate(case: dict) -> dict:
    """The rule, in order: killed, allow, deny, excluded segments, eligible segments, bucket_by, the percent."""
    salt, user, context = case["salt"], case["user_id"], case["context"]
    if case["state"] in ("off", "rolled_back"):
        return {"canary": False, "reason": "killed", "unit": murmur(f"{salt}:{user}") >> 26}
    if user in case["allow"] or user in case["deny"]:
        return {"canary": user in case["allow"], "reason": "allow_list" if user in case["allow"] else "deny_list",
                "unit": murmur(f"{salt}:{user}") >> 26}
    if any(in_segment(name, context) for name in case["excluded_segments"]):
        return {"canary": False, "reason": "excluded_segment", "unit": None}
    if case["eligible_segments"] and not any(in_segment(name, context) for name in case["eligible_segments"]):
        return {"canary": False, "reason": "not_eligible", "unit": None}
    hashed = user
    if case.get("bucket_by"):
        value = context.get(case["bucket_by"])
        if value is None:
            return {"canary": False, "reason": "no_bucket_attribute", "unit": None}
        hashed = str(value)
    h = murmur(f"{salt}:{hashed}")
    return {"canary": h % 10000 < case["percent"] * 100, "reason": "rollout", "unit": h >> 26}


def context_of(rng: random.Random) -> dict:
    context: dict = {}
    if rng.random() < 0.85:
        context["country"] = rng.choice(["NZ", "US", "AU", "nz"])
    if rng.random() < 0.8:
        context["plan"] = rng.choice(["free", "pro", "enterprise", 7])
    if rng.random() < 0.3:
        context["email"] = rng.choice(["ann@example.com", "bo@example.org", "cy@EXAMPLE.COM"])
    if rng.random() < 0.4:
        context["groups"] = rng.sample(["beta", "alpha", "staff"], rng.randrange(0, 3))
    if rng.random() < 0.7:
        context["seats"] = rng.choice([1, 4, 5, 19, 20, 250, 4.5, 20.0, "20"])
    if rng.random() < 0.8:
        context["org"] = rng.choice([f"acme-{rng.randrange(5)}", f"globex-{rng.randrange(5)}", rng.randrange(100)])
    if rng.random() < 0.2:
        context["paying"] = rng.random() < 0.5
    return context


def build() -> dict[str, object]:
    rng = random.Random(20261130)
    cases = []
    names = sorted(SEGMENTS)
    for i in range(600):
        users = [f"user-{n}" for n in range(40)]
        case = {
            "salt": rng.choice(["new_checkout", "search.ranker", "ünïcødé"]),
            "state": "off" if i % 29 == 0 else "rolling",
            "percent": PERCENTS[i % len(PERCENTS)],
            "user_id": rng.choice(users),
            "allow": sorted(rng.sample(users, 2)),
            "deny": sorted(rng.sample(users, 2)),
            "excluded_segments": sorted(rng.sample(names, rng.choice([0, 0, 1, 2]))),
            "eligible_segments": sorted(rng.sample(names, rng.choice([0, 1, 1, 2]))),
            "bucket_by": rng.choice([None, None, "org"]),
            "stratify_by": rng.choice([[], ["plan"], ["plan", "country"], ["paying"], ["seats"]]),
            "context": context_of(rng),
        }
        case["deny"] = sorted(set(case["deny"]) - set(case["allow"]))
        result = evaluate(case)
        result["stratum"] = stratum(case["stratify_by"], case["context"]) if result["unit"] is not None else None
        cases.append({**case, **result})
    return {
        "description": "flagsvc targeting vectors: the rule with segments, bucket_by and stratify_by; "
                       "docs/targeting.md, docs/bucketing.md, docs/protocol.md",
        "segments": SEGMENTS,
        "cases": cases,
    }


def render() -> str:
    data = build()
    lines = ["{"]
    for key in ("description", "segments"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(data[key], ensure_ascii=False)},")
    lines.append('  "cases": [')
    cases = data["cases"]
    for i, item in enumerate(cases):  # type: ignore[arg-type]
        comma = "," if i < len(cases) - 1 else ""  # type: ignore[arg-type]
        lines.append(f"    {json.dumps(item, ensure_ascii=False)}{comma}")
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} differs from what generate_targeting.py produces", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}: {len(json.loads(text)['cases'])} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
