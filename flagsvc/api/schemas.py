"""Every request body's schema (marshmallow 4), created once. Types are strict: "12" is not a number, true is
not a number, and unknown fields are refused. Ranges, lengths and ordering live in the domain (`flag.validate`),
so the API and any other caller get the same answers, every problem at once."""

from __future__ import annotations

import math
import re
from typing import Any

from flagsvc_client.protocol import limits, sketch
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from flagsvc.domain import flag as flags

SERVER_OWNED = ("state", "percent", "stage_index", "revision", "created_at", "updated_at", "stage_started_at", "reason")


class StrictNumber(fields.Float):
    """A JSON number: strings and booleans are refused, and so are NaN and infinities."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("must be a number")
        try:
            number = float(value)  # an integer past the float range raises OverflowError
        except OverflowError:
            raise ValidationError("must be a finite number within the float range") from None
        if not math.isfinite(number):
            raise ValidationError("must be a finite number")
        return number


class Text(fields.String):
    """A JSON string that is valid Unicode: a lone surrogate (legal in a JSON escape, `\\ud800`) is refused here,
    in every text field, before it can reach a stored flag, a history entry or a snapshot."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not flags.encodable(text):
            raise ValidationError("must be valid Unicode text (no lone surrogates)")
        return text


UserIds = fields.List(Text())


