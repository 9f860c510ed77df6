"""The Ray engine (`--engine ray`, or LOOP_RAY_ADDRESS set): embedding and scoring on a Ray cluster.

Embedding: `RayEmbedder.encode` runs the model's `encode` as one Ray Data job: the texts leave this
process in blocks, a pool of actors each holding one `Embedder` (the model loaded once per actor,
on the node it runs on) embeds them with `map_batches`, and the vectors come back here in order.
`embed_texts` calls it for the texts the cache lacks, as it calls the local model, so the vectors
land in this process's embedding cache by the one path.

Scoring: `RayScored` wraps a fitted classifier; its `predict_proba` ships the classifier once
(`ray.put`), splits X into blocks and scores each in a Ray task; anything else is the
classifier's own. The strategies call it as they would the classifier, so a selection is the
local one, up to the float32 rounding of the probabilities, which differs with the blocks (as it
does locally between one and two BLAS threads: docs/benchmarks.md, "Embedding on Ray").

Ray is optional (`pip install 'loop-al[ray]'`): it is imported here, when the engine is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import fields
from typing import Any, Callable, Sequence

import numpy as np

from loop.core.embeddings import DIM, DTYPE, Embedder, model_of
from loop.errors import ConfigError, LoopError
from loop.services.settings import Settings

ENGINES = ("local", "ray")
INSTALL_HINT = "pip install 'loop-al[ray]'"
# Texts per block handed to one actor: enough to amortise a task's overhead, small enough that every
# actor gets several blocks of one job (a block left to the slowest actor is the job's tail).
BLOCK_TEXTS = 256
# Texts per Ray job, at least: `embed_texts` hands `encode` 4 x batch_size texts at a time (one cache write and
# one progress step each), and each job starts its actors (each loading the model) anew.
JOB_TEXTS = 20_000
JOB_TEXTS_PER_ACTOR = 5_000
JOB_TEXTS_MAX = 200_000  # the driver holds a job's texts and vectors (about 1.6 KB a text)
# Environment variables the workers need as this process has them: the model stays offline.
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def resolve_engine(settings: Settings, engine: str | None) -> str:
    """`engine` as asked, else `ray` when LOOP_RAY_ADDRESS is set, else `local` (also for a
    stand-in of the settings without `ray_address`, as tests pass)."""
    if engine is None:
        return "ray" if getattr(settings, "ray_address", "") else "local"
    if engine not in ENGINES:
        raise ConfigError(f"--engine is {engine!r}; choose one of {', '.join(ENGINES)}")
    return engine


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data: the `ray[data]` extra)
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray (with Ray Data), which is not installed here: {INSTALL_HINT}, "
                          "or use --engine local") from None
    return ray


def worker_env(settings: Settings) -> dict[str, str]:
    """What the workers' processes get in their environment: the embedding settings (the model
    backend) as this process resolved them, so an actor's Embedder is built as the local one."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env |= {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    for f in fields(Settings):
        if f.name.startswith("embed"):
            env[f.metadata["env"]] = str(getattr(settings, f.name))
    return env


