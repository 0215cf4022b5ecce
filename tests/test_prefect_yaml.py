"""prefect.yaml deploys what config/sources.toml configures: same sources, schedules, locations."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from pipeline.settings import PROJECT_ROOT, load_sources


def _deployments() -> dict[str, dict]:
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    return {deployment["name"]: deployment for deployment in config["deployments"]}


def test_every_enabled_source_is_deployed_with_its_schedule_and_location():
    deployments = _deployments()
    enabled = [source for source in load_sources() if source.enabled]
    assert sorted(deployments) == sorted(source.name for source in enabled)
    for source in enabled:
        deployment = deployments[source.name]
        assert deployment["parameters"]["paths"] == [source.location]
        schedules = deployment.get("schedules") or []
        if source.schedule is None:
            assert schedules == []
        elif source.schedule.cron:
            assert schedules == [{"cron": source.schedule.cron}]
        else:
            assert schedules == [{"interval": source.schedule.interval_minutes * 60}]


def test_deployments_point_at_the_ingest_flow_with_its_parameters():
    from flows.ingest import ingest_flow

    accepted = set(inspect.signature(ingest_flow.fn).parameters)
    for deployment in _deployments().values():
        path, _, name = deployment["entrypoint"].partition(":")
        assert (PROJECT_ROOT / path).resolve() == Path(inspect.getfile(ingest_flow.fn)).resolve()
        assert name == "ingest_flow"
        assert set(deployment["parameters"]) <= accepted
        assert deployment["work_pool"]["name"] == "newsdedup"
