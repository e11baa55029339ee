"""The errors the domain and the store raise; the HTTP layer maps each `code` to a status, in one place."""

from __future__ import annotations

from collections.abc import Mapping


class FlagError(Exception):
    """Base of every expected failure; `code` is the stable machine-readable name sent to clients."""

    code = "flag_error"

    def __init__(self, message: str, fields: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})


class InvalidFlag(FlagError):
    code = "validation_error"


class IllegalTransition(FlagError):
    code = "conflict"


class RevisionConflict(FlagError):
    """Someone else changed the flag first: the compare-and-set on its revision failed."""

    code = "conflict"


class LeadershipLost(FlagError):
    """A controller's write was refused: a newer leader has fenced the flag."""

    code = "conflict"


class FlagNotFound(FlagError):
    code = "not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"no flag named {key!r}")
        self.key = key


class FlagExists(FlagError):
    code = "conflict"

    def __init__(self, key: str) -> None:
        super().__init__(f"a flag named {key!r} exists already", {"key": ["already exists"]})
        self.key = key


class ImplausibleBatch(FlagError):
    """An outcome batch no SDK instance could have sent: refused whole, nothing counted."""

    code = "implausible_batch"


class RateLimited(FlagError):
    """Too many requests of one kind from one principal; `retry_after` seconds until the next is taken."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PreconditionFailed(FlagError):
    """The operator's write named a revision (If-Match) the flag is no longer at: nothing was changed."""

    code = "precondition_failed"

    def __init__(self, key: str, expected: int, current: int) -> None:
        super().__init__(f"flag {key!r} is at revision {current}, not {expected}: it changed since you read it",
                         {"If-Match": [f"the flag is at revision {current}"]})
        self.current = current


class IdempotencyKeyReused(FlagError):
    """An Idempotency-Key sent again with a different request: refused, nothing changed."""

    code = "conflict"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used for a different request",
                         {"Idempotency-Key": ["was used for a different request; use a new key for a new request"]})


class SegmentNotFound(FlagError):
    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no segment named {name!r}")
        self.name = name


class WebhookNotFound(FlagError):
    code = "not_found"

    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"no webhook {webhook_id!r}")
        self.webhook_id = webhook_id


class SegmentExists(FlagError):
    code = "conflict"

    def __init__(self, name: str) -> None:
        super().__init__(f"a segment named {name!r} exists already", {"name": ["already exists"]})


class SegmentInUse(FlagError):
    """A segment that flags name cannot be deleted: they would answer their callers' defaults."""

    code = "conflict"

    def __init__(self, name: str, flags: list[str]) -> None:
        shown = ", ".join(flags[:10]) + (f" and {len(flags) - 10} more" if len(flags) > 10 else "")
        super().__init__(f"segment {name!r} is used by flag(s) {shown}: take it out of them first",
                         {"name": [f"used by {shown}"]})
