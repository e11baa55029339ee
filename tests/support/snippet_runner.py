"""Runs one documentation snippet as a program, in its own interpreter: `python snippet_runner.py SPEC.json`.

This file is a script, not a helper to import: it needs only `flagsvc_client`, and runs in a fresh process (the
working directory a temporary one) so a snippet that leaves clients open or threads running cannot disturb the
test session. `tests.support.doc_snippets` writes the spec and reads the exit status; the rules a snippet may
rely on are written there.

The spec (JSON): `url` and `sdk_key` of a running flagsvc, `path` and `line` of the block in the docs, its `code`,
and `flag` (the flag whose arms the user ids are picked for; null when the snippet names none). The snippet runs
once per arm, each time in a fresh namespace, and every FlagClient that namespace holds afterwards is closed
(which flushes its outcomes), so the runs' outcomes reach the server before this process exits.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
import urllib.request
from pathlib import Path
from typing import Any

from flagsvc_client import FlagClient

DOCS_URL = "http://127.0.0.1:8080"  # the address `flagsvc serve` listens on by default, as the docs write it
SDK_KEY_LITERAL = re.compile(r"""sdk_key=(["'])[^"']*\1""")


class Receipt:
    """What the prelude's `new_checkout()` and `old_checkout()` return: something with `.ok`, like a response."""

    def __init__(self, path: str) -> None:
        self.ok, self.path = True, path

    def __repr__(self) -> str:
        return f"Receipt(path={self.path!r})"


def new_checkout(*args: Any, **kwargs: Any) -> Receipt:
    return Receipt("canary")


def old_checkout(*args: Any, **kwargs: Any) -> Receipt:
    return Receipt("stable")


def server_snapshot(url: str, sdk_key: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/sdk/v1/flags", headers={"Authorization": f"Bearer {sdk_key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        snapshot: dict[str, Any] = json.loads(response.read())
        return snapshot


def user_in(client: FlagClient, flag: str | None, arm: str) -> str:
    if flag is None:
        return "user-1"
    for i in range(1, 10_000):
        if client.variant(flag, f"user-{i}") == arm:
            return f"user-{i}"
    raise AssertionError(f"no user in the {arm} arm of {flag!r}: is the flag rolling at 50 %?")


def prepare(code: str, url: str, sdk_key: str) -> str:
    return SDK_KEY_LITERAL.sub(f'sdk_key="{sdk_key}"', code.replace(DOCS_URL, url))


def run(spec: dict[str, Any]) -> None:
    url, sdk_key, flag = spec["url"], spec["sdk_key"], spec["flag"]
    snapshot = server_snapshot(url, sdk_key)
    Path("flags.json").write_text(json.dumps(snapshot))
    # blank lines first, so a traceback names the line of the Markdown file itself
    code = compile("\n" * spec["line"] + prepare(spec["code"], url, sdk_key), spec["path"], "exec")
    for arm in ("canary", "stable") if flag else ("stable",):
        client = FlagClient(url, sdk_key=sdk_key)
        assert client.wait_until_ready(timeout=10), "the prelude's client got no config from the server"
        namespace: dict[str, Any] = {
            "__name__": "__snippet__",
            "client": client,
            "url": url,
            "key": sdk_key,
            "user_id": user_in(client, flag, arm),
            "new_checkout": new_checkout,
            "old_checkout": old_checkout,
            "snapshot_dict": snapshot,
        }
        clients = [client]
        try:
            exec(code, namespace)
            clients += [value for value in namespace.values() if isinstance(value, FlagClient)]
            for each in clients:
                assert each.flush(timeout=10), f"outcomes not acknowledged by the server: {each.stats}"
        finally:
            for each in clients:
                each.close(timeout=1)


if __name__ == "__main__":
    try:
        run(json.loads(Path(sys.argv[1]).read_text()))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
