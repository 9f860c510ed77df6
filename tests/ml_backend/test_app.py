"""The ML backend's HTTP protocol, on a real (throwaway) Redis and a fake embedder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from loop.core import model as model_lib
from loop.core.embeddings import DIM
from loop.labels.interface import CONTROL, OBJECT, result_label
from loop.services.stack import TELEMETRY_OFF
from loop.services.store import Store
from loop.services.vectors import EmbeddingCache
from ml_backend.app import create_app
from tests.helpers import REPO

P = 7


class FakeEmbedder:
    """Deterministic unit vectors from each text's hash; counts what it was asked to embed."""

    batch_size = 64

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts):
        texts = list(texts)
        self.calls.append(texts)
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=DIM)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), DIM)




@pytest.fixture
def embedder():
    return FakeEmbedder()


@pytest.fixture
def client(redis_store, tmp_path, embedder):
    app = create_app(redis_store, EmbeddingCache(tmp_path / "embeddings.sqlite"), embedder)
    with TestClient(app) as c:
        yield c


TRAIN = [("refund my double charge", "billing"), ("invoice is wrong", "billing"), ("card charged twice", "billing"),
         ("parcel is late", "delivery"), ("box arrived crushed", "delivery"), ("where is my order", "delivery"),
         ("cannot log in", "account"), ("reset my password", "account"), ("2FA code never arrives", "account")]


def train_and_store(store: Store, classes=("billing", "delivery", "account"), version: str = "v1"):
    pairs = [(t, y) for t, y in TRAIN if y in classes]
    X = FakeEmbedder().encode([t for t, _ in pairs])
    clf = LogisticRegression(max_iter=1000).fit(X, [y for _, y in pairs])
    store.save_model(P, model_lib.snapshot(clf, version, n_labels=len(pairs)))
    return clf


def tasks(*texts):
    return [{"id": 100 + i, "project": P, "data": {OBJECT: t}} for i, t in enumerate(texts)]


# -- health and setup -----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/health", "/"])
def test_health(client, path):
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.json()["status"] == "UP"


def test_setup_before_and_after_a_model(client, redis_store):
    redis_store.save_project(P, {"labels": ["billing", "delivery", "account"]}, make_current=False)
    body = {"project": str(P) + ".1712345678", "schema": "<View/>"}
    assert client.post("/setup", json=body).json() == {"model_version": "none"}
    train_and_store(redis_store)
    assert client.post("/setup", json=body).json() == {"model_version": "v1"}
    train_and_store(redis_store, classes=("billing", "delivery"), version="v2")
    assert client.post("/setup", json={"project": P}).json() == {"model_version": "v2"}
    assert client.post("/setup", json={"project": {"id": P}}).json() == {"model_version": "v2"}
    unknown = client.post("/setup", json={"project": P + 1})  # one rule with /webhook: an unknown project is a 404
    assert unknown.status_code == 404 and "not a loop project" in unknown.json()["error"]


def test_setup_with_a_bad_project(client):
    resp = client.post("/setup", json={"project": "not-a-number"})
    assert resp.status_code == 400
    assert resp.json()["status"] == "error" and "project" in resp.json()["error"]


# -- predict --------------------------------------------------------------------------------
def test_predict_one_result_per_task(client, redis_store, embedder):
    clf = train_and_store(redis_store)
    texts = ["my card was charged twice", "the courier lost it", "locked out of my account", "hello"]
    resp = client.post("/predict", json={"project": P, "tasks": tasks(*texts)})
    assert resp.status_code == 200
    body = resp.json()
    assert body["model_version"] == "v1"
    assert len(body["results"]) == len(texts)
    proba = clf.predict_proba(FakeEmbedder().encode(texts))  # the classifier as trained, not as served
    for res, row in zip(body["results"], proba):
        assert res["model_version"] == "v1"
        assert res["score"] == pytest.approx(row.max(), rel=1e-5)
        assert result_label(res["result"]) == clf.classes_[row.argmax()]
        assert res["result"][0]["from_name"] == CONTROL and res["result"][0]["to_name"] == OBJECT
    assert sorted(t for call in embedder.calls for t in call) == sorted(texts)


