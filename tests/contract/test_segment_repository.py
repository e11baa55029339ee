"""The SegmentRepository role (flagsvc/store/segments.py), on every store: segments by name, each write a
compare-and-set on the segment's revision, idempotent with a key, isolated by namespace."""

from __future__ import annotations

import dataclasses

import pytest

from flagsvc.domain.errors import RevisionConflict, SegmentExists, SegmentNotFound
from flagsvc.domain.segment import Segment
from flagsvc.store.roles import AlreadyApplied, Idempotency
from flagsvc.store.segments import SegmentRepository, segments_for

NZ = ({"attribute": "country", "op": "in", "values": ["NZ"]},)


def segment(name: str = "nz", revision: int = 1, **fields) -> Segment:
    return Segment(name=name, conditions=NZ, revision=revision, created_at=10.0, updated_at=10.0 + revision,
                   updated_by="ops", **fields)


def test_every_store_has_a_segment_repository_the_same_each_time(any_store):
    repository = segments_for(any_store)
    assert isinstance(repository, SegmentRepository)
    if not hasattr(any_store, "redis"):
        assert segments_for(any_store) is repository  # memory: the one kept for this store


def test_create_read_and_list_in_name_order(any_store):
    repository = segments_for(any_store)
    assert repository.get_segment("nz") is None and repository.list_segments() == []
    for name in ("nz", "beta-testers", "au"):
        repository.write_segment(name, segment(name, description=f"{name}!"), expected_revision=None)
    assert repository.get_segment("nz") == segment("nz", description="nz!")
    assert [s.name for s in repository.list_segments()] == ["au", "beta-testers", "nz"]
    with pytest.raises(SegmentExists):
        repository.write_segment("nz", segment("nz"), expected_revision=None)
    assert repository.get_segment("nz").description == "nz!"  # the refused create changed nothing


def test_replace_and_delete_compare_the_revision(any_store):
    repository = segments_for(any_store)
    repository.write_segment("nz", segment(), expected_revision=None)
    edited = dataclasses.replace(segment(revision=2), conditions=({"attribute": "plan", "op": "in",
                                                                    "values": ["free"]},))
    repository.write_segment("nz", edited, expected_revision=1)
    assert repository.get_segment("nz") == edited
    with pytest.raises(RevisionConflict):
        repository.write_segment("nz", segment(revision=3), expected_revision=1)  # a stale writer
    with pytest.raises(RevisionConflict):
        repository.write_segment("nz", None, expected_revision=1)
    assert repository.get_segment("nz") == edited
    with pytest.raises(SegmentNotFound):
        repository.write_segment("ghost", segment("ghost", revision=2), expected_revision=1)
    repository.write_segment("nz", None, expected_revision=2)
    assert repository.get_segment("nz") is None and repository.list_segments() == []
    with pytest.raises(SegmentNotFound):
        repository.write_segment("nz", None, expected_revision=2)


def test_a_write_with_an_idempotency_key_is_done_once_and_answers_the_first_answer(any_store):
    repository = segments_for(any_store)
    assert repository.segment_idempotent_answer("key-1") is None
    first = Idempotency("key-1", "fingerprint-a", '{"name": "nz"}')
    repository.write_segment("nz", segment(), expected_revision=None, idempotency=first)
    with pytest.raises(AlreadyApplied) as again:  # a retry: nothing done, the first answer
        repository.write_segment("nz", segment(), expected_revision=None, idempotency=first)
    assert (again.value.fingerprint, again.value.answer) == ("fingerprint-a", '{"name": "nz"}')
    with pytest.raises(AlreadyApplied):  # the key with another request: refused too (the API says 409)
        repository.write_segment("au", segment("au"), expected_revision=None,
                                 idempotency=Idempotency("key-1", "fingerprint-b"))
    assert repository.get_segment("au") is None
    kept = repository.segment_idempotent_answer("key-1")
    assert kept is not None and (kept.fingerprint, kept.answer) == ("fingerprint-a", '{"name": "nz"}')
    # a refused write remembers nothing: its key is free for the request that succeeds
    with pytest.raises(SegmentExists):
        repository.write_segment("nz", segment(), expected_revision=None,
                                 idempotency=Idempotency("key-2", "fingerprint-c"))
    assert repository.segment_idempotent_answer("key-2") is None
