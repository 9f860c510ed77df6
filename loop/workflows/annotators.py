"""`loop annotators`: the people who label, each a Label Studio user who can log in."""

from __future__ import annotations

import secrets
import time
from typing import Any

from loop.errors import ConfigError
from loop.services.context import Context


def add_annotator(ctx: Context, name: str, *, email: str | None = None, password: str | None = None) -> dict[str, Any]:
    """Create a Label Studio user who can log in, and record them as an annotator."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"annotator name {name!r} must be letters, digits, '-', '_' or '.'")
    store, ls = ctx.store, ctx.ls
    if name in store.annotators():
        raise ConfigError(f"annotator {name!r} exists already; `loop annotators list` shows them")
    email = email or f"{name}@loop.local"
    generated = password is None
    password = password or secrets.token_urlsafe(9)
    if len(password) < 8:
        raise ConfigError("the password needs at least 8 characters")
    existing = {u.get("email"): u for u in ls.users()}
    if email in existing:
        user_id = int(existing[email]["id"])  # a Label Studio user already: record, keep their password
        password, generated = None, False
    else:
        user_id = ls.signup_user(email, password)
    record = {"name": name, "email": email, "ls_user_id": user_id, "created_at": time.time()}
    store.add_annotator(record)
    return {**record, "password": password, "password_generated": generated}
