"""Faults on the real stack: kill -9 of the trainer mid-batch, of the ML backend and of Redis while
annotators work, and of `loop next-round` halfway through publishing. After `loop up` (or a re-run)
nothing is lost and nothing doubled, without any CLI command in between: Redis holds exactly the
labels Label Studio holds, no item is assigned twice, and the served model catches up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from label_studio_sdk import LabelStudio

from loop.labels.interface import choice_result
from loop.services import stack
from loop.services.context import Context
from loop.services.sync import ls_projects
from loop.services.workspace import Workspace
from loop.workflows.training import final_labels
from tests.helpers import REPO, cli, login_token

pytestmark = pytest.mark.integration

PEOPLE = {"gina": "gina-pass-123", "hank": "hank-pass-123"}


@pytest.fixture(scope="module")
def world(stack_env, tmp_path_factory):
    """A small project of its own (texts new to the cache), two annotators, round 1 sent out."""
    here = tmp_path_factory.mktemp("faults")
    rows = [json.loads(line) for line in (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()[40:80]]
    data = here / "tickets.jsonl"
    data.write_text("".join(json.dumps({**r, "id": f"f-{r['id']}", "text": f"{r['text']} (by e-mail)"}) + "\n"
                            for r in rows))
    p = cli("init", str(data), "--label-field", "label", "--labels", "billing,delivery,account,technical,"
            "out_of_scope", "--title", "Fault test")["project_id"]
    for name, password in PEOPLE.items():
        cli("annotators", "add", name, "--password", password)
    round1 = cli("next-round", "--size", "8", "--annotators", "gina,hank", "--overlap", "2", "--project", str(p))
    clients = {name: LabelStudio(base_url=stack_env.ls_url,
                                 api_key=login_token(stack_env.ls_url, f"{name}@loop.local", password))
               for name, password in PEOPLE.items()}
    return {"ctx": Context(stack_env), "p": p, "round1": round1, "clients": clients, "done": set(),
            "settings": stack_env}


def label_next(world, name: str, n: int) -> None:
    """`name` labels their next `n` unlabelled round-1 items, in their queue, alternating two labels."""
    given = world["round1"]["assignments"][name]
    todo = [(i, t) for i, t in zip(given["items"], given["tasks"]) if (name, i) not in world["done"]][:n]
    assert len(todo) == n, f"{name} has only {len(todo)} items left"
    for item, task in todo:
        label = "billing" if len(world["done"]) % 2 else "delivery"
        world["clients"][name].annotations.create(id=task, result=choice_result(label))
        world["done"].add((name, item))


def in_label_studio(world) -> set[str]:
    """Every annotation id Label Studio holds for the project (its main project and the queues)."""
    ctx, p = world["ctx"], world["p"]
    return {str(a["id"]) for lp in ls_projects(ctx.store, p) for t in ctx.ls.export_tasks(lp)
            for a in t.get("annotations") or []}


def caught_up(world, timeout: float = 90) -> None:
    """Wait, without any CLI command, until Redis holds exactly Label Studio's labels and the current
    model learnt from all of them."""
    ctx, p = world["ctx"], world["p"]
    deadline = time.monotonic() + timeout
    want = set()
    while time.monotonic() < deadline:
        want = in_label_studio(world)
        stored = set(ctx.store.annotations(p))
        model = ctx.store.load_model(p)
        if stored == want and model is not None and model.n_labels == len(final_labels(ctx.store, p)):
            return
        time.sleep(1)
    raise AssertionError(f"not caught up after {timeout} s: Label Studio {len(want)} labels, Redis "
                         f"{len(ctx.store.annotations(p))}, model {ctx.store.load_model(p)}")


def kill9(settings, service: str) -> None:
    pid = int(Workspace(settings).pid_file(service).read_text())
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while stack._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not stack._alive(pid)


def test_a_trainer_killed_mid_batch_handles_the_batch_after_a_restart(world):
    label_next(world, "gina", 2)
    label_next(world, "hank", 2)
    time.sleep(0.5)  # the webhooks are queued; the trainer is gathering its burst
    kill9(world["settings"], "trainer")
    stack.up(world["settings"], log=lambda m: None)
    caught_up(world)


def test_labels_made_while_the_backend_was_down_reach_the_model_after_a_restart(world):
    kill9(world["settings"], "ml-backend")
    label_next(world, "gina", 1)  # Label Studio cannot deliver these webhooks, and drops them
    label_next(world, "hank", 1)
    stack.up(world["settings"], log=lambda m: None)
    caught_up(world)


def test_labels_made_while_redis_was_down_reach_the_model_after_a_restart(world):
    kill9(world["settings"], "redis")
    label_next(world, "gina", 1)  # the backend answers these webhooks 503: nothing is queued
    stack.up(world["settings"], log=lambda m: None)  # Redis comes back from its append-only file
    caught_up(world)


@pytest.mark.parametrize("point", ["after_planning", "after_the_first_queue"])
def test_a_next_round_killed_while_publishing_resumes_without_assigning_twice(world, point):
    """`next-round` dies (SIGKILL) after recording its round, or after filling one annotator's
    queue; the re-run finishes that round and chooses nothing new."""
    ctx, p = world["ctx"], world["p"]
    before = ctx.store.round_numbers(p)
    script = f"""
import os, signal
from loop.services.context import Context
from loop.services.settings import load_settings
from loop.workflows import rounds

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if {point!r} == "after_planning":
    rounds._publish = die
else:
    enqueue = rounds.enqueue
    def once(*args, **kwargs):
        out = enqueue(*args, **kwargs)
        die()
    rounds.enqueue = once
rounds.next_round(Context(load_settings()), {p}, size=4, annotators=["gina", "hank"], overlap=2,
                  close_incomplete=True)
"""
    died = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    n = max(ctx.store.round_numbers(p))
    assert n == max(before) + 1 and ctx.store.round(p, n)["status"] == "planned"
    planned = ctx.store.round_assignments(p, n)
    resumed = cli("next-round", "--size", "4", "--annotators", "gina,hank", "--overlap", "2", "--project", str(p))
    assert resumed["resumed"] and resumed["id"] == n and resumed["status"] == "open"
    assert ctx.store.round_assignments(p, n) == planned  # the re-run chose nothing new
    assert all(ctx.store.assigned(p)[item] == n for item in planned)  # each item in one open round only
    for name in PEOPLE:  # each queue holds each item once: what open or closed rounds sent and did not release
        queue = ctx.store.queues(p)[name]["ls_project"]
        tasks = ctx.store.queue_tasks(p, name)
        assert set(ctx.ls.task_item_ids(queue)) == set(tasks) and ctx.ls.project(queue)["task_number"] == len(tasks)
        assert {i for i, people in planned.items() if name in people} <= set(tasks)
