"""`loop validate` and `loop export` on what a user has: a dataset file, or a loop project's labels.

The checks are `curation.validate` (pure functions over items and vectors), the rows, split and
writers `curation.export`, the card `curation.datacard`; this module gathers their inputs: reads
the files, finds the label set and negatives, gets a project's texts and final labels (under its
training policy, as training sees them), embeds through the cache, and writes the export.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from loop.core.dataset import Item
from loop.core.embeddings import embed_texts
from loop.curation.datacard import card_facts, render_card
from loop.curation.export import (
    EXTENSIONS,
    FORMATS,
    HF_FOLDER,
    HF_HINT,
    _write_text,
    check_test_size,
    curated_rows,
    gold_rows,
    write_hf,
    write_rows,
)
from loop.curation.release import split_keeping_sides
from loop.curation.validate import (
    MIN_CHARS,
    MINORITY_FRACTION,
    NEAR_THRESHOLD,
    PROGRESS_STEPS,
    duplicate_clusters,
    read_records,
    read_reference,
    validate,
)
from loop.errors import ConfigError, DataError, NotInitialised
from loop.labels.guidelines import current, get
from loop.workflows import training
from loop.workflows.coverage import card_section as coverage_section
from loop.workflows.coverage import shift_between
from loop.workflows.progress import Progress, no_progress
from loop.workflows.status import plot_curve, status
from loop.workflows.texts import project_texts


def _embed(ctx, items: Sequence[Item], what: str, progress: Progress) -> np.ndarray:
    matrix, _ = embed_texts([it.text for it in items], ctx.cache, ctx.embedder, progress=progress(what, len(items)))
    return matrix


def label_set(labels: Sequence[str] | None, guidelines: str | Path | None) -> tuple[list[str] | None, list[str] | None]:
    """(allowed labels, negative labels) from --labels or a guidelines folder; (None, None) without either."""
    if labels and guidelines:
        raise ConfigError("give the label set once: --labels or --guidelines, not both")
    if labels:
        return list(labels), None
    if guidelines:
        g = current(guidelines)
        if g is None:
            raise ConfigError(f"{guidelines}: no guideline versions (v1.md, ...) in that folder")
        return list(g.labels), list(g.negatives) or None
    return None, None


def _run(ctx, items: list[Item], *, labels, negatives, test: str | Path | None, text_field: str, label_field: str,
         id_field: str | None, near_threshold: float, minority_fraction: float, min_chars: int,
         reference: str | Path | None, label_errors: bool, progress: Progress) -> dict[str, Any]:
    test_items = read_records(test, text_field=text_field, label_field=label_field, id_field=id_field) if test else None
    sample = reference_sample(reference, text_field, label_field) if reference else None
    if sample is None:
        ref = read_reference(reference) if reference else None
    else:  # a file of texts (production, an older release): its labels, if any, are the reference balance
        ref = dict(Counter(it.label for it in sample if it.label is not None)) or None
    X = _embed(ctx, items, "embedding", progress)
    X_test = _embed(ctx, test_items, "embedding test file", progress) if test_items else None
    report = validate(items, embeddings=X, labels=labels, negatives=negatives, test=test_items, test_embeddings=X_test,
                      near_threshold=near_threshold, minority_fraction=minority_fraction, min_chars=min_chars,
                      reference=ref, label_errors=label_errors)
    if sample is not None:
        X_ref = _embed(ctx, sample, "embedding reference", progress)
        report["shift"] = {"reference": str(reference), **shift_between(
            X, X_ref, [it.text for it in items] + [it.text for it in sample])}
    return report


def reference_sample(path: str | Path, text_field: str = "text", label_field: str = "label") -> list[Item] | None:
    """The rows of a `--reference` file that is a sample of texts (JSONL, CSV or Parquet rows with the
    text field and no count/share column), or None when it is a label distribution (`read_reference`)."""
    from loop.core.dataset import FORMATS, _rows

    path = Path(path)
    if not path.is_file() or path.suffix.lower() == ".json" or path.suffix.lower() not in FORMATS:
        return None
    first = next(iter(_rows(path)), None)
    if first is None or text_field not in first[1] or "count" in first[1] or "share" in first[1]:
        return None
    rows = [it for it in read_records(path, text_field=text_field, label_field=label_field) if it.text.strip()]
    return rows or None


def validate_file(ctx, data: str | Path, *, test: str | Path | None = None, text_field: str = "text",
                  label_field: str = "label", id_field: str | None = None, labels: Sequence[str] | None = None,
                  guidelines: str | Path | None = None, near_threshold: float = NEAR_THRESHOLD,
                  minority_fraction: float = MINORITY_FRACTION, min_chars: int = MIN_CHARS,
                  reference: str | Path | None = None, label_errors: bool = True,
                  progress: Progress = no_progress) -> dict[str, Any]:
    """Validate a dataset file (and, with `test`, its leakage into a test file)."""
    allowed, negatives = label_set(labels, guidelines)
    items = read_records(data, text_field=text_field, label_field=label_field, id_field=id_field)
    report = _run(ctx, items, labels=allowed, negatives=negatives, test=test, text_field=text_field,
                  label_field=label_field, id_field=id_field, near_threshold=near_threshold,
                  minority_fraction=minority_fraction, min_chars=min_chars, reference=reference,
                  label_errors=label_errors, progress=progress)
    return {"source": str(data), "test_source": str(test) if test else None, **report}


def project_items(ctx, p: int) -> tuple[list[Item], list[dict[str, Any]], str]:
    """The project's labelled items with their aggregated labels, the curated rows behind them, and
    where the texts came from."""
    store = ctx.store
    project = store.project(p)
    annotations, _ = training.labels_that_count(store, p)
    annotations = training.without_gold(store, p, annotations)  # the training labels, as models see them
    labelled = {a["item_id"] for a in annotations if a.get("label") is not None}
    if not labelled:
        raise DataError(f"project {p} has no labels yet; nothing to validate (`loop status` shows the rounds)")
    texts, source = project_texts(ctx, p, project, labelled)
    rows = curated_rows(texts, annotations, store.adjudication(p), store.assigned(p), policy=training.policy(store, p))
    return [Item(r["id"], r["text"], r["label"]) for r in rows], rows, source


def validate_project(ctx, p: int, *, test: str | Path | None = None, text_field: str = "text",
                     label_field: str = "label", id_field: str | None = None,
                     near_threshold: float = NEAR_THRESHOLD, minority_fraction: float = MINORITY_FRACTION,
                     min_chars: int = MIN_CHARS, reference: str | Path | None = None, label_errors: bool = True,
                     progress: Progress = no_progress) -> dict[str, Any]:
    """Validate project p's labelled items (one aggregated label per item) against its label set and
    the negatives of its guidelines; `test` is a file checked for leakage."""
    project = ctx.store.project(p)
    items, _, source = project_items(ctx, p)
    report = _run(ctx, items, labels=project.get("labels"), negatives=guideline_negatives(project), test=test,
                  text_field=text_field, label_field=label_field, id_field=id_field, near_threshold=near_threshold,
                  minority_fraction=minority_fraction, min_chars=min_chars, reference=reference,
                  label_errors=label_errors, progress=progress)
    return {"project_id": p, "source": f"project {p}", "text_source": source,
            "test_source": str(test) if test else None, **report}


def guideline_negatives(project: Mapping) -> list[str] | None:
    """The negative labels of the guideline in force, or None (the validator's defaults)."""
    folder = project.get("guidelines_dir")
    if not folder:
        return None
    try:
        g = get(folder, project.get("guideline_version"))
    except DataError:
        return None
    return list(g.negatives) or None


def export_project(ctx, p: int, out_dir: str | Path, *, fmt: str = "jsonl", test_size: float = 0.2,
                   seed: int = 0, with_annotations: bool = False, allow_contradictions: bool = False,
                   near_threshold: float | None = None, progress: Progress = no_progress,
                   keep_sides: Mapping[str, str] | None = None,
                   release: Callable[[dict, dict], dict] | None = None) -> dict[str, Any]:
    """Validate, split and write project p's curated dataset into out_dir with its data card.

    Files: train.<ext> and test.<ext> (or a `dataset/` folder for fmt "hf"), gold.<ext> when the
    project has a gold set (its trusted labels, never in train or test), README.md (the data card),
    learning_curve.png and validation.json. Refuses (DataError, nothing written) while
    identical inputs carry different labels, unless allow_contradictions (the card then says so).
    `loop release` passes `keep_sides` (item id -> the split its parent release put it in: it stays
    there) and `release(facts, splits)`, whose answer becomes the card's "release" section.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    test_size = check_test_size(test_size)
    near_threshold = NEAR_THRESHOLD if near_threshold is None else near_threshold
    if not 0 < near_threshold <= 1:
        raise ConfigError(f"--near-threshold is {near_threshold}; a cosine similarity threshold is in (0, 1]")
    if fmt == "hf":
        try:
            import datasets  # noqa: F401  (fail before any work, not after it)
        except ImportError:
            raise ConfigError(f"--format hf needs the `datasets` package; install it with {HF_HINT}") from None
    store = ctx.store
    project = store.project(p)
    if project is None:
        raise NotInitialised(f"project {p} is unknown; `loop init DATA` creates one")
    annotations, _ = training.labels_that_count(store, p)
    annotations = training.without_gold(store, p, annotations)  # gold goes to its own split, below
    labelled = {a["item_id"] for a in annotations if a.get("label") is not None}
    if not labelled:
        raise DataError(f"project {p} has no labels yet; nothing to export (`loop status` shows the rounds)")
    texts, text_source = project_texts(ctx, p, project, labelled)
    rows = curated_rows(texts, annotations, store.adjudication(p), store.assigned(p),
                        policy=training.policy(store, p), with_annotations=with_annotations)

    X, _ = embed_texts([r["text"] for r in rows], ctx.cache, ctx.embedder, progress=progress("embedding", len(rows)))
    items = [Item(r["id"], r["text"], r["label"]) for r in rows]
    gold = store.gold(p)
    gold_part, gold_items, X_gold = [], None, None
    if gold:  # the validator's leakage check runs against gold: a copy of a gold item in train inflates its score
        gold_texts, _ = project_texts(ctx, p, project, gold)
        gold_part = gold_rows(gold_texts, gold, store.assigned(p), with_annotations=with_annotations)
        gold_items = [Item(r["id"], r["text"], r["label"]) for r in gold_part]
        X_gold = _embed(ctx, gold_items, "embedding gold", progress)
    advance = progress("validating", PROGRESS_STEPS)
    report = validate(items, embeddings=X, labels=project.get("labels"), negatives=guideline_negatives(project),
                      test=gold_items, test_embeddings=X_gold,
                      near_threshold=near_threshold, seed=seed, progress=lambda check: advance(1))
    groups = report["checks"]["contradictions"].get("groups") or []
    if report["checks"]["contradictions"]["count"] and not allow_contradictions:
        shown = "; ".join(f"{g['text'][:60]!r}: " + ", ".join(f"{lab} ({', '.join(map(str, ids))})"
                                                              for lab, ids in g["labels"].items())
                          for g in groups[:3])
        more = f" and {len(groups) - 3} more" if len(groups) > 3 else ""
        raise DataError(f"{len(groups)} inputs carry different labels after normalisation: {shown}{more}. "
                        "Adjudicate or relabel them (`loop validate` lists them all), or pass "
                        "--allow-contradictions to export anyway (the data card records it)")

    # The validator's near-duplicate pairs, not a second search (it leaves out empty inputs).
    near = report["checks"]["near_duplicates"].get("pairs") or []
    clusters = duplicate_clusters(items, None, near_threshold, pairs=[(q["a"], q["b"]) for q in near])
    train, test = split_keeping_sides(rows, clusters, keep_sides or {}, test_size=test_size, seed=seed)
    splits = {"train": train, "test": test}
    if gold:  # the evaluation set, kept apart: never in train (nor test, whose split is by cluster)
        splits["gold"] = gold_part

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        written = {"dataset": str(write_hf(out / HF_FOLDER, splits))}
        data_files = {name: f"{HF_FOLDER}/{name}/*.arrow" for name in splits}
    else:
        written = {name: str(write_rows(out / f"{name}{EXTENSIONS[fmt]}", part, fmt)) for name, part in splits.items()}
        data_files = {name: f"{name}{EXTENSIONS[fmt]}" for name in splits}
    _write_text(out / "validation.json", json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    st = status(ctx, p, sync=False)
    curve = out / "learning_curve.png"
    tmp_png = out / f".learning_curve.{os.getpid()}.tmp.png"
    plot_curve(st, str(tmp_png))
    os.replace(tmp_png, curve)
    settings = {"format": fmt, "test_size": test_size, "seed": seed, "near_threshold": near_threshold,
                "with_annotations": with_annotations, "text_source": text_source}
    facts = card_facts(store, p, status=st, validation=report, splits=splits, data_files=data_files,
                       n_clusters=len(set(clusters)), allow_contradictions=allow_contradictions, settings=settings,
                       learning_curve=curve.name, annotations=annotations)
    facts["coverage"] = coverage_section(store, p)
    if release is not None:
        facts["release"] = release(facts, splits)
    card = _write_text(out / "README.md", render_card(facts))
    written |= {"card": str(card), "learning_curve": str(curve), "validation": str(out / "validation.json")}
    return {"project_id": p, "out_dir": str(out), "format": fmt, "files": written,
            "rows": len(rows), "splits": {name: len(part) for name, part in splits.items()},
            "clusters": len(set(clusters)), "blockers": report["blockers"],
            "contradictions": len(groups), "allow_contradictions": allow_contradictions,
            "text_source": text_source, "validation_ok": report["ok"]}
