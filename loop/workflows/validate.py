"""Running the validator on what a user has: a dataset file, or a loop project's labelled data.

`loop.curation.validate` holds the checks (pure functions over items and vectors); this module gathers
their inputs: reads the files, finds the label set and negatives, embeds through the shared cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from loop.core.dataset import Item
from loop.core.embeddings import embed_texts
from loop.errors import ConfigError, DataError
from loop.curation.validate import MIN_CHARS, MINORITY_FRACTION, NEAR_THRESHOLD, read_records, read_reference, validate

Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def _embed(ctx, items: Sequence[Item], what: str, progress: Progress) -> np.ndarray:
    matrix, _ = embed_texts([it.text for it in items], ctx.cache, ctx.embedder, progress=progress(what, len(items)))
    return matrix


def label_set(labels: Sequence[str] | None, guidelines: str | Path | None) -> tuple[list[str] | None, list[str] | None]:
    """(allowed labels, negative labels) from --labels or a guidelines folder; (None, None) without either."""
    from loop.labels.guidelines import current

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
    ref = read_reference(reference) if reference else None
    X = _embed(ctx, items, "embedding", progress)
    X_test = _embed(ctx, test_items, "embedding test file", progress) if test_items else None
    report = validate(items, embeddings=X, labels=labels, negatives=negatives, test=test_items, test_embeddings=X_test,
                      near_threshold=near_threshold, minority_fraction=minority_fraction, min_chars=min_chars,
                      reference=ref, label_errors=label_errors)
    return report


def validate_file(ctx, data: str | Path, *, test: str | Path | None = None, text_field: str = "text",
                  label_field: str = "label", id_field: str | None = None, labels: Sequence[str] | None = None,
                  guidelines: str | Path | None = None, near_threshold: float = NEAR_THRESHOLD,
                  minority_fraction: float = MINORITY_FRACTION, min_chars: int = MIN_CHARS,
                  reference: str | Path | None = None, label_errors: bool = True,
                  progress: Progress = _no_progress) -> dict[str, Any]:
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
    from loop.curation.export import curated_rows, project_texts

    store = ctx.store
    project = store.project(p)
    annotations = list(store.annotations(p).values())
    labelled = {a["item_id"] for a in annotations if a.get("label") is not None}
    if not labelled:
        raise DataError(f"project {p} has no labels yet; nothing to validate (`loop status` shows the rounds)")
    texts, source = project_texts(ctx, p, project, labelled)
    rows = curated_rows(texts, annotations, store.adjudication(p), store.assigned(p))
    return [Item(r["id"], r["text"], r["label"]) for r in rows], rows, source


def validate_project(ctx, p: int, *, test: str | Path | None = None, text_field: str = "text",
                     label_field: str = "label", id_field: str | None = None,
                     near_threshold: float = NEAR_THRESHOLD, minority_fraction: float = MINORITY_FRACTION,
                     min_chars: int = MIN_CHARS, reference: str | Path | None = None, label_errors: bool = True,
                     progress: Progress = _no_progress) -> dict[str, Any]:
    """Validate project p's labelled items (one aggregated label per item) against its label set and
    the negatives of its guidelines; `test` is a file checked for leakage."""
    from loop.curation.export import guideline_negatives

    project = ctx.store.project(p)
    items, _, source = project_items(ctx, p)
    report = _run(ctx, items, labels=project.get("labels"), negatives=guideline_negatives(project), test=test,
                  text_field=text_field, label_field=label_field, id_field=id_field, near_threshold=near_threshold,
                  minority_fraction=minority_fraction, min_chars=min_chars, reference=reference,
                  label_errors=label_errors, progress=progress)
    return {"project_id": p, "source": f"project {p}", "text_source": source,
            "test_source": str(test) if test else None, **report}
