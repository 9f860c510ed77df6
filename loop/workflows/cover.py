"""`next-round --cover production.jsonl`: spend a share of the round where production goes and the labels do not.

Reads the production file (texts only; a text sent many times counts as many times: volume is the
point), embeds it through the workspace's cache, clusters the project's pool, its labelled items
and production together (`core.coverage.cluster_embeddings`, k by its `choose_k`), and hands the
clusters to `core.cover.plan_cover`, which keeps the usual strategy's batch for the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from loop.core.cover import CoverPlan, check_share, plan_cover
from loop.core.coverage import cluster_embeddings
from loop.core.dataset import existing_file
from loop.workflows.coverage import negative_labels, read_production


def check_cover(path: str | Path | None, share: float) -> float:
    """Reject a missing file or a bad share before any service is contacted."""
    share = check_share(share)
    if path is not None:
        existing_file(path)
    return share


def project_negatives(project: Mapping[str, Any]) -> list[str]:
    """The project's negative labels, by `loop coverage`'s rule (the guidelines' own, else its defaults)."""
    from loop.workflows.curate import guideline_negatives

    return negative_labels(project.get("labels") or [], guideline_negatives(project))


def cover_round(ctx, project: Mapping[str, Any], path: str | Path, share: float, X_pool: np.ndarray,
                X_train: np.ndarray, classifier, ranking: np.ndarray, size: int,
                seed: int) -> tuple[CoverPlan, dict[str, Any]]:
    """The round's picks with coverage, and what the round record keeps of it."""
    _, X_prod = read_production(ctx, path)
    parts = [X_pool, X_train, X_prod]
    clustering = cluster_embeddings(np.concatenate([m for m in parts if len(m)]), seed=seed)
    labels = clustering.labels
    n_pool, n_train = len(X_pool), len(X_train)
    plan = plan_cover(clustering.k, labels[:n_pool], labels[n_pool:n_pool + n_train], labels[n_pool + n_train:],
                      X_pool, classifier, ranking, size, share,
                      negatives=project_negatives(project), seed=seed)
    record = {"source": str(path), "share": share, "k": clustering.k, "production_rows": len(X_prod),
              **plan.as_dict()}
    return plan, record
