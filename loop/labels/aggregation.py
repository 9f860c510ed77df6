"""Turning several annotators' labels for one item into one training label.

- `majority_vote`: the plain vote (ties go to the earliest label).
- `aggregate(records, method=...)`: one decision per item with its confidence and what decided it,
  with adjudicated labels taking precedence. Methods (`METHODS`):
  "majority" (the vote), "dawid-skene" (EM over one confusion matrix per annotator),
  "majority-ds" (the vote, Dawid-Skene breaking its ties) and "hierarchical-ds"
  (DEFAULT_METHOD: the one default of rounds, the trainer, simulate, `loop aggregate` and
  `loop agreement`): Dawid-Skene whose confusion matrices are shrunk towards each annotator's
  one-coin accuracy, and that accuracy towards the pool's, by how many labels each rests on
  (`hierarchical_dawid_skene`; chosen on bench/aggregation.py, docs/benchmarks.md).
- `annotator_reliability`: each annotator's estimated accuracy with a 95% interval, the labels it
  rests on, and flags ("near-chance", "biased") with a sentence each.
- `label_accuracy_estimate`: the expected share of correct training labels (the mean posterior).

What decided an item (`decided_by`, one of DECIDED_BY): "single" (one annotator's label: nothing
to agree or disagree with), "unanimous" (two or more labels, all the same), "majority" (the
label most annotators gave), "tie-break" (two or more labels tied for the most votes; the method
picked one of them), "model-weighted" (a model-based method chose a label other than the vote's:
it outweighed a majority, or overruled a lone label) or "adjudicated".

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

METHODS = ("majority", "dawid-skene", "majority-ds", "hierarchical-ds")
DECIDED_BY = ("single", "unanimous", "majority", "tie-break", "model-weighted", "adjudicated")
# Against expert gold (snow2008_temp, snow2008_wsd) at 2-10 labels per item it matches or beats every
# crowd-kit method and never loses to the vote; on simulated pools of 3-5 annotators (overlap 2-3,
# spammers, class-biased and noisy annotators, 30-2000 items) it has the smallest loss to the best
# method in each setting (bench/aggregation.py, docs/benchmarks.md "Agreement and aggregation").
DEFAULT_METHOD = "hierarchical-ds"
# Methods whose confidence is a posterior probability (the others give the vote share).
POSTERIOR_METHODS = ("dawid-skene", "hierarchical-ds")
# hierarchical-ds: pseudo-labels of each confusion row at the annotator's one-coin model, and of each
# annotator's accuracy at the pool's. Anything from 4 to 16 scores the same on the benchmark.
ROW_STRENGTH = 8.0
ACCURACY_STRENGTH = 8.0
# hierarchical-ds stops when the labels' log-likelihood gains less than this per label over 10 EM rounds.
PLATEAU = 1e-7


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
class _Encoded:
    """Labels as index arrays for the EM fits; adjudicated items are clamped to their ruling."""

    items: list
    annotators: list
    classes: list[str]
    obs_i: np.ndarray  # item row of each label
    obs_a: np.ndarray  # annotator index of each label
    obs_l: np.ndarray  # class index of each label
    clamp_rows: np.ndarray
    clamp_cols: np.ndarray

    def vote_posteriors(self) -> np.ndarray:
        """The vote as posteriors (a tie split evenly), adjudicated items clamped."""
        counts = np.zeros((len(self.items), len(self.classes)))
        np.add.at(counts, (self.obs_i, self.obs_l), 1.0)
        post = (counts == counts.max(axis=1, keepdims=True)).astype(float)
        post /= post.sum(axis=1, keepdims=True)
        post[self.clamp_rows] = 0.0
        post[self.clamp_rows, self.clamp_cols] = 1.0
        return post


def _encode(records: Iterable[Mapping] | Grouped, adjudicated: Mapping | None) -> _Encoded:
    grouped = records if isinstance(records, Grouped) else labels_by_item(records)
    adjudicated = dict(adjudicated or {})
    items = list(grouped.labels)
    annotators = sorted({a for labs in grouped.labels.values() for a, _ in labs}, key=str)
    classes = sorted({lab for labs in grouped.labels.values() for _, lab in labs}
                     | {lab for it, lab in adjudicated.items() if it in grouped.labels}, key=str)
    a_index = {a: k for k, a in enumerate(annotators)}
    c_index = {c: k for k, c in enumerate(classes)}
    obs_i, obs_a, obs_l = [], [], []
    for i, item in enumerate(items):
        for ann, lab in grouped.labels[item]:
            obs_i.append(i)
            obs_a.append(a_index[ann])
            obs_l.append(c_index[lab])
    clamp_rows = np.array([i for i, it in enumerate(items) if it in adjudicated], dtype=int)
    clamp_cols = np.array([c_index[adjudicated[items[i]]] for i in clamp_rows], dtype=int)
    return _Encoded(items, annotators, classes, np.array(obs_i, dtype=int), np.array(obs_a, dtype=int),
                    np.array(obs_l, dtype=int), clamp_rows, clamp_cols)


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
    # The labels as index arrays (item row, annotator index, class index), one entry per label.
    observations: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    log_likelihood: float | None = None  # of the labels under the fitted priors and confusions
    anchored_prior: bool = False         # hierarchical-ds: the class prior kept near the label shares

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
    enc = _encode(records, adjudicated)
    items, annotators, classes = enc.items, enc.annotators, enc.classes
    n_items, n_ann, n_cls = len(items), len(annotators), len(classes)
    if n_items == 0:
        return DawidSkene([], annotators, classes, np.ones(n_cls) / max(n_cls, 1),
                          np.zeros((0, n_cls, n_cls)), np.zeros((0, n_cls)), 0, True)
    obs_i, obs_a, obs_l = enc.obs_i, enc.obs_a, enc.obs_l
    clamp_rows, clamp_cols = enc.clamp_rows, enc.clamp_cols
    post = enc.vote_posteriors()

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
    return DawidSkene(items, annotators, classes, priors, conf, post, it, converged, (obs_i, obs_a, obs_l))


def _soft_counts(enc: _Encoded, post: np.ndarray, n_ann: int, n_cls: int,
                 keep: np.ndarray | None = None) -> np.ndarray:
    """soft[a, c, l]: expected number of items of true class c that annotator a labelled l (only the
    labels where `keep` is true, when given)."""
    pair = enc.obs_a * n_cls + enc.obs_l
    weights = post[enc.obs_i] if keep is None else post[enc.obs_i] * keep[:, None]
    return np.stack([np.bincount(pair, weights=weights[:, c], minlength=n_ann * n_cls)
                     for c in range(n_cls)], axis=1).reshape(n_ann, n_cls, n_cls).transpose(0, 2, 1)


def evidence_mask(enc: _Encoded) -> np.ndarray:
    """Per label: does it say anything about its annotator? Only on an item someone else labelled
    too, or that was adjudicated; a lone label agrees with nothing."""
    per_item = np.bincount(enc.obs_i, minlength=len(enc.items))
    clamped = np.zeros(len(enc.items), dtype=bool)
    clamped[enc.clamp_rows] = True
    return (per_item[enc.obs_i] > 1) | clamped[enc.obs_i]


def _fit_hierarchical(enc: _Encoded, anchored: bool, row_strength: float, accuracy_strength: float,
                      max_iter: int, tol: float) -> DawidSkene:
    items, n_ann, n_cls = enc.items, len(enc.annotators), len(enc.classes)
    n_items = len(items)
    obs_i, obs_a, obs_l = enc.obs_i, enc.obs_a, enc.obs_l
    post = enc.vote_posteriors()
    eye = np.eye(n_cls)
    top_prior = (1.0 + 1.0 / n_cls) / 2
    evidence = evidence_mask(enc).astype(float)
    label_share = np.bincount(obs_l, minlength=n_cls) / max(len(obs_l), 1)
    converged, it, loglik, history = False, 0, 0.0, []
    for it in range(1, max_iter + 1):  # noqa: B007  (`it` is reported)
        # M-step. Class prior: the posterior shares (anchored: averaged with the label shares), one
        # pseudo-item per class.
        mass = post.sum(axis=0)
        if anchored:
            priors = (mass + n_items * label_share + 1.0) / (2 * n_items + n_cls)
        else:
            priors = (mass + 1.0) / (n_items + n_cls)
        soft = _soft_counts(enc, post, n_ann, n_cls, evidence)
        n_a = soft.sum(axis=(1, 2))
        correct = np.einsum("acc->a", soft)
        # The pool's accuracy, shrunk by `accuracy_strength` labels towards halfway between chance and
        # perfect (it matters only while the whole project has a handful of labels).
        pooled = (correct.sum() + accuracy_strength * top_prior) / (n_a.sum() + accuracy_strength)
        # Each annotator's one-coin accuracy, shrunk towards the pool's by `accuracy_strength` labels.
        accuracy = (correct + accuracy_strength * pooled) / (n_a + accuracy_strength)
        # Where a one-coin annotator's errors go: the pool's off-diagonal counts of each true class,
        # plus one per cell (errors of a kind never seen are rare, not impossible).
        off = (soft.sum(axis=0) + 1.0) * (1.0 - eye)
        off /= off.sum(axis=1, keepdims=True)
        one_coin = accuracy[:, None, None] * eye + (1.0 - accuracy)[:, None, None] * off[None]
        # Each confusion row: the annotator's counts plus `row_strength` labels spread like their one-coin row.
        conf = soft + row_strength * one_coin
        conf /= conf.sum(axis=2, keepdims=True)
        # A label is never evidence against itself: P(says l | true c) is capped at P(says l | true l),
        # the excess moved to the row's own diagonal (which only raises the caps).
        capped = np.minimum(conf, np.einsum("acc->ac", conf)[:, None, :])
        conf = capped + eye * (conf - capped).sum(axis=2)[:, :, None]
        # E-step
        log_conf = np.log(conf)
        log_post = np.tile(np.log(priors), (n_items, 1))
        for c in range(n_cls):
            log_post[:, c] += np.bincount(obs_i, weights=log_conf[obs_a, c, obs_l], minlength=n_items)
        top = log_post.max(axis=1, keepdims=True)
        new = np.exp(log_post - top)
        total = new.sum(axis=1, keepdims=True)
        loglik = float((top + np.log(total)).sum())
        new /= total
        new[enc.clamp_rows] = 0.0
        new[enc.clamp_rows, enc.clamp_cols] = 1.0
        delta = float(np.abs(new - post).max())
        post = new
        history.append(loglik)
        # Settled, or on a plateau: the labels' log-likelihood gained less than PLATEAU per label over
        # the last 10 rounds (EM then drifts slowly along directions the data cannot tell apart).
        if delta < tol or (it > 20 and history[-1] - history[-11] < PLATEAU * len(obs_i)):
            converged = True
            break
    return DawidSkene(items, enc.annotators, enc.classes, priors, conf, post, it, converged,
                      (obs_i, obs_a, obs_l), loglik, anchored)


def hierarchical_dawid_skene(records: Iterable[Mapping] | Grouped, *, adjudicated: Mapping | None = None,
                             row_strength: float = ROW_STRENGTH, accuracy_strength: float = ACCURACY_STRENGTH,
                             max_iter: int = 500, tol: float = 1e-6) -> DawidSkene:
    """Dawid-Skene with hierarchical shrinkage, by EM (MAP); deterministic.

    Three levels, each shrunk towards the next by how much evidence it has:
    - the pool: its accuracy (the expected share of all labels that are right, plus
      accuracy_strength pseudo-labels halfway between chance and perfect) and where the errors of
      each true class go (the pool's error counts, plus one per kind of error);
    - each annotator: one accuracy (a "one-coin" model) = (expected right labels + accuracy_strength
      x pooled) / (labels + accuracy_strength), so an annotator with 3 labels is mostly the pool and
      one with 300 mostly themselves;
    - each confusion row P(says . | true c) = (expected counts + row_strength x the annotator's
      one-coin row) / (count + row_strength): class-specific habits (over-using one label) show once
      there are enough labels to see them.
    A label is never evidence against itself: P(says l | true c) is capped at P(says l | true l) (the
    excess goes to P(says c | true c)), so an annotator at or below chance weighs nothing instead of
    being read backwards.

    Only labels on items someone else also labelled (or that were adjudicated) teach the annotators'
    matrices: a lone label would only confirm itself. Initialised from the vote (a tie split
    evenly); adjudicated items are clamped to their ruling throughout, so they teach the matrices.
    Fitted twice: with a free class prior (the
    posterior shares) and with the class prior averaged with the observed label shares; the fit whose
    labels are more likely (higher log-likelihood) is kept. The free prior is what the data say when
    they are clear; with ambiguous data (few labels per item, annotators near chance) it can run away
    to one class and take every item with it, which the anchored fit cannot, and which explains the
    labels far worse.
    """
    if max_iter < 1 or row_strength < 0 or accuracy_strength < 0:
        raise ValueError("hierarchical_dawid_skene needs max_iter >= 1 and non-negative strengths, got "
                         f"{max_iter}, {row_strength} and {accuracy_strength}")
    enc = _encode(records, adjudicated)
    n_items, n_cls = len(enc.items), len(enc.classes)
    obs = (enc.obs_i, enc.obs_a, enc.obs_l)
    if n_items == 0 or n_cls == 1:
        return DawidSkene(enc.items, enc.annotators, enc.classes, np.ones(n_cls) / max(n_cls, 1),
                          np.ones((len(enc.annotators), n_cls, n_cls)), np.ones((n_items, n_cls)), 0, True,
                          obs, 0.0, False)
    free = _fit_hierarchical(enc, False, row_strength, accuracy_strength, max_iter, tol)
    anchored = _fit_hierarchical(enc, True, row_strength, accuracy_strength, max_iter, tol)
    return free if free.log_likelihood >= anchored.log_likelihood else anchored


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


def _how_model_decided(labs: list[str], label: str) -> str:
    """decided_by of a model's decision, said against the vote: single / unanimous when every label
    is the decision, majority when it is the vote's clear winner, tie-break when it is one of the
    tied labels, model-weighted when the vote said something else."""
    counts = Counter(labs)
    if all(lab == label for lab in labs):
        return "single" if len(labs) == 1 else "unanimous"
    top = max(counts.values())
    if counts[label] < top:
        return "model-weighted"
    return "tie-break" if sum(1 for v in counts.values() if v == top) > 1 else "majority"


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
    - "hierarchical-ds" (the default): the label with the highest posterior of
      `hierarchical_dawid_skene`; confidence = that posterior. decided_by is said against the vote:
      "unanimous", "majority" (the vote's clear winner), "tie-break" (one of the tied labels) or
      "model-weighted" (not the vote's label: the model outweighed a majority or a lone label).
      What breaks a tie (every 1-1 split at overlap 2): the posterior, i.e. first the two
      annotators' estimated reliability (how much their label shifts the odds, from their
      confusion matrices), then the class prior (the more frequent class); only an exact tie of
      posteriors (perfectly symmetric data) goes to the earliest label.

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
        if method == "dawid-skene":
            model = dawid_skene(grouped, adjudicated=adjudicated)
        else:
            model = hierarchical_dawid_skene(grouped, adjudicated=adjudicated)
        for i, item in enumerate(model.items):
            labs = [lab for _, lab in grouped.labels[item]]
            row = model.posteriors[i]
            best = float(row.max())
            tied = [model.classes[c] for c in np.flatnonzero(row >= best - 1e-12)]
            # An exact tie of posteriors (symmetric data) falls back to the vote's tie-break.
            label = tied[0] if len(tied) == 1 else next((lab for lab in labs if lab in tied), tied[0])
            if method == "dawid-skene":
                # One label the model keeps is "single"; one it overrules is "model-weighted".
                how = ("model-weighted" if any(lab != label for lab in labs)
                       else "single" if len(labs) == 1 else "unanimous")
            else:
                how = _how_model_decided(labs, label)
            out[item] = {"label": label, "confidence": best, "decided_by": how, "n_labels": len(labs)}
    for item, lab in adjudicated.items():
        out[item] = {"label": lab, "confidence": 1.0, "decided_by": "adjudicated",
                     "n_labels": len(grouped.labels.get(item, ()))}
    return out


# --------------------------------------------------------------------------------------------
# Reliability of annotators and of the training labels

INTERVAL = 0.95        # annotator accuracy: a central 95% interval
CHANCE_MARGIN = 0.10   # "near-chance": the interval's upper end within 10 points of chance
BIAS_MARGIN = 0.15     # "biased": the lower end of the share of a label 15 points above the model's share
FLAGS = ("near-chance", "biased")


def _beta_interval(successes: float, trials: float, level: float = INTERVAL) -> tuple[float, float]:
    """Central interval of Beta(1 + successes, 1 + trials - successes): the posterior of a rate
    after `successes` of `trials` under a uniform prior (defined, and wide, for few trials)."""
    from scipy.special import betaincinv

    a, b = 1.0 + successes, 1.0 + max(trials - successes, 0.0)
    tail = (1.0 - level) / 2
    return float(betaincinv(a, b, tail)), float(betaincinv(a, b, 1.0 - tail))


def annotator_reliability(records: Iterable[Mapping], consensus: Mapping[Any, Any], *,
                          adjudicated: Mapping[Any, str] | None = None) -> dict[Any, dict]:
    """annotator -> what their labels are worth, from `hierarchical_dawid_skene` on all the records.

    Keys of each entry:
    - "n", "agreement_with_consensus": the number of the annotator's items that have a consensus
      label (`consensus`: item -> label, or `aggregate`'s output), and the share of those where
      they gave it (None when n is 0). Their own label is part of most consensuses, so this
      flatters everyone, most of all on items with few labels.
    - "n_labels": all their labels; "n_evidence": those on items someone else also labelled (or
      that were adjudicated), the only ones that say anything about them.
    - "estimated_accuracy": the expected share of their evidence labels that are right under the
      model (the mean posterior of the label they gave); None without evidence.
    - "accuracy_interval": [low, high], the central 95% interval of Beta(1 + right, 1 + wrong) with
      that expected number of right labels: a binomial rate's posterior under a uniform prior, which
      stays in [0, 1], is wide on few labels and defined on none (None without evidence). It takes
      the model's view of the truth as given, so it is narrower than the whole uncertainty.
    - "chance_accuracy": the accuracy of someone who gives labels at their rates without looking
      at the item: sum over labels of their share of that label x the class prior.
    - "bias": {"label", "share", "model_share"} for the label they over-use most (their share of it
      among their evidence labels, against the model's mean probability of it on the same items),
      when the lower end of the share's 95% interval is at least BIAS_MARGIN above the model's
      share; else None.
    - "flags": "near-chance" when the accuracy interval's upper end is at most chance + CHANCE_MARGIN
      (their labels cannot be told from guessing), "biased" when "bias" is set; "warnings": one
      sentence per flag, e.g. "labels look random: 52% estimated accuracy over 140 labels (chance
      for their label use: 50%)".
    """
    grouped = labels_by_item(records)
    truth = {item: (v["label"] if isinstance(v, Mapping) else v) for item, v in consensus.items()}
    model = hierarchical_dawid_skene(grouped, adjudicated=adjudicated)
    seen: dict[Any, list[int]] = {a: [0, 0] for a in model.annotators}
    for item, labs in grouped.labels.items():
        if item not in truth:
            continue
        for ann, lab in labs:
            seen[ann][0] += 1
            seen[ann][1] += lab == truth[item]
    out: dict[Any, dict] = {}
    n_cls = len(model.classes)
    if model.observations is not None and len(model.items):
        obs_i, obs_a, obs_l = model.observations
        evidence = evidence_mask(_Encoded(model.items, model.annotators, model.classes, obs_i, obs_a, obs_l,
                                          np.array([i for i, it in enumerate(model.items)
                                                    if it in (adjudicated or {})], dtype=int),
                                          np.zeros(0, dtype=int)))
        right = model.posteriors[obs_i, obs_l]
    else:
        obs_i = obs_a = obs_l = right = evidence = np.zeros(0, dtype=int)
    for k, ann in enumerate(model.annotators):
        n, agree = seen[ann]
        mine = obs_a == k
        ev = mine & evidence.astype(bool)
        n_ev = int(ev.sum())
        entry: dict[str, Any] = {"n": n, "agreement_with_consensus": (agree / n if n else None),
                                 "n_labels": int(mine.sum()), "n_evidence": n_ev, "estimated_accuracy": None,
                                 "accuracy_interval": None, "chance_accuracy": None, "bias": None,
                                 "flags": [], "warnings": []}
        if n_ev:
            expected_right = float(right[ev].sum())
            accuracy = expected_right / n_ev
            low, high = _beta_interval(expected_right, n_ev)
            shares = np.bincount(obs_l[ev], minlength=n_cls) / n_ev
            chance = float(shares @ model.priors)
            entry.update(estimated_accuracy=accuracy, accuracy_interval=[low, high], chance_accuracy=chance)
            if high <= chance + CHANCE_MARGIN:
                entry["flags"].append("near-chance")
                entry["warnings"].append(f"labels look random: {accuracy:.0%} estimated accuracy over {n_ev} "
                                         f"labels (chance for their label use: {chance:.0%})")
            model_share = model.posteriors[obs_i[ev]].mean(axis=0)
            gaps = [(_beta_interval(shares[c] * n_ev, n_ev)[0] - model_share[c], c) for c in range(n_cls)]
            gap, c = max(gaps)
            if n_cls > 1 and gap >= BIAS_MARGIN:
                label = model.classes[c]
                entry["bias"] = {"label": label, "share": float(shares[c]), "model_share": float(model_share[c])}
                entry["flags"].append("biased")
                entry["warnings"].append(f"biased toward {label!r}: gives it to {shares[c]:.0%} of {n_ev} items, "
                                         f"where the model puts {model_share[c]:.0%} of them")
        out[ann] = entry
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def label_accuracy_estimate(aggregated: Mapping[Any, Mapping], method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """How many of a set of aggregated training labels are expected to be right.

    `aggregated`: `aggregate(..., method=method)`'s output. The estimate is the mean confidence,
    which under "dawid-skene" and "hierarchical-ds" (POSTERIOR_METHODS) is each label's posterior
    probability of being right; adjudicated labels count as right. Under the vote methods the
    confidence is a vote share, not a probability, and the estimate is None with the reason.
    {"value", "n_items", "expected_wrong", "n_adjudicated", "by_decided_by": {how: {"n_items",
    "value"}}, "method", "reason"}. The posterior is the model's belief: it assumes annotators err
    independently, so labels that many annotators get wrong together are over-trusted.
    """
    rows = list(aggregated.values())
    out: dict[str, Any] = {"value": None, "n_items": len(rows), "expected_wrong": None,
                           "n_adjudicated": sum(1 for r in rows if r["decided_by"] == "adjudicated"),
                           "by_decided_by": {}, "method": method, "reason": None}
    if method not in POSTERIOR_METHODS:
        out["reason"] = (f"under {method!r} the confidence is the vote share, not a probability of being right; "
                         f"use one of: {', '.join(POSTERIOR_METHODS)}")
        return out
    if not rows:
        out["reason"] = "no labels"
        return out
    conf = np.array([1.0 if r["decided_by"] == "adjudicated" else float(r["confidence"]) for r in rows])
    out.update(value=float(conf.mean()), expected_wrong=float((1.0 - conf).sum()))
    groups: dict[str, list[float]] = {}
    for r, c in zip(rows, conf):
        groups.setdefault(r["decided_by"], []).append(c)
    out["by_decided_by"] = {how: {"n_items": len(v), "value": float(np.mean(v))}
                            for how, v in sorted(groups.items(), key=lambda kv: DECIDED_BY.index(kv[0]))}
    return out
