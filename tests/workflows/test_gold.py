"""The gold set on a real Redis and the fake Label Studio: `gold add` (matching by id and by text,
new items added, bad rows refused with nothing written), `gold promote`, and next-round: gold never
selected nor trained on, scored every round, mixed into queues as control items whose answers
measure the annotator and count nowhere else."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from loop.core.dataset import text_key
from loop.core.embeddings import DIM
from loop.errors import ConfigError, DataError
from loop.labels.gold import wilson
from loop.services.store import Keys
from loop.workflows import gold as gold_flow
from loop.workflows.rounds import next_round
from loop.workflows.status import status
from loop.workflows.training import control_answers, final_labels, labels_that_count, training_set
from tests.helpers import stamp

P = 12
N = 24
USERS = {"ann": 5, "bob": 6, "cat": 7}


def truth(item: str) -> str:
    return "neg" if int(item[1:]) % 100 < 12 else "pos"


class Vectors:
    """Two well separated classes by item number: i0-i11 near -1, i12-i99 near +1 (i1xx as ixx)."""

    def matrix(self, p, item_ids):
        rng = np.random.default_rng(0)
        rows = [np.full(DIM, -1.0 if truth(i) == "neg" else 1.0) + rng.normal(scale=0.1, size=DIM) for i in item_ids]
        return np.array(rows, dtype=np.float32).reshape(len(item_ids), DIM)


@pytest.fixture
def ctx(redis_store, fake_ls):
    texts = {f"i{n}": f"text {n}" for n in range(N)}
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    redis_store.add_items(P, {i: {"task_id": 100 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())},
                          texts=texts)
    for name, user in USERS.items():
        redis_store.add_annotator({"name": name, "ls_user_id": user})
    settings = SimpleNamespace(backend_url="http://backend.test", backend_auth=None, ls_url="http://ls.test")
    return SimpleNamespace(store=redis_store, ls=fake_ls, settings=settings, vectors=Vectors(),
                           project_id=lambda explicit=None: P,
                           workspace=SimpleNamespace(backend_login=lambda: ("label-studio", "secret")))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def label_all(ctx, round_, start):
    """Every annotator labels every new item of the round with its true label."""
    k = start
    for name, given in round_["assignments"].items():
        for item, task in zip(given["items"], given["tasks"]):
            ctx.ls.annotate(task, k, truth(item), stamp(k % 60), user=USERS[name])
            k += 1
    return k


def test_gold_add_matches_by_id_and_by_text_and_adds_new_items(ctx, tmp_path):
    path = write_jsonl(tmp_path / "expert.jsonl", [
        {"id": "i3", "text": "text 3", "label": "neg"},          # same id
        {"id": "x-20", "text": "text 20", "label": "pos"},       # another id, same text as i20
        {"id": "i150", "text": "text 150", "label": "pos"},      # new to the project
    ])
    r = gold_flow.add_gold(ctx, P, path)
    assert (r["added"], r["existing_items"], r["new_items"], r["gold"]) == (3, 2, 1, 3)
    gold = ctx.store.gold(P)
    assert {i: g["label"] for i, g in gold.items()} == {"i3": "neg", "i20": "pos", "i150": "pos"}
    assert {g["source"] for g in gold.values()} == {"file:expert.jsonl"}
    # the new item is an item like `loop init` makes: a task in the main project, its text in Redis
    task = ctx.store.items(P)["i150"]["task_id"]
    assert ctx.ls.tasks[task]["project"] == P and ctx.ls.tasks[task]["data"] == {"text": "text 150", "item_id": "i150"}
    assert ctx.store.item_texts(P, ["i150"]) == {"i150": "text 150"}
    again = gold_flow.add_gold(ctx, P, path)  # idempotent: nothing imported twice, nothing changed
    assert (again["added"], again["unchanged"], again["new_items"]) == (0, 3, 0)
    assert sum(1 for t in ctx.ls.tasks.values() if t["data"]["item_id"] == "i150") == 1
    assert r["warnings"] == [] and again["warnings"] == []
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"id": "i7", "text": "not what i7 says", "label": "neg"}])
    warned = gold_flow.add_gold(ctx, P, odd)
    assert warned["warnings"] and "odd.jsonl:1 (i7)" in warned["warnings"][0] and "i7" in ctx.store.gold(P)
    ctx.store.r.hdel(Keys.gold(P), "i7")  # back to the three rows above
    listed = gold_flow.summary(ctx.store, P)
    assert listed["count"] == 3 and listed["per_label"] == {"neg": 1, "pos": 2}
    assert listed["sources"] == {"file:expert.jsonl": 3}


@pytest.mark.parametrize("row, message", [
    ({"id": "i150", "text": "text 150", "label": "maybe"}, "expert.jsonl:2: the 'label' field is 'maybe', not one of"),
    ({"id": "i150", "text": "text 150"}, "expert.jsonl:2: the 'label' field is empty"),
    # an unknown id with i3's text is i3: a second, different trusted label for it
    ({"id": "y-3", "text": "text 3", "label": "pos"},
     "expert.jsonl:2: item 'i3' is labelled 'pos' here and 'neg' at row 1"),
])
def test_a_bad_row_is_named_and_nothing_is_written(ctx, tmp_path, row, message):
    path = write_jsonl(tmp_path / "expert.jsonl", [{"id": "i3", "text": "text 3", "label": "neg"}, row])
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        gold_flow.add_gold(ctx, P, path)
    assert ctx.store.gold(P) == {} and "i150" not in ctx.store.items(P) and ctx.ls.tasks == {}


def test_promote_takes_the_adjudicators_ruling(ctx):
    round1 = next_round(ctx, P, size=4, annotators=["ann", "bob"], overlap=2)
    items = round1["assignments"]["ann"]["items"]
    split_item = items[0]
    k = 1
    for name in ("ann", "bob"):
        given = round1["assignments"][name]
        for item, task in zip(given["items"], given["tasks"]):
            wrong = item == split_item and name == "bob"
            value = {"neg": "pos", "pos": "neg"}[truth(item)] if wrong else truth(item)
            ctx.ls.annotate(task, k, value, stamp(k), user=USERS[name])
            k += 1
    from loop.workflows.adjudicate import assign

    sent = assign(ctx, P, "cat")
    assert sent["assigned"] == [split_item]
    queue_task = ctx.store.queue_tasks(P, "cat")[split_item]
    ctx.ls.annotate(queue_task, 99, truth(split_item), stamp(50), user=USERS["cat"])
    from loop.services.sync import sync_annotations

    sync_annotations(ctx.store, ctx.ls, P)
    events = ctx.store.event_count(P)
    r = gold_flow.promote(ctx, P)
    assert ctx.store.event_count(P) == events + 1  # the trainer refits without the item
    assert r["promoted_items"] == [split_item] and ctx.store.gold(P)[split_item] == {
        "label": truth(split_item), "source": "adjudicated", "added_at": ctx.store.gold(P)[split_item]["added_at"]}
    assert split_item not in final_labels(ctx.store, P)  # gold now: never trained on
    assert gold_flow.promote(ctx, P)["promoted"] == 0 and gold_flow.promote(ctx, P)["already_gold"] == 1


def test_gold_is_never_selected_nor_trained_on_and_scores_every_round(ctx, tmp_path):
    gold_ids = ["i2", "i5", "i13", "i17", "i22"]
    write_jsonl(tmp_path / "gold.jsonl", [{"id": i, "text": f"text {i[1:]}", "label": truth(i)} for i in gold_ids])
    gold_flow.add_gold(ctx, P, tmp_path / "gold.jsonl")
    k, chosen = 1, set()
    for _ in range(4):
        r = next_round(ctx, P, size=4, annotators=["ann", "bob"], overlap=2)
        chosen |= set(r["assignments"]["ann"]["items"]) | set(r["assignments"]["bob"]["items"])
        k = label_all(ctx, r, k)
    assert chosen and not chosen & set(gold_ids)
    assert len(chosen) == 16  # four rounds of four: every pick was a non-gold item
    ts = training_set(ctx.store, ctx.vectors, P)
    assert ts.item_ids and not set(ts.item_ids) & set(gold_ids)
    s = status(ctx, P)
    assert s["pool"] == N - len(gold_ids) - len(chosen) and s["gold"]["count"] == 5
    scored = [c for c in s["learning_curve"] if c.get("gold_accuracy") is not None]
    assert scored and all(c["gold_n"] == 5 for c in scored) and scored[-1]["gold_accuracy"] == 1.0
    assert 0 <= scored[-1]["gold_macro_f1"] <= 1


def test_control_items_reach_the_queue_and_measure_the_annotator_without_counting(ctx, tmp_path):
    gold_ids = ["i2", "i5", "i13", "i17", "i22", "i23"]
    write_jsonl(tmp_path / "gold.jsonl", [{"id": i, "text": f"text {i[1:]}", "label": truth(i)} for i in gold_ids])
    gold_flow.add_gold(ctx, P, tmp_path / "gold.jsonl")
    with pytest.raises(ConfigError, match="--gold-rate is 1.5"):
        next_round(ctx, P, size=4, annotators=["ann", "bob"], overlap=1, gold_rate=1.5)
    r = next_round(ctx, P, size=4, annotators=["ann", "bob"], overlap=1, gold_rate=0.5, seed=1)
    assert r["controls"]["per_annotator"] == {"ann": 1, "bob": 1}  # 0.5 x 2 new items each
    assert ctx.store.assigned(P).keys().isdisjoint(gold_ids)  # controls are not assignments
    for name in ("ann", "bob"):
        given = r["assignments"][name]
        control = given["controls"]["items"]
        assert len(control) == 1 and control[0] in gold_ids and control[0] not in given["items"]
        queue = ctx.ls.task_item_ids(given["queue"])
        assert set(queue) == set(given["items"]) | set(control)  # in their queue, like any item
        rows = [t["data"] for t in ctx.ls.tasks.values() if t.get("project") == given["queue"]]
        assert {tuple(sorted(row)) for row in rows} == {("item_id", "round", "text")}  # unmarked
    # ann answers her control wrongly, bob rightly; both label their new items
    k = label_all(ctx, r, 1)
    for name, correct in (("ann", False), ("bob", True)):
        item, task = r["assignments"][name]["controls"]["items"][0], r["assignments"][name]["controls"]["tasks"][0]
        value = truth(item) if correct else {"neg": "pos", "pos": "neg"}[truth(item)]
        ctx.ls.annotate(task, k, value, stamp(k % 60), user=USERS[name])
        k += 1
    s = status(ctx, P)
    counted, outside = labels_that_count(ctx.store, P)
    assert outside == [] and not {a["item_id"] for a in counted} & set(gold_ids)  # neither counted nor "outside"
    assert s["labels_spent"] == 4 and not any("left out" in w for w in s["warnings"])
    assert len(control_answers(ctx.store, P)) == 2
    assert (s["annotators"]["ann"]["gold_n"], s["annotators"]["ann"]["gold_accuracy"]) == (1, 0.0)
    assert s["annotators"]["bob"]["gold_accuracy"] == 1.0 and s["annotators"]["bob"]["gold_interval"] == wilson(1, 1)
    # next round: no gold item is sent twice to the same annotator, the answered controls stay answered
    first = {n: r["assignments"][n]["controls"]["items"][0] for n in ("ann", "bob")}
    r2 = next_round(ctx, P, size=4, annotators=["ann", "bob"], overlap=1, gold_rate=0.5, seed=1)
    for name in ("ann", "bob"):
        assert first[name] not in r2["assignments"][name]["controls"]["items"]
    assert r2["labels_spent"] == 4


def test_an_unanswered_control_leaves_the_queue_when_the_round_closes(ctx, tmp_path):
    write_jsonl(tmp_path / "gold.jsonl", [{"id": i, "text": f"text {i[1:]}", "label": truth(i)} for i in ("i2", "i13")])
    gold_flow.add_gold(ctx, P, tmp_path / "gold.jsonl")
    r = next_round(ctx, P, size=2, annotators=["ann"], overlap=1, gold_rate=0.1)
    control = r["assignments"]["ann"]["controls"]["items"][0]
    label_all(ctx, r, 1)  # the new items only: the control does not hold the round up
    next_round(ctx, P, size=2, annotators=["ann"], overlap=1)
    assert control not in ctx.store.queue_tasks(P, "ann")


def test_gold_rate_without_gold_is_refused(ctx):
    with pytest.raises(ConfigError, match="needs a gold set"):
        next_round(ctx, P, size=2, annotators=["ann"], overlap=1, gold_rate=0.05)


def test_in_an_assisted_project_a_control_carries_the_models_answer_like_any_item(ctx, tmp_path):
    ctx.store.save_project(P, {"assisted": True}, make_current=False)
    write_jsonl(tmp_path / "gold.jsonl", [{"id": i, "text": f"text {i[1:]}", "label": truth(i)} for i in ("i2", "i13")])
    gold_flow.add_gold(ctx, P, tmp_path / "gold.jsonl")
    r1 = next_round(ctx, P, size=4, annotators=["ann"], overlap=1)
    label_all(ctx, r1, 1)
    r2 = next_round(ctx, P, size=2, annotators=["ann"], overlap=1, gold_rate=0.1)
    given = r2["assignments"]["ann"]
    predicted = {pr["task"] for pr in ctx.ls.predictions(given["queue"])}
    assert given["controls"]["tasks"] and set(given["controls"]["tasks"]) | set(given["tasks"]) == predicted
    assert "control_scores" not in r2  # operators' JSON stays free of per-item scores


def test_a_gold_item_annotators_split_on_is_never_contested(ctx, tmp_path):
    """Its trusted label settles it: no adjudicator is sent it, status counts no contested item."""
    from loop.workflows.adjudicate import assign

    round1 = next_round(ctx, P, size=4, annotators=["ann", "bob"], overlap=2)
    split_item = round1["assignments"]["ann"]["items"][0]
    k = 1
    for name in ("ann", "bob"):
        given = round1["assignments"][name]
        for item, task in zip(given["items"], given["tasks"]):
            wrong = item == split_item and name == "bob"
            ctx.ls.annotate(task, k, {"neg": "pos", "pos": "neg"}[truth(item)] if wrong else truth(item), stamp(k),
                            user=USERS[name])
            k += 1
    assert status(ctx, P)["contested"] == 1
    row = {"id": split_item, "text": f"text {split_item[1:]}", "label": truth(split_item)}
    gold_flow.add_gold(ctx, P, write_jsonl(tmp_path / "gold.jsonl", [row]))
    assert status(ctx, P)["contested"] == 0 and assign(ctx, P, "cat")["assigned"] == []
