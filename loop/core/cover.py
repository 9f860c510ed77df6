"""Coverage-aware rounds: spend a stated share of a round where production goes and the labels do not.

Pure numpy, no I/O. The caller clusters the pool, the labelled items and production together
(`core.coverage.cluster_embeddings` / `assign_clusters`) and passes the cluster of each pool row,
production's count per cluster and the labelled items' count per cluster. `cover_picks` then
spends `round(share x size)` picks (at least one when share > 0):

- **Gap clusters**: each cluster's gap is production's share of it minus the labels' share of
  it, positive part (a cluster production sends 30% of its traffic to and the labels hold 2% of
  has a gap of 0.28). The gap picks are apportioned to clusters in proportion to their gap
  (largest remainders; a cluster with fewer pool rows than its quota gives the rest to the others),
  and inside a cluster go to the highest `priority` first (the model's uncertainty; before a
  model, the cluster's most typical items; seeded random order breaks ties).
- **Negative-looking items**: `NEGATIVE_PART` of the cover picks (when the caller has a
  negative score) go to the pool rows with the highest score (`negative_scores`: the model's
  probability of the project's negative labels, when it knows one).

The rest of the round follows the usual strategy's ranking, skipping items already picked. Cover
picks that find nowhere to go (no gap, no pool rows in the gap clusters) go back to the
strategy, so with share 0, or with labels that already match production, the round is exactly the
usual strategy's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from loop.core.strategies import margin_measure
from loop.errors import ConfigError, EmptyPool

DEFAULT_COVER_SHARE = 0.2
# The part of the cover picks that goes to negative-looking items (when there is a score for them).
NEGATIVE_PART = 0.25


@dataclass(frozen=True)
class CoverPlan:
    picked: np.ndarray                 # indices into the pool, cover picks first, then the strategy's
    cover: np.ndarray                  # the cover picks (gap picks, then negative-looking picks)
    gap_picks: dict[int, int]          # cluster id -> picks spent on it for its gap
    negative_picks: np.ndarray         # the negative-looking picks (indices into the pool)
    gaps: dict[int, float] = field(default_factory=dict)  # cluster id -> production share - labelled share (> 0)

    def as_dict(self) -> dict:
        """What the round record keeps: how many picks came from coverage, and why."""
        return {"items": int(len(self.cover)), "gap_items": int(sum(self.gap_picks.values())),
                "negative_items": int(len(self.negative_picks)),
                "clusters": {str(c): n for c, n in sorted(self.gap_picks.items())},
                "gaps": {str(c): round(g, 4) for c, g in sorted(self.gaps.items(), key=lambda kv: -kv[1])[:10]}}


def check_share(share: float) -> float:
    try:
        share = float(share)
    except (TypeError, ValueError):
        raise ConfigError(f"--cover-share is {share!r}; give a share of the round in [0, 1], like 0.2") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"--cover-share is {share}; it must be in [0, 1] (0.2 spends a fifth of the round "
                          "on coverage)")
    return share


def cover_budget(size: int, share: float) -> int:
    """Picks spent on coverage in a round of `size`: round(share x size), at least 1 when share > 0."""
    return 0 if share <= 0 or size < 1 else min(size, max(1, int(np.floor(share * size + 0.5))))


def cluster_gaps(production_counts: np.ndarray, labelled_counts: np.ndarray) -> np.ndarray:
    """Per cluster, production's share minus the labels' share, positive part (0 without production)."""
    prod = np.asarray(production_counts, dtype=float)
    lab = np.asarray(labelled_counts, dtype=float)
    p = prod / prod.sum() if prod.sum() > 0 else np.zeros_like(prod)
    q = lab / lab.sum() if lab.sum() > 0 else np.zeros_like(lab)
    return np.maximum(p - q, 0.0)


def apportion(weights: np.ndarray, total: int, capacity: np.ndarray) -> np.ndarray:
    """`total` picks over clusters in proportion to `weights` (largest remainders, ties to the lower
    cluster id), none above a cluster's `capacity`; what a full cluster cannot take goes to the others."""
    weights = np.where(capacity > 0, np.asarray(weights, dtype=float), 0.0)
    quota = np.zeros(len(weights), dtype=np.int64)
    left = min(int(total), int(capacity[weights > 0].sum()))
    while left > 0:
        open_ = (weights > 0) & (quota < capacity)
        w = np.where(open_, weights, 0.0)
        exact = left * w / w.sum()
        add = np.minimum(np.floor(exact).astype(np.int64), capacity - quota)
        rest = left - int(add.sum())
        if rest > 0:  # largest remainders, among clusters with room after `add`
            remainder = np.where(open_ & (quota + add < capacity), exact - np.floor(exact), -1.0)
            order = np.lexsort((np.arange(len(w)), -remainder))
            for c in order[:rest]:
                if remainder[c] < 0:
                    break
                add[c] += 1
        if add.sum() == 0:
            break
        quota += add
        left -= int(add.sum())
    return quota


