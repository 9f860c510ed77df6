"""Export: curated rows, the split by duplicate cluster, writing every format, a whole project.

The project is built in the real test Redis with a fake context (the store, an embedding cache in
tmp_path, the real embedder, and a plain fake Label Studio that only serves task texts).
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from loop.labels.adjudication import final_labels
from loop.core.dataset import text_key
from loop.errors import ConfigError, DataError
from loop.curation.export import (
    COLUMNS,
    curated_rows,
    export_project,
    split_by_cluster,
    write_hf,
    write_rows,
)

P = 7
LABELS = ["billing", "delivery", "account", "technical", "out_of_scope"]

# id -> (text, round or None). Planted: it06/it07 are the same input after normalisation (an exact
# duplicate, same label); it08 is a near-duplicate of it02 (one contraction apart).
ITEMS = {
    "it01": ("I was charged twice for my order, please refund one of the payments.", 1),
    "it02": ("Where is my parcel? The tracking has not moved for a week.", 1),
    "it03": ("My account is locked after too many login attempts.", 1),
    "it04": ("The app crashes every time I open the orders page.", 1),
    "it05": ("What's the weather like in Paris today?", 1),
    "it06": ("Can I get a refund for the damaged kettle?", 1),
    "it07": ("can I get a refund for the   DAMAGED kettle?", 1),
    "it08": ("Where is my parcel? The tracking hasn't moved for a week.", 1),
    "it09": ("How do I change the email address on my profile?", 1),
    "it10": ("The checkout button does nothing when I click it.", 1),
    "it11": ("Tell me a joke about cats.", 1),
    "it12": ("Why was I charged an admin fee on my statement?", 1),
    "it13": ("My invoice shows the wrong amount for last month.", 2),
    "it14": ("The courier left my box in the rain and it is soaked.", 2),
    "it15": ("I never received the two-factor code by SMS.", 2),
    "it16": ("The website shows a blank page after I log in.", 2),
    "it17": ("Who won the football match last night?", 2),
    "it18": ("Please cancel the late fee, I paid on time.", 2),
    "it19": ("My order arrived with the wrong item inside.", 2),
    "it20": ("I want to close my account and delete my data.", 2),
    "it21": ("Error 503 when I try to pay with my card in the app.", 2),
    "it22": ("Can you recommend a good book to read?", 2),
    "it23": ("How long does delivery to Ireland take?", 2),
    "it24": ("I forgot my password and the reset link expired.", 2),
    "it25": ("Do you sell gift cards for birthdays?", None),
    "it26": ("The discount code SPRING10 did not apply at checkout.", None),
    "it27": ("Is the shop open on bank holidays?", None),
    "it28": ("My parcel was delivered to the neighbour by mistake.", None),
}
# Contradiction (added by the `contradiction` option): same input after normalisation, two labels.
CONTRA = {"it31": "My password reset email never arrives.", "it32": "my password reset email  never arrives."}

# item -> [(annotator, label)] in time order; round 1 labels under v1, round 2 under v2.
LABELS_OF = {
    "it01": [("ann", "billing"), ("bob", "billing")],                        # unanimous
    "it02": [("ann", "delivery"), ("bob", "delivery"), ("cat", "billing")],  # majority
    "it03": [("ann", "account"), ("bob", "technical")],                      # tie
    "it04": [("ann", "technical"), ("bob", "account")],                      # adjudicated by judge
    "it05": [("ann", "out_of_scope"), ("bob", "out_of_scope")],
    "it06": [("ann", "billing"), ("bob", "billing")],
    "it07": [("ann", "billing"), ("bob", "billing")],
    "it08": [("ann", "delivery"), ("bob", "delivery")],
    "it09": [("ann", "account"), ("bob", "account")],
    "it10": [("ann", "technical"), ("bob", "technical")],
    "it11": [("ann", "out_of_scope"), ("bob", "out_of_scope")],
    "it12": [("ann", "billing"), ("bob", "delivery"), ("cat", "billing")],
    "it13": [("ann", "billing"), ("cat", "billing")],
    "it14": [("ann", "delivery"), ("cat", "delivery")],
    "it15": [("ann", "account"), ("cat", "technical"), ("bob", "account")],
    "it16": [("ann", "technical"), ("cat", "technical")],
    "it17": [("ann", "out_of_scope"), ("cat", "out_of_scope")],
    "it18": [("ann", "billing"), ("cat", "billing")],
    "it19": [("ann", "delivery"), ("cat", "delivery")],
    "it20": [("ann", "account"), ("cat", "account")],
    "it21": [("ann", "technical"), ("cat", "billing")],
    "it22": [("ann", "out_of_scope"), ("cat", "out_of_scope")],
    "it23": [("ann", "delivery"), ("cat", "delivery")],
    "it24": [("ann", "account"), ("cat", "account")],
    "it25": [("ann", "billing")],                                            # outside the rounds
    "it26": [("ann", "billing")],
}
JUDGE = ("it04", "technical")
EXPECTED_DECIDED = {"it01": "unanimous", "it02": "majority", "it03": "tie-break", "it04": "adjudicated",
                    "it12": "majority", "it15": "majority", "it21": "tie-break", "it25": "unanimous"}

GUIDE_V1 = "# Support tickets v1\n\nLabel what the customer needs done.\n"
GUIDE_V2 = ("# Support tickets v2\n\nLabel what the customer needs done.\n\n## Two-factor codes\n\n"
            "A missing two-factor code is **account**, not technical.\n")


class FakeLabelStudio:
    """Only what export needs: the tasks' texts."""

    def __init__(self, texts: dict[str, str]):
        self.texts = dict(texts)
        self.calls = 0

    def task_texts(self, project_id: int) -> dict[str, str]:
        self.calls += 1
        return dict(self.texts)


