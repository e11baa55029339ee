"""The SessionStore role (the web console's sessions), on every store: a document kept under a digest, read
back, dropped at once; a missing one is None. Expiry is the store's (a TTL on Redis): the unit tests check the
TTL set and the memory twin's expiry on a clock they move."""

from __future__ import annotations

from flagsvc.store.sessions import SessionStore, sessions_for


def test_every_store_has_session_storage(any_store):
    assert isinstance(sessions_for(any_store), SessionStore)


def test_a_session_is_kept_read_back_and_dropped(any_store):
    sessions = sessions_for(any_store)
    doc = {"name": "ops", "scope": "admin", "csrf": "c" * 43, "expires_at": 1234.5, "token": "0badf00d"}
    sessions.put_session("a" * 64, doc, ttl=3600)
    sessions.put_session("b" * 64, {**doc, "name": "viewer"}, ttl=3600)
    assert sessions.get_session("a" * 64) == doc
    assert sessions.get_session("b" * 64)["name"] == "viewer"
    assert sessions.get_session("c" * 64) is None
    sessions.drop_session("a" * 64)
    sessions.drop_session("a" * 64)  # dropping twice is harmless
    assert sessions.get_session("a" * 64) is None
    assert sessions.get_session("b" * 64)["name"] == "viewer"  # the others stay