class _FlagSettingsSchema(Schema):
    description = Text()
    salt = Text()
    stages = fields.List(StrictNumber())
    bake_seconds = fields.Integer(strict=True)
    analysis = fields.Dict(keys=Text())
    allow = UserIds
    deny = UserIds
    excluded_segments = fields.List(Text())
    eligible_segments = fields.List(Text())
    bucket_by = Text(allow_none=True)

    @pre_load
    def refuse_server_owned(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            owned = {name: ["is set by the server and cannot be written"] for name in SERVER_OWNED if name in data}
            if owned:
                raise ValidationError(owned)
        return data


class FlagCreateSchema(_FlagSettingsSchema):
    key = Text(required=True, validate=validate.Regexp(flags.KEY_PATTERN, error="must match {regex}"))


class FlagUpdateSchema(_FlagSettingsSchema):
    @pre_load
    def refuse_key(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "key" in data:
            raise ValidationError({"key": ["a flag's key cannot change; create a new flag"]})
        return data


class ReasonSchema(Schema):
    reason = Text(validate=validate.Length(max=500))


class PercentSchema(ReasonSchema):
    percent = StrictNumber(required=True, validate=validate.Range(0, 100))


class ReporterChangeSchema(ReasonSchema):
    reporter = Text(required=True, validate=validate.Regexp(limits.REPORTER_PATTERN,
                                                            error="a reporter id: 8 to 64 of A-Z a-z 0-9 _ -"))


class ConditionSchema(Schema):
    """One condition of a segment; what each operator takes is checked by the domain (docs/targeting.md)."""

    attribute = Text(required=True)
    op = Text(required=True)
    values = fields.List(fields.Raw(), required=True)


class _SegmentSettingsSchema(Schema):
    description = Text()
    conditions = fields.List(fields.Nested(ConditionSchema))

    @pre_load
    def refuse_server_owned(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            owned = {name: ["is set by the server and cannot be written"]
                     for name in ("revision", "created_at", "updated_at", "updated_by") if name in data}
            if owned:
                raise ValidationError(owned)
        return data


class SegmentCreateSchema(_SegmentSettingsSchema):
    name = Text(required=True)
    conditions = fields.List(fields.Nested(ConditionSchema), required=True)


class SegmentUpdateSchema(_SegmentSettingsSchema):
    @pre_load
    def refuse_name(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "name" in data:
            raise ValidationError({"name": ["a segment's name cannot change; create a new segment"]})
        return data


flag_create = FlagCreateSchema()
class WebhookCreateSchema(Schema):
    """A webhook (docs/notifications.md); values are checked by the domain and the allow-list."""

    url = Text(required=True)
    events = fields.List(Text(), required=True)
    flag = Text(allow_none=True)
    hold_seconds = StrictNumber()
    description = Text()


class WebhookUpdateSchema(Schema):
    """New settings for a webhook, any of them (docs/notifications.md); values are checked as at creation."""

    url = Text()
    events = fields.List(Text())
    flag = Text(allow_none=True)
    hold_seconds = StrictNumber()
    description = Text()


class SecretRotationSchema(Schema):
    """How long deliveries are signed with the old secret too (default a day; 0: not at all)."""

    keep_previous_seconds = StrictNumber()


segment_create = SegmentCreateSchema()
webhook_create = WebhookCreateSchema()
webhook_update = WebhookUpdateSchema()
secret_rotation = SecretRotationSchema()
segment_update = SegmentUpdateSchema()
flag_update = FlagUpdateSchema()
reason_body = ReasonSchema()
percent_body = PercentSchema()
reporter_change = ReporterChangeSchema()


# --- outcome batches (docs/protocol.md) -------------------------------------------------------------------

MAX_COUNT = limits.MAX_COUNT
MAX_BATCH_FLAGS = limits.MAX_BATCH_FLAGS
MAX_SKETCH_BUCKETS = sketch.MAX_INDEX - sketch.MIN_INDEX + 1  # every bucket the sketch can have


# Canonical decimal only (ASCII digits, no leading zeros, no "-0"), as the SDK writes them: "7", "07" and an
# Arabic-Indic 7 would all be bucket 7, and one would overwrite the others' counts.
BUCKET_INDEX = re.compile(r"(0|-?[1-9][0-9]{0,5})\Z")


class SketchBuckets(fields.Field):
    """A latency sketch, {bucket index: count}, checked in one plain loop: a realistic batch carries hundreds of
    buckets, and a marshmallow Dict with a field per key and per value cost ~10 µs a bucket, most of the
    ingestion time. Errors name the bucket, as a Dict's would (`latency.<index>.key|value`)."""

    def __init__(self) -> None:
        super().__init__(metadata={
            "type": "object", "maxProperties": MAX_SKETCH_BUCKETS,
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
        })

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, int]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value) > MAX_SKETCH_BUCKETS:
            raise ValidationError(f"Longer than maximum length {MAX_SKETCH_BUCKETS}.")
        errors: dict[str, dict[str, list[str]]] = {}
        for index, count in value.items():
            if not (isinstance(index, str) and BUCKET_INDEX.match(index)):
                errors.setdefault(str(index), {})["key"] = ["must be a bucket index"]
            if type(count) is not int or not 0 <= count <= MAX_COUNT:
                errors.setdefault(str(index), {})["value"] = [f"must be an integer from 0 to {MAX_COUNT}"]
        if errors:
            raise ValidationError(errors)
        return value


UNIT_INDEX = re.compile(r"(0|[1-9][0-9]?)\Z")


class UserBuckets(fields.Field):
    """An arm's outcomes per user bucket, {bucket: [requests, errors]} or {bucket: [requests, errors, slow]}
    with buckets 0 .. UNIT_BUCKETS-1 (docs/protocol.md). Optional: batches from SDKs that do not count buckets
    leave it out."""

    def __init__(self) -> None:
        super().__init__(metadata={
            "type": "object", "maxProperties": limits.UNIT_BUCKETS,
            "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 3,
                                     "items": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}},
        })

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, list[int]]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value) > limits.UNIT_BUCKETS:
            raise ValidationError(f"Longer than maximum length {limits.UNIT_BUCKETS}.")
        errors: dict[str, list[str]] = {}
        for index, pair in value.items():
            if not (isinstance(index, str) and UNIT_INDEX.match(index) and int(index) < limits.UNIT_BUCKETS):
                errors[str(index)] = [f"must be a user bucket from 0 to {limits.UNIT_BUCKETS - 1}"]
            elif not (isinstance(pair, list) and len(pair) in (2, 3)
                      and all(type(n) is int and 0 <= n <= MAX_COUNT for n in pair) and max(pair[1:]) <= pair[0]):
                errors[str(index)] = ["must be [requests, errors] or [requests, errors, slow]: integers, errors "
                                      "and slow requests at most requests"]
        if errors:
            raise ValidationError(errors)
        return value


