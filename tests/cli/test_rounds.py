"""What `loop status` and `loop next-round` print for people (the JSON is tested end to end)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from loop.cli import rounds as rounds_cli
from loop.labels.aggregation import DEFAULT_METHOD
from loop.labels.policy import TrainingPolicy
from loop.workflows.status import round_detail, status
from loop.workflows.training import set_policy
from tests.helpers import stamp

P = 9


@pytest.fixture
def screen(monkeypatch):
    console = Console(record=True, width=140)
    monkeypatch.setattr(rounds_cli, "console", console)
    return console


@pytest.fixture
def ctx(redis_store, fake_ls):
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    redis_store.add_items(P, {f"i{i}": {"task_id": 100 + i, "key": f"h{i}"} for i in range(4)})
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    redis_store.plan_round(P, {"id": 1, "size": 2, "overlap": 1, "strategy": "cold-start", "created_at": 0},
                           {"i0": ["alice"], "i1": ["alice"]})
    redis_store.update_round(P, 1, status="open", queues={"alice": {"ls_project": 30,
                                                                      "url": "http://ls.test/projects/30/data"}})
    fake_ls.annotate(100, 1, "pos", stamp(1), user=5)
    return SimpleNamespace(store=redis_store, ls=fake_ls)


def test_a_round_shows_each_annotators_items_done_and_tab(ctx, screen):
    rounds_cli.render_round(round_detail(ctx.store, P, 1))
    text = screen.export_text()
    assert "Round 1: 2 items by cold-start, overlap 1" in text
    assert "alice" in text and "http://ls.test/projects/30/data" in text


def test_status_says_which_labels_the_models_learn_from(ctx, screen):
    set_policy(ctx.store, P, guideline_version=2)
    rounds_cli._render_status(status(ctx, P), plot=None)
    text = screen.export_text()
    assert f"Models learn from labels made under guideline v2, aggregated by {DEFAULT_METHOD}" in text
    assert "alice 1/2" in text and "1 labels spent" in text


def test_status_shows_each_annotators_estimated_accuracy_and_flags_one_who_answers_at_random(
        redis_store, fake_ls, screen):
    """Four annotators label 150 items each; sam answers at random. status (and its table) gives
    everyone an estimated accuracy with an interval and the labels it rests on, flags sam, and says
    how many training labels are expected right. (With two good annotators and a spammer alone, no
    method can tell which of the two is right on a split: a third informative label is needed.)"""
    import numpy as np

    q = 12
    rng = np.random.default_rng(4)
    redis_store.save_project(q, {"labels": ["neg", "pos"]}, make_current=False)
    items = {f"i{i:03d}": {"task_id": 1000 + i, "key": f"h{i}"} for i in range(150)}
    redis_store.add_items(q, items)
    people = {"ann": (5, 0.95), "bob": (6, 0.9), "cat": (8, 0.9), "sam": (7, None)}
    for name, (uid, _) in people.items():
        redis_store.add_annotator({"name": name, "ls_user_id": uid})
    redis_store.plan_round(q, {"id": 1, "size": 150, "overlap": 4, "strategy": "random", "created_at": 0},
                           {item: list(people) for item in items})
    redis_store.update_round(q, 1, status="open", queues={})
    ann_id = 0
    for k, item in enumerate(items):
        truth = ("neg", "pos")[k % 2]
        for uid, acc in people.values():
            right = rng.random() < (0.5 if acc is None else acc)
            ann_id += 1
            fake_ls.annotate(items[item]["task_id"], ann_id, truth if right else ("pos" if truth == "neg" else "neg"),
                             stamp(ann_id % 60), user=uid)
    s = status(SimpleNamespace(store=redis_store, ls=fake_ls), q)
    rel = s["annotators"]
    assert set(rel) == set(people) and all(r["n_evidence"] == 150 for r in rel.values())
    assert rel["sam"]["flags"] == ["near-chance"] and all(rel[a]["flags"] == [] for a in ("ann", "bob", "cat"))
    assert rel["ann"]["estimated_accuracy"] > 0.85 > rel["sam"]["accuracy_interval"][1]
    low, high = rel["bob"]["accuracy_interval"]
    assert low < rel["bob"]["estimated_accuracy"] < high
    assert any(w.startswith("annotator sam: labels look random") for w in s["warnings"])
    est = s["training_labels"]
    final = TrainingPolicy().final_labels(redis_store.annotations(q).values(), {})
    real = sum(final[item] == ("neg", "pos")[k % 2] for k, item in enumerate(items)) / 150
    assert est["method"] == DEFAULT_METHOD and est["n_items"] == 150 and abs(est["value"] - real) < 0.05
    rounds_cli._render_status(s, plot=None)
    text = screen.export_text()
    assert "estimated accuracy" in text and "150 labels" in text and "near-chance" in text
    assert f"Training labels expected right: {est['value']:.1%} of 150 items" in text
