from flagsvc.store.keys import Keys


def test_every_key_string_exactly():
    keys = Keys("flagsvc:")
    assert keys.flag("new_checkout") == "flagsvc:flag:{new_checkout}"
    assert keys.history("new_checkout") == "flagsvc:history:{new_checkout}"
    assert keys.index == "flagsvc:flags"
    assert keys.config_version == "flagsvc:config:version"
    assert keys.config_epoch == "flagsvc:config:epoch"
    assert keys.changes_channel == "flagsvc:config:changes"


def test_keys_of_one_flag_share_a_hash_tag():
    keys = Keys("staging:")
    tags = {k[k.index("{"): k.index("}") + 1] for k in (keys.flag("a.b"), keys.history("a.b"))}
    assert tags == {"{a.b}"}
