"""Contested items and adjudication.

An item is contested when its annotators disagree. The queue is ordered worst first: the most
even split (lowest share of the most common label), then the most labels. The adjudicator's label
is final (`labels.policy`); `workflows.adjudicate` sends contested items to one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable


def contested(annotations: Iterable[dict], adjudication: dict[str, dict] | None = None,
              disputes: dict[str, list[tuple[str, str]]] | None = None) -> list[dict[str, Any]]:
    """Items whose labels disagree and that no adjudicator has decided yet, worst first.

    `disputes`: item -> [(auditor, label)], an audit's disagreements with the final label
    (`labels.audit.disputes`): those items are contested too (with "audit": True and the
    auditors in "auditors"), the auditor's label shown among the labels but never a vote."""
    adjudication = adjudication or {}
    disputes = disputes or {}
    decided = adjudicated_labels(annotations, adjudication)
    by_item: dict[str, Counter] = {}
    for a in annotations:
        if a.get("label") is None:
            continue
        if a["item_id"] in adjudication and a["annotator"] == adjudication[a["item_id"]]["adjudicator"]:
            continue  # the adjudicator's own label is the decision, not one of the votes
        by_item.setdefault(a["item_id"], Counter())[a["label"]] += 1
    queue = []
    for item in sorted(set(by_item) | set(disputes)):
        counts = Counter(by_item.get(item, {})) + Counter(label for _, label in disputes.get(item, []))
        if len(counts) < 2 or item in decided:
            continue
        total = sum(counts.values())
        queue.append({"item_id": item, "labels": dict(counts.most_common()), "n_labels": total,
                      "top_share": round(counts.most_common(1)[0][1] / total, 3),
                      "adjudicator": (adjudication.get(item) or {}).get("adjudicator"),
                      "audit": item in disputes, "auditors": sorted({who for who, _ in disputes.get(item, [])})})
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
