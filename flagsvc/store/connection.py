"""Which Redis flagsvc talks to, read from one URL, and the redis-py client for it.

Three kinds of URL (FLAGSVC_REDIS_URL):

- one server: ``redis://[[user]:password@]host[:6379][/db]``, ``rediss://...`` (TLS), ``unix:///path.sock``,
  handed to redis-py as they are (its query options included);
- a primary managed by Sentinel: ``redis+sentinel://[[user]:password@]host1[:26379],host2,.../service[/db]``,
  ``rediss+sentinel://...`` (TLS to the sentinels and to the servers); the password is the servers' (a
  sentinel's own goes in ``?sentinel_password=``, with ``sentinel_username``);
- a Cluster: ``redis+cluster://[[user]:password@]host1[:6379],host2,...``, ``rediss+cluster://...``; the hosts
  are seed nodes (any few: the client learns the rest); database 0 only.

The two many-host kinds take these query options: socket_timeout, socket_connect_timeout (seconds),
client_name, ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs (none, optional, required),
ssl_check_hostname (true/false), and the sentinel ones. Anything else is an error: a misspelt option is never
ignored silently.

Parsing is plain Python (the configuration checks a URL at start without importing redis); `connect` builds
the client with redis-py's own `Sentinel` and `RedisCluster`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster

__all__ = ["RedisTarget", "RedisUrlError", "connect", "parse_redis_url"]

Mode = Literal["single", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Mode, bool]] = {  # scheme -> (mode, TLS)
    "redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORT = {"sentinel": 26379, "cluster": 6379}


def _seconds(value: str) -> float:
    seconds = float(value)
    if not 0 < seconds <= 3600:
        raise ValueError("seconds from 0 to 3600")
    return seconds


def _boolean(value: str) -> bool:
    if value.lower() in ("true", "yes", "1"):
        return True
    if value.lower() in ("false", "no", "0"):
        return False
    raise ValueError("true or false")


def _cert_reqs(value: str) -> str:
    if value not in ("none", "optional", "required"):
        raise ValueError("none, optional or required")
    return value


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": _seconds, "socket_connect_timeout": _seconds, "client_name": str,
    "ssl_ca_certs": str, "ssl_certfile": str, "ssl_keyfile": str, "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _boolean,
}
_SENTINEL_OPTIONS: dict[str, Callable[[str], Any]] = {"sentinel_username": str, "sentinel_password": str}


class RedisUrlError(ValueError):
    """FLAGSVC_REDIS_URL cannot be understood; the message says what is wrong and shows the expected form."""


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names. `nodes` are the sentinels (sentinel) or the seed nodes (cluster); a single server
    keeps its URL for redis-py to read."""

    mode: Mode
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """The target without secrets, for logs and errors."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        tls = " over TLS" if self.tls else ""
        if self.mode == "sentinel":
            return f"Sentinel service {self.service!r} db {self.db} via {hosts}{tls}"
        if self.mode == "cluster":
            return f"Cluster seeded by {hosts}{tls}"
        parts = urlsplit(self.url)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl()


def _fail(url: str, problem: str, example: str) -> RedisUrlError:
    userinfo = url.partition("://")[2].rpartition("@")[0]
    shown = url.replace(userinfo + "@", "***@", 1) if userinfo else url
    return RedisUrlError(f"FLAGSVC_REDIS_URL {shown!r}: {problem}; expected e.g. {example}")


def _host_port(url: str, item: str, default_port: int, example: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, bracket, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if bracket and not rest else None)
    else:
        host, _, port_text = item.partition(":") if item.count(":") <= 1 else (item, "", "")
    if not host or port_text is None:
        raise _fail(url, f"{item!r} is not host[:port]", example)
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(url, f"{item!r} has no valid port", example)
    return host, int(port_text)


def parse_redis_url(url: str) -> RedisTarget:
    """Read FLAGSVC_REDIS_URL; RedisUrlError when it is not one of the forms in this module's docstring."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise _fail(url, f"unknown scheme {scheme!r} (known: {', '.join(_SCHEMES)})" if sep else "no scheme",
                    "redis://host:6379/0, redis+sentinel://host1:26379,host2:26379/mymaster or "
                    "redis+cluster://host1:6379,host2:6379")
    mode, tls = _SCHEMES[scheme.lower()]
    if mode == "single":
        netloc = urlsplit(url).netloc.rpartition("@")[2]
        if "," in netloc:
            raise _fail(url, "several hosts need redis+sentinel:// or redis+cluster://",
                        "redis+cluster://host1:6379,host2:6379")
        if scheme != "unix" and not netloc:
            raise _fail(url, "no host", "redis://host:6379/0")
        return RedisTarget("single", url, tls=tls)
    example = ("redis+sentinel://:password@host1:26379,host2:26379/mymaster/0" if mode == "sentinel"
               else "redis+cluster://:password@host1:6379,host2:6379")
    location, _, query = rest.partition("?")
    netloc, _, path = location.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) if colon else None
        if password is None and username is not None:  # "secret@host": redis-py reads that as a password too
            username, password = None, username
    if not hosts:
        raise _fail(url, "no host", example)
    nodes = tuple(_host_port(url, item, _DEFAULT_PORT[mode], example) for item in hosts.split(","))
    segments = [unquote(s) for s in path.split("/")] if path else []
    while segments and segments[-1] == "":
        segments.pop()
    service, db = "", 0
    if mode == "sentinel":
        if not segments or not segments[0]:
            raise _fail(url, "no service name (the name the sentinels monitor the primary by)", example)
        if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
            raise _fail(url, "after the service name only a database number may follow", example)
        service, db = segments[0], int(segments[1]) if len(segments) == 2 else 0
    elif segments not in ([], ["0"]):
        raise _fail(url, "a Cluster has database 0 only, and no service name", example)
    known = {**_OPTIONS, **(_SENTINEL_OPTIONS if mode == "sentinel" else {})}
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in known:
            raise _fail(url, f"unknown option {name!r} (known: {', '.join(sorted(known))})", example)
        try:
            options[name] = known[name](value)
        except ValueError as e:
            raise _fail(url, f"option {name}={value!r}: {e}", example) from None
    return RedisTarget(mode, url, nodes, service, db, username, password, tls, options)


