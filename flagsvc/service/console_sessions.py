"""Console sessions: a sign-in with an admin or read token becomes a random session id (the cookie) with its own
CSRF token, kept server-side for SESSION_SECONDS from the sign-in; signing out drops it at once, on every process
and replica (store.sessions). The store keeps the session under the SHA-256 of the id, so what Redis holds cannot
be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from flagsvc.store.sessions import SessionStore

SESSION_SECONDS = 8 * 3600  # a session's whole life, renewed by nothing: sign in again after a working day
SCOPES = ("admin", "read")


@dataclass(frozen=True)
class ConsoleSession:
    name: str  # the token's name: the actor of the session's changes
    scope: str  # "admin" or "read"
    csrf: str
    expires_at: float
    token: str = ""  # token_tag of the token signed in with: a rotated or removed token ends its sessions

    @property
    def can_write(self) -> bool:
        return self.scope == "admin"

    def csrf_matches(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), (sent or "").encode("utf-8", "replace"))


def token_tag(secret: str) -> str:
    """32 bits of the token's SHA-256: enough to see that a token was rotated, too few to say anything about it."""
    return hashlib.sha256(b"flagsvc-console:" + secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class ConsoleSessions:
    def __init__(self, store: SessionStore, clock: Callable[[], float] = time.time,
                 lifetime: float = SESSION_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self.lifetime = lifetime

    def open(self, name: str, scope: str, token: str = "") -> tuple[str, ConsoleSession]:
        """A new session for the token `name` of `scope` (`token`: its token_tag): its id (the cookie's value)
        and the session."""
        if scope not in SCOPES:
            raise ValueError(f"a console session is for admin or read tokens, not {scope!r}")
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(name, scope, secrets.token_urlsafe(32), self._clock() + self.lifetime, token)
        self._store.put_session(_digest(session_id), {
            "name": name, "scope": scope, "csrf": session.csrf, "expires_at": session.expires_at, "token": token,
        }, ttl=self.lifetime)
        return session_id, session

    def find(self, session_id: str | None) -> ConsoleSession | None:
        """The live session with this id, or None (unknown, signed out, expired, malformed)."""
        if not session_id or len(session_id) > 200:
            return None
        doc = self._store.get_session(_digest(session_id))
        if doc is None:
            return None
        try:
            session = ConsoleSession(str(doc["name"]), str(doc["scope"]), str(doc["csrf"]), float(doc["expires_at"]),
                                     str(doc.get("token", "")))
        except (KeyError, TypeError, ValueError):
            return None
        if session.scope not in SCOPES or session.expires_at <= self._clock():
            return None
        return session

    def close(self, session_id: str | None) -> None:
        """Sign out: the id stops working everywhere."""
        if session_id and len(session_id) <= 200:
            self._store.drop_session(_digest(session_id))
