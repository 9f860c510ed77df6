"""`loop coverage`: where the pool and production lie, and how much of it the labels cover.

Gathers what `core.coverage.coverage_report` needs: the pool's vectors and texts (a project's items,
gold kept apart, through `ItemVectors` and `project_texts`; or a data file's rows, embedded through
the cache), the final labels (`training.final_labels`, as models learn them), agreement per cluster
(`labels.agreement.percent_agreement` on the labels that count), the model's predictions on the gold
and dev items, and a production sample (a file of texts, embedded through the cache). It clusters the
pool and production together, so a region only production sends gets clusters of its own, draws the
map, and keeps a summary on the project for `loop status` and the data card.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from loop.core import coverage as cov
from loop.core.dataset import Item, read_items
from loop.core.embeddings import cache_key, embed_texts, for_engine, model_of
from loop.errors import ConfigError, DataError, NotInitialised
from loop.workflows.progress import Progress, no_progress

MAX_EXAMPLE_CHARS = 200  # texts in the report are cut here: the JSON of a 1M-row run stays readable


def read_production(ctx, path: str | Path, text_field: str = "text", label_field: str = "label",
                    progress: Progress = no_progress) -> tuple[list[Item], np.ndarray]:
    """The non-empty rows of a production sample (JSONL, CSV or Parquet: a text per row; a label is
    optional) and their vectors, embedded through the cache. A text sent many times counts as many
    times: volume is the point. DataError names the file when it has no usable text."""
    from loop.curation.validate import read_records

    rows = [it for it in read_records(path, text_field=text_field, label_field=label_field) if it.text.strip()]
    if not rows:
        raise DataError(f"{path}: no non-empty {text_field!r} texts; a production sample has one text per row "
                        "(--text-field names the column)")
    X, _ = embed_texts([it.text for it in rows], ctx.cache, ctx.embedder,
                       progress=progress("embedding production", len(rows)))
    return rows, X


def negative_labels(labels: Sequence[str], guideline: Sequence[str] | None) -> list[str]:
    """The negative labels `loop validate` looks for: the guidelines' own, else the defaults in the label set."""
    from loop.curation.validate import DEFAULT_NEGATIVES

    if guideline:
        return list(guideline)
    return [n for n in DEFAULT_NEGATIVES if n in set(labels)]


def _agreement(records: list[Mapping], cluster_of: Mapping[str, int]) -> tuple[dict[int, dict], float | None]:
    """cluster -> percent agreement of its items with 2+ labels, and the project's overall figure."""
    from loop.labels.agreement import percent_agreement

    by_cluster: dict[int, list[Mapping]] = {}
    for r in records:
        c = cluster_of.get(r["item_id"])
        if c is not None:
            by_cluster.setdefault(c, []).append(r)
    per = {c: percent_agreement(rs) for c, rs in by_cluster.items()}
    overall = percent_agreement(records)["value"] if records else None
    return {c: a for c, a in per.items() if a["value"] is not None}, overall


def _cut(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS - 1] + "…"


def build(X_pool: np.ndarray, pool_texts: Sequence[str], pool_labels: Sequence[str | None], *,
          production: tuple[list[Item], np.ndarray] | None = None, negatives: Sequence[str] = (),
          records: list[Mapping] | None = None, pool_ids: Sequence[str] | None = None,
          evaluation: Mapping[str, Any] | None = None, k: int | None = None, seed: int = 0,
          clustering: cov.Clustering | None = None, progress: Progress = no_progress) -> dict[str, Any]:
    """Cluster pool + production and describe the clusters (`core.coverage.coverage_report`), timed.
    `clustering`: one already fitted on the pool's rows then production's (the benchmark times it apart)."""
    timings: dict[str, float] = {}
    parts = [X_pool] + ([production[1]] if production else [])
    X = np.concatenate(parts) if len(parts) > 1 else X_pool
    texts = list(pool_texts) + ([it.text for it in production[0]] if production else [])
    step = progress("clustering", 2)
    if clustering is None:
        start = time.perf_counter()
        clustering = cov.cluster_embeddings(X, k=k, seed=seed)
        timings["clustering_s"] = time.perf_counter() - start
    step(1)
    agreement, overall = {}, None
    if records and pool_ids is not None:
        cluster_of = dict(zip(pool_ids, clustering.labels[:len(X_pool)].tolist()))
        agreement, overall = _agreement(records, cluster_of)
    start = time.perf_counter()
    report = cov.coverage_report(clustering, X, len(X_pool), pool_labels, texts=[_cut(t) for t in texts],
                                 negatives=negatives, agreement=agreement, overall_agreement=overall,
                                 evaluation=evaluation, seed=seed)
    timings["report_s"] = time.perf_counter() - start
    step(1)
    report["k_rule"] = cov.k_rule(k, len(X))
    report["seed"] = seed
    report["timings"] = timings
    report["thresholds"] = report["flags"]["thresholds"]
    report["summary"] = cov.summary(report)
    report["summary_line"] = cov.summary_line(report["summary"])
    return report


