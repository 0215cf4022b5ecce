"""Settings: one typed object; config/default.toml and the built-in defaults agree; bad keys stop the run."""

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import CONFIG_DIR, Settings, load_settings, load_sources


def test_default_toml_matches_builtin_defaults():
    assert load_settings(environ={}) == Settings()


def test_unknown_key_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matching]\nnum_perms = 64\n")
    with pytest.raises(ConfigError, match="matching.num_perms"):
        load_settings(bad, environ={})


def test_wrong_type_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nbatch_size = 'many'\n")
    with pytest.raises(ConfigError, match="ingest.batch_size"):
        load_settings(bad, environ={})


def test_environment_overrides_a_key():
    settings = load_settings(environ={"NEWSDEDUP_INGEST__BATCH_SIZE": "7"})
    assert settings.ingest.batch_size == 7


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(Exception):
        settings.ingest.batch_size = 3  # type: ignore[misc]


def test_sources_file_loads_and_rejects_duplicates(tmp_path):
    assert [s.name for s in load_sources(CONFIG_DIR / "sources.toml")]
    dup = tmp_path / "sources.toml"
    dup.write_text('[[sources]]\nname="a"\nkind="file"\nlocation="x"\n[[sources]]\nname="a"\nkind="file"\nlocation="y"\n')
    with pytest.raises(ConfigError, match="duplicate"):
        load_sources(dup)


def test_the_archive_table_of_the_sources_file(tmp_path):
    from pipeline.settings import load_archive

    assert load_archive() is None  # shipped commented out
    shipped = (CONFIG_DIR / "sources.toml").read_text()
    # The commented example, uncommented, is a valid [archive] table.
    example = "\n".join(line.removeprefix("# ") for line in ("[archive]" + shipped.split("# [archive]", 1)[1]).splitlines())
    (tmp_path / "on.toml").write_text(example)
    archive = load_archive(tmp_path / "on.toml")
    assert archive is not None and archive.to == "data/archive.db" and archive.older_than_days == 90
    assert archive.schedule.cron == "30 3 * * *" and archive.by == "ingested"

    (tmp_path / "off.toml").write_text(example.replace("[archive]", "[archive]\nenabled = false"))
    assert load_archive(tmp_path / "off.toml") is None
    (tmp_path / "unscheduled.toml").write_text("[archive]\nto = 'a.db'\nolder_than_days = 9\nschedule = {}\n")
    with pytest.raises(ConfigError, match="needs a schedule"):
        load_archive(tmp_path / "unscheduled.toml")
    (tmp_path / "bad.toml").write_text("[archive]\nto = 'a.db'\nolder_than_days = 0\nschedule = { cron = '* * * * *' }\n")
    with pytest.raises(ConfigError, match="older_than_days"):
        load_archive(tmp_path / "bad.toml")


def test_a_bad_value_names_the_environment_variable_that_set_it(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest\.batch_size \(set by NEWSDEDUP_INGEST__BATCH_SIZE\)"):
        load_settings(environ={"NEWSDEDUP_INGEST__BATCH_SIZE": "lots"})
    (tmp_path / "c.toml").write_text("[ingest]\nbatch_size = 'lots'\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "c.toml", environ={})
    assert f"ingest.batch_size (in {tmp_path / 'c.toml'}):" in str(raised.value) and "set by" not in str(raised.value)


def test_configuration_mistakes_name_where_they_are(tmp_path):
    """(QA pass: a variable's bad value was blamed on the --config file; an unknown section or a
    key in config/default.toml was named without where it came from; one underscore where two
    belong was ignored; list settings could not be set from the environment at all.)"""
    (tmp_path / "c.toml").write_text("[ingest]\nbatch_size = 10\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "c.toml", environ={"NEWSDEDUP_INGEST__MIN_WORDS": "many"})
    assert "ingest.min_words (set by NEWSDEDUP_INGEST__MIN_WORDS)" in str(raised.value)
    assert "c.toml" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"ingst \(set by NEWSDEDUP_INGST__BATCH_SIZE\)"):
        load_settings(environ={"NEWSDEDUP_INGST__BATCH_SIZE": "5"})
    with pytest.raises(ConfigError, match="NEWSDEDUP_INGEST_MIN_WORDS is not a newsdedup setting.*two underscores"):
        load_settings(environ={"NEWSDEDUP_INGEST_MIN_WORDS": "500"})
    assert load_settings(environ={"NEWSDEDUP_DEBUG": "1", "NEWSDEDUP_CONFIG": ""}).ingest.min_words > 0
    listed = load_settings(environ={
        "NEWSDEDUP_FETCH__ALLOW_PRIVATE_HOSTS": '["127.0.0.1", "::1"]',
        "NEWSDEDUP_MATCHING__STORY_LSH_WEIGHTS": "[0.3, 0.7]",
    })
    assert list(listed.fetch.allow_private_hosts) == ["127.0.0.1", "::1"]
    assert list(listed.matching.story_lsh_weights) == [0.3, 0.7]
    with pytest.raises(ConfigError, match="is not a TOML array"):
        load_settings(environ={"NEWSDEDUP_MATCHING__STORY_LSH_WEIGHTS": "[0.3, "})
