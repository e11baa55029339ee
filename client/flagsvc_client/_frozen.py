"""A base for small immutable value objects, without `dataclasses` (which costs ~10 ms to import)."""

from __future__ import annotations


class Frozen:
    """Subclasses declare `__slots__`; construction is by keyword, every slot required."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, **values: object) -> None:
        missing = set(self.__slots__) - set(values)
        if missing:
            raise TypeError(f"{type(self).__name__} needs {', '.join(sorted(missing))}")
        for name, value in values.items():
            object.__setattr__(self, name, value)  # an unknown name raises AttributeError (slots)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
