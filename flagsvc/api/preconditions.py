"""An operator's write, as asked: `If-Match` (the flag revision it expects) and `Idempotency-Key` (so the write
can be retried safely), read from the request's headers; and the `ETag` (the revision) on every flag answer.

    If-Match: "7"             the write applies only if the flag is still at revision 7, else 412
    Idempotency-Key: <key>    1 to 128 of A-Z a-z 0-9 _ - . :  (a UUID, say); sent again with the same request,
                              it gets the first answer back and changes nothing, for 24 hours
"""

from __future__ import annotations

import hashlib
import re

from flask import Response, jsonify, request

from flagsvc.api.body import raw_body
from flagsvc.api.errors import ApiError
from flagsvc.domain.flag import Flag
from flagsvc.service import WriteRequest

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
REVISION_TAG = re.compile(r'(?:"([0-9]{1,15})"|([0-9]{1,15}))\Z')


def write_request() -> WriteRequest:
    return WriteRequest(if_revision=_if_revision(), idempotency_key=_idempotency_key(), fingerprint=_fingerprint())


def flag_response(flag: Flag, status: int = 200) -> Response:
    response = jsonify(flag.to_dict())
    response.status_code = status
    response.headers["ETag"] = f'"{flag.revision}"'
    return response


def _if_revision() -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    match = REVISION_TAG.match(raw.strip())
    if match is None:
        raise ApiError("bad_request", 'If-Match must be the flag\'s ETag, its revision in quotes: "7"',
                       {"If-Match": ['must be a revision in quotes, as the ETag gives it: "7"']})
    return int(match.group(1) or match.group(2))


def _idempotency_key() -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY.match(raw):
        raise ApiError("bad_request", "Idempotency-Key must be 1 to 128 of A-Z a-z 0-9 _ - . :",
                       {"Idempotency-Key": ["must be 1 to 128 of A-Z a-z 0-9 _ - . :"]})
    return raw


def _fingerprint() -> str:
    """What the request was: the same key with another method, path, expected revision or body is refused."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.headers.get("If-Match", "")):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(raw_body())
    return digest.hexdigest()
