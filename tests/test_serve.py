"""Deployments built from config/sources.toml entries (no server needed to build them)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import PROJECT_ROOT, SourceConfig, load_sources


def _source(**fields) -> SourceConfig:
    return SourceConfig(**{"name": "s", "kind": "directory", "location": "seeds/", **fields})


def test_parameters_have_absolute_paths_and_the_kind_of_web_sources(tmp_path):
    from flows.serve import flow_parameters

    local = flow_parameters(_source(), "/d/stories.db", None)
    assert local == {"paths": [str(PROJECT_ROOT / "seeds")], "db": "/d/stories.db", "config": None, "kind": None}
    assert flow_parameters(_source(location=str(tmp_path)), "db", None)["paths"] == [str(tmp_path)]
    feed = flow_parameters(_source(kind="feed", location="https://example.org/rss"), "db", None)
    assert feed["paths"] == ["https://example.org/rss"] and feed["kind"] == "feed"


def test_schedules_become_cron_or_interval_arguments():
    from flows.serve import schedule_arguments

    assert schedule_arguments(_source(schedule={"cron": "*/30 * * * *"})) == {"cron": "*/30 * * * *"}
    assert schedule_arguments(_source(schedule={"interval_minutes": 90})) == {"interval": timedelta(minutes=90)}
    assert schedule_arguments(_source()) == {}


def test_one_deployment_per_enabled_source(tmp_path):
    from flows.serve import deployments_for

    sources = [
        _source(name="hourly", schedule={"interval_minutes": 60}),
        _source(name="nightly", kind="file", location="seeds/000_fcabe1ee31422c0a.txt", schedule={"cron": "0 3 * * *"}),
        _source(name="adhoc"),
        _source(name="off", enabled=False),
    ]
    deployments = deployments_for(sources, str(tmp_path / "stories.db"), "config/test.toml")
    by_name = {d.name: d for d in deployments}
    assert sorted(by_name) == ["adhoc", "hourly", "nightly"]
    assert by_name["hourly"].parameters == {
        "paths": [str(PROJECT_ROOT / "seeds")],
        "db": str(tmp_path / "stories.db"),
        "config": str(Path("config/test.toml").resolve()),
        "kind": None,
    }
    assert by_name["hourly"].schedules[0].schedule.interval == timedelta(hours=1)
    assert by_name["nightly"].schedules[0].schedule.cron == "0 3 * * *"
    assert not by_name["adhoc"].schedules
    assert all(d.flow_name == "newsdedup-ingest" for d in deployments)


def test_no_enabled_source_is_a_config_error(tmp_path):
    from flows.serve import deployments_for

    with pytest.raises(ConfigError, match="no enabled source"):
        deployments_for([_source(enabled=False)], str(tmp_path / "db"))


def test_the_shipped_sources_file_deploys():
    from flows.serve import deployments_for

    assert [d.name for d in deployments_for(load_sources(), "data/stories.db")] == ["seeds"]


def test_serving_warns_about_local_sources_whose_location_is_missing(tmp_path):
    from pipeline.web import missing_sources

    sources = [
        _source(name="inbox", location=str(tmp_path / "not-mounted")),
        _source(name="here", location=str(tmp_path)),
        _source(name="off", location=str(tmp_path / "gone"), enabled=False),
        _source(name="wire", kind="feed", location="https://example.org/feed.xml"),
    ]
    [warning] = missing_sources(sources)
    assert warning.startswith("source 'inbox': ") and "not-mounted does not exist" in warning


def test_the_local_server_deletes_finished_runs_after_two_weeks_unless_told_otherwise(tmp_path):
    """(QA pass: ~200 KB of the server's database a run, never deleted: 1-2 GB a day for six
    sources polled every minute.) Prefect itself must read the settings as meant."""
    import json
    import subprocess
    import sys

    from flows.server import RUN_RETENTION_S, server_environment

    def vacuum(env: dict[str, str]) -> dict:
        code = (
            "import json; from prefect.settings import get_current_settings as g; v = g().server.services.db_vacuum; "
            "print(json.dumps([sorted(v.enabled_vacuum_types), v.retention_period.total_seconds()]))"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    base = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_SERVER_SERVICES_DB_VACUUM")}
    kinds, seconds = vacuum(server_environment(tmp_path, "127.0.0.1", 4300, base))
    assert "flow_runs" in kinds and seconds == RUN_RETENTION_S == 14 * 24 * 3600
    kinds, seconds = vacuum(server_environment(
        tmp_path, "127.0.0.1", 4300, {**base, "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events",
                                       "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": "7200"}))
    assert kinds == ["events"] and seconds == 7200


def test_an_archive_table_adds_the_archive_flow_on_its_schedule(tmp_path):
    from flows.serve import deployments_for
    from pipeline.settings import ArchiveConfig

    archive = ArchiveConfig(to="data/archive.db", older_than_days=90, schedule={"cron": "30 3 * * *"})
    db = str(tmp_path / "stories.db")
    deployments = deployments_for([_source(name="hourly")], db, None, archive)
    assert [(d.flow_name, d.name) for d in deployments] == [("newsdedup-ingest", "hourly"), ("newsdedup-archive", "archive")]
    last = deployments[-1]
    assert last.parameters == {
        "db": db, "to": str(PROJECT_ROOT / "data" / "archive.db"), "older_than_days": 90, "by": "ingested", "config": None,
    }
    assert last.schedules[0].schedule.cron == "30 3 * * *"
    # An archive alone is something to serve too.
    assert [d.name for d in deployments_for([], db, None, archive)] == ["archive"]
