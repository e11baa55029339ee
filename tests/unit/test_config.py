"""Settings from the environment: values that would break the server later are refused at start."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flagsvc.cli.server import main
from flagsvc.config import ConfigError, Settings


@pytest.mark.parametrize("interval", ["nan", "inf", "-1", "0", "1e9"])
def test_a_controller_interval_that_would_stall_the_controller_is_refused(interval):
    with pytest.raises(ConfigError, match="FLAGSVC_CONTROLLER_INTERVAL"):
        Settings.from_env({"FLAGSVC_CONTROLLER_INTERVAL": interval})


@pytest.mark.parametrize("size", ["-1", "0", "100"])
def test_a_body_limit_that_refuses_every_request_is_refused(size):
    with pytest.raises(ConfigError, match="FLAGSVC_MAX_BODY_BYTES"):
        Settings.from_env({"FLAGSVC_MAX_BODY_BYTES": size})


def test_sane_values_pass():
    settings = Settings.from_env({"FLAGSVC_CONTROLLER_INTERVAL": "0.5", "FLAGSVC_MAX_BODY_BYTES": "65536"})
    assert (settings.controller_interval, settings.max_body_bytes) == (0.5, 65536)


def test_one_secret_cannot_be_both_an_admin_token_and_an_sdk_key():
    with pytest.raises(ConfigError, match="same secret"):
        Settings.from_env({"FLAGSVC_ADMIN_TOKENS": "ops=samesecret1", "FLAGSVC_SDK_KEYS": "web=samesecret1"})
    with pytest.raises(ConfigError, match="same secret"):
        Settings.from_env({"FLAGSVC_ADMIN_TOKENS": "ops=samesecret1,ci=samesecret1"})


def test_embedded_mode_fills_in_the_kind_of_token_not_given(tmp_path, monkeypatch):
    """Only admin tokens set: the SDK keys come from tokens.json (generated), so SDKs can connect."""
    from flagsvc.cli import server

    captured = {}

    def fake_run(app, **options):
        captured["tokens"] = app.extensions["flagsvc.tokens"]

    monkeypatch.setattr("flagsvc.cli.wsgi.run_gunicorn", fake_run)
    monkeypatch.setattr(server, "_prepare_multiprocess_metrics", lambda: None)
    env = {"FLAGSVC_DATA_DIR": str(tmp_path), "FLAGSVC_ADMIN_TOKENS": "ops=opsecret123"}
    result = CliRunner().invoke(main, ["serve", "--port", "1"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    generated = json.loads((tmp_path / "tokens.json").read_text())
    sdk_key = next(iter(generated["sdk_keys"].values()))
    tokens = captured["tokens"]
    assert tokens.identify(sdk_key).scope == "sdk"
    assert tokens.identify("opsecret123").scope == "admin"
    assert tokens.identify(next(iter(generated["admin_tokens"].values()))) is None  # the given ones rule
    assert "SDK key:" in result.output and "admin token:" not in result.output


def test_a_redis_url_that_cannot_be_read_stops_the_server_with_the_reason():
    with pytest.raises(ConfigError, match=r"FLAGSVC_REDIS_URL .*no service name"):
        Settings.from_env({"FLAGSVC_REDIS_URL": "redis+sentinel://s1:26379,s2:26379"})
    settings = Settings.from_env({"FLAGSVC_REDIS_URL": "redis+cluster://n1:7000,n2:7001"})
    assert settings.redis_url == "redis+cluster://n1:7000,n2:7001"


def test_a_namespace_with_braces_is_refused():
    with pytest.raises(ConfigError, match="FLAGSVC_REDIS_NAMESPACE cannot contain braces"):
        Settings.from_env({"FLAGSVC_REDIS_NAMESPACE": "prod{1}:"})


def test_replica_acknowledgements():
    env = {"FLAGSVC_REDIS_URL": "redis+sentinel://s1/mymaster"}
    assert (Settings.from_env(env).redis_min_replicas_ack, Settings.from_env(env).redis_ack_timeout) == (0, 1.0)
    settings = Settings.from_env({**env, "FLAGSVC_REDIS_MIN_REPLICAS_ACK": "1", "FLAGSVC_REDIS_ACK_TIMEOUT": "0.5"})
    assert (settings.redis_min_replicas_ack, settings.redis_ack_timeout) == (1, 0.5)
    for bad in ({"FLAGSVC_REDIS_MIN_REPLICAS_ACK": "-1"}, {"FLAGSVC_REDIS_MIN_REPLICAS_ACK": "one"},
                {"FLAGSVC_REDIS_ACK_TIMEOUT": "0"}, {"FLAGSVC_REDIS_ACK_TIMEOUT": "nan"}):
        with pytest.raises(ConfigError):
            Settings.from_env({**env, **bad})
    with pytest.raises(ConfigError, match="embedded Redis has no replicas"):
        Settings.from_env({"FLAGSVC_REDIS_MIN_REPLICAS_ACK": "1"})


def test_the_store_built_from_settings_waits_for_the_replicas_asked_for(monkeypatch):
    import fakeredis

    from flagsvc.service import build_services
    from flagsvc.store.redis_store import RedisStore

    built = {}

    def from_url(cls, url, namespace, **options):
        built.update(options, url=url)
        return RedisStore(fakeredis.FakeRedis(decode_responses=True), namespace)

    monkeypatch.setattr(RedisStore, "from_url", classmethod(from_url))
    settings = Settings.from_env({"FLAGSVC_REDIS_URL": "redis://db:6379/0", "FLAGSVC_REDIS_MIN_REPLICAS_ACK": "2",
                                  "FLAGSVC_REDIS_ACK_TIMEOUT": "3"})
    build_services(settings, controller=False)
    assert built == {"url": "redis://db:6379/0", "min_replicas_ack": 2, "ack_timeout": 3.0}
