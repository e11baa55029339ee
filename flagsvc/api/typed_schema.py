"""OpenAPI 3.0 schemas read off the typed definitions of what the server sends (TypedDicts), so the document
and the code cannot drift apart: the wire shapes in `flagsvc_client.protocol.shapes`, the flag and history
documents in `flagsvc.domain.flag`.

Understood: str, int, float, bool, Any, None in a union (nullable), list[X], dict[str, X], Mapping[str, X],
Literal[...], TypedDicts (NotRequired keys are optional) and `Annotated[str, SomeEnum]` (the enum's values).
"""

from __future__ import annotations

import enum
import inspect
import types
from collections.abc import Mapping
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
}


def object_schema(typed_dict: type) -> dict[str, Any]:
    """The schema of a TypedDict: every key a property, the required ones required, its docstring described."""
    hints = get_type_hints(typed_dict, include_extras=True)
    required = typed_dict.__required_keys__  # type: ignore[attr-defined]
    schema: dict[str, Any] = {"type": "object", "properties": {name: json_schema(hint) for name, hint in
                                                               hints.items()}}
    # Python 3.11 counts a NotRequired key as required when its module postpones annotations: read the hint too
    keys = [name for name in hints if name in required and get_origin(hints[name]) is not NotRequired]
    if keys:
        schema["required"] = keys
    description = inspect.getdoc(typed_dict)
    if description and description != inspect.getdoc(dict):
        schema["description"] = " ".join(description.split())
    return schema


def json_schema(hint: Any) -> dict[str, Any]:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (NotRequired, Required):
        return json_schema(args[0])
    if origin is Annotated:
        enums = [m for m in args[1:] if isinstance(m, type) and issubclass(m, enum.Enum)]
        schema = json_schema(args[0])
        if enums:
            schema["enum"] = [member.value for member in enums[0]]
        return schema
    if origin in (Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"only `X | None` unions are described, not {hint!r}")
        schema = {**json_schema(others[0]), "nullable": True}
        if "enum" in schema:  # an enum lists every allowed value, null included
            schema["enum"] = [*schema["enum"], None]
        return schema
    if origin is Literal:
        return {**json_schema(type(args[0])), "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": json_schema(args[0])}
    if origin in (dict, Mapping):
        value = args[1] if args else Any
        return {"type": "object"} if value is Any else {"type": "object", "additionalProperties": json_schema(value)}
    if is_typeddict(hint):
        return object_schema(hint)
    if hint is Any:
        return {}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    raise TypeError(f"no JSON schema for {hint!r}")