@pytest.fixture(scope="session")
def embedder():
    from loop.core.embeddings import Embedder

    return Embedder()


def write_guidelines(folder: Path) -> Path:
    from tests.test_guidelines import write

    labels = {lab: f"definition of {lab}" for lab in LABELS}
    write(folder, "v1.md", 1, labels, body=GUIDE_V1, negatives=["out_of_scope"])
    write(folder, "v2.md", 2, labels, body=GUIDE_V2, negatives=["out_of_scope"])
    return folder


def build_project(store, tmp_path: Path, *, contradiction: bool = False) -> dict:
    """A project with two rounds, four annotators, two guideline versions and a source JSONL."""
    from loop.labels.guidelines import get

    texts = {i: t for i, (t, _) in ITEMS.items()}
    labels_of = dict(LABELS_OF)
    if contradiction:
        texts |= CONTRA
        labels_of |= {"it31": [("ann", "account"), ("cat", "account")],
                      "it32": [("ann", "technical"), ("cat", "technical")]}
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({"ticket": i, "body": t}) + "\n" for i, t in texts.items()), encoding="utf-8")
    guides = write_guidelines(tmp_path / "guidelines")
    v2 = get(guides, 2)
    store.save_project(P, {"id": P, "labels": LABELS, "text_field": "body", "label_field": None, "id_field": "ticket",
                           "source": str(source), "guideline_version": 2, "guideline_hash": v2.content_hash,
                           "guidelines_dir": str(guides), "budget": 200})
    store.add_items(P, {i: {"task_id": 1000 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())})
    for name in ("ann", "bob", "cat", "judge"):
        store.add_annotator({"name": name, "email": f"{name}@loop.local", "ls_user_id": len(name), "created_at": 0})

    rounds = {1: [i for i, (_, r) in ITEMS.items() if r == 1], 2: [i for i, (_, r) in ITEMS.items() if r == 2]}
    if contradiction:
        rounds[2] += list(CONTRA)
    for n, strategy, annotators in ((1, "random", ["ann", "bob", "cat"]), (2, "margin", ["ann", "bob", "cat"])):
        record = {"id": n, "created_at": 1000.0 * n, "strategy": strategy, "requested_strategy": strategy,
                  "size": len(rounds[n]), "overlap": 2, "annotators": annotators, "model_version": f"v{n}",
                  "guideline_version": n, "labels_spent": 0 if n == 1 else 26,
                  "metrics": {"n_labels": 0 if n == 1 else 12, "kappa": None if n == 1 else 0.812,
                              "dev_accuracy": None, "dev_macro_f1": None}}
        store.plan_round(P, record, {i: [a for a, _ in labels_of[i]] for i in rounds[n]})
        store.update_round(P, n, status="open")
    store.close_round(P, 1)
    store.update_round(P, 1, closing={"round": 1, "agreement": {"percent": 0.9, "alpha": 0.777, "mean_kappa": 0.8,
                                                                 "items": 12, "warnings": []}})

    annotations, k = {}, 0
    for item, labs in labels_of.items():
        version = 1 if ITEMS.get(item, ("", 2))[1] == 1 else 2
        for who, lab in labs:
            k += 1
            annotations[f"a{k}"] = {"id": f"a{k}", "item_id": item, "task_id": 0, "annotator": who, "label": lab,
                                    "skipped": False, "created_at": f"2026-01-01T00:{k // 60:02d}:{k % 60:02d}",
                                    "guideline_version": version, "guideline_hash": f"h{version}"}
    # a skip carries no label and makes no row; the adjudicator's ruling comes last
    annotations["skip"] = {"id": "skip", "item_id": "it27", "task_id": 0, "annotator": "bob", "label": None,
                           "skipped": True, "created_at": "2026-01-02T00:00:00", "guideline_version": 2}
    annotations["judge"] = {"id": "judge", "item_id": JUDGE[0], "task_id": 0, "annotator": "judge",
                            "label": JUDGE[1], "skipped": False, "created_at": "2026-01-03T00:00:00",
                            "guideline_version": 2, "guideline_hash": "h2"}
    store.replace_annotations(P, annotations)
    store.add_adjudication(P, {JUDGE[0]: {"adjudicator": "judge", "assigned_at": 0}})
    return {"texts": texts, "source": source, "guidelines": guides, "annotations": annotations}


