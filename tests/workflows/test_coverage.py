"""`loop coverage` on a project (the curation tests' sample: 28 support tickets, real Redis, real
embeddings): a production sample with a planted gap (crypto questions the labels never saw), the
summary `loop status` shows, the data card's section, error clustering on gold, and `validate
--reference` with a file of texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.core.embeddings import embed_texts
from loop.core.model import train
from loop.errors import DataError
from loop.workflows import training
from loop.workflows.coverage import card_section, check_plot_path, project_coverage, read_production
from loop.workflows.curate import export_project, validate_file
from loop.workflows.status import coverage_summary
from tests.curation.sample_project import P, build_project, make_ctx

# What production sends that no label covers: questions about crypto wallets.
GAP = ["How do I move my bitcoin to a hardware wallet?", "Can I buy ethereum with my balance?",
       "Why is my crypto withdrawal still pending?", "What fee do you charge to sell bitcoin?",
       "My crypto wallet address was rejected.", "Is staking ethereum available in my country?",
       "How long does a bitcoin transfer take to confirm?", "Can I send crypto to an external wallet?"]
ALIKE = ["Where is my parcel? It has not arrived yet.", "I was charged twice for one order.",
         "The app crashes when I open my orders.", "My account is locked after a failed login."]


@pytest.fixture(scope="module")
def embedder():
    from loop.core.embeddings import Embedder

    return Embedder()


@pytest.fixture
def ctx(redis_store, tmp_path, embedder, fake_ls):
    project = build_project(redis_store, tmp_path)
    return make_ctx(redis_store, tmp_path, embedder, fake_ls, project["texts"])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def production_file(tmp_path: Path) -> Path:
    # Crypto is sent 3 times over (volume counts), the rest looks like the pool.
    return write_jsonl(tmp_path / "production.jsonl", [{"text": t} for t in GAP * 3 + ALIKE * 2])


def test_the_planted_gap_is_flagged_first_and_kept_for_status(ctx, tmp_path):
    report = project_coverage(ctx, P, production=production_file(tmp_path), negatives=["out_of_scope"], k=6)
    assert report["pool"] == 28 and report["production"] == 32 and report["k"] == 6
    assert sum(c["pool"] for c in report["clusters"]) == 28
    assert sum(c["production"] for c in report["clusters"]) == 32
    assert report["labelled"] == len(training.final_labels(ctx.store, P)) == 26
    first = report["flags"]["under_covered"][0]
    gap = next(c for c in report["clusters"] if c["cluster"] == first["cluster"])
    # Crypto may split into clusters: the first flagged holds no label; the flagged ones hold most of it.
    assert gap["labelled"] == 0 and gap["production"] >= 8 and gap["pool"] <= 1  # an unlabelled ticket may join
    assert sum(text in GAP for text in gap["examples"]) >= 3
    under = {f["cluster"] for f in report["flags"]["under_covered"]}
    flagged = [c for c in report["clusters"] if c["cluster"] in under]
    assert sum(c["production"] for c in flagged) >= 18 and all(c["labelled"] <= 1 for c in flagged)
    assert any(word in " ".join(gap["terms"]) for word in ("bitcoin", "crypto", "ethereum", "wallet"))
    # The labels hold out_of_scope; agreement per cluster rests on the items with 2+ labels.
    assert report["negatives"] == ["out_of_scope"] and report["flags"]["no_negative"]["status"] == "done"
    assert report["flags"]["overall_agreement"] is not None
    assert any(c["agreement"] is not None for c in report["clusters"])
    # The labelled set against production: a quarter of production is crypto, which no label has.
    assert report["shift"]["b"] == "production" and report["shift"]["test"]["status"] == "done"
    assert report["shift"]["clusters"][0]["cluster"] == first["cluster"]
    # No model and no gold: no errors to cluster, and the report says why.
    assert report["errors"] is None and "no gold items" in report["errors_reason"]
    # `loop status` reads the summary kept on the project (nothing computed there).
    kept = coverage_summary(ctx.store.project(P))
    assert kept["under_covered"] == len(report["flags"]["under_covered"]) and kept["production"] == 32
    assert "under-labelled" in kept["line"] and "`loop coverage`" in kept["line"]
    assert any(t in kept["line"] for t in gap["terms"])


def test_without_production_the_pool_stands_for_traffic_and_nothing_is_saved(ctx):
    report = project_coverage(ctx, P, save=False, k=4)
    assert report["production"] is None and report["shift"]["b"] == "pool"
    assert all(c["production"] is None for c in report["clusters"])
    assert "coverage" not in ctx.store.project(P)
    assert coverage_summary(ctx.store.project(P))["line"].startswith("not measured yet")


def test_model_mistakes_on_gold_are_clustered_by_pair(ctx, tmp_path):
    store = ctx.store
    labels = training.final_labels(store, P)
    texts = {i: t for i, t in ctx.ls.texts.items()}
    ids = sorted(i for i in labels if i not in ("it01", "it13"))
    X, _ = embed_texts([texts[i] for i in ids], ctx.cache, ctx.embedder)
    training.publish(store, P, train(X, [labels[i] for i in ids]), n_labels=len(ids))
    # it01 ("charged twice") and it13 (wrong invoice amount) are billing; gold says account on purpose.
    store.add_gold(P, {"it01": {"label": "account", "source": "test"}, "it13": {"label": "account", "source": "test"},
                       "it05": {"label": "out_of_scope", "source": "test"}})
    report = project_coverage(ctx, P, save=False, k=4)
    assert report["pool"] == 25  # gold kept apart
    errors = report["errors"]
    assert errors["sources"] == {"gold": 3} and errors["n_items"] == 3
    pair = errors["by_pair"][0]
    assert (pair["label"], pair["predicted"], pair["errors"]) == ("account", "billing", 2)
    assert {e["text"] for e in pair["examples"]} == {texts["it01"], texts["it13"]}
    assert errors["by_cluster"][0]["errors"] >= 1
    evaluated = sum(c["eval_items"] for c in report["clusters"])
    assert evaluated == 3 and report["model_version"] is not None


def test_the_card_has_a_coverage_section(ctx, tmp_path):
    before = export_project(ctx, P, tmp_path / "before")
    card = Path(before["files"]["card"]).read_text(encoding="utf-8")
    assert "Not measured: `loop coverage` was not run" in card.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    report = project_coverage(ctx, P, production=production_file(tmp_path), negatives=["out_of_scope"], k=6)
    section = card_section(ctx.store, P)
    assert section["status"] == "done" and section["production"] == 32 and section["measured_at"]
    assert section["under_covered_clusters"][0]["cluster"] == report["flags"]["under_covered"][0]["cluster"]
    result = export_project(ctx, P, tmp_path / "out")
    card = Path(result["files"]["card"]).read_text(encoding="utf-8")
    part = card.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    assert "production (`production.jsonl`)" in part and "Under-labelled clusters" in part
    assert "on 26 labelled items" in part and "in 6 clusters" in part
    assert "Shift of the labelled set against production (`production.jsonl`): " in part
    assert "Negatives (out_of_scope)" in part


def test_validate_reference_file_of_texts_reports_a_shift(ctx, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", [{"text": t, "label": "billing" if "charged" in t else "delivery"}
                                                 for t in ALIKE * 6])
    reference = write_jsonl(tmp_path / "reference.jsonl", [{"text": t, "label": "billing"} for t in GAP * 3])
    report = validate_file(ctx, data, reference=reference, label_errors=False)
    shift = report["shift"]
    assert shift["reference"] == str(reference) and shift["test"]["shift"] is True
    assert shift["test"]["p_value"] < 0.01
    # The reference's labels give the balance it is compared against.
    assert report["checks"]["class_balance"]["reference"]["missing_in_data"] == []
    plain = validate_file(ctx, data, label_errors=False)
    assert "shift" not in plain


def test_bad_production_files_and_plot_paths_fail_with_the_fix(ctx, tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": "  "}])
    with pytest.raises(DataError, match="no non-empty 'text' texts"):
        read_production(ctx, empty)
    with pytest.raises(DataError, match="no such file"):
        project_coverage(ctx, P, production=tmp_path / "missing.jsonl")
    from loop.errors import ConfigError

    with pytest.raises(ConfigError, match="ending in .png"):
        check_plot_path(tmp_path / "map.jpg")
    with pytest.raises(ConfigError, match="does not exist"):
        check_plot_path(tmp_path / "nowhere" / "map.png")


@pytest.mark.realdata
def test_banking77_train_as_pool_and_test_as_production(embedder, tmp_path):
    """A stratified sample (10 train and 5 test texts per intent, seeded: 1,155 texts to embed) of
    banking77: train covers every intent, so every cluster production falls in has labels, nothing
    is under-labelled and the balanced samples show no shift. Then the labels of 5 intents are removed
    (a planted gap): with k = 77 (about one intent per cluster) the first flagged cluster is mostly
    those intents (hidden share 0.59-0.80 over seeds 0-2 where the pool has 0.065)."""
    from collections import defaultdict

    import numpy as np

    from loop.curation.validate import read_records
    from loop.services.vectors import EmbeddingCache
    from loop.workflows.coverage import build
    from tests.helpers import shared_data

    folder = shared_data("banking77")
    rng = np.random.default_rng(0)

    def sample(items, n):
        by = defaultdict(list)
        for it in items:
            by[it.label].append(it)
        return [by[lab][i] for lab in sorted(by) for i in sorted(rng.choice(len(by[lab]), n, replace=False))]

    pool, prod = sample(read_records(folder / "train.jsonl"), 10), sample(read_records(folder / "test.jsonl"), 5)
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    X, _ = embed_texts([it.text for it in pool], cache, embedder)
    T, _ = embed_texts([it.text for it in prod], cache, embedder)
    texts = [it.text for it in pool]
    full = build(X, texts, [it.label for it in pool], production=(prod, T), seed=0)
    assert full["k"] == 17 and full["clusters_labelled"] == 17
    assert full["traffic_in_unlabelled_clusters"] == 0.0 and full["flags"]["under_covered"] == []
    assert full["shift"]["test"]["shift"] is False

    hidden = set(rng.choice(sorted({it.label for it in pool}), 5, replace=False).tolist())
    labels = [None if it.label in hidden else it.label for it in pool]
    planted = build(X, texts, labels, production=(prod, T), k=77, seed=0)
    first = planted["flags"]["under_covered"][0]
    from loop.core.coverage import cluster_embeddings

    rows = cluster_embeddings(np.concatenate([X, T]), k=77, seed=0).labels[:len(X)] == first["cluster"]
    share = np.mean([pool[i].label in hidden for i in np.flatnonzero(rows)])
    assert share > 5 * len(hidden) / 77
