from flagsvc.store.keys import Keys


def test_every_key_string_exactly():
    keys = Keys("flagsvc:")
    assert keys.flag("new_checkout") == "flagsvc:flag:{new_checkout}"
    assert keys.history("new_checkout") == "flagsvc:history:{new_checkout}"
    assert keys.index == "flagsvc:flags"
    assert keys.config_version == "flagsvc:config:version"
    assert keys.config_epoch == "flagsvc:config:epoch"
    assert keys.changes_channel == "flagsvc:config:changes"
    assert keys.outcomes("new_checkout") == "flagsvc:outcomes:{new_checkout}"
    assert keys.reporters("new_checkout") == "flagsvc:reporters:{new_checkout}"
    assert keys.batch_marker("new_checkout", "b-1") == "flagsvc:batch:{new_checkout}:b-1"
    assert keys.ingest_counters("new_checkout") == "flagsvc:ingest:{new_checkout}"
    assert keys.judgement("new_checkout") == "flagsvc:judge:{new_checkout}"
    assert keys.controller_lease == "flagsvc:controller:lease{flagsvc:controller:fence}"
    assert keys.controller_fence == "flagsvc:controller:fence"
    assert keys.ingest_unknown == "flagsvc:ingest:unknown"
    assert keys.audit == "flagsvc:audit"
    assert keys.timeline("new_checkout", "1.500000", 7) == "flagsvc:timeline:{new_checkout}:1.500000:7"
    assert keys.timeline_meta("new_checkout", "1.500000", 7) == "flagsvc:timeline-meta:{new_checkout}:1.500000:7"
    assert keys.timeline_revisions("new_checkout", "1.5") == "flagsvc:timeline-revisions:{new_checkout}:1.5"
    assert keys.webhook_configs == "flagsvc:webhooks:config{flagsvc:webhooks}"
    assert keys.webhook_event("a@1/2/rollback") == "flagsvc:webhooks:event{flagsvc:webhooks}:a@1/2/rollback"
    assert keys.webhook_due == "flagsvc:webhooks:due{flagsvc:webhooks}"
    assert keys.webhook_delivery("e>wh_1") == "flagsvc:webhooks:delivery{flagsvc:webhooks}:e>wh_1"
    assert keys.webhook_log("wh_1") == "flagsvc:webhooks:log{flagsvc:webhooks}:wh_1"


def test_keys_of_one_flag_share_a_hash_tag():
    keys = Keys("staging:")
    tags = {k[k.index("{"): k.index("}") + 1] for k in (keys.flag("a.b"), keys.history("a.b"), keys.outcomes("a.b"),
                                                       keys.reporters("a.b"), keys.batch_marker("a.b", "x"),
                                                       keys.ingest_counters("a.b"), keys.judgement("a.b"),
                                                       keys.timeline("a.b", "1", 2), keys.timeline_meta("a.b", "1", 2),
                                                       keys.timeline_revisions("a.b", "1"))}
    assert tags == {"{a.b}"}
