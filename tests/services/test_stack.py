"""The local stack: Label Studio's environment (telemetry off, SSRF protection on with only the
backend let through), checked on the dict and, where the Label Studio virtualenv exists, on Label
Studio's own code loaded under that environment; the embedded Redis (snapshots, password) on a
real redis-server; private files; the generated secrets; what `ps` says of a backend that refuses
the login."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loop.services.settings import Settings
from loop.services.stack import TELEMETRY_OFF, label_studio_env
from loop.services.workspace import Credentials, Workspace
from tests.helpers import REPO

CREDS = Credentials(username="admin@loop.local", password="pw", token="tok")


@pytest.fixture
def env(tmp_path):
    return label_studio_env(Workspace(Settings(workspace=str(tmp_path / "ws"))), CREDS)


# Each phone-home, the value that switches it off, and what reading it finds with Label Studio's
# precedence (label_studio/core/utils/params.py `get_env`: LABEL_STUDIO_X, then HEARTEX_X, then X).
OFF = {
    "SENTRY_DSN": "",                 # server Sentry: core/utils/sentry.py inits only `if settings.SENTRY_DSN`
    "FRONTEND_SENTRY_DSN": "",        # browser Sentry: templates/base.html `{% if settings.FRONTEND_SENTRY_DSN %}`
    "COLLECT_ANALYTICS": "false",     # tele.labelstud.io, gtag, /__lsa: core/utils/contextlog.py, templates
    "LATEST_VERSION_CHECK": "false",  # pypi.org: core/utils/common.py check_for_the_latest_version
    "FEATURE_FLAGS_OFFLINE": "true",  # LaunchDarkly: core/feature_flags/base.py
}


def ls_get_env(environ: dict[str, str], name: str) -> str | None:
    """Label Studio's lookup order, label_studio/core/utils/params.py lines 114-122."""
    for key in ("LABEL_STUDIO_" + name, "HEARTEX_" + name, name):
        if key in environ:
            return environ[key]
    return None


def test_every_phone_home_is_switched_off(env):
    assert set(TELEMETRY_OFF) <= set(env) and all(env[k] == v for k, v in TELEMETRY_OFF.items())
    for name, off in OFF.items():
        assert ls_get_env(env, name) == off, name


def test_the_shell_cannot_switch_telemetry_back_on(env):
    # `loop up` starts Label Studio with {**os.environ, **label_studio_env(...)}: settings exported
    # by the shell under the plain or HEARTEX_ names lose to the LABEL_STUDIO_ names loop sets.
    shell = {name: "https://key@example.invalid/1" if name.endswith("DSN") else ("false" if off == "true" else "true")
             for name, off in OFF.items()}
    shell |= {"HEARTEX_" + k: v for k, v in shell.items()}
    merged = {**shell, **env}
    for name, off in OFF.items():
        assert ls_get_env(merged, name) == off, name


def test_the_rest_of_the_environment_is_unchanged(env, tmp_path):
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str((tmp_path / "ws" / "label-studio").resolve())
    assert env["LABEL_STUDIO_USERNAME"] == "admin@loop.local" and env["LABEL_STUDIO_USER_TOKEN"] == "tok"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"


PROBE = """
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ['DJANGO_SETTINGS_MODULE'] = 'label_studio.core.settings.label_studio'
from django.conf import settings
import sentry_sdk
print(json.dumps({"SENTRY_DSN": settings.SENTRY_DSN, "FRONTEND_SENTRY_DSN": settings.FRONTEND_SENTRY_DSN,
                  "COLLECT_ANALYTICS": settings.COLLECT_ANALYTICS,
                  "LATEST_VERSION_CHECK": settings.LATEST_VERSION_CHECK,
                  "FEATURE_FLAGS_OFFLINE": settings.FEATURE_FLAGS_OFFLINE,
                  "sentry_active": sentry_sdk.get_client().is_active()}))
"""


def label_studio_python() -> Path:
    venv = Path(os.environ.get("LOOP_LABEL_STUDIO_VENV") or REPO / ".venv-label-studio")
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Label Studio virtualenv at {venv} (`make install` makes it; or set LOOP_LABEL_STUDIO_VENV)")
    return python


def test_label_studio_loads_its_settings_with_telemetry_off(env, tmp_path):
    """Label Studio's real settings module, under the environment `loop up` gives it, with a shell
    that asks for every phone-home (Sentry pointed at a closed local port, so a failure of this
    test sends nothing anywhere)."""
    python = label_studio_python()
    shell = {"SENTRY_DSN": "http://key@127.0.0.1:9/1", "FRONTEND_SENTRY_DSN": "http://key@127.0.0.1:9/2",
             "COLLECT_ANALYTICS": "true", "FEATURE_FLAGS_OFFLINE": "false"}
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **shell, **env}
    Path(env["LABEL_STUDIO_BASE_DATA_DIR"]).mkdir(parents=True)
    out = subprocess.run([str(python), "-c", PROBE], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": False,
                     "LATEST_VERSION_CHECK": False, "FEATURE_FLAGS_OFFLINE": True, "sentry_active": False}


