"""Coverage-aware rounds on the real stack: production sends mostly technical tickets, the labels
have none, and `next-round --cover` puts technical tickets into the annotator's queue."""

from __future__ import annotations

import json

import pytest

from loop.labels.interface import choice_result
from loop.services.context import Context
from tests.helpers import REPO, add_annotators, cli, ticket_project

pytestmark = pytest.mark.integration

PEOPLE = {"covnora": "covnora-pass-1234"}


def test_next_round_cover_assigns_items_from_the_cluster_production_sends_and_labels_miss(stack_env, tmp_path):
    ctx = Context(stack_env)
    p, truth, _ = ticket_project(tmp_path, slice(260, 330), "cov", "Cover test")
    clients = add_annotators(stack_env.ls_url, PEOPLE)

    round1 = cli("next-round", "--size", "12", "--annotators", "covnora", "--overlap", "1", "--project", str(p))
    assert round1["cover"] is None
    given = round1["assignments"]["covnora"]
    for item, task in zip(given["items"], given["tasks"]):
        if truth[item] != "technical":  # the labels miss the technical tickets
            clients["covnora"].annotations.create(id=task, result=choice_result(truth[item]))

    # Production: 30 technical tickets and 5 billing ones, none of them in the project.
    rows = [json.loads(line) for line in (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()[:260]]
    sent = [r for r in rows if r["label"] == "technical"][:30] + [r for r in rows if r["label"] == "billing"][:5]
    production = tmp_path / "production.jsonl"
    production.write_text("".join(json.dumps({"text": f"{r['text']} (cov-prod)"}) + "\n" for r in sent))

    round2 = cli("next-round", "--size", "10", "--annotators", "covnora", "--overlap", "1", "--cover",
                 str(production), "--cover-share", "0.5", "--close-incomplete", "--project", str(p))
    cover = round2["cover"]
    # a quarter (1) to items the model calls out_of_scope, when round 1 taught it that label
    knows_negative = any(truth[i] == "out_of_scope" for i in given["items"])
    assert cover["items"] == 5 and cover["negative_items"] == (1 if knows_negative else 0)
    assert cover["production_rows"] == 35 and cover["clusters"]
    gap_items = cover["items_chosen"][:cover["gap_items"]]
    technical = [i for i in gap_items if truth[i] == "technical"]
    pool_share = sum(v == "technical" for v in truth.values()) / len(truth)
    assert len(technical) >= len(gap_items) - 1, ([truth[i] for i in gap_items], pool_share)
    mine = round2["assignments"]["covnora"]
    assert set(cover["items_chosen"]) <= set(mine["items"]) and len(mine["items"]) == 10
    assert set(cover["items_chosen"]) <= set(ctx.ls.task_item_ids(mine["queue"]))  # in her queue in Label Studio
    status = cli("status", "--round", "2", "--project", str(p))
    assert status["cover"]["items_chosen"] == cover["items_chosen"]
