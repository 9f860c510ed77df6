"""Dataset checks for `loop validate`: contradictions, duplicates, near-duplicates, invalid labels,
empty inputs, class balance, missing negatives, train/test leakage and likely label errors.

A pure core: items and embeddings in, a JSON-serialisable report out. Reading files is
`read_records` (lenient: a defect in the data is something to report, not a reason to stop);
embedding is the caller's job (`loop.core.embeddings.embed_texts`, cached).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from loop.core.dataset import Item, _rows, check_unique, existing_file, row_fields
from loop.core.neighbours import near_pairs
from loop.errors import ConfigError, DataError

NEAR_THRESHOLD = 0.95      # default cosine threshold for near-duplicates and near leakage
MINORITY_FRACTION = 0.1    # a class under this fraction of the largest class is flagged
MIN_CHARS = 3              # near-empty: fewer than this many non-space characters, or no letter/digit
DEFAULT_NEGATIVES = ("out_of_scope", "none", "refuse")   # used when the guidelines name none
NORMALISATION = "NFKC + casefold + whitespace"

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, str.casefold, runs of whitespace -> one space, strip.

    NFKC folds compatibility forms (full-width letters, ligatures, non-breaking spaces) into
    their plain equivalents; casefold is lower() plus the Unicode case foldings (ß -> ss).
    Punctuation is kept: "card arrived?" and "card arrived" are different inputs here.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def read_records(path: str | Path, *, text_field: str = "text", label_field: str = "label",
                 id_field: str | None = None) -> list[Item]:
    """Every row of a JSONL, CSV or Parquet file as an Item, for validation.

    Lenient where `loop.core.dataset.read_items` is strict: an empty or missing-value text is kept as ""
    (the empty-input check reports it) and duplicate texts are kept (the duplicate checks report
    them). A non-string text becomes str(x) (None -> ""). Labels are stripped; empty -> None.
    Ids come from `id_field`, else an `id` column when the row has one, else "row-<n>" with n the
    row's line number in the file (CSV: the header is line 1; Parquet: the row number from 1).
    Still errors (DataError): no such file, unknown type, a row without the text field, an empty
    id, a duplicate id, no rows at all.
    """
    path = existing_file(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in _rows(path):
        raw_text, label, item_id = row_fields(path, n, row, text_field, label_field, id_field)
        text = "" if raw_text is None else raw_text if isinstance(raw_text, str) else str(raw_text)
        item_id = f"row-{n}" if item_id is None else item_id
        check_unique(path, n, item_id, seen, f"id {item_id!r}")
        items.append(Item(item_id, text, label))
    if not items:
        raise DataError(f"{path}: no rows; nothing to validate")
    return items


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _check_embeddings(name: str, embeddings: np.ndarray, n: int) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != n:
        raise DataError(f"{name} has shape {embeddings.shape}, expected one row per item ({n} rows); "
                        "embed the items in the same order")
    return embeddings


def duplicate_clusters(items: Sequence[Item], embeddings: np.ndarray | None,
                       threshold: float = NEAR_THRESHOLD, *, pairs: Iterable[tuple[str, str]] = ()) -> list[int]:
    """One cluster id per item (same order): identical normalised texts and near-duplicate pairs
    (cosine >= threshold; skipped when embeddings is None) joined transitively.

    `pairs` are near-duplicate pairs already found, as item ids (the "near_duplicates" check of a
    `validate` report, so export does not run the search twice); pass them with embeddings=None.
    Ids are 0, 1, 2, ... in order of each cluster's first item, so they are stable for a given
    input. Export splits by these so that no cluster straddles train and test.
    """
    uf = _UnionFind(len(items))
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        j = first.setdefault(normalise(item.text), i)
        if j != i:
            uf.union(j, i)
    if embeddings is not None and len(items) > 1:
        for i, j, _ in near_pairs(_check_embeddings("embeddings", embeddings, len(items)), threshold):
            uf.union(i, j)
    index = {item.id: i for i, item in enumerate(items)}
    for a, b in pairs:
        uf.union(index[a], index[b])
    ids: dict[int, int] = {}
    return [ids.setdefault(uf.find(i), len(ids)) for i in range(len(items))]


# -- the checks ---------------------------------------------------------------------------------
# Each returns the check's entry of the report; `_entry` adds status and severity so that every
# check has the same frame: "status" ("ok" | "found" | "skipped"), "severity", "count".
SEVERITY = {"contradictions": "blocker", "exact_duplicates": "warning", "near_duplicates": "warning",
            "invalid_labels": "error", "empty_inputs": "error", "class_balance": "warning",
            "missing_negatives": "warning", "leakage": "error", "label_errors": "review"}
ALPHA = 0.05      # significance level of the chi-square test against a reference distribution
KL_EPSILON = 1e-6  # share given to a class absent on one side, so the KL divergence stays finite


def _entry(name: str, count: int, found: bool | None = None, **fields) -> dict:
    status = "found" if (count > 0 if found is None else found) else "ok"
    return {"status": status, "severity": SEVERITY[name], "count": int(count), **fields}


def _skipped(name: str, reason: str, **fields) -> dict:
    return {"status": "skipped", "severity": SEVERITY[name], "count": 0, "reason": reason, **fields}


def is_near_empty(text: str, min_chars: int = MIN_CHARS) -> bool:
    """Fewer than `min_chars` non-space characters, or not one letter or digit."""
    norm = normalise(text)
    return len(norm.replace(" ", "")) < min_chars or not any(ch.isalnum() for ch in norm)


def _groups(items: Sequence[Item], keep: Sequence[int]) -> dict[str, list[int]]:
    """Normalised text -> indices of the kept items with that text, in file order."""
    groups: dict[str, list[int]] = {}
    for i in keep:
        groups.setdefault(normalise(items[i].text), []).append(i)
    return groups


def check_exact(items: Sequence[Item], groups: dict[str, list[int]]) -> tuple[dict, dict]:
    """(contradictions, exact_duplicates) from the groups of identical normalised texts.

    A group whose labelled rows carry more than one label is a contradiction (unlabelled rows in it
    do not count either way); any other group of two or more rows is a set of exact duplicates.
    """
    contradictions, duplicates = [], []
    for text, members in groups.items():
        if len(members) < 2:
            continue
        by_label: dict[str, list[str]] = {}
        for i in members:
            if items[i].label is not None:
                by_label.setdefault(items[i].label, []).append(items[i].id)
        if len(by_label) > 1:
            contradictions.append({"text": text, "labels": dict(sorted(by_label.items())),
                                   "n_rows": len(members)})
        else:
            duplicates.append({"text": text, "label": next(iter(by_label), None),
                               "ids": [items[i].id for i in members],
                               "verbatim": len({items[i].text for i in members}) == 1})
    contra = _entry("contradictions", len(contradictions), rows=sum(g.pop("n_rows") for g in contradictions),
                    groups=contradictions)
    dups = _entry("exact_duplicates", len(duplicates), rows=sum(len(g["ids"]) - 1 for g in duplicates),
                  # Distinct raw texts that occur more than once: duplicates before normalisation, the
                  # figure datasets usually publish (trec train: 63 verbatim, 64 groups after normalising).
                  verbatim_texts=_verbatim_texts(items, [g["ids"] for g in duplicates]),
                  groups=duplicates)
    return contra, dups


def _verbatim_texts(items: Sequence[Item], id_groups: list[list[str]]) -> int:
    text_of = {it.id: it.text for it in items}
    return sum(1 for ids in id_groups for n in Counter(text_of[i] for i in ids).values() if n > 1)


def check_near(items: Sequence[Item], embeddings: np.ndarray, keep: Sequence[int], threshold: float,
               progress=None) -> dict:
    """Pairs of kept items with cosine >= threshold whose normalised texts differ (identical ones
    are exact duplicates or contradictions). Pairs with different labels first: those are the ones
    that teach the model two answers for the same question; then by similarity, highest first."""
    keep = list(keep)
    norm = [normalise(items[i].text) for i in keep]
    pairs = []
    for a, b, sim in near_pairs(embeddings[keep], threshold, progress=progress):
        if norm[a] == norm[b]:
            continue
        ia, ib = items[keep[a]], items[keep[b]]
        pairs.append({"a": ia.id, "b": ib.id, "similarity": round(sim, 4), "label_a": ia.label,
                      "label_b": ib.label, "same_label": ia.label == ib.label})
    pairs.sort(key=lambda p: (p["same_label"], -p["similarity"]))
    return _entry("near_duplicates", len(pairs), threshold=threshold,
                  different_labels=sum(not p["same_label"] for p in pairs), pairs=pairs)


def check_invalid(items: Sequence[Item], labels: Sequence[str]) -> dict:
    allowed = set(labels)
    rows = [{"id": it.id, "label": it.label} for it in items if it.label is not None and it.label not in allowed]
    return _entry("invalid_labels", len(rows), label_set=sorted(allowed),
                  labels=dict(sorted(Counter(r["label"] for r in rows).items())), rows=rows)


def check_empty(items: Sequence[Item], min_chars: int) -> dict:
    rows = [{"id": it.id, "text": it.text} for it in items if is_near_empty(it.text, min_chars)]
    return _entry("empty_inputs", len(rows), min_chars=min_chars, rows=rows)


def compare_reference(counts: Mapping[str, int], reference: Mapping[str, float]) -> dict:
    """The label counts against a reference distribution (counts or shares, e.g. production traffic).

    chi_square / p_value: scipy.stats.chisquare of the observed counts of the reference's classes
    against the reference shares scaled to the same total (classes the reference gives zero or
    lacks cannot enter a chi-square test; they are listed in missing_in_reference instead).
    kl_divergence: KL(data share || reference share) in nats over the union of classes, a class
    absent on one side given KL_EPSILON; 0 means identical shares.
    """
    from scipy.stats import chisquare, entropy

    ref_total = float(sum(reference.values()))
    ref_share = {k: float(v) / ref_total for k, v in reference.items()}
    compared = sorted(k for k, s in ref_share.items() if s > 0)
    observed = np.array([counts.get(k, 0) for k in compared], dtype=float)
    result: dict = {"classes_compared": len(compared),
                    "missing_in_data": sorted(k for k in compared if counts.get(k, 0) == 0),
                    "missing_in_reference": sorted(k for k, c in counts.items() if c > 0 and ref_share.get(k, 0) == 0)}
    if observed.sum() > 0 and len(compared) > 1:
        expected = np.array([ref_share[k] for k in compared]) * observed.sum() / sum(ref_share[k] for k in compared)
        stat, p = chisquare(observed, expected)
        result.update(chi_square=round(float(stat), 4), p_value=float(p),
                      expected={k: round(float(e), 2) for k, e in zip(compared, expected)})
    else:
        result.update(chi_square=None, p_value=None, expected={},
                      note="the data has fewer than two of the reference's classes; no chi-square test")
    union = sorted(set(compared) | {k for k, c in counts.items() if c > 0})
    total = sum(counts.get(k, 0) for k in union) or 1
    p_data = np.array([counts.get(k, 0) / total for k in union]) + KL_EPSILON
    p_ref = np.array([ref_share.get(k, 0.0) for k in union]) + KL_EPSILON
    result["kl_divergence"] = round(float(entropy(p_data, p_ref)), 6)  # entropy() renormalises both
    result["alpha"] = ALPHA
    result["differs"] = bool(result["missing_in_data"] or result["missing_in_reference"]
                             or (result["p_value"] is not None and result["p_value"] < ALPHA))
    return result


def check_balance(items: Sequence[Item], labels: Sequence[str] | None, minority_fraction: float,
                  reference: Mapping[str, float] | None) -> dict:
    """Counts and shares of the labelled items; a class under minority_fraction x the largest class
    is a minority (a class of the label set with no item at all is one too, with count 0)."""
    counts = Counter(it.label for it in items if it.label is not None)
    for label in labels or ():
        counts.setdefault(label, 0)
    counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    n = sum(counts.values())
    largest = max(counts.values(), default=0)
    minority = [k for k, c in counts.items() if c < minority_fraction * largest]
    ref = compare_reference(counts, reference) if reference else None
    return _entry("class_balance", len(minority), found=bool(minority) or bool(ref and ref["differs"]),
                  counts=counts, share={k: round(c / n, 4) if n else 0.0 for k, c in counts.items()},
                  largest=largest, minority=minority, minority_fraction=minority_fraction,
                  unlabelled=sum(1 for it in items if it.label is None), reference=ref)


def check_negatives(items: Sequence[Item], labels: Sequence[str] | None,
                    negatives: Sequence[str] | None) -> dict:
    if negatives is None:
        if labels is None:
            return _skipped("missing_negatives", "no label set to look for negative labels in; pass the "
                            "guidelines (or name the negatives)", negatives=[], missing=[])
        negatives = [n for n in DEFAULT_NEGATIVES if n in set(labels)]
    negatives = list(dict.fromkeys(negatives))
    if not negatives:
        return _skipped("missing_negatives", "the label set has no negative label ("
                        + ", ".join(DEFAULT_NEGATIVES) + "); name one in the guidelines' `negatives` if the "
                        "model must learn to say no", negatives=[], missing=[])
    present = {it.label for it in items}
    missing = [n for n in negatives if n not in present]
    return _entry("missing_negatives", len(missing), negatives=negatives, missing=missing)


def check_leakage(items: Sequence[Item], keep: Sequence[int], test: Sequence[Item], test_keep: Sequence[int],
                  embeddings: np.ndarray | None, test_embeddings: np.ndarray | None, threshold: float,
                  progress=None) -> dict:
    """Test inputs that also occur in the training data: identical after normalisation (exact) or
    with cosine >= threshold (near, texts not identical). `conflicting` counts the exact groups and
    near pairs whose labels disagree across the two files."""
    train_groups = _groups(items, keep)
    test_groups = _groups(test, test_keep)
    exact = []
    for text, t_idx in test_groups.items():
        if text not in train_groups:
            continue
        tr = [items[i] for i in train_groups[text]]
        te = [test[i] for i in t_idx]
        exact.append({"text": text, "train_ids": [it.id for it in tr], "test_ids": [it.id for it in te],
                      "train_labels": sorted({it.label for it in tr if it.label is not None}),
                      "test_labels": sorted({it.label for it in te if it.label is not None}),
                      "conflicting": len({it.label for it in tr + te if it.label is not None}) > 1,
                      "verbatim": bool({it.text for it in tr} & {it.text for it in te})})
    exact.sort(key=lambda g: not g["conflicting"])
    leaked = {tid for g in exact for tid in g["test_ids"]}
    fields: dict = {"threshold": threshold}
    near = []
    if embeddings is None or test_embeddings is None:
        fields["near_status"] = "skipped"
        missing = "the training items" if embeddings is None else "the test items"
        fields["near_reason"] = f"no embeddings for {missing}"
    else:
        keep, test_keep = list(keep), list(test_keep)
        for a, b, sim in near_pairs(embeddings[keep], threshold, test_embeddings[test_keep], progress=progress):
            tr, te = items[keep[a]], test[test_keep[b]]
            if normalise(tr.text) == normalise(te.text):
                continue
            near.append({"train": tr.id, "test": te.id, "similarity": round(sim, 4), "label_train": tr.label,
                         "label_test": te.label, "same_label": tr.label == te.label})
        near.sort(key=lambda p: (p["same_label"], -p["similarity"]))
        leaked |= {p["test"] for p in near}
        fields["near_status"] = "done"
    conflicting = sum(g["conflicting"] for g in exact) + sum(
        p["label_train"] is not None and p["label_test"] is not None and not p["same_label"] for p in near)
    return _entry("leakage", len(leaked), exact_groups=len(exact),
                  verbatim_texts=sum(g["verbatim"] for g in exact), near_pairs=len(near),
                  conflicting=conflicting, exact=exact, near=near, **fields)


def check_label_errors(items: Sequence[Item], embeddings: np.ndarray, keep: Sequence[int], *, seed: int = 0,
                       folds: int = 5) -> dict:
    """Likely label errors by confident learning (Northcutt, Jiang & Chuang 2021, "Confident
    Learning: Estimating Uncertainty in Dataset Labels"), written here on scikit-learn rather than
    taken from cleanlab, which is AGPL-3.0 and cannot be a dependency of this Apache-2.0 project.

    1. Out-of-sample probabilities: cross_val_predict with the project's classifier
       (loop.core.model.new_classifier) over stratified folds (5, fewer when a class has fewer items).
    2. Per-class threshold t_j = mean probability of class j over the items labelled j (its
       average self-confidence).
    3. An item labelled j is flagged when p(j) < t_j while some other class k has p(k) >= t_k
       (the off-diagonal of the confident joint); the suggestion is the most probable such k.
    4. Ranked by p(given label), lowest first: the classifier's strongest contradictions on top.
    Classes with fewer than 2 items cannot be cross-validated; their items are left out, with a note.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    from loop.core.model import new_classifier

    method = ("confident learning (Northcutt et al. 2021) on out-of-fold LogisticRegression probabilities; "
              "per-class threshold = mean self-confidence")
    sizes = Counter(items[i].label for i in keep)
    tiny = sorted(k for k, c in sizes.items() if c < 2)
    notes = [f"class {k!r} has {sizes[k]} item; needs at least 2 to cross-validate, so it was left out"
             for k in tiny]
    rows_idx = [i for i in keep if items[i].label not in set(tiny)]
    classes = sorted({items[i].label for i in rows_idx})
    if len(classes) < 2:
        return _skipped("label_errors", "needs labelled items of at least two classes with 2+ items each",
                        method=method, notes=notes, rows=[])
    y = np.array([items[i].label for i in rows_idx])
    n_splits = min(folds, min(sizes[k] for k in classes))
    if n_splits < folds:
        notes.append(f"{n_splits} folds instead of {folds}: the smallest class has {n_splits} items")
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # One BLAS thread, as in loop.core.model.train: lbfgs on a few thousand rows is faster that way.
    with threadpool_limits(limits=1, user_api="blas"):
        proba = cross_val_predict(new_classifier(seed), embeddings[rows_idx], y, cv=cv, method="predict_proba")
    col = {k: j for j, k in enumerate(classes)}  # cross_val_predict orders columns by sorted class
    given = np.array([col[k] for k in y])
    thresholds = np.array([proba[given == j, j].mean() for j in range(len(classes))])
    p_given = proba[np.arange(len(y)), given]
    above = proba >= thresholds
    above[np.arange(len(y)), given] = False
    flagged = np.flatnonzero((p_given < thresholds[given]) & above.any(axis=1))
    rows = []
    for r in flagged[np.argsort(p_given[flagged], kind="stable")]:
        candidates = np.where(above[r], proba[r], -1.0)
        k = int(candidates.argmax())
        rows.append({"id": items[rows_idx[r]].id, "label": y[r].item(), "suggested": classes[k],
                     "label_probability": round(float(p_given[r]), 4),
                     "suggested_probability": round(float(proba[r, k]), 4)})
    return _entry("label_errors", len(rows), method=method, folds=n_splits, n_checked=len(y),
                  thresholds={k: round(float(t), 4) for k, t in zip(classes, thresholds)}, notes=notes, rows=rows)


# -- the report ---------------------------------------------------------------------------------
PROGRESS_STEPS = 8  # `validate` calls `progress` once per group of checks (export's bar counts on it)


def validate(items: Sequence[Item], *, embeddings: np.ndarray | None = None,
             labels: Sequence[str] | None = None, negatives: Sequence[str] | None = None,
             test: Sequence[Item] | None = None, test_embeddings: np.ndarray | None = None,
             near_threshold: float = NEAR_THRESHOLD, minority_fraction: float = MINORITY_FRACTION,
             min_chars: int = MIN_CHARS, reference: Mapping[str, float] | None = None,
             label_errors: bool = True, seed: int = 0,
             progress: Callable[[str], None] | None = None) -> dict:
    """Run every check on `items` (and `test`, for leakage) and return the report (JSON-serialisable).

    embeddings / test_embeddings: L2-normalised rows aligned with items / test (None: the
    near-duplicate, near-leakage and label-error checks are skipped with a reason). labels: the
    allowed label set (None: the invalid-label check is skipped). negatives: None -> the
    DEFAULT_NEGATIVES that are in the label set. reference: label -> count or share.
    `progress` is called with each check's name as it starts.

    Rows flagged as empty or near-empty are reported there and left out of every other text check
    (a dozen blank rows are not a dozen contradictions) and of the classifier.
    "ok" is False exactly when a blocker (contradictions) was found: the CLI's exit code.
    """
    if not 0.0 < near_threshold <= 1.0:
        raise ConfigError(f"near-duplicate threshold must be in (0, 1], got {near_threshold}")
    if not 0.0 <= minority_fraction <= 1.0:
        raise ConfigError(f"minority fraction must be between 0 and 1, got {minority_fraction}")
    if min_chars < 0:
        raise ConfigError(f"min_chars must be at least 0, got {min_chars}")
    if embeddings is not None:
        embeddings = _check_embeddings("embeddings", embeddings, len(items))
    if test is not None and test_embeddings is not None:
        test_embeddings = _check_embeddings("test_embeddings", test_embeddings, len(test))
    if reference is not None:
        reference = _check_reference(reference, "reference")
    say = progress or (lambda name: None)

    checks: dict[str, dict] = {}
    say("empty_inputs")
    checks["empty_inputs"] = check_empty(items, min_chars)
    empty = {r["id"] for r in checks["empty_inputs"]["rows"]}
    keep = [i for i, it in enumerate(items) if it.id not in empty]

    say("contradictions")
    checks["contradictions"], checks["exact_duplicates"] = check_exact(items, _groups(items, keep))

    say("near_duplicates")
    if embeddings is None:
        checks["near_duplicates"] = _skipped("near_duplicates", "no embeddings", threshold=near_threshold, pairs=[])
    else:
        checks["near_duplicates"] = check_near(items, embeddings, keep, near_threshold)

    say("invalid_labels")
    if labels is None:
        checks["invalid_labels"] = _skipped("invalid_labels", "no label set given (guidelines or --labels)",
                                            label_set=[], rows=[])
    else:
        checks["invalid_labels"] = check_invalid(items, labels)

    say("class_balance")
    checks["class_balance"] = check_balance(items, labels, minority_fraction, reference)
    say("missing_negatives")
    checks["missing_negatives"] = check_negatives(items, labels, negatives)

    say("leakage")
    if test is None:
        checks["leakage"] = _skipped("leakage", "no test file given (--test)", exact=[], near=[], conflicting=0)
    else:
        test_empty = {i for i, it in enumerate(test) if is_near_empty(it.text, min_chars)}
        checks["leakage"] = check_leakage(items, keep, test, [i for i in range(len(test)) if i not in test_empty],
                                          embeddings, test_embeddings, near_threshold)

    say("label_errors")
    allowed = set(labels) if labels is not None else None
    labelled = [i for i in keep if items[i].label is not None and (allowed is None or items[i].label in allowed)]
    if not label_errors:
        checks["label_errors"] = _skipped("label_errors", "turned off", rows=[])
    elif embeddings is None:
        checks["label_errors"] = _skipped("label_errors", "no embeddings", rows=[])
    else:
        checks["label_errors"] = check_label_errors(items, embeddings, labelled, seed=seed)

    order = ["contradictions", "exact_duplicates", "near_duplicates", "invalid_labels", "empty_inputs",
             "class_balance", "missing_negatives", "leakage", "label_errors"]
    checks = {name: checks[name] for name in order}
    blockers = [name for name, c in checks.items() if c["severity"] == "blocker" and c["status"] == "found"]
    return {"n_items": len(items), "n_labelled": sum(1 for it in items if it.label is not None),
            "n_test": None if test is None else len(test),
            "settings": {"near_threshold": near_threshold, "minority_fraction": minority_fraction,
                         "min_chars": min_chars, "normalisation": NORMALISATION, "seed": seed},
            "checks": checks, "blockers": blockers, "ok": not blockers}


def _check_reference(reference: Mapping[str, float], where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, value in reference.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise DataError(f"{where}: the value for {label!r} is {value!r}; expected a count or share >= 0")
        out[str(label)] = float(value)
    if not out or sum(out.values()) <= 0:
        raise DataError(f"{where}: the reference distribution is empty or all zero; give each label a count or share")
    return out


def read_reference(path: str | Path) -> dict[str, float]:
    """A reference distribution (e.g. production traffic) from a file: label -> count or share.

    Either a JSON object {"label": count_or_share, ...}, or rows (CSV, JSONL, a JSON list of
    objects) with a `label` column and a `count` (or `share`) column.
    """
    import json

    from loop.core.dataset import not_utf8_error

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path of the reference distribution")
    shape_help = ('expected a JSON object {"label": count, ...} or rows with "label" and "count" '
                  '(or "share") columns')
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError:
            raise not_utf8_error(path) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} "
                            f"({exc.msg.removesuffix(' at')}); {shape_help}") from None
        if isinstance(data, dict):
            if any(isinstance(v, dict) for v in data.values()):
                nested = ", ".join(k for k, v in data.items() if isinstance(v, dict))
                raise DataError(f"{path}: values are objects (keys: {nested}); {shape_help}. For a file with one "
                                "distribution per split, save the one you mean on its own")
            return _check_reference(data, str(path))
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: {shape_help}")
        rows = list(enumerate(data, start=1))
    else:
        rows = list(_rows(path))
    out: dict[str, float] = {}
    for n, row in rows:
        column = "count" if "count" in row else "share" if "share" in row else None
        if "label" not in row or column is None:
            raise DataError(f"{path}:{n}: fields are {', '.join(sorted(row)) or 'none'}; {shape_help}")
        label = str(row["label"]).strip()
        if label in out:
            raise DataError(f"{path}:{n}: label {label!r} appears twice; give each label one row")
        try:
            out[label] = float(row[column])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{n}: {column} {row[column]!r} is not a number") from None
    return _check_reference(out, str(path))
