"""Server settings, read once from the environment into one frozen dataclass."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flagsvc.domain.destinations import AllowList, AllowListError
from flagsvc.store.connection import RedisUrlError, parse_redis_url
from flagsvc.store.keys import DEFAULT_NAMESPACE


class ConfigError(ValueError):
    pass


def parse_tokens(raw: str, kind: str) -> dict[str, str]:
    """`name=secret,other=secret2` or bare secrets (named `<kind>-1`, `<kind>-2`, ...) -> {name: secret}."""
    tokens: dict[str, str] = {}
    for number, item in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not item:
            continue
        name, sep, secret = item.partition("=")
        if not sep:
            name, secret = f"{kind}-{number}", item
        name, secret = name.strip(), secret.strip()
        if not name or len(secret) < 8:
            raise ConfigError(f"{kind} token {name or number!r}: a name and a secret of 8+ characters are needed")
        if name in tokens:
            raise ConfigError(f"{kind} token name {name!r} is given twice")
        tokens[name] = secret
    return tokens


def check_distinct_secrets(admin_tokens: Mapping[str, str], sdk_keys: Mapping[str, str],
                           read_tokens: Mapping[str, str] | None = None) -> None:
    """One secret, one principal: a secret given twice would authenticate as whichever matched last (an admin
    token that is also an SDK key would lose its admin rights). Names are the actors of the audit log, so a
    name is used once across the admin and read-only tokens too."""
    seen: dict[str, str] = {}
    for kind, tokens in (("admin token", admin_tokens), ("SDK key", sdk_keys), ("read token", read_tokens or {})):
        for name, secret in tokens.items():
            if secret in seen:
                raise ConfigError(f"{kind} {name!r} has the same secret as {seen[secret]}; secrets must differ")
            seen[secret] = f"{kind} {name!r}"
    for name in set(admin_tokens) & set(read_tokens or {}):
        raise ConfigError(f"{name!r} names both an admin token and a read token; names must differ")


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    data_dir: Path = Path(".flagsvc")
    admin_tokens: Mapping[str, str] = field(default_factory=dict)
    sdk_keys: Mapping[str, str] = field(default_factory=dict)
    # Read-only operators' tokens: every read of the admin API, no write (403).
    read_tokens: Mapping[str, str] = field(default_factory=dict)
    max_body_bytes: int = 1024 * 1024
    controller_interval: float = 2.0
    # Outcomes a second one SDK instance can have recorded: a batch claiming more for its window is refused.
    max_reporter_rate: float = 100_000.0
    # Outcome batches a second from one SDK key, per server process (bursts of twice that); 0: no limit.
    outcome_batches_per_second: float = 200.0
    # Replicas that must have a write before it is answered (Redis WAIT), and how long to wait for them.
    redis_min_replicas_ack: int = 0
    redis_ack_timeout: float = 1.0
    # The audit log keeps at most this many entries, none older than this many days.
    audit_max_entries: int = 100_000
    audit_max_days: float = 90.0
    # Where webhooks may send (hosts, *.domains, addresses, CIDR blocks); empty: nowhere.
    webhook_allow: AllowList = field(default_factory=AllowList)
    # Seconds one delivery attempt may take (connect, send, answer); attempts per event before giving up.
    webhook_timeout: float = 5.0
    webhook_max_attempts: int = 8
    # The console's session cookie without `Secure` over plain HTTP (browsers keep Secure cookies from https://
    # and from http://localhost or 127.0.0.1 only): for a console served over plain HTTP at another address.
    console_insecure_cookie: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            interval = float(env.get("FLAGSVC_CONTROLLER_INTERVAL", "2"))
            max_body = int(env.get("FLAGSVC_MAX_BODY_BYTES", str(1024 * 1024)))
            reporter_rate = float(env.get("FLAGSVC_MAX_REPORTER_RATE", "100000"))
            batch_rate = float(env.get("FLAGSVC_OUTCOME_BATCHES_PER_SECOND", "200"))
            min_acks = int(env.get("FLAGSVC_REDIS_MIN_REPLICAS_ACK", "0"))
            ack_timeout = float(env.get("FLAGSVC_REDIS_ACK_TIMEOUT", "1"))
            audit_entries = int(env.get("FLAGSVC_AUDIT_MAX_ENTRIES", "100000"))
            audit_days = float(env.get("FLAGSVC_AUDIT_MAX_DAYS", "90"))
            webhook_timeout = float(env.get("FLAGSVC_WEBHOOK_TIMEOUT", "5"))
            webhook_attempts = int(env.get("FLAGSVC_WEBHOOK_MAX_ATTEMPTS", "8"))
        except ValueError as e:
            raise ConfigError(f"bad number in the environment: {e}") from None
        if not math.isfinite(interval) or not 0.05 <= interval <= 3600:
            raise ConfigError(f"FLAGSVC_CONTROLLER_INTERVAL must be seconds from 0.05 to 3600, not {interval}")
        if max_body < 1024:
            raise ConfigError(f"FLAGSVC_MAX_BODY_BYTES must be at least 1024, not {max_body}")
        if not math.isfinite(reporter_rate) or not 1 <= reporter_rate <= 1e9:
            raise ConfigError(f"FLAGSVC_MAX_REPORTER_RATE must be outcomes a second from 1 to 1e9, not {reporter_rate}")
        if not math.isfinite(batch_rate) or not 0 <= batch_rate <= 1e6:
            raise ConfigError(f"FLAGSVC_OUTCOME_BATCHES_PER_SECOND must be from 0 (no limit) to 1e6, not {batch_rate}")
        if not 0 <= min_acks <= 100:
            raise ConfigError(f"FLAGSVC_REDIS_MIN_REPLICAS_ACK must be from 0 to 100 replicas, not {min_acks}")
        if not math.isfinite(ack_timeout) or not 0.01 <= ack_timeout <= 60:
            raise ConfigError(f"FLAGSVC_REDIS_ACK_TIMEOUT must be seconds from 0.01 to 60, not {ack_timeout}")
        if not 100 <= audit_entries <= 100_000_000:
            raise ConfigError(f"FLAGSVC_AUDIT_MAX_ENTRIES must be from 100 to 100000000, not {audit_entries}")
        if not math.isfinite(audit_days) or not 1 <= audit_days <= 36500:
            raise ConfigError(f"FLAGSVC_AUDIT_MAX_DAYS must be days from 1 to 36500, not {audit_days}")
        if not math.isfinite(webhook_timeout) or not 0.1 <= webhook_timeout <= 60:
            raise ConfigError(f"FLAGSVC_WEBHOOK_TIMEOUT must be seconds from 0.1 to 60, not {webhook_timeout}")
        if not 1 <= webhook_attempts <= 50:
            raise ConfigError(f"FLAGSVC_WEBHOOK_MAX_ATTEMPTS must be from 1 to 50, not {webhook_attempts}")
        try:
            webhook_allow = AllowList.parse(env.get("FLAGSVC_WEBHOOK_ALLOW", ""))
        except AllowListError as e:
            raise ConfigError(f"FLAGSVC_WEBHOOK_ALLOW: {e}") from None
        insecure_cookie = env.get("FLAGSVC_CONSOLE_INSECURE_COOKIE", "").strip().lower()
        if insecure_cookie not in ("", "0", "1", "false", "true", "no", "yes"):
            raise ConfigError(f"FLAGSVC_CONSOLE_INSECURE_COOKIE must be 1 or 0, not {insecure_cookie!r}")
        redis_url = env.get("FLAGSVC_REDIS_URL") or None
        if redis_url is not None:
            try:
                parse_redis_url(redis_url)
            except RedisUrlError as e:
                raise ConfigError(str(e)) from None
        elif min_acks:
            raise ConfigError("FLAGSVC_REDIS_MIN_REPLICAS_ACK needs FLAGSVC_REDIS_URL: the embedded Redis has no "
                              "replicas")
        namespace = env.get("FLAGSVC_REDIS_NAMESPACE", DEFAULT_NAMESPACE)
        if "{" in namespace or "}" in namespace:
            raise ConfigError(f"FLAGSVC_REDIS_NAMESPACE cannot contain braces (Redis Cluster hash tags): {namespace!r}")
        admin_tokens = parse_tokens(env.get("FLAGSVC_ADMIN_TOKENS", ""), "admin")
        sdk_keys = parse_tokens(env.get("FLAGSVC_SDK_KEYS", ""), "sdk")
        read_tokens = parse_tokens(env.get("FLAGSVC_READ_TOKENS", ""), "read")
        check_distinct_secrets(admin_tokens, sdk_keys, read_tokens)
        return cls(
            redis_url=redis_url,
            namespace=namespace,
            data_dir=Path(env.get("FLAGSVC_DATA_DIR", ".flagsvc")),
            admin_tokens=admin_tokens,
            sdk_keys=sdk_keys,
            read_tokens=read_tokens,
            max_body_bytes=max_body,
            controller_interval=interval,
            max_reporter_rate=reporter_rate,
            outcome_batches_per_second=batch_rate,
            redis_min_replicas_ack=min_acks,
            redis_ack_timeout=ack_timeout,
            audit_max_entries=audit_entries,
            audit_max_days=audit_days,
            webhook_allow=webhook_allow,
            webhook_timeout=webhook_timeout,
            webhook_max_attempts=webhook_attempts,
            console_insecure_cookie=insecure_cookie in ("1", "true", "yes"),
        )
