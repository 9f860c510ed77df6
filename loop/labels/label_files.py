"""Reading label files (one row per annotator label) and writing aggregated labels.

`read_label_file` turns a JSONL, CSV or Parquet file into label records ({"item_id", "annotator",
"label"}, plus "created_at" when the file has it), validated once here: a bad row stops it with
the file, the row and the fix. `write_aggregate` writes the output of `loop.labels.aggregation.aggregate`
in the format its suffix names, all at once (a failed write leaves no partial file).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loop.core.dataset import FORMATS, _rows, decoded, existing_file
from loop.errors import DataError

AGGREGATE_FIELDS = ("item_id", "label", "confidence", "decided_by", "n_labels")


def _value(path: Path, n: int, row: dict, field: str, role: str, hint: str) -> str:
    if field not in row:
        fields = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(f"{path}:{n}: no {field!r} field for the {role} (fields: {fields}); "
                        f"name the right column with {hint}")
    raw = decoded(path, n, field, row[field])
    if isinstance(raw, bool):
        return str(raw).lower()
    if isinstance(raw, float):
        if math.isnan(raw):
            raw = None
        elif raw.is_integer():
            raw = int(raw)  # 1.0 from a Parquet/pandas float column means the label 1
    if isinstance(raw, (list, dict)):
        raise DataError(f"{path}:{n}: the {field!r} field holds a {type(raw).__name__}, not a single value; "
                        "write one row per annotator and label")
    value = "" if raw is None else str(raw).strip()
    if not value:
        raise DataError(f"{path}:{n}: the {field!r} field ({role}) is empty; fill it or drop the row")
    return value


def read_label_file(path: str | Path, item_field: str = "item_id", annotator_field: str = "annotator",
                    label_field: str = "label") -> list[dict]:
    """Read every row of a label file into records {"item_id", "annotator", "label"[, "created_at"]}.

    Values become strings (a numeric label 1 or 1.0 becomes "1"). The same annotator may label the
    same item more than once only with the same label, or when a `created_at` column says which
    label is the latest; two different labels with no time to order them are an error.
    """
    path = existing_file(path)
    records: list[dict] = []
    first: dict[tuple[str, str], tuple[int, str, bool]] = {}
    for n, row in _rows(path):
        item = _value(path, n, row, item_field, "item id", "item_field")
        annotator = _value(path, n, row, annotator_field, "annotator", "annotator_field")
        label = _value(path, n, row, label_field, "label", "label_field")
        rec = {"item_id": item, "annotator": annotator, "label": label}
        created = row.get("created_at")
        if created not in (None, ""):
            rec["created_at"] = created.isoformat() if hasattr(created, "isoformat") else str(created)
        key = (item, annotator)
        if key in first:
            m, other, timed = first[key]
            if other != label and not (timed and "created_at" in rec):
                raise DataError(f"{path}:{n}: annotator {annotator!r} labelled item {item!r} again, "
                                f"{label!r} here and {other!r} at row {m}, with no created_at to say which is "
                                "the latest; keep one of the two rows or add a created_at column")
        else:
            first[key] = (n, label, "created_at" in rec)
        records.append(rec)
    if not records:
        raise DataError(f"{path}: no rows; a label file needs one row per annotator label")
    return records


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def write_aggregate(path: str | Path, aggregated: Mapping[Any, Mapping]) -> Path:
    """Write `aggregate(...)`'s output, one row per item: item_id, label, confidence, decided_by,
    n_labels. The format follows the suffix (.jsonl, .csv, .parquet); the file appears whole or
    not at all. Returns the path."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .jsonl, .csv or .parquet")
    if not path.parent.is_dir():
        raise DataError(f"{path}: the folder {path.parent} does not exist; create it first")
    rows = []
    for item, dec in aggregated.items():
        missing = [k for k in AGGREGATE_FIELDS[1:] if k not in dec]
        if missing:
            raise DataError(f"aggregated item {item!r} lacks {', '.join(missing)}; pass the output of "
                            "loop.labels.aggregation.aggregate")
        rows.append({"item_id": _jsonable(item), **{k: _jsonable(dec[k]) for k in AGGREGATE_FIELDS[1:]}})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "jsonl":
            with tmp.open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=AGGREGATE_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([("item_id", pa.string()), ("label", pa.string()), ("confidence", pa.float64()),
                                ("decided_by", pa.string()), ("n_labels", pa.int64())])
            table = pa.Table.from_pylist([{**r, "item_id": str(r["item_id"])} for r in rows], schema=schema)
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
