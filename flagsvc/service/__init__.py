"""The application tier: what the server does, behind one door.

`build_services(settings, store, clock)` assembles it once, for the HTTP app, the CLI, the demo and the tests:
operator commands (`commands`), outcome ingestion (`ingestion`), the SDK snapshot and the change feed that fans
it out (`snapshots`, `change_feed`), and the rollout controller with its background runner (`controller`,
`background`). Operators and the controller announce their changes through one `ChangeAnnouncer`. Each piece is
handed only the store roles it uses (`flagsvc.store.roles`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flagsvc.config import Settings
from flagsvc.domain.plausibility import PlausibilityLimits
from flagsvc.domain.webhook import RetryPolicy
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.audit import AuditLog
from flagsvc.service.background import BackgroundWork, Periodic
from flagsvc.service.backup import ConfigBackup
from flagsvc.service.backup_files import BackupFiles
from flagsvc.service.change_feed import ChangeFeed
from flagsvc.service.commands import TRANSITIONS, FlagCommands, WriteRequest
from flagsvc.service.console_sessions import ConsoleSessions
from flagsvc.service.controller import build_controller
from flagsvc.service.dataset import DatasetWatcher
from flagsvc.service.ingestion import OutcomeIngestion
from flagsvc.service.rate_limit import RateLimiter
from flagsvc.service.segments import SegmentCommands
from flagsvc.service.snapshots import ServedSnapshot, SnapshotSource
from flagsvc.service.status import ServerStatus
from flagsvc.service.timeline import TimelineQueries, TimelineRecorder
from flagsvc.service.webhook_delivery import DeliveryWorker
from flagsvc.service.webhooks import WebhookCommands, WebhookNotifier
from flagsvc.store.audit import audit_log_for
from flagsvc.store.roles import Store
from flagsvc.store.segments import segments_for
from flagsvc.store.sessions import sessions_for
from flagsvc.store.timeline import timeline_for
from flagsvc.store.webhooks import webhooks_for

__all__ = ["TRANSITIONS", "ServedSnapshot", "Services", "WriteRequest", "build_services"]
DELIVERY_INTERVAL = 0.5  # seconds between looks at the webhook delivery queue


@dataclass(frozen=True)
class Services:
    commands: FlagCommands
    segments: SegmentCommands  # targeting segments (docs/targeting.md)
    ingestion: OutcomeIngestion
    snapshots: SnapshotSource
    changes: ChangeFeed
    status: ServerStatus
    background: BackgroundWork  # started by whoever runs the app, after forking; stopped on shutdown
    dataset: DatasetWatcher  # a reset or emptied dataset noticed, until restored or acknowledged
    backup: ConfigBackup  # export and import of the whole configuration
    backup_files: BackupFiles  # the recent export kept on disk
    timeline: TimelineQueries  # rollouts' time series (the controller records them)
    audit: AuditLog  # every change, by whom; outlives the flags
    webhooks: WebhookCommands  # webhooks and their delivery logs (the controller raises events, DeliveryWorker sends)
    delivery: DeliveryWorker  # run by `background`; tests may drive it by hand
    console_sessions: ConsoleSessions  # the web console's signed-in sessions (flagsvc/console)


def build_services(settings: Settings, store: Store | None = None, clock: Callable[[], float] = time.time, *,
                   controller: bool = True, watch_interval: float = 2.0, backup_dir: Path | None = None,
                   backup_interval: float = 10.0) -> Services:
    """Everything the server does, on `store` (by default the Redis at settings.redis_url). Without
    `controller`, nothing judges rollouts in this process (tests drive a controller of their own). The dataset
    is checked every `watch_interval` seconds; an export is kept in `backup_dir` (default
    `<data dir>/backups`), rewritten at most every `backup_interval` seconds after a change."""
    if store is None:
        if not settings.redis_url:
            raise ValueError("no store: give a store or settings.redis_url")
        from flagsvc.store.redis_store import RedisStore

        store = RedisStore.from_url(settings.redis_url, settings.namespace,
                                    min_replicas_ack=settings.redis_min_replicas_ack,
                                    ack_timeout=settings.redis_ack_timeout)
    segment_store = segments_for(store)
    snapshots = SnapshotSource(store, store, segments=segment_store)
    changes = ChangeFeed(store.listen_changes, snapshots)
    announcer = ChangeAnnouncer(store, changes.changed_here)
    audit = AuditLog(audit_log_for(store), clock, max_entries=settings.audit_max_entries,
                     max_age=settings.audit_max_days * 86400)
    segment_commands = SegmentCommands(segment_store, store, announcer, clock, audit=audit)
    timeline = timeline_for(store)
    webhook_store = webhooks_for(store)
    rollout = build_controller(store, announcer, clock=clock, interval=settings.controller_interval,
                               timeline=TimelineRecorder(timeline), audit=audit,
                               notifier=WebhookNotifier(webhook_store, clock)) if controller else None
    stop = threading.Event()
    delivery = DeliveryWorker(webhook_store, settings.webhook_allow, clock=clock, timeout=settings.webhook_timeout,
                              policy=RetryPolicy(max_attempts=settings.webhook_max_attempts), stopping=stop)
    dataset = DatasetWatcher(store, store, store, clock, interval=watch_interval, audit=audit)
    backup = ConfigBackup(store, store, announcer, clock, after_restore=dataset.look, audit=audit)
    files = BackupFiles(backup, dataset, backup_dir or settings.data_dir / "backups", clock,
                        min_interval=backup_interval)
    return Services(
        commands=FlagCommands(store, announcer, clock, check_segments=segment_commands.check_flag, audit=audit,
                              notify=WebhookNotifier(webhook_store, clock).operator_change),
        segments=segment_commands,
        ingestion=OutcomeIngestion(
            store, store, store, limits=PlausibilityLimits(max_reporter_rate=settings.max_reporter_rate),
            limiter=RateLimiter(settings.outcome_batches_per_second, 2 * settings.outcome_batches_per_second),
            clock=clock,
        ),
        snapshots=snapshots,
        changes=changes,
        status=ServerStatus(store, store),
        background=BackgroundWork(rollout, changes, [
            Periodic("dataset-watch", dataset.look, watch_interval),
            Periodic("backup-files", files.step, min(watch_interval, backup_interval)),
            Periodic("webhook-delivery", delivery.step, DELIVERY_INTERVAL),
        ], stop=stop),
        dataset=dataset,
        backup=backup,
        backup_files=files,
        timeline=TimelineQueries(store, timeline),
        audit=audit,
        webhooks=WebhookCommands(webhook_store, settings.webhook_allow, clock, audit=audit),
        delivery=delivery,
        console_sessions=ConsoleSessions(sessions_for(store), clock),
    )
