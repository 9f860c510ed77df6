"""Coverage: where the pool (and production) lies in embedding space, and how much of it the labels cover.

Pure numpy / scikit-learn, no I/O. The clustering contract (`Clustering`, `choose_k`,
`cluster_embeddings`, `assign_clusters`) is shared by `loop coverage` and coverage-aware rounds.
Rows are L2-normalised sentence embeddings (`loop.core.embeddings`), so cosine similarity is a
dot product and the nearest centroid is the one with the largest dot product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loop.core.neighbours import embedding_matrix
from loop.errors import ConfigError

# choose_k: k = round(sqrt(n / 4)), clipped to [K_MIN, K_MAX] and to n.
K_MIN = 2
K_MAX = 100


@dataclass(frozen=True)
class Clustering:
    """A partition of the rows of X: `labels[i]` is the cluster of row i; `centroids` are unit rows."""

    labels: np.ndarray  # (n,) int, the cluster of each row of X
    centroids: np.ndarray  # (k, d) float32, L2-normalised

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def _normalise(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return (M / np.maximum(norms, 1e-12)).astype(np.float32)


def choose_k(n: int) -> int:
    """The number of clusters for n rows: round(sqrt(n / 4)), at least 2 and at most 100, never above n.

    sqrt(n / 4) gives clusters of about 2 * sqrt(n) rows: 100 items -> 5 clusters of 20,
    10,000 -> 50 of 200 (banking77's 10,003 training texts -> 50 for its 77 intents). The cap of
    100 keeps the report readable and the clustering cheap at 1M rows (10,000 rows a cluster).
    """
    if n < 1:
        raise ConfigError(f"cannot cluster {n} rows; the pool needs items (`loop init DATA`)")
    return int(min(n, max(K_MIN, min(K_MAX, round((n / 4) ** 0.5)))))


def assign_clusters(clustering: Clustering, Y: np.ndarray) -> np.ndarray:
    """The nearest centroid (cosine) of each row of Y, shape (len(Y),), in blocks of 65,536 rows."""
    Y = embedding_matrix("Y", Y)
    C = clustering.centroids
    if Y.shape[1] != C.shape[1]:
        raise ConfigError(f"Y has {Y.shape[1]} dimensions but the clustering has {C.shape[1]}; "
                          "embed both with the same model")
    out = np.empty(len(Y), dtype=np.int64)
    for start in range(0, len(Y), 65536):
        out[start:start + 65536] = np.argmax(Y[start:start + 65536] @ C.T, axis=1)
    return out


def cluster_embeddings(X: np.ndarray, k: int | None = None, seed: int = 0) -> Clustering:
    """MiniBatchKMeans on the rows of X (scales to 1M rows), deterministic for a seed.

    k defaults to `choose_k(len(X))`. The centroids are L2-normalised after fitting and each row's
    label is its nearest centroid by cosine (`assign_clusters`), so `labels` and
    `assign_clusters(c, X)` agree exactly. Clusters left empty by the fit are dropped (k can come out
    smaller than asked when X has fewer distinct rows).
    """
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    X = embedding_matrix("X", X)
    n = len(X)
    k = choose_k(n) if k is None else int(k)
    if not 1 <= k <= max(n, 1) or n == 0:
        raise ConfigError(f"k must be between 1 and the number of rows ({n}), got {k}")
    Xn = _normalise(X)
    if k == 1:
        centroids = _normalise(Xn.mean(axis=0, keepdims=True))
    else:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=min(4096, n),
                             max_iter=100, reassignment_ratio=0.01)
        # One thread: on 2 cores shared with other work, OpenMP threads waiting on each other made the
        # fit 12x slower (13k rows: 88 s with the default threads, 7 s with one; docs/benchmarks.md).
        with threadpool_limits(limits=1):
            km.fit(Xn)
        centroids = _normalise(km.cluster_centers_.astype(np.float32))
    labels = assign_clusters(Clustering(np.empty(0, dtype=np.int64), centroids), Xn)
    used = np.unique(labels)
    if len(used) < len(centroids):  # renumber 0..k'-1 without the empty clusters
        centroids = centroids[used]
        labels = np.searchsorted(used, labels)
    return Clustering(labels=labels.astype(np.int64), centroids=np.ascontiguousarray(centroids, dtype=np.float32))


# -- what each cluster holds ----------------------------------------------------------------------
# The three flags, and the thresholds they use (README, "Coverage"):
# under_covered: production (the pool, without a production sample) sends the cluster at least
#   MIN_TRAFFIC_SHARE_OF_MEAN x 1/k of its traffic and at least MIN_TRAFFIC_ITEMS items, while the
#   cluster's share of the labels is under UNDER_RATIO x its traffic share. Ranked by the gap
#   (traffic share - labelled share), largest first: the first row is the biggest hole.
# no_negative: the project knows its negative labels, and a cluster with at least
#   MIN_LABELLED_FOR_NEGATIVES labelled items has not one negative among them. Ranked by traffic.
# disagreement: agreement in the cluster (percent agreement on items with 2+ labels, on at least
#   MIN_AGREEMENT_ITEMS items) is more than AGREEMENT_MARGIN below the project's. Lowest first.
MIN_TRAFFIC_SHARE_OF_MEAN = 0.5
MIN_TRAFFIC_ITEMS = 5
UNDER_RATIO = 0.5
MIN_LABELLED_FOR_NEGATIVES = 5
MIN_AGREEMENT_ITEMS = 3
AGREEMENT_MARGIN = 0.10
N_TERMS = 5
N_EXAMPLES = 4


def _counts(clusters: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(np.asarray(clusters, dtype=np.int64), minlength=k)[:k]


def cluster_table(clustering: Clustering, labels: Sequence[str | None], *,
                  production: np.ndarray | None = None, negatives: Sequence[str] | None = None,
                  agreement: Mapping[int, Mapping[str, Any]] | None = None,
                  evaluation: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per cluster: how much of the pool and of production falls in it, and how well the labels cover it.

    labels: the final label of each pool row (None: unlabelled), aligned with clustering.labels.
    production: the cluster of each production row (`assign_clusters`), or None.
    negatives: the negative labels (None or empty: negatives are not counted).
    agreement: cluster -> {"value", "n_items"} (percent agreement on its items with 2+ labels).
    evaluation: {"clusters", "correct"}: the cluster of each gold/dev item and whether the model got it right.
    Shares: pool_share and production_share of all pool / production rows, labelled_share of all labels;
    labelled_fraction is the share of the cluster's own pool items that are labelled.
    """
    k = clustering.k
    if len(labels) != len(clustering.labels):
        raise ConfigError(f"{len(labels)} labels for {len(clustering.labels)} clustered rows; give one per row")
    pool = _counts(clustering.labels, k)
    prod = _counts(production, k) if production is not None else None
    negatives = set(negatives or ())
    mix: list[Counter] = [Counter() for _ in range(k)]
    for c, lab in zip(clustering.labels.tolist(), labels):
        if lab is not None:
            mix[c][lab] += 1
    n_labelled = sum(sum(m.values()) for m in mix)
    n_pool, n_prod = int(pool.sum()), int(prod.sum()) if prod is not None else 0
    ev_n = ev_ok = None
    if evaluation is not None and len(evaluation["clusters"]):
        ev_n = _counts(evaluation["clusters"], k)
        ev_ok = np.bincount(np.asarray(evaluation["clusters"], dtype=np.int64),
                            weights=np.asarray(evaluation["correct"], dtype=float), minlength=k)[:k]
    rows = []
    for c in range(k):
        labelled = sum(mix[c].values())
        agr = (agreement or {}).get(c) or {}
        row = {"cluster": c, "pool": int(pool[c]), "pool_share": pool[c] / n_pool if n_pool else 0.0,
               "production": None if prod is None else int(prod[c]),
               "production_share": None if prod is None else (prod[c] / n_prod if n_prod else 0.0),
               "labelled": labelled, "labelled_share": labelled / n_labelled if n_labelled else 0.0,
               "labelled_fraction": labelled / pool[c] if pool[c] else 0.0,
               "label_mix": dict(mix[c].most_common()),
               "negatives": sum(n for lab, n in mix[c].items() if lab in negatives) if negatives else None,
               "agreement": agr.get("value"), "agreement_items": int(agr.get("n_items") or 0),
               "eval_items": int(ev_n[c]) if ev_n is not None else 0,
               "accuracy": float(ev_ok[c] / ev_n[c]) if ev_n is not None and ev_n[c] else None}
        rows.append({k2: (float(v) if isinstance(v, np.floating) else v) for k2, v in row.items()})
    return rows


def traffic_share(row: Mapping[str, Any]) -> float:
    """The cluster's share of what the model will be asked: production's share, else the pool's."""
    return row["production_share"] if row["production_share"] is not None else row["pool_share"]


def flag_clusters(rows: Sequence[Mapping[str, Any]], *, negatives: Sequence[str] | None = None,
                  overall_agreement: float | None = None) -> dict[str, Any]:
    """The three flags over `cluster_table` rows, each a ranked list (see the thresholds above)."""
    k = len(rows)
    n_labels = sum(r["labelled"] for r in rows)
    under = []
    for r in rows:
        t, s = traffic_share(r), r["labelled_share"]
        volume = r["production"] if r["production"] is not None else r["pool"]
        if t >= MIN_TRAFFIC_SHARE_OF_MEAN / k and volume >= MIN_TRAFFIC_ITEMS and s < UNDER_RATIO * t:
            under.append({"cluster": r["cluster"], "traffic_share": t, "labelled_share": s, "gap": t - s,
                          "labelled": r["labelled"],
                          "labels_to_match": int(np.ceil(t * max(n_labels, 1) - r["labelled"]))})
    under.sort(key=lambda f: (-f["gap"], f["cluster"]))
    if negatives:
        no_neg = [{"cluster": r["cluster"], "labelled": r["labelled"], "traffic_share": traffic_share(r)}
                  for r in rows if r["labelled"] >= MIN_LABELLED_FOR_NEGATIVES and not r["negatives"]]
        no_neg.sort(key=lambda f: (-f["traffic_share"], f["cluster"]))
        negative_flag: dict[str, Any] = {"status": "done", "negatives": list(negatives), "clusters": no_neg}
    else:
        negative_flag = {"status": "skipped", "negatives": [], "clusters": [],
                         "reason": "the label set has no negative label (out_of_scope, none, refuse, or the "
                                   "guidelines' negatives)"}
    disagree = []
    if overall_agreement is not None:
        for r in rows:
            if r["agreement"] is not None and r["agreement_items"] >= MIN_AGREEMENT_ITEMS \
                    and r["agreement"] < overall_agreement - AGREEMENT_MARGIN:
                disagree.append({"cluster": r["cluster"], "agreement": r["agreement"],
                                 "agreement_items": r["agreement_items"]})
    disagree.sort(key=lambda f: (f["agreement"], f["cluster"]))
    return {"under_covered": under, "no_negative": negative_flag, "disagreement": disagree,
            "overall_agreement": overall_agreement,
            "thresholds": {"min_traffic_share": MIN_TRAFFIC_SHARE_OF_MEAN / k if k else None,
                           "min_traffic_items": MIN_TRAFFIC_ITEMS, "under_ratio": UNDER_RATIO,
                           "min_labelled_for_negatives": MIN_LABELLED_FOR_NEGATIVES,
                           "min_agreement_items": MIN_AGREEMENT_ITEMS, "agreement_margin": AGREEMENT_MARGIN}}


def top_terms(documents: Sequence[Sequence[str]], n_terms: int = N_TERMS) -> list[list[str]]:
    """The words that set each cluster apart (class-based TF-IDF): each cluster's texts joined into one
    document, TfidfVectorizer (English stop words dropped, sublinear tf) fitted on those k documents, and
    each document's n_terms highest-weighted words and word pairs. A cluster without text gets []."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    joined = [" ".join(texts) for texts in documents]
    if not any(d.strip() for d in joined):
        return [[] for _ in joined]
    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, ngram_range=(1, 2), min_df=1,
                          token_pattern=r"(?u)\b[^\W\d_][\w']+\b", max_features=50_000)
    try:
        W = vec.fit_transform(joined)
    except ValueError:  # nothing but stop words
        return [[] for _ in joined]
    vocab = vec.get_feature_names_out()
    out = []
    for i in range(W.shape[0]):
        row = W.getrow(i)
        order = np.argsort(-row.data, kind="stable")
        terms: list[str] = []
        chosen: list[set[str]] = []
        for j in row.indices[order]:
            term = str(vocab[j])
            words = set(term.split())
            if any(words <= w or w <= words for w in chosen):
                continue  # "card" after "card arrived", or "transfer declined" after "declined transfer"
            terms.append(term)
            chosen.append(words)
            if len(terms) == n_terms:
                break
        out.append(terms)
    return out


def representatives(clustering: Clustering, X: np.ndarray, n: int = N_EXAMPLES,
                    texts: Sequence[str] | None = None) -> list[list[int]]:
    """Per cluster, the rows of X nearest its centroid (cosine), up to n; with `texts`, rows whose
    text (stripped, casefolded) repeats one already chosen are skipped."""
    X = embedding_matrix("X", X)
    sims = np.einsum("ij,ij->i", X, clustering.centroids[clustering.labels])
    order = np.lexsort((-sims, clustering.labels))  # by cluster, nearest first
    out: list[list[int]] = [[] for _ in range(clustering.k)]
    seen: list[set] = [set() for _ in range(clustering.k)]
    for i in order.tolist():
        c = int(clustering.labels[i])
        if len(out[c]) >= n:
            continue
        if texts is not None:
            key = " ".join(texts[i].split()).casefold()
            if key in seen[c]:
                continue
            seen[c].add(key)
        out[c].append(i)
    return out


# -- distribution shift -------------------------------------------------------------------------
MAX_PER_SIDE = 2000    # the shift test draws at most this many rows from each side (seeded)
MIN_PER_SIDE = 10      # fewer rows than this on a side: no test (the permutation test is exact, but powerless)
PERMUTATIONS = 500     # the p-value's resolution is 1 / (PERMUTATIONS + 1)
SHIFT_ALPHA = 0.01     # a shift is reported when the test's p-value is below this


def two_sample_test(A: np.ndarray, B: np.ndarray, *, seed: int = 0, max_per_side: int = MAX_PER_SIDE,
                    permutations: int = PERMUTATIONS, alpha: float = SHIFT_ALPHA) -> dict[str, Any]:
    """Do the rows of A and the rows of B come from one distribution? Maximum mean discrepancy with a
    permutation test (Gretton et al. 2012, "A Kernel Two-Sample Test").

    At most `max_per_side` rows are drawn from each side (seeded, without replacement), which bounds
    the cost: one (a + b)^2 kernel matrix and one matrix product for all the permutations. Kernel:
    Gaussian on the embeddings, exp(-|x - y|^2 / s), s the median squared distance between the drawn
    rows (the median heuristic). Statistic: the biased estimate of MMD^2. p-value: (1 + the number of
    `permutations` of the side labels whose MMD^2 is at least the observed one) / (permutations + 1),
    exact under no shift whatever the data; `shift` is True when p < alpha. `mmd2_null` is the mean
    MMD^2 over the permutations: what the statistic looks like when nothing shifted.
    """
    from threadpoolctl import threadpool_limits

    A, B = embedding_matrix("A", A), embedding_matrix("B", B)
    base = {"method": "MMD (Gaussian kernel, median heuristic) with a permutation test", "alpha": alpha,
            "n_a": len(A), "n_b": len(B), "permutations": permutations, "seed": seed}
    if A.shape[1] != B.shape[1]:
        raise ConfigError(f"A has {A.shape[1]} dimensions but B has {B.shape[1]}; embed both with the same model")
    if min(len(A), len(B)) < MIN_PER_SIDE:
        return {**base, "status": "skipped", "shift": None, "p_value": None, "mmd2": None, "mmd2_null": None,
                "sample_a": 0, "sample_b": 0,
                "reason": f"needs at least {MIN_PER_SIDE} rows on each side, has {len(A)} and {len(B)}"}
    rng = np.random.default_rng(seed)
    a = A[np.sort(rng.choice(len(A), max_per_side, replace=False))] if len(A) > max_per_side else A
    b = B[np.sort(rng.choice(len(B), max_per_side, replace=False))] if len(B) > max_per_side else B
    X = np.vstack([a, b]).astype(np.float64)
    na, n = len(a), len(a) + len(b)
    sq = np.einsum("ij,ij->i", X, X)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * (X @ X.T), 0.0)
    scale = float(np.median(D[np.triu_indices(n, 1)])) or 1.0
    K = np.exp(-D / scale)
    del D
    # MMD^2 (biased) = w' K w with w = 1/na on side a and -1/nb on side b; one column of W per permutation.
    w = np.r_[np.full(na, 1.0 / na), np.full(n - na, -1.0 / (n - na))]
    W = np.empty((n, permutations + 1))
    W[:, 0] = w
    for j in range(1, permutations + 1):
        W[:, j] = w[rng.permutation(n)]
    with threadpool_limits(limits=1, user_api="blas"):  # as in cluster_embeddings: contended cores
        stats = np.einsum("ij,ij->j", W, K @ W)
    observed, null = float(stats[0]), stats[1:]
    p = float((1 + np.sum(null >= observed - 1e-12)) / (permutations + 1))
    return {**base, "status": "done", "shift": p < alpha, "p_value": p, "mmd2": observed,
            "mmd2_null": float(null.mean()), "sample_a": na, "sample_b": n - na}


def share_comparison(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, Any]:
    """Per cluster, its share of side a and of side b (a: the labelled set; b: production or the pool),
    the difference b - a, sorted by it (b's most under-represented clusters first); and the total
    variation distance between the two cluster distributions (0: the same shares; 1: disjoint)."""
    ca, cb = _counts(a, k), _counts(b, k)
    sa = ca / ca.sum() if ca.sum() else np.zeros(k)
    sb = cb / cb.sum() if cb.sum() else np.zeros(k)
    rows = [{"cluster": c, "a": int(ca[c]), "b": int(cb[c]), "share_a": float(sa[c]), "share_b": float(sb[c]),
             "difference": float(sb[c] - sa[c])} for c in range(k)]
    rows.sort(key=lambda r: (-r["difference"], r["cluster"]))
    return {"total_variation": float(0.5 * np.abs(sa - sb).sum()), "clusters": rows}


# -- the model's mistakes -----------------------------------------------------------------------
def error_clusters(clusters: np.ndarray, y_true: Sequence[str], y_pred: Sequence[str],
                   texts: Sequence[str] | None = None, n_examples: int = 3) -> dict[str, Any]:
    """The model's mistakes on gold/dev items, grouped two ways, worst first, each with examples.

    by_cluster: clusters with at least one mistake, by number of mistakes, then error rate;
    by_pair: (true label, predicted label) pairs, by number of mistakes. An example is
    {"index", "text", "label", "predicted"} (index into the inputs; text when `texts` is given).
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    if not len(clusters) == len(y_true) == len(y_pred):
        raise ConfigError(f"{len(clusters)} clusters, {len(y_true)} true labels and {len(y_pred)} predictions; "
                          "give one of each per evaluated item")
    wrong = [i for i in range(len(y_true)) if y_true[i] != y_pred[i]]

    def example(i: int) -> dict[str, Any]:
        out = {"index": i, "label": y_true[i], "predicted": y_pred[i]}
        if texts is not None:
            out["text"] = texts[i]
        return out

    total = Counter(clusters.tolist())
    by_c: dict[int, list[int]] = {}
    by_p: dict[tuple[str, str], list[int]] = {}
    for i in wrong:
        by_c.setdefault(int(clusters[i]), []).append(i)
        by_p.setdefault((y_true[i], y_pred[i]), []).append(i)
    cl = [{"cluster": c, "errors": len(ix), "items": total[c], "error_rate": len(ix) / total[c],
           "pairs": dict(Counter(f"{y_true[i]} -> {y_pred[i]}" for i in ix).most_common(3)),
           "examples": [example(i) for i in ix[:n_examples]]} for c, ix in by_c.items()]
    cl.sort(key=lambda r: (-r["errors"], -r["error_rate"], r["cluster"]))
    pairs = [{"label": t, "predicted": p, "errors": len(ix),
              "clusters": dict(Counter(int(clusters[i]) for i in ix).most_common(3)),
              "examples": [example(i) for i in ix[:n_examples]]} for (t, p), ix in by_p.items()]
    pairs.sort(key=lambda r: (-r["errors"], r["label"], r["predicted"]))
    return {"n_items": len(y_true), "errors": len(wrong),
            "accuracy": 1 - len(wrong) / len(y_true) if len(y_true) else None, "by_cluster": cl, "by_pair": pairs}


# -- the map --------------------------------------------------------------------------------------
def map_coordinates(centroids: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D positions of the clusters for the map: PCA of the centroids, shape (k, 2)."""
    from sklearn.decomposition import PCA

    C = embedding_matrix("centroids", centroids)
    if len(C) < 2:
        return np.zeros((len(C), 2))
    xy = PCA(n_components=2, random_state=seed).fit_transform(C)
    return np.asarray(xy, dtype=float)


# -- the report -----------------------------------------------------------------------------------
def k_rule(k_asked: int | None, n: int) -> str:
    if k_asked is not None:
        return f"k = {k_asked}, as asked"
    return f"k = round(sqrt(n / 4)) clipped to [{K_MIN}, {K_MAX}] = {choose_k(n)} for n = {n} rows"


def coverage_report(clustering: Clustering, X: np.ndarray, n_pool: int, labels: Sequence[str | None], *,
                    texts: Sequence[str] | None = None, negatives: Sequence[str] | None = None,
                    agreement: Mapping[int, Mapping[str, Any]] | None = None,
                    overall_agreement: float | None = None, evaluation: Mapping[str, Any] | None = None,
                    seed: int = 0, n_terms: int = N_TERMS, n_examples: int = N_EXAMPLES) -> dict[str, Any]:
    """Everything `loop coverage` reports, from a clustering of the pool's rows followed by production's.

    X: the clustered rows, the pool's first (n_pool of them), then production's (none: no production
    sample); `clustering.labels` is aligned with X. labels: the final label of each pool row (None:
    unlabelled). texts: one per row of X (for top terms and representative texts). evaluation:
    {"X", "y_true", "y_pred", "texts"} of gold/dev items and the model's predictions (or None).
    The shift compares the labelled pool rows with production, or with the whole pool without a
    production sample.
    """
    X = embedding_matrix("X", X)
    if len(X) != len(clustering.labels) or not 0 < n_pool <= len(X):
        raise ConfigError(f"{len(X)} rows, {len(clustering.labels)} cluster labels and n_pool {n_pool} do not fit")
    k = clustering.k
    pool_part = Clustering(labels=clustering.labels[:n_pool], centroids=clustering.centroids)
    prod = clustering.labels[n_pool:] if len(X) > n_pool else None
    ev = None
    if evaluation is not None and len(evaluation["y_true"]):
        ev_clusters = assign_clusters(clustering, evaluation["X"])
        ev = {"clusters": ev_clusters,
              "correct": [t == p for t, p in zip(evaluation["y_true"], evaluation["y_pred"])]}
    rows = cluster_table(pool_part, labels, production=prod, negatives=negatives, agreement=agreement, evaluation=ev)
    if texts is not None:
        if len(texts) != len(X):
            raise ConfigError(f"{len(texts)} texts for {len(X)} rows; give one text per row")
        docs: list[list[str]] = [[] for _ in range(k)]
        for c, t in zip(clustering.labels.tolist(), texts):
            docs[c].append(t)
        terms = top_terms(docs, n_terms)
        reps = representatives(clustering, X, n_examples, texts)
        for r in rows:
            r["terms"] = terms[r["cluster"]]
            r["examples"] = [texts[i] for i in reps[r["cluster"]]]
    flags = flag_clusters(rows, negatives=negatives, overall_agreement=overall_agreement)
    labelled_rows = np.array([i for i, lab in enumerate(labels) if lab is not None], dtype=np.int64)
    side_b = "production" if prod is not None else "pool"
    other = X[n_pool:] if prod is not None else X[:n_pool]
    other_clusters = prod if prod is not None else pool_part.labels
    shift = {"a": "labelled", "b": side_b,
             "test": two_sample_test(X[labelled_rows], other, seed=seed),
             **share_comparison(clustering.labels[labelled_rows], other_clusters, k)}
    errors = None
    if ev is not None:
        errors = error_clusters(ev["clusters"], list(evaluation["y_true"]), list(evaluation["y_pred"]),
                                evaluation.get("texts"))
    xy = map_coordinates(clustering.centroids, seed=seed)
    for r, (x, y) in zip(rows, xy.tolist()):
        r["map"] = [x, y]
    covered = [r for r in rows if r["labelled"]]
    return {"k": k, "pool": n_pool, "production": None if prod is None else len(prod),
            "labelled": int(len(labelled_rows)), "clusters_labelled": len(covered),
            "traffic_in_unlabelled_clusters": float(sum(traffic_share(r) for r in rows if not r["labelled"])),
            "negatives": list(negatives or []), "clusters": rows, "flags": flags, "shift": shift, "errors": errors}


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The few figures `loop status` and the data card show of a coverage report (JSON-serialisable)."""
    rows = {r["cluster"]: r for r in report["clusters"]}
    under = report["flags"]["under_covered"]
    top = under[0] if under else None
    test = report["shift"]["test"]
    neg = report["flags"]["no_negative"]
    return {"k": report["k"], "pool": report["pool"], "production": report["production"],
            "labelled": report["labelled"], "clusters_labelled": report["clusters_labelled"],
            "traffic_in_unlabelled_clusters": report["traffic_in_unlabelled_clusters"],
            "under_covered": len(under),
            "top_gap": None if top is None else {**top, "terms": rows[top["cluster"]].get("terms", [])},
            "no_negative": None if neg["status"] == "skipped" else len(neg["clusters"]),
            "disagreement": len(report["flags"]["disagreement"]),
            "shift": {"against": report["shift"]["b"], "p_value": test["p_value"], "shift": test["shift"],
                      "alpha": test["alpha"], "reason": test.get("reason"),
                      "total_variation": report["shift"]["total_variation"]},
            "errors": None if report["errors"] is None else {"items": report["errors"]["n_items"],
                                                             "errors": report["errors"]["errors"]}}


def summary_line(s: Mapping[str, Any]) -> str:
    """One line: clusters, how many the labels reach, the biggest hole, the shift."""
    where = "production" if s["production"] is not None else "the pool"
    parts = [f"{s['clusters_labelled']} of {s['k']} clusters labelled "
             f"({s['traffic_in_unlabelled_clusters']:.0%} of {where} in clusters with no label)"]
    top = s.get("top_gap")
    if top:
        name = ", ".join(top.get("terms", [])[:2]) or f"cluster {top['cluster']}"
        parts.append(f"{s['under_covered']} under-labelled (biggest: {name}: {top['traffic_share']:.0%} of "
                     f"{where}, {top['labelled_share']:.0%} of labels)")
    else:
        parts.append("no under-labelled cluster")
    if s.get("no_negative"):
        parts.append(f"{s['no_negative']} without a negative")
    sh = s["shift"]
    if sh["p_value"] is not None:
        parts.append(f"labelled vs {sh['against']}: {'shift' if sh['shift'] else 'no shift'} (p = {sh['p_value']:.3g})")
    return "; ".join(parts)