def connect(settings: Settings):
    """Join the Ray cluster at LOOP_RAY_ADDRESS as a driver (once per process); returns `ray`."""
    if importlib.util.find_spec("ray") is None:
        _ray()  # its Error line: Ray is not installed
    if not settings.ray_address:  # before importing Ray: it reads RAY_AUTH_MODE once, at import
        raise ConfigError("--engine ray needs a Ray cluster: set LOOP_RAY_ADDRESS to its head's HOST:PORT "
                          "(what `ray start --head` prints), or use --engine local")
    ray = _ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=settings.ray_address, runtime_env={"env_vars": worker_env(settings)},
                 logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, AuthenticationError, ...
        raise ConfigError(f"cannot join the Ray cluster at LOOP_RAY_ADDRESS={settings.ray_address}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; start it with "
                          "`ray start --head` (and RAY_AUTH_MODE=token, RAY_AUTH_TOKEN as the cluster has them), "
                          "or use --engine local") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # loop's own bars show progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes (e.g. "progress bars disabled") are noise here
    return ray


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class _EmbedActor:
    """One model per actor, loaded once (on the actor's first block), used for every block it gets."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder  # unpickled without its model: this process loads its own

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"row": batch["row"], "vector": self.embedder.encode([str(t) for t in batch["text"]])}


class RayEmbedder:
    """`local`'s model run on the Ray cluster (see the module's docstring): same engine, same cache
    keys (`model_id`); only where `encode` runs differs.

    `actors`: how many model actors (each takes one CPU); None: one per CPU of the cluster.
    `batch_size` is what `embed_texts` reads to cut its calls (4 x batch_size texts each): here it
    makes each call one Ray job of `job_texts` texts at most; None: JOB_TEXTS_PER_ACTOR per actor
    (at least JOB_TEXTS, at most JOB_TEXTS_MAX), so each actor's start and model load, paid once
    per job, is spread over minutes of work.
    """

    def __init__(self, settings: Settings, local: Embedder, actors: int | None = None,
                 block_texts: int = BLOCK_TEXTS, job_texts: int | None = None):
        self.ray = connect(settings)
        self.local = local
        self.model_id = model_of(local)
        self.actors = actors or cluster_cpus(self.ray)
        self.block_texts = block_texts
        job_texts = job_texts or min(JOB_TEXTS_MAX, max(JOB_TEXTS, JOB_TEXTS_PER_ACTOR * self.actors))
        self.batch_size = max(1, job_texts // 4)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import pyarrow as pa

        texts = list(texts)
        out = np.empty((len(texts), DIM), dtype=DTYPE)
        if not texts:
            return out
        blocks = [pa.table({"row": np.arange(s, min(s + self.block_texts, len(texts))),
                            "text": texts[s:s + self.block_texts]})
                  for s in range(0, len(texts), self.block_texts)]
        ds = self.ray.data.from_arrow(blocks).map_batches(
            _EmbedActor, fn_constructor_args=(self.local,), batch_size=None, batch_format="numpy", num_cpus=1,
            compute=self.ray.data.ActorPoolStrategy(size=min(self.actors, len(blocks))))
        seen = 0
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                out[batch["row"]] = batch["vector"]  # blocks come back in any order: each row says where it goes
                seen += len(batch["row"])
        except Exception as exc:  # a worker's failure, raised here as one of Ray's many exception types
            raise _job_failed("embedding", exc) from exc
        if seen != len(texts):
            raise LoopError(f"the Ray job returned {seen} vectors for {len(texts)} texts; run again, or "
                              "use --engine local")
        return out


def _job_failed(what: str, exc: Exception) -> LoopError:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return LoopError(f"{what} on the Ray cluster failed: {lines[-1] if lines else type(exc).__name__} (each "
                     "node's worker logs: <ray start --temp-dir, default /tmp/ray>/session_latest/logs); run "
                     "again, or use --engine local")


def _score_block(classifier, X: np.ndarray) -> np.ndarray:
    return classifier.predict_proba(X)


class RayScored:
    """A fitted classifier whose `predict_proba` runs on the Ray cluster in blocks of rows (the
    classifier shipped once per call with `ray.put`); every other attribute is the classifier's."""

    def __init__(self, classifier, settings: Settings, blocks: int | None = None):
        self.classifier = classifier
        self.ray = connect(settings)
        self.blocks = blocks or cluster_cpus(self.ray)
        self._score = self.ray.remote(num_cpus=1)(_score_block)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return self.classifier.predict_proba(X)
        ref = self.ray.put(self.classifier)
        bounds = np.linspace(0, len(X), min(self.blocks, len(X)) + 1).astype(int)
        futures = [self._score.remote(ref, X[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        try:
            return np.concatenate(self.ray.get(futures))
        except Exception as exc:
            raise _job_failed("scoring", exc) from exc

    def __getattr__(self, name: str) -> Any:
        if name == "classifier":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.classifier, name)


def embedder(settings: Settings, engine: str | None, local: Embedder) -> Any:
    """The embedder for `engine` (None: from the settings): `local` itself, or `local` run on Ray
    (connecting now, so a missing Ray or cluster is an error before any work)."""
    return RayEmbedder(settings, local) if resolve_engine(settings, engine) == "ray" else local


def scorer(settings: Settings, engine: str | None) -> Callable[[Any], Any]:
    """How the strategies should see a fitted classifier under `engine` (None: from the settings):
    as itself, or as RayScored (connecting now); None (no model yet) stays None."""
    if resolve_engine(settings, engine) != "ray":
        return lambda classifier: classifier
    connect(settings)
    return lambda classifier: None if classifier is None else RayScored(classifier, settings)
