"""The session stack (`loop up`'s defaults) against what a local user or a Label Studio user could try:
Redis without its password, files under the workspace, the ML backend without its login, Label Studio
made to fetch private addresses. And what loop needs still works: Label Studio connects the backend on
127.0.0.1 with the generated login and delivers webhooks to it."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis

from loop.services import stack
from loop.services.context import Context
from loop.services.workspace import Workspace, backend_login, credentials, redis_password, redis_url
from tests.helpers import cli

pytestmark = pytest.mark.integration


def default(settings):
    """The settings as `loop` loads them in the session (no login named): conftest yields them with the
    generated login filled in, for tests that call the backend themselves."""
    assert os.environ["LOOP_ML_BACKEND_PASSWORD"] == "" and os.environ["LOOP_ML_BACKEND_USER"] == ""
    return replace(settings, ml_backend_user="", ml_backend_password="")


def ls_http(settings) -> httpx.Client:
    return httpx.Client(base_url=settings.ls_url, timeout=60,
                        headers={"Authorization": f"Token {credentials(settings).token}"})


@pytest.fixture(scope="module")
def project(stack_env):
    """A Label Studio project that is not a loop project: imports and webhooks are tried on it."""
    return Context(stack_env).ls.create_project("security checks", ["neg", "pos"])


@pytest.fixture(scope="module")
def loop_project(stack_env, tmp_path_factory):
    """`loop init` as a user runs it, with no backend login named: it connects Label Studio to the
    backend with the generated one."""
    data = tmp_path_factory.mktemp("security") / "items.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"s{i}", "text": text}) for i, text in enumerate(
        ["where is my parcel", "refund my order please", "the app crashes at login", "change my address",
         "my card was charged twice", "how do I reset my password"])) + "\n")
    default(stack_env)
    return cli("init", str(data), "--labels", "account,delivery", "--title", "security checks (loop)")


# -- Redis ----------------------------------------------------------------------------------------
def test_redis_refuses_a_client_without_the_password(stack_env):
    port = stack_env.redis_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(100).startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).ping()
    client = redis.Redis.from_url(redis_url(stack_env), socket_timeout=5)
    assert client.ping()
    assert client.config_get("save") == {"save": "60 1"}  # snapshots on: the rule `up` passes holds


def test_every_process_up_started_got_the_password_and_none_shows_it(stack_env):
    ws = Workspace(stack_env)
    password = redis_password(stack_env)
    assert f":{password}@" in redis_url(stack_env)
    services = {s.name: s for s in stack.ps(stack_env)}
    assert all(s.healthy for s in services.values()), services  # the trainer's heartbeat came through Redis
    assert services["redis"].url == f"redis://:***@127.0.0.1:{stack_env.redis_port}/0"
    for name in ("ml-backend", "trainer"):
        pid = int(ws.pid_file(name).read_text())
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert environ["REDIS_URL"] == redis_url(stack_env), name
    redis_pid = int(ws.pid_file("redis").read_text())
    assert password.encode() not in Path(f"/proc/{redis_pid}/cmdline").read_bytes()  # not in `ps`
    for log in (ws.root / "logs").iterdir():
        assert password not in log.read_text(errors="replace"), log


# -- files ----------------------------------------------------------------------------------------
def test_nothing_under_the_workspace_is_readable_by_group_or_others(stack_env):
    ws = Workspace(stack_env)
    client = redis.Redis.from_url(redis_url(stack_env), socket_timeout=5)
    # Files Redis creates now, long after `up`: a snapshot and a rewritten append-only file.
    client.bgsave()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info["rdb_bgsave_in_progress"] and not info["aof_rewrite_in_progress"]:
            try:
                client.bgrewriteaof()
                break
            except redis.ResponseError:  # a save still running
                pass
        time.sleep(0.2)
    while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.2)
    seen, readable = [], []
    for folder, dirs, files in os.walk(ws.root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d != ws.label_studio_venv]
        for path in (here, *(here / f for f in files)):
            mode = path.lstat().st_mode
            seen.append(path)
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                readable.append(f"{path.relative_to(ws.root)} {oct(stat.S_IMODE(mode))}")
    assert readable == []
    names = {p.relative_to(ws.root).as_posix() for p in seen}
    database = {"sqlite": "label-studio/label_studio.sqlite3", "postgres": "logs/postgres.log"}[ws.label_studio_db()]
    assert {database, "credentials.json", "logs/label-studio.log", "logs/redis.log",
            "pids/ml-backend.pid", "redis/dump.rdb"} <= names, sorted(names)


# -- the ML backend's login -----------------------------------------------------------------------
def test_the_backend_requires_the_generated_login_by_default(stack_env):
    settings = default(stack_env)
    login = backend_login(settings)
    kept = json.loads(Workspace(settings).credentials_file.read_text())
    assert login == (kept["ml_backend_user"], kept["ml_backend_password"]) == stack_env.backend_auth
    url = settings.backend_url
    forged = {"action": "START_TRAINING", "project": {"id": 1}}
    assert httpx.get(f"{url}/health", timeout=10).status_code == 401
    assert httpx.post(f"{url}/webhook?project=1", json=forged, timeout=10).status_code == 401
    assert httpx.get(f"{url}/health", auth=(login[0], "wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{url}/health", auth=login, timeout=10).json()["status"] == "UP"


def test_loop_init_connects_label_studio_to_the_backend_with_the_generated_login(stack_env, loop_project):
    settings = default(stack_env)
    user, password = backend_login(settings)
    p, backend = loop_project["project_id"], loop_project["ml_backend"]
    with ls_http(settings) as ls:
        connected = ls.get(f"/api/ml/{backend}").json()
        assert connected["readable_state"] == "Connected" and connected["url"] == settings.backend_url
        assert connected["auth_method"] == "BASIC_AUTH" and connected["basic_auth_user"] == user
        (hook,) = [h for h in ls.get("/api/webhooks/", params={"project": p}).json()
                   if h["url"].startswith(f"{settings.backend_url}/webhook")]
        sent = base64.b64decode(hook["headers"]["Authorization"].removeprefix("Basic ")).decode()
        assert sent == f"{user}:{password}"
        # Without the login Label Studio gets through its SSRF check to 127.0.0.1, and the backend says 401.
        refused = ls.post("/api/ml", json={"project": p, "url": settings.backend_url, "title": "no login"})
        assert refused.status_code == 400 and "authentication parameters" in refused.text, refused.text


def test_label_studio_delivers_webhooks_to_the_backend_on_loopback(stack_env, project):
    settings = default(stack_env)
    login = backend_login(settings)
    ctx = Context(settings)
    ctx.ls.ensure_webhook(project, f"{settings.backend_url}/webhook", ["PROJECT_UPDATED"], auth=login)

    def delivered() -> int:
        return httpx.get(f"{settings.backend_url}/metrics", auth=login, timeout=10).json()["webhooks"]

    before = delivered()
    ctx.ls.update_project(project, title="security checks (renamed)")
    deadline = time.monotonic() + 30
    while delivered() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert delivered() > before  # PROJECT_UPDATED reached /webhook with the login ("ignored": not a label change)


# -- Label Studio's SSRF protection -------------------------------------------------------------
@pytest.mark.parametrize("target, block", [
    ("http://169.254.169.254/latest/meta-data", "169.254.0.0/16"),  # cloud metadata
    ("http://10.0.0.1/x.json", "10.0.0.0/8"),
    ("http://192.168.1.1/tasks.json", "192.168.0.0/16"),
    ("http://127.0.0.2:{ls_port}/api/projects", "127.0.0.2/31"),  # loopback, but not the backend's address
    ("http://0.0.0.0:{ls_port}/api/projects", "0.0.0.0/8"),  # Linux connects that to this machine
])
def test_label_studio_refuses_to_import_from_a_private_address(stack_env, project, target, block):
    url = target.format(ls_port=stack_env.label_studio_port)
    with ls_http(stack_env) as ls:
        # The import form Label Studio takes a URL from (data_import/uploader.py `load_tasks`: a
        # form-urlencoded `url`); its SSRF check refuses the address before connecting.
        answer = ls.post(f"/api/projects/{project}/import", data={"url": url})
    assert answer.status_code == 400, answer.text
    assert f"URL resolves to a reserved network address (block: {block})" in answer.text