@pytest.fixture
def project(redis_store, tmp_path):
    return build_project(redis_store, tmp_path)


def make_ctx(store, tmp_path: Path, embedder, texts: dict[str, str]):
    from loop.core.embeddings import EmbeddingCache

    return SimpleNamespace(store=store, cache=EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite"),
                           embedder=embedder, ls=FakeLabelStudio(texts), settings=None)


@pytest.fixture
def ctx(redis_store, tmp_path, embedder, project):
    return make_ctx(redis_store, tmp_path, embedder, project["texts"])


def read_back(path: Path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def as_csv(row: dict) -> dict:
    """What a row looks like read back from CSV: strings, None as "", annotations as JSON."""
    out = {}
    for k, v in row.items():
        if k == "annotations":
            out[k] = json.dumps(v, ensure_ascii=False)
        else:
            out[k] = "" if v is None else str(v)
    return out


# --------------------------------------------------------------------------------------------
# Rows


def test_rows_one_per_labelled_item_with_how_it_was_decided(redis_store, project):
    store = redis_store
    rows = curated_rows(project["texts"], store.annotations(P).values(), store.adjudication(P), store.assigned(P))
    by_id = {r["id"]: r for r in rows}
    assert list(by_id) == sorted(LABELS_OF)  # it27 (only a skip) and it28 (unlabelled) make no row
    assert all(list(r) == list(COLUMNS) for r in rows)
    assert {i: by_id[i]["decided_by"] for i in EXPECTED_DECIDED} == EXPECTED_DECIDED
    assert all(r["decided_by"] == "unanimous" for i, r in by_id.items() if i not in EXPECTED_DECIDED)
    # the labels are exactly the ones training uses
    assert {i: r["label"] for i, r in by_id.items()} == final_labels(store, P)
    assert by_id["it04"] | {"text": None} == {
        "id": "it04", "text": None, "label": "technical", "decided_by": "adjudicated", "confidence": 1.0,
        "n_labels": 2, "guideline_version": 2, "round": 1}  # the judge's ruling is v2; not counted as a vote
    assert by_id["it02"]["confidence"] == pytest.approx(2 / 3) and by_id["it02"]["n_labels"] == 3
    assert by_id["it03"]["confidence"] == 0.5 and by_id["it03"]["label"] in ("account", "technical")
    assert by_id["it01"]["text"] == ITEMS["it01"][0]
    assert [by_id[i]["round"] for i in ("it01", "it13", "it25")] == [1, 2, None]
    assert [by_id[i]["guideline_version"] for i in ("it01", "it13", "it25")] == [1, 2, 2]


def test_guideline_version_is_that_of_the_deciding_labels_ties_to_the_newest():
    texts = {"x": "some text", "y": "other text"}
    anns = [
        {"item_id": "x", "annotator": "a", "label": "p", "created_at": "1", "guideline_version": 1},
        {"item_id": "x", "annotator": "b", "label": "p", "created_at": "2", "guideline_version": 1},
        {"item_id": "x", "annotator": "c", "label": "q", "created_at": "3", "guideline_version": 3},
        {"item_id": "y", "annotator": "a", "label": "p", "created_at": "1", "guideline_version": 1},
        {"item_id": "y", "annotator": "b", "label": "p", "created_at": "2", "guideline_version": 2},
    ]
    rows = {r["id"]: r for r in curated_rows(texts, anns, {}, {})}
    assert rows["x"]["guideline_version"] == 1  # the dissenting v3 label did not decide it
    assert rows["y"]["guideline_version"] == 2  # one v1 and one v2 vote: the newer
    assert rows["x"]["round"] is None


def test_with_annotations_every_raw_label_in_time_order_with_the_adjudicator_flagged(redis_store, project):
    store = redis_store
    rows = curated_rows(project["texts"], store.annotations(P).values(), store.adjudication(P), store.assigned(P),
                        with_annotations=True)
    by_id = {r["id"]: r for r in rows}
    assert [(a["annotator"], a["label"], a["adjudicator"]) for a in by_id["it04"]["annotations"]] == [
        ("ann", "technical", False), ("bob", "account", False), ("judge", "technical", True)]
    assert [(a["annotator"], a["label"]) for a in by_id["it02"]["annotations"]] == LABELS_OF["it02"]
    assert by_id["it13"]["annotations"][0]["guideline_version"] == 2
    assert sum(len(r["annotations"]) for r in rows) == sum(map(len, LABELS_OF.values())) + 1


def test_rows_need_a_text_for_every_labelled_item(redis_store, project):
    texts = dict(project["texts"])
    del texts["it05"]
    with pytest.raises(DataError, match="1 labelled items have no text.*it05"):
        curated_rows(texts, redis_store.annotations(P).values(), {}, {})


# --------------------------------------------------------------------------------------------
# Split


def synthetic(n_clusters: int = 40, seed: int = 1):
    rng = np.random.default_rng(seed)
    rows, clusters = [], []
    for c in range(n_clusters):
        label = ["a", "b", "c"][c % 3]
        for _ in range(int(rng.integers(1, 5))):
            rows.append({"id": f"r{len(rows)}", "label": label})
            clusters.append(c)
    return rows, clusters


@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5, 0.7])
def test_split_never_puts_a_cluster_on_both_sides(test_size):
    rows, clusters = synthetic()
    cluster_of = {r["id"]: c for r, c in zip(rows, clusters)}
    for seed in range(8):
        train, test = split_by_cluster(rows, clusters, test_size=test_size, seed=seed)
        left, right = {cluster_of[r["id"]] for r in train}, {cluster_of[r["id"]] for r in test}
        assert not left & right
        assert sorted(r["id"] for r in train + test) == sorted(r["id"] for r in rows)
        assert abs(len(test) / len(rows) - test_size) < 0.2
        assert {r["label"] for r in test} == {"a", "b", "c"}  # stratified: every class on both sides


