"""A labelling round: sync, check the previous round, retrain, select, assign, publish, record.

`next_round` is crash-safe: the round and its assignments are written to Redis in one transaction
as "planned" before Label Studio is touched; every Label Studio step is idempotent; a re-run
finds the planned round and finishes it instead of choosing new items.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Sequence

import numpy as np

from loop.core import model as model_lib
from loop.labels.adjudication import contested, final_labels
from loop.labels.agreement import agreement_report
from loop.core.assign import assign, per_annotator
from loop.services.context import Context
from loop.core.embeddings import DIM, EmbeddingCache, key_for_hash
from loop.errors import ConfigError, EmptyPool, LoopError, RoundIncomplete
from loop.services.sync import Recorder, pull_changes
from loop.services.labelstudio import choice_result
from loop.core.learning import choose_batch, measure_round
from loop.core.strategies import DEFAULT_STRATEGY, get_strategy
from loop.core.stopping import Plateau, StabilizingPredictions
from loop.services.store import Store


# -- sync -----------------------------------------------------------------------------------
def sync_annotations(ctx: Context, p: int) -> dict[str, int]:
    """Mirror the project's annotations from Label Studio into Redis (idempotent); returns counts of
    annotations added, updated and removed.

    Every annotation is validated first (a label from the project's label set), so a bad one fails
    the sync with nothing written. After a first full read (Label Studio's export: about 3 s per
    1,000 labelled tasks), only the tasks Label Studio changed since the last read are fetched
    (`pull_changes`, shared with the trainer), then the stored count is checked against Label
    Studio's own; on any difference (a task deleted with its annotations, say) the full read runs.
    """
    store = ctx.store
    if store.synced_at(p) is not None:
        counts = pull_changes(store, ctx.ls, p, strict=True)
        if ctx.ls.annotation_count(p) == store.annotation_count(p):
            return {k: counts[k] for k in ("added", "updated", "removed")}
    tasks = ctx.ls.export_tasks(p)
    recorder = Recorder.load(store, p)
    fresh: dict[str, dict[str, Any]] = {}
    for task in tasks:
        for ann in task.get("annotations") or []:
            rec = recorder.record(ann, int(task["id"]))
            if rec is not None:
                fresh[rec["id"]] = rec
    counts = store.replace_annotations(p, fresh)
    newest = max((t["updated_at"] for t in tasks if t.get("updated_at")), default=None)
    if newest is not None:
        store.set_synced_at(p, newest)
    return counts


# -- progress of a round --------------------------------------------------------------------
def round_progress(assignments: dict[str, list[str]], annotations: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """annotator -> {assigned, done, owed: [item ids]}; a skip counts as done."""
    done = {(a["item_id"], a["annotator"]) for a in annotations.values()}
    out: dict[str, dict[str, Any]] = {}
    for annotator, items in per_annotator(assignments).items():
        owed = [i for i in items if (i, annotator) not in done]
        out[annotator] = {"assigned": len(items), "done": len(items) - len(owed), "owed": owed}
    return out


def _close_previous(store: Store, p: int, annotations: dict[str, dict], close_incomplete: bool) -> dict | None:
    for record in reversed(store.rounds(p)):
        if record["status"] != "open":
            continue
        n = record["id"]
        assignments = store.round_assignments(p, n)
        progress = round_progress(assignments, annotations)
        owing = {a: v for a, v in progress.items() if v["owed"]}
        if owing and not close_incomplete:
            who = ", ".join(f"{a} owes {len(v['owed'])} of {v['assigned']}" for a, v in sorted(owing.items()))
            raise RoundIncomplete(f"round {n} is not finished: {who}; wait for them, or pass --close-incomplete "
                                  "to close it (items nobody labelled go back to the pool)")
        labelled = {a["item_id"] for a in annotations.values()}
        release = [i for i in assignments if i not in labelled]
        store.close_round(p, n, release=release)
        round_labels = [a for a in annotations.values() if a["item_id"] in assignments and a["label"] is not None]
        report = agreement_report(round_labels) if round_labels else None
        summary = {
            "round": n, "released": len(release), "owed": {a: len(v["owed"]) for a, v in owing.items()},
            "contested": len(contested([a for a in round_labels], store.adjudication(p))),
            "agreement": None if report is None else {
                "percent": report["percent_agreement"]["value"], "alpha": report["krippendorff_alpha"]["value"],
                "mean_kappa": report["cohen_kappa"]["mean"], "items": report["percent_agreement"]["n_items"],
                "warnings": report["warnings"]},
        }
        store.update_round(p, n, closing=summary)
        return summary
    return None


# -- training and selection -----------------------------------------------------------------
def load_matrix(cache: EmbeddingCache, key_of: dict[str, str], item_ids: Sequence[str]) -> np.ndarray:
    """Embeddings of items in order, from the cache (items were embedded at `loop init`)."""
    keys = [key_of[i] for i in item_ids]
    found = cache.get_many(list(dict.fromkeys(keys)))
    missing = [k for k in keys if k not in found]
    if missing:
        raise LoopError(f"{len(missing)} items have no cached embedding (the cache at {cache.path} was removed?); "
                        "re-run `loop init` on the data file to embed them again")
    return np.stack([found[k] for k in keys]) if keys else np.empty((0, DIM), dtype=np.float32)


def _cache_keys(items: dict[str, dict]) -> dict[str, str]:
    return {i: key_for_hash(v["key"]) for i, v in items.items()}


def check_round_options(size: int, annotators: Sequence[str], overlap: int, strategy: str) -> None:
    """Reject bad options before any work (and before any service is contacted)."""
    if size < 1:
        raise ConfigError(f"--size is {size}; it must be at least 1")
    get_strategy(strategy)
    assign([], annotators, overlap)


def next_round(ctx: Context, p: int, *, size: int, annotators: Sequence[str], overlap: int,
               strategy: str = DEFAULT_STRATEGY, close_incomplete: bool = False, seed: int | None = None,
               budget: int | None = None, guideline_version: int | None = None) -> dict[str, Any]:
    check_round_options(size, annotators, overlap, strategy)
    store = ctx.store
    known = store.annotators()
    unknown = [a for a in annotators if a not in known]
    if unknown:
        raise ConfigError(f"unknown annotator {unknown[0]!r}; add them first with `loop annotators add {unknown[0]}`")
    if budget is not None:
        if budget < 1:
            raise ConfigError(f"--budget is {budget}; it must be a positive number of labels")
        store.save_project(p, {"budget": budget}, make_current=False)

    synced = sync_annotations(ctx, p)
    planned = [r for r in store.rounds(p) if r["status"] == "planned"]
    if planned:  # a crash left a round half-published: finish it, choose nothing new
        record = planned[0]
        _publish(ctx, p, record, store.round_assignments(p, record["id"]))
        return {**store.round(p, record["id"]), "resumed": True, "synced": synced}

    annotations = store.annotations(p)
    closed = _close_previous(store, p, annotations, close_incomplete)

    project = store.project(p)
    spent = sum(1 for a in annotations.values() if a["label"] is not None)
    if project.get("budget") is not None:
        room = (project["budget"] - spent) // overlap
        if room < 1:
            raise LoopError(f"the budget of {project['budget']} labels is spent ({spent} used); raise it with "
                            "--budget N, or stop here: `loop status` shows the learning curve")
        size = min(size, room)
    items = store.items(p)
    keys = _cache_keys(items)
    labels = final_labels(store, p, annotations, guideline_version)
    labelled_any = {a["item_id"] for a in annotations.values() if a["label"] is not None}
    assigned = store.assigned(p)
    pool = [i for i in sorted(items) if i not in labelled_any and i not in assigned]
    if not pool:
        raise EmptyPool("the pool is exhausted: every item is labelled or assigned; import more with `loop init`")

    n = max(store.round_numbers(p), default=0) + 1
    ids = sorted(labels)
    X_pool = load_matrix(ctx.cache, keys, pool)
    batch = choose_batch(load_matrix(ctx.cache, keys, ids), [labels[i] for i in ids], X_pool, size, strategy,
                         seed=n if seed is None else seed)
    classifier, version, metrics = batch.classifier, None, {}
    if classifier is not None:
        # Kappa compares with the previous *round's* model: the trainer's in-between versions are
        # trained on nearly the same labels and would make every round look stable.
        earlier = [r["model_version"] for r in store.rounds(p) if r.get("model_version")]
        previous = store.load_model(p, earlier[-1]) if earlier else None
        version = store.next_model_version(p)
        store.save_model(p, model_lib.snapshot(classifier, version, n_labels=len(ids), round=n))
        dev = project.get("dev") or {}
        metrics = measure_round(
            classifier, model_lib.restore(previous) if previous else None,
            load_matrix(ctx.cache, keys, project.get("stop_set") or []),
            _dev_matrix(ctx.cache, dev), dev.get("labels"), n_labels=len(ids)).as_dict()
    chosen = [pool[i] for i in batch.picked]
    scores: dict[str, tuple[str, float]] = {}
    if classifier is not None:
        proba = classifier.predict_proba(X_pool[batch.picked])
        for item, row in zip(chosen, proba):
            scores[item] = (str(classifier.classes_[row.argmax()]), float(row.max()))

    assignments = assign(chosen, annotators, overlap)
    record = {
        "id": n, "created_at": time.time(), "strategy": batch.strategy,
        "requested_strategy": strategy, "size": len(chosen), "overlap": overlap, "annotators": list(annotators),
        "items_per_annotator": {a: len(v) for a, v in per_annotator(assignments).items()},
        "model_version": version, "guideline_version": project.get("guideline_version"),
        "labels_so_far": len(labels), "labels_spent": spent, "trained_on_guideline_version": guideline_version, "pool_before": len(pool), "scores": scores,
        "views": {}, "closed_previous": closed, "metrics": metrics,
    }
    store.plan_round(p, record, assignments)
    _publish(ctx, p, record, assignments)
    return {**store.round(p, n), "resumed": False, "synced": synced}


def _dev_matrix(cache: EmbeddingCache, dev: dict) -> np.ndarray | None:
    keys = dev.get("keys")
    if not keys:
        return None
    return load_matrix(cache, {k: k for k in keys}, keys)


def _publish(ctx: Context, p: int, record: dict[str, Any], assignments: dict[str, list[str]]) -> None:
    """Label Studio side of a planned round (each step idempotent), then mark the round open."""
    store, ls = ctx.store, ctx.ls
    n = record["id"]
    task_of = {i: v["task_id"] for i, v in store.items(p).items()}
    ls.set_overlap((task_of[i] for i in assignments), record["overlap"])
    views = {a: ls.ensure_view(p, f"Round {n} · {a}", [task_of[i] for i in items])
             for a, items in per_annotator(assignments).items()}
    version = record.get("model_version")
    if version and record.get("scores"):
        have = {pr["task"] for pr in ls.predictions(p) if pr.get("model_version") == version}
        ls.import_predictions(p, [
            {"task": task_of[i], "result": choice_result(label), "score": score, "model_version": version}
            for i, (label, score) in record["scores"].items() if task_of[i] not in have])
        ls.update_project(p, model_version=version)
    store.update_round(p, n, views=views, status="open", opened_at=time.time())


# -- status ---------------------------------------------------------------------------------
def status(ctx: Context, p: int, *, sync: bool = True) -> dict[str, Any]:
    store = ctx.store
    synced = sync_annotations(ctx, p) if sync else None
    project = store.project(p)
    annotations = store.annotations(p)
    labelled = [a for a in annotations.values() if a["label"] is not None]
    labels = final_labels(store, p, annotations)
    versions = Counter(a.get("guideline_version") for a in labelled)
    warnings = []
    if len(versions) > 1:
        mix = ", ".join(f"v{v}: {n}" for v, n in sorted(versions.items(), key=lambda kv: str(kv[0])))
        warnings.append(f"the labels mix guideline versions ({mix}); train on one with "
                        "`loop next-round --guideline-version V`, or re-label the old ones")
    queue = contested(annotations.values(), store.adjudication(p))
    items = store.items(p)
    assigned = store.assigned(p)
    rounds = []
    for record in store.rounds(p):
        progress = round_progress(store.round_assignments(p, record["id"]), annotations)
        rounds.append({k: record.get(k) for k in ("id", "status", "strategy", "size", "overlap", "model_version",
                                                  "guideline_version", "created_at")}
                      | {"progress": {a: {"done": v["done"], "assigned": v["assigned"]} for a, v in progress.items()}})
    balance = Counter(labels.values())
    curve = [{"round": r["id"], **(r.get("metrics") or {})} for r in store.rounds(p) if r.get("metrics")]
    kappa_rule, plateau_rule = StabilizingPredictions(), Plateau()
    stop = kappa_rule([c.get("kappa") for c in curve])
    dev_stop = plateau_rule([c.get("dev_accuracy") for c in curve]) if project.get("dev") else None
    return {
        "project_id": p, "labels": project["labels"], "items": len(items),
        "labels_spent": len(labelled), "items_labelled": len(labels), "budget": project.get("budget"),
        "pool": sum(1 for i in items if i not in labels and i not in assigned),
        "class_balance": {lab: balance.get(lab, 0) for lab in project["labels"]},
        "model_version": store.current_model_version(p), "guideline_version": project.get("guideline_version"),
        "rounds": rounds, "synced": synced, "learning_curve": curve, "warnings": warnings,
        "guideline_versions": {str(k): v for k, v in versions.items()},
        "contested": len(queue), "awaiting_adjudication": sum(1 for q in queue if q["adjudicator"]),
        "stop": {"recommend": stop.stop or bool(dev_stop and dev_stop.stop), "kappa": vars(stop),
                 "dev_plateau": vars(dev_stop) if dev_stop else None,
                 "rule": {"threshold": kappa_rule.threshold, "window": kappa_rule.window,
                          "min_rounds": kappa_rule.min_rounds}},
    }


def plot_curve(status: dict[str, Any], path: str) -> None:
    """The learning curve as a PNG: dev accuracy and macro-F1 (when a dev set exists) and the kappa series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = status["learning_curve"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = [c["n_labels"] for c in curve]
    if any(c.get("dev_accuracy") is not None for c in curve):
        left.plot(x, [c.get("dev_accuracy") for c in curve], marker="o", label="dev accuracy")
        left.plot(x, [c.get("dev_macro_f1") for c in curve], marker="s", label="dev macro-F1")
        left.legend()
    else:
        left.text(0.5, 0.5, "no dev set\n(loop init --dev dev.jsonl)", ha="center", va="center")
    left.set_xlabel("labelled items")
    left.set_title("held-out score")
    ks = [(c["n_labels"], c["kappa"]) for c in curve if c.get("kappa") is not None]
    right.plot([k[0] for k in ks], [k[1] for k in ks], marker="o")
    right.axhline(status["stop"]["rule"]["threshold"], color="grey", linestyle="--", linewidth=0.8)
    right.set_xlabel("labelled items")
    right.set_title("kappa vs previous model on the stop set")
    fig.suptitle(f"project {status['project_id']}: {status['stop']['kappa']['reason']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
