"""The data card of an export: markdown with Hugging Face dataset-card YAML front matter.

`card_facts` gathers every figure from the loop's own records (the store, `loop.workflows.status.status`,
the validation report, the exported splits); `render_card` only formats them, so no number in
the card is typed in by hand and the card can be tested figure by figure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from loop.errors import DataError
from loop.labels.aggregation import DEFAULT_METHOD, label_accuracy_estimate
from loop.labels.agreement import agreement_records, agreement_report, full_report

MIN_ITEMS = 20  # agreement resting on fewer items than this is flagged (as `loop agreement` does)
COLUMN_DOCS = {
    "id": "item id (from the data file, or a content hash of the text)",
    "text": "the input text, as annotators saw it",
    "label": "the aggregated label (what the loop trains on)",
    "decided_by": ("single (one annotator's label, checked by nobody), unanimous (two or more labels, all alike), "
                   "majority, tie-break (as many votes for another label), model-weighted (Dawid-Skene's "
                   "posterior), adjudicated, or gold (the gold split: a trusted label, kept out of training)"),
    "confidence": "share of votes for the label (model-weighted: Dawid-Skene's posterior; 1.0 when adjudicated)",
    "n_labels": "number of annotators who labelled the item (an adjudicator's ruling not counted)",
    "guideline_version": "guideline version of the labels that decided the item",
    "round": "the round that selected the item (empty: labelled outside the rounds)",
    "annotations": "every raw label: annotator, label, guideline_version, created_at, adjudicator",
}


def _count(n: Any, one: str, many: str) -> str:
    """`n` and the words that agree with it: _count(1, "item was", "items were") is "1 item was"."""
    return f"{n} {one if n == 1 else many}"


# The tie-break each aggregation method applies (`labels.aggregation.aggregate`).
TIE_BREAKS = {"hierarchical-ds": "the model of annotator reliability (hierarchical Dawid-Skene) picked one",
              "dawid-skene": "Dawid-Skene's estimate of annotator reliability picked one",
              "majority-ds": "Dawid-Skene's estimate of annotator reliability picked one",
              "majority": "the earliest label was kept"}


def size_category(n: int) -> str:
    """The Hugging Face size_categories bucket for n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((name for bound, name in bounds if n < bound), "n>1B")


def _figures(report: Mapping | None) -> dict[str, Any] | None:
    """The agreement figures the card shows, from an agreement report."""
    if report is None:
        return None
    return {"n_items": report["n_items"], "n_annotators": report["n_annotators"],
            "pairable_items": report["percent_agreement"]["n_items"],
            "percent": report["percent_agreement"]["value"], "alpha": report["krippendorff_alpha"]["value"],
            "mean_kappa": report["cohen_kappa"]["mean"], "fleiss_kappa": report["fleiss_kappa"]["value"],
            "warnings": list(report["warnings"])}


def _agreement(annotations: list[Mapping], adjudication: Mapping, **where) -> dict[str, Any] | None:
    records = agreement_records(annotations, adjudication, **where)
    return _figures(agreement_report(records, min_items=MIN_ITEMS)) if records else None


def _guidelines(project: Mapping, label_versions: Mapping[str, int]) -> dict[str, Any]:
    from loop.labels.guidelines import get

    out: dict[str, Any] = {"version": project.get("guideline_version"), "hash": project.get("guideline_hash"),
                           "label_versions": dict(label_versions), "labels": None, "negatives": None,
                           "text": None, "current_hash": None, "reason": None}
    folder = project.get("guidelines_dir")
    if not folder:
        out["reason"] = "the project was set up without versioned guidelines (`loop init --guidelines DIR`)"
        return out
    try:
        g = get(folder, project.get("guideline_version"))
    except DataError as exc:
        out["reason"] = f"the guideline file cannot be read: {exc}"
        return out
    out.update(version=g.version, labels=dict(g.labels), negatives=list(g.negatives), text=g.body,
               current_hash=g.content_hash, file=Path(g.path).name)
    return out


