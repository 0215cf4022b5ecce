"""A local Prefect server for newsdedup: its own database under the project, ready when healthy.

`prefect server start` is run as a child process (its own session, so a Ctrl-C in the terminal
reaches us first and we stop it in order); ready means `/api/health` answers, which takes
10-30 s on a small machine while the server migrates its database and builds the UI.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

DEFAULT_HOME = PROJECT_ROOT / ".prefect"
DEFAULT_PORT = 4200
# A cold start (database migrations, UI build copied into PREFECT_HOME) measured 10-30 s on
# 2 busy cores; give it several times that before calling it failed.
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


class ServerError(PipelineError):
    """The local Prefect server could not start or did not become healthy, or the configured one
    does not answer."""

    exit_code = 5


@dataclass
class LocalServer:
    """A running `prefect server start` child process and where to reach it."""

    process: subprocess.Popen
    host: str
    port: int
    home: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def stop(self) -> int:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); returns its exit code."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode


_WATCHDOG = Path(__file__).with_name("watchdog.py")
# The watchdog of each guarded process id (kept, so that none is collected while it runs).
_watchdogs: dict[int, subprocess.Popen] = {}


def stop_with_this_process(pid: int, group: bool = False) -> None:
    """Have the child process `pid` (with `group`: its process group) stopped when this process
    dies, even by SIGKILL or the OOM killer, which skip every exit handler (see flows/watchdog.py).

    Idempotent per pid. Costs one small process, which exits with the child or with us.
    """
    for guarded, watchdog in list(_watchdogs.items()):
        if watchdog.poll() is not None:
            del _watchdogs[guarded]
    if pid in _watchdogs:
        return
    command = [sys.executable, "-I", "-S", str(_WATCHDOG), str(os.getpid()), str(pid)] + (["--group"] if group else [])
    try:
        # Its own session: a Ctrl-C in the terminal is for us, and we stop the server in order.
        _watchdogs[pid] = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("no watchdog for process %d (%s): if this process is killed, stop it by hand", pid, exc)


def guard_embedded_server() -> None:
    """If this process runs Prefect's embedded server, make it stop when this process dies.

    Prefect starts that server (a uvicorn child) on a run's first API call when PREFECT_API_URL
    is unset, and stops it from an exit handler, which a SIGKILL skips: the server then lived on
    as an orphan, holding its port, memory and database.
    """
    from prefect.server.api.server import SubprocessASGIServer

    # Prefect's own handle on the server it started for this process (a singleton per port;
    # None is the embedded server's key, which Prefect's test harness takes over too).
    server = SubprocessASGIServer._instances.get(None)
    process = getattr(server, "server_process", None)
    if process is not None and process.poll() is None:
        stop_with_this_process(process.pid)


class _InOwnSession:
    """The `subprocess` module as Prefect's server module sees it while `start_embedded_server`
    runs: the same, except that Popen starts its child in a session of its own."""

    def __getattr__(self, name: str) -> object:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args, **kwargs) -> subprocess.Popen:  # noqa: N802 (the name it stands in for)
        process = subprocess.Popen(*args, **{**kwargs, "start_new_session": True})
        # Watched from the moment it exists, not once it answers: the start takes 10-30 s here,
        # and a run SIGKILLed meanwhile left the server running for good (its own session
        # spares it the group's kill; a QA pass found seven such servers).
        stop_with_this_process(process.pid)
        return process


def start_embedded_server() -> None:
    """Start Prefect's embedded server for this process now, in a session of its own, unless an
    API is configured (PREFECT_API_URL) or it runs already.

    Prefect starts it on a run's first API call as a child in our process group, so a Ctrl-C in
    the terminal reached it too: it died at once, and the interrupted run then hung for minutes
    retrying to report itself Crashed to a server that was gone. In its own session only we
    receive the Ctrl-C; the run reports itself, and Prefect's exit handler stops the server.
    (Prefect 3.8 has no option for this: its server module's `subprocess` is swapped for the
    start alone.)
    """
    from prefect.server.api import server as server_module
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    server = server_module.SubprocessASGIServer()
    if not server.running:
        server_module.subprocess = _InOwnSession()  # type: ignore[assignment]
        try:
            server.start()
        finally:
            server_module.subprocess = subprocess
    guard_embedded_server()


def embedded_server_url() -> str | None:
    """The API URL of the embedded server Prefect runs for this process, if it runs one."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    process = getattr(server, "server_process", None)
    if process is None or process.poll() is not None:
        return None
    return server.api_url


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


# How long `newsdedup server` keeps finished flow runs (their states, logs and task runs).
RUN_RETENTION_S = 14 * 24 * 3600


