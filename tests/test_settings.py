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