def _limitations(f: dict[str, Any]) -> list[str]:
    """Known limitations, each derived from a figure in the facts."""
    out = []
    val, counts, checks = f["validation"], f["counts"], f["validation"]["checks"]
    contra = checks.get("contradictions") or {}
    if f["validation"]["allow_contradictions"] and contra.get("count"):
        out.append(f"Contradictions allowed: {contra['count']} input(s) appear with different labels "
                   f"({contra.get('rows', '?')} rows) after normalisation; this export was made with "
                   "--allow-contradictions, so a model trained on it sees conflicting targets.")
    single = counts["decided_by"].get("single", 0)
    if single:
        has = "has a single label: nobody checked it" if single == 1 else "have a single label: nobody checked them"
        out.append(f"{single} of {_count(counts['rows'], 'item', 'items')} {has}.")
    ties = counts["decided_by"].get("tie-break", 0)
    if ties:
        how = TIE_BREAKS.get((f.get("training_policy") or {}).get("aggregation"), TIE_BREAKS[DEFAULT_METHOD])
        out.append(f"{_count(ties, 'item', 'items')} had equally many votes for two or more labels; {how}.")
    versions = counts["guideline_versions"]
    if len(versions) > 1:
        mix = ", ".join(f"v{v}: {n}" for v, n in versions.items())
        out.append(f"Labels come from {len(versions)} guideline versions ({mix}); labels made under an older "
                   "version may follow superseded instructions.")
    g = f["guidelines"]
    if g["reason"]:
        out.append(f"No guideline text: {g['reason']}.")
    elif g["hash"] and g["current_hash"] and g["hash"] != g["current_hash"]:
        out.append(f"The guideline file {g.get('file')} changed since it was applied (hash {g['hash']} recorded, "
                   f"{g['current_hash']} now); the text below is the current file.")
    st = f["status"]
    if st.get("labels_with_suggestion"):
        out.append(f"{_count(st['labels_with_suggestion'], 'label was', 'labels were')} made with the model's answer "
                   "shown (assisted labelling): those agree with the model more than independent labels would.")
    if st.get("labels_edited_by_other"):
        out.append(_count(st["labels_edited_by_other"], "label was changed by someone other than its author",
                          "labels were changed by someone other than their author") + "; each counts as the editor's.")
    if st.get("labels_changed_after_close"):
        out.append(_count(st["labels_changed_after_close"], "label was made or changed after its round closed",
                          "labels were made or changed after their round closed")
                   + ": agreement at the close was measured without them.")
    if st.get("labels_outside"):
        out.append(f"{_count(st['labels_outside'], 'label is', 'labels are')} left out: made on an item its author "
                   "was not sent, and not accepted (`loop accept`).")
    if counts["outside_rounds"]:
        out.append(f"{_count(counts['outside_rounds'], 'item was', 'items were')} labelled outside the loop's "
                   "rounds (no round).")
    gold_scored = any(c.get("gold_accuracy") is not None for c in f["stopping"]["curve"])
    if not f["project"]["dev_set"] and not gold_scored:  # a gold set scores held-out accuracy too
        out.append("No labelled dev set: the learning curve shows only how much successive models agree, "
                   "not held-out accuracy.")
    if not f["stopping"]["recommend"]:
        out.append(f"The stop rule did not recommend stopping ({f['stopping']['reason']}): more labels may still "
                   "change the model.")
    ann = f["annotators"]["count"]
    if ann < 2:
        out.append(f"{_count(ann, 'annotator', 'annotators')}: agreement between annotators cannot be measured.")
    overall = f["agreement"]["overall"]
    if overall and overall["pairable_items"] < MIN_ITEMS:
        out.append(f"Agreement rests on {_count(overall['pairable_items'], 'item', 'items')} with two or more labels "
                   f"(fewer than {MIN_ITEMS}): treat the figures as rough.")
    contested = f["status"]["contested"]
    if contested:
        out.append(f"{_count(contested, 'contested item was', 'contested items were')} never adjudicated; "
                   f"{'its label is' if contested == 1 else 'their label is'} the vote.")
    for name, one, many, rest in (
            ("leakage", "input", "inputs", " shared with the test file given to the validator"),
            ("near_duplicates", "near-duplicate pair", "near-duplicate pairs", " (cosine >= {threshold})"),
            ("exact_duplicates", "group", "groups", " of exact duplicates (same input and label)"),
            ("invalid_labels", "row", "rows", " with a label outside the label set"),
            ("empty_inputs", "empty or near-empty input", "empty or near-empty inputs", ""),
            ("label_errors", "item", "items", " whose label a cross-validated classifier strongly contradicts "
                                              "(listed in validation.json for review)")):
        check = checks.get(name) or {}
        if check.get("status") == "found":
            text = rest.format(threshold=check.get("threshold", val["settings"].get("near_threshold")))
            extra = ""
            if name == "near_duplicates":
                differ = sum(1 for pr in check.get("pairs") or [] if not pr.get("same_label"))
                extra = f", {differ} of them with different labels" if differ else ""
            out.append(f"{_count(check['count'], one, many)}{text}{extra}.")
    balance = checks.get("class_balance") or {}
    if balance.get("minority"):
        out.append(f"Minority classes (under {val['settings'].get('minority_fraction')} of the largest): "
                   f"{', '.join(balance['minority'])}.")
    negatives = checks.get("missing_negatives") or {}
    if negatives.get("missing"):
        out.append(f"No example of the negative label(s) {', '.join(negatives['missing'])}: a model trained on "
                   "this data never learns to say none of the above.")
    out.append(f"The split keeps identical inputs and near-duplicates at cosine >= {f['settings']['near_threshold']} "
               "on one side; looser paraphrases can still sit on both sides.")
    return out


