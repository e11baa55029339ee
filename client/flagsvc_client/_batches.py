"""Cut tallies to wire batches (docs/protocol.md), each within the server's limits: at most `max_flags` flags,
`max_buckets` sketch buckets an arm and MAX_BATCH_BYTES of JSON, one revision per flag."""

from __future__ import annotations

from flagsvc_client._outcomes import SKETCH_SIZE, STRATUM_LABELS, ArmTally
from flagsvc_client.protocol.limits import MAX_STRATA, UNIT_BUCKETS
from flagsvc_client.protocol.sketch import MIN_INDEX
from flagsvc_client.snapshot import give_way

TYPE_CHECKING = False
if TYPE_CHECKING:  # `shapes` imports `typing`, which `import flagsvc_client` must not pay for
    from flagsvc_client.protocol.shapes import ArmOutcome, FlagOutcome

MAX_BATCH_BYTES = 900_000  # under the server's 1 MiB body limit, with room for the envelope


def _collapse(latency: dict[int, int], max_buckets: int) -> dict[int, int]:
    """Fold the lowest buckets into the lowest kept one (DDSketch's collapsing) to meet the wire limit:
    the fastest requests then read a little slower, and every upper quantile the judge uses stays exact."""
    if len(latency) <= max_buckets:
        return latency
    indices = sorted(latency)
    kept = {i: latency[i] for i in indices[-max_buckets:]}
    kept[indices[-max_buckets]] += sum(latency[i] for i in indices[:-max_buckets])
    return kept


def _kept_strata(arms: dict[str, ArmTally]) -> set[int]:
    """The stratum codes a flag's entry names: the MAX_STRATA with the most requests in both arms together (the
    same labels in both, so the judge compares like with like); the others are pooled under STRATUM_OTHER."""
    requests: dict[int, int] = {}
    for tally in arms.values():
        for code, (n, _) in (tally.strata or {}).items():
            requests[code] = requests.get(code, 0) + n
    requests.pop(STRATUM_LABELS.other, None)
    return set(sorted(requests, key=lambda code: (-requests[code], code))[:MAX_STRATA])


def _strata_wire(tally: ArmTally, kept: set[int]) -> dict[str, list[int]]:
    """{label: [requests, errors, erroring users]}, the strata not kept added up under STRATUM_OTHER."""
    users = tally.strata_users or {}
    unremembered = tally.strata_unremembered or {}
    rows: dict[int, list[int]] = {}
    for code, (n, e) in (tally.strata or {}).items():
        row = rows.setdefault(code if code in kept else STRATUM_LABELS.other, [0, 0, 0])
        row[0] += n
        row[1] += e
        row[2] += min(e, len(users.get(code, ())) + unremembered.get(code, 0))
    return {STRATUM_LABELS.label(code): row for code, row in rows.items() if row[0]}


def _arm_wire(tally: ArmTally | None, max_buckets: int, kept: set[int] | None = None) -> ArmOutcome:
    if tally is None:
        return {"count": 0, "errors": 0, "error_users": 0, "latency": {}}
    by_index = {MIN_INDEX + position: n for position, n in enumerate((tally.counts or ())[:SKETCH_SIZE]) if n}
    users = len(tally.error_users or ()) + tally.unremembered
    units = tally.unit_counts or ()
    slow = tally.slow_mark is not None  # counted against a mark: each pair gets its slow requests third
    wire: ArmOutcome = {
        "count": tally.count,
        "errors": tally.errors,
        "error_users": min(tally.errors, users),
        "latency": {str(i): n for i, n in sorted(_collapse(by_index, max_buckets).items())},
        "units": {
            str(j): [n, units[UNIT_BUCKETS + j], units[2 * UNIT_BUCKETS + j]] if slow else [n, units[UNIT_BUCKETS + j]]
            for j, n in enumerate(units[:UNIT_BUCKETS]) if n
        },
    }
    if tally.strata:
        wire["strata"] = _strata_wire(tally, kept or set())
    return wire


def build_batches(tallies: list[ArmTally], max_flags: int, max_buckets: int) -> list[dict[str, FlagOutcome]]:
    """Wire `flags` maps (no batch_id yet). A window that saw a flag change revision yields a second batch
    for the other revision (the server counts outcomes of a superseded revision as stale)."""
    import json  # off the import path: only the flushing side needs it

    by_flag: dict[str, dict[int, dict[str, ArmTally]]] = {}
    for tally in tallies:
        flag, revision, arm = tally.key
        by_flag.setdefault(flag, {}).setdefault(revision, {})[arm] = tally
    layers: list[list[tuple[str, FlagOutcome]]] = []
    for flag, revisions in by_flag.items():
        give_way()
        for depth, revision in enumerate(sorted(revisions, reverse=True)):
            arms = revisions[revision]
            kept = _kept_strata(arms)
            entry: FlagOutcome = {
                "revision": revision,
                "arms": {arm: _arm_wire(arms.get(arm), max_buckets, kept) for arm in ("stable", "canary")},
            }
            if depth == len(layers):
                layers.append([])
            layers[depth].append((flag, entry))
    batches: list[dict[str, FlagOutcome]] = []
    for layer in layers:
        current: dict[str, FlagOutcome] = {}
        size = 0
        for flag, entry in layer:
            entry_size = len(json.dumps({flag: entry}))
            if current and (len(current) >= max_flags or size + entry_size > MAX_BATCH_BYTES):
                batches.append(current)
                current, size = {}, 0
            current[flag] = entry
            size += entry_size
        if current:
            batches.append(current)
    return batches
