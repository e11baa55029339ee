"""FLAGSVC_REDIS_URL: the three kinds of URL, what each names, and clear errors for what is not one of them."""

from __future__ import annotations

import pytest

from flagsvc.store.connection import RedisTarget, RedisUrlError, connect, parse_redis_url


@pytest.mark.parametrize("url", ["redis://db:6379/0", "rediss://:secret@db.example:6380/2", "redis://localhost",
                                 "unix:///run/redis.sock?db=1", "redis://user:pw@db/0?socket_timeout=3"])
def test_a_single_server_url_is_redis_pys_own(url):
    target = parse_redis_url(url)
    assert (target.mode, target.url, target.nodes) == ("single", url, ())
    assert target.tls == url.startswith("rediss:")
    assert "secret" not in target.describe() and "pw" not in target.describe()


def test_a_single_server_is_described_without_its_password():
    assert parse_redis_url("rediss://:secret@db.example:6380/2?x=1").describe() == "rediss://db.example:6380/2"


def test_a_sentinel_url():
    target = parse_redis_url("redis+sentinel://s1:26379,s2:26380,s3/mymaster")
    assert target == RedisTarget("sentinel", target.url, (("s1", 26379), ("s2", 26380), ("s3", 26379)),
                                 "mymaster", 0)
    assert target.describe() == "Sentinel service 'mymaster' db 0 via s1:26379,s2:26380,s3:26379"


def test_a_sentinel_url_with_tls_password_database_and_options():
    target = parse_redis_url("rediss+sentinel://app:p%40ss%3Aword@[::1]:26379,10.0.0.2/mymaster/3"
                             "?sentinel_password=sp&socket_timeout=1.5&ssl_cert_reqs=required"
                             "&ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false")
    assert (target.mode, target.tls, target.service, target.db) == ("sentinel", True, "mymaster", 3)
    assert target.nodes == (("::1", 26379), ("10.0.0.2", 26379))
    assert (target.username, target.password) == ("app", "p@ss:word")
    assert target.options == {"sentinel_password": "sp", "socket_timeout": 1.5, "ssl_cert_reqs": "required",
                              "ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": False}
    assert "p@ss" not in target.describe() and "p@ss" not in repr(target) and "sp" not in repr(target)
    assert target.describe() == "Sentinel service 'mymaster' db 3 via [::1]:26379,10.0.0.2:26379 over TLS"


def test_a_password_alone():
    assert parse_redis_url("redis+cluster://:secret@n1").password == "secret"
    assert parse_redis_url("redis+cluster://secret@n1").password == "secret"  # as redis-py reads redis://x@h
    assert parse_redis_url("redis+cluster://secret@n1").username is None


def test_a_cluster_url():
    target = parse_redis_url("rediss+cluster://:pw@n1:7000,n2:7001,n3?client_name=flagsvc")
    assert (target.mode, target.tls, target.password, target.db) == ("cluster", True, "pw", 0)
    assert target.nodes == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert target.options == {"client_name": "flagsvc"}
    assert target.describe() == "Cluster seeded by n1:7000,n2:7001,n3:6379 over TLS"
    assert parse_redis_url("redis+cluster://n1:7000/0").db == 0
    assert parse_redis_url("redis+cluster://n1:7000/").nodes == (("n1", 7000),)


@pytest.mark.parametrize(("url", "problem"), [
    ("db:6379", "no scheme"),
    ("http://db:6379", "unknown scheme 'http'"),
    ("redis+sentinal://s1/m", "unknown scheme 'redis+sentinal'"),
    ("redis://h1:6379,h2:6379", "several hosts need redis+sentinel:// or redis+cluster://"),
    ("redis://", "no host"),
    ("redis+sentinel://s1:26379,s2:26379", "no service name"),
    ("redis+sentinel://s1:26379/", "no service name"),
    ("redis+sentinel://s1/mymaster/zero", "only a database number may follow"),
    ("redis+sentinel://s1/mymaster/1/2", "only a database number may follow"),
    ("redis+sentinel:///mymaster", "no host"),
    ("redis+sentinel://s1:port/mymaster", "'s1:port' has no valid port"),
    ("redis+sentinel://s1:70000/mymaster", "'s1:70000' has no valid port"),
    ("redis+cluster://n1,,n2", "'' is not host[:port]"),
    ("redis+cluster://[::1/", "'[::1' is not host[:port]"),
    ("redis+cluster://n1:7000/3", "a Cluster has database 0 only"),
    ("redis+cluster://n1?sentinel_password=x", "unknown option 'sentinel_password'"),
    ("redis+cluster://n1?socket_timout=1", "unknown option 'socket_timout'"),
    ("redis+cluster://n1?socket_timeout=-1", "option socket_timeout='-1': seconds from 0 to 3600"),
    ("redis+cluster://n1?ssl_cert_reqs=maybe", "option ssl_cert_reqs='maybe': none, optional or required"),
    ("redis+cluster://n1?ssl_check_hostname=perhaps", "option ssl_check_hostname='perhaps': true or false"),
])
def test_what_is_wrong_with_a_bad_url_is_said(url, problem):
    with pytest.raises(RedisUrlError, match="FLAGSVC_REDIS_URL") as error:
        parse_redis_url(url)
    assert problem in str(error.value)
    assert "expected e.g." in str(error.value)


def test_an_error_never_shows_the_password():
    with pytest.raises(RedisUrlError) as error:
        parse_redis_url("redis+sentinel://user:hunter22@s1:bad/m")
    assert "hunter22" not in str(error.value) and "***@s1:bad" in str(error.value)


def test_connect_builds_redis_pys_own_clients():
    """No server is needed to build them: redis-py connects on first use (Cluster: at construction, so not here)."""
    from redis import Redis
    from redis.sentinel import SentinelConnectionPool

    single = connect(parse_redis_url("redis://127.0.0.1:1/0"), max_connections=7)
    assert isinstance(single, Redis) and single.connection_pool.max_connections == 7
    sentinel = connect(parse_redis_url("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/2?"
                                       "sentinel_password=sp"))
    pool = sentinel.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [1, 2]
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
