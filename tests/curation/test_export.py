"""Export: curated rows, the split by duplicate cluster, writing every format, a whole project.

The project (tests/curation/sample_project.py) is built in the real test Redis with a fake context
(the store, an embedding cache in tmp_path, the real embedder, and the shared fake Label Studio
serving the tasks' texts).
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest

from loop.core.dataset import text_key
from loop.curation.export import COLUMNS, curated_rows, split_by_cluster, write_hf, write_rows
from loop.errors import ConfigError, DataError
from loop.workflows.curate import export_project
from loop.workflows.training import final_labels
from tests.curation.sample_project import (
    EXPECTED_DECIDED,
    ITEMS,
    LABELS_OF,
    OUTSIDE_ROUNDS,
    P,
    build_project,
    make_ctx,
    read_back,
)
from tests.helpers import shared_data


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
    assert all(r["decided_by"] == ("unanimous" if r["n_labels"] > 1 else "single")
               for i, r in by_id.items() if i not in EXPECTED_DECIDED)
    # the labels are exactly the ones training uses
    assert {i: r["label"] for i, r in by_id.items()} == final_labels(store, P)
    assert by_id["it04"] | {"text": None} == {
        "id": "it04", "text": None, "label": "technical", "decided_by": "adjudicated", "confidence": 1.0,
        "n_labels": 2, "guideline_version": 2, "round": 1}  # the judge's ruling is v2; not counted as a vote
    # confidence is the default aggregation's posterior: a 2-1 majority is likelier than a 1-1 tie, neither certain
    assert by_id["it02"]["n_labels"] == 3 and by_id["it02"]["decided_by"] == "majority"
    assert by_id["it03"]["label"] in ("account", "technical") and by_id["it03"]["decided_by"] == "tie-break"
    assert 0.5 <= by_id["it03"]["confidence"] < by_id["it02"]["confidence"] < 1.0
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


def test_split_when_every_class_has_fewer_items_than_folds():
    """StratifiedGroupKFold refuses when no class has k members; the split draws clusters instead."""
    rows = [{"id": str(i), "label": "abcd"[i % 4]} for i in range(8)]  # 2 per class, 8 clusters, 5 folds
    train, test = split_by_cluster(rows, list(range(8)), test_size=0.2, seed=0)
    assert len(test) == 2 and len(train) == 6 and not {r["id"] for r in test} & {r["id"] for r in train}


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
    assert summary["blockers"] == [] and summary["text_source"] == "source" and ctx.ls.calls == []
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


def test_the_export_holds_what_the_models_learn_from_under_the_training_policy(ctx, project, tmp_path):
    from loop.workflows.training import set_policy

    set_policy(ctx.store, P, guideline_version=2)
    export_project(ctx, P, tmp_path / "out", with_annotations=True)
    rows = {r["id"]: r for n in ("train", "test") for r in read_back(tmp_path / "out" / f"{n}.jsonl", "jsonl")}
    assert {i: r["label"] for i, r in rows.items()} == final_labels(ctx.store, P)
    assert "it01" not in rows and "it13" in rows  # it01 was labelled under v1 only
    assert {r["guideline_version"] for r in rows.values()} == {2}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "labels made under guideline v2" in card


def test_labels_nobody_was_sent_stay_out_until_an_operator_accepts_them(ctx, project, tmp_path):
    from loop.services.store import Keys

    ctx.store.r.delete(Keys.accepted(P))  # undo the sample's acceptance of it25 and it26
    export_project(ctx, P, tmp_path / "out")
    rows = {r["id"] for n in ("train", "test") for r in read_back(tmp_path / "out" / f"{n}.jsonl", "jsonl")}
    assert rows == set(LABELS_OF) - set(OUTSIDE_ROUNDS)
    ctx.store.accept(P, [aid for aid, a in project["annotations"].items() if a["item_id"] in OUTSIDE_ROUNDS])
    export_project(ctx, P, tmp_path / "again")
    rows = {r["id"] for n in ("train", "test") for r in read_back(tmp_path / "again" / f"{n}.jsonl", "jsonl")}
    assert rows == set(LABELS_OF)


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


def test_export_refuses_contradictions_unless_allowed(redis_store, tmp_path, embedder, fake_ls):
    project = build_project(redis_store, tmp_path, contradiction=True)
    ctx = make_ctx(redis_store, tmp_path, embedder, fake_ls, project["texts"])
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
    assert summary["text_source"] == "label-studio" and ctx.ls.calls == [("texts", None)]
    assert summary["rows"] == len(LABELS_OF)


def test_an_edited_data_file_does_not_relabel_other_texts(ctx, project, tmp_path):
    src = project["source"]
    src.write_text(src.read_text().replace("Tell me a joke about cats.", "I was charged twice!"), encoding="utf-8")
    ctx.ls.texts["it11"] = "Tell me a joke about cats."  # Label Studio still has what annotators saw
    export_project(ctx, P, tmp_path / "out")
    rows = {r["id"]: r for n in ("train", "test") for r in read_back(tmp_path / "out" / f"{n}.jsonl", "jsonl")}
    assert rows["it11"]["text"] == "Tell me a joke about cats." and ctx.ls.calls == [("texts", None)]


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
def test_trec_duplicates_never_straddle_and_its_conflict_is_refused(redis_store, tmp_path, embedder, fake_ls):
    from loop.curation.validate import normalise

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
    redis_store.accept(P, [r["id"] for r in keep])  # gold labels, taken in by the operator
    ctx = make_ctx(redis_store, tmp_path, embedder, fake_ls, {})
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
