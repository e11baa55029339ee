"""A reset or emptied dataset is noticed (DatasetWatcher), logged, counted, and turns /readyz to 503 until the
vanished flags are restored or an operator acknowledges; driven look by look, no sleeps."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from flagsvc.api import create_app
from flagsvc.service import build_services
from tests.support import ADMIN, TEST_SETTINGS


@pytest.fixture
def services(fake_store, manual_clock, tmp_path):
    return build_services(TEST_SETTINGS, fake_store, manual_clock, controller=False, backup_dir=tmp_path)


def _rolling_at_50(services, key="checkout"):
    services.commands.create(key, {"stages": [10, 50, 100]}, actor="ops")
    services.commands.start(key, actor="ops")
    return services.commands.promote(key, actor="ops")


def _resets() -> float:
    return REGISTRY.get_sample_value("flagsvc_dataset_resets_total") or 0.0


def test_a_flushall_is_noticed_at_the_next_look_naming_what_vanished(services, fake_store, caplog):
    _rolling_at_50(services)
    services.commands.create("idle", {}, actor="ops")
    assert services.dataset.look() is None  # the baseline
    before = _resets()
    fake_store.redis.flushall()
    with caplog.at_level(logging.ERROR, "flagsvc.dataset"):
        notice = services.dataset.look()
    assert notice is not None and notice["reason"].startswith("config epoch changed")
    assert [(v["key"], v["state"], v["percent"]) for v in notice["vanished"]] == [
        ("checkout", "rolling", 50.0), ("idle", "off", 0.0)]
    assert "checkout (rolling at 50%)" in caplog.text and "idle (off at 0%)" in caplog.text
    assert _resets() == before + 1
    assert REGISTRY.get_sample_value("flagsvc_dataset_flags_missing") == 2
    assert services.dataset.look() is None  # noticed once


def test_flags_deleted_behind_the_servers_back_are_noticed_on_the_second_look(services, fake_store):
    _rolling_at_50(services)
    services.dataset.look()
    fake_store.redis.delete(fake_store.keys.flag("checkout"), fake_store.keys.index)  # the epoch stays
    assert services.dataset.look() is None  # maybe a delete about to be announced
    notice = services.dataset.look()
    assert notice is not None and "without a change being announced" in notice["reason"]


def test_deletes_through_the_api_are_not_a_reset(services):
    for key in ("a", "b", "c"):
        services.commands.create(key, {}, actor="ops")
    services.dataset.look()
    for key in ("a", "b", "c"):
        services.commands.delete(key)
    assert services.dataset.look() is None and services.dataset.look() is None
    assert services.dataset.notice() is None


def test_an_epoch_change_that_lost_nothing_opens_nothing(services, fake_store, caplog):
    services.commands.create("a", {}, actor="ops")
    services.dataset.look()
    fake_store.redis.delete(fake_store.keys.config_epoch)
    with caplog.at_level(logging.WARNING, "flagsvc.dataset"):
        assert services.dataset.look() is None
    assert "no flag was lost" in caplog.text and services.dataset.notice() is None


def test_readyz_is_503_until_an_operator_acknowledges(services, fake_store):
    app = create_app(TEST_SETTINGS, services=services)
    client = app.test_client()
    _rolling_at_50(services)
    services.dataset.look()
    fake_store.redis.flushall()
    services.dataset.look()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    message = ready.get_json()["error"]["message"]
    assert "dataset was reset" in message and "checkout (rolling at 50%)" in message and "flagctl import" in message
    status = client.get("/api/v1/dataset", headers=ADMIN).get_json()
    assert (status["status"], status["missing"]) == ("reset", ["checkout"])
    acked = client.post("/api/v1/dataset/acknowledge", headers=ADMIN)
    assert acked.status_code == 200 and acked.get_json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    assert services.dataset.look() is None  # the new dataset is the baseline now
    (entry,) = [e for e in client.get("/api/v1/audit", headers=ADMIN).get_json()["entries"]
                if e["kind"] == "dataset"]
    assert (entry["action"], entry["actor"], entry["detail"]["missing"]) == ("acknowledge", "ops", ["checkout"])


def test_every_process_sees_the_notice_and_a_restore_closes_it(services, fake_store, manual_clock, tmp_path):
    other = build_services(TEST_SETTINGS, fake_store, manual_clock, controller=False, backup_dir=tmp_path)
    _rolling_at_50(services)
    exported = services.backup.export()
    services.dataset.look()
    other.dataset.look()
    fake_store.redis.flushall()
    services.dataset.look()
    other.dataset.look()  # noticed here too; the notice is not written twice
    assert other.dataset.notice() == services.dataset.notice() is not None
    other.backup.restore(exported, actor="ops")  # restoring closes the notice at once
    assert services.dataset.notice() is None
    assert REGISTRY.get_sample_value("flagsvc_dataset_flags_missing") == 0