def card_facts(store, p: int, *, status: Mapping, validation: Mapping, splits: Mapping[str, Sequence[Mapping]],
               data_files: Mapping[str, str], n_clusters: int | None = None, allow_contradictions: bool = False,
               settings: Mapping | None = None, learning_curve: str | None = "learning_curve.png",
               validation_file: str = "validation.json", license: str = "other", language: str | None = None,
               pretty_name: str | None = None, annotations: Sequence[Mapping] | None = None) -> dict[str, Any]:
    """Everything the card shows, JSON-serialisable, gathered from the store (project, rounds,
    labels), `status` (loop.workflows.status.status), the validation report and the exported splits.
    `annotations`: the label records that count (`workflows.training.labels_that_count`); default
    every stored one."""
    project = store.project(p) or {}
    rows = [r for part in splits.values() for r in part]
    labels = list(project.get("labels") or status.get("labels") or [])
    labels += sorted({r["label"] for r in rows} - set(labels))
    overall = Counter(r["label"] for r in rows)
    source = Path(project["source"]).name if project.get("source") else None

    annotations = list(store.annotations(p).values()) if annotations is None else list(annotations)
    adjudication = store.adjudication(p)
    records = agreement_records(annotations, adjudication)
    report = full_report(records, min_items=MIN_ITEMS) if records else None
    rounds = []
    for r in store.rounds(p):
        at_close = (r.get("closing") or {}).get("agreement")
        rounds.append({"id": r["id"], "status": r.get("status"), "strategy": r.get("strategy"),
                       "requested_strategy": r.get("requested_strategy"), "size": r.get("size"),
                       "overlap": r.get("overlap"), "annotators": list(r.get("annotators") or []),
                       "labels_spent_before": r.get("labels_spent"), "model_version": r.get("model_version"),
                       "guideline_version": r.get("guideline_version"),
                       "agreement": _agreement(annotations, adjudication, items=store.round_assignments(p, r["id"])),
                       "agreement_at_close": dict(at_close) if at_close else None})
    label_versions = Counter(a.get("guideline_version") for a in records)
    by_version = [{"version": v, "agreement": _agreement(annotations, adjudication, guideline_version=v)}
                  for v in sorted(v for v in label_versions if v is not None)]
    row_versions = Counter(r["guideline_version"] for r in rows if r["guideline_version"] is not None)

    stop = status.get("stop") or {}
    checks = {}
    for name, check in (validation.get("checks") or {}).items():
        checks[name] = {k: check.get(k) for k in ("status", "severity", "count", "reason", "rows", "threshold",
                                                  "minority", "missing", "negatives", "pairs") if k in check}
    settings = {"near_threshold": (validation.get("settings") or {}).get("near_threshold"), **(settings or {})}
    facts: dict[str, Any] = {
        "project": {"id": p, "pretty_name": pretty_name or (f"{Path(source).stem} (loop project {p})" if source
                                                            else f"loop project {p}"),
                    "source": source, "text_field": project.get("text_field"), "labels": labels,
                    "dev_set": bool(project.get("dev"))},
        "license": license, "language": language, "settings": settings,
        "files": {"data_files": dict(data_files), "learning_curve": learning_curve, "validation": validation_file},
        "status": {"items": status.get("items"), "labels_spent": status.get("labels_spent"),
                   "items_labelled": status.get("items_labelled"), "pool": status.get("pool"),
                   "budget": status.get("budget"), "contested": status.get("contested", 0),
                   "awaiting_adjudication": status.get("awaiting_adjudication", 0),
                   "model_version": status.get("model_version"),
                   "labels_outside": len(status.get("labels_outside") or []),
                   "labels_edited_by_other": len(status.get("labels_edited_by_other") or []),
                   "labels_changed_after_close": len(status.get("labels_changed_after_close") or []),
                   "labels_with_suggestion": status.get("labels_with_suggestion", 0)},
        "training_policy": dict(status.get("training_policy") or {}),
        "training_labels": label_accuracy_estimate(  # gold rows are trusted, not trained on: left out
            {r["id"]: r for r in rows if r["decided_by"] != "gold"},
            (status.get("training_policy") or {}).get("aggregation") or DEFAULT_METHOD),
        "counts": {
            "rows": len(rows), "splits": {name: len(part) for name, part in splits.items()}, "clusters": n_clusters,
            "decided_by": dict(Counter(r["decided_by"] for r in rows).most_common()),
            "n_labels": {str(k): v for k, v in sorted(Counter(r["n_labels"] for r in rows).items())},
            "guideline_versions": {str(k): v for k, v in sorted(row_versions.items())},
            "outside_rounds": sum(1 for r in rows if r.get("round") is None),
        },
        "balance": {"labels": labels, "total": {lab: overall.get(lab, 0) for lab in labels},
                    "share": {lab: (overall.get(lab, 0) / len(rows) if rows else 0.0) for lab in labels},
                    "splits": {name: {lab: sum(1 for r in part if r["label"] == lab) for lab in labels}
                               for name, part in splits.items()}},
        "agreement": {"overall": _figures(report), "rounds": [{"round": r["id"], "agreement": r["agreement"],
                                                                "at_close": r["agreement_at_close"]} for r in rounds],
                      "guideline_versions": by_version, "min_items": MIN_ITEMS},
        "annotators": {"count": report["n_annotators"] if report else 0,
                       "reliability": {str(k): v for k, v in (report or {}).get("annotators", {}).items()},
                       "consensus_method": (report or {}).get("consensus_method"),
                       "adjudicators": dict(Counter(v.get("adjudicator") for v in adjudication.values()
                                                    if v.get("adjudicator"))),
                       "adjudicated": sum(1 for r in rows if r["decided_by"] == "adjudicated")},
        "selection": {"rounds": [{k: v for k, v in r.items() if not k.startswith("agreement")} for r in rounds],
                      "budget": status.get("budget"), "labels_spent": status.get("labels_spent")},
        "stopping": {"recommend": bool(stop.get("recommend")), "reason": (stop.get("kappa") or {}).get("reason"),
                     "dev_plateau": (stop.get("dev_plateau") or {}).get("reason"), "rule": stop.get("rule"),
                     "curve": [dict(c) for c in status.get("learning_curve") or []], "png": learning_curve},
        "validation": {"ok": validation.get("ok"), "blockers": list(validation.get("blockers") or []),
                       "settings": dict(validation.get("settings") or {}), "checks": checks,
                       "n_items": validation.get("n_items"), "allow_contradictions": bool(allow_contradictions)},
        "guidelines": _guidelines(project, {("none" if k is None else str(k)): v
                                            for k, v in sorted(label_versions.items(), key=lambda kv: str(kv[0]))}),
    }
    facts["limitations"] = _limitations(facts)
    return facts


