"""Every request body's schema (marshmallow 4), created once. Types are strict: "12" is not a number, true is
not a number, and unknown fields are refused. Ranges, lengths and ordering live in the domain (`flag.validate`),
so the API and any other caller get the same answers, every problem at once."""

from __future__ import annotations

import math
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from flagsvc.domain import flag as flags

SERVER_OWNED = ("state", "percent", "stage_index", "revision", "created_at", "updated_at", "stage_started_at", "reason")


class StrictNumber(fields.Float):
    """A JSON number: strings and booleans are refused, and so are NaN and infinities."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("must be a number")
        if not math.isfinite(value):
            raise ValidationError("must be a finite number")
        return float(value)


UserIds = fields.List(fields.String())


class _FlagSettingsSchema(Schema):
    description = fields.String()
    salt = fields.String()
    stages = fields.List(StrictNumber())
    bake_seconds = fields.Integer(strict=True)
    analysis = fields.Dict(keys=fields.String())
    allow = UserIds
    deny = UserIds

    @pre_load
    def refuse_server_owned(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            owned = {name: ["is set by the server and cannot be written"] for name in SERVER_OWNED if name in data}
            if owned:
                raise ValidationError(owned)
        return data


class FlagCreateSchema(_FlagSettingsSchema):
    key = fields.String(required=True, validate=validate.Regexp(flags.KEY_PATTERN, error="must match {regex}"))


class FlagUpdateSchema(_FlagSettingsSchema):
    @pre_load
    def refuse_key(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "key" in data:
            raise ValidationError({"key": ["a flag's key cannot change; create a new flag"]})
        return data


class ReasonSchema(Schema):
    reason = fields.String(validate=validate.Length(max=500))


class PercentSchema(ReasonSchema):
    percent = StrictNumber(required=True, validate=validate.Range(0, 100))


flag_create = FlagCreateSchema()
flag_update = FlagUpdateSchema()
reason_body = ReasonSchema()
percent_body = PercentSchema()
