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

DEFAULT_BACKEND_USER = "label-studio"  # the ML backend's login user when LOOP_ML_BACKEND_USER is empty


def _setting(default: Any, env: str, help: str, choices: tuple[str, ...] = ()) -> Any:
    """A declared setting; `choices`: the only values a str setting may take."""
    return field(default=default, metadata={"env": env, "help": help, "choices": choices})


@dataclass(frozen=True)
class Settings:
    workspace: str = _setting(".loop", "LOOP_WORKSPACE",
                              "Folder holding the embedded Redis, Label Studio data, logs, PIDs and the "
                              "embedding cache.")
    redis_url: str = _setting("", "REDIS_URL",
                              "Redis to use instead of the embedded one, e.g. redis://:PASSWORD@host:6379/0; "
                              "empty: the embedded one, with a password generated once by `loop up` and kept in "
                              "the workspace's credentials.json.")
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
    label_studio_db: str = _setting("", "LOOP_LABEL_STUDIO_DB",
                                    "Where the local Label Studio keeps its data: `sqlite` (a file in the "
                                    "workspace, needs nothing installed) or `postgres` (a PostgreSQL server "
                                    "`loop up` runs, from Debian's `postgresql` package); empty: what the "
                                    "workspace's Label Studio was first started with, else `sqlite`.",
                                    choices=("", "sqlite", "postgres"))
    postgres_port: int = _setting(5480, "LOOP_POSTGRES_PORT", "Port of the local PostgreSQL on 127.0.0.1.")
    postgres_bin: str = _setting("", "LOOP_POSTGRES_BIN",
                                 "Folder holding PostgreSQL's initdb, postgres and pg_isready; empty: the newest "
                                 "/usr/lib/postgresql/<version>/bin, else the folder `initdb` on PATH is in.")
    postgres_dir: str = _setting("", "LOOP_POSTGRES_DIR",
                                 "PostgreSQL's data folder; empty: <workspace>/postgres, or, when loop runs as "
                                 "root (PostgreSQL refuses to), /var/lib/loop-postgres/<workspace id>, owned by "
                                 "the `postgres` user. Recorded in the workspace on first use.")
    ml_backend_port: int = _setting(9090, "LOOP_ML_BACKEND_PORT", "Port of the ML backend on 127.0.0.1.")
    ml_backend_url: str = _setting("", "LOOP_ML_BACKEND_URL",
                                   "URL Label Studio uses to reach the ML backend; empty: http://127.0.0.1:<ml_backend_port>.")
    ml_backend_user: str = _setting("", "LOOP_ML_BACKEND_USER",
                                    "User of the ML backend's basic-auth login; empty: `label-studio`.")
    ml_backend_password: str = _setting("", "LOOP_ML_BACKEND_PASSWORD",
                                        "Password of that login; empty: generated once by `loop up` and kept in "
                                        "the workspace's credentials.json (needed for a LOOP_ML_BACKEND_URL).")
    ml_backend_auth: str = _setting("on", "LOOP_ML_BACKEND_AUTH",
                                    "`on`: the ML backend refuses every call without its login (401). `off`: no "
                                    "login, so anyone who can reach its port can post webhooks and start "
                                    "training; only for a backend no one else can reach.", choices=("on", "off"))
    startup_timeout: float = _setting(300.0, "LOOP_STARTUP_TIMEOUT",
                                      "Seconds `loop up` waits for each service to become ready.")
    request_timeout: float = _setting(60.0, "LOOP_REQUEST_TIMEOUT", "Seconds to wait for one Label Studio request.")
    trainer_min_interval: float = _setting(5.0, "LOOP_TRAINER_MIN_INTERVAL",
                                           "Seconds the trainer leaves between two retrains; annotations made "
                                           "meanwhile join the next one.")
    trainer_catch_up: float = _setting(60.0, "LOOP_TRAINER_CATCH_UP",
                                       "Seconds between two reads of Label Studio's changes the trainer makes "
                                       "unasked (webhooks Label Studio could not deliver).")
    predict_max_tasks: int = _setting(10_000, "LOOP_PREDICT_MAX_TASKS",
                                      "Most tasks the ML backend scores in one /predict request (413 above).")
    predict_max_text: int = _setting(100_000, "LOOP_PREDICT_MAX_TEXT",
                                     "Most characters of one task's text /predict takes (413 above).")
    embedding_backend: str = _setting("onnx", "LOOP_EMBEDDING_BACKEND",
                                      "Engine that embeds texts: `onnx` (ONNX Runtime fp32: PyTorch's vectors at "
                                      "3.4x its items/s), `onnx-int8` (int8 weights: 5.8x, mean cosine 0.993, a "
                                      "text's vector varies slightly with its batch) or `torch` (PyTorch fp32); "
                                      "the ONNX file is exported once into <workspace>/models/. Each engine has "
                                      "its own cache keys.",
                                      choices=("onnx", "onnx-int8", "torch"))
    ray_address: str = _setting("", "LOOP_RAY_ADDRESS",
                                "A Ray cluster's head, HOST:PORT (`ray start --head` prints it): `loop init` embeds "
                                "and `next-round` and `predictions push` score there (`--engine ray`, the default "
                                "when set); empty: on this machine. Needs `pip install 'loop-al[ray]'`.")

    def __post_init__(self) -> None:
        for f in fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"setting {f.name!r} (${f.metadata['env']}) is {getattr(self, f.name)!r}, "
                                  f"expected one of {', '.join(map(repr, choices))}")
        if self.ml_backend_auth == "off" and self.ml_backend_password:
            raise ConfigError("ml_backend_auth is 'off' but LOOP_ML_BACKEND_PASSWORD is set: unset the password "
                              "for a backend without a login, or set LOOP_ML_BACKEND_AUTH=on")

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
        """The login these settings name explicitly (LOOP_ML_BACKEND_USER/PASSWORD), else None. The
        login in force, generated when none is named, is `loop.services.workspace.backend_login`."""
        if not self.ml_backend_password:
            return None
        return self.ml_backend_user or DEFAULT_BACKEND_USER, self.ml_backend_password

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
