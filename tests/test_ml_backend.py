"""The ML backend's HTTP protocol, on a real (throwaway) Redis and a fake embedder."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from loop import model as model_lib
from loop.embeddings import DIM, EmbeddingCache
from loop.labelstudio import CONTROL, OBJECT, result_label
from loop.store import Store
from ml_backend.app import create_app

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
    body = {"project": str(P) + ".1712345678", "schema": "<View/>"}
    assert client.post("/setup", json=body).json() == {"model_version": "none"}
    train_and_store(redis_store)
    assert client.post("/setup", json=body).json() == {"model_version": "v1"}
    train_and_store(redis_store, classes=("billing", "delivery"), version="v2")
    assert client.post("/setup", json={"project": P}).json() == {"model_version": "v2"}
    assert client.post("/setup", json={"project": {"id": P}}).json() == {"model_version": "v2"}
    assert client.post("/setup", json={"project": P + 1}).json() == {"model_version": "none"}


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
    res = client.post("/predict", json={"project": P, "tasks": tasks("anything")})
    assert res.status_code == 200
    assert res.json() == {"results": [], "model_version": "none"}
    assert embedder.calls == []  # nothing embedded for nothing to predict


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
    assert resp.json() == {"status": "error", "error": "the body is not JSON"}


@pytest.mark.parametrize("path", ["/predict", "/setup", "/webhook"])
def test_json_that_is_not_an_object(client, path):
    resp = client.post(path, json=[1, 2, 3])
    assert resp.status_code == 400
    assert "object" in resp.json()["error"]


# -- webhook --------------------------------------------------------------------------------
def test_webhook_appends_an_event(client, redis_store):
    assert redis_store.event_count(P) == 0
    event = {"action": "ANNOTATION_CREATED", "project": {"id": P}, "annotation": {"id": 9}, "task": {"id": 100}}
    resp = client.post("/webhook", json=event)
    assert resp.status_code == 201
    assert resp.json()["status"] == "queued"
    assert redis_store.event_count(P) == 1
    client.post("/webhook", json={**event, "action": "ANNOTATION_UPDATED"})
    assert redis_store.event_count(P) == 2
    assert redis_store.event_count(P + 1) == 0
    stored = redis_store.r.xrange(f"loop:project:{P}:events")
    assert stored[0][0].decode() == resp.json()["event"]


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


# -- metrics --------------------------------------------------------------------------------
def test_metrics_count_requests(client, redis_store):
    train_and_store(redis_store)
    client.post("/predict", json={"project": P, "tasks": tasks("a", "b")})
    client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": P})
    m = client.get("/metrics").json()
    assert m["predict_requests"] == 1 and m["tasks_predicted"] == 2 and m["webhooks"] == 1
