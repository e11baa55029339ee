"""flagctl against a real server (threaded WSGI, real Redis), the way an operator or a CI script uses it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner

from flagsvc import metrics
from flagsvc.cli.flagctl import main
from flagsvc.domain.judge_record import JudgeRecord
from tests.support import ADMIN_TOKEN, serving, wait_for


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
    # Deleted over HTTP, not through a second CliRunner: a runner swaps the process's stdout and stderr, so two at
    # once on two threads can take each other's output (the watcher's "was deleted" went to the deleter's once)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    threading.Timer(0.5, lambda: requests.delete(f"{server_url}/api/v1/flags/doomed", headers=headers,
                                                 timeout=10)).start()
    watched = flagctl("watch", "doomed", "--interval", "0.1", "--timeout", "10")
    assert watched.exit_code == 11 and "deleted" in watched.output
    assert flagctl("watch", "never-was").exit_code == 1  # a typo is a mistake, not a stopped rollout


def test_every_command_has_help_with_examples():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and command.help, name


BLIND_REASON = ("blind: no stable outcomes in 300 s while 12,345 canary outcomes arrived at 5 %; the stable path is "
                "not instrumented: record both arms (client.track/record on both branches)")


def test_watch_calls_out_a_blind_rollout_once_and_a_stall_exits_12(flagctl, real_store):
    flagctl("create", "blinded", "--stages", "5,100")
    flagctl("start", "blinded")
    flag = real_store.get("blinded")
    verdict = {"decision": "blind", "reason": BLIND_REASON, "at": 1.0, "revision": flag.revision,
               "evidence": {"blind": {"arm": "stable", "observed": 0, "expected": 11_727.8}}}
    real_store.save_judgement("blinded", JudgeRecord(flag.revision, flag.created_at, verdict, None))
    watched = flagctl("watch", "blinded", "--interval", "0.1", "--stall-timeout", "0.3")
    assert watched.exit_code == 12, watched.output
    blind_lines = [line for line in watched.output.splitlines() if line.startswith("BLIND: ")]
    assert blind_lines == [f"BLIND: blinded: the judge gets no (or far too few) outcomes from the stable arm and "
                           f"holds until it does; {BLIND_REASON}"]  # said once, not at every look
    stalled = watched.output.splitlines()[-1]
    assert stalled.startswith("flagctl: stalled: blinded has been rolling at 5% for over 0.3s; judge: blind: no "
                              "stable outcomes"), stalled


def test_a_change_of_percent_restarts_the_stall_clock(flagctl, real_app):
    flagctl("create", "moving", "--stages", "5,50,100")
    flagctl("start", "moving")
    looks = metrics.HTTP_REQUESTS.labels("/api/v1/flags/<key>/stats", "GET", "200")
    before, promoted_at = looks._value.get(), []

    def promote_after_two_looks() -> None:
        assert wait_for(lambda: looks._value.get() >= before + 2, timeout=10)
        real_app.extensions["flagsvc"].commands.promote("moving", actor="ops")
        promoted_at.append(time.monotonic())

    promoter = threading.Thread(target=promote_after_two_looks)
    promoter.start()
    watched = flagctl("watch", "moving", "--interval", "0.1", "--stall-timeout", "0.5", "--json")
    ended = time.monotonic()
    promoter.join()
    assert watched.exit_code == 12, watched.output
    seen = [json.loads(line)["flag"]["percent"] for line in watched.output.splitlines() if line.startswith("{")]
    assert seen[:2] == [5, 5] and seen[-1] == 50
    assert ended - promoted_at[0] >= 0.5  # 0.5 s without change counted from the promotion, not from the start
    assert "moving has been rolling at 50% for over 0.5s" in watched.output


def test_without_stall_timeout_a_held_rollout_is_watched_until_timeout(flagctl):
    flagctl("create", "held")
    flagctl("start", "held")
    watched = flagctl("watch", "held", "--interval", "0.1", "--timeout", "0.3")
    assert watched.exit_code == 11 and "gave up" in watched.output
    refused = flagctl("watch", "held", "--stall-timeout", "-1")
    assert refused.exit_code == 2 and "Traceback" not in refused.output


def test_if_revision_applies_only_to_the_flag_it_names(flagctl):
    flagctl("create", "new_checkout")
    assert flagctl("start", "new_checkout", "--if-revision", "1").exit_code == 0
    stale = flagctl("set", "new_checkout", "5", "--if-revision", "1")
    assert stale.exit_code == 1 and "revision 2" in stale.output
    assert flagctl("pause", "new_checkout", "--if-revision", "1").exit_code == 1
    assert flagctl("edit", "new_checkout", "-d", "x", "--if-revision", "1").exit_code == 1
    assert flagctl("delete", "new_checkout", "--yes", "--if-revision", "1").exit_code == 1
    assert json.loads(flagctl("show", "new_checkout", "--json").output)["revision"] == 2  # nothing changed
    assert flagctl("set", "new_checkout", "5", "--if-revision", "2").exit_code == 0
    assert flagctl("delete", "new_checkout", "--yes", "--if-revision", "3").exit_code == 0
