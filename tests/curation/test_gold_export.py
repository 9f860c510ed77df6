"""The gold set in `loop export` (and so in a release): its own split, never in train or test, out
of the rows the validator and the training-label estimate see; the card's curve has gold columns."""

from __future__ import annotations

import json
import time

from loop.core.dataset import text_key
from loop.workflows.curate import export_project, validate_project
from loop.workflows.training import final_labels
from tests.curation.sample_project import LABELS_OF, P, read_back


def test_gold_items_go_to_their_own_split(ctx, project, tmp_path):
    store = ctx.store
    # it05 was labelled in round 1; "g1" is an item `loop gold add` brought in (its text in Redis)
    store.add_gold(P, {"it05": {"label": "out_of_scope", "source": "file:expert.jsonl", "added_at": time.time()},
                       "g1": {"label": "billing", "source": "file:expert.jsonl", "added_at": time.time()}},
                   items={"g1": {"task_id": 5000, "key": text_key("Refund my double charge please.")}},
                   texts={"g1": "Refund my double charge please."})
    rounds = store.rounds(P)
    store.update_round(P, rounds[-1]["id"], metrics={**rounds[-1]["metrics"], "gold_accuracy": 0.5,
                                                     "gold_macro_f1": 0.4, "gold_n": 2})
    assert "it05" not in final_labels(store, P)
    summary = export_project(ctx, P, tmp_path / "out")
    out = tmp_path / "out"
    gold = read_back(out / "gold.jsonl", "jsonl")
    assert [(r["id"], r["label"], r["decided_by"]) for r in gold] == [("g1", "billing", "gold"),
                                                                      ("it05", "out_of_scope", "gold")]
    assert gold[0]["text"] == "Refund my double charge please." and gold[1]["round"] == 1
    trained = {r["id"] for n in ("train", "test") for r in read_back(out / f"{n}.jsonl", "jsonl")}
    assert trained == set(LABELS_OF) - {"it05"}
    assert summary["splits"]["gold"] == 2 and summary["rows"] == len(LABELS_OF) - 1
    card = (out / "README.md").read_text()
    assert "gold accuracy" in card and "| 0.500 |" in card and "2 gold" in card
    assert "No labelled dev set" not in card  # the gold set gave held-out accuracy
    leak = json.loads((out / "validation.json").read_text())["checks"]["leakage"]
    assert leak["status"] == "ok" and leak["count"] == 0  # checked against gold, nothing shared
    report = validate_project(ctx, P)
    assert report["n_items"] == len(LABELS_OF) - 1  # validate checks the training labels, as export does


def test_a_copy_of_a_gold_item_in_the_training_rows_is_reported_as_leakage(ctx, project, tmp_path):
    from tests.curation.sample_project import ITEMS

    copy = ITEMS["it01"][0]  # it01 stays a training item; a gold item with the same text leaks into train
    ctx.store.add_gold(P, {"g9": {"label": "billing", "source": "file:expert.jsonl", "added_at": time.time()}},
                       items={"g9": {"task_id": 5001, "key": text_key(copy)}}, texts={"g9": copy})
    export_project(ctx, P, tmp_path / "out")
    leak = json.loads((tmp_path / "out" / "validation.json").read_text())["checks"]["leakage"]
    assert leak["status"] == "found" and leak["exact"][0]["train_ids"] == ["it01"]
