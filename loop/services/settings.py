"""Settings: one declared table, read from the environment and an optional `loop.toml`.

Precedence: environment variable > `loop.toml` (in the current directory, or the file named by
LOOP_CONFIG) > default. An unknown or mistyped key in `loop.toml` fails at start with its name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from loop.errors import ConfigError


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    workspace: str = _setting(".loop", "LOOP_WORKSPACE",
                              "Folder holding the embedded Redis, Label Studio data, logs, PIDs and the "
                              "embedding cache.")
    redis_url: str = _setting("", "REDIS_URL",
                              "Redis to use instead of the embedded one, e.g. redis://host:6379/0.")
    redis_port: int = _setting(6390, "LOOP_REDIS_PORT", "Port of the embedded Redis on 127.0.0.1.")
    label_studio_url: str = _setting("", "LOOP_LABEL_STUDIO_URL",
                                     "An existing Label Studio to use; empty means `loop up` runs one on 127.0.0.1.")
    label_studio_port: int = _setting(8480, "LOOP_LABEL_STUDIO_PORT", "Port of the local Label Studio.")
    label_studio_username: str = _setting("admin@loop.local", "LABEL_STUDIO_USERNAME",
                                          "Admin e-mail of the local Label Studio.")
    label_studio_password: str = _setting("", "LABEL_STUDIO_PASSWORD",
                                          "Admin password; empty: generated once and kept in the workspace.")
    label_studio_token: str = _setting("", "LABEL_STUDIO_USER_TOKEN",
                                       "API token (legacy token) of the admin; empty: generated once and kept "
                                       "in the workspace.")
    label_studio_venv: str = _setting("", "LOOP_LABEL_STUDIO_VENV",
                                      "Virtualenv holding the Label Studio server; empty: "
                                      "<workspace>/label-studio-venv, created on first `loop up`.")
    label_studio_requirement: str = _setting("label-studio==1.23.2", "LOOP_LABEL_STUDIO_REQUIREMENT",
                                             "What `loop up` installs into that virtualenv.")
    ml_backend_port: int = _setting(9090, "LOOP_ML_BACKEND_PORT", "Port of the ML backend on 127.0.0.1.")
    ml_backend_url: str = _setting("", "LOOP_ML_BACKEND_URL",
                                   "URL Label Studio uses to reach the ML backend; empty: http://127.0.0.1:<ml_backend_port>.")
    ml_backend_user: str = _setting("", "LOOP_ML_BACKEND_USER",
                                    "With a password: the ML backend refuses calls without this basic-auth login.")
    ml_backend_password: str = _setting("", "LOOP_ML_BACKEND_PASSWORD", "Password of that login.")
    startup_timeout: float = _setting(300.0, "LOOP_STARTUP_TIMEOUT",
                                      "Seconds `loop up` waits for each service to become ready.")
    request_timeout: float = _setting(60.0, "LOOP_REQUEST_TIMEOUT", "Seconds to wait for one Label Studio request.")
    trainer_min_interval: float = _setting(5.0, "LOOP_TRAINER_MIN_INTERVAL",
                                           "Seconds the trainer leaves between two retrains; annotations made "
                                           "meanwhile join the next one.")

    @property
    def workspace_path(self) -> Path:
        return Path(self.workspace).resolve()

    @property
    def ls_url(self) -> str:
        return (self.label_studio_url or f"http://127.0.0.1:{self.label_studio_port}").rstrip("/")

    @property
    def backend_url(self) -> str:
        return (self.ml_backend_url or f"http://127.0.0.1:{self.ml_backend_port}").rstrip("/")

    @property
    def backend_auth(self) -> tuple[str, str] | None:
        return (self.ml_backend_user, self.ml_backend_password) if self.ml_backend_password else None

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def embedded_label_studio(self) -> bool:
        return not self.label_studio_url


def describe() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, help) for every setting: the README table's source."""
    return [(f.name, f.metadata["env"], repr(f.default), f.metadata["help"]) for f in fields(Settings)]


def _coerce(name: str, kind: Any, value: Any, source: str) -> Any:
    """Check a value's type (TOML values) or parse it (strings from the environment)."""
    kind = {"str": str, "int": int, "float": float}.get(kind, kind) if isinstance(kind, str) else kind
    if isinstance(value, str) and kind is not str:
        try:
            return kind(value)
        except ValueError:
            pass
    elif kind is str and isinstance(value, str):
        return value
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"setting {name!r} from {source} is {value!r}, expected a {kind.__name__}")


def load_settings(config_file: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, `loop.toml`, the environment and explicit overrides."""
    declared = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = Path(config_file or os.environ.get("LOOP_CONFIG") or "loop.toml")
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        for key, value in table.items():
            if key not in declared:
                known = ", ".join(sorted(declared))
                raise ConfigError(f"{path}: unknown setting {key!r}; known settings: {known}")
            values[key] = _coerce(key, declared[key].type, value, str(path))
    elif config_file:
        raise ConfigError(f"config file {path} does not exist")

    for name, f in declared.items():
        env = f.metadata["env"]
        if env in os.environ:
            values[name] = _coerce(name, f.type, os.environ[env], f"${env}")

    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, declared[name].type, value, "the command line")
    return Settings(**values)
