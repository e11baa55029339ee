"""A Redis failover under flagsvc's whole load, counted: what the failover tests and `bench/failover.py` run.

While one primary fails (SIGKILL, or SIGSTOP past the failover timeout) and comes back (restarted, or SIGCONT)
after `down_for` seconds, these run at once against one Sentinel setup or Cluster:

- an **operator** sets one flag's percent as fast as it can (~50/s), each write with an actor of its own, through
  `FlagCommands` (so every change is announced); an acknowledged write whose actor is missing from the flag's
  history afterwards was **lost**;
- two **controllers** (the real `RolloutController`, a judge that always wants to move, leadership by the real
  lease) roll three flags forward and back; an applied decision on a (flag, revision) already decided is a
  **double decision**, one applied with a fencing token lower than a token already applied on that flag a
  **stale decision**;
- an **outcome sender** sends numbered batches for one flag (one outcome each), retrying a batch with the same
  id until it gets an answer, as an SDK does; an answered batch whose marker is missing afterwards was **lost**,
  an outcome counted beyond one per present marker **double counted**;
- **SDKs**: `sdks` FlagClients streaming from a real `flagsvc serve` on the same Redis, evaluated in a loop; an
  evaluation answering `error`, `not_ready` or `flag_not_found` is an **SDK error** (they answer from their
  snapshot throughout); after the load, every SDK must come to the operator's last change (**no change missed**).

On a Cluster every flag involved is on the failed primary's shard (flag names are drawn until they hash there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from flagsvc_client import FlagClient

from flagsvc.domain.errors import FlagNotFound, IllegalTransition, RevisionConflict
from flagsvc.domain.flag import State
from flagsvc.domain.outcomes import counter_fields
from flagsvc.embedded import EmbeddedRedis
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.commands import FlagCommands
from flagsvc.service.controller import RolloutController
from flagsvc.store.redis_store import RedisStore
from flagsvc.store.roles import HISTORY_CAP, OutcomeEntry
from tests.support.redis_ha import ClusterSetup, SentinelSetup
from tests.support.servers import Server

SDK_ERRORS = ("error", "not_ready", "flag_not_found")
OPERATOR_NS, ROLLOUT_NS = "fo:", "fd:"  # the served namespace (its own controller leads there), and the race's
SDK_KEY = "sdk-key-12345"


@dataclass
class Figures:
    """What one failover did to each kind of load."""

    setup: str
    fault: str
    acks: int
    writes_back_s: float | None = None  # from the fault to the first write answered after the outage
    old_primary_role: str = ""  # the failed primary's role once it is back
    writes_acked: int = 0
    writes_lost: list[str] = field(default_factory=list)
    decisions: int = 0
    double_decisions: list[tuple[str, int]] = field(default_factory=list)
    stale_decisions: list[tuple[str, int, int]] = field(default_factory=list)  # (flag, revision, token)
    batches_sent: int = 0
    batches_acked: int = 0
    batches_deduped: int = 0  # retries answered "duplicate": the first try had counted
    batches_lost: list[str] = field(default_factory=list)
    outcomes_double_counted: int = 0
    sdks: int = 0
    sdk_evaluations: int = 0
    sdk_errors: int = 0
    sdks_behind: int = 0  # SDKs that never showed the operator's last change

    def line(self) -> str:
        back = "never" if self.writes_back_s is None else f"{self.writes_back_s:.1f} s"
        return (f"{self.setup} {self.fault} MIN_REPLICAS_ACK={self.acks}: writes back {back}; old primary back as "
                f"{self.old_primary_role or '?'}; operator writes {self.writes_acked} acked, "
                f"{len(self.writes_lost)} lost; decisions {self.decisions}, {len(self.double_decisions)} double, "
                f"{len(self.stale_decisions)} stale; batches {self.batches_sent} sent, {self.batches_acked} acked "
                f"({self.batches_deduped} retries deduped), {len(self.batches_lost)} lost "
                f"{self.batches_lost[:3]}, {self.outcomes_double_counted} outcomes double counted; "
                f"{self.sdks} SDKs: {self.sdk_evaluations} evaluations, {self.sdk_errors} errors, "
                f"{self.sdks_behind} behind at the end")


class _AlwaysMoves:
    """A judge that wants to advance (mostly) or roll back at every look: decisions as often as the loop ticks."""

    def __init__(self) -> None:
        self.n = 0

    def judge(self, state: Any, stable: Any, canary: Any, **context: Any) -> Any:
        self.n += 1
        decision = "rollback" if self.n % 5 == 0 else "advance"
        return type("Verdict", (), {"decision": decision, "reason": f"failover {decision}", "evidence": {},
                                    "state": _Held()})()


class _Held:
    def to_dict(self) -> dict[str, bool]:
        return {"held": True}

    def carry_to(self, stage_index: int) -> None:
        return None

    def next_stage(self) -> None:
        return None


def _node_of(store: RedisStore, key: str) -> int | None:
    """The port of the primary serving `key`'s flag on a Cluster (None on Sentinel)."""
    if not isinstance(store.redis, redis.RedisCluster):
        return None
    return int(store.redis.get_node_from_key(store.keys.flag(key)).port)


