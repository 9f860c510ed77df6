"""The gold set's statistics, as pure functions over label records: an annotator's accuracy
measured on the gold items they answered as controls, with a Wilson 95% interval, and a model's
scores on gold.

A control answer is a label like any other in Label Studio; what makes it evidence rather than a
label is that loop knows the right answer (the gold label) and never trains on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CONFIDENCE = 0.95


def wilson(correct: int, n: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """The Wilson score interval of a proportion (correct of n); None without answers. Wilson
    rather than the normal approximation: it stays inside [0, 1] and holds its coverage at the
    handful of answers a control rate gives (a unit test checks the coverage by simulation)."""
    if n <= 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, n, alpha=1 - confidence, method="wilson")
    return [float(low), float(high)]


def latest_answers(answers: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(annotator, item) -> their latest label (skips, label None, left out)."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for rec in answers:
        if rec.get("label") is None:
            continue
        key = (str(rec["annotator"]), str(rec["item_id"]))
        stamp = str(rec.get("updated_at") or rec.get("created_at") or "")
        if key not in out or stamp >= out[key][0]:
            out[key] = (stamp, rec["label"])
    return {k: label for k, (_, label) in out.items()}


def measured_accuracy(answers: Iterable[Mapping[str, Any]], gold: Mapping[str, Mapping]) -> dict[str, dict[str, Any]]:
    """annotator -> {"gold_n", "gold_correct", "gold_accuracy", "gold_interval"} over their answers
    on gold items (their latest label per item); an answer on an item no longer gold is ignored."""
    tally: dict[str, list[int]] = {}
    for (who, item), label in latest_answers(answers).items():
        if item not in gold:
            continue
        n_correct = tally.setdefault(who, [0, 0])
        n_correct[0] += 1
        n_correct[1] += int(label == gold[item]["label"])
    return {who: {"gold_n": n, "gold_correct": c, "gold_accuracy": c / n, "gold_interval": wilson(c, n)}
            for who, (n, c) in sorted(tally.items())}


def scores(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """A model's accuracy and macro-F1 on gold (the round metrics' gold_* figures)."""
    from sklearn.metrics import accuracy_score, f1_score

    if not len(y_true):
        return {"gold_accuracy": None, "gold_macro_f1": None, "gold_n": 0}
    return {"gold_accuracy": float(accuracy_score(y_true, y_pred)),
            "gold_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "gold_n": len(y_true)}


def control_count(rate: float, new_items: int) -> int:
    """Control items for an annotator given `new_items` this round: about rate x new_items (half
    up), at least one when the rate is above zero; none for someone sent no new item (a queue of
    nothing but a control would give it away)."""
    if rate <= 0 or new_items <= 0:
        return 0
    return max(1, int(rate * new_items + 0.5))


def pick_controls(gold_ids: Sequence[str], new_items: Mapping[str, int], rate: float,
                  seen: Mapping[str, set[str]], seed: int) -> dict[str, list[str]]:
    """Gold item -> the annotators it goes to as a control: `control_count` per annotator, drawn at
    random among the gold items they have never been sent nor answered (`seen`: annotator -> items),
    fewer when too few are left."""
    import random

    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for who in sorted(new_items):
        fresh = [i for i in sorted(gold_ids) if i not in seen.get(who, set())]
        for item in rng.sample(fresh, min(control_count(rate, new_items[who]), len(fresh))):
            out.setdefault(item, []).append(who)
    return out
