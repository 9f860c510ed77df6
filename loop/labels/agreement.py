"""Inter-annotator agreement: how far the labels of several annotators on the same items agree.

Pure functions over label records (dicts with "item_id", "annotator", "label", optional
"created_at"); no I/O. An annotator counts once per item (their latest label). Every figure comes
with the number of items it rests on, and a figure that cannot be computed is None with a reason,
never NaN. `agreement_report` combines them all into one JSON-serialisable dict.

- percent agreement: per item with >= 2 labels, the share of annotator pairs that agree; mean
  over those items.
- Cohen's kappa for every pair of annotators, on the items both labelled
  (`sklearn.metrics.cohen_kappa_score`).
- Krippendorff's alpha (nominal) from the coincidence matrix; missing labels allowed.
- Fleiss' kappa (`statsmodels`), only when every item has the same number of labels.
- which pairs of labels annotators confuse most.

`agreement_records` says which of a project's labels count (adjudicators' rulings do not: they are
decisions on contested items, not independent labels); `full_report` adds each annotator's
agreement with the consensus (the default aggregation), estimated accuracy with its interval and
flags (`aggregation.annotator_reliability`), and the consensus labels' expected accuracy.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from loop.labels.aggregation import (
    DEFAULT_METHOD,
    Grouped,
    aggregate,
    annotator_reliability,
    label_accuracy_estimate,
    labels_by_item,
)


def _grouped(records: Iterable[Mapping] | Grouped) -> Grouped:
    return records if isinstance(records, Grouped) else labels_by_item(records)


def _name(x: Any) -> Any:
    """A JSON-friendly annotator/item name: kept when it is a str/int, else str()."""
    return x if isinstance(x, (str, int)) and not isinstance(x, bool) else str(x)


def percent_agreement(records: Iterable[Mapping] | Grouped) -> dict:
    """{"value", "n_items"}: mean over items with >= 2 labels of the share of agreeing pairs."""
    grouped = _grouped(records)
    shares = []
    for labs in grouped.labels.values():
        m = len(labs)
        if m < 2:
            continue
        counts = Counter(lab for _, lab in labs)
        shares.append(sum(k * (k - 1) for k in counts.values()) / (m * (m - 1)))
    if not shares:
        return {"value": None, "n_items": 0, "reason": "no item has two or more labels"}
    return {"value": float(np.mean(shares)), "n_items": len(shares)}


def pairwise_kappa(records: Iterable[Mapping] | Grouped) -> list[dict]:
    """Cohen's kappa for every pair of annotators who share at least one item.

    One dict per pair, ordered by annotator names: {"annotators": [a, b], "n_items",
    "percent_agreement", "kappa", "reason"}. When both annotators gave one and the same label on
    all their shared items, chance agreement is 1 and kappa is 0/0: kappa is None and `reason`
    says why (reason is None whenever kappa is a number).
    """
    from sklearn.metrics import cohen_kappa_score

    grouped = _grouped(records)
    shared: dict[tuple, tuple[list[str], list[str]]] = {}
    for labs in grouped.labels.values():
        for (a, la), (b, lb) in itertools.combinations(sorted(labs, key=lambda x: str(x[0])), 2):
            left, right = shared.setdefault((a, b), ([], []))
            left.append(la)
            right.append(lb)
    out = []
    for (a, b), (la, lb) in sorted(shared.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        n = len(la)
        agree = sum(x == y for x, y in zip(la, lb)) / n
        used = set(la) | set(lb)
        if len(used) == 1:
            kappa, reason = None, (f"both gave only {next(iter(used))!r} on their {n} shared item(s): chance "
                                   "agreement is 1, so kappa is undefined")
        else:
            kappa, reason = float(cohen_kappa_score(la, lb)), None
        out.append({"annotators": [_name(a), _name(b)], "n_items": n, "percent_agreement": agree,
                    "kappa": kappa, "reason": reason})
    return out


def krippendorff_alpha(records: Iterable[Mapping] | Grouped) -> dict:
    """Krippendorff's alpha for nominal labels, from the coincidence matrix.

    Items with one label are not pairable and are left out. For each pairable item u with m_u
    labels, every ordered pair of labels from different annotators adds 1/(m_u - 1) to the
    coincidence o[c, k]; with n_c the row sums and n the total number of pairable labels,
    alpha = 1 - (n - 1) * sum_{c != k} o[c, k] / sum_{c != k} n_c n_k.
    {"value", "n_items", "n_labels"}, plus "reason" when it is undefined (no pairable item, or a
    single label value overall: no variation, expected disagreement 0).
    """
    grouped = _grouped(records)
    classes = sorted({lab for labs in grouped.labels.values() for _, lab in labs})
    index = {c: k for k, c in enumerate(classes)}
    rows = []
    for labs in grouped.labels.values():
        if len(labs) < 2:
            continue
        row = np.zeros(len(classes))
        for _, lab in labs:
            row[index[lab]] += 1
        rows.append(row)
    if not rows:
        return {"value": None, "n_items": 0, "n_labels": 0, "reason": "no item has two or more labels"}
    counts = np.array(rows)  # items x classes
    m = counts.sum(axis=1)
    weighted = counts / (m - 1)[:, None]
    coincidence = counts.T @ weighted - np.diag(weighted.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = coincidence.sum() - np.trace(coincidence)
    expected = n * n - float(n_c @ n_c)
    result = {"n_items": len(rows), "n_labels": int(m.sum())}
    if expected <= 0:
        return {"value": None, **result,
                "reason": f"every pairable label is {classes[0]!r}: no variation, alpha is undefined"}
    return {"value": float(1.0 - (n - 1) * observed / expected), **result}


def fleiss_kappa(records: Iterable[Mapping] | Grouped) -> dict:
    """Fleiss' kappa (statsmodels), only when every item has the same number (>= 2) of labels.

    Fleiss' formula assumes a fixed number of raters per item; with varying numbers it gives a
    number that is silently wrong, so it is None with the reason instead (use Krippendorff's alpha).
    {"value", "n_items", "labels_per_item"}, plus "reason" when None.
    """
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    grouped = _grouped(records)
    sizes = Counter(len(labs) for labs in grouped.labels.values())
    if not sizes:
        return {"value": None, "n_items": 0, "labels_per_item": None, "reason": "no labels"}
    if len(sizes) > 1:
        spread = ", ".join(f"{n} with {k}" for k, n in sorted(sizes.items()))
        reason = (f"items have different numbers of labels ({spread}); Fleiss' kappa needs the same number "
                  "on every item (use Krippendorff's alpha)")
        if grouped.duplicates:
            reason += f"; {grouped.duplicates} repeated label(s) by the same annotator on an item were dropped"
        return {"value": None, "n_items": sum(sizes.values()), "labels_per_item": None, "reason": reason}
    (per_item, n_items), = sizes.items()
    if per_item < 2:
        return {"value": None, "n_items": n_items, "labels_per_item": per_item,
                "reason": "every item has one label; agreement needs two or more"}
    classes = sorted({lab for labs in grouped.labels.values() for _, lab in labs})
    if len(classes) == 1:
        return {"value": None, "n_items": n_items, "labels_per_item": per_item,
                "reason": f"every label is {classes[0]!r}: chance agreement is 1, kappa is undefined"}
    index = {c: k for k, c in enumerate(classes)}
    table = np.zeros((n_items, len(classes)))
    for i, labs in enumerate(grouped.labels.values()):
        for _, lab in labs:
            table[i, index[lab]] += 1
    return {"value": float(_fleiss(table, method="fleiss")), "n_items": n_items, "labels_per_item": per_item}


def label_confusions(records: Iterable[Mapping] | Grouped) -> list[dict]:
    """Which pairs of different labels annotators of the same item give, most frequent first.

    For each unordered pair of labels {a, b}: "pairs" = the number of annotator pairs (on one
    item) where one said a and the other b, "items" = the number of items where that happened,
    "share" = pairs over all disagreeing annotator pairs.
    """
    grouped = _grouped(records)
    pairs: Counter = Counter()
    items: Counter = Counter()
    for labs in grouped.labels.values():
        counts = Counter(lab for _, lab in labs)
        for a, b in itertools.combinations(sorted(counts), 2):
            pairs[(a, b)] += counts[a] * counts[b]
            items[(a, b)] += 1
    total = sum(pairs.values())
    ranked = sorted(pairs, key=lambda ab: (-pairs[ab], -items[ab], ab))
    return [{"labels": list(ab), "pairs": pairs[ab], "items": items[ab], "share": pairs[ab] / total}
            for ab in ranked]


def _few(what: str, n: int, min_items: int) -> str:
    return f"{what} rests on {n} item(s), fewer than {min_items}: treat it as a rough indication"


def agreement_report(records: Iterable[Mapping], min_items: int = 20) -> dict:
    """Every agreement figure, with the counts each rests on and warnings for thin ones.

    Keys: n_records, n_items, n_annotators, labels (label -> count), labels_per_item
    ("min", "median", "max"), duplicates_dropped, percent_agreement, krippendorff_alpha,
    fleiss_kappa, cohen_kappa ({"pairs", "n_pairs", "n_defined", "mean", "weighted_mean",
    "n_min_items", "mean_min_items"}: the means are over pairs with a defined kappa, unweighted,
    weighted by shared items, and over the pairs sharing at least `min_items` items),
    confusions, warnings (a list of sentences). Figures below `min_items` items get a warning.
    """
    grouped = labels_by_item(records)
    label_counts = Counter(lab for labs in grouped.labels.values() for _, lab in labs)
    sizes = [len(labs) for labs in grouped.labels.values()]
    annotators = {a for labs in grouped.labels.values() for a, _ in labs}
    pa = percent_agreement(grouped)
    alpha = krippendorff_alpha(grouped)
    fleiss = fleiss_kappa(grouped)
    pairs = pairwise_kappa(grouped)
    defined = [p for p in pairs if p["kappa"] is not None]
    solid = [p for p in defined if p["n_items"] >= min_items]
    kappa = {
        "pairs": pairs,
        "n_pairs": len(pairs),
        "n_defined": len(defined),
        "mean": float(np.mean([p["kappa"] for p in defined])) if defined else None,
        "weighted_mean": (float(np.average([p["kappa"] for p in defined], weights=[p["n_items"] for p in defined]))
                          if defined else None),
        "n_min_items": len(solid),
        "mean_min_items": float(np.mean([p["kappa"] for p in solid])) if solid else None,
    }
    warnings = []
    if grouped.duplicates:
        warnings.append(f"{grouped.duplicates} label(s) repeated by the same annotator on the same item; "
                        "only each annotator's latest label per item counts")
    for name, fig in (("percent agreement", pa), ("Krippendorff's alpha", alpha), ("Fleiss' kappa", fleiss)):
        if fig["value"] is None:
            warnings.append(f"{name} is undefined: {fig['reason']}")
        elif fig["n_items"] < min_items:
            warnings.append(_few(name, fig["n_items"], min_items))
    thin = [p for p in pairs if p["n_items"] < min_items]
    if thin:
        names = ", ".join(f"{p['annotators'][0]}/{p['annotators'][1]} ({p['n_items']})" for p in thin[:5])
        more = f" and {len(thin) - 5} more" if len(thin) > 5 else ""
        warnings.append(f"{len(thin)} of {len(pairs)} annotator pairs share fewer than {min_items} items, "
                        f"so their kappas are rough: {names}{more}")
    undefined = len(pairs) - len(defined)
    if undefined:
        warnings.append(f"Cohen's kappa is undefined for {undefined} of {len(pairs)} annotator pairs "
                        "(both gave a single, identical label on every shared item); left out of the means")
    return {
        "n_records": grouped.n_records,
        "n_items": len(grouped.labels),
        "n_annotators": len(annotators),
        "labels": dict(sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "labels_per_item": ({"min": min(sizes), "median": statistics.median(sizes), "max": max(sizes)}
                            if sizes else None),
        "duplicates_dropped": grouped.duplicates,
        "percent_agreement": pa,
        "krippendorff_alpha": alpha,
        "fleiss_kappa": fleiss,
        "cohen_kappa": kappa,
        "confusions": label_confusions(grouped),
        "warnings": warnings,
    }


def agreement_records(annotations: Iterable[Mapping], adjudication: Mapping[str, Mapping], *,
                      items: Iterable[str] | None = None, guideline_version: int | None = None) -> list[Mapping]:
    """The label records agreement is measured on: labelled (not skipped), of `items` and of
    `guideline_version` when given, without an adjudicator's ruling on the item they adjudicate."""
    items = None if items is None else set(items)
    out = []
    for a in annotations:
        if a["label"] is None or (items is not None and a["item_id"] not in items):
            continue
        if guideline_version is not None and a.get("guideline_version") != guideline_version:
            continue
        if (adjudication.get(a["item_id"]) or {}).get("adjudicator") == a["annotator"]:
            continue
        out.append(a)
    return out


def full_report(records: list[Mapping], method: str = DEFAULT_METHOD, min_items: int = 20) -> dict[str, Any]:
    """Agreement figures plus, per annotator, their agreement with the consensus and what their labels
    are worth (`aggregation.annotator_reliability`: estimated accuracy, its 95% interval, the labels
    it rests on, flags), and the consensus labels' expected accuracy ("consensus_accuracy",
    `aggregation.label_accuracy_estimate`). Each flagged annotator adds one line to "warnings"
    ("annotator bob: labels look random: 52% estimated accuracy over 140 labels (chance for their
    label use: 50%)")."""
    report = agreement_report(records, min_items=min_items)
    consensus = aggregate(records, method=method) if records else {}
    report["annotators"] = annotator_reliability(records, consensus) if records else {}
    report["consensus_method"] = method
    report["consensus_accuracy"] = label_accuracy_estimate(consensus, method)
    for name, entry in report["annotators"].items():
        report["warnings"] += [f"annotator {name}: {w}" for w in entry["warnings"]]
    return report