# -- SSRF: Label Studio's protection stays on, only the ML backend's address is let through ------------
def test_the_banned_list_is_label_studios_minus_exactly_the_backend():
    from loop.services.stack import LS_DEFAULT_BANNED_SUBNETS, ssrf_banned_subnets

    banned = [ipaddress.ip_network(n) for n in ssrf_banned_subnets(["127.0.0.1"])]

    def refused(address: str) -> bool:
        return any(ipaddress.ip_address(address) in net for net in banned)

    assert not refused("127.0.0.1")
    for net in map(ipaddress.ip_network, LS_DEFAULT_BANNED_SUBNETS):  # the rest of every range stays banned
        for address in (net.network_address, net.broadcast_address, net.network_address + net.num_addresses // 2):
            assert refused(str(address)) or str(address) == "127.0.0.1", address
    for address in ("127.0.0.2", "127.0.0.0", "127.255.255.254", "10.0.0.1", "169.254.169.254", "::1", "0.0.0.0"):
        assert refused(address), address
    assert not refused("8.8.8.8")


def test_a_backend_named_by_host_name_is_let_through_at_every_address_it_resolves_to(tmp_path):
    from loop.services.stack import backend_addresses, ssrf_env

    settings = Settings(workspace=str(tmp_path), ml_backend_url="http://localhost:9090", ml_backend_password="x")
    assert "127.0.0.1" in backend_addresses(settings)
    assert backend_addresses(Settings(workspace=str(tmp_path))) == ["127.0.0.1"]
    assert backend_addresses(Settings(workspace=str(tmp_path), ml_backend_url="http://10.1.2.3:9090",
                                      ml_backend_password="x")) == ["10.1.2.3"]
    env = ssrf_env(settings)
    banned = [ipaddress.ip_network(n) for n in env["LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS"].split(",")]
    for address in backend_addresses(settings):
        assert not any(ipaddress.ip_address(address) in net for net in banned), address
    assert env["LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert env["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"] == "true" and env["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"] == "true"


def test_the_shell_cannot_switch_ssrf_protection_off(env):
    shell = {"SSRF_PROTECTION_ENABLED": "false", "HEARTEX_SSRF_PROTECTION_ENABLED": "false",
             "ML_BLOCK_LOCAL_IP": "false", "USER_ADDITIONAL_BANNED_SUBNETS": "",
             "USE_DEFAULT_BANNED_SUBNETS": "false"}
    merged = {**shell, **env}
    assert ls_get_env(merged, "SSRF_PROTECTION_ENABLED") == "true"
    assert ls_get_env(merged, "ML_BLOCK_LOCAL_IP") == "true"
    assert "10.0.0.0/8" in ls_get_env(merged, "USER_ADDITIONAL_BANNED_SUBNETS").split(",")


SSRF_PROBE = """
import ast, inspect, json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ['DJANGO_SETTINGS_MODULE'] = 'label_studio.core.settings.label_studio'
from django.conf import settings
from core.utils import io
from core.utils.exceptions import SsrfBlockedUrlError
# Label Studio's own default list, read from validate_ip's source.
tree = ast.parse(inspect.getsource(io.validate_ip).strip())
default = next(ast.literal_eval(n.value) for n in ast.walk(tree)
               if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == 'default_banned_subnets')
def verdict(call, arg):
    try:
        call(arg)
        return 'allowed'
    except SsrfBlockedUrlError as exc:
        return str(exc)
addresses = json.loads(sys.argv[1])
print(json.dumps({"default": default, "protection": settings.SSRF_PROTECTION_ENABLED,
                  "ml_block_local_ip": settings.ML_BLOCK_LOCAL_IP,
                  "ips": {a: verdict(io.validate_ip, a) for a in addresses},
                  "urls": {u: verdict(io.validate_url_for_ssrf, u) for u in
                           ("http://127.0.0.1:9090/webhook", "http://169.254.169.254/latest/meta-data",
                            "http://10.0.0.1/x.json", "http://127.0.0.2:8480/api/projects")}}))
"""


def test_label_studio_refuses_every_private_address_but_the_backends(env, tmp_path):
    """Label Studio's own `validate_ip`, under the environment `loop up` gives it, with a shell that
    asks for no protection: every address its default list bans is still refused, but 127.0.0.1."""
    from loop.services.stack import LS_DEFAULT_BANNED_SUBNETS

    python = label_studio_python()
    addresses = ["127.0.0.1"]
    for net in map(ipaddress.ip_network, LS_DEFAULT_BANNED_SUBNETS):
        addresses += [str(net.network_address), str(net.broadcast_address),
                      str(net.network_address + net.num_addresses // 2)]
    shell = {"SSRF_PROTECTION_ENABLED": "false", "USE_DEFAULT_BANNED_SUBNETS": "false", "ML_BLOCK_LOCAL_IP": "false"}
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **shell, **env}
    Path(env["LABEL_STUDIO_BASE_DATA_DIR"]).mkdir(parents=True)
    out = subprocess.run([str(python), "-c", SSRF_PROBE, json.dumps(addresses)], env=run_env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["default"] == list(LS_DEFAULT_BANNED_SUBNETS)  # loop's copy is Label Studio's list
    assert found["protection"] is True and found["ml_block_local_ip"] is True
    assert found["ips"].pop("127.0.0.1") == "allowed"
    assert {a: v for a, v in found["ips"].items() if "reserved network address" not in v} == {}
    urls = found["urls"]
    assert urls.pop("http://127.0.0.1:9090/webhook") == "allowed"
    assert all("reserved network address" in v for v in urls.values()), urls


# -- the embedded Redis: snapshots on, a password required -------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_redis(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command)
        return s.recv(200)


@pytest.fixture
def embedded_redis(tmp_path):
    """`loop up`'s Redis, started by `_start_redis` in a throwaway workspace; stopped by PID."""
    from loop.services import stack

    settings = Settings(workspace=str(tmp_path / "ws"), redis_port=free_port(), startup_timeout=20)
    ws = Workspace(settings)
    ws.ensure()
    stack._start_redis(ws, log=lambda m: None)
    pid = int(ws.pid_file("redis").read_text())
    yield settings, pid
    stack.stop_pid(pid)


def test_redis_keeps_its_snapshot_rule_and_requires_the_password(embedded_redis):
    import redis

    from loop.services.workspace import redis_password, redis_url

    settings, pid = embedded_redis
    port = settings.redis_port
    assert raw_redis(port, b"PING\r\n").startswith(b"-NOAUTH")  # no password: refused
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong").ping()
    client = redis.Redis.from_url(redis_url(settings))
    assert client.ping()
    assert client.config_get("save") == {"save": "60 1"}  # one argv word per value: the rule holds
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    # The password is in the URL every process gets, never on redis-server's command line (`ps`) or in its log.
    password = redis_password(settings)
    assert f":{password}@" in redis_url(settings) and len(password) >= 32
    assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert password not in Workspace(settings).log_file("redis").read_text()


def test_redis_url_and_what_may_be_shown_of_it(tmp_path):
    from loop.services.workspace import redacted, redis_password, redis_url

    settings = Settings(workspace=str(tmp_path / "ws"), redis_port=6391)
    url = redis_url(settings)
    password = redis_password(settings)
    assert url == f"redis://:{password}@127.0.0.1:6391/0" and redis_url(settings) == url  # generated once
    assert redacted(url) == "redis://:***@127.0.0.1:6391/0"
    assert redacted("redis://user:pw@host:6379/2") == "redis://user:***@host:6379/2"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
    external = Settings(workspace=str(tmp_path / "ws2"), redis_url="redis://:given@elsewhere:6379/1")
    assert redis_url(external) == "redis://:given@elsewhere:6379/1"  # REDIS_URL overrides, as is
    assert not Workspace(external).credentials_file.exists()  # nothing generated for a Redis we do not run


# -- private files ------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_services_create_private_files_and_so_does_spawn(tmp_path):
    """A service started by `_spawn` runs with umask 077, whatever this process's umask is."""
    from loop.services import stack

    ws = Workspace(Settings(workspace=str(tmp_path / "ws")))
    ws.ensure()
    script = ("import os, sys; open('made.txt', 'w').write('x'); os.mkdir('made-dir'); "
              "sys.stdout.write(sys.stdin.read())")
    old = os.umask(0o022)
    try:
        pid = stack._spawn(ws, "probe", [sys.executable, "-c", script], {}, stdin_text="secret-from-stdin")
    finally:
        os.umask(old)
    deadline = time.monotonic() + 20
    while stack._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mode(ws.root / "made.txt") == 0o600 and mode(ws.root / "made-dir") == 0o700
    assert mode(ws.log_file("probe")) == 0o600 and mode(ws.pid_file("probe")) == 0o600
    assert mode(ws.log_file("probe").parent) == 0o700 and mode(ws.pid_file("probe").parent) == 0o700
    assert ws.log_file("probe").read_text() == "secret-from-stdin"  # stdin reached it (how Redis gets its password)
    assert int(ws.pid_file("probe").read_text()) == pid


def test_up_takes_group_and_other_permissions_off_what_an_older_loop_left(tmp_path):
    from loop.services.stack import make_private

    venv = tmp_path / "ws" / "label-studio-venv"
    ws = Workspace(Settings(workspace=str(tmp_path / "ws")))
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (ws.root / "label-studio" / "media").mkdir(parents=True)
    db = ws.root / "label-studio" / "label_studio.sqlite3"
    db.write_text("admin token")
    (ws.root / "logs").mkdir()
    (ws.root / "logs" / "ml-backend.log").write_text("log")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (ws.root / "link").symlink_to(outside)
    for path in (db, db.parent, db.parent / "media", ws.root / "logs", ws.root / "logs" / "ml-backend.log"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(venv / "bin" / "python", 0o755)
    changed = make_private(ws)
    assert db in changed and mode(db) == 0o600 and mode(db.parent) == 0o700
    assert mode(db.parent / "media") == 0o700 and mode(ws.root / "logs" / "ml-backend.log") == 0o600
    assert mode(ws.root) == 0o700
    assert mode(outside) == 0o644  # a symlink's target is not the workspace's
    assert mode(venv / "bin" / "python") == 0o755  # the virtualenv holds no secret and is left alone
    assert make_private(ws) == []


# -- the generated secrets and the backend's login ---------------------------------------------
def test_the_backend_login_is_generated_once_and_kept(tmp_path):
    from loop.services.workspace import backend_login, credentials

    settings = Settings(workspace=str(tmp_path / "ws"))
    login = backend_login(settings)
    assert login is not None and login[0] == "label-studio" and len(login[1]) >= 24
    assert backend_login(settings) == login == Workspace(settings).backend_login()
    path = Workspace(settings).credentials_file
    assert mode(path) == 0o600
    kept = json.loads(path.read_text())
    assert (kept["ml_backend_user"], kept["ml_backend_password"]) == login
    creds = credentials(settings)  # the other secrets join the same file; none is redrawn
    assert json.loads(path.read_text())["ml_backend_password"] == login[1]
    assert json.loads(path.read_text())["token"] == creds.token == credentials(settings).token


def test_an_older_credentials_file_gains_the_new_secrets_and_keeps_its_own(tmp_path):
    from loop.services.workspace import backend_login, credentials, redis_password

    settings = Settings(workspace=str(tmp_path / "ws"))
    Workspace(settings).ensure()
    Workspace(settings).credentials_file.write_text(json.dumps({"password": "old-pw", "token": "old-token"}))
    os.chmod(Workspace(settings).credentials_file, 0o644)
    assert redis_password(settings) and backend_login(settings)
    kept = json.loads(Workspace(settings).credentials_file.read_text())
    assert kept["password"] == "old-pw" and kept["token"] == "old-token" and credentials(settings).token == "old-token"
    assert {"redis_password", "ml_backend_user", "ml_backend_password"} <= set(kept)
    assert mode(Workspace(settings).credentials_file) == 0o600


def test_a_broken_credentials_file_is_an_error_naming_it(tmp_path):
    from loop.errors import ConfigError
    from loop.services.workspace import backend_login

    settings = Settings(workspace=str(tmp_path / "ws"))
    Workspace(settings).ensure()
    Workspace(settings).credentials_file.write_text("{not json")
    with pytest.raises(ConfigError, match="credentials.json"):
        backend_login(settings)


def test_a_named_login_wins_and_opting_out_is_explicit(tmp_path):
    from loop.errors import ConfigError
    from loop.services.workspace import backend_login

    ws = str(tmp_path / "ws")
    assert backend_login(Settings(workspace=ws, ml_backend_user="ls", ml_backend_password="pw")) == ("ls", "pw")
    assert backend_login(Settings(workspace=ws, ml_backend_password="pw")) == ("label-studio", "pw")
    assert backend_login(Settings(workspace=ws, ml_backend_auth="off")) is None
    assert not Path(ws).exists()  # neither generated anything
    with pytest.raises(ConfigError, match="LOOP_ML_BACKEND_PASSWORD") as exc:  # a backend loop does not run
        backend_login(Settings(workspace=ws, ml_backend_url="http://backend.example:9090"))
    assert "LOOP_ML_BACKEND_AUTH=off" in str(exc.value)
    assert backend_login(Settings(workspace=ws, ml_backend_url="http://b:9090", ml_backend_auth="off")) is None


def test_the_backend_process_gets_exactly_the_resolved_login():
    from loop.services.stack import backend_login_env

    assert backend_login_env(("u", "p")) == {"LOOP_ML_BACKEND_AUTH": "on", "LOOP_ML_BACKEND_USER": "u",
                                             "LOOP_ML_BACKEND_PASSWORD": "p"}
    off = backend_login_env(None)
    assert off["LOOP_ML_BACKEND_AUTH"] == "off" and off["LOOP_ML_BACKEND_PASSWORD"] == ""


# -- `ps` of a backend that refuses the login -----------------------------------------------------
@pytest.fixture
def refusing_backend():
    """A tiny HTTP server on a free port that answers every GET with 401, as a backend with another login does."""

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="loop"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_ps_says_the_backend_refused_the_login(refusing_backend, tmp_path):
    from loop.services import stack

    closed = free_port()
    settings = Settings(workspace=str(tmp_path / "ws"), ml_backend_port=refusing_backend, redis_port=closed,
                        label_studio_port=closed)
    backend = next(s for s in stack.ps(settings) if s.name == "ml-backend")
    assert not backend.healthy and backend.state == "login refused"
    assert "HTTP 401 with loop's login" in backend.detail and "`loop down` and `loop up`" in backend.detail
    ls = next(s for s in stack.ps(settings) if s.name == "label-studio")
    assert ls.state == "down" and ls.detail.startswith("not answering")
    redis_row = next(s for s in stack.ps(settings) if s.name == "redis")
    assert ":***@" in redis_row.url  # `ps` never shows Redis's password


def test_ps_of_an_external_backend_without_a_login_says_what_to_set(refusing_backend, tmp_path):
    from loop.services import stack

    settings = Settings(workspace=str(tmp_path / "ws"), ml_backend_url=f"http://127.0.0.1:{refusing_backend}")
    backend = next(s for s in stack.ps(settings) if s.name == "ml-backend")
    assert backend.state == "login refused" and not backend.managed
    assert "without a login" in backend.detail and "LOOP_ML_BACKEND_PASSWORD" in backend.detail


def test_up_stops_waiting_for_a_backend_that_refuses_the_login(refusing_backend):
    from loop.errors import ServiceUnavailable
    from loop.services import stack

    with pytest.raises(ServiceUnavailable, match="login refused"):
        stack._backend_ready(f"http://127.0.0.1:{refusing_backend}", ("label-studio", "pw"))


# -- Label Studio on PostgreSQL (LOOP_LABEL_STUDIO_DB=postgres) -----------------------------------
def pg_settings(tmp_path, **kw) -> Settings:
    return Settings(workspace=str(tmp_path / "ws"), label_studio_db="postgres", **kw)


def test_label_studio_stays_on_sqlite_by_default_and_nothing_is_made_for_postgres(env, tmp_path):
    assert env["LABEL_STUDIO_DJANGO_DB"] == "sqlite"
    assert not any(k.startswith("LABEL_STUDIO_POSTGRE_") for k in env)
    ws = Workspace(Settings(workspace=str(tmp_path / "ws")))
    assert ws.label_studio_db() == "sqlite"
    assert not ws.credentials_file.exists()  # no PostgreSQL password generated for SQLite
    from loop.services.stack import _managed
    assert "postgres" not in _managed(ws.settings)


def test_label_studio_on_postgres_gets_the_database_and_the_kept_password(tmp_path):
    from loop.services.stack import PG_DATABASE, PG_ROLE, _managed
    from loop.services.workspace import postgres_password

    settings = pg_settings(tmp_path, postgres_port=5999)
    env = label_studio_env(Workspace(settings), CREDS)
    password = postgres_password(settings)
    assert len(password) >= 32 and password == json.loads(Workspace(settings).credentials_file.read_text())[
        "postgres_password"]
    assert {k: v for k, v in env.items() if "DJANGO_DB" in k or "POSTGRE" in k} == {
        "LABEL_STUDIO_DJANGO_DB": "postgresql", "LABEL_STUDIO_POSTGRE_NAME": PG_DATABASE,
        "LABEL_STUDIO_POSTGRE_USER": PG_ROLE, "LABEL_STUDIO_POSTGRE_PASSWORD": password,
        "LABEL_STUDIO_POSTGRE_HOST": "127.0.0.1", "LABEL_STUDIO_POSTGRE_PORT": "5999"}
    # A shell's DJANGO_DB / POSTGRE_* lose to loop's prefixed names, as the telemetry switches do.
    shell = {"DJANGO_DB": "sqlite", "POSTGRE_HOST": "db.example", "HEARTEX_POSTGRE_PASSWORD": "other"}
    merged = {**shell, **env}
    assert ls_get_env(merged, "DJANGO_DB") == "postgresql" and ls_get_env(merged, "POSTGRE_HOST") == "127.0.0.1"
    assert ls_get_env(merged, "POSTGRE_PASSWORD") == password
    assert _managed(settings)[:2] == ["redis", "postgres"]  # started before Label Studio
    assert mode(Workspace(settings).credentials_file) == 0o600


DB_PROBE = """
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ['DJANGO_SETTINGS_MODULE'] = 'label_studio.core.settings.label_studio'
from django.conf import settings
import psycopg
db = settings.DATABASES['default']
print(json.dumps({k: db.get(k) for k in ('ENGINE', 'NAME', 'USER', 'PASSWORD', 'HOST', 'PORT')}))
"""


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_label_studio_reads_the_database_loop_gives_it(db, tmp_path):
    """Label Studio's real settings module under `loop up`'s environment, with a shell naming another
    database: it picks loop's (and has psycopg, the driver it needs for PostgreSQL)."""
    python = label_studio_python()
    settings = Settings(workspace=str(tmp_path / "ws"), label_studio_db=db, postgres_port=5999)
    env = label_studio_env(Workspace(settings), CREDS)
    shell = {"DJANGO_DB": "mysql", "POSTGRE_HOST": "db.example", "POSTGRE_PORT": "1"}
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **shell, **env}
    Path(env["LABEL_STUDIO_BASE_DATA_DIR"]).mkdir(parents=True)
    out = subprocess.run([str(python), "-c", DB_PROBE], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if db == "sqlite":
        assert found["ENGINE"] == "django.db.backends.sqlite3"
        assert found["NAME"] == str(Workspace(settings).label_studio_dir / "label_studio.sqlite3")
    else:
        assert found == {"ENGINE": "django.db.backends.postgresql", "NAME": "label_studio", "USER": "label_studio",
                         "PASSWORD": env["LABEL_STUDIO_POSTGRE_PASSWORD"], "HOST": "127.0.0.1", "PORT": 5999}


def fake_bin(folder: Path, programs=("initdb", "postgres", "pg_isready")) -> Path:
    folder.mkdir(parents=True)
    for name in programs:
        (folder / name).write_text("#!/bin/sh\n")
        os.chmod(folder / name, 0o755)
    return folder


def test_postgres_programs_are_found_in_the_newest_complete_debian_folder(tmp_path, monkeypatch):
    from loop.errors import ConfigError
    from loop.services.stack import postgres_bin

    debian = tmp_path / "usr-lib-postgresql"
    fake_bin(debian / "9.6" / "bin")
    fake_bin(debian / "13" / "bin")
    fake_bin(debian / "16" / "bin", programs=("postgres",))  # a client-only or broken install: skipped
    (debian / "common").mkdir()
    settings = Settings(workspace=str(tmp_path / "ws"))
    assert postgres_bin(settings, debian) == debian / "13" / "bin"  # 13 > 9.6 as versions, not strings
    own = fake_bin(tmp_path / "own")
    assert postgres_bin(Settings(workspace=str(tmp_path / "ws"), postgres_bin=str(own)), debian) == own
    with pytest.raises(ConfigError, match="LOOP_POSTGRES_BIN is .*lacks"):
        postgres_bin(Settings(workspace=str(tmp_path / "ws"), postgres_bin=str(debian / "16" / "bin")), debian)
    # Not in Debian's folder: the folder `initdb` on PATH resolves into (a symlink, like /usr/local/bin's here).
    linked = tmp_path / "path-bin"
    linked.mkdir()
    (linked / "initdb").symlink_to(own / "initdb")
    monkeypatch.setenv("PATH", str(linked))
    assert postgres_bin(settings, tmp_path / "none") == own
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"apt-get install postgresql.*LOOP_POSTGRES_BIN"):
        postgres_bin(settings, tmp_path / "none")


def test_where_postgres_keeps_its_data_and_who_runs_it(tmp_path):
    import pwd

    from loop.errors import ConfigError
    from loop.services.stack import PG_ROOT_PARENT, as_user, postgres_argv, postgres_layout, workspace_id

    settings = pg_settings(tmp_path)
    ws = Workspace(settings)
    bin_folder = tmp_path / "bin"
    mine = postgres_layout(ws, bin_folder, euid=1000)  # not root: as this user, inside the workspace
    assert mine.user is None and mine.data_dir == ws.root / "postgres"
    assert as_user(mine, ["x"]) == ["x"]
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        with pytest.raises(ConfigError, match="apt-get install postgresql"):
            postgres_layout(ws, bin_folder, euid=0)
    else:  # root: as `postgres`, outside the 0700 workspace it cannot enter, one folder per workspace
        as_root = postgres_layout(ws, bin_folder, euid=0)
        assert as_root.user == "postgres" and as_root.data_dir == PG_ROOT_PARENT / workspace_id(ws)
        assert workspace_id(ws) != workspace_id(Workspace(Settings(workspace=str(tmp_path / "other"))))
        argv = postgres_argv(as_root, 5480)
        assert Path(argv[0]).name == "setpriv"
        assert argv[1:5] == [f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
        assert argv[5] == str(bin_folder / "postgres")
    argv = postgres_argv(mine, 5480)
    assert argv[0] == str(bin_folder / "postgres") and argv[argv.index("-D") + 1] == str(ws.root / "postgres")
    assert argv[argv.index("-h") + 1] == "127.0.0.1" and argv[argv.index("-p") + 1] == "5480"
    assert "unix_socket_directories=" in argv  # no socket: TCP on 127.0.0.1 with the password is the only way in
    # The folder in use is recorded, so a later `up` (or a moved workspace) finds the same data; the setting wins.
    ws.ensure()
    ws.postgres_dir_file.write_text(str(tmp_path / "kept"))
    assert postgres_layout(ws, bin_folder, euid=1000).data_dir == tmp_path / "kept"
    named = Workspace(pg_settings(tmp_path, postgres_dir=str(tmp_path / "named")))
    assert postgres_layout(named, bin_folder, euid=1000).data_dir == tmp_path / "named"


def test_only_label_studios_role_may_connect_and_only_with_its_password():
    from loop.services.stack import PG_DATABASE, PG_ROLE, bootstrap_sql, pg_hba

    rules = [line.split() for line in pg_hba().splitlines() if line.strip() and not line.startswith("#")]
    assert rules == [["host", PG_DATABASE, PG_ROLE, "127.0.0.1/32", "scram-sha-256"]]
    sql = bootstrap_sql("the-password")
    assert "the-password" not in sql and "SCRAM-SHA-256$4096:" in sql  # the server gets the verifier only
    assert "SUPERUSER" not in sql.upper() and f"OWNER {PG_ROLE}" in sql
    assert all(line.endswith(";") for line in sql.splitlines())  # one statement per line (single-user mode)


def test_the_scram_verifier_matches_rfc_7677():
    """The RFC's exchange (user "user", password "pencil"): the server signature our ServerKey gives is
    the RFC's, and the RFC's client proof checks out against our StoredKey."""
    import base64
    import hashlib
    import hmac

    from loop.services.stack import scram_verifier

    verifier = scram_verifier("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    head, keys = verifier.split("$")[1:]
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = (f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}").encode()
    server_signature = hmac.new(server_key, auth, "sha256").digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored_key, auth, "sha256").digest()))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time


def test_a_workspace_keeps_the_database_its_label_studio_started_with(tmp_path):
    from loop.errors import ConfigError
    from loop.services.stack import check_label_studio_db

    ws = Workspace(pg_settings(tmp_path))
    check_label_studio_db(ws)  # new workspace: any choice
    ws.ensure()
    (ws.label_studio_dir).mkdir()
    (ws.label_studio_dir / "label_studio.sqlite3").write_text("")  # an older workspace: Label Studio on SQLite
    assert ws.recorded_label_studio_db() == "sqlite" and ws.label_studio_db() == "sqlite"
    with pytest.raises(ConfigError, match="keeps its data in sqlite.*asks for postgres.*LOOP_WORKSPACE"):
        check_label_studio_db(ws)
    ws.label_studio_db_file.write_text("postgres")
    follows = Workspace(Settings(workspace=str(tmp_path / "ws")))  # setting left empty: the workspace's choice
    assert follows.label_studio_db() == "postgres"
    check_label_studio_db(follows)
    with pytest.raises(ConfigError, match="keeps its data in postgres"):
        check_label_studio_db(Workspace(Settings(workspace=str(tmp_path / "ws"), label_studio_db="sqlite")))


def test_ps_lists_postgres_only_where_label_studio_runs_on_it(tmp_path):
    from loop.services import stack

    closed = free_port()
    common = dict(redis_port=closed, label_studio_port=closed, ml_backend_port=closed, postgres_port=closed)
    assert "postgres" not in [s.name for s in stack.ps(Settings(workspace=str(tmp_path / "a"), **common))]
    rows = {s.name: s for s in stack.ps(pg_settings(tmp_path, **common))}
    assert list(rows)[:3] == ["redis", "postgres", "label-studio"]
    pg = rows["postgres"]
    assert pg.managed and not pg.healthy and pg.state == "down"
    assert pg.url == f"postgresql://label_studio:***@127.0.0.1:{closed}/label_studio"


def test_up_on_postgres_without_postgresql_installed_is_one_error_naming_apt_get(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loop.cli.main import app
    from loop.services import stack

    for f in Settings.__dataclass_fields__.values():
        monkeypatch.delenv(f.metadata["env"], raising=False)
    monkeypatch.setenv("LOOP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("LOOP_REDIS_PORT", str(free_port()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stack, "PG_DEBIAN_BIN", tmp_path / "no-postgresql")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["up", "--label-studio-db", "postgres"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "apt-get install postgresql" in lines[0], lines
    assert not (tmp_path / "ws" / "pids").exists()  # nothing was started
    result = CliRunner().invoke(app, ["up", "--label-studio-db", "mysql"])
    assert result.exit_code == 1 and "expected one of" in result.stderr and "'postgres'" in result.stderr


# -- a real PostgreSQL, started as `up` starts it (skipped where it is not installed) ---------------
@pytest.fixture
def embedded_postgres(tmp_path):
    from loop.errors import ConfigError
    from loop.services import stack

    settings = pg_settings(tmp_path, postgres_port=free_port(), startup_timeout=60)
    ws = Workspace(settings)
    try:
        pg = stack.postgres_layout(ws)
    except ConfigError as exc:
        pytest.skip(f"PostgreSQL is not installed here ({exc})")
    ws.ensure()
    try:
        stack._start_postgres(ws, log=lambda m: None)
        pid = int(ws.pid_file("postgres").read_text())
        yield settings, pg, pid
        stack.stop_postgres(pid)
    finally:
        stack.down(settings, log=lambda m: None)
        if not pg.data_dir.is_relative_to(ws.root):
            import shutil
            shutil.rmtree(pg.data_dir, ignore_errors=True)  # root: the data folder is outside the workspace


def psql(pg, port: int, sql: str, user: str = "label_studio", password: str | None = None):
    env = {"PATH": os.environ.get("PATH", ""), **({"PGPASSWORD": password} if password is not None else {})}
    return subprocess.run([pg.program("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "label_studio",
                           "-w", "-Atc", sql], env=env, capture_output=True, text=True, timeout=30)


def test_postgres_takes_only_label_studios_role_with_its_password(embedded_postgres):
    from loop.services import stack
    from loop.services.workspace import postgres_password

    settings, pg, pid = embedded_postgres
    if not (pg.bin / "psql").exists():
        pytest.skip(f"no psql in {pg.bin}")
    port, password = settings.postgres_port, postgres_password(settings)
    ok = psql(pg, port, "select current_user, rolsuper from pg_roles where rolname = current_user", password=password)
    assert ok.returncode == 0 and ok.stdout.strip() == "label_studio|f", ok.stderr
    assert psql(pg, port, "select 1").returncode != 0  # no password
    assert "password authentication failed" in psql(pg, port, "select 1", password="wrong").stderr
    superuser = psql(pg, port, "select 1", user=pg.user or os.environ.get("USER", "root"), password=password)
    assert "no pg_hba.conf entry" in superuser.stderr
    assert stat.S_IMODE(pg.data_dir.stat().st_mode) == 0o700
    if pg.user:
        import pwd
        assert pg.data_dir.stat().st_uid == pwd.getpwnam(pg.user).pw_uid != 0
        assert Path(f"/proc/{pid}/status").read_text().count(f"\t{pwd.getpwnam(pg.user).pw_uid}\t") >= 1
    ws = Workspace(settings)
    assert ws.postgres_dir_file.read_text() == str(pg.data_dir) and mode(ws.postgres_dir_file) == 0o600
    # The password is nowhere but credentials.json: not on the command line, in the environment or the log.
    assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert password.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert password not in ws.log_file("postgres").read_text()
    assert next(s for s in stack.ps(settings) if s.name == "postgres").healthy
    stack.stop_postgres(pid)
    assert not stack._alive(pid)


def test_docker_compose_runs_label_studio_on_an_unpublished_postgres():
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    pg, ls = services["postgres"], services["label-studio"]
    assert pg["image"].startswith("postgres:") and "ports" not in pg  # reachable on the compose network only
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")  # from .env
    env = ls["environment"]
    assert env["LABEL_STUDIO_DJANGO_DB"].endswith("postgresql}") and env["LABEL_STUDIO_POSTGRE_HOST"] == "postgres"
    assert env["LABEL_STUDIO_POSTGRE_PASSWORD"] == pg["environment"]["POSTGRES_PASSWORD"]
    assert (env["LABEL_STUDIO_POSTGRE_NAME"], env["LABEL_STUDIO_POSTGRE_USER"]) == (
        pg["environment"]["POSTGRES_DB"], pg["environment"]["POSTGRES_USER"])
    assert ls["depends_on"]["postgres"]["condition"] == "service_healthy"
