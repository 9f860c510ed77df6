"""The data card: Hugging Face front matter, and every figure traced back to the loop's records."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import yaml

from loop.curation.datacard import COLUMN_DOCS, _demote, _limitations, card_facts, render_card, size_category
from loop.labels.agreement import agreement_report
from loop.labels.policy import TrainingPolicy
from loop.workflows.agreement import project_records
from loop.workflows.curate import export_project
from loop.workflows.status import status
from tests.curation.sample_project import GUIDE_V2, LABELS, P, build_project, make_ctx, read_back


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


@pytest.fixture
def exported(ctx, project, tmp_path):
    out = tmp_path / "out"
    summary = export_project(ctx, P, out, fmt="jsonl", seed=0)
    rows = {name: read_back(out / f"{name}.jsonl", "jsonl") for name in ("train", "test")}
    return {"out": out, "summary": summary, "card": (out / "README.md").read_text(encoding="utf-8"),
            "rows": rows, "report": json.loads((out / "validation.json").read_text())}


def test_front_matter_is_hugging_face_dataset_card_yaml(exported):
    meta, body = split_card(exported["card"])
    assert meta == {
        "pretty_name": f"tickets (loop project {P})", "license": "other",
        "task_categories": ["text-classification"], "task_ids": ["multi-class-classification"],
        "size_categories": ["n<1K"], "tags": ["loop", "active-learning"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "train.jsonl"},
                                                              {"split": "test", "path": "test.jsonl"}]}]}
    assert "language" not in meta  # unknown, so omitted rather than guessed
    assert body.lstrip().startswith(f"# tickets (loop project {P})")


def test_the_card_loads_as_a_hugging_face_dataset(exported, tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    loaded = datasets.load_dataset(str(exported["out"]), cache_dir=str(tmp_path / "hf-cache"))
    for name in ("train", "test"):
        assert loaded[name].to_list() == exported["rows"][name]


def test_the_card_holds_the_measured_figures(exported, ctx, redis_store):
    card, rows, report = exported["card"], exported["rows"], exported["report"]
    every = rows["train"] + rows["test"]
    # counts and label balance
    total = Counter(r["label"] for r in every)
    for lab in LABELS:
        n_train = sum(r["label"] == lab for r in rows["train"])
        n_test = sum(r["label"] == lab for r in rows["test"])
        assert f"| {lab} | {n_train} | {n_test} | {total[lab]} | {100 * total[lab] / len(every):.1f}% |" in card
    assert f"{len(every)} labelled items ({len(rows['train'])} train, {len(rows['test'])} test)" in card
    decided = Counter(r["decided_by"] for r in every)
    assert all(f"{how} {n}" in card for how, n in decided.items()) and decided["adjudicated"] == 1
    assert decided["single"] == 2 and decided["unanimous"] == 18  # it25, it26: one label each, not unanimous
    assert f"| decided_by | {COLUMN_DOCS['decided_by']} |" in card and "single (one annotator's label" in card
    assert f"(labels: {TrainingPolicy.of(redis_store.project(P)).describe()})" in card  # the training policy
    # agreement, overall, per round and per guideline version, as `loop agreement` computes it
    for where, name in (({}, "all labels"), ({"round_id": 1}, "1"), ({"round_id": 2}, "2"),
                        ({"guideline_version": 1}, "v1"), ({"guideline_version": 2}, "v2")):
        a = agreement_report(project_records(redis_store, P, **where))
        line = (f"| {name} | {a['percent_agreement']['n_items']} | {100 * a['percent_agreement']['value']:.1f}% | "
                f"{a['krippendorff_alpha']['value']:.3f} | {a['cohen_kappa']['mean']:.3f} |")
        assert line in card, line
    assert "| 0.777 |" in card  # round 1's alpha when it closed, as recorded
    # annotators
    assert "3 annotators" in card and "| ann | " in card and "judge (1 assigned)" in card
    # the aggregation and the training labels' expected accuracy: the mean posterior of the rows
    method = TrainingPolicy.of(redis_store.project(P)).aggregation
    expected = sum(1.0 if r["decided_by"] == "adjudicated" else float(r["confidence"]) for r in every) / len(every)
    assert (f"- Aggregation: `{method}`; estimated share of training labels that are right: {expected:.1%}"
            in card)
    ann_rel = [line for line in card.splitlines() if line.startswith("| ann | ")][-1]
    assert "% | " in ann_rel and " - " not in ann_rel  # an estimate, its interval and the labels it rests on
    # selection and stopping
    assert "| 1 | closed | random | 12 | 2 | ann, bob, cat | 0 | v1 | v1 |" in card
    assert "| 2 | open | margin | 12 | 2 | ann, bob, cat | 26 | v2 | v2 |" in card
    assert "of a budget of 200" in card
    st = status(ctx, P, sync=False)
    assert st["stop"]["kappa"]["reason"] in card and "| 2 | 12 | 0.812 |" in card
    assert "![learning curve](learning_curve.png)" in card and (exported["out"] / "learning_curve.png").is_file()
    # validation: every check's status, severity and count
    for name, check in report["checks"].items():
        assert f"| {name} | {check['status']} | {check['severity']} | {check['count']} |" in card
    assert report["checks"]["exact_duplicates"]["count"] >= 1 and report["checks"]["near_duplicates"]["count"] >= 1
    # guidelines: the version in force, its hash and its full text
    record = redis_store.project(P)
    assert f"Version in force: v2 (hash {record['guideline_hash']})" in card
    assert "### Support tickets v2" in card and GUIDE_V2.splitlines()[-1] in card
    assert "| billing | definition of billing |" in card and "Negative labels: out_of_scope." in card


def test_known_limitations_come_from_the_facts(exported):
    limits = exported["card"].split("## Known limitations", 1)[1]
    assert "2 of 26 items have a single label: nobody checked them" in limits  # it25, it26
    assert "2 items had equally many votes" in limits and "Dawid-Skene" in limits  # it03, it21 (majority-ds)
    assert "Labels come from 2 guideline versions (v1: 11, v2: 15)" in limits
    assert "2 items were labelled outside the loop's rounds" in limits
    assert "No labelled dev set" in limits and "did not recommend stopping" in limits
    assert "Contradictions allowed" not in exported["card"]


def test_labels_shown_a_suggestion_edited_by_others_late_or_left_out_are_limitations(ctx, project, exported,
                                                                                      redis_store):
    st = status(ctx, P, sync=False) | {"labels_with_suggestion": 3, "labels_edited_by_other": [{"id": "a1"}],
                                       "labels_changed_after_close": [{"id": "a2"}, {"id": "a3"}],
                                       "labels_outside": [{"id": "a4"}]}
    facts = card_facts(redis_store, P, status=st, validation=exported["report"], splits=exported["rows"],
                       data_files={"train": "train.jsonl", "test": "test.jsonl"})
    limits = render_card(facts).split("## Known limitations", 1)[1]
    assert "3 labels were made with the model's answer shown" in limits
    assert "1 label was changed by someone other than its author" in limits
    assert "2 labels were made or changed after their round closed" in limits
    assert "1 label is left out: made on an item its author was not sent" in limits
    assert "answer shown" not in exported["card"]  # the sample project has none of these


def test_allowed_contradictions_are_said_near_the_top_and_in_the_limitations(redis_store, tmp_path, embedder, fake_ls):
    project = build_project(redis_store, tmp_path, contradiction=True)
    ctx = make_ctx(redis_store, tmp_path, embedder, fake_ls, project["texts"])
    export_project(ctx, P, tmp_path / "out", allow_contradictions=True)
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    top = card.split("## Summary", 1)[0]
    assert "contradictions allowed" in top.lower() and "1 input(s) appear with different labels" in top
    assert "(exported with --allow-contradictions)" in card
    assert "**Contradictions were allowed** (`--allow-contradictions`)" in card
    assert "| contradictions | found | blocker | 1 |" in card
    assert "Contradictions allowed: 1 input(s)" in card.split("## Known limitations", 1)[1]


def test_facts_are_json_and_the_card_is_a_pure_function_of_them(ctx, project, exported, redis_store):
    splits = exported["rows"]
    facts = card_facts(redis_store, P, status=status(ctx, P, sync=False), validation=exported["report"],
                       splits=splits, data_files={"train": "train.jsonl", "test": "test.jsonl"}, n_clusters=3,
                       settings={"test_size": 0.2, "seed": 0}, language="en", license="cc-by-4.0")
    again = json.loads(json.dumps(facts))
    assert render_card(again) == render_card(facts)
    meta, _ = split_card(render_card(facts))
    assert meta["language"] == ["en"] and meta["license"] == "cc-by-4.0"
    assert facts["counts"]["n_labels"] == {"1": 2, "2": 21, "3": 3}
    assert facts["annotators"]["count"] == 3 and facts["guidelines"]["version"] == 2


def test_a_guideline_file_edited_after_it_was_applied_is_a_limitation(ctx, project, exported, redis_store):
    v2 = project["guidelines"] / "v2.md"
    v2.write_text(v2.read_text() + "\nEdited later.\n", encoding="utf-8")
    facts = card_facts(redis_store, P, status=status(ctx, P, sync=False), validation=exported["report"],
                       splits=exported["rows"], data_files={"train": "train.jsonl", "test": "test.jsonl"})
    assert any("changed since it was applied" in line for line in facts["limitations"])
    assert "Edited later." in render_card(facts)


def test_size_categories_follow_the_hub_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


def test_guideline_headings_nest_under_the_card_but_code_is_left_alone():
    text = "# Title\n\nSome text.\n\n```\n# a comment\n```\n## Sub"
    assert _demote(text) == "### Title\n\nSome text.\n\n```\n# a comment\n```\n#### Sub"


def test_a_project_without_guidelines_says_so(redis_store, tmp_path, embedder, fake_ls):
    project = build_project(redis_store, tmp_path)
    redis_store.save_project(P, {"guidelines_dir": None}, make_current=False)
    ctx = make_ctx(redis_store, tmp_path, embedder, fake_ls, project["texts"])
    export_project(ctx, P, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "set up without versioned guidelines" in card.split("## Known limitations", 1)[1]
    assert "### Support tickets v2" not in card


# Any count of one followed, within three words, by a plural noun ("1 items", "1 contested items").
PLURAL_AFTER_ONE = re.compile(r"(?<![\d.])1 ([a-z-]+ ){0,3}(items|rows|inputs|pairs|groups|annotators|rounds|"
                              r"labels|were|have)\b")


def test_counts_of_one_are_singular_and_more_are_plural(ctx, project, exported, redis_store):
    facts = card_facts(redis_store, P, status=status(ctx, P, sync=False), validation=exported["report"],
                       splits=exported["rows"], data_files={"train": "train.jsonl", "test": "test.jsonl"})
    facts["counts"] |= {"rows": 1, "outside_rounds": 1, "decided_by": {"single": 1, "tie-break": 1}}
    facts["status"] |= {"contested": 1, "labels_spent": 1, "items": 1}
    facts["annotators"] |= {"count": 1, "adjudicated": 1}
    facts["agreement"]["overall"]["pairable_items"] = 1
    facts["selection"]["rounds"] = facts["selection"]["rounds"][:1]
    facts["training_policy"]["aggregation"] = "majority"
    facts["validation"]["checks"]["label_errors"] = {"status": "found", "severity": "review", "count": 1}
    facts["validation"]["checks"]["near_duplicates"] = {"status": "found", "severity": "warning", "count": 1,
                                                        "threshold": 0.95, "pairs": [{"same_label": False}]}
    facts["limitations"] = _limitations(facts)
    card = render_card(facts)
    limits = card.split("## Known limitations", 1)[1]
    for said in ("1 of 1 item has a single label: nobody checked it.",
                 "1 item had equally many votes for two or more labels; the earliest label was kept.",
                 "1 item was labelled outside the loop's rounds", "1 contested item was never adjudicated; its label",
                 "1 annotator: agreement", "Agreement rests on 1 item with two or more labels",
                 "1 item whose label a cross-validated classifier", "1 near-duplicate pair (cosine >= 0.95), 1 of"):
        assert said in limits, said
    assert "- 1 labelled item (" in card and "1 label spent on" in card and "1 annotator; 1 round" in card
    assert "1 annotator. Agreement with the consensus" in card and "1 item decided by adjudication" in card
    assert PLURAL_AFTER_ONE.search(card) is None, PLURAL_AFTER_ONE.search(card).group(0)
    # and the plural still reads as a plural
    facts["counts"] |= {"rows": 26, "outside_rounds": 2, "decided_by": {"single": 2, "tie-break": 3}}
    facts["status"]["contested"] = 2
    limits = "\n".join(_limitations(facts))
    assert "2 of 26 items have a single label: nobody checked them." in limits and "3 items had equally" in limits
    assert "2 items were labelled outside" in limits
    assert "2 contested items were never adjudicated; their label is the vote" in limits
