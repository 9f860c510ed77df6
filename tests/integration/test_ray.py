"""The Ray engine on a real local Ray cluster: `ray start --head` and a second node (`ray start
--address`), each one CPU, token authentication on, no dashboard, no usage stats, in a temporary
folder; stopped by the process groups this test started (never `ray stop`, which stops every Ray
process of the machine).

`loop init` with `--engine ray` embeds on the cluster (the driver never loads the model) and the
vectors equal the local engine's within 1e-5; `next-round` scoring on the cluster chooses the
same items as the local engine for the same seed, and `predictions push` gives the same labels
and scores. Real Redis; Label Studio is the fake (the
engine never talks to it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from loop.core import model as model_lib
from loop.core.embeddings import cached_matrix
from loop.errors import LoopError
from loop.services.context import Context
from loop.services.ray_engine import RayScored
from loop.services.settings import Settings
from loop.workflows.predictions import push
from loop.workflows.project import init_project
from loop.workflows.rounds import next_round
from tests.helpers import stamp
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration
if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed here (pip install 'loop-al[ray]'; CI installs it)", allow_module_level=True)

TOPICS = {
    "freight": ["the ray test pallet {} left the depot late", "ray test: container {} stuck at customs",
                "ray test truck {} rerouted around the bridge", "ray test: shipment {} weighed twice at the dock"],
    "billing": ["ray test invoice {} charged the card twice", "ray test: refund {} never reached my account",
                "ray test: the bill {} lists a plan I cancelled", "ray test payment {} bounced at the bank"],
}


@contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, token: str | None = None, log=print):
    """A Ray cluster on this machine: a head and `nodes - 1` more nodes, each its own `ray start`
    process group (killed by id at exit), with token authentication (`token`, else a new one: a
    process keeps the first token it read, so a driver of two clusters in turn passes one).
    Yields (address, environment a driver needs)."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's Unix sockets live under it
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token or secrets.token_hex(32)}
    groups: list[int] = []
    common = ["--num-cpus", str(cpus_per_node), "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
              "--temp-dir", folder]
    commands = [[ray_bin, "start", "--head", "--port", str(port), "--include-dashboard=false", *common]]
    commands += [[ray_bin, "start", "--address", f"127.0.0.1:{port}", *common]] * (nodes - 1)
    try:
        for n, command in enumerate(commands):
            started = time.perf_counter()
            with open(Path(folder) / f"start-{n}.log", "w") as out:
                proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                groups.append(proc.pid)  # its own process group: the node's daemons stay in it
                if proc.wait(timeout=120) != 0:
                    raise RuntimeError(f"`{' '.join(command[1:4])}` failed: "
                                       + (Path(folder) / f"start-{n}.log").read_text()[-2000:])
            log(f"ray node {n} up in {time.perf_counter() - started:.1f} s")
        yield f"127.0.0.1:{port}", {k: env[k] for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    finally:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for group in groups:
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + grace
            while time.time() < deadline and any(_alive(g) for g in groups):
                time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)  # the nodes' sessions: logs, sockets, spilled objects


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


@contextmanager
def driver_env(extra: dict[str, str]):
    """This process as a Ray driver of that cluster: its token in the environment (before `ray` is
    imported: Ray reads RAY_AUTH_MODE once, at import), disconnected at exit."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(nodes=2) as (address, env), driver_env(env):
        yield address


def write_data(path: Path) -> list[dict]:
    rows = [{"id": f"r{label[0]}{k}{n}", "text": template.format(n), "label": label}
            for label, templates in TOPICS.items() for k, template in enumerate(templates) for n in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def context(tmp_path: Path, name: str, store, ls, **settings) -> Context:
    ctx = Context(Settings(workspace=str(tmp_path / name), **settings))
    ls.check = lambda: None  # the fake Label Studio is always up
    ctx.__dict__.update(store=store, ls=ls)  # real Redis, the fake Label Studio
    return ctx


def test_init_embeds_on_ray_as_locally_and_a_round_selects_the_same(cluster, tmp_path, redis_store, fake_ls):
    import ray

    data = tmp_path / "tickets.jsonl"
    rows = write_data(data)
    texts = [r["text"] for r in rows]
    local = context(tmp_path, "local", redis_store, fake_ls)
    on_ray = context(tmp_path, "ray", redis_store, fake_ls, ray_address=cluster)  # engine ray by default

    started = time.perf_counter()
    by_ray = init_project(on_ray, data, labels=["freight", "billing"], title="ray engine", connect_backend=False)
    ray_seconds = time.perf_counter() - started
    assert ray.is_initialized()
    assert sum(1 for n in ray.nodes() if n["Alive"]) == 2
    assert by_ray["embedded"] == len(rows)
    assert on_ray.embedder._model is None  # the driver never loaded the model: the cluster's actors embedded
    by_local = init_project(local, data, labels=["freight", "billing"], title="local engine", connect_backend=False,
                            engine="local")
    assert by_local["embedded"] == len(rows)
    model = local.embedder.model_id
    assert on_ray.embedder.model_id == model
    X_local = cached_matrix(texts, local.cache, model)
    X_ray = cached_matrix(texts, on_ray.cache, model)
    assert X_local is not None and X_ray is not None
    assert np.abs(X_local - X_ray).max() < 1e-5
    print(f"init on ray: {len(rows)} items in {ray_seconds:.1f} s")

    # A round on each project: the cold start, its labels, then a scored round (Ray vs local scoring).
    redis_store.add_annotator({"name": "rayna", "ls_user_id": 41})
    truth = {r["id"]: r["label"] for r in rows}
    chosen = {}
    for ctx, result, engine in ((local, by_local, "local"), (on_ray, by_ray, "ray")):
        p = result["project_id"]
        first = next_round(ctx, p, size=6, annotators=["rayna"], overlap=1, seed=3, relabel="off", engine=engine)
        given = first["assignments"]["rayna"]
        for k, (item, task) in enumerate(zip(given["items"], given["tasks"])):  # tasks of rayna's queue
            fake_ls.annotate(task, 9000 + p * 100 + k, truth[item], stamp(k), user=41)
        second = next_round(ctx, p, size=5, annotators=["rayna"], overlap=1, seed=3, relabel="off", engine=engine)
        assert second["strategy"] == "margin-diverse"  # a model scored the pool (no cold start)
        chosen[engine] = (first["assignments"]["rayna"]["items"], second["assignments"]["rayna"]["items"])
    assert chosen["ray"] == chosen["local"]
    assert len(set(chosen["ray"][1])) == 5

    # `predictions push` scores the pool on Ray as locally: same label and score per item.
    pushed = {}
    for ctx, result, engine in ((local, by_local, "local"), (on_ray, by_ray, "ray")):
        p = result["project_id"]
        item_of = {v["task_id"]: i for i, v in redis_store.items(p).items()}
        assert push(ctx, p, engine=engine)["pushed"] > 0
        pushed[engine] = {item_of[pr["task"]]: (pr["result"][0]["value"]["choices"][0], pr["score"])
                          for pr in fake_ls.predictions(p)}
    assert pushed["ray"].keys() == pushed["local"].keys() and len(pushed["ray"]) >= len(rows) - 11
    for item, (label, score) in pushed["local"].items():
        assert pushed["ray"][item][0] == label and abs(pushed["ray"][item][1] - score) < 1e-9

    # A worker's failure is one LoopError (one Error line in the CLI), not Ray's traceback.
    with pytest.raises(LoopError, match="scoring on the Ray cluster failed: .*--engine local"):
        RayScored(model_lib.new_classifier(), on_ray.settings).predict_proba(X_ray[:4])  # never fitted
