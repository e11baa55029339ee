"""The last good snapshot on disk, so a process restarted while the server is down still evaluates."""

from __future__ import annotations

import contextlib
import os

from flagsvc_client.snapshot import Snapshot, dumps_snapshot, loads_snapshot, parse_snapshot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def read_snapshot_file(path: str) -> Snapshot:
    """Raises OSError (missing, unreadable) or SnapshotError (malformed)."""
    with open(path, "rb") as f:
        return loads_snapshot(f.read())


def write_snapshot_file(path: str, snapshot: Snapshot) -> None:
    """Write atomically (temporary file + fsync + rename): a reader, or a crash, never sees half a file.
    The temporary name carries the pid, so forked workers sharing one cache file do not trip over each other."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(dumps_snapshot(snapshot))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def initial_snapshots(
    bootstrap: Mapping[str, Any] | str | None, cache_file: str | None
) -> tuple[list[tuple[str, Snapshot]], list[tuple[str, str]]]:
    """The snapshots to start from, in the order to offer them (bootstrap, then the cache file, which the
    usual newer-wins rule lets replace it), and the problems met as (kind, message) pairs. Never raises."""
    found: list[tuple[str, Snapshot]] = []
    problems: list[tuple[str, str]] = []
    sources = [("bootstrap", bootstrap), ("cache_file", cache_file)]
    for name, source in sources:
        if source is None or source == "":
            continue
        try:
            if isinstance(source, str):
                found.append((name, read_snapshot_file(source)))
            else:
                found.append((name, parse_snapshot(dict(source))))
        except FileNotFoundError:
            if name == "bootstrap":
                problems.append(("bootstrap_missing", f"bootstrap file {source} not found"))
        except Exception as exc:
            problems.append((f"{name}_invalid", f"ignoring the {name}: {exc}"))
    return found, problems