# --------------------------------------------------------------------------------------------
# Rendering


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _interval(bounds: Sequence[float] | None) -> str:
    return "-" if not bounds else f"{bounds[0]:.0%}-{bounds[1]:.0%}"


def _training_labels_line(t: Mapping[str, Any]) -> str:
    """The Summary's line on how many training labels are expected to be right."""
    head = f"- Aggregation: `{t['method']}`"
    if t["value"] is None:
        return f"{head}; no estimate of the training labels' accuracy ({t['reason']})"
    return (f"{head}; estimated share of training labels that are right: {t['value']:.1%} (about "
            f"{t['expected_wrong']:.0f} of {t['n_items']} expected wrong; the aggregation's posterior, which "
            "assumes annotators err independently)")


def _cell(x: Any) -> str:
    return _num(x).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _demote(markdown: str, levels: int = 2) -> str:
    """Push the guideline's headings down so they nest under the card's own section."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def front_matter(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The YAML metadata block, in the shape of the Hugging Face dataset-card spec."""
    meta: dict[str, Any] = {"pretty_name": facts["project"]["pretty_name"]}
    if facts.get("language"):
        meta["language"] = [facts["language"]]
    meta |= {"license": facts.get("license") or "other", "task_categories": ["text-classification"],
             "task_ids": ["multi-class-classification"], "size_categories": [size_category(facts["counts"]["rows"])],
             "tags": ["loop", "active-learning"],
             "configs": [{"config_name": "default", "data_files": [
                 {"split": name, "path": path} for name, path in facts["files"]["data_files"].items()]}]}
    return meta


