"""Label Studio's ML-backend protocol: /health, /setup, /predict, /webhook, /metrics.

`create_app` builds a fresh app from its dependencies (no module globals). The classifier comes
from loop's model store in Redis: each request checks the current version with one GET and
reloads only when it changed, so a new model is served without a restart or a lock.
A webhook is a signal (`ml_backend.webhooks`): appended to a Redis stream and answered at once;
training happens elsewhere, never inside Label Studio's request.

Every error has one JSON shape, {"status": "error", "error": "..."}: 400/404/413/422 for a bad
request, 401 without the login, 503 while Redis is unreachable (a webhook then is neither queued
nor dead-lettered: the trainer's catch-up reads the change from Label Studio once Redis is back).
Request bodies are capped (`Limits`), so no one can make Redis or the process grow.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from loop.core import model as model_lib
from loop.core.embeddings import Embedder, VectorCache, cached_matrix, embed_texts, model_of
from loop.labels.interface import OBJECT, prediction_row
from loop.services.store import Store
from ml_backend import webhooks


@dataclass(frozen=True)
class Limits:
    """What one request may carry. Label Studio's own calls stay far below: a webhook of loop's
    carries no payload, /predict gets one task when an annotator opens it, a page of tasks for
    the Data Manager, or the tasks an operator selected for "Retrieve predictions"."""

    webhook_body: int = 1 << 20          # 1 MiB
    predict_body: int = 32 << 20         # 32 MiB
    predict_tasks: int = 10_000          # tasks per /predict (about 25 s of embedding on 2 cores)
    predict_text: int = 100_000          # characters per task text (the model reads the first ~1,000)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        self.message, self.status = message, status


def _project_id(value: Any) -> int:
    try:
        return webhooks.project_id(value)
    except webhooks.Refused as exc:
        raise BadRequest(exc.reason, exc.status) from None


async def _capped(request: Request, limit: int) -> bytes:
    """The request body, refused (413) when it is over `limit` bytes, before reading more than that."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the body is {int(declared):,} bytes; at most {limit:,} are taken", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the body is over {limit:,} bytes; at most {limit:,} are taken", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


class Models:
    """The current classifier per project, reloaded when its version in Redis changes."""

    def __init__(self, store: Store):
        self.store = store
        self._loaded: dict[int, tuple[str, Any]] = {}

    def current(self, p: int) -> tuple[str | None, Any]:
        version = self.store.current_model_version(p)
        if version is None:
            return None, None
        cached = self._loaded.get(p)
        if cached is None or cached[0] != version:
            snap = self.store.load_model(p, version)
            if snap is None:
                return None, None
            cached = (version, model_lib.restore(snap))
            self._loaded[p] = cached
        return cached


def no_predictions(n_tasks: int) -> list[list]:
    """The /predict answer for n tasks without a model: an empty list of predictions per task.

    Label Studio 1.23 (label_studio/ml/models.py, `MLBackend._get_predictions_from_ml_backend`)
    logs "ML backend returns an incorrect response, results field must be a list with at least
    one item" for `"results": []`; with one entry per task it zips tasks and entries, wraps a dict
    entry in a list and stores each dict of that list as a prediction, so an empty list stores
    nothing and logs nothing. (`{"result": []}` per task would store an empty prediction on every
    task.) Label Studio never asks for zero tasks, so n = 0 gets `[]`.
    """
    return [[] for _ in range(n_tasks)]


class RequireLogin:
    """Basic-auth on every request, as plain ASGI (a Starlette `@app.middleware` costs a task and
    a queue per request: a third of the webhook intake at 16 senders)."""

    def __init__(self, app, auth: tuple[str, str]):
        self.app, self.auth = app, auth

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not _authorized(header, self.auth):
                response = JSONResponse({"status": "error", "error": "authentication required: basic auth with the "
                                         "backend's login (`loop credentials` shows it)"},
                                        status_code=401, headers={"WWW-Authenticate": 'Basic realm="loop"'})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _authorized(header: str | None, auth: tuple[str, str]) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given, f"{auth[0]}:{auth[1]}")


