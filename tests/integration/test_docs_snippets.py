"""Every Python snippet of the docs runs against a real server on a real redis-server, and one that records
outcomes records them for both arms (the convention: tests/support/doc_snippets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support import ADMIN, SDK_KEY, serving
from tests.support.doc_snippets import Snippet, all_snippets, python_blocks, run_snippet

SNIPPETS = all_snippets()
RUNNABLE = [s for s in SNIPPETS if s.skip is None]


def start_flags(url: str, flags: list[str]) -> None:
    for key in flags:
        response = requests.post(f"{url}/api/v1/flags", json={"key": key, "stages": [50, 100]}, headers=ADMIN,
                                 timeout=5)
        assert response.status_code == 201, response.text
        response = requests.post(f"{url}/api/v1/flags/{key}/start", headers=ADMIN, timeout=5)
        assert response.status_code == 200, response.text


def arm_counts(url: str, key: str) -> dict[str, int]:
    response = requests.get(f"{url}/api/v1/flags/{key}/stats", headers=ADMIN, timeout=5)
    assert response.status_code == 200, response.text
    return {arm: response.json()["arms"][arm]["count"] for arm in ("canary", "stable")}


def run_and_count(snippet: Snippet, real_app, workdir: Path) -> dict[str, dict[str, int]]:
    """Run the snippet against a fresh server; the outcomes per arm of each flag it records on."""
    with serving(real_app) as url:
        start_flags(url, snippet.flags)
        run_snippet(snippet, url, SDK_KEY, workdir)
        return {key: arm_counts(url, key) for key in snippet.recorded_flags}


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[s.id for s in RUNNABLE])
def test_the_snippet_runs_and_records_both_arms(snippet: Snippet, real_app, tmp_path: Path):
    if snippet.records:
        assert snippet.recorded_flags, f"{snippet.id} records outcomes but names no flag literally in track/record"
    counts = run_and_count(snippet, real_app, tmp_path)
    for key, arms in counts.items():
        assert arms["canary"] > 0 and arms["stable"] > 0, (
            f"{snippet.id} records outcomes of {key!r} for one arm only {arms}: a rollout needs both to compare")


def test_the_docs_have_snippets_and_every_skip_says_why():
    assert len(RUNNABLE) >= 8
    assert {s.path for s in RUNNABLE} >= {"README.md", "client/README.md", "docs/sdk.md", "docs/releasing.md"}
    assert all(s.skip for s in SNIPPETS if s not in RUNNABLE)


def test_a_snippet_that_tracks_only_the_canary_is_caught(real_app, tmp_path: Path):
    """What the README once showed: the stable branch records nothing, so the canary is never compared."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```python\n"
        'if client.is_enabled("new_checkout", user_id):\n'
        '    with client.track("new_checkout", user_id):\n'
        "        new_checkout()\n"
        "else:\n"
        "    old_checkout()\n"
        "```\n"
    )
    [snippet] = python_blocks_of(doc)
    counts = run_and_count(snippet, real_app, tmp_path / "run")
    assert counts["new_checkout"]["canary"] > 0
    assert counts["new_checkout"]["stable"] == 0


def test_a_malformed_directive_fails_instead_of_skipping(tmp_path: Path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- snippet: skipp (typo) -->\n```python\nraise SystemExit(1)\n```\n")
    with pytest.raises(AssertionError, match="snippet: skip"):
        python_blocks_of(doc)


def python_blocks_of(doc: Path) -> list[Snippet]:
    return python_blocks(doc, root=doc.parent)