def _agreement_row(name: Any, a: Mapping | None, extra: Sequence[Any] = ()) -> list[Any]:
    if a is None:
        return [name, 0, "n/a", "n/a", "n/a", *extra]
    return [name, a["pairable_items"], _pct(a["percent"]), _num(a["alpha"]), _num(a["mean_kappa"]), *extra]


def _ids(ids: Sequence[str], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(f"`{i}`" for i in ids[:shown]) + more


def release_lines(release: Mapping[str, Any], shown: int = 10) -> list[str]:
    """The card's section on a release (`curation.release.card_section`): "First release", or
    "Changes since vN" with the items added, removed and relabelled, split moves, the class balance
    shift and the change in agreement and audit; an accepted systemic audit stands out."""
    diff = release.get("diff")
    out = [f"## {'Changes since ' + release['parent'] if diff else 'First release'}", ""]
    head = f"Release {release['version']}" + (f", created {release['created_at']}" if release.get("created_at") else "")
    out += [head + (f". Note: {release['note']}" if release.get("note") else "") + ".", ""]
    audit = release.get("audit")
    if release.get("accepted_audit"):
        out += [(f"> **Released despite a systemic audit verdict** (audit #{audit.get('id')} by {audit.get('auditor')}"
                 f", label accuracy {_pct(audit.get('accuracy'))}, 95% interval {_interval(audit.get('interval'))}). "
                 f"Accepted because: {release['accepted_audit']}"), ""]
    elif audit and audit.get("verdict"):
        out += [f"Latest audit: #{audit['id']} by {audit.get('auditor')}, verdict {audit['verdict']}, label accuracy "
                f"{_pct(audit.get('accuracy'))} (95% interval {_interval(audit.get('interval'))}).", ""]
    if not diff:
        return out

    def counted(what: str, ids: Sequence[str]) -> str:
        return f"- {what}: {len(ids)}" + (f" ({_ids(ids, shown)})" if ids else "")

    out += [counted("Items added", diff["added"]), counted("Items removed", diff["removed"]),
            f"- Labels changed: {len(diff['label_changes'])}",
            counted("Split moves", [m["id"] for m in diff["split_moves"]])]
    if diff["text_changes"]:
        out.append(counted("Texts changed under the same id", diff["text_changes"]))
    ag = diff["agreement"]
    if ag["before"] or ag["after"]:
        out.append(f"- Krippendorff's alpha: {_num((ag['before'] or {}).get('alpha'))} -> "
                   f"{_num((ag['after'] or {}).get('alpha'))}; percent agreement: "
                   f"{_pct((ag['before'] or {}).get('percent'))} -> {_pct((ag['after'] or {}).get('percent'))}")
    au = diff["audit"]
    if au["changed"]:
        def said(a):
            return "none" if not a else f"#{a.get('id')} ({a.get('verdict') or a.get('status')})"
        out.append(f"- Latest audit: {said(au['before'])} -> {said(au['after'])}")
    out.append("")
    if diff["label_changes"]:
        out += [_table(["item", "old label", "new label", "guideline (old -> new)", "decided by (old -> new)"],
                       [[c["id"], c["old"], c["new"],
                         f"{_num(c['old_guideline_version'])} -> {_num(c['new_guideline_version'])}",
                         f"{c['old_decided_by']} -> {c['new_decided_by']}"]
                        for c in diff["label_changes"][:shown]]), ""]
        if len(diff["label_changes"]) > shown:
            out += [f"... and {len(diff['label_changes']) - shown} more (`loop releases diff "
                    f"{diff['from']} {diff['to']}`).", ""]
    shifted = {lab: b for lab, b in diff["balance"].items() if b["change"]}
    if shifted:
        out += ["Class balance shift:", "",
                _table(["label", diff["from"], diff["to"], "change", "share before", "share after"],
                       [[lab, b["before"], b["after"], f"{b['change']:+d}", _pct(b["share_before"]),
                         _pct(b["share_after"])] for lab, b in shifted.items()]), ""]
    return out


def coverage_lines(c: Mapping[str, Any], shown: int = 5) -> list[str]:
    """The card's Coverage section (`workflows.coverage.card_section`: the last `loop coverage` run's
    summary): clusters, the labelled share, negatives, and the shift of the labelled set against
    production (or the pool)."""
    out = ["## Coverage", ""]
    if c.get("status") == "skipped":
        return out + [f"Not measured: {c['reason']}.", ""]
    where = f"production (`{Path(c['production_source']).name}`)" if c.get("production_source") else "the pool"
    prod = f", {c['production']} production texts" if c["production"] else ""
    out += [f"Measured by `loop coverage` at {c.get('measured_at') or '?'}, on {c['labelled']} labelled items.", ""]
    out += [(f"The pool ({c['pool']} items{prod}) in {c['k']} clusters of its embeddings ({c['k_rule']}); "
             f"{c['clusters_labelled']} of them hold labels, and "
             f"{_pct(c['traffic_in_unlabelled_clusters'])} of {where} falls in clusters with none. "
             "`loop coverage` has the full report and the map."), ""]
    under = c.get("under_covered_clusters") or []
    if under:
        out += [f"Under-labelled clusters ({len(under)}; share of {where.split(' (')[0]} vs share of labels, biggest "
                "gap first):", "",
                _table(["cluster", "top terms", "traffic share", "labelled share", "labels to match"],
                       [[u["cluster"], ", ".join(u.get("terms") or []), _pct(u["traffic_share"]),
                         _pct(u["labelled_share"]), u["labels_to_match"]] for u in under[:shown]]), ""]
    else:
        out += ["No cluster is under-labelled against its traffic.", ""]
    if c.get("no_negative") is None:
        out += ["Negatives: the label set names none, so no cluster was checked for a negative example.", ""]
    else:
        has = _count(c["no_negative"], "cluster has", "clusters have")
        out += [f"Negatives ({', '.join(c.get('negatives') or [])}): {has} labels but no negative example.", ""]
    sh = c["shift"]
    if sh["p_value"] is None:
        out += [f"Shift of the labelled set against {where}: not tested ({sh.get('reason') or 'too few rows'}).", ""]
    else:
        out += [(f"Shift of the labelled set against {where}: {'**shifted**' if sh['shift'] else 'no shift detected'} "
                 f"(MMD permutation test, p = {sh['p_value']:.3g}, alpha {sh.get('alpha')}); cluster shares differ by "
                 f"{_pct(sh['total_variation'])} (total variation)."), ""]
    return out


def render_card(facts: Mapping[str, Any]) -> str:
    """The card as markdown: YAML front matter, then Summary, Label balance, Agreement, Annotators,
    Selection, Stopping, Validation, Guidelines and Known limitations."""
    proj, counts, bal, val = facts["project"], facts["counts"], facts["balance"], facts["validation"]
    st, settings = facts["status"], facts["settings"]
    contra = val["checks"].get("contradictions") or {}
    out = ["---", yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True).rstrip(), "---", "",
           f"# {proj['pretty_name']}", ""]
    if val["allow_contradictions"] and contra.get("count"):
        out += [(f"> **Warning: contradictions allowed.** {contra['count']} input(s) appear with different labels "
                f"after normalisation ({contra.get('rows', '?')} rows). This export was made with "
                "`--allow-contradictions`; see Validation and Known limitations."), ""]

    splits = ", ".join(f"{n} {name}" for name, n in counts["splits"].items())
    decided = ", ".join(f"{how} {n}" for how, n in counts["decided_by"].items())
    out += ["## Summary", "",
            f"Text classification data labelled with loop (active learning on Label Studio), project {proj['id']}"
            + (f", from `{proj['source']}`" if proj["source"] else "") + ".", "",
            (f"- {_count(counts['rows'], 'labelled item', 'labelled items')} ({splits}); "
             f"{_count(len(proj['labels']), 'label', 'labels')}: {', '.join(proj['labels'])}"),
            (f"- {_count(st['labels_spent'], 'label', 'labels')} spent on {st['items_labelled']} of "
             f"{_count(st['items'], 'imported item', 'imported items')} ({st['pool']} still in the pool); "
             f"{_count(facts['annotators']['count'], 'annotator', 'annotators')}; "
             f"{_count(len(facts['selection']['rounds']), 'round', 'rounds')}"),
            _training_labels_line(facts["training_labels"]),
            f"- How each label was decided: {decided}"
            + (f" (labels: {facts['training_policy']['description']})"
               if facts.get("training_policy", {}).get("description") else ""),
            (f"- Split by duplicate cluster ({_num(counts['clusters'])} clusters: identical normalised inputs and "
            f"near-duplicates at cosine >= {settings['near_threshold']}), test size {settings.get('test_size')}, "
            f"seed {settings.get('seed')}"),
            f"- Validation: {'passed' if val['ok'] else 'issues found'}"
            + (f"; blockers: {', '.join(val['blockers'])}" if val["blockers"] else "")
            + (" (exported with --allow-contradictions)" if val["allow_contradictions"] else ""), "",
            "Columns:", "", _table(["column", "meaning"], [
                [c, COLUMN_DOCS[c]] for c in COLUMN_DOCS if c != "annotations" or settings.get("with_annotations")]),
            ""]
    if facts.get("release"):  # `loop release` adds what changed since the parent release
        out += release_lines(facts["release"])

    names = list(counts["splits"])
    out += ["## Label balance", "", _table(["label", *names, "total", "share"], [
        [lab, *(bal["splits"][n][lab] for n in names), bal["total"][lab], _pct(bal["share"][lab])]
        for lab in bal["labels"]]), ""]

    agr = facts["agreement"]
    head = ["", "items with 2+ labels", "percent agreement", "Krippendorff's alpha", "mean Cohen's kappa"]
    out += ["## Agreement", "",
            "Adjudicators' rulings are left out: they decide contested items, they are not independent labels.", "",
            _table(head, [_agreement_row("all labels", agr["overall"])]), "", "Per round:", "",
            _table(["round", *head[1:], "alpha at round close"],
                   [_agreement_row(r["round"], r["agreement"], [_num((r["at_close"] or {}).get("alpha"))])
                    for r in agr["rounds"]]), "", "Per guideline version:", "",
            _table(["guideline version", *head[1:]],
                   [_agreement_row(f"v{g['version']}", g["agreement"]) for g in agr["guideline_versions"]]), ""]
    if agr["overall"] and agr["overall"]["warnings"]:
        out += [f"- {w}" for w in agr["overall"]["warnings"]] + [""]

    ann = facts["annotators"]
    out += ["## Annotators", "", (f"{_count(ann['count'], 'annotator', 'annotators')}. Agreement with the consensus "
            f"({ann['consensus_method']}) flatters everyone a little, since their own label is part of it. "
            "Estimated accuracy comes from a hierarchical Dawid-Skene fit of all the labels, with a 95% interval "
            "and the number of labels it rests on (those on items someone else also labelled)."), "",
            _table(["annotator", "items", "agreement with consensus", "estimated accuracy", "95% interval",
                    "labels it rests on", "flags"],
                   [[a, v["n"], _pct(v["agreement_with_consensus"]), _pct(v.get("estimated_accuracy")),
                     _interval(v.get("accuracy_interval")), v.get("n_evidence", "-"), ", ".join(v.get("flags") or [])]
                    for a, v in ann["reliability"].items()]), ""]
    out += [f"- {a}: {w}" for a, v in ann["reliability"].items() for w in v.get("warnings") or []]
    if any(v.get("warnings") for v in ann["reliability"].values()):
        out += [""]
    if ann["adjudicators"]:
        who = ", ".join(f"{a} ({n} assigned)" for a, n in ann["adjudicators"].items())
        out += [f"Adjudicators: {who}; {_count(ann['adjudicated'], 'item', 'items')} decided by adjudication.", ""]

    sel = facts["selection"]
    out += ["## Selection", "", _table(
        ["round", "status", "strategy", "size", "overlap", "annotators", "labels before", "model", "guideline"],
        [[r["id"], r["status"], r["strategy"], r["size"], r["overlap"], ", ".join(r["annotators"]),
          r["labels_spent_before"], r["model_version"], "n/a" if r["guideline_version"] is None
          else f"v{r['guideline_version']}"] for r in sel["rounds"]]), "",
        f"Labels spent: {sel['labels_spent']}" + (f" of a budget of {sel['budget']}" if sel["budget"] else
                                                   " (no budget set)") + ".", ""]

    stop = facts["stopping"]
    out += ["## Stopping", "",
            f"Stop advice ({'stop' if stop['recommend'] else 'keep labelling'}): {stop['reason']}"
            + (f"; dev set: {stop['dev_plateau']}" if stop["dev_plateau"] else ""), ""]
    if stop["rule"]:
        rule = stop["rule"]
        per_label = (f"mean (1 - kappa) per new label over the last {rule['window']} rounds <= "
                     f"{rule['disagreement_per_label']:g}" if rule.get("disagreement_per_label") is not None
                     else f"mean kappa over the last {rule['window']} rounds >= {rule['threshold']}")
        out += [f"Rule: stabilizing predictions, {per_label}, after at least {rule['min_rounds']} rounds.", ""]
    if stop["png"]:
        out += [f"![learning curve]({stop['png']})", ""]
    if stop["curve"]:
        out += [_table(["round", "labels", "kappa vs previous model", "dev accuracy", "dev macro-F1",
                        "gold accuracy", "gold macro-F1"],
                       [[c.get("round"), c.get("n_labels"), _num(c.get("kappa")), _num(c.get("dev_accuracy")),
                         _num(c.get("dev_macro_f1")), _num(c.get("gold_accuracy")), _num(c.get("gold_macro_f1"))]
                        for c in stop["curve"]]), ""]

    allowed = ("**Contradictions were allowed** (`--allow-contradictions`)" if val["allow_contradictions"]
               else "Contradictions were not allowed: the export refuses while any exist")
    out += ["## Validation", "",
            (f"{allowed}. Normalisation: {val['settings'].get('normalisation')}; near-duplicate threshold: cosine >= "
            f"{val['settings'].get('near_threshold')}. Full report: `{facts['files']['validation']}`."), "",
            _table(["check", "status", "severity", "count", "note"],
                   [[name, c.get("status"), c.get("severity"), c.get("count"), c.get("reason") or ""]
                    for name, c in val["checks"].items()]), ""]

    if facts.get("coverage"):  # `loop export` adds it (`workflows.coverage.card_section`)
        out += coverage_lines(facts["coverage"])

    g = facts["guidelines"]
    out += ["## Guidelines", ""]
    used = ", ".join(f"{'unversioned' if v == 'none' else 'v' + v}: {n}" for v, n in g["label_versions"].items())
    if g["text"] is None:
        out += [f"Version in force: {_num(g['version'])}. {g['reason']}.", ""]
    else:
        out += [f"Version in force: v{g['version']} (hash {g['hash']}); labels by version: {used}.", ""]
        if g["labels"]:
            out += [_table(["label", "definition"], [[lab, d] for lab, d in g["labels"].items()]), ""]
        if g["negatives"]:
            out += [f"Negative labels: {', '.join(g['negatives'])}.", ""]
        out += [f"Full text of v{g['version']}:", "", _demote(g["text"]), ""]

    out += ["## Known limitations", ""] + [f"- {line}" for line in facts["limitations"]] + [""]
    return "\n".join(out)
