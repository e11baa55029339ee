"""Cut tallies to wire batches (docs/protocol.md), each within the server's limits: at most `max_flags` flags,
`max_buckets` sketch buckets an arm and MAX_BATCH_BYTES of JSON, one revision per flag."""

from __future__ import annotations

from flagsvc_client._outcomes import SKETCH_SIZE, ArmTally
from flagsvc_client.protocol.limits import UNIT_BUCKETS
from flagsvc_client.protocol.sketch import MIN_INDEX

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


def _arm_wire(tally: ArmTally | None, max_buckets: int) -> ArmOutcome:
    if tally is None:
        return {"count": 0, "errors": 0, "error_users": 0, "latency": {}}
    by_index = {MIN_INDEX + position: n for position, n in enumerate((tally.counts or ())[:SKETCH_SIZE]) if n}
    users = len(tally.error_users or ()) + tally.unremembered
    units = tally.unit_counts or ()
    slow = tally.slow_mark is not None  # counted against a mark: each pair gets its slow requests third
    return {
        "count": tally.count,
        "errors": tally.errors,
        "error_users": min(tally.errors, users),
        "latency": {str(i): n for i, n in sorted(_collapse(by_index, max_buckets).items())},
        "units": {
            str(j): [n, units[UNIT_BUCKETS + j], units[2 * UNIT_BUCKETS + j]] if slow else [n, units[UNIT_BUCKETS + j]]
            for j, n in enumerate(units[:UNIT_BUCKETS]) if n
        },
    }


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
        for depth, revision in enumerate(sorted(revisions, reverse=True)):
            arms = revisions[revision]
            entry: FlagOutcome = {
                "revision": revision,
                "arms": {arm: _arm_wire(arms.get(arm), max_buckets) for arm in ("stable", "canary")},
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
