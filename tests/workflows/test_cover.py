"""`next-round --cover` on a real Redis and the fake Label Studio: production sends most of its
traffic to a region of the pool the labels miss, and that region gets the round's coverage picks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from loop.core.dataset import text_key
from loop.core.embeddings import DIM
from loop.errors import ConfigError, DataError
from loop.workflows.rounds import next_round
from tests.helpers import stamp

P = 14
REGIONS = {"a": range(0, 24), "b": range(24, 48), "gap": range(48, 60)}  # item number -> region


def region(item: str) -> str:
    n = int(item[1:])
    return next(name for name, span in REGIONS.items() if n in span)


def vector(direction: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.zeros(DIM)
    v[direction] = 1.0
    v += rng.normal(scale=0.05, size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


DIRECTION = {"a": 0, "b": 1, "gap": 2}


class Vectors:
    def matrix(self, p, item_ids):
        return np.array([vector(DIRECTION[region(i)], int(i[1:])) for i in item_ids],
                        dtype=np.float32).reshape(len(item_ids), DIM)


class Cache:
    """An in-memory embedding cache, as `embed_texts` sees it."""

    def __init__(self):
        self.vectors = {}

    def get_many(self, keys):
        return {k: self.vectors[k] for k in keys if k in self.vectors}

    def put_many(self, vectors):
        self.vectors.update(vectors)


class Encoder:
    """The embedding model's stand-in: production texts mentioning the gap lie in the gap region."""

    batch_size = 64

    def encode(self, texts):
        return np.stack([vector(DIRECTION["gap" if "gap" in t else "a"], 1000 + int(t.split()[-1])) for t in texts])


@pytest.fixture
def production(tmp_path):
    """30 texts in the gap region (each sent twice: volume counts) and 4 in region a."""
    rows = [f"production gap question {n}" for n in range(15)] * 2 + [f"production a question {n}" for n in range(4)]
    path = tmp_path / "production.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in rows))
    return path


@pytest.fixture
def ctx(redis_store, fake_ls):
    texts = {f"i{n}": f"cover test text {n}" for n in range(60)}
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    redis_store.add_items(P, {i: {"task_id": 200 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())},
                          texts=texts)
    for n, name in enumerate(("covann", "covbob")):
        redis_store.add_annotator({"name": name, "ls_user_id": 15 + n})
    settings = SimpleNamespace(backend_url="http://backend.test", backend_auth=None, ls_url="http://ls.test")
    return SimpleNamespace(store=redis_store, ls=fake_ls, settings=settings, vectors=Vectors(),
                           cache=Cache(), embedder=Encoder(), project_id=lambda explicit=None: P,
                           workspace=SimpleNamespace(backend_login=lambda: ("label-studio", "secret")))


def test_the_gap_production_sends_to_gets_the_cover_picks_and_the_round_says_so(ctx, production):
    path = production
    # Round 1 without cover, then labels on regions a and b only: the gap stays unlabelled.
    round1 = next_round(ctx, P, size=8, annotators=["covann"], overlap=1, seed=0)
    truth = {"a": "neg", "b": "pos", "gap": "neg"}
    given = round1["assignments"]["covann"]
    for k, (item, task) in enumerate(zip(given["items"], given["tasks"])):
        if region(item) != "gap":
            ctx.ls.annotate(task, 300 + k, truth[region(item)], stamp(300 + k), user=15)
    assert round1["cover"] is None  # no --cover, no cover record

    round2 = next_round(ctx, P, size=10, annotators=["covann", "covbob"], overlap=1, seed=0, cover=path,
                        cover_share=0.4, close_incomplete=True)
    cover = round2["cover"]
    # the labels (neg, pos) hold no negative label such as out_of_scope: all 4 go to the gaps
    assert cover["items"] == 4 and cover["negative_items"] == 0 and cover["gap_items"] == 4
    assert cover["production_rows"] == 34 and cover["source"] == str(path) and cover["share"] == 0.4
    chosen = cover["items_chosen"]
    assert len(chosen) == 4 and all(region(i) == "gap" for i in chosen), chosen
    sent = [i for a in round2["assignments"].values() for i in a["items"]]
    assert set(chosen) <= set(sent) and len(sent) == len(set(sent)) == 10
    strategy_only = [i for i in sent if i not in chosen]
    assert sum(region(i) == "gap" for i in sent) >= 4 and len(strategy_only) == 6
    # the gap clusters named in the record are where the chosen items lie
    assert sum(cover["clusters"].values()) == 4 and all(float(g) > 0 for g in cover["gaps"].values())
    # the record is kept: `loop status --round 2` gives the same
    assert ctx.store.round(P, 2)["cover"]["items_chosen"] == chosen
    assert len(ctx.cache.vectors) == 19  # production embedded once per distinct text, into the cache


def test_bad_cover_options_fail_before_any_work(ctx, tmp_path):
    with pytest.raises(ConfigError, match="--cover-share"):
        next_round(ctx, P, size=6, annotators=["covann"], overlap=1, cover=tmp_path / "x.jsonl", cover_share=2)
    with pytest.raises(DataError, match="no such file"):
        next_round(ctx, P, size=6, annotators=["covann"], overlap=1, cover=tmp_path / "missing.jsonl")
    assert ctx.store.rounds(P) == []
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "  "}) + "\n")
    with pytest.raises(DataError, match="no non-empty"):
        next_round(ctx, P, size=6, annotators=["covann"], overlap=1, cover=empty)
    assert ctx.store.rounds(P) == []
