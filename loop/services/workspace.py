"""The workspace folder and what lives in it: paths, the generated secrets, Redis's URL, the backend's login.

Shared by the process manager (`services.stack`) and every process that only needs to find things
(the CLI's context, the ML backend, the trainer), so those never import the process manager.
The workspace is kept 0700 and the credentials file 0600: they hold secrets. The secrets loop
generates (Label Studio's admin password and token, the embedded Redis's password, the ML
backend's login) are made once, on first use, and kept in `credentials.json`; a setting that
names one wins over the kept one.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit, urlunsplit

from loop.errors import ConfigError
from loop.services.settings import DEFAULT_BACKEND_USER, Settings


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str


class Workspace:
    """Paths inside the workspace folder."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.workspace_path

    def ensure(self) -> Path:
        """Create the workspace folder, readable by its owner only."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return self.root

    def pid_file(self, service: str) -> Path:
        return self.root / "pids" / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def label_studio_dir(self) -> Path:
        return self.root / "label-studio"

    @property
    def label_studio_venv(self) -> Path:
        return Path(self.settings.label_studio_venv or self.root / "label-studio-venv").resolve()

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.sqlite"

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    @property
    def label_studio_db_file(self) -> Path:
        """Which database the workspace's Label Studio was first started with (`sqlite` or `postgres`)."""
        return self.root / "label-studio-db"

    @property
    def postgres_dir_file(self) -> Path:
        """Where the workspace's PostgreSQL keeps its data (written on its first start: as root it is
        outside the workspace, see `loop.services.stack.postgres_layout`)."""
        return self.root / "postgres-dir"

    def recorded_label_studio_db(self) -> str:
        """`sqlite` or `postgres` as recorded by the first `loop up`; `sqlite` for a workspace from before
        the record whose Label Studio has its SQLite file; "" when Label Studio never ran here."""
        try:
            return self.label_studio_db_file.read_text().strip()
        except FileNotFoundError:
            return "sqlite" if (self.label_studio_dir / "label_studio.sqlite3").exists() else ""

    def label_studio_db(self) -> str:
        """The database the local Label Studio uses: the one it was first started with, else the
        setting LOOP_LABEL_STUDIO_DB, else `sqlite`."""
        return self.recorded_label_studio_db() or self.settings.label_studio_db or "sqlite"

    def backend_login(self) -> tuple[str, str] | None:
        """`backend_login(settings)` for this workspace's settings (what workflows reach through `ctx.workspace`)."""
        return backend_login(self.settings)


def _parse(path: Path, text: str) -> dict[str, str]:
    try:
        saved = json.loads(text) if text.strip() else {}
    except ValueError:
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} is not a JSON object of generated secrets; fix it, or delete it to have "
                          "new ones generated (then `loop down` and `loop up` again)")
    return saved


def kept_secrets(settings: Settings, wanted: dict[str, Callable[[], str]] | None = None) -> dict[str, str]:
    """The secrets kept in the workspace's credentials.json, after generating and keeping each of
    `wanted` (name -> generator) it lacks. Generation holds a lock on the file, so two processes
    starting at once keep the same secret; the file is created 0600."""
    ws = Workspace(settings)
    path = ws.credentials_file
    try:
        saved = _parse(path, path.read_text())
    except FileNotFoundError:
        saved = {}
    if all(name in saved for name in wanted or {}):
        return saved
    ws.ensure()
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        saved = _parse(path, f.read())
        missing = {name: make() for name, make in (wanted or {}).items() if name not in saved}
        if missing:
            saved |= missing
            f.seek(0)
            f.truncate()
            f.write(json.dumps(saved))
            f.flush()
            os.fsync(f.fileno())
        os.fchmod(f.fileno(), 0o600)
    return saved


def credentials(settings: Settings) -> Credentials:
    """The Label Studio admin login: from the settings, else generated once and kept (mode 0600)."""
    # Only a Label Studio we run ourselves gets generated secrets kept.
    wanted = {} if settings.label_studio_url else {"password": lambda: secrets.token_urlsafe(12),
                                                   "token": lambda: secrets.token_hex(20)}
    saved = kept_secrets(settings, wanted)
    return Credentials(username=settings.label_studio_username,
                       password=settings.label_studio_password or saved.get("password") or secrets.token_urlsafe(12),
                       token=settings.label_studio_token or saved.get("token") or secrets.token_hex(20))


def redis_password(settings: Settings) -> str:
    """The embedded Redis's password (`requirepass`): generated once and kept."""
    return kept_secrets(settings, {"redis_password": lambda: secrets.token_hex(24)})["redis_password"]


def postgres_password(settings: Settings) -> str:
    """The password of Label Studio's role in the PostgreSQL `loop up` runs: generated once and kept."""
    return kept_secrets(settings, {"postgres_password": lambda: secrets.token_hex(24)})["postgres_password"]


def redis_url(settings: Settings) -> str:
    """REDIS_URL if set, else the embedded Redis's URL with its password in it. Show it with
    `redacted(...)`, never as is."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis://:{quote(redis_password(settings), safe='')}@127.0.0.1:{settings.redis_port}/0"


def redacted(url: str) -> str:
    """`url` with its password, if any, replaced by ***: what may be printed or logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def backend_login(settings: Settings) -> tuple[str, str] | None:
    """The basic-auth login the ML backend requires and Label Studio connects with.

    LOOP_ML_BACKEND_USER/PASSWORD when a password is set; else, for the backend `loop up` runs, a
    login generated once and kept in credentials.json; None only when the settings opt out
    (ml_backend_auth = "off"). A backend loop does not run (LOOP_ML_BACKEND_URL) has a login
    loop cannot know: without a password it is an error saying so.
    """
    if settings.backend_auth:
        return settings.backend_auth
    if settings.ml_backend_auth == "off":
        return None
    if settings.ml_backend_url:
        raise ConfigError(f"LOOP_ML_BACKEND_URL points at {settings.ml_backend_url}, a backend `loop up` does "
                          "not run: set LOOP_ML_BACKEND_USER and LOOP_ML_BACKEND_PASSWORD to its login, or "
                          "LOOP_ML_BACKEND_AUTH=off if it has none")
    saved = kept_secrets(settings, {"ml_backend_user": lambda: DEFAULT_BACKEND_USER,
                                    "ml_backend_password": lambda: secrets.token_urlsafe(24)})
    return settings.ml_backend_user or saved["ml_backend_user"], saved["ml_backend_password"]
