"""The workspace folder and what lives in it: paths, the generated Label Studio login, Redis's URL.

Shared by the process manager (`services.stack`) and every process that only needs to find things
(the CLI's context, the ML backend, the trainer), so those never import the process manager.
The workspace is kept 0700 and the credentials file 0600: they hold secrets.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from loop.services.settings import Settings


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


def credentials(settings: Settings) -> Credentials:
    """The Label Studio admin login: from the settings, else generated once and kept (mode 0600)."""
    ws = Workspace(settings)
    if ws.credentials_file.is_file():
        saved = json.loads(ws.credentials_file.read_text())
    else:
        saved = {"password": secrets.token_urlsafe(12), "token": secrets.token_hex(20)}
        if not settings.label_studio_url:  # only a Label Studio we run ourselves gets generated secrets
            ws.ensure()
            ws.credentials_file.touch(mode=0o600)
            ws.credentials_file.write_text(json.dumps(saved))
    return Credentials(username=settings.label_studio_username,
                       password=settings.label_studio_password or saved["password"],
                       token=settings.label_studio_token or saved["token"])


def redis_url(settings: Settings) -> str:
    return settings.redis_url or f"redis://127.0.0.1:{settings.redis_port}/0"


