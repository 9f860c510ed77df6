"""`loop status`: where a project stands (rounds and who owes what, budget, balance, the learning
curve and the stop advice), and one round in detail: who got which item."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from loop.core.assign import per_annotator, progress
from loop.core.stopping import Plateau, StabilizingPredictions
from loop.errors import ConfigError
from loop.labels import audit
from loop.labels.adjudication import contested
from loop.labels.attribution import changed_after_close
from loop.services.context import Context
from loop.services.store import Store
from loop.services.sync import sync_annotations
from loop.workflows import gold as gold_flow
from loop.workflows import training


def round_detail(store: Store, p: int, n: int, annotations: dict[str, dict] | None = None) -> dict[str, Any]:
    """Round n's record (without its per-item scores) and `assignments`: annotator -> the new item
    ids they were given in assignment order, the Label Studio task ids of those items in their
    queue (`queue`, its project id; None before the round is published) and in the main project
    (`main_tasks`), the labelled items they were sent for another label (`relabels`: items and
    tasks), how many they have done of both and the items they still owe, and the gold items mixed
    in as controls (`controls`: items and tasks; not counted in done or owed)."""
    record = store.round(p, n)
    if record is None:
        known = ", ".join(map(str, store.round_numbers(p))) or "none yet"
        raise ConfigError(f"round {n} does not exist (rounds: {known}); `loop status` lists them")
    assignments = store.round_assignments(p, n)
    relabels = store.round_relabels(p, n)
    items = store.items_by_id(p, assignments)
    counted, _ = training.labels_that_count(store, p, annotations)
    done = progress({**assignments, **relabels}, counted)
    again = per_annotator(relabels)
    checks = per_annotator(store.round_controls(p, n))
    record.pop("scores", None)
    record.pop("control_scores", None)
    queues = store.queues(p)
    record["assignments"] = {}
    for a in sorted(set(per_annotator(assignments)) | set(again)):
        mine, in_queue = per_annotator(assignments).get(a, []), store.queue_tasks(p, a)
        record["assignments"][a] = {
            "items": mine, "queue": (queues.get(a) or {}).get("ls_project"), "tasks": [in_queue.get(i) for i in mine],
            "main_tasks": [items[i]["task_id"] for i in mine],
            "relabels": {"items": again.get(a, []), "tasks": [in_queue.get(i) for i in again.get(a, [])]},
            "controls": {"items": checks.get(a, []), "tasks": [in_queue.get(i) for i in checks.get(a, [])]},
            "done": done[a]["done"], "owed": done[a]["owed"]}
    return record


def status(ctx: Context, p: int, *, sync: bool = True) -> dict[str, Any]:
    store = ctx.store
    synced = sync_annotations(store, ctx.ls, p) if sync else None
    project = store.project(p)
    annotations = store.annotations(p)
    counted, outside = training.labels_that_count(store, p, annotations)
    labelled = [a for a in counted if a["label"] is not None]
    labelled_items = {a["item_id"] for a in labelled}
    policy = training.policy(store, p)
    adjudication = store.adjudication(p)
    trained = training.without_gold(store, p, counted)  # what models learn from: gold is kept apart
    decisions = policy.decisions(trained, adjudication)
    labels = {item: d["label"] for item, d in decisions.items()}
    quality = policy.label_quality(trained, adjudication, decisions)
    gold = store.gold(p)
    _add_gold_accuracy(quality["annotators"], gold_flow.annotator_accuracy(store, p, annotations))
    versions = Counter(a.get("guideline_version") for a in labelled)
    warnings = []
    if len(versions) > 1:
        mix = ", ".join(f"v{v}: {n}" for v, n in sorted(versions.items(), key=lambda kv: str(kv[0])))
        if policy.guideline_version is None:
            warnings.append(f"the labels mix guideline versions ({mix}); train on one with "
                            "`loop next-round --guideline-version V`, or re-label the old ones")
        else:
            warnings.append(f"the labels mix guideline versions ({mix}); models train on "
                            f"v{policy.guideline_version} only (`--guideline-version all` for every label)")
    if outside:
        warnings.append(f"{len(outside)} labels are left out of training: their author was not sent the item "
                        "(`loop status --json` lists them under labels_outside; `loop accept ID` takes one in)")
    edited = [{k: a.get(k) for k in ("id", "item_id", "annotator", "created_by", "label")}
              for a in annotations.values() if a.get("edited_by_other")]
    if edited:
        warnings.append(f"{len(edited)} labels were changed by someone other than their author; each counts as "
                        "the editor's (labels_edited_by_other)")
    warnings += [f"annotator {name}: {w}" for name, a in quality["annotators"].items() for w in a["warnings"]]
    queue = contested(trained, adjudication, audit.disputes(store.audits(p)))  # a gold item's label is settled
    items = store.items(p)
    assigned = store.assigned(p)
    closed_at = {r["id"]: r["closed_at"] for r in store.rounds(p) if r.get("closed_at")}
    late = changed_after_close(counted, assigned, closed_at)
    if late:
        warnings.append(f"{len(late)} labels were made or changed after their round closed, so that round's "
                        "agreement was measured without them (labels_changed_after_close)")
    rounds = []
    for record in store.rounds(p):
        done = progress(store.round_assignments(p, record["id"]), counted)
        rounds.append({k: record.get(k) for k in ("id", "status", "strategy", "size", "overlap", "model_version",
                                                  "guideline_version", "created_at")}
                      | {"progress": {a: {"done": v["done"], "assigned": v["assigned"]} for a, v in done.items()}})
    balance = Counter(labels.values())
    curve = [{"round": r["id"], **(r.get("metrics") or {})} for r in store.rounds(p) if r.get("metrics")]
    kappa_rule, plateau_rule = StabilizingPredictions(), Plateau()
    # Per label, as `loop simulate` measured it (rounds differ in size); rounds recorded before
    # labels_spent was kept fall back to the per-round rule.
    spent = [c.get("labels_spent") for c in curve]
    stop = kappa_rule([c.get("kappa") for c in curve], spent if all(s is not None for s in spent) and spent else None)
    dev_stop = plateau_rule([c.get("dev_accuracy") for c in curve]) if project.get("dev") else None
    return {
        "project_id": p, "labels": project["labels"], "items": len(items),
        "labels_spent": len(labelled), "items_labelled": len(labelled_items), "training_items": len(labels),
        "budget": project.get("budget"),
        "pool": sum(1 for i in items if i not in labelled_items and i not in assigned and i not in gold),
        "gold": {k: v for k, v in gold_flow.summary(store, p).items() if k != "items"},
        "class_balance": {lab: balance.get(lab, 0) for lab in project["labels"]},
        "training_policy": {**policy.as_dict(), "description": policy.describe()},
        "training_labels": quality["training_labels"], "annotators": quality["annotators"],
        "model_version": store.current_model_version(p), "guideline_version": project.get("guideline_version"),
        "rounds": rounds, "synced": synced, "learning_curve": curve, "warnings": warnings,
        "guideline_versions": {str(k): v for k, v in versions.items()},
        "contested": len(queue), "awaiting_adjudication": sum(1 for q in queue if q["adjudicator"]),
        "disputed_by_audit": sum(1 for q in queue if q["audit"]), "latest_audit": audit.brief(store.latest_audit(p)),
        "queues": {name: q["ls_project"] for name, q in store.queues(p).items()},
        "labels_outside": outside, "labels_edited_by_other": edited, "labels_changed_after_close": late,
        "labels_with_suggestion": sum(1 for a in labelled if a.get("suggested")),
        "coverage": coverage_summary(project),
        "stop": {"recommend": stop.stop or bool(dev_stop and dev_stop.stop), "kappa": vars(stop),
                 "dev_plateau": vars(dev_stop) if dev_stop else None,
                 "rule": {"threshold": kappa_rule.threshold, "window": kappa_rule.window,
                          "min_rounds": kappa_rule.min_rounds,
                          "disagreement_per_label": kappa_rule.disagreement_per_label}},
    }


def coverage_summary(project: dict[str, Any]) -> dict[str, Any]:
    """The summary the last `loop coverage` kept on the project, with its one line (`line`); without one,
    {"line": how to get it}. Nothing is computed here: status stays a read."""
    from loop.core.coverage import summary_line

    kept = project.get("coverage")
    if not kept:
        return {"line": "not measured yet (`loop coverage --production FILE`)"}
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(kept["at"])) if kept.get("at") else "?"
    return {**kept, "line": f"{summary_line(kept)} (`loop coverage`, {when})"}


def _add_gold_accuracy(annotators: dict[str, dict], measured: dict[str, dict]) -> None:
    """Each annotator's accuracy measured on control items next to the estimated one ("gold_accuracy",
    "gold_n", "gold_correct", "gold_interval"; None and 0 without answers). Someone with control
    answers and no counted label gets an entry of their own."""
    for name in sorted(set(annotators) | set(measured)):
        entry = annotators.setdefault(name, {"n": 0, "n_labels": 0, "agreement_with_consensus": None,
                                             "estimated_accuracy": None, "accuracy_interval": None,
                                             "n_evidence": 0, "flags": [], "warnings": []})
        entry.update(measured.get(name) or {"gold_n": 0, "gold_correct": 0, "gold_accuracy": None,
                                            "gold_interval": None})


def round_status(ctx: Context, p: int, n: int, *, sync: bool = True) -> dict[str, Any]:
    """`loop status --round N`: that round in detail, after a sync."""
    synced = sync_annotations(ctx.store, ctx.ls, p) if sync else None
    return {"project_id": p, **round_detail(ctx.store, p, n), "synced": synced}


def plot_curve(status: dict[str, Any], path: str) -> None:
    """The learning curve as a PNG: dev and gold accuracy and macro-F1 (when there are such sets) and the
    kappa series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = status["learning_curve"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = [c["n_labels"] for c in curve]
    dev = any(c.get("dev_accuracy") is not None for c in curve)
    gold = any(c.get("gold_accuracy") is not None for c in curve)
    if dev:
        left.plot(x, [c.get("dev_accuracy") for c in curve], marker="o", label="dev accuracy")
        left.plot(x, [c.get("dev_macro_f1") for c in curve], marker="s", label="dev macro-F1")
    if gold:
        left.plot(x, [c.get("gold_accuracy") for c in curve], marker="^", label="gold accuracy")
        left.plot(x, [c.get("gold_macro_f1") for c in curve], marker="v", label="gold macro-F1")
    if dev or gold:
        left.legend()
    else:
        left.text(0.5, 0.5, "no dev set\n(loop init --dev dev.jsonl)", ha="center", va="center")
    left.set_xlabel("labelled items")
    left.set_title("held-out score")
    ks = [(c["n_labels"], c["kappa"]) for c in curve if c.get("kappa") is not None]
    if ks:
        right.plot([k[0] for k in ks], [k[1] for k in ks], marker="o")
    else:  # kappa compares two rounds' models: nothing to draw before the second
        right.text(0.5, 0.5, "kappa needs two rounds with a model\n(drawn after round 2)", ha="center", va="center")
        right.set_xticks([])
        right.set_yticks([])
    right.axhline(status["stop"]["rule"]["threshold"], color="grey", linestyle="--", linewidth=0.8)
    right.set_xlabel("labelled items")
    right.set_title("kappa vs previous model on the stop set")
    fig.suptitle(f"project {status['project_id']}: {status['stop']['kappa']['reason']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
