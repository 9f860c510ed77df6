"""Reading item files (JSONL, CSV, Parquet) into validated items with stable ids.

Validation happens here, once, at the boundary: a bad row names the file, the row number,
what is wrong and how to fix it, before anything is written anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from loop.errors import DataError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    label: str | None = None


def text_key(text: str) -> str:
    """Content hash of a text: the key of its cached embedding."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .jsonl, .csv or .parquet")
    if fmt == "jsonl":
        with path.open(encoding="utf-8-sig") as fh:  # -sig: tolerate a BOM
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not valid JSON ({exc.msg}); fix or remove that line") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
                yield n, row
    elif fmt == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):  # line 1 is the header
                yield n, row
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
        for n, row in enumerate(table.to_pylist(), start=1):
            yield n, row


def existing_file(path: str | Path) -> Path:
    """`path` as a Path, or a DataError saying it is not there and where relative paths start."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path (relative paths start at {Path.cwd()})")
    return path


def row_fields(path: Path, n: int, row: dict[str, Any], text_field: str, label_field: str | None,
               id_field: str | None) -> tuple[Any, str | None, str | None]:
    """(raw text, label, id) of one row, with the checks every reader shares: the text field is
    there, a label is stripped (empty -> None), an id column (`id_field`, else `id` when present)
    is filled. The id is None when the file has no id column."""
    if text_field not in row:
        fields = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(f"{path}:{n}: no {text_field!r} field (fields: {fields}); pass --text-field")
    label = None
    if label_field is not None:
        raw = row.get(label_field)
        label = None if raw is None or str(raw).strip() == "" else str(raw).strip()
    id_col = id_field or ("id" if "id" in row else None)
    if id_col is None:
        return row[text_field], label, None
    if row.get(id_col) in (None, ""):
        raise DataError(f"{path}:{n}: the id field {id_col!r} is empty; give every row an id")
    return row[text_field], label, str(row[id_col])


def check_unique(path: Path, n: int, item_id: str, seen: dict[str, int], what: str) -> None:
    if item_id in seen:
        raise DataError(f"{path}:{n}: duplicate {what}, first seen at row {seen[item_id]}; "
                        "make ids unique or drop the duplicate")
    seen[item_id] = n


def read_items(path: str | Path, *, text_field: str = "text", label_field: str | None = None,
               id_field: str | None = None) -> list[Item]:
    """Read and validate every row of a dataset file.

    Ids come from `id_field` (default: an `id` column when the file has one), else from the
    text's content hash, so re-importing the same file gives the same ids.
    """
    path = existing_file(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in _rows(path):
        text, label, item_id = row_fields(path, n, row, text_field, label_field, id_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{n}: the {text_field!r} field is empty; fill it or drop the row")
        if item_id is None:
            item_id = "t" + text_key(text)[:16]
            check_unique(path, n, item_id, seen, "text (and there is no id field)")
        else:
            check_unique(path, n, item_id, seen, f"id {item_id!r}")
        items.append(Item(item_id, text, label))
    if not items:
        raise DataError(f"{path}: no rows; the pool needs at least one item")
    return items
