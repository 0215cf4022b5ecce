"""Deployments of the ingest flow, one per enabled configured source, served from this process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Sequence

from pipeline.errors import ConfigError
from pipeline.report import plural
from pipeline.settings import PROJECT_ROOT, ArchiveConfig, SourceConfig
from pipeline.web import missing_sources, source_location

from .archive import archive_flow
from .ingest import ingest_flow
from .server import require_configured_api

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


def schedule_arguments(source: SourceConfig | ArchiveConfig) -> dict:
    """`cron=` or `interval=` for `Flow.to_deployment`; empty for an ad-hoc-only source."""
    if source.schedule is None:
        return {}
    if source.schedule.cron:
        return {"cron": source.schedule.cron}
    if source.schedule.interval_minutes:
        return {"interval": timedelta(minutes=source.schedule.interval_minutes)}
    return {}


def deployments_for(
    sources: Sequence[SourceConfig], db: str, config: str | None = None, archive: ArchiveConfig | None = None,
) -> list:
    """One `RunnerDeployment` of the ingest flow per enabled source, named after the source, and
    with `archive`, one of the archive flow named "archive", last.

    Raises ConfigError when no source is enabled and there is no archive.
    """
    enabled = [source for source in sources if source.enabled]
    if not enabled and archive is None:
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
    if archive is not None:
        to = str((PROJECT_ROOT / archive.to).resolve())
        deployments.append(
            archive_flow.to_deployment(
                name="archive",
                parameters={"db": db, "to": to, "older_than_days": archive.older_than_days, "by": archive.by,
                            "config": config},
                description=f"newsdedup: move stories of {db} that have not grown for {archive.older_than_days:g} days "
                f"into {to}",
                tags=["newsdedup", "archive"],
                **schedule_arguments(archive),
            )
        )
    return deployments


# On Ctrl-C or SIGTERM the runner pauses the deployments' schedules through the API before it
# exits. With the API gone (its server stopped first), Prefect's client retries each call for
# over a minute; a service manager would wait that long, then kill the process anyway.
STOP_GRACE_S = 10.0
# Flow runs at once by default (`newsdedup serve --limit`).
DEFAULT_LIMIT = 2


def serve_sources(
    sources: Sequence[SourceConfig], db: str, config: str | None = None, limit: int | None = None,
    stop_grace_s: float = STOP_GRACE_S, archive: ArchiveConfig | None = None,
) -> None:
    """Register the deployments with the Prefect API and run their flow runs until Ctrl-C or SIGTERM.

    Stopping pauses the schedules; when the API does not answer within `stop_grace_s`, the
    process exits anyway (status 1) and says so.
    """
    from prefect.runner import Runner
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if not PREFECT_API_URL.value():
        raise ConfigError(
            "no Prefect server configured: start one with 'newsdedup server' (or 'make server') and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api, or log in to Prefect Cloud (prefect cloud login)"
        )
    require_configured_api()
    deployments = deployments_for(sources, db, config, archive)
    for warning in missing_sources(sources):
        print(f"warning: {warning}", file=sys.stderr)

    stopping = threading.Event()
    loop_of: dict[str, asyncio.AbstractEventLoop] = {}

    def stop_soon(signum: int, frame: object) -> None:
        if stopping.is_set():  # asked twice: the user is not waiting for the schedules
            print("newsdedup serve: stopped without pausing the schedules", file=sys.stderr, flush=True)
            os._exit(130 if signum == signal.SIGINT else 143)
        stopping.set()
        # While stopping, a server already gone makes Prefect's cancellation observer log its
        # failed websocket with a traceback; that is expected then, and _give_up says what matters.
        logging.getLogger("prefect.FlowRunCancellingObserver").setLevel(logging.ERROR)
        loop = loop_of.get("loop")
        if loop is None:
            raise KeyboardInterrupt
        # The schedules are paused first, on the runner's own loop, then the runner stops. (Raising
        # here instead, as Prefect's own handler does, cancelled the pausing part way: a QA pass
        # found 1-2 of 6 schedules paused, the rest piling up late runs. And the runner's own stop
        # cancels the runs in flight before it pauses anything, ~3 s a run.)
        loop.call_soon_threadsafe(lambda: stopper.append(loop.create_task(_stop())))

    stopper: list[asyncio.Task] = []  # (a reference, so the task is not collected mid-way)
    names = [f"{d.flow_name}/{d.name}" for d in deployments]

    async def _stop() -> None:
        with _grace(stop_grace_s):
            while not runner.started:  # a signal during start-up: astop() refuses a runner not started
                await asyncio.sleep(0.1)
            await _pause(names)
        await runner.astop()

    class _Runner(Runner):
        # Prefect's own handler calls the runner's synchronous stop() from inside its event loop,
        # which only makes a coroutine that is never awaited ("RuntimeWarning: coroutine
        # 'Runner.astop' was never awaited"), then exits at once.
        def handle_sigterm(self, *args: object, **kwargs: object) -> None:
            self._logger.info("SIGTERM received, stopping")
            stop_soon(signal.SIGTERM, None)

    # The runs of one database wait for each other (the run lock), so more at once would only
    # hold more processes in memory (~250 MB each); two let one start while another works.
    runner = _Runner(pause_on_shutdown=True, limit=limit or DEFAULT_LIMIT)
    for deployment in deployments:
        runner.add_deployment(deployment)
    ingests = len(deployments) - (archive is not None)
    print(
        f"serving {plural(ingests, 'deployment')} of the ingest flow into {Path(db).resolve()}"
        + (" and 1 of the archive flow" if archive is not None else "") + ":"
    )
    for deployment, source in zip(deployments, [s for s in sources if s.enabled]):
        print(f"  {deployment.flow_name}/{deployment.name}  {source.kind} {source_location(source)}  {_when(source)}")
    if archive is not None:
        print(f"  {deployments[-1].flow_name}/{deployments[-1].name}  stories not grown for "
              f"{archive.older_than_days:g} days -> {deployments[-1].parameters['to']}  {_when(archive)}")
    # (the variable too: a second terminal has none, and Prefect then asks a server of its own)
    print(f"run one now: PREFECT_API_URL={PREFECT_API_URL.value()} prefect deployment run "
          f"{deployments[0].flow_name}/{deployments[0].name}")
    if PREFECT_UI_URL.value():
        print(f"watch the runs: {PREFECT_UI_URL.value()}/deployments")
    print(f"at most {limit or DEFAULT_LIMIT} runs at once; Ctrl-C (or SIGTERM) stops serving and pauses the schedules",
          flush=True)
    signal.signal(signal.SIGINT, stop_soon)

    async def serve() -> None:
        loop_of["loop"] = asyncio.get_running_loop()
        await runner.start()

    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, SystemExit):
        pass
    except Exception as exc:
        if not stopping.is_set():
            raise
        print(f"newsdedup serve: stopped, but could not pause the schedules: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        os._exit(1)
    with _grace(stop_grace_s):
        paused = _paused(names)
    # (Deployments, not schedules: one served on demand only has none, and is paused all the same.)
    if paused < len(names):
        print(f"newsdedup serve: stopped, but only {paused} of {len(names)} deployments are paused; "
              "pause the rest in the Prefect UI, or start 'newsdedup serve' again", file=sys.stderr, flush=True)
        os._exit(1)
    print(f"stopped serving; {plural(len(names), 'deployment')} paused, schedules and all, until the next "
          "'newsdedup serve'", flush=True)


@contextmanager
def _grace(seconds: float) -> Iterator[None]:
    """Give up (exit 1, saying so) unless the block's calls to the API are done within `seconds`:
    with its server gone, Prefect's client retries each call for over a minute. A block that is
    cancelled or fails instead (the runner's loop shutting down) leaves the timer running."""
    timer = threading.Timer(seconds, _give_up, args=(seconds,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


async def _pause(names: Sequence[str]) -> None:
    """Pause the deployments `names` (flow/deployment) through the API."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for name in names:
            await client.pause_deployment((await client.read_deployment_by_name(name)).id)


def _paused(names: Sequence[str]) -> int:
    """How many of the deployments `names` (flow/deployment) the API shows paused now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return sum(1 for name in names if client.read_deployment_by_name(name).paused)


def _when(source: SourceConfig | ArchiveConfig) -> str:
    arguments = schedule_arguments(source)
    if "cron" in arguments:
        return f"cron {arguments['cron']}"
    if "interval" in arguments:
        minutes = arguments["interval"].total_seconds() / 60
        return f"every {minutes:g} min"
    return "on demand only"


def _give_up(grace_s: float) -> None:
    print(
        f"newsdedup serve: the Prefect API did not answer within {grace_s:.0f} s while stopping; "
        "exiting without pausing the schedules (the next 'newsdedup serve' takes them over)",
        file=sys.stderr, flush=True,
    )
    os._exit(1)
