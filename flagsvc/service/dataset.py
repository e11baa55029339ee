"""Noticing that the dataset was reset or emptied under a running server, and saying so until it is recovered.

Every few seconds (`DatasetWatcher.look`, run by the background work) the watcher reads the config version and
the flags, and compares them with what it saw last:

- the config epoch changed (Redis was flushed, replaced or restored without our keys: `RedisStore._ensure_epoch`
  drew a new one), and flags it knew are gone; or
- flags vanished within one epoch without as many announced changes (a delete through the API announces
  itself, a `DEL` behind our back does not). A delete between reading the flags and its announcement looks the
  same for a moment, so this case must be seen on two looks in a row.

Then it logs an ERROR naming every vanished flag with its last state and percent, counts the reset, and keeps a
*notice* in the store (`StoreHealth.keep_dataset_notice`, SET NX), so every worker and replica answers
`/readyz` with 503 until the notice is closed: when every vanished flag exists again (`flagctl import` of the
server's last export does it, see docs/recovery.md), or when an operator acknowledges the loss. An epoch change
that lost no flag is logged as a warning and opens nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from flagsvc import metrics
from flagsvc.domain.flag import Flag
from flagsvc.service.audit import AuditLog
from flagsvc.store.roles import ChangeBus, FlagRepository, StoreHealth

log = logging.getLogger("flagsvc.dataset")
RECOVERY = "flagctl import <data dir>/backups/flags-latest.json (docs/recovery.md)"


class VanishedFlagDoc(TypedDict):
    """A flag as it was last seen before it vanished."""

    key: str
    state: str
    percent: float
    revision: int


class DatasetNoticeDoc(TypedDict):
    """The dataset was reset or emptied: when it was noticed, how, and which flags vanished."""

    detected_at: float
    reason: str
    previous_epoch: str
    epoch: str
    vanished: list[VanishedFlagDoc]


@dataclass(frozen=True)
class _Seen:
    epoch: str
    version: int
    flags: Mapping[str, Flag]


def describe(notice: DatasetNoticeDoc, missing: list[str] | None = None) -> str:
    """One line for people: what happened, what is still missing, how to recover."""
    when = datetime.fromtimestamp(notice["detected_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    missing_keys = set(missing) if missing is not None else {v["key"] for v in notice["vanished"]}
    flags = ", ".join(f"{v['key']} ({v['state']} at {v['percent']:g}%)" for v in notice["vanished"]
                      if v["key"] in missing_keys)
    return (f"the flag dataset was reset ({notice['reason']}, noticed {when}); {len(missing_keys)} flag(s) "
            f"missing: {flags}. Restore: {RECOVERY}; or accept the loss: flagctl dataset --ack")


class DatasetWatcher:
    def __init__(self, flags: FlagRepository, versions: ChangeBus, health: StoreHealth,
                 clock: Callable[[], float] = time.time, interval: float = 2.0, audit: AuditLog | None = None) -> None:
        """`audit` records an operator's acknowledgement of a loss."""
        self._audit = audit
        self._flags = flags
        self._versions = versions
        self._health = health
        self._clock = clock
        self.interval = interval
        self._seen: _Seen | None = None
        self._suspect: frozenset[str] = frozenset()  # vanished without announcement, seen once
        # The open notice as this process last saw it, and the dataset then: the notice lives in the store, so
        # a second wipe would take it away too; seen gone under a new epoch, it is written again.
        self._remembered: tuple[DatasetNoticeDoc, str] | None = None
        self._lock = threading.Lock()

    # -- what /readyz and operators ask -----------------------------------------------------------------

    @property
    def seen_epoch(self) -> str | None:
        """The dataset (epoch) of the last look, None before the first: the on-disk export is written only for a
        dataset the watcher has looked at, so a wipe it has not noticed yet cannot replace the export to restore
        from."""
        return self._seen.epoch if self._seen is not None else None

    def may_export(self, epoch: str) -> bool:
        """Whether an export of dataset `epoch` may replace the on-disk one: the watcher has looked at that
        dataset and no reset notice is open. Asked under the look's lock, so a look that is noticing a wipe
        (its new epoch already seen, its notice not yet written) cannot answer yes in between."""
        with self._lock:
            return self.seen_epoch == epoch and self.notice() is None

    def notice(self) -> DatasetNoticeDoc | None:
        """The open notice (any process may have written it), or None."""
        raw = self._health.dataset_notice()
        if not raw:
            return None
        try:
            found: DatasetNoticeDoc = json.loads(raw)
            return found
        except ValueError:
            return {"detected_at": 0.0, "reason": "unreadable notice", "previous_epoch": "", "epoch": "",
                    "vanished": []}

    def missing(self, notice: DatasetNoticeDoc) -> list[str]:
        """The vanished flags that do not exist again yet."""
        present = {f.key for f in self._flags.list_flags()}
        return [v["key"] for v in notice["vanished"] if v["key"] not in present]

    def acknowledge(self, actor: str) -> DatasetNoticeDoc | None:
        """An operator accepts the loss: the notice is closed (readyz answers 200 again). The notice that was
        open, or None when there was none."""
        notice = self.notice()
        if notice is not None and self._health.keep_dataset_notice(None):
            missing = self.missing(notice)
            log.warning("dataset reset acknowledged by %s; flags left missing: %s", actor,
                        ", ".join(missing) or "none", extra={"actor": actor})
            if self._audit is not None:
                self._audit.record("acknowledge", kind="dataset", target=notice.get("epoch") or "dataset",
                                   actor=actor, reason=f"dataset reset acknowledged: {notice.get('reason', '')}",
                                   detail={"missing": missing, "previous_epoch": notice.get("previous_epoch")})
        metrics.DATASET_FLAGS_MISSING.set(0)
        return notice

    # -- the look -----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Look now and every `interval` until `stop`; a failed look (Redis down) is logged and retried."""
        while True:
            try:
                self.look()
            except Exception as e:
                log.warning("dataset check failed (%s); retrying in %ss", e, self.interval)
            if stop.wait(self.interval):
                return

    def look(self) -> DatasetNoticeDoc | None:
        """One comparison with the last look; the notice it opened, if any. Also closes an open notice once every
        vanished flag is back."""
        with self._lock:
            version = self._versions.config_version()  # draws a new epoch if the dataset lost it
            now = {f.key: f for f in self._flags.list_flags()}
            opened = self._compare(self._seen, _Seen(version.epoch, version.version, now))
            self._keep_open_across_wipes(version.epoch)
        self._close_if_restored(now)
        return opened

    def _keep_open_across_wipes(self, epoch: str) -> None:
        current = self.notice()
        if current is not None:
            self._remembered = (current, epoch)
            return
        if self._remembered is None:
            return
        remembered, then = self._remembered
        if then == epoch:  # closed in this dataset: restored or acknowledged
            self._remembered = None
            return
        reopened: DatasetNoticeDoc = {**remembered, "reason": f"{remembered['reason']}; then the dataset was "
                                                                f"reset again (epoch {epoch})", "epoch": epoch}
        self._health.keep_dataset_notice(json.dumps(reopened), only_if_absent=True)
        self._remembered = (reopened, epoch)
        log.error("DATASET RESET AGAIN while a reset was open: %s", describe(reopened))

    def _compare(self, before: _Seen | None, after: _Seen) -> DatasetNoticeDoc | None:
        if before is None:
            self._seen = after
            return None
        vanished = [f for key, f in before.flags.items() if key not in after.flags]
        if after.epoch != before.epoch:
            self._seen, self._suspect = after, frozenset()
            if not vanished:
                log.warning("the config epoch changed from %s to %s; no flag was lost", before.epoch, after.epoch)
                return None
            return self._open(f"config epoch changed from {before.epoch} to {after.epoch}", before, after, vanished)
        if after.version < before.version:
            # The same dataset with an older version: restored from an older copy. SDKs holding the later version
            # would ignore every change until the version caught up again, the kill switch included.
            restarted = self._versions.restart_epoch(after.epoch)
            log.error("the config version went back from %s to %s in epoch %s (Redis restored from an older copy?); "
                      "the dataset is named anew (epoch %s) so every SDK takes the current config", before.version,
                      after.version, after.epoch, restarted.epoch)
            after = _Seen(restarted.epoch, restarted.version, after.flags)
        announced = max(after.version - before.version, 0)
        if len(vanished) > announced:
            keys = frozenset(f.key for f in vanished)
            if self._suspect != keys:  # a delete may be between its write and its announcement: look again
                self._suspect = keys
                return None
            self._seen, self._suspect = after, frozenset()
            return self._open(f"{len(vanished)} flag(s) vanished without a change being announced", before,
                              after, vanished)
        self._seen, self._suspect = after, frozenset()
        return None

    def _open(self, reason: str, before: _Seen, after: _Seen, vanished: list[Flag]) -> DatasetNoticeDoc:
        notice: DatasetNoticeDoc = {
            "detected_at": self._clock(), "reason": reason, "previous_epoch": before.epoch, "epoch": after.epoch,
            "vanished": [{"key": f.key, "state": f.state.value, "percent": f.percent, "revision": f.revision}
                         for f in sorted(vanished, key=lambda f: f.key)],
        }
        first = self._health.keep_dataset_notice(json.dumps(notice), only_if_absent=True)
        if first:  # one count per reset across every worker and replica
            metrics.DATASET_RESETS.inc()
        log.error("DATASET RESET: %s", describe(notice),
                  extra={"reason": reason, "previous_epoch": before.epoch, "epoch": after.epoch,
                         "vanished": notice["vanished"]})
        return notice

    def _close_if_restored(self, present: Mapping[str, Flag]) -> None:
        notice = self.notice()
        if notice is None:
            metrics.DATASET_FLAGS_MISSING.set(0)
            return
        missing = [v["key"] for v in notice["vanished"] if v["key"] not in present]
        metrics.DATASET_FLAGS_MISSING.set(len(missing))
        if not missing and self._health.keep_dataset_notice(None):
            log.warning("dataset restored: every flag that vanished at the reset exists again (%s)",
                        ", ".join(v["key"] for v in notice["vanished"]))
