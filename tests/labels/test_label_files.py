"""Label files: reading JSONL/CSV/Parquet into records, writing aggregated labels."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loop.errors import DataError
from loop.labels.aggregation import aggregate
from loop.labels.label_files import read_label_file, write_aggregate


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_numbers_become_strings(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [
        {"item_id": 7, "annotator": "A", "label": 1, "text": "dropped"},
        {"item_id": 7, "annotator": "B", "label": 0, "created_at": "2024-01-01T00:00:00Z"},
    ])
    assert read_label_file(path) == [
        {"item_id": "7", "annotator": "A", "label": "1"},
        {"item_id": "7", "annotator": "B", "label": "0", "created_at": "2024-01-01T00:00:00Z"},
    ]


def test_csv_with_other_field_names(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("task,worker,answer\nt1,w1, yes \nt1,w2,no\n", encoding="utf-8")
    records = read_label_file(path, item_field="task", annotator_field="worker", label_field="answer")
    assert records == [{"item_id": "t1", "annotator": "w1", "label": "yes"},
                       {"item_id": "t1", "annotator": "w2", "label": "no"}]


def test_parquet_float_labels_and_timestamps(tmp_path):
    import datetime as dt

    path = tmp_path / "l.parquet"
    when = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
    pq.write_table(pa.Table.from_pylist([
        {"item_id": "a", "annotator": "A", "label": 1.0, "created_at": when},
        {"item_id": "a", "annotator": "B", "label": 2.5, "created_at": when},
    ]), path)
    records = read_label_file(path)
    assert [r["label"] for r in records] == ["1", "2.5"]
    assert records[0]["created_at"] == "2024-05-01T10:00:00+00:00"


def test_parquet_null_label_names_the_row(tmp_path):
    path = tmp_path / "l.parquet"
    pq.write_table(pa.Table.from_pylist([{"item_id": "a", "annotator": "A", "label": 1.0},
                                         {"item_id": "b", "annotator": "A", "label": None}]), path)
    with pytest.raises(DataError, match=r"l\.parquet:2: the 'label' field \(label\) is empty; fill it or drop the row"):
        read_label_file(path)


@pytest.mark.parametrize("row, message", [
    ({"item": "x", "annotator": "A", "label": "a"},
     (r"l\.jsonl:2: no 'item_id' field for the item id \(fields: annotator, item, label\); "
      r"name the right column with item_field")),
    ({"item_id": "x", "label": "a"}, r"l\.jsonl:2: no 'annotator' field"),
    ({"item_id": "x", "annotator": "A", "label": "  "}, r"l\.jsonl:2: the 'label' field \(label\) is empty"),
    ({"item_id": "x", "annotator": "A", "label": ["a", "b"]}, r"l\.jsonl:2: the 'label' field holds a list"),
])
def test_bad_rows(tmp_path, row, message):
    path = write_jsonl(tmp_path / "l.jsonl", [{"item_id": "ok", "annotator": "A", "label": "a"}, row])
    with pytest.raises(DataError, match=message):
        read_label_file(path)


def test_bad_json_line_comes_from_the_shared_row_reader(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"item_id": "x", "annotator": "A", "label": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"l\.jsonl:2: not valid JSON"):
        read_label_file(path)


@pytest.mark.parametrize("name, content", [
    ("l.csv", "item_id,annotator,label\nx,Jos\u00e9,a\ny,Ren\u00e9e,b\n".encode("cp1252")),
    ("l.jsonl", '{"item_id": "x", "annotator": "Jos\u00e9", "label": "a"}\n'.encode("cp1252")),
])
def test_a_label_file_that_is_not_utf8_names_the_line_and_byte(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    offset = content.index(b"\xe9")
    line = content[:offset].count(b"\n") + 1
    with pytest.raises(DataError) as exc:
        read_label_file(path)
    msg = str(exc.value)
    for fragment in (f"{path}:{line}:", "0xe9", f"byte offset {offset} (line {line})", "save the file as UTF-8"):
        assert fragment in msg, msg


def test_parquet_bytes_labels(tmp_path):
    path = tmp_path / "l.parquet"
    table = pa.table({"item_id": ["x", "y"], "annotator": ["A", "B"],
                      "label": pa.array([b"caf\xc3\xa9", b"tea"], type=pa.binary())})
    pq.write_table(table, path)
    assert [r["label"] for r in read_label_file(path)] == ["caf\u00e9", "tea"]  # UTF-8 bytes are text
    pq.write_table(table.set_column(2, "label", pa.array([b"tea", b"caf\xe9"], type=pa.binary())), path)
    with pytest.raises(DataError, match=r"l\.parquet:2: field 'label': byte 0xe9 at byte offset 3 of the value"):
        read_label_file(path)


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_label_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.csv").write_text("item_id,annotator,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows; a label file needs one row per annotator label"):
        read_label_file(tmp_path / "empty.csv")
    (tmp_path / "l.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unknown file type '.txt'"):
        read_label_file(tmp_path / "l.txt")


def test_repeated_label_rules(tmp_path):
    same = write_jsonl(tmp_path / "same.jsonl", [{"item_id": "x", "annotator": "A", "label": "a"}] * 2)
    assert len(read_label_file(same)) == 2           # harmless; aggregation counts A once
    timed = write_jsonl(tmp_path / "timed.jsonl", [
        {"item_id": "x", "annotator": "A", "label": "a", "created_at": "2024-01-01"},
        {"item_id": "x", "annotator": "A", "label": "b", "created_at": "2024-01-02"}])
    assert aggregate(read_label_file(timed))["x"]["label"] == "b"
    clash = write_jsonl(tmp_path / "clash.jsonl", [
        {"item_id": "x", "annotator": "A", "label": "a"},
        {"item_id": "y", "annotator": "A", "label": "a"},
        {"item_id": "x", "annotator": "A", "label": "b"}])
    with pytest.raises(DataError, match=r"clash\.jsonl:3: annotator 'A' labelled item 'x' again, 'b' here and "
                                        r"'a' at row 1, with no created_at"):
        read_label_file(clash)


AGGREGATED = {
    "x": {"label": "a", "confidence": 1.0, "decided_by": "unanimous", "n_labels": 3},
    "y": {"label": "b", "confidence": 0.5, "decided_by": "tie-break", "n_labels": 2},
}
ROWS = [{"item_id": "x", "label": "a", "confidence": 1.0, "decided_by": "unanimous", "n_labels": 3},
        {"item_id": "y", "label": "b", "confidence": 0.5, "decided_by": "tie-break", "n_labels": 2}]


def test_write_jsonl(tmp_path):
    path = write_aggregate(tmp_path / "out.jsonl", AGGREGATED)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == ROWS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]      # no temp file left


def test_write_csv(tmp_path):
    path = write_aggregate(tmp_path / "out.csv", AGGREGATED)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{k: str(v) for k, v in r.items()} for r in ROWS]


def test_write_parquet(tmp_path):
    path = write_aggregate(tmp_path / "out.parquet", AGGREGATED)
    table = pq.read_table(path)
    assert table.to_pylist() == ROWS
    assert table.schema.field("n_labels").type == pa.int64()


def test_write_refuses_unknown_suffix_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="unknown file type '.xlsx'"):
        write_aggregate(tmp_path / "out.xlsx", AGGREGATED)
    with pytest.raises(DataError, match="does not exist; create it first"):
        write_aggregate(tmp_path / "no" / "out.jsonl", AGGREGATED)
    with pytest.raises(DataError, match="lacks confidence, decided_by, n_labels"):
        write_aggregate(tmp_path / "out.jsonl", {"x": {"label": "a"}})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_aggregate(tmp_path / "out.jsonl", AGGREGATED)
    before = path.read_text(encoding="utf-8")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("loop.labels.label_files.json.dumps", boom)
    with pytest.raises(OSError, match="disk full"):
        write_aggregate(path, AGGREGATED)
    assert path.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_round_trip_through_aggregate(tmp_path):
    labels = write_jsonl(tmp_path / "labels.jsonl", [
        {"item_id": "x", "annotator": "A", "label": "a"}, {"item_id": "x", "annotator": "B", "label": "a"},
        {"item_id": "y", "annotator": "A", "label": "b"}])
    out = write_aggregate(tmp_path / "agg.csv", aggregate(read_label_file(labels), "dawid-skene"))
    with out.open(encoding="utf-8", newline="") as fh:
        assert [r["item_id"] for r in csv.DictReader(fh)] == ["x", "y"]


@pytest.mark.realdata
def test_reads_a_real_annotation_file():
    from tests.helpers import shared_data

    records = read_label_file(shared_data("armis") / "annotations.jsonl")
    assert len(records) == 2829
    assert {r["label"] for r in records} == {"0", "1"}
    assert {r["annotator"] for r in records} == {"Ann1", "Ann2", "Ann3"}