def test_split_is_reproducible_for_a_seed_and_keeps_input_order():
    rows, clusters = synthetic()
    first = split_by_cluster(rows, clusters, seed=3)
    assert first == split_by_cluster(rows, clusters, seed=3)
    assert any(split_by_cluster(rows, clusters, seed=s) != first for s in range(4, 8))
    index = {r["id"]: n for n, r in enumerate(rows)}
    assert all([index[r["id"]] for r in part] == sorted(index[r["id"]] for r in part) for part in first)


def test_split_with_fewer_clusters_than_folds_draws_a_share_of_the_clusters():
    rows = [{"id": str(i), "label": "ab"[i % 2]} for i in range(12)]
    clusters = [i // 3 for i in range(12)]  # 4 clusters; test_size 0.2 would need 5 folds
    train, test = split_by_cluster(rows, clusters, test_size=0.2, seed=0)
    assert len(test) == 3 and len({int(r["id"]) // 3 for r in test}) == 1 and len(train) == 9


def test_split_stratifies_small_classes_as_far_as_they_go():
    rows = [{"id": str(i), "label": "rare" if i < 3 else "common"} for i in range(30)]
    for seed in range(5):
        train, test = split_by_cluster(rows, list(range(30)), test_size=0.2, seed=seed)
        assert len(test) == 6  # one fold of five
        assert sum(r["label"] == "rare" for r in test) <= 1 and any(r["label"] == "rare" for r in train)


@pytest.mark.parametrize("bad", [0, 1, -0.2, 1.5, float("nan"), "0.2", True, None])
def test_test_size_must_be_a_fraction(bad):
    rows, clusters = synthetic()
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        split_by_cluster(rows, clusters, test_size=bad)


def test_one_cluster_cannot_be_split():
    rows = [{"id": str(i), "label": "a"} for i in range(5)]
    with pytest.raises(DataError, match="1 duplicate cluster"):
        split_by_cluster(rows, [0] * 5)


# --------------------------------------------------------------------------------------------
# Writing


def sample_rows(with_annotations: bool) -> list[dict]:
    rows = [
        {"id": "a", "text": "Héllo, \"quoted\", comma\nnew line", "label": "x", "decided_by": "unanimous",
         "confidence": 1.0, "n_labels": 2, "guideline_version": 1, "round": 1},
        {"id": "b", "text": "plain", "label": "y", "decided_by": "tie-break", "confidence": 0.5, "n_labels": 2,
         "guideline_version": None, "round": None},
    ]
    if with_annotations:
        rows[0]["annotations"] = [{"annotator": "ann", "label": "x", "guideline_version": 1,
                                   "created_at": "2026-01-01T00:00:00", "adjudicator": False}]
        rows[1]["annotations"] = [{"annotator": "ann", "label": "y", "guideline_version": None, "created_at": None,
                                   "adjudicator": False},
                                  {"annotator": "bob", "label": "x", "guideline_version": 2,
                                   "created_at": "2026-01-02T00:00:00", "adjudicator": True}]
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("with_annotations", [False, True])
def test_write_rows_round_trips(tmp_path, fmt, with_annotations):
    rows = sample_rows(with_annotations)
    path = write_rows(tmp_path / f"train.{fmt}", rows, fmt)
    expected = [as_csv(r) for r in rows] if fmt == "csv" else rows
    assert read_back(path, fmt) == expected
    assert [p.name for p in tmp_path.iterdir()] == [f"train.{fmt}"]  # no temporary file left


def test_write_rows_is_whole_or_nothing(tmp_path):
    path = tmp_path / "train.jsonl"
    write_rows(path, sample_rows(False), "jsonl")
    before = path.read_bytes()
    broken = sample_rows(False) + [{"id": "c", "text": object()}]
    with pytest.raises(TypeError):
        write_rows(path, broken, "jsonl")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]
    with pytest.raises(ConfigError, match="unknown file format 'xlsx'"):
        write_rows(tmp_path / "train.xlsx", [], "xlsx")
    with pytest.raises(DataError, match="does not exist"):
        write_rows(tmp_path / "nowhere" / "train.csv", [], "csv")


@pytest.mark.parametrize("with_annotations", [False, True])
def test_write_hf_round_trips(tmp_path, with_annotations):
    datasets = pytest.importorskip("datasets")
    rows = sample_rows(with_annotations)
    folder = write_hf(tmp_path / "dataset", {"train": rows, "test": rows[:1]})
    back = datasets.load_from_disk(str(folder))
    assert back["train"].to_list() == rows and back["test"].to_list() == rows[:1]
    assert back["train"].features == back["test"].features
    write_hf(tmp_path / "dataset", {"train": rows[1:], "test": rows[:1]})  # replaces the folder whole
    assert datasets.load_from_disk(str(folder))["train"].to_list() == rows[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_write_hf_without_datasets_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ConfigError, match=r"pip install 'loop-al\[hf\]'"):
        write_hf(tmp_path / "dataset", {"train": sample_rows(False)})
    assert not (tmp_path / "dataset").exists()


# --------------------------------------------------------------------------------------------
# A whole project (needs loop.curation.validate.validate)


def test_export_project_writes_splits_card_curve_and_report(ctx, project, tmp_path):
    out = tmp_path / "out"
    bars: dict[str, list] = {}

    def progress(description, total):
        bars[description] = [total, 0]
        return lambda n: bars[description].__setitem__(1, bars[description][1] + n)

    summary = export_project(ctx, P, out, fmt="jsonl", seed=0, progress=progress)
    assert bars == {"embedding": [len(LABELS_OF), len(LABELS_OF)], "validating": [8, 8]}
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "learning_curve.png", "test.jsonl", "train.jsonl",
                                                     "validation.json"]
    train, test = read_back(out / "train.jsonl", "jsonl"), read_back(out / "test.jsonl", "jsonl")
    assert summary["splits"] == {"train": len(train), "test": len(test)} and summary["rows"] == len(LABELS_OF)
    assert summary["blockers"] == [] and summary["text_source"] == "source" and ctx.ls.calls == 0
    rows = {r["id"]: r for r in train + test}
    assert {i: rows[i]["decided_by"] for i in EXPECTED_DECIDED} == EXPECTED_DECIDED
    assert {i: r["label"] for i, r in rows.items()} == final_labels(ctx.store, P)
    assert rows["it13"]["round"] == 2 and rows["it13"]["guideline_version"] == 2 and rows["it25"]["round"] is None
    assert "annotations" not in rows["it01"]
    # planted duplicates stay together
    side = {r["id"]: "train" for r in train} | {r["id"]: "test" for r in test}
    assert side["it06"] == side["it07"] and side["it02"] == side["it08"]
    report = json.loads((out / "validation.json").read_text())
    assert report["checks"]["exact_duplicates"]["count"] >= 1
    assert any({p["a"], p["b"]} == {"it02", "it08"} for p in report["checks"]["near_duplicates"]["pairs"])
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_duplicate_cluster_straddles_the_split_for_any_seed(ctx, project, tmp_path):
    for seed in range(4):
        out = tmp_path / f"out{seed}"
        export_project(ctx, P, out, fmt="jsonl", seed=seed, test_size=0.3)
        side = {r["id"]: name for name in ("train", "test") for r in read_back(out / f"{name}.jsonl", "jsonl")}
        assert side["it06"] == side["it07"] and side["it02"] == side["it08"]
        assert Counter(side.values())["test"] > 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips_csv_and_parquet_with_annotations(ctx, project, tmp_path, fmt):
    export_project(ctx, P, tmp_path / "jsonl", fmt="jsonl", with_annotations=True)
    export_project(ctx, P, tmp_path / fmt, fmt=fmt, with_annotations=True)
    for name in ("train", "test"):
        reference = read_back(tmp_path / "jsonl" / f"{name}.jsonl", "jsonl")
        expected = [as_csv(r) for r in reference] if fmt == "csv" else reference
        assert read_back(tmp_path / fmt / f"{name}.{fmt}", fmt) == expected
    rows = {r["id"]: r for r in read_back(tmp_path / "jsonl" / "train.jsonl", "jsonl")
            + read_back(tmp_path / "jsonl" / "test.jsonl", "jsonl")}
    assert [(a["annotator"], a["label"]) for a in rows["it12"]["annotations"]] == LABELS_OF["it12"]
    assert rows["it04"]["annotations"][-1] == {"annotator": "judge", "label": "technical", "guideline_version": 2,
                                               "created_at": "2026-01-03T00:00:00", "adjudicator": True}


def test_export_hf_folder_round_trips(ctx, project, tmp_path):
    datasets = pytest.importorskip("datasets")
    export_project(ctx, P, tmp_path / "jsonl", fmt="jsonl", with_annotations=True)
    summary = export_project(ctx, P, tmp_path / "hf", fmt="hf", with_annotations=True)
    back = datasets.load_from_disk(summary["files"]["dataset"])
    for name in ("train", "test"):
        assert back[name].to_list() == read_back(tmp_path / "jsonl" / f"{name}.jsonl", "jsonl")
    assert "dataset/train/*.arrow" in (tmp_path / "hf" / "README.md").read_text()


def test_export_refuses_contradictions_unless_allowed(redis_store, tmp_path, embedder):
    project = build_project(redis_store, tmp_path, contradiction=True)
    ctx = make_ctx(redis_store, tmp_path, embedder, project["texts"])
    out = tmp_path / "out"
    with pytest.raises(DataError, match="1 inputs carry different labels.*it31.*it32.*--allow-contradictions"):
        export_project(ctx, P, out)
    assert not out.exists() or not any(out.iterdir())  # nothing written
    summary = export_project(ctx, P, out, allow_contradictions=True)
    assert summary["contradictions"] == 1 and summary["allow_contradictions"] and summary["blockers"] == [
        "contradictions"]
    side = {r["id"]: name for name in ("train", "test") for r in read_back(out / f"{name}.jsonl", "jsonl")}
    assert side["it31"] == side["it32"]  # the contradicting pair is one cluster


def test_texts_come_from_label_studio_when_the_data_file_is_gone(ctx, project, tmp_path):
    project["source"].unlink()
    summary = export_project(ctx, P, tmp_path / "out")
    assert summary["text_source"] == "label-studio" and ctx.ls.calls == 1
    assert summary["rows"] == len(LABELS_OF)


def test_an_edited_data_file_does_not_relabel_other_texts(ctx, project, tmp_path):
    src = project["source"]
    src.write_text(src.read_text().replace("Tell me a joke about cats.", "I was charged twice!"), encoding="utf-8")
    ctx.ls.texts["it11"] = "Tell me a joke about cats."  # Label Studio still has what annotators saw
    export_project(ctx, P, tmp_path / "out")
    rows = {r["id"]: r for n in ("train", "test") for r in read_back(tmp_path / "out" / f"{n}.jsonl", "jsonl")}
    assert rows["it11"]["text"] == "Tell me a joke about cats." and ctx.ls.calls == 1


def test_no_text_anywhere_is_a_clear_error(ctx, project, tmp_path):
    project["source"].unlink()
    ctx.ls.texts.pop("it05")
    with pytest.raises(DataError, match="1 labelled items .*'it05'.*nor in Label Studio"):
        export_project(ctx, P, tmp_path / "out")


def test_bad_options_fail_before_any_work(ctx, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format 'xml'"):
        export_project(ctx, P, tmp_path / "out", fmt="xml")
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        export_project(ctx, P, tmp_path / "out", test_size=1.0)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# Real data: trec's duplicate texts (train and test pooled, each row one "gold" label)


@pytest.mark.realdata
def test_trec_duplicates_never_straddle_and_its_conflict_is_refused(redis_store, tmp_path, embedder):
    from loop.curation.validate import normalise
    from tests.conftest import shared_data

    folder = shared_data("trec")
    rows = [json.loads(line) for name in ("train", "test")
            for line in (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    for n, r in enumerate(rows):
        r["id"] = f"r{n}"  # train and test ids overlap
    groups = Counter(normalise(r["text"]) for r in rows)
    # every row with a duplicate, plus 300 others: the duplicates are what the split must respect
    keep = [r for r in rows if groups[normalise(r["text"])] > 1] + [r for r in rows
                                                                   if groups[normalise(r["text"])] == 1][:300]
    source = tmp_path / "trec.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
    labels = sorted({r["label"] for r in keep})
    redis_store.save_project(P, {"id": P, "labels": labels, "text_field": "text", "id_field": "id",
                                 "source": str(source), "guideline_version": None})
    redis_store.add_items(P, {r["id"]: {"task_id": n, "key": text_key(r["text"])} for n, r in enumerate(keep)})
    redis_store.replace_annotations(P, {r["id"]: {"id": r["id"], "item_id": r["id"], "annotator": "gold",
                                                  "label": r["label"], "created_at": "2026-01-01"} for r in keep})
    ctx = make_ctx(redis_store, tmp_path, embedder, {})
    with pytest.raises(DataError, match="what are the twin cities \\?"):  # train DESC vs test LOC
        export_project(ctx, P, tmp_path / "out")
    summary = export_project(ctx, P, tmp_path / "out", allow_contradictions=True, seed=1)
    assert summary["rows"] == len(keep) and summary["contradictions"] == 1
    side = {normalise(r["text"]): set() for r in keep}
    for name in ("train", "test"):
        for r in read_back(tmp_path / "out" / f"{name}.jsonl", "jsonl"):
            side[normalise(r["text"])].add(name)
    dupes = [t for t, n in groups.items() if n > 1]
    assert len(dupes) >= 66 and all(len(side[t]) == 1 for t in dupes)
    assert summary["splits"]["test"] / summary["rows"] == pytest.approx(0.2, abs=0.05)


# --------------------------------------------------------------------------------------------
# Label Studio's task texts (over a fake HTTP transport)


@pytest.mark.parametrize("n_tasks", [3, 4999, 5000])  # with the foreign task: 4, exactly 5000, 5001
def test_task_texts_reads_every_page_and_never_past_the_last(n_tasks):
    import httpx

    from loop.services.labelstudio import LabelStudioClient

    tasks = [{"id": t, "data": {"item_id": f"i{t}", "text": f"text {t}"}} for t in range(n_tasks)]
    tasks.append({"id": -1, "data": {"text": "a task loop did not import"}})
    pages = []

    def handler(request: httpx.Request) -> httpx.Response:
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        chunk = tasks[(page - 1) * size: page * size]
        pages.append(page)
        if not chunk:
            return httpx.Response(404, json={"detail": "Invalid page."})
        return httpx.Response(200, json={"tasks": chunk, "total": len(tasks)})

    client = LabelStudioClient("http://ls.test", "token")
    client.http = httpx.Client(base_url="http://ls.test", transport=httpx.MockTransport(handler))
    texts = client.task_texts(P)
    assert texts == {f"i{t}": f"text {t}" for t in range(n_tasks)}
    assert pages == list(range(1, -(-len(tasks) // 5000) + 1))  # ceil: one request per page, no more
    pages.clear()  # task_item_ids pages the same way
    assert client.task_item_ids(P) == {f"i{t}": t for t in range(n_tasks)}
    assert pages == list(range(1, -(-len(tasks) // 5000) + 1))