def _check(pool_clusters, production_counts, labelled_counts, ranking, size, share, negative_scores, priority):
    clusters = np.asarray(pool_clusters)
    if clusters.ndim != 1 or (len(clusters) and not np.issubdtype(clusters.dtype, np.integer)):
        raise ConfigError("pool_clusters must be a 1-D array of integer cluster ids, one per pool row")
    if len(clusters) == 0:
        raise EmptyPool("the pool is exhausted: 0 unlabelled items available; import more items with `loop init`")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"the round size is {size!r}; it must be a whole number of at least 1")
    share = check_share(share)
    prod, lab = np.asarray(production_counts), np.asarray(labelled_counts)
    if prod.ndim != 1 or prod.shape != lab.shape:
        raise ConfigError(f"production_counts and labelled_counts need one count per cluster each; got shapes "
                          f"{prod.shape} and {lab.shape}")
    if (prod < 0).any() or (lab < 0).any():
        raise ConfigError("cluster counts cannot be negative")
    if clusters.min() < 0 or clusters.max() >= len(prod):
        raise ConfigError(f"pool cluster ids must be in [0, {len(prod)}) (one count per cluster); got "
                          f"{int(clusters.min())}..{int(clusters.max())}")
    ranking = np.asarray(ranking, dtype=np.int64).ravel()
    if len(ranking) and (ranking.min() < 0 or ranking.max() >= len(clusters)):
        raise ConfigError(f"the strategy's ranking must index the pool (0..{len(clusters) - 1})")
    if len(np.unique(ranking)) != len(ranking):
        raise ConfigError("the strategy's ranking lists an item twice")
    for name, scores in (("negative_scores", negative_scores), ("priority", priority)):
        if scores is not None and np.shape(scores) != clusters.shape:
            raise ConfigError(f"{name} needs one score per pool row ({len(clusters)}), got shape {np.shape(scores)}")
    return clusters, prod, lab, ranking, share


