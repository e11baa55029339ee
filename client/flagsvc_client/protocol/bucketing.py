"""The bucketing rule (docs/bucketing.md): which users a rollout at `percent` puts on the canary.

WHY THIS MUST NEVER CHANGE: every SDK (in every language, every version) and the server must put the same user
in the same arm, or a user flips between arms as requests hit different processes, the server's per-arm
statistics stop describing what users saw, and raising the percentage no longer only adds users. A changed hash,
seed, separator, encoding, modulus or rounding is a new protocol, not a fix. `tests/vectors/bucketing.json`
pins the rule; the SDK's and the server's tests load it.

    h         = MurmurHash3_x86_32(UTF-8 bytes of f"{salt}:{user_id}", seed=0), unsigned
    bucket    = h % 10000                        # a basis point, 0..9999
    threshold = floor(percent * 100 + 0.5)       # IEEE-754 double arithmetic, clamped to 0..10000
    canary    = user_id in allow or (user_id not in deny and bucket < threshold)
    unit      = h >> 26                          # the user bucket outcomes are counted in, 0..63

The unit (docs/protocol.md, outcome batches) is the top 6 bits of the same hash: its blocks each span 6,700
times 10,000 hashes, so the units are random groups of users, independent of the arm.

`percent` has at most two decimals, so `percent * 100` lies within 1e-9 of an integer: any round-to-nearest gives
the same threshold (Python's banker's `round` included); `floor(x + 0.5)` is the form every language has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from mmh3 import hash as _murmur3_32

BUCKETS = 10_000
SEPARATOR = ":"
UNIT_SHIFT = 26  # unit = h >> UNIT_SHIFT: limits.UNIT_BUCKETS (64) user buckets


class InvalidUserId(TypeError):
    """A user id that is neither a str nor an int, or a str that is not valid Unicode (a lone surrogate)."""


def user_key(user_id: object) -> str:
    """The canonical string form of a user id: a str as is, an int (not a bool) in decimal. Takes any object
    because it is also the check: anything else raises InvalidUserId (callers pass whatever they were given)."""
    if type(user_id) is str:
        return user_id
    if isinstance(user_id, str):
        return str.__str__(user_id)
    kind = type(user_id)
    if isinstance(user_id, int) and kind is not bool:
        return int.__repr__(user_id)
    raise InvalidUserId(f"user id must be str or int, not {kind.__name__}")


def hash_key(key: str) -> int:
    """MurmurHash3 x86 32-bit of the UTF-8 bytes, unsigned.

    mmh3 5.x crashes the interpreter (SIGSEGV) when handed a str it cannot encode, so a non-ASCII key is encoded
    here first: a lone surrogate then raises UnicodeEncodeError instead.
    """
    return _murmur3_32(key if key.isascii() else key.encode(), 0, False)


def bucket(salt: str, user_id: str | int) -> int:
    """The user's basis point, 0..9999, for this salt."""
    return hash_key(f"{salt}{SEPARATOR}{user_key(user_id)}") % BUCKETS


def unit(salt: str, user_id: str | int) -> int:
    """The user bucket (0..63) this user's outcomes are counted in, for this salt."""
    return hash_key(f"{salt}{SEPARATOR}{user_key(user_id)}") >> UNIT_SHIFT


def threshold(percent: float) -> int:
    """Basis points on the canary at `percent` (0..100, at most two decimals): buckets below it are canary."""
    if not math.isfinite(percent):
        raise ValueError(f"percent must be finite, not {percent!r}")
    return min(BUCKETS, max(0, math.floor(percent * 100 + 0.5)))


def is_canary(
    salt: str,
    user_id: str | int,
    percent: float,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
) -> bool:
    """The whole rule for a flag that is live (not `off` / `rolled_back`: those put nobody on the canary)."""
    key = user_key(user_id)
    if key in allow:
        return True
    if key in deny:
        return False
    return bucket(salt, key) < threshold(percent)
