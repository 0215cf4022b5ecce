"""Deployments of the ingest flow, one per enabled configured source, served from this process."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Sequence

from pipeline.errors import ConfigError
from pipeline.settings import SourceConfig
from pipeline.web import missing_sources, source_location

from .ingest import ingest_flow

# Source kinds whose location the flow must be told how to read (the flow's `kind` parameter).
_WEB_KINDS = ("feed", "sitemap", "page")


def flow_parameters(source: SourceConfig, db: str, config: str | None) -> dict:
    """The ingest flow's parameters for one source.

    Served runs start in a fresh process whose working directory is not the user's, so every
    path handed to the flow is absolute.
    """
    return {
        "paths": [source_location(source)],
        "db": db,
        "config": config,
        "kind": source.kind if source.kind in _WEB_KINDS else None,
    }


def schedule_arguments(source: SourceConfig) -> dict:
    """`cron=` or `interval=` for `Flow.to_deployment`; empty for an ad-hoc-only source."""
    if source.schedule is None:
        return {}
    if source.schedule.cron:
        return {"cron": source.schedule.cron}
    if source.schedule.interval_minutes:
        return {"interval": timedelta(minutes=source.schedule.interval_minutes)}
    return {}


def deployments_for(sources: Sequence[SourceConfig], db: str, config: str | None = None) -> list:
    """One `RunnerDeployment` of the ingest flow per enabled source, named after the source.

    Raises ConfigError when no source is enabled.
    """
    enabled = [source for source in sources if source.enabled]
    if not enabled:
        raise ConfigError("no enabled source in the sources file: nothing to serve (see config/sources.toml)")
    db = str(Path(db).resolve())
    config = str(Path(config).resolve()) if config else None
    deployments = []
    for source in enabled:
        deployments.append(
            ingest_flow.to_deployment(
                name=source.name,
                parameters=flow_parameters(source, db, config),
                description=f"newsdedup: ingest the {source.kind} {source.location} into {db}",
                tags=["newsdedup", source.kind],
                **schedule_arguments(source),
            )
        )
    return deployments


def serve_sources(sources: Sequence[SourceConfig], db: str, config: str | None = None, limit: int | None = None) -> None:
    """Register the deployments with the Prefect API and run their flow runs until Ctrl-C."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError(
            "no Prefect server configured: start one with 'newsdedup server' (or 'make server') and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api, or log in to Prefect Cloud (prefect cloud login)"
        )
    deployments = deployments_for(sources, db, config)
    for warning in missing_sources(sources):
        print(f"warning: {warning}", file=sys.stderr)
    serve(*deployments, limit=limit)
