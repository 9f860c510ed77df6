"""`loop validate` on files through the CLI: exit codes, JSON, the label set from guidelines."""

from __future__ import annotations

import json

from tests.cli.conftest import run, write
from tests.helpers import REPO

ROWS = [
    {"id": "r1", "text": "I was charged twice for my order", "label": "billing"},
    {"id": "r2", "text": "i was  CHARGED twice for my order", "label": "delivery"},   # contradicts r1
    {"id": "r3", "text": "Where is my parcel? It is a week late.", "label": "delivery"},
    {"id": "r4", "text": "Where is my parcel? It is a week late.", "label": "delivery"},  # exact duplicate of r3
    {"id": "r5", "text": "My password reset link does not work", "label": "account"},
    {"id": "r6", "text": "The app crashes when I open the basket", "label": "technical"},
    {"id": "r7", "text": "??", "label": "technical"},                                      # near-empty
    {"id": "r8", "text": "Can I pay with a gift card?", "label": "payments"},              # not in the guidelines
]


def test_a_contradiction_is_a_release_blocker_with_exit_code_2(workspace):
    data = write(workspace / "data.jsonl", ROWS)
    result = run("validate", str(data), "--guidelines", str(REPO / "guidelines"), "--no-label-errors", "--json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    checks = report["checks"]
    assert report["blockers"] == ["contradictions"] and report["ok"] is False
    assert checks["contradictions"]["groups"][0]["labels"] == {"billing": ["r1"], "delivery": ["r2"]}
    assert checks["exact_duplicates"]["groups"][0]["ids"] == ["r3", "r4"]
    assert [r["id"] for r in checks["empty_inputs"]["rows"]] == ["r7"]
    assert checks["invalid_labels"]["rows"] == [{"id": "r8", "label": "payments"}]
    assert checks["missing_negatives"]["missing"] == ["out_of_scope"]  # the guidelines' negative
    assert checks["label_errors"]["status"] == "skipped"


def test_clean_data_exits_0_and_the_table_names_every_check(workspace):
    clean = [r for r in ROWS if r["id"] not in ("r2", "r4", "r7", "r8")]
    data = write(workspace / "clean.jsonl", clean)
    result = run("validate", str(data), "--labels", "billing,delivery,account,technical", "--no-label-errors")
    assert result.exit_code == 0, result.output
    for check in ("contradictions", "exact duplicates", "near duplicates", "invalid labels", "empty inputs",
                  "class balance", "missing negatives", "leakage", "label errors"):
        assert check in result.output
    assert "No release blocker" in result.output


def test_leakage_into_a_test_file(workspace):
    train = write(workspace / "train.jsonl", ROWS[:6])
    test = write(workspace / "test.jsonl", [{"id": "t1", "text": "I WAS CHARGED TWICE FOR MY ORDER",
                                             "label": "billing"},
                                            {"id": "t2", "text": "How do I close my account?", "label": "account"}])
    result = run("validate", str(train), "--test", str(test), "--no-label-errors", "--json")
    leak = json.loads(result.stdout)["checks"]["leakage"]
    assert leak["status"] == "found"
    (group,) = leak["exact"]
    assert group["train_ids"] == ["r1", "r2"] and group["test_ids"] == ["t1"]


def test_bad_input_is_one_error_line(workspace):
    bad = workspace / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine", "label": "x"}\n{not json\n')
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert "bad.jsonl:2" in result.output and "not valid JSON" in result.output
    assert run("validate", str(workspace / "missing.jsonl")).exit_code == 1
    both = run("validate", str(bad), "--labels", "a,b", "--guidelines", str(REPO / "guidelines"))
    assert both.exit_code == 1 and "not both" in both.output
