"""Flags compiled for the hot path: one closure per flag, built once when a snapshot is applied.

`is_enabled` costs one dict lookup and one call of the flag's closure, which does the §3 rule with everything
precomputed (salt prefix, threshold, killed, allow/deny sets, compiled segments). Each closure takes the user id
and the context, and raises on a bad user id (wrong type, lone surrogate) or a context it cannot read; the caller
turns that into the default. A flag without targeting never looks at the context, so passing one costs nothing
there. `explain` is the same rule, slower, with the reason.

Targeting (docs/targeting.md), after the allow and deny lists: a user in an excluded segment, in none of the
eligible segments (when the flag names any), or without the `bucket_by` attribute is outside the rollout's
population: stable, and not counted in either arm's outcomes (the outcome closure raises OutsideRollout), so the
judge compares canary and stable within the eligible population only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mmh3 import hash as _murmur3_32

from flagsvc_client._outcomes import (
    CANARY_CODES,
    LAST_STRATUM,
    STABLE_CODES,
    STRATUM_LABELS,
    ArmTally,
    placeholders,
)
from flagsvc_client.protocol.bucketing import BUCKETS, SEPARATOR, UNIT_SHIFT, hash_key, user_key
from flagsvc_client.protocol.limits import STRATUM_JOIN
from flagsvc_client.protocol.targeting import as_context, bucket_value
from flagsvc_client.result import Reason
from flagsvc_client.snapshot import FlagConfig, Snapshot, give_way

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flagsvc_client.protocol.targeting import Test

Rule = Callable[..., bool]  # (user_id, context=None) -> canary?
# `record`'s closure: the same rule, answering the outcome's code (_outcomes.py): the user's unit, plus CANARY
OutcomeRule = Callable[..., int]
Segments = Mapping[str, "Test | tuple[str, str]"]


class Unanswerable(Exception):
    """The flag needs what this SDK cannot evaluate (FlagConfig.unusable): the caller's default, with a reason."""


class OutsideRollout(Exception):
    """record: the user is outside the flag's eligible population; the outcome is not counted."""


# In each closure: a str goes straight through, an int is formatted in decimal (an exact int only: a subclass
# goes through user_key, which ignores its __repr__/__format__), anything else raises in user_key. str.encode
# raises on a lone surrogate, which mmh3 would crash on (see bucketing.hash_key).


def _unusable_rule(why: str) -> Rule:
    def rule(user_id: object, context: object = None) -> bool:
        raise Unanswerable(why)

    return rule


def _killed_rule() -> Rule:
    def rule(user_id: object, context: object = None) -> bool:
        if type(user_id) is not str and type(user_id) is not int:
            user_key(user_id)  # a bad id is an error even here
        return False

    return rule


def _rollout_rule(prefix: str, threshold: int) -> Rule:
    def rule(user_id: object, context: object = None) -> bool:
        if type(user_id) is str:
            key = prefix + user_id
        elif type(user_id) is int:
            key = f"{prefix}{user_id}"
        else:
            key = prefix + user_key(user_id)
        return _murmur3_32(key if key.isascii() else key.encode(), 0, False) % BUCKETS < threshold

    return rule


def _listed_rule(prefix: str, threshold: int, allow: frozenset[str], deny: frozenset[str]) -> Rule:
    listed = allow | deny  # one lookup for the many users on neither list

    def rule(user_id: object, context: object = None) -> bool:
        if type(user_id) is not str:
            user_id = f"{user_id}" if type(user_id) is int else user_key(user_id)
        if user_id in listed:
            return user_id in allow  # allow wins over deny, as in the rule
        key = prefix + user_id
        return _murmur3_32(key if key.isascii() else key.encode(), 0, False) % BUCKETS < threshold

    return rule


# A targeted flag's closure is generated source, compiled once per snapshot: its segments' conditions are inlined
# as expressions, so a str (or number) attribute costs a dict lookup and a test, no call. Only generated names
# (A0, S0, T0, ...) appear in the source; every attribute name and value is a constant in its namespace. An
# attribute of another type goes to the condition's own closure (Tn), which defines the semantics
# (protocol/targeting.py); the inlined test is the same for the types it takes (tests/sdk/test_sdk_targeting.py).
_INLINE = {
    "in": "(_v in {S} if type(_v := context.get({A})) is str else {T}(context))",
    "not_in": "(_v not in {S} if type(_v := context.get({A})) is str else {T}(context))",
    "starts_with": "(_v.startswith({S}) if type(_v := context.get({A})) is str else {T}(context))",
    "ends_with": "(_v.endswith({S}) if type(_v := context.get({A})) is str else {T}(context))",
    "lt": "(_v < {S} if (type(_v := context.get({A})) is int or type(_v) is float) else {T}(context))",
    "lte": "(_v <= {S} if (type(_v := context.get({A})) is int or type(_v) is float) else {T}(context))",
    "gt": "(_v > {S} if (type(_v := context.get({A})) is int or type(_v) is float) else {T}(context))",
    "gte": "(_v >= {S} if (type(_v := context.get({A})) is int or type(_v) is float) else {T}(context))",
    # semver and regex conditions keep their answers per string seen: a known string costs two lookups
    "answers": "({S}[_v] if type(_v := context.get({A})) is str and _v in {S} else {T}(context))",
}

