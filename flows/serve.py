"""Deployments of the ingest flow, one per enabled configured source, served from this process."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Sequence

from pipeline.errors import ConfigError
from pipeline.settings import PROJECT_ROOT, SourceConfig

from .ingest import ingest_flow

_URL_KINDS = ("feed", "sitemap", "page")


def source_location(source: SourceConfig, root: Path = PROJECT_ROOT) -> str:
    """Where the flow reads a source: a URL as given, a path made absolute against the project.

    Served runs start in a fresh process whose working directory is not the user's, so every
    path handed to the flow must be absolute.
    """
    if source.kind in _URL_KINDS or "://" in source.location:
        return source.location
    path = Path(source.location)
    return str(path if path.is_absolute() else (root / path).resolve())


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
                parameters={"paths": [source_location(source)], "db": db, "config": config},
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
    serve(*deployments_for(sources, db, config), limit=limit)
