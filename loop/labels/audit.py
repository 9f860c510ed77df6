"""Random audits of finished labels: draw the sample, and say what it shows about the whole set.

A second reviewer (the auditor) labels a simple random sample of items whose label is final,
blind to that label; the share the auditor agrees with estimates the accuracy of every final label
of the population sampled, with an exact (Clopper-Pearson) 95% interval. No I/O here:
`workflows.audit` reads the store and Label Studio.

The verdict follows the usual audit rule of thumb: more than SYSTEMIC_RATE of the sample wrong
means the problem is systemic (a guideline gap, a label people misread, an annotator who
misunderstood), not individual slips; the report names the label and the annotator carrying most
of the errors, so the fix can be aimed. An error is an item where the auditor's label differs from
the final one; the auditor can be wrong too, which is why each disagreement goes to adjudication
rather than overwriting the label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SYSTEMIC_RATE = 0.06   # more than this share of the sample wrong: the problem is systemic
INTERVAL = 0.95
STRATIFY = ("label",)  # what a sample can be stratified by


def draw_sample(final: Mapping[str, str], size: int, seed: int, *, stratify: str | None = None) -> list[str]:
    """A simple random sample of `size` items of `final` (item -> final label), reproducible from
    `seed`. stratify="label": proportional allocation over the labels (largest remainders), so each
    label gets its share of the sample and a rare label is not missed by chance; within a label the
    draw is simple random. The whole population when it is smaller than `size`."""
    if size < 1:
        raise ValueError(f"an audit sample needs at least 1 item, got {size}")
    if stratify not in (None, *STRATIFY):
        raise ValueError(f"stratify by one of {', '.join(STRATIFY)}, got {stratify!r}")
    items = sorted(final)
    rng = np.random.default_rng(seed)
    if len(items) <= size:
        return items
    if stratify is None:
        return sorted(items[i] for i in rng.choice(len(items), size=size, replace=False))
    strata: dict[str, list[str]] = {}
    for item in items:
        strata.setdefault(final[item], []).append(item)
    names = sorted(strata)
    quota = np.array([size * len(strata[s]) / len(items) for s in names])
    take = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - take), kind="stable")[: size - int(take.sum())]:
        take[k] += 1
    out = []
    for name, n in zip(names, take):
        group = strata[name]
        out += [group[i] for i in rng.choice(len(group), size=min(int(n), len(group)), replace=False)]
    return sorted(out)


def accuracy_interval(correct: int, n: int, level: float = INTERVAL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion: it holds the true rate at least `level` of
    the time, whatever the rate; statsmodels' `proportion_confint(method="beta")`."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return 0.0, 1.0
    low, high = proportion_confint(correct, n, alpha=1 - level, method="beta")
    return float(np.nan_to_num(low, nan=0.0)), float(np.nan_to_num(high, nan=1.0))


def _breakdown(rows: Sequence[Mapping[str, Any]], key) -> list[dict[str, Any]]:
    """Errors per group (a row can belong to several groups: an item has several annotators), most first."""
    seen: Counter = Counter()
    wrong: Counter = Counter()
    for row in rows:
        for group in key(row):
            seen[group] += 1
            wrong[group] += not row["agrees"]
    out = [{"name": g, "sampled": seen[g], "errors": wrong[g], "error_rate": wrong[g] / seen[g]} for g in seen]
    return sorted(out, key=lambda r: (-r["errors"], -r["error_rate"], str(r["name"])))


def audit_report(sample: Mapping[str, Mapping[str, Any]], answers: Mapping[str, str], *,
                 population: int, threshold: float = SYSTEMIC_RATE) -> dict[str, Any]:
    """What an audit shows.

    `sample`: item -> what the label was when sampled ({"label", "annotators": {name: label},
    "guideline_version", ...}); `answers`: item -> the auditor's label (items not answered yet are
    left out, and said). Accuracy = the share of answered items where the auditor gave the final
    label, with its exact 95% interval, as an estimate for the `population` of final labels the
    sample was drawn from. Errors by final label, by annotator (an annotator "carries" an error
    when they gave the final label the auditor rejected), and by guideline version. Verdict:
    "systemic" when the error rate is above `threshold`, else "individual"; None with nothing
    answered.
    """
    rows = []
    for item, frozen in sorted(sample.items()):
        if item not in answers:
            continue
        agrees = answers[item] == frozen["label"]
        backers = sorted(a for a, lab in (frozen.get("annotators") or {}).items() if lab == frozen["label"])
        rows.append({"item_id": item, "label": frozen["label"], "auditor_label": answers[item], "agrees": agrees,
                     "decided_by": frozen.get("decided_by"), "annotators": backers,
                     "guideline_version": frozen.get("guideline_version")})
    n, errors = len(rows), sum(not r["agrees"] for r in rows)
    out: dict[str, Any] = {
        "population": population, "n_sampled": len(sample), "n_answered": n, "n_unanswered": len(sample) - n,
        "n_errors": errors, "error_rate": errors / n if n else None, "accuracy": (n - errors) / n if n else None,
        "interval": list(accuracy_interval(n - errors, n)) if n else None, "threshold": threshold,
        "by_label": _breakdown(rows, lambda r: [r["label"]]),
        "by_annotator": _breakdown(rows, lambda r: r["annotators"]),
        "by_guideline_version": _breakdown(rows, lambda r: [r["guideline_version"]]),
        "disagreements": [r for r in rows if not r["agrees"]], "verdict": None, "carried_by": None, "summary": None,
    }
    if not n:
        out["summary"] = "nothing answered yet: the auditor has labelled none of the sample"
        return out
    rate = errors / n
    low, high = out["interval"]
    estimate = f"{out['accuracy']:.1%} of labels right (95% interval {low:.1%}-{high:.1%}, {n} audited)"
    if rate <= threshold:
        out["verdict"] = "individual"
        out["summary"] = (f"individual errors: {errors} of {n} audited labels wrong ({rate:.1%}, at most "
                          f"{threshold:.0%}); {estimate}")
        return out
    out["verdict"] = "systemic"
    label, annotator = out["by_label"][0], (out["by_annotator"] or [None])[0]
    out["carried_by"] = {"label": label["name"], "label_errors": label["errors"],
                         "annotator": annotator and annotator["name"],
                         "annotator_errors": annotator and annotator["errors"]}
    who = (f" and by annotator {annotator['name']} ({annotator['errors']} of {errors})"
           if annotator and annotator["errors"] else "")
    out["summary"] = (f"systemic: {errors} of {n} audited labels wrong ({rate:.1%}, more than {threshold:.0%}); "
                      f"most errors are on label {label['name']!r} ({label['errors']} of {errors}, "
                      f"{label['error_rate']:.0%} of its audited items){who}; {estimate}")
    return out


def disputes(audits: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """item -> [(auditor, their label)] for every audited item whose auditor disagreed with the final
    label, as of each audit's last report (audit records as the store keeps them): they join the
    contested queue until an adjudicator rules (`labels.adjudication.contested`)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for audit in audits:
        for row in (audit.get("report") or {}).get("disagreements", []):
            out.setdefault(row["item_id"], []).append((audit["auditor"], row["auditor_label"]))
    return out


def brief(audit: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An audit record in brief, for `loop status`."""
    if audit is None:
        return None
    rep = audit.get("report") or {}
    return {"audit": audit["id"], "auditor": audit["auditor"], "created_at": audit["created_at"],
            "status": audit["status"], "sample": len(audit.get("sample") or []), "population": audit["population"],
            "n_answered": rep.get("n_answered", 0), "verdict": rep.get("verdict"), "accuracy": rep.get("accuracy"),
            "interval": rep.get("interval"), "summary": rep.get("summary") or "no report yet (`loop audit report`)"}