def create_app(store: Store, cache: VectorCache, embedder: Embedder,
               auth: tuple[str, str] | None = None, limits: Limits = Limits()) -> FastAPI:
    """`auth`: a (user, password) basic-auth login that every request must carry (Label Studio
    sends it when the backend is connected with it)."""
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # Label Studio dropped the webhooks it could not deliver while this backend was down: tell
        # the trainer to read every project's changes now rather than at its next catch-up.
        try:
            for p in store.project_ids():
                store.append_event(p, {"action": "BACKEND_STARTED", "sync": True, "received_at": time.time()})
        except redis.RedisError:
            pass  # Redis is down too: the trainer catches up when it is back
        yield

    app = FastAPI(title="loop ML backend", lifespan=lifespan)
    if auth is not None:
        app.add_middleware(RequireLogin, auth=auth)
    models = Models(store)
    started = time.time()
    counters = {"predict_requests": 0, "tasks_predicted": 0, "webhooks": 0, "webhooks_refused": 0,
                "webhooks_lost_to_redis": 0}

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"status": "error", "error": message}, status_code=status)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest):
        return error(exc.message, exc.status)

    @app.exception_handler(redis.RedisError)
    async def redis_down(request: Request, exc: redis.RedisError):
        if request.url.path == "/webhook":
            counters["webhooks_lost_to_redis"] += 1
        return error(f"Redis is unreachable ({exc.__class__.__name__}: {exc}); the ML backend needs it. Restart it "
                     "(`loop up`); label changes made meanwhile are read from Label Studio by the trainer's "
                     "catch-up", 503)

    projects: set[int] = set()  # loop projects seen: a project never stops being one, so only a miss asks Redis

    def is_project(p: int) -> bool:
        if p not in projects and store.is_project(p):
            projects.add(p)
        return p in projects

    def known(p: int) -> int:
        if not is_project(p):
            raise BadRequest(f"project {p} is not a loop project; run `loop init` for it first", status=404)
        return p

    @app.get("/")
    @app.get("/health")
    def health():
        try:
            store.r.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": "DOWN", "model_class": "loop", "v2": True,
                                 "redis": f"unreachable: {exc}"}, status_code=503)
        return {"status": "UP", "model_class": "loop", "v2": True, "redis": "ok"}

    @app.post("/setup")
    async def setup(request: Request):
        data = _json_object(await _capped(request, limits.webhook_body))
        version, _ = models.current(known(_project_id(data.get("project"))))
        return {"model_version": version or "none"}

    @app.post("/predict")
    async def predict(request: Request):
        data = _json_object(await _capped(request, limits.predict_body))
        tasks = data.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequest("'tasks' must be a list of tasks")
        if len(tasks) > limits.predict_tasks:
            raise BadRequest(f"{len(tasks):,} tasks in one request; at most {limits.predict_tasks:,} are taken: "
                             "send them in batches (`loop predictions push` scores a whole project)", status=413)
        p = _project_id(data.get("project") or (tasks[0].get("project") if tasks and isinstance(tasks[0], dict)
                                                else None))
        texts = []
        for task in tasks:
            text = (task.get("data") or {}).get(OBJECT) if isinstance(task, dict) else None
            if not isinstance(text, str):
                raise BadRequest(f"task {task.get('id') if isinstance(task, dict) else task!r} has no "
                                 f"data.{OBJECT} text", status=422)
            if len(text) > limits.predict_text:
                raise BadRequest(f"task {task.get('id')} has a text of {len(text):,} characters; at most "
                                 f"{limits.predict_text:,} are taken (the model reads the first ~1,000)", status=413)
            texts.append(text)
        version, clf = models.current(p)
        counters["predict_requests"] += 1
        if clf is None or not texts:
            return {"results": no_predictions(len(texts)), "model_version": version or "none"}
        X = cached_matrix(texts, cache, model_of(embedder))
        if X is not None:
            # Every text seen before: a few milliseconds, done here. A thread hop would have the
            # request wait for the GIL behind the event loop at every switch (p99 59 -> ms under a
            # webhook storm, docs/benchmarks.md).
            guesses = model_lib.predict(clf, X)
        else:
            # Embedding is CPU work: off the event loop, so /webhook and /health stay instant meanwhile.
            guesses = await run_in_threadpool(lambda: model_lib.predict(clf, embed_texts(texts, cache, embedder)[0]))
        counters["tasks_predicted"] += len(texts)
        results = [prediction_row(label, score, version) for label, score in guesses]
        # A JSONResponse skips FastAPI's jsonable_encoder walk over every result (4-5 ms at 100 tasks).
        return JSONResponse({"results": results, "model_version": version})

    @app.post("/webhook")
    async def webhook(request: Request):
        raw = b""
        try:
            raw = await _capped(request, limits.webhook_body)
            # One quick Redis call (two for a project not seen yet), made here: a thread hop per
            # event would cost more than it does.
            parsed = webhooks.parse(_json_object(raw), is_project, request.query_params.get("project"),
                                    request.query_params.get("ls_project"))
        except (BadRequest, webhooks.Refused) as exc:
            status = exc.status
            reason = exc.message if isinstance(exc, BadRequest) else exc.reason
            store.dead_letter(reason, raw.decode("utf-8", errors="replace") if raw else f"({reason})")
            counters["webhooks_refused"] += 1
            return error(reason, status)
        counters["webhooks"] += 1
        if parsed is None:
            return JSONResponse({"status": "ignored"}, status_code=200)
        p, event = parsed
        event_id = store.append_event(p, {**event, "received_at": time.time()})
        return JSONResponse({"status": "queued", "event": event_id}, status_code=201)

    @app.get("/metrics")
    def metrics():
        projects = {p: {"model_version": store.current_model_version(p), "events_waiting": store.backlog(p)}
                    for p in store.project_ids()}
        beat = store.last_heartbeat()
        return {**counters, "uptime_s": round(time.time() - started, 1), "projects": projects,
                "dead_letters": store.dead_letter_count(),
                "trainer_heartbeat_age_s": None if beat is None else round(time.time() - beat, 1)}

    return app