class StrataCounts(fields.Field):
    """An arm's outcomes per stratum label (docs/protocol.md, "Strata"), {label: [requests, errors, erroring
    users]}: at most MAX_STRATA labels and STRATUM_OTHER, each 1 to MAX_STRATUM_LABEL_LENGTH characters. Whether
    the counts fit the arm's is plausibility's question (domain.plausibility)."""

    def __init__(self) -> None:
        super().__init__(metadata={
            "type": "object", "maxProperties": limits.MAX_STRATA + 1,
            "propertyNames": {"minLength": 1, "maxLength": limits.MAX_STRATUM_LABEL_LENGTH},
            "additionalProperties": {"type": "array", "minItems": 3, "maxItems": 3,
                                     "items": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}},
        })

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, list[int]]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value) > limits.MAX_STRATA + 1:
            raise ValidationError(f"at most {limits.MAX_STRATA} labels and {limits.STRATUM_OTHER}")
        errors: dict[str, list[str]] = {}
        for label, row in value.items():
            if not (isinstance(label, str) and 1 <= len(label) <= limits.MAX_STRATUM_LABEL_LENGTH
                    and flags.encodable(label)):
                errors[str(label)[:200]] = [f"labels are 1 to {limits.MAX_STRATUM_LABEL_LENGTH} characters of text"]
            elif not (isinstance(row, list) and len(row) == 3 and all(type(n) is int and 0 <= n <= MAX_COUNT
                                                                        for n in row)):
                errors[label] = [f"must be [requests, errors, erroring users]: integers from 0 to {MAX_COUNT}"]
        if errors:
            raise ValidationError(errors)
        return value


class ArmOutcomeSchema(Schema):
    count = fields.Integer(strict=True, required=True, validate=validate.Range(0, MAX_COUNT))
    errors = fields.Integer(strict=True, required=True, validate=validate.Range(0, MAX_COUNT))
    error_users = fields.Integer(strict=True, validate=validate.Range(0, MAX_COUNT))
    latency = SketchBuckets()
    units = UserBuckets()
    strata = StrataCounts()

    @validates_schema
    def bucket_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Counts that contradict each other (more errors than requests...) are not a type error but an
        # implausible batch: domain.plausibility refuses those, with a 422.
        latency = data.get("latency") or {}
        if any(not sketch.MIN_INDEX <= int(index) <= sketch.MAX_INDEX for index in latency):
            raise ValidationError({"latency": [f"bucket indexes run from {sketch.MIN_INDEX} to {sketch.MAX_INDEX}"]})


class FlagOutcomeSchema(Schema):
    revision = fields.Integer(strict=True, required=True, validate=validate.Range(1, 2**53))
    arms = fields.Dict(
        keys=Text(validate=validate.OneOf(limits.ARMS)),
        values=fields.Nested(ArmOutcomeSchema),
        required=True,
    )


class WindowSchema(Schema):
    start = StrictNumber(required=True, validate=validate.Range(0, 1e11))
    end = StrictNumber(required=True, validate=validate.Range(0, 1e11))


class OutcomeBatchSchema(Schema):
    batch_id = Text(required=True, validate=validate.Regexp(limits.BATCH_ID_PATTERN,
                                                                     error="8 to 64 of A-Z a-z 0-9 _ -"))
    reporter = Text(required=True, validate=validate.Regexp(limits.REPORTER_PATTERN,
                                                                      error="8 to 64 of A-Z a-z 0-9 _ -"))
    window = fields.Nested(WindowSchema, required=True)
    flags = fields.Dict(
        keys=Text(validate=validate.Length(1, limits.MAX_FLAG_KEY_LENGTH)),
        values=fields.Nested(FlagOutcomeSchema),
        required=True,
        validate=validate.Length(max=MAX_BATCH_FLAGS),
    )
    sent_at = StrictNumber()
    sdk = Text(validate=validate.Length(max=100))


outcome_batch = OutcomeBatchSchema()
