import pytest

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import IllegalTransition, InvalidFlag
from flagsvc.domain.flag import Action, State


def make(**settings):
    flag, _ = flags.new_flag("new_checkout", settings, now=100.0, actor="ops")
    return flag


def test_new_flag_defaults():
    flag = make()
    assert (flag.state, flag.percent, flag.revision, flag.salt) == (State.OFF, 0.0, 1, "new_checkout")
    assert flag.stages == flags.DEFAULT_STAGES


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"stages": [5, 1, 100]}, "stages"),
        ({"stages": [1, 50]}, "stages"),
        ({"stages": [1, 150]}, "stages"),
        ({"stages": [0, 100]}, "stages"),
        ({"stages": [1.234, 100]}, "stages"),
        ({"stages": []}, "stages"),
        ({"bake_seconds": -1}, "bake_seconds"),
        ({"salt": ""}, "salt"),
        ({"allow": ["a"], "deny": ["a"]}, "deny"),
        ({"description": "x" * 1001}, "description"),
    ],
)
def test_invalid_settings_name_the_field(settings, field):
    with pytest.raises(InvalidFlag) as raised:
        make(**settings)
    assert field in raised.value.fields


@pytest.mark.parametrize("key", ["", "A", "-x", "a b", "x" * 129, "a}b", "naïve"])
def test_invalid_keys(key):
    with pytest.raises(InvalidFlag):
        flags.new_flag(key, {}, now=0, actor="ops")


def test_rollout_walks_the_stages_and_completes():
    flag = make(stages=[10, 50, 100])
    flag, entry = flags.start(flag, now=101, actor="ops")
    assert (flag.state, flag.percent, flag.stage_index, flag.revision) == (State.ROLLING, 10, 0, 2)
    assert (entry.action, entry.from_state, entry.to_state) == (Action.START, State.OFF, State.ROLLING)
    assert entry.to_percent == 10
    flag, entry = flags.advance(flag, now=102, actor="controller", reason="healthy", evidence={"n": 1})
    assert (flag.percent, flag.stage_index, flag.stage_started_at) == (50, 1, 102)
    assert entry.evidence == {"n": 1}
    flag, entry = flags.advance(flag, now=103, actor="controller", reason="healthy")
    assert (flag.state, flag.percent) == (State.COMPLETE, 100)
    assert entry.action == Action.COMPLETE
    with pytest.raises(IllegalTransition):
        flags.advance(flag, now=104, actor="controller", reason="")


def test_pause_resume_and_illegal_moves():
    flag, _ = flags.start(make(), now=1, actor="ops")
    paused, _ = flags.pause(flag, now=2, actor="ops")
    assert paused.state == State.PAUSED
    with pytest.raises(IllegalTransition):
        flags.pause(paused, now=3, actor="ops")
    with pytest.raises(IllegalTransition):
        flags.advance(paused, now=3, actor="controller", reason="")  # the controller never moves a paused flag
    promoted, _ = flags.promote(paused, now=3, actor="ops")  # an operator may
    assert (promoted.state, promoted.stage_index) == (State.PAUSED, 1)
    resumed, _ = flags.resume(promoted, now=4, actor="ops")
    assert resumed.state == State.ROLLING and resumed.stage_started_at == 4
    with pytest.raises(IllegalTransition):
        flags.start(resumed, now=5, actor="ops")


@pytest.mark.parametrize("state_path", [[], ["start"], ["start", "pause"], ["set"]])
def test_rollback_works_from_any_state(state_path):
    flag = make()
    for step in state_path:
        if step == "start":
            flag, _ = flags.start(flag, now=1, actor="ops")
        elif step == "pause":
            flag, _ = flags.pause(flag, now=1, actor="ops")
        else:
            flag, _ = flags.set_percent(flag, 30, now=1, actor="ops")
    rolled, entry = flags.rollback(flag, now=9, actor="ops", reason="checkout errors")
    assert (rolled.state, rolled.percent, rolled.reason) == (State.ROLLED_BACK, 0, "checkout errors")
    assert entry.reason == "checkout errors" and rolled.revision == flag.revision + 1


def test_start_after_manual_does_not_shrink_the_canary():
    manual, _ = flags.set_percent(make(), 12.5, now=1, actor="ops")
    started, _ = flags.start(manual, now=2, actor="ops")
    assert (started.percent, started.stage_index) == (25, 3)


def test_set_percent_validates():
    with pytest.raises(InvalidFlag):
        flags.set_percent(make(), 100.5, now=1, actor="ops")
    with pytest.raises(InvalidFlag):
        flags.set_percent(make(), 1.005, now=1, actor="ops")


def test_update_rules():
    flag = make()
    updated, entry = flags.update(flag, {"description": "new", "allow": ["u1"]}, now=5, actor="ops")
    assert (updated.description, updated.allow, updated.revision, entry.action) == ("new", ("u1",), 2, Action.UPDATE)
    rolling, _ = flags.start(flag, now=6, actor="ops")
    with pytest.raises(IllegalTransition):
        flags.update(rolling, {"stages": [50, 100]}, now=7, actor="ops")
    with pytest.raises(InvalidFlag):
        flags.update(flag, {"state": "complete"}, now=7, actor="ops")


def test_round_trips():
    flag, entry = flags.start(make(allow=["a"], analysis={"alpha": 0.01}), now=3, actor="ops")
    assert flags.Flag.from_dict(flag.to_dict()) == flag
    assert flags.HistoryEntry.from_dict(entry.to_dict()) == entry