def test_predict_embeds_each_text_once(client, redis_store, embedder):
    train_and_store(redis_store)
    body = {"project": P, "tasks": tasks("same text", "same text", "other text")}
    first = client.post("/predict", json=body).json()
    second = client.post("/predict", json=body).json()
    assert first == second
    assert len(first["results"]) == 3
    assert sorted(t for call in embedder.calls for t in call) == ["other text", "same text"]  # cache hit later


def test_predict_serves_a_new_model_without_restart(client, redis_store):
    train_and_store(redis_store)
    body = {"project": P, "tasks": tasks("parcel is late")}
    assert client.post("/predict", json=body).json()["model_version"] == "v1"
    clf2 = train_and_store(redis_store, classes=("billing", "account"), version="v2")
    res = client.post("/predict", json=body).json()
    assert res["model_version"] == "v2"
    assert result_label(res["results"][0]["result"]) in {"billing", "account"}
    assert res["results"][0]["score"] == pytest.approx(
        clf2.predict_proba(FakeEmbedder().encode(["parcel is late"])).max(), rel=1e-5)


def test_predict_project_from_the_tasks(client, redis_store):
    train_and_store(redis_store)
    res = client.post("/predict", json={"tasks": tasks("where is my order")})
    assert res.status_code == 200 and len(res.json()["results"]) == 1


def test_predict_without_a_model(client, embedder):
    res = client.post("/predict", json={"project": P, "tasks": tasks("anything", "something else")})
    assert res.status_code == 200
    assert res.json() == {"results": [[], []], "model_version": "none"}  # no prediction for each task
    assert embedder.calls == []  # nothing embedded for nothing to predict
    assert client.post("/predict", json={"project": P, "tasks": []}).json() == {"results": [], "model_version": "none"}


def label_studio_stores(tasks: list[dict], response: dict) -> tuple[list[dict], list[str]]:
    """What Label Studio 1.23 makes of a /predict answer: (predictions it stores, errors it logs).

    Transcribed from label_studio/ml/models.py, `MLBackend._get_predictions_from_ml_backend`:

        elif not isinstance(result.response, dict) or 'results' not in result.response:
            logger.error(f'ML backend returns an incorrect response, it must be a dict: {result.response}')
            return []
        elif not isinstance(result.response['results'], list) or len(result.response['results']) == 0:
            logger.error(
                'ML backend returns an incorrect response, results field must be a list with at least one item'
            )
            return []
        responses = result.response['results']
        if len(serialized_tasks) != len(responses):
            return self._get_predictions_from_ml_backend_one_by_one(serialized_tasks, responses)
        for task, response in zip(serialized_tasks, responses):
            if isinstance(response, dict):
                response = [response]
            for r in response:
                if 'result' not in r:
                    logger.error(f"ML backend returns an incorrect prediction, it should be a dict with the "
                                 f"'result' field: {r}")
                    continue
                predictions.append({'task': task['id'], 'result': r['result'], 'score': r.get('score'), ...})
    """
    if not isinstance(response, dict) or "results" not in response:
        return [], ["ML backend returns an incorrect response, it must be a dict"]
    results = response["results"]
    if not isinstance(results, list) or len(results) == 0:
        return [], ["ML backend returns an incorrect response, results field must be a list with at least one item"]
    if len(tasks) != len(results):
        return [], [f"Number of tasks and responses are not equal: {len(tasks)} tasks != {len(results)} responses"]
    stored, errors = [], []
    for task, entry in zip(tasks, results):
        for r in [entry] if isinstance(entry, dict) else entry:
            if "result" not in r:
                errors.append("ML backend returns an incorrect prediction, it should be a dict with the 'result' field")
                continue
            stored.append({"task": task["id"], "result": r["result"], "score": r.get("score")})
    return stored, errors


def test_label_studio_accepts_the_answer_without_a_model(client):
    sent = tasks("anything", "something else", "a third")
    answer = client.post("/predict", json={"project": P, "tasks": sent}).json()
    assert label_studio_stores(sent, answer) == ([], [])  # nothing stored, nothing logged


def test_label_studio_stores_one_prediction_per_task_with_a_model(client, redis_store):
    train_and_store(redis_store)
    sent = tasks("refund my charge", "where is my parcel")
    stored, errors = label_studio_stores(sent, client.post("/predict", json={"project": P, "tasks": sent}).json())
    assert errors == [] and [s["task"] for s in stored] == [100, 101]


