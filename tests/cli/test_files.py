"""Input files through the CLI: a file that is not UTF-8 is one error line naming the line and the
byte, and nothing is written; `loop init` warns about texts longer than the encoder reads."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from tests.cli.conftest import one_error_line

LATIN1_ITEMS = '{"id": "1", "text": "fine"}\n{"id": "2", "text": "caf\u00e9 au lait"}\n'.encode("latin-1")
LATIN1_LABELS = "item_id,annotator,label\nx,ann,a\nx,Jos\u00e9,b\n".encode("latin-1")
E_ACUTE, I_DIAERESIS = b"\xe9", b"\xef"  # é and ï in Latin-1: never valid UTF-8 on their own


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_init_on_a_file_that_is_not_utf8_is_one_error_line_and_writes_nothing(clean_env, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_bytes(LATIN1_ITEMS)
    line = one_error_line(run("init", str(data), "--labels", "a,b"),
                          f"{data}:2:", "0xe9", f"byte offset {LATIN1_ITEMS.index(E_ACUTE)} (line 2)",
                          "save the file as UTF-8")
    assert "codec" not in line
    assert not clean_env.exists()  # the file is read before anything is made, even the workspace


def test_validate_a_csv_that_is_not_utf8(clean_env, tmp_path):
    data = tmp_path / "data.csv"
    content = "id,text,label\n1,fine,a\n2,na\u00efve,b\n".encode("cp1252")
    data.write_bytes(content)
    one_error_line(run("validate", str(data)), f"{data}:3:", "0xef", f"byte offset {content.index(I_DIAERESIS)}",
                   "CSV UTF-8")


def test_malformed_json_names_line_and_column(clean_env, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "1", "text": "a\tb", "label": "x"}\n', encoding="utf-8")
    line = one_error_line(run("validate", str(data)), f"{data}:1:", "line 1, column 23", "control character")
    assert not line.rstrip().endswith(" at")


def test_aggregate_a_label_file_that_is_not_utf8_writes_nothing(clean_env, tmp_path):
    labels, out = tmp_path / "labels.csv", tmp_path / "out.jsonl"
    labels.write_bytes(LATIN1_LABELS)
    one_error_line(run("aggregate", str(labels), "--out", str(out)), f"{labels}:3:", "0xe9",
                   f"byte offset {LATIN1_LABELS.index(E_ACUTE)} (line 3)")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["labels.csv"]


def test_agreement_on_a_label_file_that_is_not_utf8(clean_env, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(LATIN1_LABELS)
    one_error_line(run("agreement", "--annotations", str(labels)), f"{labels}:3:", "0xe9", "save the file as UTF-8")


# -- long texts: `loop init` warns (the figures come from loop.core.dataset.long_texts) ---------------
INIT_RESULT = {"project_id": 7, "linked": False, "items": 3, "imported": 3, "embedded": 3, "labels": ["a", "b"],
               "url": "http://127.0.0.1:8480/projects/7", "ml_backend": None, "guideline_version": None,
               "dev_items": 0, "assisted": False}


@pytest.fixture
def fake_init(monkeypatch):
    """`loop init` with init_project answering `result` (the workflow is not this test's subject)."""
    result = dict(INIT_RESULT)
    monkeypatch.setattr("loop.workflows.project.init_project", lambda ctx, data, **kw: result)
    return result


def test_init_warns_about_long_texts(clean_env, tmp_path, fake_init):
    from loop.core.dataset import Item, long_texts

    fake_init["long_texts"] = long_texts([Item("a", "x" * 5000), Item("b", "short")])
    out = run("init", str(tmp_path / "data.jsonl"), "--labels", "a,b")
    assert out.exit_code == 0, out.output
    warning = " ".join(out.stdout.split()).split("Warning: ", 1)[1]
    assert warning.startswith("1 item is longer than 1,016 characters (the longest 5,000; a)")
    as_json = run("init", str(tmp_path / "data.jsonl"), "--labels", "a,b", "--json")
    assert json.loads(as_json.stdout)["long_texts"] == {"count": 1, "limit": 1016, "longest": 5000, "examples": ["a"]}


@pytest.mark.parametrize("long", [None, {"count": 0, "limit": 1016, "longest": 0, "examples": []}])
def test_init_says_nothing_when_no_text_is_long(clean_env, tmp_path, fake_init, long):
    if long is not None:
        fake_init["long_texts"] = long
    out = run("init", str(tmp_path / "data.jsonl"), "--labels", "a,b")
    assert out.exit_code == 0, out.output
    assert "Warning" not in out.output and "Project 7 created" in out.stdout
