"""Bearer-token authentication and scopes.

Admin tokens may do everything; read tokens may read everything (GET, HEAD, OPTIONS: the admin API and the SDK
config) and change nothing, so a write (an OFREP evaluation's POST too) is a 403 whatever it would write; SDK
keys may use the SDK endpoints (/sdk/v1, /ofrep/v1) only. The guard keys on the *endpoint Flask matched*, never
on the path string, so `//`, trailing slashes, `%2e` or `;` variants cannot slip past it: a request that matched
no endpoint (a 404 or a redirect to be) needs a valid token too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"
    READ = "read"
    SDK = "sdk"


@dataclass(frozen=True)
class Principal:
    name: str
    scope: Scope


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class TokenRegistry:
    def __init__(self, admin_tokens: Mapping[str, str], sdk_keys: Mapping[str, str],
                 read_tokens: Mapping[str, str] | None = None) -> None:
        self._entries = [(_digest(s), Principal(n, Scope.ADMIN)) for n, s in admin_tokens.items()]
        self._entries += [(_digest(s), Principal(n, Scope.SDK)) for n, s in sdk_keys.items()]
        self._entries += [(_digest(s), Principal(n, Scope.READ)) for n, s in (read_tokens or {}).items()]

    def identify(self, secret: str) -> Principal | None:
        """Compare against every token in constant time (digests have one length; no early exit)."""
        candidate = _digest(secret)
        found = None
        for digest, principal in self._entries:
            if hmac.compare_digest(candidate, digest):
                found = principal
        return found


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refusal(principal: Principal, endpoint: str, method: str) -> str | None:
    """Why `principal` may not call `endpoint` (the Flask endpoint matched) with `method`, or None when it may."""
    if principal.scope == Scope.ADMIN:
        return None
    if principal.scope == Scope.READ:
        if method in READ_METHODS:
            return None
        return f"token {principal.name!r} is a read-only token; {method} changes things and needs an admin token"
    if endpoint.startswith(("sdk.", "ofrep.")):
        return None
    return f"token {principal.name!r} is an SDK key; this endpoint needs an admin token"


def bearer_secret(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()
