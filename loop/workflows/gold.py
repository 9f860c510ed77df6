"""A gold set kept apart: `loop gold add|promote|list`, and what gold is for.

Gold items carry a trusted label (an expert's, from a file; or an adjudicator's ruling). They are
the evaluation set, so they are kept out of everything that learns or picks: never in the pool a
strategy chooses from (`workflows.rounds`, `status`), never trained on (`training.without_gold`),
their own split in an export (`workflows.curate`). Each round scores its model on them
(`gold_metrics`), and `next-round --gold-rate` mixes some, unmarked, into annotators' queues as
control items: their answers measure each annotator against gold and never count as labels
(`training.control_answers`, `labels.gold.measured_accuracy`).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from loop.core.dataset import _rows as file_rows
from loop.core.dataset import read_items, text_key
from loop.errors import ConfigError, DataError, NotInitialised
from loop.labels import gold as gold_lib
from loop.labels.adjudication import adjudicated_labels
from loop.services.context import Context
from loop.workflows import training


def _project(store, p: int) -> dict[str, Any]:
    project = store.project(p)
    if project is None:
        raise NotInitialised(f"project {p} is unknown; `loop init DATA` creates one")
    return project


def add_gold(ctx: Context, p: int, path: str | Path, *, text_field: str = "text", label_field: str = "label",
             id_field: str | None = None) -> dict[str, Any]:
    """Make the rows of a JSONL/CSV/Parquet file gold with their label. A row matches an item of the
    project by id, else by its text's content hash; an unmatched row becomes a new item (a task in
    the main Label Studio project, its text kept in Redis as `loop init` does). Every row is checked
    before anything is written: a missing label or one outside the project's label set is a
    DataError naming the row and the field."""
    store = ctx.store
    project = _project(store, p)
    path = Path(path)
    items = read_items(path, text_field=text_field, label_field=label_field, id_field=id_field)
    lines = [n for n, _ in file_rows(path)]  # read_items keeps one Item per row, in file order
    labels = list(project["labels"])
    existing = store.items(p)
    by_hash: dict[str, str] = {}
    for item_id in sorted(existing):
        by_hash.setdefault(existing[item_id].get("key"), item_id)
    targets: dict[str, tuple[str, int]] = {}  # project item id -> (gold label, the row that gave it)
    new, other_text = {}, []  # other_text: rows matched by id whose text is not the item's
    for item, n in zip(items, lines):
        if item.label is None:
            raise DataError(f"{path}:{n}: the {label_field!r} field is empty; every gold row needs its trusted label "
                            "(pass --label-field if it is another column)")
        if item.label not in labels:
            raise DataError(f"{path}:{n}: the {label_field!r} field is {item.label!r}, not one of the project's "
                            f"labels ({', '.join(labels)}); fix the row or the label set")
        target = item.id if item.id in existing else by_hash.get(text_key(item.text), item.id)
        if target in targets and targets[target][0] != item.label:
            raise DataError(f"{path}:{n}: item {target!r} is labelled {item.label!r} here and "
                            f"{targets[target][0]!r} at row {targets[target][1]}; a gold item has one label")
        targets[target] = (item.label, n)
        if target not in existing:
            new[target] = item
        elif existing[target].get("key") != text_key(item.text):
            other_text.append(f"{path.name}:{n} ({target})")
    ls, task_ids = ctx.ls, {}
    if new:
        # Like `loop init`: tasks a crashed run imported are found by item id, not imported twice.
        already = ls.task_item_ids(p)
        todo = [i for i in new if i not in already]
        task_ids = dict(already) | dict(zip(todo, ls.import_tasks(p, [{"text": new[i].text, "item_id": i}
                                                                          for i in todo])))
    source, now = f"file:{path.name}", time.time()
    gold = store.gold(p)
    entries, changed, unchanged = {}, 0, 0
    for item_id, (label, _) in targets.items():
        before = gold.get(item_id)
        if before and before["label"] == label:
            unchanged += 1
            continue
        changed += bool(before)
        entries[item_id] = {"label": label, "source": source, "added_at": now}
    store.add_gold(p, entries, items={i: {"task_id": task_ids[i], "key": text_key(it.text)} for i, it in new.items()},
                   texts={i: it.text for i, it in new.items()})
    counted, _ = training.labels_that_count(store, p)
    trained_before = {a["item_id"] for a in counted if a.get("label") is not None} & set(entries)
    _retrain_without(store, p, trained_before)
    return {"project_id": p, "source": source, "rows": len(items), "added": len(entries) - changed,
            "relabelled": changed, "unchanged": unchanged, "new_items": len(new),
            "existing_items": len(targets) - len(new), "no_longer_trained_on": len(trained_before),
            "gold": len(store.gold(p)),
            "warnings": [f"{len(other_text)} rows matched an item by id but carry another text (e.g. "
                         f"{other_text[0]}); the label went to the project's item: check the ids"]
            if other_text else []}


def promote(ctx: Context, p: int) -> dict[str, Any]:
    """Adjudicated items become gold with their adjudicator's ruling (source "adjudicated"); items
    already gold keep what they have."""
    store = ctx.store
    _project(store, p)
    counted, _ = training.labels_that_count(store, p)
    ruled = adjudicated_labels(counted, store.adjudication(p))
    gold = store.gold(p)
    now = time.time()
    entries = {i: {"label": lab, "source": "adjudicated", "added_at": now}
               for i, lab in sorted(ruled.items()) if i not in gold}
    store.add_gold(p, entries)
    _retrain_without(store, p, entries)
    return {"project_id": p, "promoted": len(entries), "promoted_items": sorted(entries),
            "already_gold": sum(1 for i in ruled if i in gold), "gold": len(gold) + len(entries)}


def _retrain_without(store, p: int, items) -> None:
    # The served model learnt from items that are gold now: have the trainer refit without them.
    if items:
        store.append_event(p, {"action": "GOLD_CHANGED", "retrain": True})


def summary(store, p: int) -> dict[str, Any]:
    """`loop gold list`: how many, per label, per source, and every item."""
    project = _project(store, p)
    gold = store.gold(p)
    per_label = Counter(g["label"] for g in gold.values())
    return {"project_id": p, "count": len(gold),
            "per_label": {lab: per_label.get(lab, 0) for lab in project["labels"]}
            | {lab: n for lab, n in per_label.items() if lab not in project["labels"]},
            "sources": dict(sorted(Counter(g["source"] for g in gold.values()).items())),
            "items": [{"id": i, **g} for i, g in sorted(gold.items())]}


def check_gold_rate(rate: float) -> float:
    if not 0 <= rate <= 1:
        raise ConfigError(f"--gold-rate is {rate}; give the share of control items per new item, between 0 and 1 "
                          "(e.g. 0.05)")
    return float(rate)


def choose_controls(store, p: int, gold: Mapping[str, Mapping], new_items: Mapping[str, int], rate: float,
                    annotations: Mapping[str, dict], seed: int) -> dict[str, list[str]]:
    """This round's control items: gold item -> annotators (`labels.gold.pick_controls`), each a
    gold item the annotator was never sent (as an item, a relabel, a control) nor answered."""
    if rate <= 0 or not gold:
        return {}
    seen: dict[str, set[str]] = {}
    for item, people in training.sent_to(store, p).items():
        for who in people:
            seen.setdefault(who, set()).add(item)
    for item, who in training.controls_sent(store, p):
        seen.setdefault(who, set()).add(item)
    for a in annotations.values():
        seen.setdefault(a["annotator"], set()).add(a["item_id"])
    for who in new_items:
        seen.setdefault(who, set()).update(store.queue_tasks(p, who))
    return gold_lib.pick_controls(sorted(gold), new_items, rate, seen, seed)


def gold_metrics(ctx: Context, p: int, classifier, gold: Mapping[str, Mapping] | None = None) -> dict[str, Any]:
    """The model's accuracy and macro-F1 on the gold set, and its size; {} without gold or a model."""
    gold = ctx.store.gold(p) if gold is None else gold
    if classifier is None or not gold:
        return {}
    ids = sorted(gold)
    predicted = classifier.predict(ctx.vectors.matrix(p, ids))
    return gold_lib.scores([gold[i]["label"] for i in ids], [str(y) for y in predicted])


def annotator_accuracy(store, p: int, annotations: Mapping[str, dict] | None = None) -> dict[str, dict[str, Any]]:
    """annotator -> their accuracy measured on the control items they answered (`labels.gold`)."""
    gold = store.gold(p)
    if not gold:
        return {}
    return gold_lib.measured_accuracy(training.control_answers(store, p, annotations), gold)
