"""`next-round --relabel` on a real Redis and the fake Label Studio: a contested item gets another
label from someone who has not labelled it, the round says which items are which, and that label
counts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from loop.core.dataset import text_key
from loop.core.embeddings import DIM
from loop.workflows.rounds import next_round
from loop.workflows.training import final_labels, labels_that_count
from tests.helpers import stamp

P = 12
N = 24


class Vectors:
    """Two well separated classes: items i0-i11 near -1, i12-i23 near +1."""

    def matrix(self, p, item_ids):
        rng = np.random.default_rng(0)
        rows = [np.full(DIM, -1.0 if int(i[1:]) < 12 else 1.0) + rng.normal(scale=0.1, size=DIM) for i in item_ids]
        return np.array(rows, dtype=np.float32).reshape(len(item_ids), DIM)


@pytest.fixture
def ctx(redis_store, fake_ls):
    texts = {f"i{n}": f"text {n}" for n in range(N)}
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    redis_store.add_items(P, {i: {"task_id": 100 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())},
                          texts=texts)
    for n, name in enumerate(("ann", "bob", "cat")):
        redis_store.add_annotator({"name": name, "ls_user_id": 5 + n})
    settings = SimpleNamespace(backend_url="http://backend.test", backend_auth=None, ls_url="http://ls.test")
    return SimpleNamespace(store=redis_store, ls=fake_ls, settings=settings, vectors=Vectors(),
                           project_id=lambda explicit=None: P,
                           workspace=SimpleNamespace(backend_login=lambda: ("label-studio", "secret")))


def label(ctx, round_, name, item, value, ann_id):
    given = round_["assignments"][name]
    tasks = dict(zip(given["items"], given["tasks"])) | dict(zip(given["relabels"]["items"],
                                                                 given["relabels"]["tasks"]))
    ctx.ls.annotate(tasks[item], ann_id, value, stamp(ann_id), user={"ann": 5, "bob": 6, "cat": 7}[name])


def test_a_contested_item_gets_a_third_label_from_someone_who_had_not_labelled_it(ctx):
    round1 = next_round(ctx, P, size=6, annotators=["ann", "bob"], overlap=2)
    truth = lambda item: "neg" if int(item[1:]) < 12 else "pos"  # noqa: E731
    items = round1["assignments"]["ann"]["items"]
    assert len({truth(i) for i in items}) == 2  # the cold start spread over both classes
    contested = items[0]
    for k, item in enumerate(items):
        label(ctx, round1, "ann", item, truth(item), 10 + k)
        wrong = {"neg": "pos", "pos": "neg"}[truth(item)]
        label(ctx, round1, "bob", item, wrong if item == contested else truth(item), 30 + k)

    round2 = next_round(ctx, P, size=4, annotators=["ann", "bob", "cat"], overlap=2, relabel=1)
    assert round2["relabel"] == {"mode": 1, "items": 1, "per_annotator": {"cat": 1}} and round2["size"] == 3
    assert round2["assignments"]["cat"]["relabels"]["items"] == [contested]  # the split item, to the one who had not
    assert contested not in round2["assignments"]["cat"]["items"] and ctx.store.relabelling(P) == {contested: 2}
    assert contested in ctx.ls.task_item_ids(round2["assignments"]["cat"]["queue"])  # in cat's queue
    before = final_labels(ctx.store, P)[contested]

    label(ctx, round2, "cat", contested, truth(contested), 50)
    round3 = next_round(ctx, P, size=2, annotators=["ann", "bob", "cat"], overlap=2, relabel="off",
                        close_incomplete=True)
    counted, outside = labels_that_count(ctx.store, P)
    assert ("cat", contested) in {(a["annotator"], a["item_id"]) for a in counted} and outside == []
    assert final_labels(ctx.store, P)[contested] == truth(contested)  # 2 to 1 now, whatever the tie said before
    assert before in ("neg", "pos") and round3["relabel"]["items"] == 0 and ctx.store.relabelling(P) == {}


def test_auto_relabels_only_what_scores_below_the_new_items(ctx):
    round1 = next_round(ctx, P, size=6, annotators=["ann", "bob"], overlap=2)
    truth = lambda item: "neg" if int(item[1:]) < 12 else "pos"  # noqa: E731
    for k, item in enumerate(round1["assignments"]["ann"]["items"]):
        label(ctx, round1, "ann", item, truth(item), 10 + k)
        label(ctx, round1, "bob", item, truth(item), 30 + k)
    round2 = next_round(ctx, P, size=4, annotators=["ann", "bob", "cat"], overlap=2, relabel="auto")
    assert round2["relabel"]["items"] == 0 and round2["size"] == 4  # unanimous labels the model agrees with: none
