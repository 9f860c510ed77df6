"""What `loop status` and `loop next-round` print for people (the JSON is tested end to end)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from loop.cli import rounds as rounds_cli
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
    assert "Models learn from labels made under guideline v2, aggregated by majority-ds" in text
    assert "alice 1/2" in text and "1 labels spent" in text
