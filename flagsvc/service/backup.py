"""The whole configuration out and back in: `export` (every segment, every flag with its rollout state and
revision, its recent history if asked), and `restore` (an export's segments and flags back into the store, e.g.
after the dataset was lost).

A restore validates the whole document first and applies nothing if any segment or flag is invalid, or if a flag
names a segment that is neither in the document nor in the store. Segments are restored before flags, so a
restored flag never names a segment that is not there yet; a missing segment is created as exported, one that
exists is left alone unless `replace`. An export without `segments` (made before segments existed) restores its
flags only. A flag missing from
the store is created as exported (state, percent, stage, settings), so its rollout goes on; the stage's bake
time starts again, because its outcomes and the judge's record went with the old dataset. A flag that exists is
left alone unless `replace` (then the exported one is written over it by compare-and-set). Either way the
revision goes one past the exported one, and the history gets an `import` entry saying where it came from.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace as dc_replace
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import FlagExists, InvalidFlag, RevisionConflict, SegmentExists, SegmentNotFound
from flagsvc.domain.flag import Action, Flag, FlagDoc, HistoryEntry, HistoryEntryDoc, State
from flagsvc.domain.segment import Segment, SegmentDoc, validate_segment
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.audit import AuditLog
from flagsvc.store.roles import ChangeBus, FlagRepository
from flagsvc.store.segments import SegmentRepository, segments_for

log = logging.getLogger("flagsvc.backup")
FORMAT = "flagsvc-export"
FORMAT_VERSION = 1
MAX_HISTORY = 1_000
MAX_ATTEMPTS = 16
# field -> (accepted types, required); bool is no number (checked apart)
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "key": ((str,), True), "state": ((str,), True), "percent": ((int, float), True), "revision": ((int,), True),
    "stages": ((list,), True), "stage_index": ((int,), True), "description": ((str,), False),
    "salt": ((str,), False), "bake_seconds": ((int,), False), "analysis": ((dict,), False),
    "allow": ((list,), False), "deny": ((list,), False), "created_at": ((int, float), False),
    "updated_at": ((int, float), False), "stage_started_at": ((int, float), False), "reason": ((str,), False),
    "excluded_segments": ((list,), False), "eligible_segments": ((list,), False),
    "bucket_by": ((str, type(None)), False),
}


class ExportDoc(TypedDict):
    """The whole configuration: every flag with its rollout state and revision, and (when asked) the newest
    entries of each flag's history. `POST /api/v1/import` takes it back."""

    format: str
    format_version: int
    exported_at: float
    epoch: str
    version: int
    flags: list[FlagDoc]
    segments: list[SegmentDoc]
    history: dict[str, list[HistoryEntryDoc]]


class SegmentsImportedDoc(TypedDict):
    """What an import did, segment by segment (names)."""

    created: list[str]
    replaced: list[str]
    unchanged: list[str]


class ImportResultDoc(TypedDict):
    """What an import did, flag by flag (keys), and segment by segment."""

    created: list[str]
    replaced: list[str]
    unchanged: list[str]
    segments: SegmentsImportedDoc