def server_environment(home: Path, host: str, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server on `host:port` whose state lives in `home`, with telemetry off."""
    env = dict(os.environ if base is None else base)
    env.update(
        PREFECT_HOME=str(home),
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL=env.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
        # The UI is told where the API is from these settings, not from the --host/--port
        # arguments: without them it calls 127.0.0.1:4200 whatever port the server is on.
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=f"http://{host}:{port}/api",
        # Every run keeps ~200 KB in the server's database (states, logs, task runs, events): a
        # QA pass of 6 sources polled every 30-60 s grew it to 39 MB in half an hour, 1-2 GB a
        # day. Prefect's vacuum service deletes only old events unless told to delete old flow
        # runs too; here runs ended over `retention` ago go, checked hourly. Set either variable
        # to keep more (Prefect accepts "events" alone, or a retention in seconds, over 1 hour).
        PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=env.get("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events,flow_runs"),
        PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD=env.get(
            "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD", str(RUN_RETENTION_S)
        ),
    )
    # A server started here serves its own API: a client setting inherited from the shell
    # (pointing at another server or at Prefect Cloud) must not leak into it.
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        env.pop(name, None)
    return env


def _health_status(api_url: str, timeout_s: float) -> int:
    """The HTTP status the Prefect API at `api_url` answers its health check with.

    Raises:
        urllib.error.URLError, OSError, ValueError: nothing answered (or the URL is not one).
    """
    try:
        with urllib.request.urlopen(api_url + "/health", timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """True when the Prefect API at `api_url` answers its health check."""
    try:
        return _health_status(api_url, timeout_s) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def require_configured_api(timeout_s: float = 5.0, otherwise: str = "") -> None:
    """When PREFECT_API_URL names a server, make sure something answers there before a run starts.

    Prefect's own client would retry for a while, then fail with a hundred lines of traceback
    (a QA pass: `RuntimeError: Failed to reach API`). Any HTTP answer counts, an error status
    included (Prefect Cloud wants its key first); only no answer at all is refused.

    `otherwise` ends the message with another way out.

    Raises:
        ServerError: the configured API does not answer.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return  # a run starts a server of its own
    try:
        _health_status(url.rstrip("/"), timeout_s)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(
            f"the Prefect API at {url} (PREFECT_API_URL) does not answer ({reason}): start that server "
            f"('newsdedup server'), or point PREFECT_API_URL at one that runs{otherwise}"
        ) from None


def start_server(host: str = "127.0.0.1", port: int = DEFAULT_PORT, home: Path = DEFAULT_HOME) -> LocalServer:
    """Start `prefect server start` with its database in `home` and wait until it is healthy.

    Raises ServerError when the port is taken, or the server exits or stays unhealthy.
    """
    if port_in_use(host, port):
        raise ServerError(
            f"port {port} on {host} is already in use: is a Prefect server running there? "
            f"(open http://{host}:{port}, or choose another with --port)"
        )
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
            env=server_environment(home, host, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    # `prefect server start` runs uvicorn as a child of its own: stop their whole group.
    stop_with_this_process(process.pid, group=True)
    server = LocalServer(process, host, port, home, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not healthy(server.api_url):
        if process.poll() is not None:
            raise ServerError(f"the Prefect server exited with code {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            server.stop()
            raise ServerError(f"the Prefect server did not answer {server.api_url}/health in "
                              f"{STARTUP_TIMEOUT_S:.0f}s; see {log_path}")
        time.sleep(0.5)
    return server


def run_server(host: str, port: int, home: Path, out=sys.stdout) -> int:
    """Start the server, say where it is, and keep it running until Ctrl-C or SIGTERM."""
    started = time.monotonic()
    print(f"starting a Prefect server on {host}:{port} (state in {Path(home).resolve()}) ...", file=out, flush=True)
    server = start_server(host, port, home)
    print(
        f"Prefect server ready in {time.monotonic() - started:.0f}s\n"
        f"  UI:   {server.url}\n"
        f"  API:  {server.api_url}\n"
        f"  logs: {server.log_path}\n"
        f"In another terminal: export PREFECT_API_URL={server.api_url}; then 'newsdedup serve' or "
        f"'newsdedup ingest PATH' report to it.\nPress Ctrl-C to stop.",
        file=out, flush=True,
    )

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    # A shell that starts us in the background sets SIGINT to "ignore", and Python keeps that:
    # restore Ctrl-C so the server can always be stopped in order.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = server.process.wait()
        print(f"the Prefect server exited with code {code}; see {server.log_path}", file=out, flush=True)
        return 1 if code else 0
    except KeyboardInterrupt:
        print("stopping the Prefect server ...", file=out, flush=True)
        code = server.stop()
        # Ended by the SIGTERM we sent (or killed after the grace period): a plain stop, said
        # plainly ("exit code -15" read as a failure to a QA pass).
        said = {0: "", -signal.SIGTERM: "", -signal.SIGKILL: " (it did not stop in time and was killed)"}
        print(f"stopped{said.get(code, f' (exit code {code})')}", file=out, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        server.stop()
