"""Turning several annotators' labels for one item into one training label."""

from __future__ import annotations

from collections import Counter
from typing import Iterable


def majority_vote(labels: Iterable[str]) -> str:
    """The most frequent label; a tie goes to the label given first (the earliest annotation)."""
    labels = list(labels)
    if not labels:
        raise ValueError("majority_vote needs at least one label")
    counts = Counter(labels)
    best = max(counts.values())
    return next(lab for lab in labels if counts[lab] == best)


def training_labels(annotations: Iterable[dict]) -> dict[str, str]:
    """item id -> one label, from annotation records ordered by creation time."""
    by_item: dict[str, list[str]] = {}
    for ann in sorted(annotations, key=lambda a: (a.get("created_at") or "", str(a.get("id", "")))):
        by_item.setdefault(ann["item_id"], []).append(ann["label"])
    return {item: majority_vote(labels) for item, labels in by_item.items()}
