"""`loop next-round`: sync, close the previous round, retrain, select, assign, publish, record.

`next_round` is crash-safe: the round and its assignments are written to Redis in one transaction
as "planned" before Label Studio is touched; every Label Studio step is idempotent; a re-run
finds the planned round and finishes it instead of choosing new items.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from loop.core import model as model_lib
from loop.core import relabel as relabel_lib
from loop.core.assign import assign, per_annotator, progress
from loop.core.cover import DEFAULT_COVER_SHARE
from loop.core.embeddings import for_engine, model_of
from loop.core.learning import choose_batch, fit, measure_round
from loop.core.relabel import parse_mode as parse_relabel
from loop.core.strategies import DEFAULT_STRATEGY, get_strategy
from loop.errors import ConfigError, EmptyPool, LoopError, RoundIncomplete
from loop.labels.adjudication import contested
from loop.labels.agreement import agreement_report
from loop.labels.policy import TrainingPolicy
from loop.services import ray_engine
from loop.services.context import Context
from loop.services.store import Store
from loop.services.sync import sync_annotations
from loop.workflows import cover as cover_flow
from loop.workflows import gold as gold_flow
from loop.workflows import training
from loop.workflows.predictions import replace_predictions
from loop.workflows.queues import enqueue, withdraw
from loop.workflows.status import round_detail


def _close_previous(ctx: Context, p: int, counted: list[dict], close_incomplete: bool) -> dict | None:
    """Close the open round (refusing while annotators owe items, unless `close_incomplete`) and
    record what it gave: agreement, contested items, and items with fewer labels than its overlap
    (a skip counts as done for the annotator, but is no label)."""
    store = ctx.store
    for record in reversed(store.rounds(p)):
        if record["status"] != "open":
            continue
        n = record["id"]
        assignments = store.round_assignments(p, n)
        relabels = store.round_relabels(p, n)
        owing = {a: v for a, v in progress({**assignments, **relabels}, counted).items() if v["owed"]}
        if owing and not close_incomplete:
            who = ", ".join(f"{a} owes {len(v['owed'])} of {v['assigned']}" for a, v in sorted(owing.items()))
            raise RoundIncomplete(f"round {n} is not finished: {who}; wait for them, or pass --close-incomplete "
                                  "to close it (items nobody labelled go back to the pool)")
        labelled = {a["item_id"] for a in counted}
        release = [i for i in assignments if i not in labelled]
        # Released items leave their annotators' queues first (a re-run after a crash does it again,
        # harmlessly), so nobody is served an item that went back to the pool.
        for annotator, items in per_annotator({i: assignments[i] for i in release}).items():
            withdraw(ctx, p, annotator, items)
        # A relabel nobody gave: the item keeps its labels, and leaves the queue it was sent to.
        labelled_by = {(a["item_id"], a["annotator"]) for a in counted}
        for annotator, items in per_annotator(relabels).items():
            withdraw(ctx, p, annotator, [i for i in items if (i, annotator) not in labelled_by])
        # A control nobody answered leaves the queue too (it would otherwise head their next round).
        controls = store.round_controls(p, n)
        if controls:
            answered = {(a["item_id"], a["annotator"]) for a in training.control_answers(store, p)}
            for annotator, items in per_annotator(controls).items():
                withdraw(ctx, p, annotator, [i for i in items if (i, annotator) not in answered])
        store.close_round(p, n, release=release)
        round_labels = [a for a in counted if a["item_id"] in assignments and a["label"] is not None]
        report = agreement_report(round_labels) if round_labels else None
        given = {}
        for a in round_labels:
            given.setdefault(a["item_id"], set()).add(a["annotator"])
        short = sorted(i for i in assignments if i not in release and len(given.get(i, ())) < record["overlap"])
        summary = {
            "round": n, "released": len(release), "owed": {a: len(v["owed"]) for a, v in owing.items()},
            "short": len(short), "short_items": short,
            "contested": len(contested(round_labels, store.adjudication(p))),
            "agreement": None if report is None else {
                "percent": report["percent_agreement"]["value"], "alpha": report["krippendorff_alpha"]["value"],
                "mean_kappa": report["cohen_kappa"]["mean"], "items": report["percent_agreement"]["n_items"],
                "warnings": report["warnings"]},
        }
        store.update_round(p, n, closing=summary)
        return summary
    return None


def check_round_options(size: int, annotators: Sequence[str], overlap: int, strategy: str,
                        aggregation: str | None = None) -> None:
    """Reject bad options before any work (and before any service is contacted)."""
    if size < 1:
        raise ConfigError(f"--size is {size}; it must be at least 1")
    get_strategy(strategy)
    assign([], annotators, overlap)
    if aggregation is not None:
        TrainingPolicy(aggregation=aggregation)


def next_round(ctx: Context, project: int | None, *, size: int, annotators: Sequence[str], overlap: int,
               strategy: str = DEFAULT_STRATEGY, close_incomplete: bool = False, seed: int | None = None,
               budget: int | None = None, guideline_version: Any = training.KEEP,
               aggregation: str | None = None, relabel: str | int = relabel_lib.DEFAULT_MODE,
               gold_rate: float = 0.0, cover: str | Path | None = None,
               cover_share: float = DEFAULT_COVER_SHARE, engine: str | None = None) -> dict[str, Any]:
    """Run one round on `project` (None: the current one). `guideline_version` and `aggregation`
    change the project's training policy (kept for later rounds and the trainer): a version
    number, None for every version, or `training.KEEP`. `relabel` ("off", "auto" or a number)
    spends part of the round on another label for labelled items whose label is least certain
    (`core.relabel`), each from an annotator who has not labelled it. `gold_rate` mixes about that
    share of control items (gold, unmarked) into each annotator's new items (`workflows.gold`).
    `cover` (a production file) spends `cover_share` of the new items on clusters production sends
    and the labels miss, and on negative-looking items (`workflows.cover`). `engine`: where the pool
    is scored, `local` or `ray` (`services.ray_engine`); None: `ray` when LOOP_RAY_ADDRESS is set."""
    check_round_options(size, annotators, overlap, strategy, aggregation)
    cover_share = cover_flow.check_cover(cover, cover_share)
    gold_rate = gold_flow.check_gold_rate(gold_rate)
    relabel = parse_relabel(relabel)
    scored = ray_engine.scorer(ctx.settings, engine)  # before any work: a missing Ray is an error here
    if budget is not None and budget < 1:
        raise ConfigError(f"--budget is {budget}; it must be a positive number of labels")
    store = ctx.store
    p = ctx.project_id(project)
    if store.project(p).get("assisted") and overlap > 1:
        raise ConfigError(f"project {p} shows annotators the model's answer (assisted labelling), so its labels "
                          f"are not independent: use --overlap 1, or a project set up without --assisted")
    known = store.annotators()
    unknown = [a for a in annotators if a not in known]
    if unknown:
        raise ConfigError(f"unknown annotator {unknown[0]!r}; add them first with `loop annotators add {unknown[0]}`")
    gold = store.gold(p)
    if gold_rate > 0 and not gold:
        raise ConfigError(f"--gold-rate {gold_rate} needs a gold set, and project {p} has none; add one with "
                          "`loop gold add FILE` or `loop gold promote`, or drop --gold-rate")
    if budget is not None:
        store.save_project(p, {"budget": budget}, make_current=False)
    policy = training.set_policy(store, p, aggregation=aggregation, guideline_version=guideline_version)

    synced = sync_annotations(store, ctx.ls, p)
    planned = [r for r in store.rounds(p) if r["status"] == "planned"]
    if planned:  # a crash left a round half-published: finish it, choose nothing new
        record = planned[0]
        _publish(ctx, p, record, store.round_assignments(p, record["id"]), store.round_relabels(p, record["id"]))
        return {**round_detail(store, p, record["id"]), "resumed": True, "synced": synced}

    annotations = store.annotations(p)
    counted, _ = training.labels_that_count(store, p, annotations)
    closed = _close_previous(ctx, p, counted, close_incomplete)

    project = store.project(p)
    spent = sum(1 for a in counted if a["label"] is not None)
    left = None if project.get("budget") is None else project["budget"] - spent  # labels the budget still allows
    if left is not None:
        if left < 1 or (left < overlap and relabel == "off"):
            raise LoopError(f"the budget of {project['budget']} labels is spent ({spent} used); raise it with "
                            "--budget N, or stop here: `loop status` shows the learning curve")
    items = store.items(p)
    labelled_any = {a["item_id"] for a in counted if a["label"] is not None}
    assigned = store.assigned(p)
    # Gold items are the evaluation set: never a strategy's to choose.
    pool = [i for i in sorted(items) if i not in labelled_any and i not in assigned and i not in gold]
    if not pool and relabel == "off":
        raise EmptyPool("the pool is exhausted: every item is labelled or assigned; import more with `loop init`, "
                        "or spend rounds on another label for uncertain items with --relabel auto")

    n = max(store.round_numbers(p), default=0) + 1
    train = training.training_set(store, ctx.vectors, p, annotations)
    X_pool = ctx.vectors.matrix(p, pool)
    round_seed = n if seed is None else seed
    classifier = fit(train.X, train.y, round_seed)
    relabels = _choose_relabels(store, p, relabel, size, annotators, train, counted, classifier, seed=round_seed)
    size = size - len(relabels)
    if left is not None:
        size = min(size, (left - len(relabels)) // overlap)
    batch = choose_batch(train.X, train.y, X_pool, size, strategy, seed=round_seed, classifier=scored(classifier))
    coverage = None
    if cover is not None and size > 0 and pool:
        plan, coverage = cover_flow.cover_round(ctx, project, cover, cover_share, X_pool, train.X, classifier,
                                                batch.picked, size, round_seed)
        batch = replace(batch, picked=plan.picked)
        coverage["items_chosen"] = [pool[i] for i in plan.cover]
    version, metrics = None, {}
    if classifier is not None:
        # Kappa compares with the previous *round's* model: the trainer's in-between versions are
        # trained on nearly the same labels and would make every round look stable.
        earlier = [r["model_version"] for r in store.rounds(p) if r.get("model_version")]
        previous = store.load_model(p, earlier[-1]) if earlier else None
        version = training.publish(store, p, classifier, n_labels=len(train.y), round=n,
                                   training_digest=train.digest)
        dev = project.get("dev") or {}
        metrics = measure_round(
            classifier, model_lib.restore(previous) if previous else None,
            ctx.vectors.matrix(p, project.get("stop_set") or []),
            _dev_matrix(ctx, dev), dev.get("labels"), n_labels=len(train.y)).as_dict()
        metrics["labels_spent"] = len(counted)  # what the stop rule reads per label, as `loop simulate` does
        metrics |= gold_flow.gold_metrics(ctx, p, classifier, gold)
    chosen = [pool[i] for i in batch.picked]
    scores = dict(zip(chosen, model_lib.predict(classifier, X_pool[batch.picked]))) if classifier is not None else {}

    assignments = assign(chosen, annotators, overlap)
    if not assignments and not relabels:
        raise EmptyPool("nothing to send: no new item is left and no labelled item needs another label")
    controls = gold_flow.choose_controls(store, p, gold, {a: len(v) for a, v in per_annotator(assignments).items()},
                                         gold_rate, annotations, seed=round_seed)
    control_scores = {}
    if controls and classifier is not None and project.get("assisted"):
        # An assisted queue shows the model's answer on every item: a control without one would stand out.
        ids = sorted(controls)
        control_scores = dict(zip(ids, model_lib.predict(classifier, ctx.vectors.matrix(p, ids))))
    record = {
        "id": n, "created_at": time.time(), "strategy": batch.strategy,
        "requested_strategy": strategy, "size": len(chosen), "overlap": overlap, "annotators": list(annotators),
        "items_per_annotator": {a: len(v) for a, v in per_annotator(assignments).items()},
        "relabel": {"mode": relabel, "items": len(relabels),
                    "per_annotator": {a: len(v) for a, v in per_annotator(relabels).items()}},
        "model_version": version, "guideline_version": project.get("guideline_version"),
        "labels_so_far": len(train.y), "labels_spent": spent, "training_policy": policy.as_dict(),
        "pool_before": len(pool), "scores": scores, "queues": {}, "closed_previous": closed, "metrics": metrics,
        "controls": {"rate": gold_rate, "items": sum(len(v) for v in controls.values()),
                     "per_annotator": {a: len(v) for a, v in per_annotator(controls).items()}},
        "control_scores": control_scores, "cover": coverage,
    }
    store.plan_round(p, record, assignments, relabels, controls)
    _publish(ctx, p, record, assignments, relabels)
    return {**round_detail(store, p, n), "resumed": False, "synced": synced}


def _choose_relabels(store: Store, p: int, mode: str | int, size: int, annotators: Sequence[str],
                     train: training.TrainingSet, counted: list[dict], classifier, seed: int) -> dict[str, list[str]]:
    """Labelled items for another label this round: item -> [an annotator who has not labelled
    it] (`core.relabel.choose_relabels`: the labels most likely wrong). None before the first model."""
    if mode == "off" or classifier is None:
        return {}
    adjudication = store.adjudication(p)
    decisions = training.policy(store, p).decisions(counted, adjudication)
    labelled_by: dict[str, set[str]] = {}
    for a in counted:
        labelled_by.setdefault(a["item_id"], set()).add(a["annotator"])
    busy = store.relabelling(p)
    eligible = np.array([i not in busy and decisions[i]["decided_by"] != "adjudicated"
                         and decisions[i]["n_labels"] < relabel_lib.MAX_LABELS
                         and any(a not in labelled_by.get(i, set()) for a in annotators)
                         for i in train.item_ids], dtype=bool)
    rows = relabel_lib.choose_relabels(
        train.X, train.y, np.array([decisions[i]["confidence"] for i in train.item_ids]),
        np.array([decisions[i]["n_labels"] for i in train.item_ids]), eligible, mode, size, seed=seed)
    return relabel_lib.assign_relabels([train.item_ids[r] for r in rows], list(annotators), labelled_by)


def _dev_matrix(ctx: Context, dev: dict) -> np.ndarray | None:
    """The dev set's vectors: embedded at `loop init` into this workspace's cache (its texts are not
    items of the project, so only that cache has them)."""
    if not dev.get("keys"):
        return None
    keys = for_engine(dev["keys"], model_of(ctx.embedder))
    found = ctx.cache.get_many(list(dict.fromkeys(keys)))
    missing = [k for k in keys if k not in found]
    if missing:
        raise LoopError(f"{len(missing)} dev-set items have no cached embedding (the cache at {ctx.cache.path} was "
                        f"removed?); re-run `loop init` with --dev {dev.get('source', 'DEV')} to embed them again")
    return np.stack([found[k] for k in keys])


def _publish(ctx: Context, p: int, record: dict[str, Any], assignments: dict[str, list[str]],
             relabels: dict[str, list[str]] | None = None) -> None:
    """Label Studio side of a planned round (each step idempotent), then mark the round open: each
    annotator's items (new ones and relabels) go to their queue; the model's scores go to the main
    project (for operators), and to the queues only in an assisted project. Control items are
    shuffled in among an annotator's items, so nothing in the queue tells them apart."""
    store = ctx.store
    n = record["id"]
    mine = per_annotator({**assignments, **(relabels or {})})
    for a, items in per_annotator(store.round_controls(p, n)).items():
        mixed = mine.get(a, []) + items
        random.Random(f"{n}:{a}").shuffle(mixed)  # seeded: a re-run after a crash asks for the same order
        mine[a] = mixed
    queues = {a: enqueue(ctx, p, a, items, round=n) for a, items in mine.items()}
    version, scores = record.get("model_version"), record.get("scores") or {}
    if version and scores:
        task_of = store.items_by_id(p, scores)
        replace_predictions(ctx, p, [(task_of[i]["task_id"], label, score) for i, (label, score) in scores.items()],
                            version)
        if store.project(p).get("assisted"):
            shown = {**scores, **(record.get("control_scores") or {})}
            for a, q in queues.items():
                in_queue = dict(zip(mine[a], q["tasks"]))
                replace_predictions(ctx, q["ls_project"], [(in_queue[i], label, score) for i, (label, score)
                                                           in shown.items() if i in in_queue], version)
    store.update_round(p, n, queues={a: {k: q[k] for k in ("ls_project", "url")} for a, q in queues.items()},
                       status="open", opened_at=time.time())
