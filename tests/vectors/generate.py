#!/usr/bin/env python3
"""Generate tests/vectors/bucketing.json: the bucketing rule's test vectors (docs/bucketing.md).

Computed straight from `mmh3` and `decimal`, deliberately NOT from flagsvc_client, so the vectors check the SDK
instead of echoing it. Deterministic: running it again must reproduce the committed file byte for byte (a test
checks this), and the file must never change once SDKs depend on it.

    python tests/vectors/generate.py            # rewrite bucketing.json
    python tests/vectors/generate.py --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import json
import random
import sys
from decimal import Decimal
from pathlib import Path

import mmh3

OUT = Path(__file__).with_name("bucketing.json")

SALTS = ["new_checkout", "checkout-v2", "search.ranker_2024", "", "ünïcødé-salt", "salt:with:colons"]
PERCENTS = [0, 0.01, 0.05, 0.5, 1, 5, 10, 12.5, 25, 33.33, 50, 66.67, 75, 99.5, 99.99, 100]
IDS_PER_SALT = 500


def murmur(key: str) -> int:
    return mmh3.hash(key.encode("utf-8"), seed=0, signed=False)


def threshold(percent: float) -> int:
    """Exact decimal arithmetic on the percent as written: an independent check of the float formula."""
    scaled = Decimal(repr(percent)) * 100
    assert scaled == scaled.to_integral_value(), f"{percent} has more than two decimals"
    return int(scaled)


def user_ids(rng: random.Random, salt_index: int) -> list[str | int]:
    fixed: list[str | int] = [
        "", " ", "0", "42", "-1", "007", "user-1", "user:1", "USER-1", "a" * 1000, "\uff35\uff33\uff25\uff32",
        "é", "e\u0301", "中文用户", "пользователь", "مستخدم", "🙂", "👩‍💻-dev", "tab\tid", "new\nline",
        "null", "None", "true", "\u00a0", "\U0010ffff",
        0, 1, 42, 7, -1, -42, 2**31 - 1, 2**31, 2**32, 2**53 - 1, -(2**53 - 1), 10**12,
    ]  # fmt: skip
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@+:éü中🙂"
    generated: list[str | int] = []
    while len(fixed) + len(generated) < IDS_PER_SALT:
        kind = len(generated) % 5
        if kind == 0:
            generated.append(f"user-{rng.randrange(10**7)}")
        elif kind == 1:
            generated.append(f"{rng.getrandbits(128):032x}")  # uuid-like
        elif kind == 2:
            generated.append(rng.randrange(-(2**53) + 1, 2**53))
        elif kind == 3:
            generated.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 24))))
        else:
            generated.append(f"{rng.choice(['ann', 'bo', 'cy'])}{rng.randrange(10**4)}@example.com")
    return fixed + generated


def case(salt: str, user_id: str | int) -> dict[str, object]:
    user_key = str(user_id)  # an int in decimal; a str as is
    h = murmur(f"{salt}:{user_key}")
    bucket = h % 10000
    return {
        "salt": salt,
        "user_id": user_id,
        "user_key": user_key,
        "hash": h,
        "bucket": bucket,
        "canary": [bucket < threshold(p) for p in PERCENTS],
    }


def rule_cases(rng: random.Random) -> list[dict[str, object]]:
    """The whole rule: allow and deny lists, and the killed states (`off`, `rolled_back`)."""
    out = []
    states = ["rolling", "paused", "manual", "complete", "off", "rolled_back", "some_future_state"]
    for i in range(300):
        salt = SALTS[i % len(SALTS)]
        user_key = f"user-{rng.randrange(50)}"
        others = [f"user-{rng.randrange(50)}" for _ in range(3)]
        allow = sorted(set(others[:2] + ([user_key] if i % 4 == 0 else [])))
        deny = sorted(set(others[2:] + ([user_key] if i % 4 == 1 else [])) - set(allow))
        state = states[i % len(states)]
        percent = PERCENTS[i % len(PERCENTS)]
        bucket = murmur(f"{salt}:{user_key}") % 10000
        if state in ("off", "rolled_back"):
            canary = False
        elif user_key in allow:
            canary = True
        elif user_key in deny:
            canary = False
        else:
            canary = bucket < threshold(percent)
        out.append({
            "salt": salt, "user_id": user_key, "state": state, "percent": percent,
            "allow": allow, "deny": deny, "bucket": bucket, "canary": canary,
        })  # fmt: skip
    return out


def build() -> dict[str, object]:
    rng = random.Random(20240601)
    cases = [case(salt, uid) for index, salt in enumerate(SALTS) for uid in user_ids(rng, index)]
    return {
        "description": "flagsvc bucketing test vectors; the rule and this format: docs/bucketing.md",
        "rule": "bucket = murmur3_x86_32(utf8(salt + ':' + user_key), seed=0) % 10000; "
        "canary = bucket < floor(percent * 100 + 0.5)",
        "percents": PERCENTS,
        "thresholds": [threshold(p) for p in PERCENTS],
        "cases": cases,
        "rule_cases": rule_cases(rng),
    }


def render() -> str:
    data = build()
    # one case a line: reviewable diffs, and a file that never changes by accident
    lines = ["{"]
    for key in ("description", "rule", "percents", "thresholds"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(data[key], ensure_ascii=False)},")
    for key in ("cases", "rule_cases"):
        items = data[key]
        lines.append(f"  {json.dumps(key)}: [")
        for i, item in enumerate(items):  # type: ignore[arg-type]
            comma = "," if i < len(items) - 1 else ""  # type: ignore[arg-type]
            lines.append(f"    {json.dumps(item, ensure_ascii=False)}{comma}")
        lines.append("  ]," if key == "cases" else "  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} differs from what generate.py produces", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    data = json.loads(text)
    print(f"wrote {OUT}: {len(data['cases'])} cases, {len(data['rule_cases'])} rule cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
