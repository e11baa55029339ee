"""Flags compiled for the hot path: one closure per flag, built once when a snapshot is applied.

`is_enabled` costs one dict lookup and one call of the flag's closure, which does the §3 rule with everything
precomputed (salt prefix, threshold, killed, allow/deny sets). Each closure raises on a bad user id (wrong type,
lone surrogate); the caller turns that into the default. `explain` is the same rule, slower, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mmh3 import hash as _murmur3_32

from flagsvc_client._outcomes import CANARY_CODES, STABLE_CODES, ArmTally, placeholders
from flagsvc_client.protocol.bucketing import BUCKETS, SEPARATOR, UNIT_SHIFT, hash_key, user_key
from flagsvc_client.snapshot import FlagConfig, Snapshot

Rule = Callable[[object], bool]
# `record`'s closure: the same rule, answering the outcome's code (_outcomes.py): the user's unit, plus CANARY
OutcomeRule = Callable[[object], int]


# In each closure: a str goes straight through, an int is formatted in decimal (an exact int only: a subclass
# goes through user_key, which ignores its __repr__/__format__), anything else raises in user_key. str.encode
# raises on a lone surrogate, which mmh3 would crash on (see bucketing.hash_key).


def _killed_rule() -> Rule:
    def rule(user_id: object) -> bool:
        if type(user_id) is not str and type(user_id) is not int:
            user_key(user_id)  # a bad id is an error even here
        return False

    return rule


def _rollout_rule(prefix: str, threshold: int) -> Rule:
    def rule(user_id: object) -> bool:
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

    def rule(user_id: object) -> bool:
        if type(user_id) is not str:
            user_id = f"{user_id}" if type(user_id) is int else user_key(user_id)
        if user_id in listed:
            return user_id in allow  # allow wins over deny, as in the rule
        key = prefix + user_id
        return _murmur3_32(key if key.isascii() else key.encode(), 0, False) % BUCKETS < threshold

    return rule


def _killed_outcome_rule(prefix: str) -> OutcomeRule:
    def rule(user_id: object) -> int:
        if type(user_id) is not str:
            user_id = f"{user_id}" if type(user_id) is int else user_key(user_id)
        key = prefix + user_id
        return STABLE_CODES[_murmur3_32(key if key.isascii() else key.encode(), 0, False) >> UNIT_SHIFT]

    return rule


def _rollout_outcome_rule(prefix: str, threshold: int) -> OutcomeRule:
    def rule(user_id: object) -> int:
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

    def rule(user_id: object) -> int:
        if type(user_id) is not str:
            user_id = f"{user_id}" if type(user_id) is int else user_key(user_id)
        key = prefix + user_id
        h = _murmur3_32(key if key.isascii() else key.encode(), 0, False)
        canary = user_id in allow if user_id in listed else h % BUCKETS < threshold
        return (CANARY_CODES if canary else STABLE_CODES)[h >> UNIT_SHIFT]

    return rule


def compile_outcome_rule(flag: FlagConfig) -> OutcomeRule:
    """`record`'s closure for the flag: which arm and which user bucket an outcome is counted in."""
    prefix = flag.salt + SEPARATOR
    if flag.killed:
        return _killed_outcome_rule(prefix)
    if flag.allow or flag.deny:
        return _listed_outcome_rule(prefix, flag.threshold, flag.allow, flag.deny)
    return _rollout_outcome_rule(prefix, flag.threshold)


def compile_rule(flag: FlagConfig) -> Rule:
    if flag.killed:
        return _killed_rule()
    prefix = flag.salt + SEPARATOR
    if flag.allow or flag.deny:
        return _listed_rule(prefix, flag.threshold, flag.allow, flag.deny)
    return _rollout_rule(prefix, flag.threshold)


def explain(flag: FlagConfig, user_id: object) -> tuple[bool, str]:
    """(canary?, reason) by the same rule as the compiled closure; raises on a bad user id."""
    key = user_key(user_id)
    if flag.killed:
        return False, "killed"
    if key in flag.allow:
        return True, "allow_list"
    if key in flag.deny:
        return False, "deny_list"
    return hash_key(flag.salt + SEPARATOR + key) % BUCKETS < flag.threshold, "rollout"


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
        self.rules: dict[str, Rule] = {key: compile_rule(flag) for key, flag in flags.items()}
        self.entries: dict[str, tuple[OutcomeRule, ArmTally, ArmTally]] = {
            key: (compile_outcome_rule(flag), *placeholders(key, flag.revision)) for key, flag in flags.items()
        }
