"""flagctl against a real server (threaded WSGI, real Redis), the way an operator or a CI script uses it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from flagsvc.cli.flagctl import main
from tests.support import ADMIN_TOKEN, serving


@pytest.fixture
def server_url(real_app) -> Iterator[str]:
    with serving(real_app) as url:
        yield url


@pytest.fixture
def flagctl(server_url):
    runner = CliRunner()

    def run(*args: str, token: str = ADMIN_TOKEN, url: str | None = None):
        return runner.invoke(main, ["--url", url or server_url, "--token", token, *args], catch_exceptions=False)

    return run


def test_the_whole_workflow(flagctl):
    created = flagctl("create", "new_checkout", "--stages", "1,5,25,100", "--bake-seconds", "60", "-d", "New checkout")
    assert created.exit_code == 0, created.output
    assert "new_checkout" in created.output and "off" in created.output
    assert flagctl("start", "new_checkout").exit_code == 0
    assert json.loads(flagctl("show", "new_checkout", "--json").output)["state"] == "rolling"
    assert flagctl("pause", "new_checkout").exit_code == 0
    assert flagctl("resume", "new_checkout").exit_code == 0
    assert "manual at 12.5%" in flagctl("set", "new_checkout", "12.5").output
    assert flagctl("edit", "new_checkout", "--allow", "qa-1,qa-2").exit_code == 0
    rolled = flagctl("rollback", "new_checkout", "--reason", "checkout errors")
    assert rolled.exit_code == 0 and "rolled_back at 0%" in rolled.output
    history = json.loads(flagctl("history", "new_checkout", "--json").output)["history"]
    assert [e["action"] for e in history][:3] == ["rollback", "update", "set_percent"]
    assert history[0]["reason"] == "checkout errors" and history[0]["actor"] == "ops"
    table = flagctl("history", "new_checkout").output.splitlines()
    assert table[0].split()[:3] == ["WHEN", "(UTC)", "ACTOR"] and "checkout errors" in table[1]
    listed = json.loads(flagctl("list", "--json").output)
    assert [f["key"] for f in listed] == ["new_checkout"]
    assert "KEY" in flagctl("list").output
    stats = json.loads(flagctl("stats", "new_checkout", "--json").output)
    assert set(stats["arms"]) == {"stable", "canary"}
    assert flagctl("delete", "new_checkout", "--yes").exit_code == 0
    assert json.loads(flagctl("list", "--json").output) == []


def one_line_error(result, code: int, needle: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("flagctl: ") and needle in lines[0], result.output
    assert "Traceback" not in result.output


def test_errors_are_one_line_and_non_zero(flagctl):
    one_line_error(flagctl("show", "ghost"), 1, "no flag named 'ghost'")
    one_line_error(flagctl("list", token="wrong-token-123"), 4, "valid bearer token")
    one_line_error(flagctl("list", url="http://127.0.0.1:9"), 3, "cannot reach flagsvc")
    one_line_error(flagctl("create", "Bad Key"), 1, "key")
    flagctl("create", "x")
    one_line_error(flagctl("pause", "x"), 1, "cannot pause")
    bad = flagctl("create", "y", "--stages", "1,five,100")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    for args in (["create", "z", "--stages", "1,nan,100"], ["create", "z", "--alpha", "inf"],
                 ["set", "x", "nan"], ["watch", "x", "--timeout", "nan"]):
        refused = flagctl(*args)  # float() takes these; JSON cannot carry them: a usage error, not a server 400
        assert refused.exit_code == 2 and "finite" in refused.output, (args, refused.output)
    assert flagctl("show", "z").exit_code == 1  # nothing was created


def test_watch_exit_codes_gate_a_pipeline(flagctl):
    flagctl("create", "good", "--stages", "50,100")
    flagctl("start", "good")
    flagctl("promote", "good")
    watched = flagctl("watch", "good", "--interval", "0.1")
    assert watched.exit_code == 0 and "complete" in watched.output

    flagctl("create", "bad")
    flagctl("start", "bad")
    flagctl("rollback", "bad", "--reason", "errors 4x stable")
    watched = flagctl("watch", "bad", "--interval", "0.1")
    assert watched.exit_code == 10 and "errors 4x stable" in watched.output

    flagctl("create", "slow")
    flagctl("start", "slow")
    watched = flagctl("watch", "slow", "--interval", "0.1", "--timeout", "0.3", "--json")
    assert watched.exit_code == 11
    assert json.loads(watched.output.splitlines()[0])["flag"]["state"] == "rolling"


def test_watch_exits_11_when_the_flag_is_deleted_under_it(flagctl, server_url):
    flagctl("create", "doomed")
    flagctl("start", "doomed")
    threading.Timer(0.5, lambda: flagctl("delete", "doomed", "--yes")).start()
    watched = flagctl("watch", "doomed", "--interval", "0.1", "--timeout", "10")
    assert watched.exit_code == 11 and "deleted" in watched.output
    assert flagctl("watch", "never-was").exit_code == 1  # a typo is a mistake, not a stopped rollout


def test_every_command_has_help_with_examples():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and command.help, name
