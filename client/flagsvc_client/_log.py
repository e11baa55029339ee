"""Logging once per problem kind: an unknown flag asked for a million times is one log line, not a million.

A kind that describes an outage (server unreachable, stream down) is cleared when the problem ends, so the next
outage is logged again; a kind about the caller (unknown flag, bad user id) is logged once for the process.
"""

from __future__ import annotations

LOGGER_NAME = "flagsvc_client"
_WARNING, _ERROR, _INFO = 30, 40, 20  # logging's levels; `logging` itself is imported on the first message

_MAX_KINDS = 1000  # kinds can embed a flag name the caller chose: bound the memory they take


class LogOnce:
    """Per-client memory of what was already logged. Races may log a kind twice; that is harmless."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[object] = set()

    # A kind is any hashable: a string, or a tuple such as ("flag_not_found", flag) that costs nothing to build.

    def warning(self, kind: object, message: str, *args: object) -> None:
        self._emit(_WARNING, kind, message, args)

    def error(self, kind: object, message: str, *args: object) -> None:
        self._emit(_ERROR, kind, message, args, exc_info=True)

    def clear(self, kind: object) -> None:
        """The problem ended: log it again if it comes back."""
        if kind in self._seen:
            self._seen.discard(kind)
            _log(_INFO, "flagsvc: recovered (%s)", (kind,))

    def seen(self, kind: object) -> bool:
        return kind in self._seen

    def _emit(self, level: int, kind: object, message: str, args: tuple[object, ...], exc_info: bool = False) -> None:
        if kind in self._seen or len(self._seen) >= _MAX_KINDS:
            return
        self._seen.add(kind)
        _log(level, "flagsvc: " + message, args, exc_info)


def _log(level: int, message: str, args: tuple[object, ...], exc_info: bool = False) -> None:
    """Log through `logging.getLogger("flagsvc_client")`. Logging is for problems, which are rare, so its
    import (~5 ms with `traceback` and `string`) waits for the first one."""
    try:
        import logging

        logging.getLogger(LOGGER_NAME).log(level, message, *args, exc_info=exc_info)
    except Exception:  # a broken handler must not break the caller either
        pass
