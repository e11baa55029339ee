"""What an evaluation answers, and why: the vocabulary of `FlagClient.evaluate` and `FlagClient.status`.

Plain string constants (not enums: `enum` would add to the import time, and strings are what logs and JSON want).
"""

from __future__ import annotations

from flagsvc_client._frozen import Frozen


class Reason:
    ROLLOUT = "rollout"  # the bucketing rule at the flag's percent
    ALLOW_LIST = "allow_list"
    DENY_LIST = "deny_list"
    KILLED = "killed"  # state off or rolled_back: nobody is canary, allow list included
    # targeting (docs/targeting.md): outside the rollout's eligible population, so stable (and not counted)
    EXCLUDED_SEGMENT = "excluded_segment"  # in one of the flag's excluded segments
    NOT_ELIGIBLE = "not_eligible"  # in none of the flag's eligible segments
    NO_BUCKET_ATTRIBUTE = "no_bucket_attribute"  # the context lacks the flag's bucket_by attribute
    INVALID_CONTEXT = "invalid_context"  # the context (or an attribute the flag reads) is not usable: default
    UNSUPPORTED = "unsupported"  # the flag needs a feature this SDK does not have (docs/protocol.md): default
    FLAG_NOT_FOUND = "flag_not_found"  # the config has no such flag: the caller's default
    NOT_READY = "not_ready"  # no config yet: the caller's default
    ERROR = "error"  # a bad user id, a segment missing from the config, or a bug: the caller's default


class Status:
    NOT_READY = "not_ready"  # no config: every evaluation answers the default
    READY = "ready"  # a config the server confirmed within `stale_after` (or offline with a config)
    STALE = "stale"  # a config (last from the server, bootstrap or cache) the server has not confirmed lately
    # confirmed lately, but the server's dataset was reset and lacks flags this client answers from its last
    # snapshot of the previous epoch (`stats["carried_over"]` names them; docs/recovery.md)
    CARRIED_OVER = "carried_over"


class Evaluation(Frozen):
    """One evaluation: `arm` is the arm the rule put the user in; None when no rule ran (the default answered)."""

    __slots__ = ("value", "arm", "reason", "revision")  # noqa: RUF023 (the order repr shows)

    value: bool
    arm: str | None
    reason: str
    revision: int | None

    def __init__(self, value: bool, arm: str | None, reason: str, revision: int | None) -> None:
        _set = object.__setattr__
        _set(self, "value", value)
        _set(self, "arm", arm)
        _set(self, "reason", reason)
        _set(self, "revision", revision)
