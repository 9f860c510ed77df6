"""Turning several annotators' labels for one item into one training label.

- `majority_vote`: the plain vote (ties go to the earliest label).
- `aggregate(records, method=...)`: one decision per item with its confidence and what decided it,
  by majority vote, by Dawid-Skene (EM over one confusion matrix per annotator), or by majority
  vote with Dawid-Skene breaking the ties ("majority-ds", DEFAULT_METHOD: the one default of
  rounds, the trainer, simulate, `loop aggregate` and `loop agreement`), with adjudicated labels
  taking precedence; `annotator_reliability` scores each annotator.

What decided an item (`decided_by`, one of DECIDED_BY): "single" (one annotator's label: nothing
to agree or disagree with), "unanimous" (two or more labels, all the same), "majority",
"tie-break", "model-weighted" (dawid-skene, when some label differs from the decision) or
"adjudicated".

A label record is a dict with at least "item_id", "annotator" and "label" (a non-empty string),
and optionally "created_at" (ISO time; orders the labels). An annotator counts once per item:
when one annotator labelled an item twice, their latest label is kept.

Pure functions: no I/O (reading and writing label files is `labels.label_files`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from loop.errors import ConfigError, DataError

METHODS = ("majority", "dawid-skene", "majority-ds")
DECIDED_BY = ("single", "unanimous", "majority", "tie-break", "model-weighted", "adjudicated")
# The most accurate on the weather_sentiment benchmark at 2-10 labels per item (docs/benchmarks.md).
DEFAULT_METHOD = "majority-ds"


def majority_vote(labels: Iterable[str]) -> str:
    """The most frequent label; a tie goes to the label given first (the earliest annotation)."""
    labels = list(labels)
    if not labels:
        raise ValueError("majority_vote needs at least one label")
    counts = Counter(labels)
    best = max(counts.values())
    return next(lab for lab in labels if counts[lab] == best)


# --------------------------------------------------------------------------------------------
# Grouping records


@dataclass(frozen=True)
class Grouped:
    """Records grouped by item: one (annotator, label) per annotator, earliest label first."""

    labels: dict[Any, list[tuple[Any, str]]]  # item -> [(annotator, label)] in creation order
    n_records: int
    duplicates: int  # records dropped because the same annotator labelled the same item again


def _check_record(i: int, rec: Any) -> None:
    if not isinstance(rec, Mapping):
        raise DataError(f"label record {i}: expected a dict with item_id, annotator and label, "
                        f"got {type(rec).__name__}")
    for key in ("item_id", "annotator", "label"):
        if key not in rec:
            fields = ", ".join(sorted(map(str, rec))) or "none"
            raise DataError(f"label record {i}: no {key!r} key (keys: {fields}); every record needs "
                            "item_id, annotator and label")
        if rec[key] is None or rec[key] == "":
            raise DataError(f"label record {i}: {key!r} is empty; drop the record or fill it")
    if not isinstance(rec["label"], str):
        raise DataError(f"label record {i} (item {rec['item_id']!r}, annotator {rec['annotator']!r}): "
                        f"the label must be a string, got {rec['label']!r} ({type(rec['label']).__name__}); "
                        "convert it (loop.labels.label_files.read_label_file does)")


def labels_by_item(records: Iterable[Mapping]) -> Grouped:
    """Group label records by item, ordered by created_at (then input order).

    An annotator counts once per item: a later label by the same annotator replaces the earlier
    one (and takes its own, later, place in the order).
    """
    records = list(records)
    for i, rec in enumerate(records):
        _check_record(i, rec)
    order = sorted(range(len(records)), key=lambda i: (records[i].get("created_at") or "",
                                                      str(records[i].get("id", ""))))
    latest: dict[tuple[Any, Any], int] = {}
    for pos, i in enumerate(order):
        latest[(records[i]["item_id"], records[i]["annotator"])] = pos
    labels: dict[Any, list[tuple[Any, str]]] = {}
    for pos, i in enumerate(order):
        rec = records[i]
        if latest[(rec["item_id"], rec["annotator"])] != pos:
            continue
        labels.setdefault(rec["item_id"], []).append((rec["annotator"], rec["label"]))
    return Grouped(labels, len(records), len(records) - len(latest))


# --------------------------------------------------------------------------------------------
# Dawid-Skene


@dataclass(frozen=True)
class DawidSkene:
    """A fitted Dawid-Skene model.

    `posteriors[i, c]` is P(item i's true class is classes[c]); `confusion[a, c, l]` is
    P(annotator a says classes[l] | true class classes[c]); `priors[c]` the class shares.
    """

    items: list
    annotators: list
    classes: list[str]
    priors: np.ndarray
    confusion: np.ndarray
    posteriors: np.ndarray
    n_iter: int
    converged: bool

    def accuracy(self) -> np.ndarray:
        """Each annotator's estimated accuracy: the confusion diagonal weighted by class priors."""
        diag = np.einsum("acc->ac", self.confusion)
        return diag @ self.priors


def dawid_skene(records: Iterable[Mapping] | Grouped, *, adjudicated: Mapping | None = None,
                smoothing: float = 1.0, max_iter: int = 1000, tol: float = 1e-6) -> DawidSkene:
    """Fit Dawid & Skene (1979) by EM; deterministic.

    Initialised from the majority vote: each item's posterior starts as its vote winner (shared
    evenly on a tie). Starting from the soft label shares instead lets EM settle on a worse
    optimum: on weather_sentiment it turned "I can't tell" into a catch-all class for ambiguous
    items (12% of items instead of 0.2%); see docs/benchmarks.md.
    M-step: class priors and one confusion matrix per annotator from the posteriors, each row
    smoothed by `smoothing` pseudo-labels spread like the pooled confusion of all annotators
    (so an annotator with few labels is treated like the average annotator, not as perfect or
    as random). E-step: posteriors from priors and confusions. Adjudicated items are clamped to
    their adjudicated label throughout, so they teach the confusion matrices. Stops when no
    posterior moves by more than `tol`, or after `max_iter` rounds.
    """
    if max_iter < 1 or smoothing < 0:
        raise ValueError(f"dawid_skene needs max_iter >= 1 and smoothing >= 0, got {max_iter} and {smoothing}")
    grouped = records if isinstance(records, Grouped) else labels_by_item(records)
    adjudicated = dict(adjudicated or {})
    items = list(grouped.labels)
    annotators = sorted({a for labs in grouped.labels.values() for a, _ in labs}, key=str)
    classes = sorted({lab for labs in grouped.labels.values() for _, lab in labs}
                     | {lab for it, lab in adjudicated.items() if it in grouped.labels}, key=str)
    n_items, n_ann, n_cls = len(items), len(annotators), len(classes)
    if n_items == 0:
        return DawidSkene([], annotators, classes, np.ones(n_cls) / max(n_cls, 1),
                          np.zeros((0, n_cls, n_cls)), np.zeros((0, n_cls)), 0, True)
    a_index = {a: k for k, a in enumerate(annotators)}
    c_index = {c: k for k, c in enumerate(classes)}
    obs_i, obs_a, obs_l = [], [], []
    for i, item in enumerate(items):
        for ann, lab in grouped.labels[item]:
            obs_i.append(i)
            obs_a.append(a_index[ann])
            obs_l.append(c_index[lab])
    obs_i, obs_a, obs_l = np.array(obs_i), np.array(obs_a), np.array(obs_l)
    clamp_rows = np.array([i for i, it in enumerate(items) if it in adjudicated], dtype=int)
    clamp_cols = np.array([c_index[adjudicated[items[i]]] for i in clamp_rows], dtype=int)

    counts = np.zeros((n_items, n_cls))
    np.add.at(counts, (obs_i, obs_l), 1.0)
    post = (counts == counts.max(axis=1, keepdims=True)).astype(float)  # the vote; a tie split evenly
    post /= post.sum(axis=1, keepdims=True)
    post[clamp_rows] = 0.0
    post[clamp_rows, clamp_cols] = 1.0

    pair = obs_a * n_cls + obs_l  # (annotator, given label) cell of each observation
    converged, it = False, 0
    for it in range(1, max_iter + 1):  # noqa: B007  (`it` is reported: how many rounds EM took)
        # M-step
        priors = (post.sum(axis=0) + smoothing / n_cls) / (n_items + smoothing)
        soft = np.stack([np.bincount(pair, weights=post[obs_i, c], minlength=n_ann * n_cls)
                         for c in range(n_cls)], axis=1).reshape(n_ann, n_cls, n_cls).transpose(0, 2, 1)
        # soft[a, c, l]: expected number of items of true class c that annotator a labelled l
        pooled = soft.sum(axis=0) + 1e-3
        pooled /= pooled.sum(axis=1, keepdims=True)
        conf = soft + smoothing * pooled[None, :, :]
        conf /= conf.sum(axis=2, keepdims=True)
        # E-step
        log_conf = np.log(conf)
        log_post = np.tile(np.log(priors), (n_items, 1))
        for c in range(n_cls):
            log_post[:, c] += np.bincount(obs_i, weights=log_conf[obs_a, c, obs_l], minlength=n_items)
        log_post -= log_post.max(axis=1, keepdims=True)
        new = np.exp(log_post)
        new /= new.sum(axis=1, keepdims=True)
        new[clamp_rows] = 0.0
        new[clamp_rows, clamp_cols] = 1.0
        delta = float(np.abs(new - post).max())
        post = new
        if delta < tol:
            converged = True
            break
    return DawidSkene(items, annotators, classes, priors, conf, post, it, converged)


# --------------------------------------------------------------------------------------------
# One decision per item


def _vote(labs: list[str]) -> tuple[str, float, str]:
    counts = Counter(labs)
    label = majority_vote(labs)
    top = counts[label]
    if len(labs) == 1:
        how = "single"
    elif len(counts) == 1:
        how = "unanimous"
    elif sum(1 for v in counts.values() if v == top) > 1:
        how = "tie-break"
    else:
        how = "majority"
    return label, top / len(labs), how


def aggregate(records: Iterable[Mapping], method: str = DEFAULT_METHOD,
              adjudicated: Mapping[Any, str] | None = None) -> dict[Any, dict]:
    """item_id -> {"label", "confidence", "decided_by", "n_labels"}.

    - "majority": the most frequent label, ties to the earliest label (`majority_vote`);
      confidence = the winning label's share of the item's labels; decided_by "unanimous",
      "majority" or "tie-break".
    - "dawid-skene": the label with the highest Dawid-Skene posterior, which weighs each annotator
      by their estimated confusion matrix; confidence = that posterior; decided_by "unanimous"
      when every label agrees with it, else "model-weighted".
    - "majority-ds": the majority vote, but a tie goes to the tied label with the highest
      Dawid-Skene posterior instead of the earliest one; confidence and decided_by as "majority".
      With two annotators every disagreement is a tie, so Dawid-Skene decides every split: by the
      annotators' estimated confusions and the class priors, not by what the item says.

    With every method, an item decided by its one label is decided_by "single", not "unanimous":
    one label agrees with nothing (under "dawid-skene", a lone label the model overrules is
    "model-weighted"). An adjudicated item's label is final (confidence 1.0, decided_by
    "adjudicated"), also for items nobody labelled (n_labels 0). n_labels counts annotators, one
    label each.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown aggregation method {method!r}; use one of: {', '.join(METHODS)}")
    adjudicated = dict(adjudicated or {})
    for item, lab in adjudicated.items():
        if not isinstance(lab, str) or not lab:
            raise DataError(f"adjudicated label of item {item!r} is {lab!r}; it must be a non-empty string")
    grouped = labels_by_item(records)
    out: dict[Any, dict] = {}
    if method in ("majority", "majority-ds"):
        ties = any(_vote([lab for _, lab in labs])[2] == "tie-break" for labs in grouped.labels.values())
        # Dawid-Skene only breaks ties: without any, skip the EM fit (it costs ~0.5 s per 1k items).
        model = dawid_skene(grouped, adjudicated=adjudicated) if method == "majority-ds" and ties else None
        row_of = {item: i for i, item in enumerate(model.items)} if model else {}
        for item, labs in grouped.labels.items():
            votes = [lab for _, lab in labs]
            label, conf, how = _vote(votes)
            if how == "tie-break" and model is not None:
                counts = Counter(votes)
                tied = [lab for lab in dict.fromkeys(votes) if counts[lab] == counts[label]]  # earliest first
                post = model.posteriors[row_of[item]]
                label = max(tied, key=lambda lab: post[model.classes.index(lab)])  # exact tie: earliest
            out[item] = {"label": label, "confidence": conf, "decided_by": how, "n_labels": len(labs)}
    else:
        model = dawid_skene(grouped, adjudicated=adjudicated)
        for i, item in enumerate(model.items):
            labs = [lab for _, lab in grouped.labels[item]]
            row = model.posteriors[i]
            best = float(row.max())
            tied = [model.classes[c] for c in np.flatnonzero(row >= best - 1e-12)]
            # An exact tie of posteriors (symmetric data) falls back to the vote's tie-break.
            label = tied[0] if len(tied) == 1 else next((lab for lab in labs if lab in tied), tied[0])
            # One label the model keeps is "single"; one it overrules is "model-weighted".
            how = ("model-weighted" if any(lab != label for lab in labs)
                   else "single" if len(labs) == 1 else "unanimous")
            out[item] = {"label": label, "confidence": best, "decided_by": how, "n_labels": len(labs)}
    for item, lab in adjudicated.items():
        out[item] = {"label": lab, "confidence": 1.0, "decided_by": "adjudicated",
                     "n_labels": len(grouped.labels.get(item, ()))}
    return out


def annotator_reliability(records: Iterable[Mapping], consensus: Mapping[Any, Any]) -> dict[Any, dict]:
    """annotator -> {"n", "agreement_with_consensus", "estimated_accuracy"}.

    `consensus` maps item -> label, or is the output of `aggregate` (item -> {"label", ...}).
    n is the number of the annotator's items that have a consensus label, and
    agreement_with_consensus the share of those where they gave it (None when n is 0). The
    annotator's own label is part of most consensuses, so this flatters everyone, most of all on
    items with few labels. estimated_accuracy comes from a Dawid-Skene fit on all the records:
    the diagonal of the annotator's confusion matrix weighted by the class priors.
    """
    grouped = labels_by_item(records)
    truth = {item: (v["label"] if isinstance(v, Mapping) else v) for item, v in consensus.items()}
    model = dawid_skene(grouped)
    accuracy = dict(zip(model.annotators, model.accuracy().tolist()))
    seen: dict[Any, list[int]] = {a: [0, 0] for a in model.annotators}
    for item, labs in grouped.labels.items():
        if item not in truth:
            continue
        for ann, lab in labs:
            seen[ann][0] += 1
            seen[ann][1] += lab == truth[item]
    return {ann: {"n": n, "agreement_with_consensus": (agree / n if n else None),
                  "estimated_accuracy": accuracy[ann]}
            for ann, (n, agree) in sorted(seen.items(), key=lambda kv: str(kv[0]))}