LS_PROBE = """
import json, logging, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ['DJANGO_SETTINGS_MODULE'] = 'label_studio.core.settings.label_studio'
import django
django.setup()
logging.getLogger().handlers[:] = [logging.StreamHandler(sys.stderr)]
logging.getLogger().setLevel(logging.DEBUG)
from ml.api_connector import MLApiResult
from ml.models import MLBackend

tasks, answers = json.load(sys.stdin)

class Api:
    def __init__(self, answer):
        self.answer = answer
    def make_predictions(self, tasks, project, context=None):
        return MLApiResult(response=self.answer)

class Backend:  # the attributes MLBackend._get_predictions_from_ml_backend reads
    project, title, model_version = None, "loop", "none"
    def __init__(self, answer):
        self.api = Api(answer)
    def _get_predictions_from_ml_backend_one_by_one(self, *args):
        return MLBackend._get_predictions_from_ml_backend_one_by_one(self, *args)

print(json.dumps([MLBackend._get_predictions_from_ml_backend(Backend(a), tasks) for a in answers]))
"""


def test_label_studios_own_validator_takes_the_answers(client, redis_store, tmp_path):
    """Label Studio's own code (from its virtualenv) on /predict's answers: without a model it
    stores nothing and logs no error; with one it stores one prediction per task."""
    venv = Path(os.environ.get("LOOP_LABEL_STUDIO_VENV") or REPO / ".venv-label-studio")
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"no Label Studio virtualenv at {venv} (`make install` makes it; or set LOOP_LABEL_STUDIO_VENV)")
    sent = tasks("anything", "something else")
    without = client.post("/predict", json={"project": P, "tasks": sent}).json()
    train_and_store(redis_store)
    with_model = client.post("/predict", json={"project": P, "tasks": sent}).json()
    data_dir = tmp_path / "ls"
    data_dir.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
           **TELEMETRY_OFF}
    out = subprocess.run([str(venv / "bin" / "python"), "-c", LS_PROBE], env=env, cwd=tmp_path, timeout=120,
                         input=json.dumps([sent, [without, with_model]]), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    stored_without, stored_with = json.loads(out.stdout.strip().splitlines()[-1])
    assert stored_without == []
    assert "incorrect" not in out.stderr and "not equal" not in out.stderr, out.stderr[-2000:]
    assert [(s["task"], s["model_version"]) for s in stored_with] == [(100, "v1"), (101, "v1")]


@pytest.mark.parametrize("bad_task", [
    {"id": 5, "data": {}},
    {"id": 5, "data": {OBJECT: None}},
    {"id": 5, "data": {OBJECT: 42}},
    {"id": 5},
    "just a string",
])
def test_predict_task_without_text(client, redis_store, embedder, bad_task):
    train_and_store(redis_store)
    resp = client.post("/predict", json={"project": P, "tasks": [*tasks("fine"), bad_task]})
    assert resp.status_code == 422
    body = resp.json()
    assert body["status"] == "error"
    assert f"data.{OBJECT}" in body["error"]
    if isinstance(bad_task, dict):
        assert "5" in body["error"]
    assert embedder.calls == []  # validated before any work


def test_predict_tasks_not_a_list(client):
    resp = client.post("/predict", json={"project": P, "tasks": {"id": 1}})
    assert resp.status_code == 400
    assert "tasks" in resp.json()["error"]


@pytest.mark.parametrize("path", ["/predict", "/setup", "/webhook"])
@pytest.mark.parametrize("content", [b"this is not json", b"{\"tasks\": [", b""])
def test_non_json_body(client, path, content):
    resp = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json() == {"status": "error", "error": "the body is not JSON"}  # one error shape everywhere


@pytest.mark.parametrize("path", ["/predict", "/setup", "/webhook"])
def test_json_that_is_not_an_object(client, path):
    resp = client.post(path, json=[1, 2, 3])
    assert resp.status_code == 400
    assert "object" in resp.json()["error"]


# -- webhook --------------------------------------------------------------------------------
def loop_project(store):
    """A project as `loop init` leaves it: labels, one item on task 100, one annotator."""
    store.save_project(P, {"labels": ["neg", "pos"], "guideline_version": 2}, make_current=False)
    store.add_items(P, {"i1": {"task_id": 100, "key": "h1"}})
    store.add_annotator({"name": "alice", "ls_user_id": 5})


def created(label="pos", annotation_id=9, text="great", action="ANNOTATION_CREATED"):
    return {"action": action, "project": {"id": P},
            "annotation": {"id": annotation_id, "task": 100, "completed_by": 5, "was_cancelled": False,
                           "result": [{"from_name": CONTROL, "to_name": OBJECT, "type": "choices",
                                       "value": {"choices": [label]}}]},
            "task": {"id": 100, "data": {OBJECT: text} if text is not None else {"other": "x"}}}


def events(store):
    import json

    return [json.loads(f[b"event"]) for _, f in store.r.xrange(f"loop:project:{P}:events")]


def test_a_webhook_is_a_signal_its_labels_are_never_trusted(client, redis_store):
    """A payload's labels could be forged: the event only tells the trainer to read Label Studio."""
    loop_project(redis_store)
    resp = client.post("/webhook", json=created(label="neg"))
    assert resp.status_code == 201 and resp.json()["status"] == "queued"
    (event,) = events(redis_store)
    assert event["sync"] is True and event["ls_project"] == P and "upsert" not in event
    assert client.post("/webhook", json=created(label="no such label")).status_code == 201  # not read: no 422
    deleted = {"action": "ANNOTATIONS_DELETED", "project": {"id": P}, "annotations": [{"id": 9}]}
    assert client.post("/webhook", json=deleted).status_code == 201
    assert [e["action"] for e in events(redis_store)] == ["ANNOTATION_CREATED", "ANNOTATION_CREATED",
                                                          "ANNOTATIONS_DELETED"]
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": P}}).status_code == 201
    assert events(redis_store)[-1] == {"action": "START_TRAINING", "retrain": True,
                                       "received_at": events(redis_store)[-1]["received_at"]}
    assert redis_store.dead_letters() == [] and redis_store.annotations(P) == {}


@pytest.mark.parametrize("payload, status, reason", [
    ({**created(), "project": {"id": 999}}, 404, "not a loop project"),
    ({**created(), "project": "not-a-number"}, 400, "project"),
])
def test_a_refused_webhook_is_a_clear_4xx_and_is_dead_lettered(client, redis_store, payload, status, reason):
    loop_project(redis_store)
    resp = client.post("/webhook", json=payload)
    assert resp.status_code == status and reason in resp.json()["error"]
    assert redis_store.event_count(P) == 0
    (dead,) = redis_store.dead_letters()
    assert reason in dead["reason"] and dead["payload"] == payload


def test_bodies_are_capped_and_dead_letters_keep_an_excerpt(redis_store, tmp_path):
    from loop.services.store import DEAD_LETTER_EXCERPT
    from ml_backend.app import Limits

    loop_project(redis_store)
    app = create_app(redis_store, EmbeddingCache(tmp_path / "c.sqlite"), FakeEmbedder(),
                     limits=Limits(webhook_body=2000, predict_body=5000, predict_tasks=3, predict_text=50))
    client = TestClient(app)
    big = {"action": "ANNOTATION_CREATED", "project": {"id": 999}, "junk": "x" * 1500}
    resp = client.post("/webhook", json=big)  # under the cap, refused (unknown project): an excerpt is kept
    assert resp.status_code == 404
    (dead,) = redis_store.dead_letters()
    assert dead["size"] > 1500 and len(json.dumps(dead["payload"]) if isinstance(dead["payload"], dict)
                                       else dead["payload"]) <= DEAD_LETTER_EXCERPT
    huge = client.post("/webhook", content=b"{" + b" " * 10_000 + b"}", headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "at most 2,000" in huge.json()["error"]
    assert redis_store.dead_letters()[-1]["size"] < 100  # the refusal, not the 10 kB body
    too_many = client.post("/predict", json={"project": P, "tasks": tasks("a", "b", "c", "d")})
    assert too_many.status_code == 413 and "at most 3" in too_many.json()["error"]
    too_long = client.post("/predict", json={"project": P, "tasks": tasks("y" * 51)})
    assert too_long.status_code == 413 and "at most 50" in too_long.json()["error"]
    assert client.post("/predict", json={"project": P, "tasks": tasks("x" * 6000)}).status_code == 413  # the body


def test_while_redis_is_down_every_answer_is_a_json_503_and_health_says_so(tmp_path):
    import redis as redis_lib

    from loop.services.store import Store as RedisStore

    dead = RedisStore(redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    client = TestClient(create_app(dead, EmbeddingCache(tmp_path / "c.sqlite"), FakeEmbedder()))
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "DOWN" and "unreachable" in health.json()["redis"]
    for path, body in (("/webhook?project=7", {"action": "ANNOTATION_CREATED"}), ("/setup", {"project": P}),
                       ("/predict", {"project": P, "tasks": tasks("hello")})):
        resp = client.post(path, json=body)
        assert resp.status_code == 503, path
        assert resp.json()["status"] == "error" and "Redis is unreachable" in resp.json()["error"]
    assert client.get("/metrics").status_code == 503


def test_a_malformed_body_is_dead_lettered_as_text(client, redis_store):
    resp = client.post("/webhook", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert redis_store.dead_letters()[0]["payload"] == "{not json"


def test_actions_the_trainer_does_not_need_are_acknowledged_and_ignored(client, redis_store):
    loop_project(redis_store)
    resp = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": P}})
    assert resp.status_code == 200 and resp.json()["status"] == "ignored"
    assert redis_store.event_count(P) == 0


@pytest.mark.parametrize("event", [
    {"project": {"id": P}},
    {"action": None, "project": {"id": P}},
    {"action": 3, "project": {"id": P}},
])
def test_webhook_without_action(client, redis_store, event):
    resp = client.post("/webhook", json=event)
    assert resp.status_code == 400
    assert "action" in resp.json()["error"]
    assert redis_store.event_count(P) == 0


def test_webhook_without_project(client, redis_store):
    resp = client.post("/webhook", json={"action": "ANNOTATION_CREATED"})
    assert resp.status_code == 400
    assert "project" in resp.json()["error"]


def test_a_payload_less_webhook_queues_a_sync_for_the_project_in_its_url(client, redis_store):
    loop_project(redis_store)
    resp = client.post(f"/webhook?project={P}&ls_project=41", json={"action": "ANNOTATION_CREATED"})
    assert resp.status_code == 201
    (event,) = events(redis_store)
    assert event["sync"] is True and event["action"] == "ANNOTATION_CREATED" and event["ls_project"] == 41
    resp = client.post("/webhook?project=999", json={"action": "ANNOTATIONS_DELETED"})
    assert resp.status_code == 404 and "not a loop project" in resp.json()["error"]
    assert redis_store.dead_letters()[0]["payload"] == {"action": "ANNOTATIONS_DELETED"}
    assert redis_store.event_count(P) == 1


# -- metrics --------------------------------------------------------------------------------
def test_metrics_count_requests(client, redis_store):
    train_and_store(redis_store)
    client.post("/predict", json={"project": P, "tasks": tasks("a", "b")})
    loop_project(redis_store)
    client.post("/webhook", json=created())
    m = client.get("/metrics").json()
    assert m["predict_requests"] == 1 and m["tasks_predicted"] == 2 and m["webhooks"] == 1


# -- auth -----------------------------------------------------------------------------------
def test_with_a_login_configured_calls_without_it_are_refused(redis_store, tmp_path):
    import base64

    redis_store.save_project(P, {"labels": ["a", "b"]}, make_current=False)
    app = create_app(redis_store, EmbeddingCache(tmp_path / "c.sqlite"), FakeEmbedder(), auth=("ls", "s3cret-pass"))
    client = TestClient(app)
    for method, path in (("get", "/health"), ("post", "/setup"), ("post", "/predict"), ("post", "/webhook")):
        resp = getattr(client, method)(path)
        assert resp.status_code == 401 and "authentication required" in resp.json()["error"]
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ls:nope").decode()}
    assert client.get("/health", headers=wrong).status_code == 401
    right = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret-pass").decode()}
    assert client.get("/health", headers=right).json()["status"] == "UP"
    assert client.post("/setup", json={"project": P}, headers=right).status_code == 200


def test_a_starting_backend_asks_the_trainer_to_read_what_it_missed(redis_store, tmp_path):
    loop_project(redis_store)
    with TestClient(create_app(redis_store, EmbeddingCache(tmp_path / "c.sqlite"), FakeEmbedder())):
        pass  # the app's startup ran
    (event,) = events(redis_store)
    assert event["action"] == "BACKEND_STARTED" and event["sync"] is True and "ls_project" not in event
