import json
import logging

from flagsvc.logs import JsonFormatter
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.commands import FlagCommands
from flagsvc.store.memory import MemoryStore


def test_flag_changes_log_one_json_line_with_their_fields(caplog):
    store = MemoryStore()
    operations = FlagCommands(store, ChangeAnnouncer(store), clock=lambda: 1000.0)
    operations.create("new_checkout", {}, actor="ops")
    with caplog.at_level(logging.INFO, logger="flagsvc.flags"):
        operations.rollback("new_checkout", actor="ops", reason="errors up")
    [record] = caplog.records
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "info" and line["logger"] == "flagsvc.flags"
    assert (line["flag"], line["action"], line["actor"], line["state"]) == ("new_checkout", "rollback", "ops",
                                                                           "rolled_back")
    assert line["reason"] == "errors up" and "errors up" in line["message"]
    assert "\n" not in JsonFormatter().format(record)
