"""Bearer-token authentication and scopes.

Admin tokens may do everything; SDK keys may use the SDK endpoints only. The guard keys on the *endpoint Flask
matched*, never on the path string, so `//`, trailing slashes, `%2e` or `;` variants cannot slip past it: a
request that matched no endpoint (a 404 or a redirect to be) needs a valid token too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"
    SDK = "sdk"


@dataclass(frozen=True)
class Principal:
    name: str
    scope: Scope


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class TokenRegistry:
    def __init__(self, admin_tokens: Mapping[str, str], sdk_keys: Mapping[str, str]) -> None:
        self._entries = [(_digest(s), Principal(n, Scope.ADMIN)) for n, s in admin_tokens.items()]
        self._entries += [(_digest(s), Principal(n, Scope.SDK)) for n, s in sdk_keys.items()]

    def identify(self, secret: str) -> Principal | None:
        """Compare against every token in constant time (digests have one length; no early exit)."""
        candidate = _digest(secret)
        found = None
        for digest, principal in self._entries:
            if hmac.compare_digest(candidate, digest):
                found = principal
        return found


def bearer_secret(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()