_TARGETED_SOURCE = """
def rule(user_id, context=None):
    if type(user_id) is not str:
        user_id = f"{{user_id}}" if type(user_id) is int else user_key(user_id)
    if user_id in listed:
        return user_id in allow
    if type(context) is not dict:
        context = as_context(context)
{checks}
    return murmur(key if key.isascii() else key.encode(), 0, False) % BUCKETS < threshold
"""


def _targeted_rule(prefix: str, threshold: int, allow: frozenset[str], deny: frozenset[str],
                   excluded: tuple[Test, ...], eligible: tuple[Test, ...], bucket_by: str | None,
                   name: str = "flag") -> Rule:
    namespace: dict[str, object] = {
        "user_key": user_key, "as_context": as_context, "bucket_value": bucket_value, "murmur": _murmur3_32,
        "BUCKETS": BUCKETS, "prefix": prefix, "threshold": threshold, "allow": allow, "listed": allow | deny,
        "BUCKET_BY": bucket_by,
    }

    def segment(test: Test) -> str:
        parts = []
        for condition in getattr(test, "conditions", (test,)):
            n = len(namespace)
            kind, attribute, constant = getattr(condition, "fast", ("", "", None))
            namespace[f"A{n}"], namespace[f"S{n}"], namespace[f"T{n}"] = attribute, constant, condition
            template = _INLINE.get(kind, "{T}(context)")
            parts.append(template.format(A=f"A{n}", S=f"S{n}", T=f"T{n}"))
        return "(" + " and ".join(parts) + ")"

    checks = [f"    if {segment(test)}:\n        return False" for test in excluded]
    if eligible:
        checks.append(f"    if not ({' or '.join(segment(test) for test in eligible)}):\n        return False")
    if bucket_by is None:
        checks.append("    key = prefix + user_id")
    else:
        checks.append("    value = context.get(BUCKET_BY)\n"
                      "    if type(value) is not str:\n"
                      "        value = bucket_value(value)\n"
                      "        if value is None:\n"
                      "            return False\n"
                      "    key = prefix + value")
    source = _TARGETED_SOURCE.format(checks="\n".join(checks))
    exec(compile(source, f"<flagsvc rule {name}>", "exec"), namespace)  # generated names only
    return namespace["rule"]  # type: ignore[return-value]


def _targeted_outcome_rule(flag: FlagConfig, segments: Segments) -> OutcomeRule:
    prefix, threshold, allow, deny = flag.salt + SEPARATOR, flag.threshold, flag.allow, flag.deny

    def rule(user_id: object, context: object = None) -> int:
        key = user_key(user_id)
        if key in allow or key in deny:
            h = hash_key(prefix + key)
            return (CANARY_CODES if key in allow else STABLE_CODES)[h >> UNIT_SHIFT]
        hashed, _ = target(flag, segments, key, context)
        if hashed is None:
            raise OutsideRollout(flag.key)
        h = hash_key(prefix + hashed)
        return (CANARY_CODES if h % BUCKETS < threshold else STABLE_CODES)[h >> UNIT_SHIFT]

    return rule


def _unusable_outcome_rule(why: str) -> OutcomeRule:
    def rule(user_id: object, context: object = None) -> int:
        raise Unanswerable(why)

    return rule


def target(flag: FlagConfig, segments: Segments, key: str, context: object) -> tuple[str | None, str]:
    """(what to hash, "rollout") for a user in the flag's eligible population (the user key, or the bucket_by
    attribute's value); (None, reason) for one outside it. Raises InvalidContext on a context it cannot read."""
    if not flag.targeted:
        return key, Reason.ROLLOUT
    attributes = as_context(context)
    for name in flag.excluded:
        if segments[name](attributes):  # type: ignore[operator]
            return None, Reason.EXCLUDED_SEGMENT
    if flag.eligible and not any(segments[name](attributes) for name in flag.eligible):  # type: ignore[operator]
        return None, Reason.NOT_ELIGIBLE
    if flag.bucket_by is not None:
        value = bucket_value(attributes.get(flag.bucket_by))
        return (None, Reason.NO_BUCKET_ATTRIBUTE) if value is None else (value, Reason.ROLLOUT)
    return key, Reason.ROLLOUT


