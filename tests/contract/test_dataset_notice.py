"""The dataset-reset notice (StoreHealth), on every store: kept for every process to read, written once."""

from __future__ import annotations


def test_no_notice_at_first(any_store):
    assert any_store.dataset_notice() is None
    assert any_store.keep_dataset_notice(None) is False  # nothing to remove


def test_the_first_notice_wins_and_removal_closes_it(any_store):
    assert any_store.keep_dataset_notice('{"n": 1}', only_if_absent=True) is True
    assert any_store.keep_dataset_notice('{"n": 2}', only_if_absent=True) is False
    assert any_store.dataset_notice() == '{"n": 1}'
    assert any_store.keep_dataset_notice('{"n": 3}') is True  # without only_if_absent: overwritten
    assert any_store.dataset_notice() == '{"n": 3}'
    assert any_store.keep_dataset_notice(None) is True
    assert any_store.dataset_notice() is None
