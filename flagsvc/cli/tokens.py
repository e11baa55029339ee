"""Tokens for the embedded mode: generated once, kept in the data dir (mode 0600), printed at start."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

TOKENS_FILE = "tokens.json"


def load_or_create_tokens(data_dir: Path) -> tuple[dict[str, str], dict[str, str], bool]:
    """(admin tokens, sdk keys, created now?)."""
    path = data_dir / TOKENS_FILE
    if path.exists():
        data = json.loads(path.read_text())
        return dict(data["admin_tokens"]), dict(data["sdk_keys"]), False
    admin = {"admin": "fsa_" + secrets.token_urlsafe(24)}
    sdk = {"sdk": "fss_" + secrets.token_urlsafe(24)}
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"admin_tokens": admin, "sdk_keys": sdk}, out, indent=2)
    os.replace(path.with_suffix(".tmp"), path)
    return admin, sdk, True