def _names_on(store: RedisStore, port: int | None, prefix: str, n: int) -> list[str]:
    names = (f"{prefix}{i}" for i in range(10_000))
    return [name for name in names if _node_of(store, name) == port][:n]


def _port(server: EmbeddedRedis) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


class _Load:
    def __init__(self, url: str, acks: int, target: int | None) -> None:
        self.stop = threading.Event()
        self.url, self.acks = url, acks
        self.ops = RedisStore.from_url(url, OPERATOR_NS, min_replicas_ack=acks, ack_timeout=0.5)
        self.rollouts = RedisStore.from_url(url, ROLLOUT_NS, min_replicas_ack=acks, ack_timeout=0.5)
        self.flag = _names_on(self.ops, target, "checkout", 1)[0]
        self.race = _names_on(self.rollouts, target, "race", 3)
        self.metered = _names_on(self.rollouts, target, "metered", 1)[0]
        self.commands = FlagCommands(self.ops, ChangeAnnouncer(self.ops))
        self.rollout_commands = FlagCommands(self.rollouts, ChangeAnnouncer(self.rollouts))
        self.commands.create(self.flag, {}, actor="ops")
        for key in self.race:
            self.rollout_commands.create(key, {"stages": [1, 2, 5, 10, 25, 50, 100]}, actor="ops")
            self.rollout_commands.start(key, actor="ops")
        self.rollout_commands.create(self.metered, {}, actor="ops")
        self.acked: list[str] = []
        self.successes: list[float] = []
        self.decisions: list[tuple[float, str, int, int]] = []  # (when, flag, revision, token)
        self.batches_sent = 0
        self.batches_acked: list[str] = []
        self.batches_deduped = 0
        self.threads: list[threading.Thread] = []

    def operator(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self.commands.set_percent(self.flag, n % 100, actor=f"w{n}")
            except (redis.RedisError, RevisionConflict):
                time.sleep(0.02)
                continue
            self.acked.append(f"w{n}")
            self.successes.append(time.monotonic())
            time.sleep(0.02)

    def controllers(self) -> list[RolloutController[Any]]:
        made = []
        for i in range(2):
            own = RedisStore.from_url(self.url, ROLLOUT_NS, min_replicas_ack=self.acks, ack_timeout=0.5)
            ctl: RolloutController[Any] = RolloutController(
                own, lambda flag: _AlwaysMoves(), lambda data: _Held(), ChangeAnnouncer(own), interval=0.1,
                owner=f"controller-{i}")
            ctl.lease_seconds = 1.0
            ctl.on_decision = lambda d, ctl=ctl: d.applied and self.decisions.append(
                (time.monotonic(), d.key, d.revision, ctl.token or 0))
            made.append(ctl)
        return made

    def churn(self) -> None:
        """Restart finished rollouts, so the controllers always have something to decide."""
        while not self.stop.wait(0.1):
            for key in self.race:
                with contextlib.suppress(redis.RedisError, IllegalTransition, RevisionConflict, FlagNotFound):
                    state = self.rollouts.get(key).state  # type: ignore[union-attr]
                    if state == State.COMPLETE:
                        self.rollout_commands.set_percent(key, 0, actor="ops")
                    if state in (State.COMPLETE, State.ROLLED_BACK):
                        self.rollout_commands.start(key, actor="ops")

    def outcomes(self) -> None:
        revision = self.rollouts.get(self.metered).revision  # type: ignore[union-attr]
        n = 0
        while not self.stop.is_set():
            n += 1
            self.batches_sent += 1
            entry = OutcomeEntry(revision, counter_fields({"canary": {"count": 1, "errors": 0}}), "sender-1",
                                 (1000.0 + n, 1001.0 + n))
            tries = 0
            while not self.stop.is_set():
                tries += 1
                try:
                    result = self.rollouts.add_outcomes(f"b{n}", {self.metered: entry})[self.metered]
                except redis.RedisError:
                    time.sleep(0.05)
                    continue
                assert result in ("accepted", "duplicate"), result
                self.batches_acked.append(f"b{n}")
                self.batches_deduped += result == "duplicate"
                break
            time.sleep(0.05)

    def start(self, stop_controllers: threading.Event) -> None:
        for ctl in self.controllers():
            self.threads.append(threading.Thread(target=ctl.run, args=(stop_controllers,), daemon=True))
        self.threads += [threading.Thread(target=f, daemon=True) for f in (self.operator, self.churn,
                                                                          self.outcomes)]
        for t in self.threads:
            t.start()


class _Fleet:
    """`n` streaming SDKs on one server, and a thread evaluating the operator's flag on each of them in turn."""

    def __init__(self, url: str, n: int, flag: str) -> None:
        self.flag = flag
        self.clients = [FlagClient(url, sdk_key=SDK_KEY, flush_interval=3600, exit_flush_timeout=0,
                                   backoff_initial=0.2, backoff_max=1.0) for _ in range(n)]
        self.evaluations = 0
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._evaluate, daemon=True)

    def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(c.wait_until_ready(max(deadline - time.monotonic(), 0.01)) for c in self.clients)

    def _evaluate(self) -> None:
        user = 0
        while not self.stop.is_set():
            for client in self.clients:
                user += 1
                reason = client.evaluate(self.flag, f"user-{user}").reason
                self.evaluations += 1
                if reason in SDK_ERRORS:
                    self.errors[reason] = self.errors.get(reason, 0) + 1
            time.sleep(0.01)

    def revisions(self) -> list[int | None]:
        return [c.evaluate(self.flag, "probe").revision for c in self.clients]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for client in self.clients:
            client.close(timeout=0.1)


