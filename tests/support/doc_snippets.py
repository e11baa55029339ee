"""The Python snippets of the documentation, found and run as programs against a real server.

Every ```python block of README.md, client/README.md and docs/*.md (but docs/judge.md and docs/recovery.md) is a
program that must run. The convention a block may rely on:

* **The prelude** gives it these names: `client` (a `FlagClient` connected to the server, ready), `user_id` (a
  user id), `new_checkout(...)` and `old_checkout(...)` (the two arms' code: take anything, return an object
  with `.ok`), `url` and `key` (the server's address and an SDK key), `snapshot_dict` (the server's snapshot as a
  dict). Its working directory is a fresh temporary one holding `flags.json`, that snapshot.
* **Addresses as the docs write them:** `http://127.0.0.1:8080` (the default `flagsvc serve` address) becomes the
  test server's, and any literal `sdk_key="..."` the test key.
* **Flags:** every flag a block names as the first argument of a client call (`client.is_enabled("new_checkout",
  ...)`, `track`, `record`, `evaluate`, `variant`) is created and rolling at 50 % before the block runs.
* **Both arms:** the block runs twice, `user_id` in the canary arm of its first named flag, then in the stable
  arm. A block that records outcomes (`.track(` or `.record(`) must leave outcomes for *both* arms of every flag
  it records on, in the server's `GET /api/v1/flags/<key>/stats`: a rollout needs stable to compare with.
* **Not a program?** Say so in an HTML comment on the line before the fence, with the reason:
  `<!-- snippet: skip (a gunicorn config file, read by gunicorn) -->`. Any other `<!-- snippet: ...` comment is
  an error, so a typo cannot skip a block silently.

Each block runs in its own interpreter (`snippet_runner.py`); every `FlagClient` left in its namespace is flushed
(and must be acknowledged) and closed after each run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("snippet_runner.py")
NOT_OURS = {"docs/judge.md", "docs/recovery.md"}  # their authors run (or not) their own examples

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*snippet:(?P<body>.*?)-->\s*$")
SKIP = re.compile(r"^\s*skip\s*\((?P<reason>[^)]*\S[^)]*)\)\s*$")
CLIENT_CALL = re.compile(
    r"""\.(?P<method>is_enabled|track|record|evaluate|variant)\(\s*(?P<q>["'])(?P<flag>[\w.-]+)(?P=q)""")
RECORDING = re.compile(r"\.(?:track|record)\(")


@dataclass(frozen=True)
class Snippet:
    path: str  # relative to the repository root
    line: int  # the first line of code (1-based)
    code: str
    skip: str | None  # the reason, when the block is marked not to run

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def flags(self) -> list[str]:
        """The flags the block names, in order of first appearance."""
        return list(dict.fromkeys(m["flag"] for m in CLIENT_CALL.finditer(self.code)))

    @property
    def recorded_flags(self) -> list[str]:
        return list(dict.fromkeys(m["flag"] for m in CLIENT_CALL.finditer(self.code)
                                  if m["method"] in ("track", "record")))

    @property
    def records(self) -> bool:
        return bool(RECORDING.search(self.code))


def documentation_files() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.relative_to(ROOT).as_posix() not in NOT_OURS)
    return [ROOT / "README.md", ROOT / "client" / "README.md", *docs]


def python_blocks(path: Path, root: Path = ROOT) -> list[Snippet]:
    """The ```python blocks of one Markdown file, with the skip directive before each, if any."""
    rel = path.relative_to(root).as_posix()
    lines = path.read_text().splitlines()
    blocks: list[Snippet] = []
    directive: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        if match := DIRECTIVE.match(lines[i]):
            directive = (i + 1, match["body"])
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                assert directive is None, f"{rel}:{directive[0]}: a snippet directive must come right before a fence"
            i += 1
            continue
        start, indent, marker = i + 1, fence["indent"], fence["fence"]
        end = start
        while end < len(lines) and not lines[end].strip().startswith(marker):
            end += 1
        assert end < len(lines), f"{rel}:{i + 1}: a fence that is never closed"
        if fence["info"].strip().split()[:1] == ["python"]:
            code = "\n".join(line.removeprefix(indent) for line in lines[start:end]) + "\n"
            blocks.append(Snippet(rel, start + 1, code, _skip_reason(rel, directive)))
        else:
            assert directive is None, f"{rel}:{directive[0]}: a snippet directive before a block that is not python"
        directive = None
        i = end + 1
    return blocks


def _skip_reason(rel: str, directive: tuple[int, str] | None) -> str | None:
    if directive is None:
        return None
    line, body = directive
    match = SKIP.match(body)
    assert match, f"{rel}:{line}: write `<!-- snippet: skip (why this block does not run) -->`, got {body.strip()!r}"
    return match["reason"].strip()


def all_snippets() -> list[Snippet]:
    return [snippet for path in documentation_files() for snippet in python_blocks(path)]


def run_snippet(snippet: Snippet, url: str, sdk_key: str, workdir: Path, timeout: float = 60) -> None:
    """Run the block (twice, once per arm) in its own interpreter; AssertionError with its output if it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "snippet.json"
    flags = snippet.flags
    spec.write_text(json.dumps({"url": url, "sdk_key": sdk_key, "path": snippet.path, "line": snippet.line - 1,
                                "code": snippet.code, "flag": flags[0] if flags else None}))
    done = subprocess.run([sys.executable, str(RUNNER), str(spec)], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"the snippet at {snippet.id} failed:\n{done.stdout}{done.stderr}"
