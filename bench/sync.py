"""Benchmark of `loop.services.sync.sync_annotations` (the sync behind next-round, status, validate and
export) on a real Label Studio with N labelled tasks.

The stack is `loop.services.stack.up` in a throwaway workspace on free ports, stopped at the end. The
project is made straight through Label Studio's import (tasks with one annotation each, by the
admin) and mirrored into Redis as loop would hold it; then:

1. the first sync (Label Studio's export, once per project),
2. a sync with nothing changed, right after the bulk import (every task of the last import request
   shares the last second, so they are read again: the overlap that guards against a save landing
   on both sides of a read),
3. a sync after one new label, and after another 2 s later (only that task is read), then again
   with nothing changed.

    python -m bench.sync                  # 10,000 tasks (about 3 minutes)
    python -m bench.sync --tasks 1000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000, help="labelled tasks in the project (default 10000)")
    ap.add_argument("--label-studio-venv", default=os.environ.get("LOOP_LABEL_STUDIO_VENV")
                    or str(Path(__file__).resolve().parents[1] / ".venv-label-studio"))
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    os.environ.update({"LOOP_WORKSPACE": tempfile.mkdtemp(prefix="loop-bench-sync-"),
                       "LOOP_REDIS_PORT": str(free_port()), "LOOP_LABEL_STUDIO_PORT": str(free_port()),
                       "LOOP_ML_BACKEND_PORT": str(free_port()), "LOOP_LABEL_STUDIO_VENV": args.label_studio_venv})
    from loop.labels.interface import choice_result
    from loop.services import stack
    from loop.services.context import Context
    from loop.services.settings import load_settings
    from loop.services.sync import sync_annotations

    settings = load_settings()
    stack.up(settings, log=lambda m: print(m, file=sys.stderr))
    ctx = Context(settings)
    ls, store = ctx.ls, ctx.store
    results: dict[str, dict] = {}

    def timed(what: str) -> None:
        t0 = time.perf_counter()
        counts = sync_annotations(ctx.store, ctx.ls, p)
        results[what] = {"seconds": round(time.perf_counter() - t0, 3), **counts}
        print(f"{what}: {results[what]['seconds']} s {counts}", file=sys.stderr)

    try:
        p = ls.create_project("bench: sync", ["a", "b", "c"])
        rows = [{"data": {"text": f"text {i}", "item_id": f"i{i}"},
                 "annotations": [{"result": choice_result("abc"[i % 3]), "completed_by": 1}]}
                for i in range(args.tasks)]
        for start in range(0, len(rows), 2000):
            ls._http("import tasks", "POST", f"/api/projects/{p}/import", json=rows[start:start + 2000])
        tasks = ls.task_item_ids(p)
        store.save_project(p, {"labels": ["a", "b", "c"]}, make_current=False)
        store.add_items(p, {i: {"task_id": t, "key": i} for i, t in tasks.items()})
        store.add_annotator({"name": "admin", "ls_user_id": 1})
        timed("first sync (export)")
        timed("nothing changed, right after the bulk import")
        ls._http("label", "POST", f"/api/tasks/{tasks['i5']}/annotations/", json={"result": choice_result("b")})
        timed("one new label")
        time.sleep(2)
        ls._http("label", "POST", f"/api/tasks/{tasks['i7']}/annotations/", json={"result": choice_result("a")})
        timed("another label, 2 s later")
        timed("nothing changed")
    finally:
        stack.down(settings, log=lambda m: print(m, file=sys.stderr))
    out = {"tasks": args.tasks, "results": results}
    print(json.dumps(out, indent=2) if args.json else
          "\n".join(f"| {what} | {r['seconds']:.2f} | {r['added']} | {r['updated']} | {r['removed']} |"
                    for what, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