def _model_evaluation(ctx, p: int, project: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The current model's predictions on the gold items and the dev set, or (None, why not)."""
    from loop.core import model as model_lib
    from loop.workflows.texts import project_texts

    store = ctx.store
    snap = store.load_model(p)
    gold = store.gold(p)
    dev = project.get("dev") or {}
    if not gold and not dev.get("keys"):
        return None, "no gold items (`loop gold add`) and no dev set (`loop init --dev`) to score the model on"
    if snap is None:
        return None, "no model yet (the first round trains one)"
    clf = model_lib.restore(snap)
    Xs, y, texts, source = [], [], [], []
    if gold:
        ids = sorted(gold)
        found, _ = project_texts(ctx, p, project, ids)
        Xs.append(ctx.vectors.matrix(p, ids))  # as `loop gold` scores them
        y += [gold[i]["label"] for i in ids]
        texts += [found[i] for i in ids]
        source += ["gold"] * len(ids)
    if dev.get("keys"):
        keys = for_engine(dev["keys"], model_of(ctx.embedder))
        cached = ctx.cache.get_many(list(dict.fromkeys(keys)))
        usable = [j for j, key in enumerate(keys) if key in cached]
        dev_text: dict[str, str] = {}
        try:  # the dev file's texts, to show examples; the vectors alone are enough to score
            for it in read_items(dev["source"], text_field=project.get("text_field") or "text"):
                dev_text[cache_key(it.text, model_of(ctx.embedder))] = it.text  # as `loop init` keyed them
        except (DataError, KeyError, OSError):
            pass
        if usable:
            Xs.append(np.stack([cached[keys[j]] for j in usable]))
            y += [dev["labels"][j] for j in usable]
            texts += [dev_text.get(keys[j], "") for j in usable]
            source += ["dev"] * len(usable)
    X = np.concatenate(Xs)
    predicted = [str(v) for v in clf.predict(X)]
    return {"X": X, "y_true": y, "y_pred": predicted, "texts": [_cut(t) for t in texts], "source": source,
            "model_version": snap.version}, None


def project_coverage(ctx, p: int, *, production: str | Path | None = None, text_field: str = "text",
                     negatives: Sequence[str] | None = None, k: int | None = None, seed: int = 0,
                     plot: str | Path | None = None, save: bool = True,
                     progress: Progress = no_progress) -> dict[str, Any]:
    """Coverage of project p: its items (gold kept apart) clustered with the production sample, if any.

    negatives: the negative labels of the project's guidelines (`workflows.curate.guideline_negatives`);
    None: those of out_of_scope, none and refuse in its label set.

    With `save`, a summary (`kept_summary`) is kept on the project for `loop status` and the data card."""
    from loop.labels.agreement import agreement_records
    from loop.workflows import training
    from loop.workflows.texts import project_texts

    store = ctx.store
    project = store.project(p)
    if project is None:
        raise NotInitialised(f"project {p} is unknown; `loop init DATA` creates one")
    prod = read_production(ctx, production, text_field, progress=progress) if production else None
    gold = store.gold(p)
    ids = sorted(i for i in store.items(p) if i not in gold)
    if not ids:
        raise DataError(f"project {p} has no items outside its gold set; `loop init DATA` adds them")
    texts, _ = project_texts(ctx, p, project, ids)
    # The pool's vectors through the one reader every round uses (the project's columnar copy).
    X_pool = ctx.vectors.matrix(p, ids, progress=progress("reading the pool's vectors", len(ids)))
    final = training.final_labels(store, p)
    counted, _ = training.labels_that_count(store, p)
    records = agreement_records(training.without_gold(store, p, counted), store.adjudication(p))
    evaluation, why = _model_evaluation(ctx, p, project)
    negatives = negative_labels(project.get("labels") or [], negatives)
    report = build(X_pool, [texts[i] for i in ids], [final.get(i) for i in ids], production=prod,
                   negatives=negatives, records=records, pool_ids=ids, evaluation=evaluation, k=k, seed=seed,
                   progress=progress)
    report.update(project_id=p, source=f"project {p}", production_source=str(production) if production else None,
                  errors_reason=why, model_version=(evaluation or {}).get("model_version"))
    if evaluation is not None:
        report["errors"]["sources"] = dict(Counter(evaluation["source"]))
    _finish(report, plot)
    if save:
        store.save_project(p, {"coverage": kept_summary(report, production)}, make_current=False)
    return report


def file_coverage(ctx, data: str | Path, *, production: str | Path | None = None, text_field: str = "text",
                  label_field: str = "label", id_field: str | None = None, negatives: Sequence[str] | None = None,
                  k: int | None = None, seed: int = 0, plot: str | Path | None = None,
                  progress: Progress = no_progress) -> dict[str, Any]:
    """Coverage of a dataset file: its rows are the pool, those with a label the labelled set. When the
    production sample carries labels too, a model trained on the file's labels (`core.model.train`)
    is scored on it, and its mistakes are clustered."""
    from loop.core import model as model_lib
    from loop.curation.validate import read_records

    items = [it for it in read_records(data, text_field=text_field, label_field=label_field, id_field=id_field)
             if it.text.strip()]
    if not items:
        raise DataError(f"{data}: no non-empty {text_field!r} texts to cluster")
    prod = read_production(ctx, production, text_field, label_field, progress=progress) if production else None
    X_pool, _ = embed_texts([it.text for it in items], ctx.cache, ctx.embedder,
                            progress=progress("embedding", len(items)))
    labels = [it.label for it in items]
    label_set = sorted({lab for lab in labels if lab is not None})
    evaluation, why = None, "the production sample has no labels to score a model on"
    if prod is None:
        why = "no production sample (--production) to score a model on"
    elif any(it.label is not None for it in prod[0]):
        if len(label_set) < 2:
            why = "the data has fewer than two labels: no model to score"
        else:
            rows = [j for j, it in enumerate(prod[0]) if it.label is not None]
            lab_rows = [i for i, lab in enumerate(labels) if lab is not None]
            clf = model_lib.train(X_pool[lab_rows], [labels[i] for i in lab_rows], seed=seed)
            Xe = prod[1][rows]
            evaluation = {"X": Xe, "y_true": [prod[0][j].label for j in rows],
                          "y_pred": [str(v) for v in clf.predict(Xe)],
                          "texts": [_cut(prod[0][j].text) for j in rows]}
            why = None
    report = build(X_pool, [it.text for it in items], labels, production=prod,
                   negatives=negative_labels(label_set, negatives), evaluation=evaluation, k=k, seed=seed,
                   progress=progress)
    report.update(project_id=None, source=str(data), production_source=str(production) if production else None,
                  errors_reason=why, model_version=None)
    if evaluation is not None:
        report["errors"]["sources"] = {"production": len(evaluation["y_true"])}
    _finish(report, plot)
    return report


def _finish(report: dict[str, Any], plot: str | Path | None) -> None:
    report["plot"] = None
    if plot:
        start = time.perf_counter()
        report["plot"] = str(plot_map(report, plot))
        report["timings"]["map_s"] = time.perf_counter() - start


def check_plot_path(plot: str | Path | None) -> None:
    """Refuse a map path that cannot be written before any work is done."""
    if plot is None:
        return
    path = Path(plot)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {plot}: the map is a PNG; give a path ending in .png")
    if not path.parent.exists():
        raise ConfigError(f"--plot {plot}: the folder {path.parent} does not exist; create it first")


def plot_map(report: Mapping[str, Any], path: str | Path) -> Path:
    """The 2-D map: one disc per cluster at the PCA position of its centroid, its area the cluster's
    volume (pool + production items), its colour the share of its pool items that are labelled;
    under-labelled clusters (the first flag) ringed in red and numbered by rank, each disc named by its
    top terms when there is room."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["clusters"]
    xy = np.array([r["map"] for r in rows], dtype=float)
    volume = np.array([r["pool"] + (r["production"] or 0) for r in rows], dtype=float)
    colour = np.array([r["labelled_fraction"] for r in rows], dtype=float)
    sizes = 30 + 1500 * volume / max(volume.max(), 1)
    fig, ax = plt.subplots(figsize=(9, 7))
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c=colour, cmap="viridis", vmin=0, vmax=max(colour.max(), 1e-9),
                    alpha=0.75, edgecolors="white", linewidths=0.5)
    fig.colorbar(sc, ax=ax, label="share of the cluster's pool items that are labelled")
    under = report["flags"]["under_covered"]
    for rank, f in enumerate(under, start=1):
        i = f["cluster"]
        ax.scatter([xy[i, 0]], [xy[i, 1]], s=sizes[i] * 1.15, facecolors="none", edgecolors="red", linewidths=1.6)
        ax.annotate(str(rank), xy[i], ha="center", va="center", fontsize=8, color="red", fontweight="bold")
    biggest = set(np.argsort(-volume)[:12].tolist()) | {f["cluster"] for f in under[:5]}
    for i in sorted(biggest):
        terms = rows[i].get("terms") or []
        if terms:
            ax.annotate(", ".join(terms[:2]), xy[i], xytext=(0, 9 + np.sqrt(sizes[i]) / 2), textcoords="offset points",
                        ha="center", fontsize=7, color="#333333", annotation_clip=True, clip_on=True)
    where = "production" if report["production"] is not None else "pool"
    ax.set_title(f"{report['k']} clusters of {report['pool']} pool items"
                 + (f" and {report['production']} production items" if report["production"] is not None else "")
                 + f"\nsize: volume; colour: labelled share; red rings: under-labelled vs {where} (by rank)",
                 fontsize=9, pad=12)
    ax.margins(0.12)
    ax.set_xlabel("PCA 1 of the cluster centroids")
    ax.set_ylabel("PCA 2")
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out


def kept_summary(report: Mapping[str, Any], production: str | Path | None) -> dict[str, Any]:
    """What `project_coverage` keeps on the project: `core.coverage.summary` and what the data card
    shows besides (the k rule, the negatives, the under-labelled clusters with their top terms)."""
    rows = {r["cluster"]: r for r in report["clusters"]}
    under = [{**u, "terms": rows[u["cluster"]].get("terms", [])[:3]} for u in report["flags"]["under_covered"][:10]]
    return {**cov.summary(report), "at": time.time(), "k_rule": report["k_rule"], "negatives": report["negatives"],
            "production_source": report["production_source"],
            "production_path": str(Path(production).resolve()) if production else None,
            "under_covered_clusters": under}


def card_section(store, p: int) -> dict[str, Any]:
    """The data card's Coverage section: the summary the last `loop coverage` kept on the project (the
    card says when it was measured and on how many labels), or {"status": "skipped", "reason"}.
    Export computes nothing here: clustering the whole pool again would cost an export minutes at 100k
    items and read every text a second time."""
    kept = (store.project(p) or {}).get("coverage")
    if not kept:
        return {"status": "skipped", "reason": "`loop coverage` was not run on this project; run it (with "
                                               "--production FILE) before `loop export`"}
    return {"status": "done", **kept,
            "measured_at": time.strftime("%Y-%m-%d %H:%M", time.localtime(kept["at"])) if kept.get("at") else None}


def shift_between(X_a: np.ndarray, X_b: np.ndarray, texts: Sequence[str] | None = None, *, seed: int = 0,
                  shown: int = 10) -> dict[str, Any]:
    """The shift of one set of texts (a) against another (b: production, an older release), as `loop validate
    --reference` reports it: the MMD permutation test on the embeddings, and the clusters (of a and b
    clustered together) whose share differs most, b's surplus first. `texts`: a's then b's, to name clusters."""
    X = np.concatenate([X_a, X_b])
    clustering = cov.cluster_embeddings(X, seed=seed)
    a, b = clustering.labels[:len(X_a)], clustering.labels[len(X_a):]
    shares = cov.share_comparison(a, b, clustering.k)
    terms = None
    if texts is not None:
        docs: list[list[str]] = [[] for _ in range(clustering.k)]
        for c, t in zip(clustering.labels.tolist(), texts):
            docs[c].append(t)
        terms = cov.top_terms(docs, 3)
    rows = shares["clusters"]
    biggest = sorted(rows, key=lambda r: -abs(r["difference"]))[:shown]
    if terms is not None:
        biggest = [{**r, "terms": terms[r["cluster"]]} for r in biggest]
    return {"a": "data", "b": "reference", "k": clustering.k, "k_rule": cov.k_rule(None, len(X)),
            "test": cov.two_sample_test(X_a, X_b, seed=seed), "total_variation": shares["total_variation"],
            "clusters": biggest}
