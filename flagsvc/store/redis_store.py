"""The Redis store: plain redis-py calls and eight Lua scripts (in ./lua/, each headed by its KEYS and ARGV).

Every flag change is one script run: compare the stored revision, write the flag, push the history entry, trim
the history — atomically, so a change is applied whole or not at all. Keys come from `keys.Keys` only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, cast

import redis
from flagsvc_client.protocol.limits import MAX_STRATA, STRATUM_OTHER
from redis.cluster import RedisCluster
from redis.commands.core import Script

from flagsvc.domain.errors import FlagExists, FlagNotFound, LeadershipLost, RevisionConflict
from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.domain.judge_record import JudgeRecord
from flagsvc.domain.outcomes import ArmTotals, totals_from_fields
from flagsvc.store.connection import connect, parse_redis_url
from flagsvc.store.keys import BATCH_MARKER_TTL, DEFAULT_NAMESPACE, OUTCOMES_TTL, Keys
from flagsvc.store.roles import (
    HISTORY_CAP,
    IDEMPOTENCY_TTL,
    MAX_NAMED_REPORTERS,
    AlreadyApplied,
    Clock,
    ConfigVersion,
    Idempotency,
    IngestResult,
    OutcomeEntry,
    ReporterTotals,
    new_epoch,
    reporter_totals_from_fields,
)

log = logging.getLogger("flagsvc.store")


def _lua(name: str) -> str:
    return resources.files("flagsvc.store").joinpath("lua", name).read_text()


def _raise_if_applied(result: object) -> None:
    """A write script answers {fingerprint, answer} when its idempotency key was used before."""
    if isinstance(result, list):
        raise AlreadyApplied(str(result[0]), str(result[1] or ""))


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class ReplicasDidNotAck(redis.RedisError):
    """A write reached its primary, but fewer replicas than FLAGSVC_REDIS_MIN_REPLICAS_ACK confirmed it in time:
    answered like an outage (503, the write may or may not stand), so a client retries with its idempotency key."""


class RedisStore:
    outage_errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def __init__(self, client: redis.Redis | RedisCluster, namespace: str = DEFAULT_NAMESPACE,
                 clock: Clock | None = None, *, min_replicas_ack: int = 0, ack_timeout: float = 1.0) -> None:
        """`client` must be created with decode_responses=True. The controller lease is timed by Redis's own clock,
        one clock for every replica; a test passes `clock` (seconds) to move time itself.

        With `min_replicas_ack`, every write is answered only once that many replicas of its primary have it
        (Redis WAIT, up to `ack_timeout` seconds), else ReplicasDidNotAck: the write is applied on the primary
        but a failover may yet lose it (docs/redis-ha.md)."""
        self.redis = client
        self._clock = clock
        self._min_acks = min_replicas_ack
        self._ack_timeout_ms = max(int(ack_timeout * 1000), 1)
        self.keys = Keys(namespace)
        self._create = client.register_script(_lua("create_flag.lua"))
        self._replace = client.register_script(_lua("replace_flag.lua"))
        self._delete = client.register_script(_lua("delete_flag.lua"))
        self._add_outcomes = client.register_script(_lua("add_outcomes.lua"))
        self._lease = client.register_script(_lua("lease.lua"))
        self._release_lease = client.register_script(_lua("release_lease.lua"))
        self._raise_fence = client.register_script(_lua("raise_fence.lua"))
        self._restart_epoch = client.register_script(_lua("restart_epoch.lua"))
        self._epoch: str | None = None

    @classmethod
    def from_url(cls, url: str, namespace: str = DEFAULT_NAMESPACE, max_connections: int = 256, *,
                 min_replicas_ack: int = 0, ack_timeout: float = 1.0) -> RedisStore:
        """On the Redis that FLAGSVC_REDIS_URL names: one server, a Sentinel-managed primary or a Cluster
        (`connection.parse_redis_url`). Pools block when busy and a broken connection is not retried
        (`connection.connect` says why)."""
        return cls(connect(parse_redis_url(url), max_connections=max_connections), namespace,
                   min_replicas_ack=min_replicas_ack, ack_timeout=ack_timeout)

    def _write(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a write script (its keys in one slot), acknowledged by replicas when the store asks for that."""
        if not self._min_acks:
            return script(keys=keys, args=args)
        return self._acked(keys[0], lambda pipe: script(keys=keys, args=args, client=pipe))[0]

    def _command(self, name: str, key: str, *args: Any) -> Any:
        """Run redis-py's write command `name` on one key, acknowledged by replicas when the store asks for that."""
        if not self._min_acks:
            return getattr(self.redis, name)(key, *args)
        return self._acked(key, lambda pipe: getattr(pipe, name)(key, *args))[0]

    def _acked(self, key: str, queue: Callable[[redis.client.Pipeline], object]) -> list[Any]:
        """The commands `queue` puts on a pipeline, then WAIT on the same connection (WAIT counts the writes of
        its own connection), on the primary serving `key`; their results once enough replicas have them."""
        client = self.redis
        if isinstance(client, RedisCluster):  # the node itself: a cluster client would send WAIT to any node
            client = client.get_redis_connection(client.get_node_from_key(key))
        try:
            with client.pipeline(transaction=False) as pipe:
                queue(pipe)
                pipe.execute_command("WAIT", self._min_acks, self._ack_timeout_ms)
                *results, acked = pipe.execute()
        except (redis.exceptions.MovedError, redis.ConnectionError):
            if isinstance(self.redis, RedisCluster):  # a failover moved the slot: learn where it went
                with contextlib.suppress(redis.RedisError):  # no node answers: the next command tries again
                    self.redis.nodes_manager.initialize()
            raise
        if int(acked) < self._min_acks:
            raise ReplicasDidNotAck(f"{acked} of {self._min_acks} replicas confirmed a write within "
                                    f"{self._ack_timeout_ms} ms: what it changed stands on the primary, but a "
                                    "failover may lose it")
        return results

    def get(self, key: str) -> Flag | None:
        doc = self.redis.hget(self.keys.flag(key), "doc")
        return Flag.from_dict(json.loads(doc)) if doc else None

    def list_flags(self) -> list[Flag]:
        names = sorted(cast(set[str], self.redis.smembers(self.keys.index)))
        if not names:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self.keys.flag(name), "doc")
            docs = pipe.execute()
        return [Flag.from_dict(json.loads(doc)) for doc in docs if doc]

    def create(self, flag: Flag, entry: HistoryEntry, *, idempotency: Idempotency | None = None) -> None:
        self._command("sadd", self.keys.index, flag.key)
        fingerprint, answer = (idempotency.fingerprint, idempotency.answer) if idempotency else ("", "")
        created = self._write(
            self._create,
            keys=[self.keys.flag(flag.key), self.keys.history(flag.key), self._idempotency_key(flag.key, idempotency)],
            args=[_dumps(flag.to_dict()), flag.revision, _dumps(entry.to_dict()), HISTORY_CAP, fingerprint, answer,
                  IDEMPOTENCY_TTL],
        )
        _raise_if_applied(created)
        if not created:
            raise FlagExists(flag.key)
        # Again: a delete running alongside may have removed the entry between the SADD and the script.
        self._command("sadd", self.keys.index, flag.key)

    def replace(self, flag: Flag, entry: HistoryEntry, *, expected_revision: int, fence: int | None = None,
                idempotency: Idempotency | None = None) -> None:
        fingerprint, answer = (idempotency.fingerprint, idempotency.answer) if idempotency else ("", "")
        result = self._write(
            self._replace,
            keys=[self.keys.flag(flag.key), self.keys.history(flag.key), self._idempotency_key(flag.key, idempotency)],
            args=[expected_revision, _dumps(flag.to_dict()), flag.revision, _dumps(entry.to_dict()), HISTORY_CAP,
                  "" if fence is None else fence, fingerprint, answer, IDEMPOTENCY_TTL],
        )
        _raise_if_applied(result)
        if result == -2:
            raise LeadershipLost(f"a newer controller leader fenced flag {flag.key!r}")
        if result == -1:
            raise FlagNotFound(flag.key)
        if result == 0:
            raise RevisionConflict(f"flag {flag.key!r} changed meanwhile")

    def delete(self, key: str, *, expected_revision: int | None = None,
               idempotency: Idempotency | None = None) -> bool:
        result = self._write(
            self._delete,
            keys=[self.keys.flag(key), self.keys.history(key), self.keys.outcomes(key),
                  self.keys.ingest_counters(key), self.keys.judgement(key), self.keys.reporters(key),
                  self._idempotency_key(key, idempotency)],
            args=["" if expected_revision is None else expected_revision,
                  idempotency.fingerprint if idempotency else "", IDEMPOTENCY_TTL],
        )
        _raise_if_applied(result)
        if result == -3:
            raise RevisionConflict(f"flag {key!r} is not at revision {expected_revision}")
        self._command("srem", self.keys.index, key)
        if self.redis.exists(self.keys.flag(key)):  # re-created alongside: its entry must stay (keys.py)
            self._command("sadd", self.keys.index, key)
        return bool(result)

    def idempotent_answer(self, key: str, idempotency_key: str) -> AlreadyApplied | None:
        record = self.keys.idempotency(key, idempotency_key)
        if not self._min_acks:
            found = self.redis.hmget(record, ["fingerprint", "answer"])
        else:
            # A replay answers what the first try did, so it must be as safe: the first try may have been
            # answered 503 because its replicas did not confirm. WAIT counts its own connection's writes, and a
            # replay writes nothing, so it renews the record's TTL (a no-op on a missing record, nothing to
            # wait for then): replication is in order, so replicas that have the renewal have the record.
            found = self._acked(record, lambda pipe: (pipe.hmget(record, ["fingerprint", "answer"]),
                                                      pipe.expire(record, IDEMPOTENCY_TTL)))[0]
        fingerprint, answer = cast(list[str | None], found)
        return None if fingerprint is None else AlreadyApplied(fingerprint, answer or "")

    def _idempotency_key(self, key: str, idempotency: Idempotency | None) -> str:
        # Without a key the script does not touch it; it is still named, in the flag's hash slot, for Cluster.
        return self.keys.idempotency(key, idempotency.key if idempotency else "-")

    def raise_fence(self, key: str, token: int) -> bool:
        return bool(self._write(self._raise_fence, keys=[self.keys.flag(key)], args=[token]))

    def acquire_lease(self, owner: str, ttl_seconds: float) -> int | None:
        now_ms = "" if self._clock is None else int(self._clock() * 1000)
        token = self._write(self._lease, keys=[self.keys.controller_lease, self.keys.controller_fence],
                            args=[owner, max(int(ttl_seconds * 1000), 1), now_ms])
        return int(token) or None

    def release_lease(self, owner: str) -> None:
        self._release_lease(keys=[self.keys.controller_lease], args=[owner])

    def save_judgement(self, key: str, record: JudgeRecord) -> None:
        self._command("set", self.keys.judgement(key), _dumps(record.to_dict()))

    def load_judgement(self, key: str) -> JudgeRecord | None:
        raw = self.redis.get(self.keys.judgement(key))
        if not raw:
            return None
        try:
            return JudgeRecord.from_dict(json.loads(raw))
        except ValueError as e:  # written by another version: the controller starts the judge afresh
            log.warning("flag %s: judge record not readable (%s); ignored", key, e)
            return None

    def history(self, key: str, limit: int = 100) -> list[HistoryEntry]:
        raw = self.redis.lrange(self.keys.history(key), 0, max(limit, 1) - 1)
        return [HistoryEntry.from_dict(json.loads(item)) for item in raw]

    def _ensure_epoch(self) -> str:
        # The epoch names this dataset; if Redis loses it (flushed, replaced), a new one is drawn and every SDK
        # learns that versions restarted.
        self.redis.set(self.keys.config_epoch, uuid.uuid4().hex[:12], nx=True)
        return cast(str, self.redis.get(self.keys.config_epoch))

    def restart_epoch(self, expected: str) -> ConfigVersion:
        self._write(self._restart_epoch, keys=[self.keys.config_epoch], args=[expected, uuid.uuid4().hex[:12]])
        return self.bump_config_version()

    def config_version(self) -> ConfigVersion:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.config_epoch)
            pipe.get(self.keys.config_version)
            epoch, version = pipe.execute()
        if epoch is None:
            epoch = self._ensure_epoch()
        return ConfigVersion(epoch, int(version or 0))

    def bump_config_version(self) -> ConfigVersion:
        epoch = cast(str | None, self.redis.get(self.keys.config_epoch)) or self._ensure_epoch()
        version = self._command("incr", self.keys.config_version)
        self.redis.publish(self.keys.changes_channel, f"{epoch}-{version}")
        return ConfigVersion(epoch, int(version))

    def add_outcomes(self, batch_id: str, entries: Mapping[str, OutcomeEntry]) -> dict[str, IngestResult]:
        """One script per flag (its keys share the flag's hash slot), all of them in one pipelined round trip (on a
        Cluster, one per node, sent to all nodes before any answer is read): with `appendfsync always` that is
        also one fsync for the batch instead of one per flag. With replica acknowledgements, one pipeline per
        node, each ending with its WAIT."""
        if self._min_acks:
            return self._add_outcomes_acked(batch_id, entries)
        results = self._add_outcomes_pipelined(batch_id, entries)
        unloaded = [key for key, result in results.items() if isinstance(result, redis.exceptions.NoScriptError)]
        if unloaded:  # a Cluster node (new, or promoted) that never saw the script; that entry did not run
            self.redis.script_load(self._add_outcomes.script)
            results.update(self._add_outcomes_pipelined(batch_id, {key: entries[key] for key in unloaded}))
        for result in results.values():
            if isinstance(result, Exception):
                raise result
        return cast(dict[str, IngestResult], results)

    def _outcome_call(self, batch_id: str, key: str, entry: OutcomeEntry) -> tuple[list[str], list[Any]]:
        revision, increments, reporter, (start, end) = entry
        return ([self.keys.flag(key), self.keys.batch_marker(key, batch_id), self.keys.outcomes(key),
                 self.keys.ingest_counters(key), self.keys.reporters(key)],
                [revision, BATCH_MARKER_TTL, OUTCOMES_TTL, json.dumps(increments), reporter, new_epoch(),
                 repr(float(start)), repr(float(end)), MAX_NAMED_REPORTERS, MAX_STRATA, STRATUM_OTHER])

    def _add_outcomes_pipelined(self, batch_id: str, entries: Mapping[str, OutcomeEntry]) -> dict[str, object]:
        pipe = self.redis.pipeline(transaction=False)
        for key, entry in entries.items():
            keys, args = self._outcome_call(batch_id, key, entry)
            # EVALSHA by name: redis-py's cluster pipeline refuses its evalsha() (it cannot load a script on
            # NOSCRIPT; add_outcomes does), yet routes the command by its keys like any other.
            pipe.execute_command("EVALSHA", self._add_outcomes.sha, len(keys), *keys, *args)
        return dict(zip(entries, pipe.execute(raise_on_error=False), strict=True))

    def _add_outcomes_acked(self, batch_id: str, entries: Mapping[str, OutcomeEntry]) -> dict[str, IngestResult]:
        by_node: dict[str, list[str]] = {}
        for key in entries:
            node = self.redis.get_node_from_key(self.keys.flag(key)).name \
                if isinstance(self.redis, RedisCluster) else ""
            by_node.setdefault(node, []).append(key)
        results: dict[str, IngestResult] = {}
        for keys in by_node.values():
            def queue(pipe: redis.client.Pipeline, keys: list[str] = keys) -> None:
                for key in keys:
                    script_keys, args = self._outcome_call(batch_id, key, entries[key])
                    self._add_outcomes(keys=script_keys, args=args, client=pipe)

            results.update(zip(keys, self._acked(self.keys.flag(keys[0]), queue), strict=True))
        return results

    def outcome_totals(self, key: str, revision: int) -> dict[str, ArmTotals]:
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.outcomes(key)))
        if fields.get("revision") != str(revision):
            fields = {}
        return totals_from_fields(fields)

    def reporter_totals(self, key: str, revision: int) -> dict[str, dict[str, ReporterTotals]]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.outcomes(key), "revision")
            pipe.hgetall(self.keys.reporters(key))
            kept, fields = pipe.execute()
        return reporter_totals_from_fields(fields if kept == str(revision) else {})

    def ingest_counts(self, key: str) -> dict[str, int]:
        counts = self.redis.hgetall(self.keys.ingest_counters(key))
        return {name: int(counts.get(name, 0)) for name in ("accepted", "duplicate", "stale")}

    def count_unknown(self, n: int) -> None:
        self.redis.incrby(self.keys.ingest_unknown, n)

    def listen_changes(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        if isinstance(self.redis, RedisCluster):
            # A PUBLISH reaches the subscribers of every node, replicas included (the cluster bus carries it),
            # so each process listens on a node of its own drawing: subscribers spread over the cluster, and a
            # retry after a node failed most likely draws a live one.
            node = random.choice(self.redis.get_nodes())
            pubsub = self.redis.pubsub(node=node, ignore_subscribe_messages=True)
        else:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.keys.changes_channel)
            on_change()  # anything announced while we were not subscribed
            while not stop.is_set():
                if pubsub.get_message(timeout=1.0) is not None:
                    on_change()
        finally:
            pubsub.close()

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def dataset_notice(self) -> str | None:
        return cast(str | None, self.redis.get(self.keys.dataset_notice))

    def keep_dataset_notice(self, notice: str | None, *, only_if_absent: bool = False) -> bool:
        if notice is None:
            return bool(self.redis.delete(self.keys.dataset_notice))
        return bool(self.redis.set(self.keys.dataset_notice, notice, nx=only_if_absent))