class ConfigBackup:
    def __init__(self, flags: FlagRepository, versions: ChangeBus, announcer: ChangeAnnouncer,
                 clock: Callable[[], float] = time.time, after_restore: Callable[[], object] | None = None,
                 segments: SegmentRepository | None = None, audit: AuditLog | None = None) -> None:
        """`segments`: where the segments are (default: the ones that go with `flags`' store); `audit` records
        each flag and segment an import wrote, and the import itself."""
        self._audit = audit
        self._flags = flags
        self._segments = segments if segments is not None else segments_for(flags)
        self._versions = versions
        self._announcer = announcer
        self._clock = clock
        self._after_restore = after_restore or (lambda: None)

    def export(self, history: int = 0) -> ExportDoc:
        """Every flag; with `history` > 0, that many newest history entries of each."""
        version = self._versions.config_version()
        found = self._flags.list_flags()
        limit = min(max(history, 0), MAX_HISTORY)
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "exported_at": self._clock(),
            "epoch": version.epoch, "version": version.version, "flags": [f.to_dict() for f in found],
            "segments": [s.to_dict() for s in self._segments.list_segments()],
            "history": {f.key: [e.to_dict() for e in self._flags.history(f.key, limit)] for f in found}
            if limit else {},
        }

    def restore(self, document: Mapping[str, Any], *, replace: bool = False, actor: str) -> ImportResultDoc:
        """Validate the whole document (InvalidFlag naming each bad field, e.g. `flags.2.percent`, and nothing
        applied), then create each missing flag (and with `replace`, overwrite each existing one)."""
        parsed = parse_export(document)
        segments = parse_segments(document)
        _check_segments_named(parsed, {s.name for s in segments} | {s.name for s in self._segments.list_segments()})
        result: ImportResultDoc = {"created": [], "replaced": [], "unchanged": [],
                                   "segments": {"created": [], "replaced": [], "unchanged": []}}
        now = self._clock()
        source = _source(document)
        written: list[tuple[str, HistoryEntry]] = []
        try:
            for segment in segments:
                done = self._restore_segment(segment, replace=replace, actor=actor, now=now)
                result["segments"][done].append(segment.name)
            for exported in parsed:
                outcome = self._restore_one(exported, replace=replace, actor=actor, now=now, source=source,
                                            written=written)
                result[outcome].append(exported.key)
        finally:
            self._audit_import(result, written, actor=actor, source=source, replace=replace)
            if result["created"] or result["replaced"] or result["segments"]["created"] \
                    or result["segments"]["replaced"]:
                self._announcer.announce()
                log.warning("import by %s (%s): created %s; replaced %s; left alone %s", actor, source,
                            ", ".join(result["created"]) or "none", ", ".join(result["replaced"]) or "none",
                            ", ".join(result["unchanged"]) or "none", extra={"actor": actor, "imported": dict(result)})
                try:
                    self._after_restore()  # e.g. close the dataset notice now rather than at the next look
                except Exception as e:
                    log.warning("after the import: %s", e)
        return result

    def _audit_import(self, result: ImportResultDoc, written: list[tuple[str, HistoryEntry]], *, actor: str,
                      source: str, replace: bool) -> None:
        """Into the audit log: each flag the import wrote (its history entry, as a change by the API does), each
        segment, and the import itself with what it did (also when it stopped part way)."""
        if self._audit is None:
            return
        for key, entry in written:
            self._audit.flag_change(key, entry)
        for action in ("created", "replaced"):
            for name in result["segments"][action]:
                self._audit.record("import", kind="segment", target=name, actor=actor,
                                   reason=f"imported from {source} ({action})")
        self._audit.record("import", kind="configuration", target=source, actor=actor,
                           reason=f"import from {source}" + (" replacing existing flags" if replace else ""),
                           detail={"created": result["created"], "replaced": result["replaced"],
                                   "unchanged": result["unchanged"], "segments": dict(result["segments"])})

    def _restore_one(self, exported: Flag, *, replace: bool, actor: str, now: float, source: str,
                     written: list[tuple[str, HistoryEntry]]) -> Literal["created", "replaced", "unchanged"]:
        reason = f"imported from {source} (exported at revision {exported.revision})"
        evidence = {"exported_revision": exported.revision, "source": source}
        for _ in range(MAX_ATTEMPTS):
            current = self._flags.get(exported.key)
            if current is not None and not replace:
                return "unchanged"
            revision = max(exported.revision, current.revision if current else 0) + 1
            imported = dc_replace(exported, revision=revision, updated_at=now, stage_started_at=now,
                                  percent=exported.percent + 0.0)  # -0.0 is stored as 0.0
            entry = HistoryEntry(now, actor, Action.IMPORT, revision, current.state if current else None,
                                 imported.state, current.percent if current else None, imported.percent,
                                 reason, evidence)
            try:
                if current is None:
                    self._flags.create(imported, entry)
                    written.append((exported.key, entry))
                    return "created"
                self._flags.replace(imported, entry, expected_revision=current.revision)
                written.append((exported.key, entry))
                return "replaced"
            except (FlagExists, RevisionConflict):
                continue  # created or changed meanwhile: decide again on what is there now
        raise RevisionConflict(f"flag {exported.key!r} kept changing during the import; run it again")


    def _restore_segment(self, exported: Segment, *, replace: bool, actor: str,
                         now: float) -> Literal["created", "replaced", "unchanged"]:
        for _ in range(MAX_ATTEMPTS):
            current = self._segments.get_segment(exported.name)
            if current is not None and not replace:
                return "unchanged"
            revision = max(exported.revision, current.revision if current else 0) + (1 if current else 0)
            imported = dc_replace(exported, revision=revision, updated_at=now, updated_by=actor)
            try:
                self._segments.write_segment(exported.name, imported,
                                             expected_revision=current.revision if current else None)
                return "replaced" if current else "created"
            except (SegmentExists, SegmentNotFound, RevisionConflict):
                continue  # created, deleted or changed meanwhile: decide again on what is there now
        raise RevisionConflict(f"segment {exported.name!r} kept changing during the import; run it again")


