"""A recent export of the whole configuration on disk, so recovery after a wipe is one command:
`flagctl import <data dir>/backups/flags-latest.json`.

`step()` runs every few seconds in the background: when the config version moved since the last write, and at
most every `min_interval` seconds, it writes `flags-latest.json` atomically (temporary file, fsync, rename) and
a dated copy `flags-<UTC time>-<epoch>-v<version>.json`, keeping the newest `keep` dated copies.

It never overwrites the export that recovery needs: nothing is written while a dataset-reset notice is open
(`DatasetWatcher`), and a `flags-latest.json` from another dataset (epoch) is first kept aside as
`flags-epoch-<epoch>.json`, which is never pruned (a server restarted after a wipe nobody noticed must not
replace the last good export with an empty one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flagsvc.service.backup import ConfigBackup
from flagsvc.service.dataset import DatasetWatcher

log = logging.getLogger("flagsvc.backup")
LATEST = "flags-latest.json"


class BackupFiles:
    def __init__(self, backup: ConfigBackup, watcher: DatasetWatcher, directory: Path,
                 clock: Callable[[], float] = time.time, min_interval: float = 10.0, keep: int = 5) -> None:
        self._backup = backup
        self._watcher = watcher
        self.directory = directory
        self._clock = clock
        self.min_interval = min_interval
        self.keep = keep
        self._written: tuple[str, int] | None = None
        self._written_at: float | None = None
        self._paused_logged = False

    @property
    def latest(self) -> Path:
        return self.directory / LATEST

    def step(self) -> Path | None:
        """Write an export if one is due; the file written, or None."""
        if self._watcher.notice() is not None:
            if not self._paused_logged:
                log.warning("dataset reset open: %s is kept as it is (the export to restore from)", self.latest)
                self._paused_logged = True
            return None
        self._paused_logged = False
        if self._written_at is not None and self._clock() - self._written_at < self.min_interval:
            return None
        document = self._backup.export(history=20)
        if (document["epoch"], document["version"]) == self._written:
            return None
        if not self._watcher.may_export(document["epoch"]):  # a dataset not looked at yet (maybe a wipe): wait
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._keep_other_dataset(document["epoch"])
        body = json.dumps(document, indent=1, sort_keys=False).encode()
        _write_atomically(self.latest, body)
        stamp = datetime.fromtimestamp(document["exported_at"], UTC).strftime("%Y%m%dT%H%M%SZ")
        suffix = f"-{document['epoch']}-v{document['version']}.json"
        if not any(self.directory.glob(f"flags-*{suffix}")):  # another worker wrote this version already
            _write_atomically(self.directory / f"flags-{stamp}{suffix}", body)
        self._prune()
        self._written, self._written_at = (document["epoch"], document["version"]), self._clock()
        return self.latest

    def _keep_other_dataset(self, epoch: str) -> None:
        try:
            kept = json.loads(self.latest.read_bytes())
        except (OSError, ValueError):
            return
        old = kept.get("epoch") if isinstance(kept, dict) else None
        if isinstance(old, str) and old and old != epoch:
            aside = self.directory / f"flags-epoch-{old}.json"
            with contextlib.suppress(OSError):
                os.replace(self.latest, aside)
                log.warning("%s was the export of another dataset (epoch %s, %d flags); kept as %s", LATEST, old,
                            len(kept.get("flags") or []), aside)

    def _prune(self) -> None:
        dated = sorted(self.directory.glob("flags-[0-9]*.json"))  # flags-<UTC time>-...: oldest first
        for old in dated[: max(len(dated) - self.keep, 0)]:
            with contextlib.suppress(OSError):
                old.unlink()


def _write_atomically(path: Path, body: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
