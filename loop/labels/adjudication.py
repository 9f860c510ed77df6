"""Contested items and adjudication.

An item is contested when its annotators disagree. The queue is ordered worst first: the most
even split (lowest share of the most common label), then the most labels. `assign` sends
contested items to an adjudicator through a Label Studio view; the adjudicator's label is final.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterable

from loop.labels.aggregation import DEFAULT_METHOD, aggregate
from loop.services.context import Context
from loop.errors import ConfigError


def contested(annotations: Iterable[dict], adjudication: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Items whose labels disagree and that no adjudicator has decided yet, worst first."""
    adjudication = adjudication or {}
    decided = adjudicated_labels(annotations, adjudication)
    by_item: dict[str, Counter] = {}
    for a in annotations:
        if a.get("label") is None:
            continue
        if a["item_id"] in adjudication and a["annotator"] == adjudication[a["item_id"]]["adjudicator"]:
            continue  # the adjudicator's own label is the decision, not one of the votes
        by_item.setdefault(a["item_id"], Counter())[a["label"]] += 1
    queue = []
    for item, counts in by_item.items():
        if len(counts) < 2 or item in decided:
            continue
        total = sum(counts.values())
        queue.append({"item_id": item, "labels": dict(counts.most_common()), "n_labels": total,
                      "top_share": round(counts.most_common(1)[0][1] / total, 3),
                      "adjudicator": (adjudication.get(item) or {}).get("adjudicator")})
    return sorted(queue, key=lambda q: (q["top_share"], -q["n_labels"], q["item_id"]))


def adjudicated_labels(annotations: Iterable[dict], adjudication: dict[str, dict]) -> dict[str, str]:
    """item -> the adjudicator's label, for items whose adjudicator has answered (the latest answer wins)."""
    out: dict[str, tuple[str, str]] = {}
    for a in annotations:
        item = a["item_id"]
        who = (adjudication.get(item) or {}).get("adjudicator")
        if who and a["annotator"] == who and a.get("label") is not None:
            stamp = a.get("updated_at") or a.get("created_at") or ""
            if item not in out or stamp >= out[item][0]:
                out[item] = (stamp, a["label"])
    return {item: label for item, (_, label) in out.items()}


def final_labels(store, p: int, annotations: dict[str, dict] | None = None,
                 guideline_version: int | None = None) -> dict[str, str]:
    """One training label per item: the default aggregation (majority vote, ties broken by
    Dawid-Skene's annotator reliability), overridden by an adjudicator's decision.

    With `guideline_version`, only labels made under that version count.
    """
    annotations = store.annotations(p) if annotations is None else annotations
    usable = [a for a in annotations.values() if a["label"] is not None
              and (guideline_version is None or a.get("guideline_version") == guideline_version)]
    decided = adjudicated_labels(usable, store.adjudication(p))
    return {item: v["label"] for item, v in aggregate(usable, DEFAULT_METHOD, adjudicated=decided).items()}


def assign(ctx: Context, p: int, adjudicator: str, limit: int | None = None) -> dict[str, Any]:
    """Send contested items (worst first) to `adjudicator` in a Label Studio view."""
    from loop.workflows.rounds import sync_annotations

    store = ctx.store
    if adjudicator not in store.annotators():
        raise ConfigError(f"unknown adjudicator {adjudicator!r}; add them with `loop annotators add {adjudicator}`")
    sync_annotations(ctx, p)
    annotations = list(store.annotations(p).values())
    adjudication = store.adjudication(p)
    queue = contested(annotations, adjudication)
    labelled_by = {(a["item_id"], a["annotator"]) for a in annotations}
    own = [q["item_id"] for q in queue if (q["item_id"], adjudicator) in labelled_by and not q["adjudicator"]]
    todo = [q for q in queue if not q["adjudicator"] and (q["item_id"], adjudicator) not in labelled_by]
    todo = todo[:limit] if limit is not None else todo
    items = store.items(p)
    new = {q["item_id"]: {"adjudicator": adjudicator, "assigned_at": time.time()} for q in todo}
    for q in todo:  # one more annotation allowed on the task: the adjudicator's
        ctx.ls.set_overlap([items[q["item_id"]]["task_id"]], q["n_labels"] + 1)
    store.add_adjudication(p, new)
    mine = [i for i, v in store.adjudication(p).items() if v["adjudicator"] == adjudicator
            and i not in adjudicated_labels(annotations, store.adjudication(p))]
    view = ctx.ls.ensure_view(p, f"Adjudication · {adjudicator}", [items[i]["task_id"] for i in sorted(mine)]) \
        if mine else None
    return {"adjudicator": adjudicator, "assigned": [q["item_id"] for q in todo], "open_for_adjudicator": len(mine),
            "view": view, "contested": len(queue), "skipped_own_items": own, "queue": queue}