def _killed_outcome_rule(prefix: str) -> OutcomeRule:
    def rule(user_id: object, context: object = None) -> int:
        if type(user_id) is not str:
            user_id = f"{user_id}" if type(user_id) is int else user_key(user_id)
        key = prefix + user_id
        return STABLE_CODES[_murmur3_32(key if key.isascii() else key.encode(), 0, False) >> UNIT_SHIFT]

    return rule


def _rollout_outcome_rule(prefix: str, threshold: int) -> OutcomeRule:
    def rule(user_id: object, context: object = None) -> int:
        if type(user_id) is str:
            key = prefix + user_id
        elif type(user_id) is int:
            key = f"{prefix}{user_id}"
        else:
            key = prefix + user_key(user_id)
        h = _murmur3_32(key if key.isascii() else key.encode(), 0, False)
        return (CANARY_CODES if h % BUCKETS < threshold else STABLE_CODES)[h >> UNIT_SHIFT]

    return rule


def _listed_outcome_rule(prefix: str, threshold: int, allow: frozenset[str], deny: frozenset[str]) -> OutcomeRule:
    listed = allow | deny

    def rule(user_id: object, context: object = None) -> int:
        if type(user_id) is not str:
            user_id = f"{user_id}" if type(user_id) is int else user_key(user_id)
        key = prefix + user_id
        h = _murmur3_32(key if key.isascii() else key.encode(), 0, False)
        canary = user_id in allow if user_id in listed else h % BUCKETS < threshold
        return (CANARY_CODES if canary else STABLE_CODES)[h >> UNIT_SHIFT]

    return rule


def stratum_value(value: object) -> str | None:
    """The label part of one `stratify_by` attribute's value: a str as is, an int in decimal, a bool as
    true/false; None (no label) when missing or of another type (a float, whose text differs between languages,
    or a list)."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    return None


def stratum_label(flag: FlagConfig, context: object) -> str | None:
    """The stratum an outcome with this context is counted in (docs/protocol.md, "Strata"): the values of the
    flag's `stratify_by` attributes, joined; None when none has a value (or the context cannot be read)."""
    if not flag.stratify_by or context is None:
        return None
    try:
        attributes = as_context(context)
        parts = [stratum_value(attributes.get(name)) for name in flag.stratify_by]
    except Exception:
        return None
    if all(part is None for part in parts):
        return None
    return STRATUM_JOIN.join("" if part is None else part for part in parts)


MAX_CACHED_STRATA = 256  # values a stratified rule remembers the code of (the rest cost one more lookup)


def _stratified_outcome_rule(rule: OutcomeRule | None, flag: FlagConfig) -> OutcomeRule:
    """`rule` (None: the plain rollout's) with the stratum's code added to its answer (_outcomes.py), and the
    stratum noted for note_error. The common cases cost a dict lookup: one attribute whose value is a str seen
    before, or no context."""
    key, last, codes = flag.key, LAST_STRATUM, STRATUM_LABELS
    attribute = flag.stratify_by[0] if len(flag.stratify_by) == 1 else ""
    unlabelled = (key, 0)
    cached: dict[str, tuple[str, int]] = {}

    first, second = (*flag.stratify_by, "")[:2]

    def labelled(code: int, context: object) -> int:
        """The other cases: two attributes, a value not seen yet or not a str, a context that is not a dict."""
        if type(context) is dict and type(one := context.get(first)) is str \
                and (not second or type(other := context.get(second)) is str):
            label = f"{one}{STRATUM_JOIN}{other}" if second else one  # the label of two str values, or one
            seen = cached.get(label)
            if seen is None:
                seen = (key, codes.code(label))
                if len(cached) < MAX_CACHED_STRATA:
                    cached[label] = seen
        else:
            found = stratum_label(flag, context)
            seen = unlabelled if found is None else (key, codes.code(found))
        last.seen = seen
        return code + seen[1]

    if rule is None:  # the plain rollout, inlined: one call less on the record path
        prefix, threshold = flag.salt + SEPARATOR, flag.threshold

        def rollout(user_id: object, context: object = None) -> int:
            if type(user_id) is str:
                k = prefix + user_id
            elif type(user_id) is int:
                k = f"{prefix}{user_id}"
            else:
                k = prefix + user_key(user_id)
            h = _murmur3_32(k if k.isascii() else k.encode(), 0, False)
            code = (CANARY_CODES if h % BUCKETS < threshold else STABLE_CODES)[h >> UNIT_SHIFT]
            if type(context) is dict:
                value = context.get(attribute)
                if type(value) is str and (seen := cached.get(value)) is not None:
                    last.seen = seen
                    return code + seen[1]
            elif context is None:
                last.seen = unlabelled
                return code
            return labelled(code, context)

        return rollout

    def stratified(user_id: object, context: object = None) -> int:
        code = rule(user_id, context)
        if type(context) is dict:
            value = context.get(attribute)
            if type(value) is str and (seen := cached.get(value)) is not None:
                last.seen = seen
                return code + seen[1]
        elif context is None:
            last.seen = unlabelled
            return code
        return labelled(code, context)

    return stratified