def connect(target: RedisTarget, *, max_connections: int = 256, pool_timeout: float = 5.0,
            socket_timeout: float = 5.0, socket_connect_timeout: float = 2.0) -> redis.Redis | RedisCluster:
    """The client for `target`, decoding responses to str. Each pool blocks: past `max_connections` busy
    connections (per server) a command waits up to `pool_timeout` for one to free up instead of failing, so a
    burst degrades into latency rather than errors.

    redis-py would resend a command whose connection broke; a write sent twice is not what the caller asked for
    (a compare-and-set resent after it was applied reads as a conflict, and the caller would apply its change
    again), so a broken connection is an error here, and the writer retries with its idempotency key. Redirects
    (a Cluster's MOVED and ASK, a demoted Sentinel primary) are followed: the command did not run."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    timeouts.update({k: v for k, v in target.options.items() if k in timeouts})
    tls: dict[str, Any] = {"ssl": True, **{k: v for k, v in target.options.items() if k.startswith("ssl_")}} \
        if target.tls else {}
    common: dict[str, Any] = {**timeouts, **tls, "decode_responses": True, "username": target.username,
                              "password": target.password, "client_name": target.options.get("client_name")}
    if target.mode == "single":
        pool = redis.BlockingConnectionPool.from_url(
            target.url, decode_responses=True, max_connections=max_connections, timeout=pool_timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=30, **timeouts)
        return redis.Redis(connection_pool=pool)
    if target.mode == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        # Given a URL (of the first seed node; the others follow as startup nodes), RedisCluster builds each
        # node's pool from connection_pool_class: without one, it would not take a blocking pool.
        (host, port), *others = target.nodes
        first = f"{'rediss' if target.tls else 'redis'}://{f'[{host}]' if ':' in host else host}:{port}"
        return RedisCluster(
            url=first, startup_nodes=[ClusterNode(host, port) for host, port in others],
            retry=Retry(NoBackoff(), 0), connection_pool_class=redis.BlockingConnectionPool,
            max_connections=max_connections, timeout=pool_timeout, require_full_coverage=True, **common)
    from redis.sentinel import Sentinel

    sentinel_auth = {"username": target.options.get("sentinel_username"),
                     "password": target.options.get("sentinel_password")}
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs={**timeouts, **tls, **sentinel_auth,
                                                             "retry": Retry(NoBackoff(), 0)})
    return sentinel.master_for(
        target.service, connection_pool_class=_blocking_sentinel_pool(), max_connections=max_connections,
        timeout=pool_timeout, db=target.db, retry=Retry(NoBackoff(), 0), health_check_interval=30, **common)


def _blocking_sentinel_pool() -> type:
    """redis-py's SentinelConnectionPool (which finds the primary through the sentinels, and drops connections
    to a demoted one) on a BlockingConnectionPool (which waits for a free connection instead of failing)."""
    from redis import BlockingConnectionPool
    from redis.sentinel import SentinelConnectionPool

    class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
        pass

    return BlockingSentinelConnectionPool