def _writes_back(successes: list[float], fault_at: float) -> float | None:
    """Seconds from the fault to the first write answered after the outage (a write answered within 0.3 s of
    the one before it, or of the fault, was still in flight at the fault)."""
    back = [t for t in successes if t > fault_at]
    for earlier, later in zip([fault_at, *back], back, strict=False):
        if later - earlier > 0.3:
            return later - fault_at
    return None


def run_failover(setup: SentinelSetup | ClusterSetup, fault: str, *, acks: int, sdks: int, work_dir: Path,
                 down_for: float = 6.0, settle: float = 1.5) -> Figures:
    """Start the load, fail the primary (`fault`: "kill" or "pause") for `down_for` seconds, bring it back
    (restart, or SIGCONT), keep the load on until writes are back and the old primary is a replica, then count."""
    kind = "sentinel" if isinstance(setup, SentinelSetup) else "cluster"
    figures = Figures(kind, fault, acks, sdks=sdks)
    probe = RedisStore.from_url(setup.url, OPERATOR_NS)
    target_port = _node_of(probe, "checkout")
    if isinstance(setup, SentinelSetup):
        primary = next(s for s in [setup.primary, *setup.replicas]
                       if redis.Redis(port=_port(s)).info("replication")["role"] == "master")
    else:
        primary = next(n for n in setup.nodes if _port(n) == target_port)
    load = _Load(setup.url, acks, target_port)
    env = {"FLAGSVC_REDIS_URL": setup.url, "FLAGSVC_REDIS_NAMESPACE": OPERATOR_NS,
           "FLAGSVC_REDIS_MIN_REPLICAS_ACK": str(acks), "FLAGSVC_ADMIN_TOKENS": "ops=admin-token-123",
           "FLAGSVC_SDK_KEYS": f"web={SDK_KEY}"}
    server = Server(work_dir / "serve", "--threads", "32", env=env)
    fleet = _Fleet(server.url, sdks, load.flag)
    stop_controllers = threading.Event()
    try:
        assert fleet.ready(30), "the SDKs did not get their first snapshot"
        fleet.thread.start()
        load.start(stop_controllers)
        time.sleep(settle)
        assert load.successes and load.decisions and load.batches_acked, "the load did not start"
        fault_at = time.monotonic()
        os.kill(primary.pid or 0, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        time.sleep(down_for)
        if fault == "kill":
            primary.port = _port(primary)  # where the sentinels knew it: they make it a replica there
            primary.start()
        else:
            os.kill(primary.pid or 0, signal.SIGCONT)
        old = redis.Redis(port=_port(primary), socket_timeout=2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                figures.old_primary_role = old.info("replication")["role"]
            figures.writes_back_s = _writes_back(load.successes, fault_at)
            if figures.writes_back_s is not None and figures.old_primary_role == "slave":
                break
            time.sleep(0.1)
        old.close()
        time.sleep(settle)  # load on the healed setup, then stop
    finally:
        load.stop.set()
        stop_controllers.set()
        for t in load.threads:
            t.join(10)
    try:
        truth = RedisStore.from_url(setup.url, OPERATOR_NS)
        history = truth.history(load.flag, limit=HISTORY_CAP)
        assert len(history) < HISTORY_CAP, "the history was trimmed: losses could not be told from trimming"
        kept = {entry.actor for entry in history}
        figures.writes_acked = len(load.acked)
        figures.writes_lost = [actor for actor in load.acked if actor not in kept]
        final = truth.get(load.flag)
        assert final is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(r != final.revision for r in fleet.revisions()):
            time.sleep(0.1)
        figures.sdks_behind = sum(r != final.revision for r in fleet.revisions())
        fleet.close()
        figures.sdk_evaluations = fleet.evaluations
        figures.sdk_errors = sum(fleet.errors.values())
        _count_decisions(figures, load.decisions)
        _count_batches(figures, load, RedisStore.from_url(setup.url, ROLLOUT_NS))
    finally:
        server.stop()
    return figures


def _count_decisions(figures: Figures, decisions: list[tuple[float, str, int, int]]) -> None:
    figures.decisions = len(decisions)
    seen: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    for _, key, revision, token in sorted(decisions):
        if (key, revision) in seen:
            figures.double_decisions.append((key, revision))
        seen.add((key, revision))
        if token < highest.get(key, 0):
            figures.stale_decisions.append((key, revision, token))
        highest[key] = max(highest.get(key, 0), token)


def _count_batches(figures: Figures, load: _Load, truth: RedisStore) -> None:
    figures.batches_sent, figures.batches_deduped = load.batches_sent, load.batches_deduped
    figures.batches_acked = len(load.batches_acked)
    sent = [f"b{n}" for n in range(1, load.batches_sent + 1)]
    with truth.redis.pipeline(transaction=False) as pipe:
        for batch in sent:
            pipe.exists(truth.keys.batch_marker(load.metered, batch))
        present = {batch for batch, found in zip(sent, pipe.execute(), strict=True) if found}
    figures.batches_lost = [batch for batch in load.batches_acked if batch not in present]
    counted = truth.outcome_totals(load.metered, truth.get(load.metered).revision)  # type: ignore[union-attr]
    total = sum(arm.count for arm in counted.values())
    figures.outcomes_double_counted = max(total - len(present), 0)