_SEGMENT_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "description": (str, "a string"), "updated_by": (str, "a string"), "revision": (int, "an integer"),
    "created_at": ((int, float), "a number"), "updated_at": ((int, float), "a number")}


def parse_segments(document: Mapping[str, Any]) -> list[Segment]:
    """The segments of an export document (none when it has no `segments`), every one valid; InvalidFlag naming
    every problem (`segments.0.conditions.1.op`) otherwise."""
    items = document.get("segments", [])
    if not isinstance(items, list):
        raise _not_valid({"segments": ["must be a list of segments"]})
    problems: dict[str, list[str]] = {}
    parsed: list[Segment] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"segments.{index}"
        try:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidFlag("not a segment", {"": ["must be a segment object with a name"]})
            unknown = set(item) - set(SegmentDoc.__annotations__)
            if unknown:
                raise InvalidFlag("not a segment", {name: ["unknown field"] for name in sorted(unknown)})
            if not isinstance(item.get("conditions", []), list):
                raise InvalidFlag("not a segment", {"conditions": ["must be a list of conditions"]})
            wrong = {name: [f"must be {words}"] for name, (kind, words) in _SEGMENT_TYPES.items()
                     if name in item and (isinstance(item[name], bool) or not isinstance(item[name], kind))}
            wrong.update({name: ["must be a finite number"] for name in ("created_at", "updated_at")
                          if isinstance(item.get(name), float) and not math.isfinite(item[name])})
            if wrong:
                raise InvalidFlag("not a segment", wrong)
            segment = validate_segment(Segment.from_dict(item))
            if not 1 <= segment.revision < 2**53:
                raise InvalidFlag("not a segment", {"revision": ["must be from 1 to 2^53 - 1"]})
        except InvalidFlag as e:
            problems.update({f"{where}.{name}" if name else where: p for name, p in e.fields.items()})
            continue
        except (TypeError, ValueError, OverflowError) as e:  # anything from_dict cannot read
            problems[where] = [str(e)]
            continue
        if segment.name in seen:
            problems[f"{where}.name"] = [f"{segment.name!r} appears twice (also segments.{seen[segment.name]})"]
        seen[segment.name] = index
        parsed.append(segment)
    if problems:
        raise _not_valid(problems)
    return parsed


def _check_segments_named(flags_in: list[Flag], known: set[str]) -> None:
    problems = {}
    for index, flag in enumerate(flags_in):
        for field in ("excluded_segments", "eligible_segments"):
            missing = [name for name in getattr(flag, field) if name not in known]
            if missing:
                problems[f"flags.{index}.{field}"] = [f"no segment named {', '.join(missing)} in the document or "
                                                      "the store"]
    if problems:
        raise _not_valid(problems)


def _not_valid(problems: Mapping[str, list[str]]) -> InvalidFlag:
    return InvalidFlag(f"the export document is not valid; nothing was imported ({len(problems)} problem(s))",
                       problems)


