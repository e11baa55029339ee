"""What the views use, built once per app and kept in app.extensions (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from flagsvc.api.auth import TokenRegistry
from flagsvc.changes import ChangeFeed
from flagsvc.operations import FlagOperations
from flagsvc.outcomes import OutcomeIngest
from flagsvc.snapshot import SnapshotSource


@dataclass(frozen=True)
class Services:
    operations: FlagOperations
    snapshots: SnapshotSource
    outcomes: OutcomeIngest
    changes: ChangeFeed
    tokens: TokenRegistry


def services() -> Services:
    return current_app.extensions["flagsvc"]
