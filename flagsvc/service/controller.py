"""The rollout controller: every `interval`, the leader judges each rolling flag and applies the verdict.

Several server processes or replicas may run a controller; a Redis lease elects one leader, and its fencing token
goes with every write it makes, so a leader that lost the lease (paused, partitioned) has its writes refused. A
verdict is applied as a compare-and-set on the revision it was made for: an operator's change in between wins.
The judge is pure (domain.judge); the controller only moves data between it and the store, and announces what
it applied through the same `ChangeAnnouncer` as operators.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from flagsvc import metrics
from flagsvc.domain import flag as flags
from flagsvc.domain.analysis import AnalysisSettings
from flagsvc.domain.errors import FlagNotFound, IllegalTransition, InvalidFlag, LeadershipLost, RevisionConflict
from flagsvc.domain.flag import Action, Flag, State
from flagsvc.domain.judge import CanaryJudge
from flagsvc.domain.judge_record import JudgeRecord, VerdictDoc
from flagsvc.domain.judge_state import JudgeState
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.service import stage_deadline
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.audit import AuditLog
from flagsvc.service.judging import JudgeVerdict
from flagsvc.service.reporter_check import ReporterCheck
from flagsvc.service.timeline import TimelineRecorder
from flagsvc.service.webhooks import WebhookNotifier
from flagsvc.store.roles import RolloutStore

log = logging.getLogger("flagsvc.controller")
ACTOR = "controller"
# Operator steps after which a rollout goes on as the same rollout: the judge's rollout-wide test carries over.
SAME_ROLLOUT = frozenset({Action.PAUSE, Action.RESUME, Action.PROMOTE})
MAX_CARRY_REVISIONS = 20
# Verdicts that change no flag: the judge's record is kept and the rollout stays where it is. "blind" is a hold
# that will not end by waiting (an arm's outcomes are missing); it is counted apart and shown as a gauge.
HOLDS = frozenset({"hold", "blind"})


class JudgeStateLike(Protocol):
    """What the controller needs of a judge's state: a JSON form, and what a later revision of the same rollout
    carries on with (None: start afresh)."""

    def to_dict(self) -> dict[str, Any]: ...

    def carry_to(self, stage_index: int) -> JudgeStateLike | None: ...

    def next_stage(self) -> JudgeStateLike | None: ...


S = TypeVar("S", bound=JudgeStateLike)


class Judge(Protocol[S]):
    def judge(self, state: S | None, stable: ArmTotals, canary: ArmTotals, *, percent: float, stage_index: int,
              stage_count: int, seconds_at_stage: float, bake_seconds: float) -> JudgeVerdict[S]: ...


@dataclass(frozen=True)
class RolloutDecision:
    """What the controller concluded for one flag at one look, and whether it was applied."""

    key: str
    revision: int
    decision: str
    reason: str
    applied: bool


def _settings(flag: Flag) -> AnalysisSettings:
    try:
        return AnalysisSettings.from_dict(flag.analysis)
    except InvalidFlag:  # stored by another version: its judge says so; the controller's own policies stay off
        return AnalysisSettings()


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class RolloutController(Generic[S]):
    def __init__(
        self, store: RolloutStore, judge_for: Callable[[Flag], Judge[S]],
        load_state: Callable[[Mapping[str, Any]], S], announcer: ChangeAnnouncer, *,
        clock: Callable[[], float] = time.time, interval: float = 2.0, owner: str | None = None,
        on_decision: Callable[[RolloutDecision], None] | None = None,
        on_leadership: Callable[[bool], None] | None = None, timeline: TimelineRecorder | None = None,
        audit: AuditLog | None = None, notifier: WebhookNotifier | None = None,
    ) -> None:
        """`timeline` keeps each look's figures and statistics (service.timeline), `audit` each applied move
        (service.audit), `notifier` enqueues each look's webhook events (service.webhooks); the failures of each
        are their own."""
        self.audit = audit
        self.notifier = notifier
        self.store = store
        self.judge_for = judge_for
        self.load_state = load_state
        self.announcer = announcer
        self.clock = clock
        self.interval = interval
        self.lease_seconds = max(3 * interval, 1.0)
        self._given_owner = owner
        self._owner = owner or default_owner()
        self._owner_pid = os.getpid()
        self.on_decision = on_decision or (lambda decision: None)
        self.on_leadership = on_leadership or (lambda leads: None)
        self.token: int | None = None
        self.reporters: ReporterCheck[S] = ReporterCheck()
        self.timeline = timeline

    @property
    def owner(self) -> str:
        """This controller's identity in the lease. Built per process: a gunicorn worker forked from the master
        must not share the master's identity with its siblings, or they would all 'hold' one lease."""
        if self._given_owner is None and self._owner_pid != os.getpid():
            self._owner, self._owner_pid, self.token = default_owner(), os.getpid(), None
        return self._owner

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    def tick(self) -> list[RolloutDecision]:
        """One look at every rolling flag, if this controller leads; returns the verdicts reached."""
        token = self.store.acquire_lease(self.owner, self.lease_seconds)
        if token != self.token:
            log.info("controller %s %s", self.owner, f"leads (token {token})" if token else "is not the leader")
            self.on_leadership(token is not None)
        self.token = token
        if token is None:
            return []
        decisions: list[RolloutDecision] = []
        flags_now = self.store.list_flags()
        # A paused flag's shadows are kept: a resume carries them on, as it carries the judge's own state.
        self.reporters.forget_except({flag.key for flag in flags_now if flag.state in (State.ROLLING, State.PAUSED)})
        for flag in flags_now:
            if flag.state != State.ROLLING:
                continue
            try:
                decisions.append(self._judge_flag(flag, token))
            except LeadershipLost:
                log.warning("controller %s was fenced out: a newer leader acts now", self.owner)
                self.token = None
                break
        return decisions

    def _judge_flag(self, flag: Flag, token: int) -> RolloutDecision:
        if not self.store.raise_fence(flag.key, token):
            raise LeadershipLost("fenced")
        state, starts, carried = self._kept_state_and_start(flag)
        if starts:
            self.reporters.revision_starts(flag.key, flag.created_at, flag.revision, state,
                                           _carry_to(flag.stage_index) if carried else None)
        totals = self.store.outcome_totals(flag.key, flag.revision)
        now = self.clock()
        judge, seconds = self.judge_for(flag), max(now - flag.stage_started_at, 0.0)

        def rejudge(state: S | None, stable: ArmTotals, canary: ArmTotals) -> JudgeVerdict[S]:
            return judge.judge(state, stable, canary, percent=flag.percent, stage_index=flag.stage_index,
                               stage_count=len(flag.stages), seconds_at_stage=seconds,
                               bake_seconds=float(flag.bake_seconds))

        verdict: JudgeVerdict[S] = rejudge(state, totals["stable"], totals["canary"])
        # No single reporter decides (reporter_check), then the policy for stages that do not decide
        # (stage_deadline): each may only turn the judge's verdict into a hold, or a long hold into an advance.
        verdict = self.reporters.check(flag.key, flag.created_at, flag.revision, verdict, totals["stable"],
                                       totals["canary"], self.store.reporter_totals(flag.key, flag.revision),
                                       rejudge)
        verdict = stage_deadline.revise(verdict, _settings(flag), percent=flag.percent, seconds_at_stage=seconds,
                                        bake_seconds=float(flag.bake_seconds))
        record: VerdictDoc = {"decision": verdict.decision, "reason": verdict.reason,
                              "evidence": dict(verdict.evidence), "at": now, "revision": flag.revision}
        after: Flag | None = None
        if verdict.decision in HOLDS:
            self.store.save_judgement(flag.key, JudgeRecord(flag.revision, flag.created_at, record,
                                                            verdict.state.to_dict()))
        else:
            after = self._move(flag, verdict, token, now, record)
        applied = verdict.decision in HOLDS or after is not None
        if self.notifier is not None:  # never raises: an event not enqueued is logged
            self.notifier.look(flag, verdict.decision, verdict.reason, verdict.evidence, after,
                               held_seconds=seconds, at=now)
        decision = RolloutDecision(flag.key, flag.revision, verdict.decision, verdict.reason, applied)
        if self.timeline is not None:
            self.timeline.record(flag, decision=verdict.decision, applied=applied, totals=totals,
                                 evidence=verdict.evidence, at=now)
        self.on_decision(decision)
        return decision

    def _kept_state(self, flag: Flag) -> S | None:
        return self._kept_state_and_start(flag)[0]

    def _kept_state_and_start(self, flag: Flag) -> tuple[S | None, bool, bool]:
        """The state to judge the flag's revision with; whether it is the one the revision starts with (no look
        at this revision counted yet): what the shadow judges of reporter_check start from; and whether it was
        carried here from an earlier revision of the same rollout (then the shadows are carried on too)."""
        kept = self.store.load_judgement(flag.key)
        starts = kept is None or kept.revision != flag.revision or kept.created_at != flag.created_at or (
            kept.verdict is not None and kept.verdict.get("revision") != flag.revision)
        state = self._usable_state(flag, kept)
        return state, starts, starts and state is not None

    def _usable_state(self, flag: Flag, kept: JudgeRecord | None) -> S | None:
        if kept is None or not kept.state:
            return None
        if kept.created_at != flag.created_at:  # left by a deleted flag of the same key
            return None
        if kept.revision != flag.revision and not self._same_rollout_since(flag, kept.revision):
            return None
        try:
            state = self.load_state(kept.state)
        except ValueError as e:  # written by another version: start this stage's test afresh
            log.warning("flag %s: judge state not usable (%s); starting afresh", flag.key, e)
            return None
        if kept.revision != flag.revision:
            log.info("flag %s: revision %s continues the rollout judged at revision %s", flag.key, flag.revision,
                     kept.revision)
            return state.carry_to(flag.stage_index)  # type: ignore[return-value]  # a state carries its own type
        return state

    def _same_rollout_since(self, flag: Flag, revision: int) -> bool:
        """Were all changes after `revision` operator pauses, resumes and promotions (e.g. paused to look at a
        dashboard, then resumed)? Then the rollout goes on, and so does its rollout-wide test. Anything else (a
        rollback and a new start, an edit of the analysis settings, a manual percent) starts afresh."""
        gap = flag.revision - revision
        if not 0 < gap <= MAX_CARRY_REVISIONS:
            return False
        # Read with room to spare: operators may have changed the flag again since it was listed. What counts is
        # exactly the entries of revisions revision+1 .. flag.revision, every one of them present.
        entries = self.store.history(flag.key, limit=gap + MAX_CARRY_REVISIONS)
        since = [entry for entry in entries if revision < entry.revision <= flag.revision]
        return ([entry.revision for entry in since] == list(range(flag.revision, revision, -1))
                and all(entry.action in SAME_ROLLOUT for entry in since))

    def _apply(self, flag: Flag, verdict: JudgeVerdict[S], token: int, now: float, record: VerdictDoc) -> bool:
        return self._move(flag, verdict, token, now, record) is not None

    def _move(self, flag: Flag, verdict: JudgeVerdict[S], token: int, now: float,
              record: VerdictDoc) -> Flag | None:
        """Apply the verdict's move: the flag after it, or None when it was not applied."""
        move = flags.advance if verdict.decision == "advance" else flags.rollback
        try:
            after, entry = move(flag, now=now, actor=ACTOR, reason=verdict.reason, evidence=dict(verdict.evidence))
            self.store.replace(after, entry, expected_revision=flag.revision, fence=token)
        except (RevisionConflict, FlagNotFound, IllegalTransition) as e:
            # Someone acted on this revision first (an operator's pause, a delete): their change stands.
            log.info("flag %s: %s at revision %s not applied: %s", flag.key, verdict.decision, flag.revision, e)
            return None
        # A judge that tests across stages hands over what the next stage's revision carries on with.
        carried = verdict.state.next_stage() if verdict.decision == "advance" else None
        self.reporters.revision_starts(flag.key, after.created_at, after.revision, carried,  # type: ignore[arg-type]
                                       _next_stage if carried is not None else None)
        self.store.save_judgement(flag.key, JudgeRecord(after.revision, after.created_at, record,
                                                        carried.to_dict() if carried is not None else None))
        self.announcer.announce()
        if self.audit is not None:
            self.audit.flag_change(flag.key, entry)
        log.info("flag %s: %s to %s%% (%s): %s", flag.key, entry.action.value, after.percent, after.state.value,
                 verdict.reason, extra={"flag": flag.key, "action": entry.action.value, "actor": ACTOR,
                                        "state": after.state.value, "percent": after.percent,
                                        "revision": after.revision, "reason": verdict.reason})
        return after

    def run(self, stop: threading.Event) -> None:
        """Tick every `interval` until `stop`; a failing tick (Redis down) is logged and retried."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("controller tick failed; retrying")
            stop.wait(max(self.interval - (time.monotonic() - started), 0.05))
        self.release()

    def release(self) -> None:
        """Give up leadership at once, so another replica takes over without waiting for the lease to expire."""
        if self.token is not None:
            try:
                self.store.release_lease(self.owner)
            except Exception as e:
                log.warning("could not release the controller lease: %s", e)
            self.token = None
            self.on_leadership(False)


def _next_stage(state: S) -> S | None:
    return state.next_stage()  # type: ignore[return-value]  # a state carries its own type


def _carry_to(stage_index: int) -> Callable[[S], S | None]:
    def carry(state: S) -> S | None:
        return state.carry_to(stage_index)  # type: ignore[return-value]  # a state carries its own type
    return carry


def build_controller(store: RolloutStore, announcer: ChangeAnnouncer, *, clock: Callable[[], float] = time.time,
                     interval: float = 2.0, owner: str | None = None,
                     timeline: TimelineRecorder | None = None, audit: AuditLog | None = None,
                     notifier: WebhookNotifier | None = None) -> RolloutController[JudgeState]:
    """The controller with the canary judge each flag's analysis settings call for, counted in the metrics."""

    def judge_for(flag: Flag) -> Judge[JudgeState]:
        return CanaryJudge(AnalysisSettings.from_dict(flag.analysis))

    def count(decision: RolloutDecision) -> None:
        metrics.DECISIONS.labels(decision.decision, str(decision.applied).lower()).inc()

    return RolloutController(store, judge_for, JudgeState.from_dict, announcer, clock=clock, interval=interval,
                             owner=owner, on_decision=count,
                             on_leadership=lambda leads: metrics.LEADER.set(1 if leads else 0), timeline=timeline,
                             audit=audit, notifier=notifier)