def cover_picks(pool_clusters: np.ndarray, production_counts: Sequence[int], labelled_counts: Sequence[int],
                ranking: np.ndarray, size: int, share: float = DEFAULT_COVER_SHARE, *,
                negative_scores: np.ndarray | None = None, priority: np.ndarray | None = None,
                seed: int = 0) -> CoverPlan:
    """The round's picks (indices into the pool, at most `size`, no duplicates): the cover picks
    (module docstring), then the strategy's `ranking` (its batch in order; items already picked
    are skipped). Deterministic for a seed."""
    clusters, prod, lab, ranking, share = _check(pool_clusters, production_counts, labelled_counts, ranking,
                                                  size, share, negative_scores, priority)
    n = len(clusters)
    size = min(int(size), n)
    budget = cover_budget(size, share)
    n_negative = int(np.floor(budget * NEGATIVE_PART + 0.5)) if negative_scores is not None and budget else 0
    gaps = cluster_gaps(prod, lab)
    capacity = np.bincount(clusters, minlength=len(prod))
    quota = apportion(gaps, budget - n_negative, capacity)
    rng = np.random.default_rng(seed)
    # Inside a cluster: highest priority first; seeded random order breaks ties (and is the order without one).
    tiebreak = rng.permutation(n)
    key = np.zeros(n) if priority is None else -np.asarray(priority, dtype=float)
    order = np.lexsort((tiebreak, key))
    taken = np.zeros(n, dtype=bool)
    gap_rows: list[int] = []
    for c in np.flatnonzero(quota):
        members = order[clusters[order] == c][: quota[c]]
        gap_rows.extend(int(i) for i in members)
        taken[members] = True
    negative_rows: list[int] = []
    if n_negative:
        by_score = np.lexsort((tiebreak, -np.asarray(negative_scores, dtype=float)))
        negative_rows = [int(i) for i in by_score[~taken[by_score]][:n_negative]]
        taken[negative_rows] = True
    cover = np.asarray(gap_rows + negative_rows, dtype=np.int64)
    rest = [int(i) for i in ranking if not taken[i]][: size - len(cover)]
    return CoverPlan(picked=np.concatenate([cover, np.asarray(rest, dtype=np.int64)]), cover=cover,
                     gap_picks={int(c): int(quota[c]) for c in np.flatnonzero(quota)},
                     negative_picks=np.asarray(negative_rows, dtype=np.int64),
                     gaps={int(c): float(gaps[c]) for c in np.flatnonzero(gaps)})


def negative_scores(X_pool: np.ndarray, classifier, negatives: Sequence[str] = ()) -> np.ndarray | None:
    """How negative-looking each pool row is: the model's probability of the project's negative
    labels (`negatives`: the guidelines' own, else out_of_scope / none / refuse when in the label
    set), summed; None when there is no model or it knows none of them (then the whole cover share
    goes to the gaps). An earlier fallback, the distance from every labelled class's centroid, was
    measured and dropped: on banking77 and trec it did no better than spending those picks on the
    gaps (docs/benchmarks.md, "Coverage-aware rounds")."""
    if classifier is None:
        return None
    known = [i for i, c in enumerate(classifier.classes_) if str(c) in set(negatives)]
    if not known or not len(X_pool):
        return None
    return classifier.predict_proba(X_pool)[:, known].sum(axis=1)


def centrality(X: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    """Each row's cosine similarity to the mean of its cluster's rows: higher = more typical."""
    X = np.asarray(X, dtype=np.float32)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    means = np.zeros((k, X.shape[1]), dtype=np.float64)
    np.add.at(means, clusters, X)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", X, means[clusters].astype(np.float32))


def plan_cover(k: int, pool_clusters: np.ndarray, labelled_clusters: np.ndarray, production_clusters: np.ndarray,
               X_pool: np.ndarray, classifier, ranking: np.ndarray,
               size: int, share: float = DEFAULT_COVER_SHARE, *, negatives: Sequence[str] = (),
               seed: int = 0) -> CoverPlan:
    """`cover_picks` from clusters ids (k clusters): counts production and the labels per cluster,
    ranks inside a cluster by the model's uncertainty (top-2 margin) or, before a model, by
    `centrality` (the most typical items of the cluster first, as the cold start picks), and scores
    negative-looking items (`negative_scores`). One path for `next-round --cover` and
    `loop simulate --cover-share`."""
    production = np.bincount(np.asarray(production_clusters, dtype=np.int64), minlength=k)
    labelled = np.bincount(np.asarray(labelled_clusters, dtype=np.int64), minlength=k)
    if classifier is not None:
        priority = margin_measure(classifier, X_pool) if len(X_pool) else None
    else:
        priority = centrality(X_pool, np.asarray(pool_clusters, dtype=np.int64), k) if len(X_pool) else None
    return cover_picks(pool_clusters, production, labelled, ranking, size, share,
                       negative_scores=negative_scores(X_pool, classifier, negatives),
                       priority=priority, seed=seed)