def compile_outcome_rule(flag: FlagConfig, segments: Segments | None = None) -> OutcomeRule:
    """`record`'s closure for the flag: which arm and which user bucket an outcome is counted in, and for a
    stratified flag which stratum."""
    prefix = flag.salt + SEPARATOR
    rule: OutcomeRule | None
    if flag.unusable:
        return _unusable_outcome_rule(flag.unusable[1])
    if flag.killed:
        rule = _killed_outcome_rule(prefix)
    elif flag.targeted:
        rule = _targeted_outcome_rule(flag, segments or {})
    elif flag.allow or flag.deny:
        rule = _listed_outcome_rule(prefix, flag.threshold, flag.allow, flag.deny)
    elif flag.stratify_by:
        rule = None  # inlined with the stratum
    else:
        rule = _rollout_outcome_rule(prefix, flag.threshold)
    if flag.stratify_by:
        return _stratified_outcome_rule(rule, flag)
    assert rule is not None
    return rule


def compile_rule(flag: FlagConfig, segments: Segments | None = None) -> Rule:
    """`is_enabled`'s closure for the flag; `segments` are the snapshot's (every one the flag names compiled, or
    the flag is unusable: snapshot.parse_snapshot sees to that)."""
    if flag.unusable:
        return _unusable_rule(flag.unusable[1])
    if flag.killed:
        return _killed_rule()
    prefix = flag.salt + SEPARATOR
    if flag.targeted:
        found = segments or {}
        excluded = tuple(found[name] for name in flag.excluded)
        eligible = tuple(found[name] for name in flag.eligible)
        return _targeted_rule(prefix, flag.threshold, flag.allow, flag.deny, excluded, eligible,  # type: ignore[arg-type]
                              flag.bucket_by, flag.key)
    if flag.allow or flag.deny:
        return _listed_rule(prefix, flag.threshold, flag.allow, flag.deny)
    return _rollout_rule(prefix, flag.threshold)


def explain(flag: FlagConfig, user_id: object, context: object = None,
            segments: Segments | None = None) -> tuple[bool, str]:
    """(canary?, reason) by the same rule as the compiled closure; raises on a bad user id or context, and
    Unanswerable for a flag this SDK cannot evaluate."""
    if flag.unusable:
        raise Unanswerable(flag.unusable[1])
    key = user_key(user_id)
    if flag.killed:
        return False, Reason.KILLED
    if key in flag.allow:
        return True, Reason.ALLOW_LIST
    if key in flag.deny:
        return False, Reason.DENY_LIST
    hashed, reason = target(flag, segments or {}, key, context)
    if hashed is None:
        return False, reason
    return hash_key(flag.salt + SEPARATOR + hashed) % BUCKETS < flag.threshold, reason


class CompiledConfig:
    """An applied snapshot, replaced whole by swapping one reference (no lock to read it).

    `rules[flag]` is `is_enabled`'s closure; `entries[flag]` is (outcome rule, stable tally, canary tally) for
    `record`.
    The tallies start as retired placeholders and are replaced by the live ones on first use (under the outcome
    window's lock): the only part of a compiled config that changes after it is built.
    """

    __slots__ = ("entries", "rules", "snapshot")

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot
        flags: Mapping[str, FlagConfig] = snapshot.flags if snapshot else {}
        segments = snapshot.segments if snapshot else {}
        self.rules: dict[str, Rule] = {}
        self.entries: dict[str, tuple[OutcomeRule, ArmTally, ArmTally]] = {}
        for key, flag in flags.items():
            self.rules[key] = compile_rule(flag, segments)
            self.entries[key] = (compile_outcome_rule(flag, segments), *placeholders(key, flag.revision))
            give_way()
