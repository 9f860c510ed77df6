"""`loop demo`: the whole loop on the bundled sample, on the local stack, in one command.

Idempotent: a second run resumes the same project and shows where it stands instead of
starting over.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable

from loop.errors import DataError
from loop.services import stack
from loop.services.context import Context
from loop.services.workspace import credentials, kept_secrets
from loop.workflows.annotators import add_annotator
from loop.workflows.project import init_project
from loop.workflows.rounds import next_round
from loop.workflows.status import round_detail, status

DEMO_ANNOTATORS = ("alice", "bob", "carol")


def demo_passwords(ctx: Context) -> dict[str, str]:
    """The demo annotators' passwords: generated once and kept with the workspace's other secrets
    (credentials.json, 0600), so a second `loop demo` shows the same logins."""
    return {name: kept_secrets(ctx.settings, {f"demo_{name}_password": lambda: secrets.token_urlsafe(9)})
            [f"demo_{name}_password"] for name in DEMO_ANNOTATORS}


def run_demo(ctx: Context, data: str | Path, guidelines: str | Path, *, size: int = 20, overlap: int = 2,
             log: Callable[[str], None] = print, progress=None) -> dict[str, Any]:
    data, guidelines = Path(data), Path(guidelines)
    if not data.is_file() or not guidelines.is_dir():
        raise DataError(f"the demo needs {data} and {guidelines}/; run it from the root of the loop repository")
    stack.up(ctx.settings, log=log)
    kwargs = {"progress": progress} if progress else {}
    project = init_project(ctx, data, label_field="label", guidelines_dir=guidelines, **kwargs)
    p = project["project_id"]
    known = ctx.store.annotators()
    passwords = demo_passwords(ctx)
    for name, password in passwords.items():
        if name not in known:
            add_annotator(ctx, name, password=password)
    if not ctx.store.round_numbers(p):
        round_ = next_round(ctx, p, size=size, annotators=list(DEMO_ANNOTATORS), overlap=overlap)
    else:
        round_ = round_detail(ctx.store, p, ctx.store.round_numbers(p)[-1])
    creds = credentials(ctx.settings)
    return {"project": project, "round": round_,
            "status": status(ctx, p), "url": project["url"],
            "admin": {"email": creds.username, "password": creds.password},
            "annotators": {n: {"email": f"{n}@loop.local", "password": pw} for n, pw in passwords.items()}}