def _source(document: Mapping[str, Any]) -> str:
    exported_at = document.get("exported_at")
    when = ""
    if isinstance(exported_at, (int, float)) and not isinstance(exported_at, bool) and math.isfinite(exported_at):
        try:
            when = " of " + datetime.fromtimestamp(exported_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            when = ""
    epoch = document.get("epoch")
    return f"an export{when}" + (f", epoch {epoch}" if isinstance(epoch, str) and epoch else "")


def parse_export(document: Mapping[str, Any]) -> list[Flag]:
    """The flags of an export document, every one valid; InvalidFlag naming every problem otherwise."""
    problems: dict[str, list[str]] = {}
    if document.get("format", FORMAT) != FORMAT:
        problems["format"] = [f"must be {FORMAT!r}"]
    if document.get("format_version") != FORMAT_VERSION or isinstance(document.get("format_version"), bool):
        problems["format_version"] = [f"must be {FORMAT_VERSION} (the export format this server reads)"]
    items = document.get("flags")
    if not isinstance(items, list):
        problems["flags"] = ["must be a list of flags"]
        items = []
    if "history" in document and not isinstance(document["history"], dict):
        problems["history"] = ["must be an object (flag key -> entries); it is not imported"]
    parsed: list[Flag] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"flags.{index}"
        found = _flag_problems(item)
        if found:
            problems.update({f"{where}.{name}" if name else where: p for name, p in found.items()})
            continue
        flag = Flag.from_dict(item)
        if flag.key in seen:
            problems[f"{where}.key"] = [f"{flag.key!r} appears twice (also flags.{seen[flag.key]})"]
        seen[flag.key] = index
        parsed.append(flag)
    if problems:
        raise _not_valid(problems)
    return parsed


def _flag_problems(item: object) -> dict[str, list[str]]:
    if not isinstance(item, dict):
        return {"": ["must be a flag object"]}
    problems: dict[str, list[str]] = {}
    for name in item:
        if name not in _FIELDS:
            problems[name] = ["unknown field"]
    for name, (types, required) in _FIELDS.items():
        if name not in item:
            if required:
                problems[name] = ["missing"]
        elif isinstance(item[name], bool) or not isinstance(item[name], types):
            problems[name] = [f"must be of type {' or '.join(t.__name__ for t in types)}"]
        elif isinstance(item[name], float) and not math.isfinite(item[name]):
            problems[name] = ["must be a finite number"]
    if problems:
        return problems
    stages = item["stages"]
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in stages):
        return {"stages": ["must hold numbers"]}
    for name in ("allow", "deny"):
        if not all(isinstance(i, str) for i in item.get(name, [])):
            problems[name] = ["must hold strings (user ids)"]
    if item["state"] not in {s.value for s in State}:
        problems["state"] = [f"must be one of {', '.join(s.value for s in State)}"]
    if not 0 <= item["percent"] <= 100 or not flags.has_two_decimals_at_most(item["percent"]):
        problems["percent"] = ["must be 0 to 100 with at most two decimals"]
    if not 1 <= item["revision"] < 2**53:  # what the outcomes schema (and JSON numbers) carry exactly
        problems["revision"] = ["must be from 1 to 2^53 - 1"]
    if not 0 <= item["stage_index"] < max(len(stages), 1):
        problems["stage_index"] = ["must point into stages"]
    if problems:
        return problems
    if p := _state_problems(item["state"], float(item["percent"]), float(stages[item["stage_index"]])):
        return {"percent": [p]}
    try:
        flags.validate(Flag.from_dict(item))
    except InvalidFlag as e:
        return dict(e.fields)
    except (TypeError, ValueError) as e:  # anything from_dict cannot read
        return {"": [str(e)]}
    return {}


def _state_problems(state: str, percent: float, stage: float) -> str:
    """A state and a percent that no rollout could have left behind (say rolled back at 50 %)."""
    if state in (State.OFF, State.ROLLED_BACK) and percent != 0:
        return f"a flag that is {state} is at 0 %, not {percent:g}"
    if state == State.COMPLETE and percent != 100:
        return f"a complete flag is at 100 %, not {percent:g}"
    if state in (State.ROLLING, State.PAUSED) and percent != stage:
        return f"a {state} flag is at its stage's percent ({stage:g}), not {percent:g}"
    return ""
