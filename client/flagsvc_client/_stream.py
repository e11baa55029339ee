"""Server-Sent Events parsing (the WHATWG rules the protocol's stream relies on), free of any I/O.

Lines go in, events come out; a comment line (`: heartbeat`) comes out as a heartbeat, which proves the
connection is alive and the config current.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

HEARTBEAT = "heartbeat"  # the pseudo event name given to comment lines

_MAX_EVENT_CHARS = 16 * 1024 * 1024  # a runaway event is dropped rather than buffered without end


class Event:
    __slots__ = ("data", "event", "id")

    def __init__(self, event: str, data: str, id: str | None) -> None:
        self.event, self.data, self.id = event, data, id

    def __repr__(self) -> str:
        return f"Event({self.event!r}, {self.data!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and (self.event, self.data, self.id) == (other.event, other.data, other.id)

    __hash__ = None  # type: ignore[assignment]  # unhashable (it defines __eq__); object types __hash__ as a method


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Yield each event when its blank line arrives, and Event(HEARTBEAT, "", None) for each comment line."""
    data: list[str]
    name, data, last_id, size = "", [], None, 0
    for line in lines:
        if not line:
            if data and size <= _MAX_EVENT_CHARS:
                yield Event(name or "message", "\n".join(data), last_id)
            name, data, size = "", [], 0
            continue
        if line.startswith(":"):
            yield Event(HEARTBEAT, "", None)
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            size += len(value) + 1
            if size <= _MAX_EVENT_CHARS:
                data.append(value)
        elif field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
        # `retry` and unknown fields are ignored: reconnect timing is ours (backoff with jitter)
